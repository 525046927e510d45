"""What the host must provide before localboot can boot a guest.

Why: tests should skip (or, in CI, fail) with a precise reason instead of crashing halfway
through a boot. :func:`check_host` returns human-readable problems; an empty list means go.

Debian packages that provide the tools: ``debootstrap systemd-container nftables iproute2
util-linux mount coreutils`` (the last three are always installed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: executable -> Debian package that ships it.
REQUIRED_TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "chroot": "coreutils",
}


def _filesystems() -> set[str]:
    try:
        text = Path("/proc/filesystems").read_text()
    except OSError:
        return set()
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def check_host() -> list[str]:
    """Return what is missing on this host to build and boot guests (empty: all there)."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("must run as root (mounts, bridges, nft and systemd-nspawn need it)")
    for tool, package in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found (apt-get install {package})")
    if "overlay" not in _filesystems():
        problems.append("the kernel has no overlay file system (modprobe overlay)")
    if not Path("/proc/sys/net/ipv4/ip_forward").exists():
        problems.append("no /proc/sys/net/ipv4/ip_forward (no IPv4 networking?)")
    if not Path("/sys/fs/cgroup").is_dir():
        problems.append("no /sys/fs/cgroup (systemd-nspawn needs cgroups)")
    return problems
