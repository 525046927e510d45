"""Build (once) and cache a Debian root file system prepared like a Debian cloud image.

Why: every test boot needs a Debian userland with systemd, cloud-init and sshd, configured
the way Debian's AMIs are (NoCloud instead of EC2's metadata service, default user
``admin``). debootstrap takes ~1.5 minutes, so the result is cached under
``/var/cache/localboot/<release>-<hash of the recipe>/`` and never booted itself: every
guest boots a throw-away overlay on top of it (see :mod:`localboot.guest`).

The cache key hashes everything that shapes the result (release, mirrors, package list,
the files written, the host's extra CA certificates), so a changed recipe builds a new
directory instead of reusing a stale one. Builds go to a temporary directory that is renamed
into place only when complete (an interrupted build never leaves a half cache), under a
lock file (two processes never build the same thing at once).

Nothing application-specific is preinstalled: the user-data under test must install
PostgreSQL, nginx and so on for real, as it would on EC2.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ._util import CommandError, FileLock, remove_tree, run

#: Bump when the build steps change in a way the hashed inputs below do not capture.
RECIPE_VERSION = 1

DEFAULT_CACHE_ROOT = Path("/var/cache/localboot")
#: Debian 13, the current stable: the program's default image (`debian-13`) is the one booted by default.
DEFAULT_RELEASE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

#: debootstrap --include list. ``python3-cffi-backend`` is listed explicitly because
#: debootstrap does not resolve that virtual dependency and cloud-init then stays
#: unconfigured. No ``locales``: C.UTF-8 ships with libc.
INCLUDE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "cloud-init",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "python3",
    "python3-cffi-backend",
    "curl",
    "gnupg",
)

HOST_EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
BUILD_TIMEOUT_S = 1800
LOCK_TIMEOUT_S = 2400

_DATASOURCE_CFG = """\
# localboot: the seed in /var/lib/cloud/seed/nocloud/ stands in for EC2's metadata service.
datasource_list: [ NoCloud, None ]
"""

# As on Debian's AMIs: the default user is "admin" with passwordless sudo. Without
# manage_etc_hosts the guest's host name does not resolve and sudo complains on every call.
_DEFAULT_USER_CFG = """\
# localboot: default user as on Debian's cloud images (AMIs).
system_info:
  default_user:
    name: admin
    lock_passwd: true
    gecos: Debian
    groups: [adm, audio, cdrom, dialout, dip, floppy, netdev, plugdev, sudo, video]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
manage_etc_hosts: true
"""

# Without a LANG cloud-init's locale module fails.
_LOCALE = "LANG=C.UTF-8\n"


@dataclass(frozen=True)
class Mirrors:
    """Where the guest's apt (and debootstrap) fetch packages from."""

    main: str
    security: str


def host_mirrors(
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
    sources_list: Path = Path("/etc/apt/sources.list"),
) -> Mirrors:
    """The Debian mirrors this host's apt uses (the ones known to be reachable from here).

    Reads deb822 ``*.sources`` files and the one-line ``sources.list``; falls back to
    deb.debian.org for whatever is not found.
    """
    uris: list[str] = []
    if sources_dir.is_dir():
        for path in sorted(sources_dir.glob("*.sources")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("URIs:"):
                    uris.extend(line.split(":", 1)[1].split())
    if sources_list.is_file():
        for line in sources_list.read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if match:
                uris.append(match.group(1))
    uris = [u.rstrip("/") for u in uris if u.startswith(("http://", "https://"))]
    security = next((u for u in uris if u.endswith("/debian-security")), DEFAULT_SECURITY_MIRROR)
    main = next((u for u in uris if u.endswith("/debian")), DEFAULT_MIRROR)
    return Mirrors(main=main, security=security)


def _apt_sources(release: str, mirrors: Mirrors) -> str:
    """deb822 sources like a cloud image's: the release, its updates and its security suite."""
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        f"Types: deb\nURIs: {mirrors.main}\nSuites: {release} {release}-updates\n"
        f"Components: main\nSigned-By: {keyring}\n\n"
        f"Types: deb\nURIs: {mirrors.security}\nSuites: {release}-security\n"
        f"Components: main\nSigned-By: {keyring}\n"
    )


def _recipe_files(release: str, mirrors: Mirrors) -> dict[str, str]:
    """Files written into the root after debootstrap: path inside the root -> content."""
    return {
        "etc/cloud/cloud.cfg.d/90_localboot_datasource.cfg": _DATASOURCE_CFG,
        "etc/cloud/cloud.cfg.d/91_localboot_default_user.cfg": _DEFAULT_USER_CFG,
        "etc/default/locale": _LOCALE,
        "etc/apt/sources.list.d/debian.sources": _apt_sources(release, mirrors),
    }


def _host_ca_certs() -> dict[str, bytes]:
    """The host's extra CA certificates (e.g. a TLS-intercepting proxy's), by file name."""
    if not HOST_EXTRA_CA_DIR.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(HOST_EXTRA_CA_DIR.glob("*.crt")) if p.is_file()}


def recipe_key(release: str, mirrors: Mirrors) -> str:
    """``<release>-<12 hex>``: the cache directory name for this exact recipe."""
    recipe = {
        "version": RECIPE_VERSION,
        "release": release,
        "mirrors": [mirrors.main, mirrors.security],
        "include": list(INCLUDE_PACKAGES),
        "files": _recipe_files(release, mirrors),
        "ca": {name: hashlib.sha256(data).hexdigest() for name, data in _host_ca_certs().items()},
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return f"{release}-{digest[:12]}"


def _validate_release(release: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9-]{1,30}", release):
        raise ValueError(f"not a Debian release code name: {release!r}")


def _debootstrap(target: Path, release: str, mirrors: Mirrors) -> None:
    argv = [
        "debootstrap",
        "--include=" + ",".join(INCLUDE_PACKAGES),
        "--components=main",
        release,
        str(target),
        mirrors.main,
    ]
    try:
        run(argv, timeout=BUILD_TIMEOUT_S)
    except CommandError as exc:
        log = target / "debootstrap" / "debootstrap.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        raise CommandError(f"{exc}\n--- debootstrap.log (tail) ---\n{tail}") from exc


def _write(root: Path, rel: str, content: str | bytes, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    path.chmod(mode)


def _prepare_like_cloud_image(root: Path, release: str, mirrors: Mirrors) -> None:
    """The steps Debian's cloud image build does that matter for a first boot."""
    for rel, content in _recipe_files(release, mirrors).items():
        _write(root, rel, content)
    # debootstrap's one-line sources.list would duplicate the deb822 file above.
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    # An empty machine-id makes systemd generate a fresh one on each guest's first boot.
    _write(root, "etc/machine-id", "", 0o444)
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    # Host keys are per instance: cloud-init generates them on first boot (like on EC2).
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for name, data in _host_ca_certs().items():
        _write(root, f"usr/local/share/ca-certificates/{name}", data)
    run(["chroot", str(root), "update-ca-certificates"], timeout=300)
    # No package lists or downloaded .debs: the guest's first `apt-get update` is real.
    for rel in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for entry in (root / rel).iterdir():
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    (root / "etc/hostname").write_text("localhost\n")


def _remove_stale_builds(cache_root: Path, key: str) -> None:
    """Delete half-built trees of ``key`` left by an interrupted build (we hold the lock)."""
    for stale in cache_root.glob(f".build-{key}-*"):
        remove_tree(stale)


def ensure_rootfs(
    release: str = DEFAULT_RELEASE,
    *,
    mirrors: Mirrors | None = None,
    cache_root: Path = DEFAULT_CACHE_ROOT,
) -> Path:
    """Return the path of a cached, cloud-image-like Debian root file system for
    ``release`` (e.g. ``"bookworm"``, ``"trixie"``), building it first if needed.

    The returned tree must be treated as read-only: boot it through an overlay.
    """
    _validate_release(release)
    mirrors = mirrors or host_mirrors()
    key = recipe_key(release, mirrors)
    final = cache_root / key
    if (final / "etc/os-release").exists():
        return final
    with FileLock(cache_root / f".lock-{key}", LOCK_TIMEOUT_S):
        if (final / "etc/os-release").exists():  # built by another process meanwhile
            return final
        _remove_stale_builds(cache_root, key)
        tmp = cache_root / f".build-{key}-{os.getpid()}"
        tmp.mkdir(parents=True)
        try:
            _debootstrap(tmp, release, mirrors)
            _prepare_like_cloud_image(tmp, release, mirrors)
            shutil.rmtree(tmp / "debootstrap", ignore_errors=True)
            os.rename(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
        (cache_root / f"{key}.json").write_text(
            json.dumps(
                {
                    "release": release,
                    "mirror": mirrors.main,
                    "security_mirror": mirrors.security,
                    "include": list(INCLUDE_PACKAGES),
                },
                indent=2,
            )
            + "\n"
        )
    return final
