"""Replay the program's own remote steps on a real host over SSH, as pulumi-command would run them.

The steps come from `harness/mockrun.py`: the exact `create` text, `stdin` and uploaded files that
`pulumi up` would send. Nothing here knows what the steps do — there is no second copy of the deploy logic.
What this adds is the engine's bookkeeping: a step whose inputs are unchanged since its last successful
run does not run again; a failed step stops the run and runs again next time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paramiko

from harness.mockrun import ProgramRun, Registered


class Host(Protocol):
    """What replay needs from a machine: SSH exec with stdin, and SFTP upload (localboot.Guest has both)."""

    ip: str

    def run(
        self, cmd: str, stdin: bytes | None = None, timeout: float = 600, user: str = "admin", key: Any = None
    ) -> Any: ...

    def put(self, local_path: Any, remote_path: str, user: str = "admin", key: Any = None) -> None: ...


class StepFailed(RuntimeError):
    def __init__(self, step: str, exit_code: int, stdout: str, stderr: str):
        self.step, self.exit_code, self.stdout, self.stderr = step, exit_code, stdout, stderr
        super().__init__(f"step {step} failed with exit code {exit_code}:\n{stderr[-4000:] or stdout[-4000:]}")


@dataclass
class StepResult:
    name: str
    ran: bool
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""


@dataclass
class ReplayState:
    """The part of Pulumi's state that decides whether a step runs: its inputs at its last success."""

    fingerprints: dict[str, str] = field(default_factory=dict)


def fingerprint(step: Registered) -> str:
    return hashlib.sha256(json.dumps(step.inputs, sort_keys=True, default=str).encode()).hexdigest()


def _timeout_seconds(step: Registered) -> float:
    text = step.custom_timeouts.get("create") or "30m"
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


def dial(step: Registered, host: Host, timeout: float, log: Any) -> None:
    """pulumi-command with dial_error_limit=-1: keep connecting until sshd answers, proves the pinned host key
    and accepts the user's key (a booting server refuses, then rejects keys until cloud-init installed them,
    and refuses again for a moment while sshd re-executes itself on a reload), within the step's time.
    The provider checks the host key in the same handshake; here it takes a second connection, so both are
    inside the retry. A host key that differs fails the step at once: no wait would change it."""
    connection = step.inputs["connection"]
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            host.run("true", user=connection["user"], key=connection["privateKey"], timeout=30)
            if connection.get("hostKey"):
                check_host_key(step, host.ip, connection["hostKey"])
            return
        except StepFailed:
            raise
        except Exception as error:  # noqa: BLE001 — any dial error is retried, as the provider does
            problem = getattr(host, "boot_problem", None)  # a local guest's console: a boot no wait mends
            if problem is not None and (failed := problem()):
                raise TimeoutError(f"could not connect to {host.ip}: {failed}") from error
            if time.monotonic() > deadline:
                where = f"{connection['user']}@{host.ip}"
                raise TimeoutError(f"could not connect as {where} within {timeout:.0f} s: {error}") from error
            if attempts == 1:
                log(f"[replay] waiting for SSH on {host.ip} ({type(error).__name__})")
            time.sleep(1)


def presented_host_key(address: str, key_type: str, timeout: float = 15) -> str:
    """The host key (`type base64`) that whoever answers at `address` proves it holds (the key exchange's
    signature is checked), asking for `key_type` first as a client that knows the key would."""
    with socket.create_connection((address, 22), timeout=timeout) as sock:
        transport = paramiko.Transport(sock)
        try:
            options = transport.get_security_options()
            options.key_types = [key_type, *(kind for kind in options.key_types if kind != key_type)]
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
            return f"{key.get_name()} {base64.b64encode(key.asbytes()).decode()}"
        finally:
            transport.close()


def check_host_key(step: Registered, address: str, pinned: str) -> None:
    """pulumi-command with `host_key`: the connection is refused unless the server proves that key."""
    key_type = pinned.split()[0]
    presented = presented_host_key(address, key_type)
    if presented.split()[:2] != pinned.split()[:2]:
        raise StepFailed(step.name, 255, "", f"ssh: handshake failed: host key mismatch at {address}: {presented}")


def run_step(step: Registered, host: Host, log: Any) -> StepResult:
    """One step as pulumi-command runs it: dial, check the pinned host key, then upload or run."""
    connection = step.inputs["connection"]
    if connection["host"] != host.ip:
        raise AssertionError(f"{step.name} connects to {connection['host']}, not to the host {host.ip}")
    started = time.monotonic()
    user, key = connection["user"], connection["privateKey"]
    dial(step, host, _timeout_seconds(step), log)
    if step.type == "command:remote:CopyToRemote":
        remote_path = step.inputs["remotePath"]
        # pulumi-command creates the parent directories itself.
        host.run(f"mkdir -p {posixpath.dirname(remote_path)}", user=user, key=key)
        host.put(Path(step.inputs["source"]["path"]), remote_path, user=user, key=key)
        result = StepResult(step.name, ran=True, seconds=time.monotonic() - started)
    else:
        stdin = step.inputs.get("stdin")
        outcome = host.run(
            step.inputs["create"],
            stdin=stdin.encode() if stdin else None,
            timeout=_timeout_seconds(step),
            user=user,
            key=key,
        )
        stdout, stderr = outcome.stdout.decode(errors="replace"), outcome.stderr.decode(errors="replace")
        if outcome.exit_code != 0:
            raise StepFailed(step.name, outcome.exit_code, stdout, stderr)
        result = StepResult(step.name, True, time.monotonic() - started, stdout, stderr)
    log(f"[replay] {step.name}: {result.seconds:.1f} s")
    return result


def replay(run: ProgramRun, host: Host, state: ReplayState | None = None, log: Any = print) -> list[StepResult]:
    """Every step whose dependencies are done starts at once, side by side, as Pulumi's engine runs them. After a
    failure no step starts; those running finish, then the first failure is raised. Results in program order."""
    state = state if state is not None else ReplayState()
    steps = run.steps()  # refuses a cycle: some step is always ready while any is pending and none runs
    finished: dict[str, StepResult] = {}
    failures: list[BaseException] = []
    pending = list(steps)
    with ThreadPoolExecutor(max_workers=len(steps) or 1) as pool:
        running: dict[Future[StepResult], Registered] = {}
        while pending or running:
            for step in run.ready_steps(pending, set(finished)) if not failures else []:
                pending.remove(step)
                if state.fingerprints.get(step.name) == fingerprint(step):
                    finished[step.urn] = StepResult(step.name, ran=False)
                    continue
                running[pool.submit(run_step, step, host, log)] = step
            if not running:
                if failures:
                    break
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                try:
                    finished[step.urn] = future.result()
                except BaseException as error:  # noqa: BLE001 — raised below, after the running steps end
                    failures.append(error)
                else:
                    state.fingerprints[step.name] = fingerprint(step)
    if failures:
        raise failures[0]
    return [finished[step.urn] for step in steps if step.urn in finished]
