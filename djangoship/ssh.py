"""OpenSSH as the transport: the operator's own `ssh`, so `manage shell`, `logs -f` and `ssh` are interactive as
usual. Building the command line (`ssh_command`) is kept apart from running it (`Session.run`), so tests check the
first without a server.

The private key never reaches a command line, the terminal or a world-readable file: it is written 0600 into a
0700 temporary directory that is removed when the verb ends. The server's host key is pinned when the stack
provides it (`sshHostKey`); otherwise it is trusted on first use and remembered per stack (see `trust_store`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .attached import INTERRUPTED, run_attached
from .stack import Stack

UNREACHABLE = 255  # ssh's own exit status when it could not connect or authenticate


@dataclass(frozen=True)
class HostTrust:
    """Where ssh checks the server's host key, and how strictly."""

    known_hosts: Path
    strict: str  # "yes": pinned, anything else is refused; "accept-new": trust on first use, refuse changes
    pinned: bool


def trust_store(stack_name: str) -> Path:
    """The per-stack known_hosts of trust on first use: `$XDG_CONFIG_HOME/djangoship/known_hosts/<stack>`."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "djangoship" / "known_hosts" / stack_name


def ssh_command(stack: Stack, key_file: Path | None, trust: HostTrust, remote: str | None, *, tty: bool) -> list[str]:
    """The ssh command line for `remote` (None: a login shell). Pure: no file is touched."""
    options = {
        "BatchMode": "yes",  # key only: never fall back to a password prompt
        "ConnectTimeout": "15",
        "ServerAliveInterval": "15",  # `logs -f` on a quiet site: notice a dead connection
        "UserKnownHostsFile": str(trust.known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": trust.strict,
        "HashKnownHosts": "no",
        "LogLevel": "ERROR",  # ssh's "Warning: Permanently added …"; first use is announced by Session instead
    }
    if key_file is not None:
        options["IdentitiesOnly"] = "yes"
    command = ["ssh", "-t" if tty else "-T"]
    for name, value in options.items():
        command += ["-o", f"{name}={value}"]
    if key_file is not None:
        command += ["-i", str(key_file)]
    command += ["--", stack.destination]
    if remote is not None:
        command.append(remote)
    return command


class Session:
    """The key and the host trust for one verb's ssh runs; `with Session(stack) as session: session.run(…)`."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self._dir: Path | None = None
        self.key_file: Path | None = None
        self.trust: HostTrust | None = None

    def __enter__(self) -> Session:
        self._dir = Path(tempfile.mkdtemp(prefix="djangoship-"))  # mode 0700, only this user
        if self.stack.private_key:
            self.key_file = self._dir / "id"
            descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as key:
                key.write(self.stack.private_key.rstrip("\n") + "\n")
        self.trust = self._host_trust(self._dir)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _host_trust(self, scratch: Path) -> HostTrust:
        if self.stack.host_key:
            pinned = scratch / "known_hosts"
            keys = [line.strip() for line in self.stack.host_key.splitlines() if line.strip()]
            pinned.write_text("".join(f"{self.stack.host} {key}\n" for key in keys))
            return HostTrust(pinned, "yes", pinned=True)
        store = trust_store(self.stack.name)
        store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        known = store.exists() and any(
            line.split(" ", 1)[0] == self.stack.host for line in store.read_text().splitlines()
        )
        if not known:
            print(
                f"djangoship: the stack has no `sshHostKey` output to pin; trusting {self.stack.host}'s host key on "
                f"first use and remembering it in {store} (a different key later is refused)",
                file=sys.stderr,
            )
        return HostTrust(store, "accept-new", pinned=False)

    def command(self, remote: str | None, *, tty: bool) -> list[str]:
        assert self.trust is not None, "use Session as a context manager"
        return ssh_command(self.stack, self.key_file, self.trust, remote, tty=tty)

    def run(self, remote: str | None, *, tty: bool = False, stdout: IO[bytes] | None = None) -> int:
        """Run `remote` on the server, the terminal attached (or stdout to a file); returns its exit status (130:
        interrupted, attached.run_attached)."""
        status = run_attached(self.command(remote, tty=tty), stdout=stdout)
        if status == INTERRUPTED:
            return INTERRUPTED
        if status == UNREACHABLE:
            self.explain_unreachable()
        return status

    def capture(self, remote: str) -> subprocess.CompletedProcess[str]:
        """Run a short remote command and keep its output (its errors still go to the terminal)."""
        result = subprocess.run(self.command(remote, tty=False), stdout=subprocess.PIPE, text=True)
        if result.returncode == UNREACHABLE:
            self.explain_unreachable()
        return result

    def explain_unreachable(self) -> None:
        assert self.trust is not None
        hint = (
            ", or its host key is not the stack's `sshHostKey`"
            if self.trust.pinned
            else f"; if the server was replaced (a new host key), remove its line from {self.trust.known_hosts}"
        )
        print(
            f"djangoship: ssh to {self.stack.destination} failed (exit {UNREACHABLE}): the server may still be "
            f"booting, or your address is not in `sshAllowedCidrs`{hint}",
            file=sys.stderr,
        )
