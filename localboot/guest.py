"""Boot a Debian guest with systemd-nspawn from a cached root, the way EC2 boots an AMI.

Why: the server side of a deployment (cloud-init user-data, SSH as ``admin``, sudo,
packages, systemd units, reboots) can only be proven by really booting it. A guest here:

* boots a fresh overlay whose lower layer is the cached root from
  :func:`localboot.rootfs.ensure_rootfs` (instant, and the cache is never modified);
* gets a NoCloud seed (``meta-data`` with ``public-keys`` as EC2 delivers the key pair,
  ``user-data`` byte for byte as given, a static ``network-config``) instead of EC2's
  metadata service;
* runs ``systemd-nspawn --boot`` on a bridge from :mod:`localboot.network`, restarted when
  it exits with 133 (the guest ran ``reboot``), so reboots behave like on a server; the
  overlay survives reboots, like an instance's root volume;
* is reached over SSH at its own address (paramiko, host keys checked against the keys
  cloud-init generated in the guest), or with ``nsenter`` for assertions that must not
  depend on SSH.

This module is the guest's lifecycle (overlay, seed, start, stop, reboot); the seed's files are
:mod:`localboot.seed`, the nspawn boot loop and the PIDs :mod:`localboot.processes`, SSH and SFTP
:mod:`localboot.ssh`.

:meth:`Guest.stop` powers the guest off and removes every trace (process, overlay mount,
temporary directories); it is idempotent and runs on context-manager exit, at interpreter
exit, and when start-up fails halfway. nspawn also gets SIGTERM should this process die
(``setpriv --pdeathsig``), so a killed test run does not leave a guest running.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import paramiko

from ._util import CommandError, GuestError, mounts_under, remove_tree, run, unmount_tree
from .network import BridgeNetwork
from .processes import (
    REBOOT_EXIT_CODE,
    NspawnSupervision,
    proc_start_time,
    processes_rooted_under,
)
from .rootfs import DEFAULT_CACHE_ROOT, DEFAULT_RELEASE, ensure_rootfs
from .seed import host_nameserver, write_seed
from .ssh import KeyLike, SSHAccess, load_private_key

RUN_ROOT = DEFAULT_CACHE_ROOT / "run"
LOG_DIR = DEFAULT_CACHE_ROOT / "logs"
KEEP_LOGS = 50
STALE_AFTER_S = 120
GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}
# "vb-" + name must fit the 15-byte interface name limit for nspawn's host-side veth.
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,11}")
# Overlay mount options and nspawn --bind use ',' and ':' as separators.
_UNSAFE_PATH_CHARS = set(",:\\\n")


def _check_path(value: str, what: str) -> None:
    if _UNSAFE_PATH_CHARS & set(value):
        raise ValueError(f"{what} contains one of , : \\ or a newline: {value!r}")


def cleanup_stale_runs(run_root: Path = RUN_ROOT) -> list[Path]:
    """Remove run directories (overlay + seed) whose owning process is gone.

    A directory still in use by some process (a guest that outlived its owner) is left
    alone. Returns the directories removed.

    Other processes (another run, pytest-xdist's other workers) start and stop guests in the
    same folder meanwhile: a live owner's directory is never touched, and one that vanishes
    while it is looked at (its guest stopped) is skipped.
    """
    removed: list[Path] = []
    if not run_root.is_dir():
        return removed
    for rundir in sorted(run_root.iterdir()):
        owner_file = rundir / "owner.json"
        try:
            owner = json.loads(owner_file.read_text())
            alive = proc_start_time(int(owner["pid"])) == owner["start"]
        except (OSError, ValueError, KeyError, TypeError):
            # No owner yet: possibly another process setting it up right now.
            try:
                alive = time.time() - rundir.stat().st_mtime < STALE_AFTER_S
            except FileNotFoundError:
                continue  # removed by its owner meanwhile
        if alive or processes_rooted_under(rundir / "merged"):
            continue
        remove_tree(rundir)
        removed.append(rundir)
    return removed


#: A guest's console lines of a boot that failed beyond any wait (`Guest.boot_problem`): seen once in a run of the
#: whole suite, a Debian 13 guest's ifupdown failed to raise host0 and the run waited out the 30-minute dial.
BOOT_FAILURES = ("Failed to start networking.service",)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class Guest(NspawnSupervision, SSHAccess):
    """One booted Debian guest. Use as a context manager (or call start()/stop()).

    ``meta_data`` goes to the NoCloud ``meta-data`` (``instance-id`` and ``local-hostname``
    default to values derived from ``name``); put the SSH public key line(s) under
    ``"public-keys"`` as EC2 delivers the key pair. ``user_data`` is written byte for byte.
    ``binds`` are ``(host_path, guest_path)`` bind mounts (e.g. a folder standing in for an
    EBS data volume that outlives the guest). ``ssh_key`` is the default private key for
    :meth:`ssh`, :meth:`run` and :meth:`put`. ``files`` (guest path → (content, mode)) are written
    into the overlay before the first boot; ``resolv_conf`` is nspawn's ``--resolv-conf`` mode (``off``
    keeps the guest's own ``/etc/resolv.conf``, e.g. one given in ``files``).
    """

    def __init__(
        self,
        network: BridgeNetwork,
        name: str,
        user_data: bytes,
        meta_data: Mapping[str, Any] | None = None,
        *,
        rootfs: Path | None = None,
        release: str = DEFAULT_RELEASE,
        binds: Sequence[tuple[str | os.PathLike[str], str]] = (),
        ssh_key: KeyLike | None = None,
        ip: str | None = None,
        nameserver: str | None = None,
        files: Mapping[str, tuple[bytes, int]] | None = None,
        resolv_conf: str = "copy-host",
        run_root: Path = RUN_ROOT,
        log_dir: Path = LOG_DIR,
    ) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"guest name must match {_NAME_RE.pattern}: {name!r}")
        if not isinstance(user_data, bytes):
            raise TypeError("user_data must be bytes (it is written byte for byte)")
        self.name = name
        self.network = network
        # nspawn names the host-side veth after the machine, so two runs on one host (each on its own bridge)
        # booting the same guest name would collide: off the default bridge, the bridge's suffix is added.
        self.machine_name = name if network.name == "lbr0" else f"{name[:8]}-{network.name[-3:]}"
        self.user_data = user_data
        self.release = release
        self._rootfs = rootfs
        self.meta_data: dict[str, Any] = {
            "instance-id": f"i-localboot-{name}-{secrets.token_hex(4)}",
            "local-hostname": name,
            **(meta_data or {}),
        }
        self.binds = [(Path(h), str(g)) for h, g in binds]
        for host, guest in self.binds:
            _check_path(str(host), "bind host path")
            _check_path(guest, "bind guest path")
            if not PurePosixPath(guest).is_absolute():
                raise ValueError(f"bind guest path must be absolute: {guest!r}")
        self.ssh_key = load_private_key(ssh_key) if ssh_key is not None else None
        self.ip = ip or network.allocate()
        self.nameserver = nameserver or host_nameserver()
        self.files = dict(files or {})
        for path in self.files:
            if not PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
                raise ValueError(f"a guest file's path must be absolute, without '..': {path!r}")
        self.resolv_conf = resolv_conf
        self.rundir = run_root / f"{name}-{secrets.token_hex(4)}"
        self.merged = self.rundir / "merged"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.console_log = log_dir / f"{self.rundir.name}.log"
        self._log_dir = log_dir
        self._run_root = run_root
        self.boot_started_at: float | None = None
        self.last_boot_started_at: float | None = None
        self.boot_count = 0
        self.last_exit_code: int | None = None
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._init_pid: tuple[int, int] | None = None  # (boot_count, pid)
        self._stopping = False
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._clients_lock = threading.Lock()  # steps may run side by side (harness/replay.py)

    def boot_problem(self) -> str | None:
        """A failure the console shows that no wait mends (the image's own network not raised: nothing will ever
        answer on the guest's address), said with where the console is; None while there is none."""
        try:
            console = ANSI_ESCAPE.sub("", self.console_log.read_text(errors="replace"))
        except OSError:
            return None
        for failure in BOOT_FAILURES:
            if failure in console:
                return f"{self.name}'s boot failed: {failure!r} on its console ({self.console_log})"
        return None

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Guest:
        """Mount the overlay, write the seed and boot; returns once the guest's init runs."""
        if self._thread is not None:
            raise GuestError("guest already started")
        atexit.register(self.stop)
        try:
            cleanup_stale_runs(self._run_root)
            self._prune_logs()
            lower = self._rootfs or ensure_rootfs(self.release)
            self._mount_overlay(Path(lower))
            self._write_seed()
            self._write_files()
            self.boot_started_at = time.monotonic()
            self._thread = threading.Thread(target=self._supervise, name=f"localboot-{self.name}", daemon=True)
            self._thread.start()
            self._wait_for_boot(1, timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10) -> None:
        """Power the guest off (SIGTERM, then SIGKILL after ``timeout`` s), unmount, clean up.

        Safe to call more than once and from any thread.
        """
        with self._stop_lock:
            if self._stopped:
                return
            try:
                with contextlib.suppress(Exception):
                    self._close_clients()
                # If the guest cannot be killed, its files stay (cleanup_stale_runs retries
                # later): removing the upper dir under a running container is worse.
                self._terminate(timeout)
                if self.rundir.exists():
                    unmount_tree(self.merged)
                    remove_tree(self.rundir)
            finally:
                self._stopped = True
                atexit.unregister(self.stop)

    # ----------------------------------------------------------------- set-up

    def _mount_overlay(self, lower: Path) -> None:
        if not (lower / "etc/os-release").exists():
            raise GuestError(f"{lower} is not a root file system")
        _check_path(str(lower), "rootfs path")
        _check_path(str(self.rundir), "run directory")
        upper, work = self.rundir / "upper", self.rundir / "work"
        for directory in (upper, work, self.merged):
            directory.mkdir(parents=True, mode=0o700)
        # The root of the overlay takes the upper dir's mode; make it a normal "/".
        upper.chmod(0o755)
        self.merged.chmod(0o755)
        (self.rundir / "owner.json").write_text(json.dumps({"pid": os.getpid(), "start": proc_start_time(os.getpid())}))
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)])

    def _write_seed(self) -> None:
        write_seed(
            self.merged / "var/lib/cloud/seed/nocloud",
            self.meta_data,
            self.user_data,
            address=f"{self.ip}/{self.network.prefixlen}",
            gateway=self.network.gateway,
            nameserver=self.nameserver,
        )

    def _write_files(self) -> None:
        """The guest's own files (``files``), written into the overlay before the first boot: what the machine
        image brings, as an AMI brings its CA certificates and resolver (never anything of the program's)."""
        for path, (content, mode) in sorted(self.files.items()):
            target = self.merged / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            target.write_bytes(content)
            target.chmod(mode)

    def _prune_logs(self) -> None:
        # Another run on this host may prune the same folder at the same moment: a log gone meanwhile is skipped.
        # A live guest's log (its run directory still there: another worker's, another run's) is never pruned: a
        # quiet console ages, and its tail is what an error message shows.
        dated = []
        for path in self._log_dir.glob("*.log"):
            if (self._run_root / path.stem).exists():
                continue
            with contextlib.suppress(FileNotFoundError):
                dated.append((path.stat().st_mtime, path))
        for _, old in sorted(dated)[:-KEEP_LOGS]:
            old.unlink(missing_ok=True)

    def nspawn_argv(self) -> list[str]:
        """The command line that boots this guest (nspawn under setpriv --pdeathsig)."""
        argv = [
            "setpriv",
            "--pdeathsig",
            "TERM",
            "--",
            "systemd-nspawn",
            "-D",
            str(self.merged),
            "-M",
            self.machine_name,
            "--register=no",
            "--keep-unit",
            "--boot",
            f"--network-bridge={self.network.name}",
            f"--resolv-conf={self.resolv_conf}",
            "--timezone=off",
            "--console=read-only",
        ]
        argv += [f"--bind={host}:{guest}" for host, guest in self.binds]
        return argv

    # ----------------------------------------------------------------- access

    def exec(
        self,
        argv: Sequence[str],
        input: bytes | None = None,
        timeout: float = 60,
        check: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` inside the guest's namespaces with nsenter (as root, no SSH).

        The command gets a minimal environment (PATH, LANG, HOME), not the caller's.
        """
        nsenter = ["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "--"]
        return run([*nsenter, *argv], input=input, timeout=timeout, check=check, env=GUEST_ENV)

    def wait_for_ssh(self, timeout: float = 120) -> float:
        """Poll the guest's port 22 until sshd sends its banner (every 0.5 s, for at most
        ``timeout`` s). Returns seconds since this boot started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._running():
                with self._cond:
                    rebooting = self.last_exit_code == REBOOT_EXIT_CODE and not self._stopping
                if not rebooting:
                    raise self._fail(f"guest {self.name} is not running")
            elif self._ssh_banner():
                return time.monotonic() - (self.last_boot_started_at or 0.0)
            time.sleep(0.5)
        raise self._fail(f"no SSH on {self.ip}:22 after {timeout}s")

    def host_keys(self) -> list[str]:
        """The guest's SSH host public keys (``type base64``), read from its file system."""
        keys = []
        for pub in sorted((self.merged / "etc/ssh").glob("ssh_host_*_key.pub")):
            parts = pub.read_text().split()
            if len(parts) >= 2:
                keys.append(f"{parts[0]} {parts[1]}")
        return keys

    def reboot_and_wait(self, timeout: float = 120) -> float:
        """``systemctl reboot`` inside, wait for the next boot and for SSH; returns seconds
        from the reboot request to SSH answering."""
        started = time.monotonic()
        with self._cond:
            boot = self.boot_count
        self._close_clients()
        # The namespace may vanish under nsenter; the boot count below decides.
        with contextlib.suppress(CommandError):
            self.exec(["systemctl", "reboot"], timeout=30)
        self._wait_for_boot(boot + 1, timeout=timeout)
        remaining = max(1.0, timeout - (time.monotonic() - started))
        self.wait_for_ssh(remaining)
        return time.monotonic() - started

    def overlay_mounted(self) -> bool:
        """True while the guest's overlay is mounted on the host."""
        return bool(mounts_under(self.merged))


@contextlib.contextmanager
def boot_guest(
    network: BridgeNetwork,
    name: str,
    user_data: bytes,
    meta_data: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Iterator[Guest]:
    """``with boot_guest(net, "web", ud, {...}) as guest:`` — start, yield, always stop."""
    guest = Guest(network, name, user_data, meta_data, **kwargs)
    with guest:
        yield guest


__all__ = [
    "Guest",
    "boot_guest",
    "cleanup_stale_runs",
]
