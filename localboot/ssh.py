"""SSH exec and SFTP to a guest with paramiko: key authentication only, the guest's host keys pinned."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import paramiko

KeyLike: TypeAlias = "paramiko.PKey | str"


class SSHResult(NamedTuple):
    """Outcome of :meth:`Guest.run`; unpacks as ``(exit_code, stdout, stderr)``."""

    exit_code: int
    stdout: bytes
    stderr: bytes


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


class SSHAccess:
    """Connections per user and key, reused until they drop (mixed into :class:`localboot.guest.Guest`)."""

    name: str
    ip: str
    ssh_key: paramiko.PKey | None
    _clients: dict[str, paramiko.SSHClient]
    _clients_lock: threading.Lock

    def host_keys(self) -> list[str]:
        raise NotImplementedError

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
        with self._clients_lock:
            client = self._clients.get(cache_key)
            transport = client.get_transport() if client else None
            if client is None or transport is None or not transport.is_active():
                if client is not None:
                    client.close()
                client = self.ssh(user, key)
                self._clients[cache_key] = client
            return client

    def _close_clients(self) -> None:
        with self._clients_lock:
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

    def _ssh_banner(self) -> bool:
        try:
            with socket.create_connection((self.ip, 22), timeout=1) as sock:
                sock.settimeout(2)
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False


def _drain(ready: Any, recv: Any) -> bytes:
    data = b""
    while ready():
        data += recv(65536)
    return data
