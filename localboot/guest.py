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

:meth:`Guest.stop` powers the guest off and removes every trace (process, overlay mount,
temporary directories); it is idempotent and runs on context-manager exit, at interpreter
exit, and when start-up fails halfway. nspawn also gets SIGTERM should this process die
(``setpriv --pdeathsig``), so a killed test run does not leave a guest running.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, TypeAlias

import paramiko

from ._util import CommandError, mounts_under, remove_tree, run, unmount_tree
from .network import BridgeNetwork
from .rootfs import DEFAULT_CACHE_ROOT, DEFAULT_RELEASE, ensure_rootfs

REBOOT_EXIT_CODE = 133
MAX_BOOTS = 50
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

KeyLike: TypeAlias = "paramiko.PKey | str"


class SSHResult(NamedTuple):
    """Outcome of :meth:`Guest.run`; unpacks as ``(exit_code, stdout, stderr)``."""

    exit_code: int
    stdout: bytes
    stderr: bytes


class GuestError(RuntimeError):
    """The guest failed to boot, stopped unexpectedly, or did not answer in time."""


def host_nameserver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str:
    """The host's own IPv4 resolver, for the guest's network-config.

    A loopback stub (systemd-resolved) is unreachable from the guest, so its upstream file
    is used instead when present.
    """
    candidates = [resolv_conf, Path("/run/systemd/resolve/resolv.conf")]
    for path in candidates:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(parts[1])
                except ValueError:
                    continue
                if address.version == 4 and not address.is_loopback:
                    return str(address)
    raise GuestError(f"no non-loopback IPv4 nameserver in {', '.join(map(str, candidates))}")


def load_private_key(key: KeyLike) -> paramiko.PKey:
    """A paramiko key from a key object or from PEM / OpenSSH private key text."""
    if isinstance(key, paramiko.PKey):
        return key
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(key))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("unsupported or malformed private key (ed25519, ecdsa, rsa are accepted)")


def _check_path(value: str, what: str) -> None:
    if _UNSAFE_PATH_CHARS & set(value):
        raise ValueError(f"{what} contains one of , : \\ or a newline: {value!r}")


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a live process from a reused PID."""
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_text.rsplit(")", 1)[1].split()[19]


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.extend(int(k) for k in (task / "children").read_text().split())
        except OSError:
            continue
    return kids


def _is_namespace_init(pid: int) -> bool:
    """True when ``pid`` is PID 1 of a PID namespace other than ours."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            ids = line.split()[1:]
            return len(ids) >= 2 and ids[-1] == "1"
    return False


def _processes_rooted_under(path: Path) -> list[int]:
    """PIDs whose root directory is ``path`` or below it (a container still using it)."""
    root = os.path.realpath(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            proc_root = os.readlink(entry / "root")
        except OSError:
            continue
        if proc_root == root or proc_root.startswith(root + "/"):
            found.append(int(entry.name))
    return found


def cleanup_stale_runs(run_root: Path = RUN_ROOT) -> list[Path]:
    """Remove run directories (overlay + seed) whose owning process is gone.

    A directory still in use by some process (a guest that outlived its owner) is left
    alone. Returns the directories removed.
    """
    removed: list[Path] = []
    if not run_root.is_dir():
        return removed
    for rundir in sorted(run_root.iterdir()):
        owner_file = rundir / "owner.json"
        try:
            owner = json.loads(owner_file.read_text())
            alive = _proc_start_time(int(owner["pid"])) == owner["start"]
        except (OSError, ValueError, KeyError, TypeError):
            # No owner yet: possibly another process setting it up right now.
            alive = time.time() - rundir.stat().st_mtime < STALE_AFTER_S
        if alive or _processes_rooted_under(rundir / "merged"):
            continue
        remove_tree(rundir)
        removed.append(rundir)
    return removed


class Guest:
    """One booted Debian guest. Use as a context manager (or call start()/stop()).

    ``meta_data`` goes to the NoCloud ``meta-data`` (``instance-id`` and ``local-hostname``
    default to values derived from ``name``); put the SSH public key line(s) under
    ``"public-keys"`` as EC2 delivers the key pair. ``user_data`` is written byte for byte.
    ``binds`` are ``(host_path, guest_path)`` bind mounts (e.g. a folder standing in for an
    EBS data volume that outlives the guest). ``ssh_key`` is the default private key for
    :meth:`ssh`, :meth:`run` and :meth:`put`.
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

    def _terminate(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            proc = self._proc
            self._cond.notify_all()
        if proc is not None and proc.poll() is None:
            init_pid = self._current_init_pid()
            proc.send_signal(signal.SIGTERM)
            if not self._wait_exited(proc, timeout):
                # Killing nspawn alone would orphan the container: kill its init too. Both
                # PIDs are re-checked first so that a reused PID is never hit.
                if init_pid is not None and _is_namespace_init(init_pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(init_pid, signal.SIGKILL)
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                if not self._wait_exited(proc, timeout):
                    raise GuestError(f"systemd-nspawn (pid {proc.pid}) did not exit after SIGKILL")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise GuestError(f"supervisor thread of {self.name} did not finish")

    def _wait_exited(self, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        """Wait until the supervisor thread has reaped ``proc`` (or it is reaped here)."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    return False
                return True
            return self._cond.wait_for(lambda: self._proc is not proc, timeout)

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
        (self.rundir / "owner.json").write_text(
            json.dumps({"pid": os.getpid(), "start": _proc_start_time(os.getpid())})
        )
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)])

    def _write_seed(self) -> None:
        seed = self.merged / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        seed.chmod(0o700)
        network_config = {
            "version": 1,
            "config": [
                {
                    "type": "physical",
                    "name": "host0",
                    "subnets": [
                        {
                            "type": "static",
                            "address": f"{self.ip}/{self.network.prefixlen}",
                            "gateway": self.network.gateway,
                            "dns_nameservers": [self.nameserver],
                        }
                    ],
                }
            ],
        }
        # JSON is YAML, and needs no YAML library here.
        self._write_private(seed / "meta-data", json.dumps(self.meta_data, indent=2).encode() + b"\n")
        self._write_private(seed / "network-config", json.dumps(network_config, indent=2).encode() + b"\n")
        self._write_private(seed / "user-data", self.user_data)

    @staticmethod
    def _write_private(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def _prune_logs(self) -> None:
        logs = sorted(self._log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        for old in logs[:-KEEP_LOGS]:
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
            "--resolv-conf=copy-host",
            "--timezone=off",
            "--console=read-only",
        ]
        argv += [f"--bind={host}:{guest}" for host, guest in self.binds]
        return argv

    # ----------------------------------------------------------------- supervision

    def _supervise(self) -> None:
        """Run nspawn; start it again when the guest rebooted (exit 133), until stopped."""
        argv = self.nspawn_argv()
        while True:
            with self._cond:
                if self._stopping or self.boot_count >= MAX_BOOTS:
                    return
                with open(self.console_log, "ab") as log:
                    log.write(f"\n=== localboot: boot {self.boot_count + 1} of {self.name} ===\n".encode())
                    log.flush()
                    proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                self._proc = proc
                self.boot_count += 1
                self.last_boot_started_at = time.monotonic()
                self._cond.notify_all()
            code = proc.wait()
            with self._cond:
                self._proc = None
                self.last_exit_code = code
                self._cond.notify_all()
            if code != REBOOT_EXIT_CODE:
                return

    def _current_init_pid(self) -> int | None:
        """PID (host view) of the guest's init for the current boot, or None."""
        with self._cond:
            proc, boot = self._proc, self.boot_count
            if self._init_pid and self._init_pid[0] == boot and proc is not None:
                return self._init_pid[1]
        if proc is None:
            return None
        queue: list[int] = [proc.pid]
        seen: set[int] = set()
        while queue:
            pid = queue.pop(0)
            if pid in seen or len(seen) > 64:
                continue
            seen.add(pid)
            if pid != proc.pid and _is_namespace_init(pid):
                with self._cond:
                    if self._proc is proc:
                        self._init_pid = (boot, pid)
                return pid
            queue.extend(_children(pid))
        return None

    def _running(self) -> bool:
        with self._cond:
            return self._proc is not None and not self._stopping

    def _fail(self, message: str) -> GuestError:
        return GuestError(f"{message}\n--- console of {self.name} (tail) ---\n{self.console_tail()}")

    def console_tail(self, chars: int = 3000) -> str:
        """The end of the console log (for error messages)."""
        try:
            data = self.console_log.read_bytes()[-chars:]
        except OSError:
            return ""
        return data.decode(errors="replace")

    def _wait_for_boot(self, boot: int, timeout: float) -> int:
        """Wait until boot number ``boot`` runs an init; return its PID."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                exited = self.boot_count >= boot and self._proc is None and not self._stopping
                if exited and (self.last_exit_code != REBOOT_EXIT_CODE or self.boot_count >= MAX_BOOTS):
                    raise self._fail(f"systemd-nspawn exited with {self.last_exit_code}")
                if self._stopping:
                    raise GuestError(f"guest {self.name} is being stopped")
            if self.boot_count >= boot:
                pid = self._current_init_pid()
                if pid is not None:
                    return pid
            with self._cond:
                self._cond.wait(0.1)
        raise self._fail(f"guest {self.name}: no init process of boot {boot} after {timeout}s")

    @property
    def nspawn_pid(self) -> int | None:
        """PID of the current systemd-nspawn process (None between boots or when stopped)."""
        with self._cond:
            return self._proc.pid if self._proc is not None else None

    @property
    def init_pid(self) -> int:
        """PID (host view) of the guest's init; raises if the guest is not running."""
        pid = self._current_init_pid()
        if pid is None:
            raise GuestError(f"guest {self.name} is not running")
        return pid

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

    def _ssh_banner(self) -> bool:
        try:
            with socket.create_connection((self.ip, 22), timeout=1) as sock:
                sock.settimeout(2)
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def host_keys(self) -> list[str]:
        """The guest's SSH host public keys (``type base64``), read from its file system."""
        keys = []
        for pub in sorted((self.merged / "etc/ssh").glob("ssh_host_*_key.pub")):
            parts = pub.read_text().split()
            if len(parts) >= 2:
                keys.append(f"{parts[0]} {parts[1]}")
        return keys

    def ssh(self, user: str = "admin", key: KeyLike | None = None, timeout: float = 30) -> paramiko.SSHClient:
        """A new SSH connection (key auth only; the guest's host key is verified).

        The caller owns the returned client and should close it.
        """
        pkey = load_private_key(key) if key is not None else self.ssh_key
        if pkey is None:
            raise ValueError("no SSH key: pass key= or give the Guest an ssh_key")
        client = paramiko.SSHClient()
        for line in self.host_keys():
            entry = paramiko.hostkeys.HostKeyEntry.from_line(f"{self.ip} {line}")
            if entry is not None and entry.key is not None:
                client.get_host_keys().add(self.ip, entry.key.get_name(), entry.key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.ip,
                username=user,
                pkey=pkey,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except BaseException:
            client.close()
            raise
        return client

    def _client(self, user: str, key: KeyLike | None) -> paramiko.SSHClient:
        cache_key = user if key is None else f"{user}:{id(key)}"
        client = self._clients.get(cache_key)
        transport = client.get_transport() if client else None
        if client is None or transport is None or not transport.is_active():
            if client is not None:
                client.close()
            client = self.ssh(user, key)
            self._clients[cache_key] = client
        return client

    def _close_clients(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def run(
        self,
        cmd: str,
        stdin: bytes | None = None,
        timeout: float = 600,
        user: str = "admin",
        key: KeyLike | None = None,
    ) -> SSHResult:
        """Run ``cmd`` over SSH exec (no PTY), feeding ``stdin``; bounded by ``timeout`` s."""
        transport = self._client(user, key).get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=30)
        try:
            channel.exec_command(cmd)
            feeder = threading.Thread(target=self._feed, args=(channel, stdin), daemon=True)
            feeder.start()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            # sshd sends all output before the exit status, and paramiko buffers messages in
            # order: once the status is there, draining the buffers gets everything.
            while not channel.exit_status_ready():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{cmd!r} on {self.name} still running after {timeout}s")
                chunk_out = _drain(channel.recv_ready, channel.recv)
                chunk_err = _drain(channel.recv_stderr_ready, channel.recv_stderr)
                out += chunk_out
                err += chunk_err
                if not chunk_out and not chunk_err:
                    time.sleep(0.02)
            out += _drain(channel.recv_ready, channel.recv)
            err += _drain(channel.recv_stderr_ready, channel.recv_stderr)
            return SSHResult(channel.recv_exit_status(), bytes(out), bytes(err))
        finally:
            channel.close()

    @staticmethod
    def _feed(channel: paramiko.Channel, data: bytes | None) -> None:
        try:
            if data:
                channel.sendall(data)
            channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the command exited without reading all of its input

    def put(
        self,
        local_path: str | os.PathLike[str],
        remote_path: str,
        user: str = "admin",
        key: KeyLike | None = None,
    ) -> None:
        """Upload a file, or a directory recursively, over SFTP (modes preserved)."""
        local = Path(local_path)
        sftp = self._client(user, key).open_sftp()
        try:
            if local.is_dir():
                self._put_dir(sftp, local, remote_path)
            else:
                sftp.put(str(local), remote_path)
                sftp.chmod(remote_path, stat.S_IMODE(local.stat().st_mode))
        finally:
            sftp.close()

    def _put_dir(self, sftp: paramiko.SFTPClient, local: Path, remote: str) -> None:
        with contextlib.suppress(OSError):
            sftp.mkdir(remote)
        sftp.chmod(remote, stat.S_IMODE(local.stat().st_mode))
        for entry in sorted(local.iterdir()):
            target = f"{remote.rstrip('/')}/{entry.name}"
            if entry.is_symlink():
                with contextlib.suppress(OSError):
                    sftp.remove(target)
                sftp.symlink(os.readlink(entry), target)
            elif entry.is_dir():
                self._put_dir(sftp, entry, target)
            elif entry.is_file():
                sftp.put(str(entry), target)
                sftp.chmod(target, stat.S_IMODE(entry.stat().st_mode))

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


def _drain(ready: Any, recv: Any) -> bytes:
    data = b""
    while ready():
        data += recv(65536)
    return data


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
    "GuestError",
    "SSHResult",
    "boot_guest",
    "cleanup_stale_runs",
    "host_nameserver",
    "load_private_key",
]
