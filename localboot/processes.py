"""The guest's processes: systemd-nspawn supervised across reboots, and the host's /proc read to find them.

nspawn exits with 133 when the guest runs ``reboot``; the supervisor starts it again, so a reboot behaves as on a
server. Stopping sends SIGTERM, then SIGKILL to nspawn and to the guest's init, each PID checked first (by its
start time or its PID namespace) so that a reused PID is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from ._util import GuestError

REBOOT_EXIT_CODE = 133
MAX_BOOTS = 50


def proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a live process from a reused PID."""
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_text.rsplit(")", 1)[1].split()[19]


def child_pids(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.extend(int(k) for k in (task / "children").read_text().split())
        except OSError:
            continue
    return kids


def is_namespace_init(pid: int) -> bool:
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


def processes_rooted_under(path: Path) -> list[int]:
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


class NspawnSupervision:
    """The boot loop of one guest and the PIDs it runs as (mixed into :class:`localboot.guest.Guest`)."""

    name: str
    console_log: Path
    boot_count: int
    last_exit_code: int | None
    last_boot_started_at: float | None
    _cond: threading.Condition
    _proc: subprocess.Popen[bytes] | None
    _init_pid: tuple[int, int] | None
    _stopping: bool
    _thread: threading.Thread | None

    def nspawn_argv(self) -> list[str]:
        raise NotImplementedError

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
            if pid != proc.pid and is_namespace_init(pid):
                with self._cond:
                    if self._proc is proc:
                        self._init_pid = (boot, pid)
                return pid
            queue.extend(child_pids(pid))
        return None

    def _running(self) -> bool:
        with self._cond:
            return self._proc is not None and not self._stopping

    def running(self) -> bool:
        """True while the guest runs (between boots of a reboot included), until it powers off or is stopped."""
        with self._cond:
            rebooting = self._proc is None and self.last_exit_code == REBOOT_EXIT_CODE
            return (self._proc is not None or rebooting) and not self._stopping

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
                if init_pid is not None and is_namespace_init(init_pid):
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

    def _fail(self, message: str) -> GuestError:
        return GuestError(f"{message}\n--- console of {self.name} (tail) ---\n{self.console_tail()}")

    def console_tail(self, chars: int = 3000) -> str:
        """The end of the console log (for error messages)."""
        try:
            data = self.console_log.read_bytes()[-chars:]
        except OSError:
            return ""
        return data.decode(errors="replace")
