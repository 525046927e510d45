"""The replay's dial, as pulumi-command's: connection errors are retried within the step's time (a booting
server refuses, and sshd refuses again for a moment while it re-executes itself on a reload); a host key
that differs from the pinned one fails the step at once. No guest: the host and the key exchange are stubs."""

from __future__ import annotations

from typing import Any

import pytest

from harness import replay
from harness.mockrun import Registered

PINNED = "ssh-ed25519 AAAApinned"


class ReachableHost:
    ip = "192.0.2.10"

    def run(self, cmd: str, **_: Any) -> None:
        return None


def step() -> Registered:
    connection = {"host": ReachableHost.ip, "user": "admin", "privateKey": "key", "hostKey": PINNED}
    return Registered(
        type="command:remote:Command",
        name="photofeed-deploy",
        urn="urn:pulumi:dev::djangoship::command:remote:Command::photofeed-deploy",
        parent="",
        inputs={"connection": connection, "create": "true"},
        secret_inputs=set(),
        dependencies=[],
        ignore_changes=[],
        replacement_trigger=None,
        protect=None,
        retain_on_delete=None,
        custom_timeouts={},
    )


def test_a_refusal_after_the_login_is_retried_like_any_dial_error(monkeypatch):
    answers: list[Any] = [ConnectionRefusedError(111, "Connection refused"), PINNED]

    def presented(address: str, key_type: str) -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(replay, "presented_host_key", presented)
    monkeypatch.setattr(replay.time, "sleep", lambda seconds: None)
    logged: list[str] = []
    replay.dial(step(), ReachableHost(), timeout=60, log=logged.append)
    assert answers == [], "the host key was not asked for again after the refusal"
    assert logged == ["[replay] waiting for SSH on 192.0.2.10 (ConnectionRefusedError)"]


def test_another_host_key_fails_the_step_without_retrying(monkeypatch):
    asked: list[str] = []

    def presented(address: str, key_type: str) -> str:
        asked.append(address)
        return "ssh-ed25519 AAAAother"

    monkeypatch.setattr(replay, "presented_host_key", presented)
    with pytest.raises(replay.StepFailed, match="host key mismatch"):
        replay.dial(step(), ReachableHost(), timeout=60, log=lambda line: None)
    assert asked == [ReachableHost.ip]


class GuestWhoseNetworkFailed:
    """A local guest whose console shows a boot no wait mends (localboot.Guest.boot_problem)."""

    ip = "192.0.2.11"

    def run(self, cmd: str, **_: Any) -> None:
        raise OSError("Unable to connect to port 22")

    def boot_problem(self) -> str:
        return "web1's boot failed: 'Failed to start networking.service' on its console (/tmp/web1.log)"


def test_a_guest_whose_boot_failed_is_not_waited_on_for_the_steps_whole_time(monkeypatch):
    monkeypatch.setattr(replay.time, "sleep", lambda seconds: pytest.fail("waited on a boot that failed"))
    with pytest.raises(TimeoutError, match="Failed to start networking.service"):
        replay.dial(step(), GuestWhoseNetworkFailed(), timeout=1800, log=lambda line: None)


def test_the_console_s_failure_is_read_through_its_colours(tmp_path):
    from localboot.guest import Guest

    console = tmp_path / "web1.log"
    console.write_text("[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mnetworking.service\x1b[0m - Raise…\n")
    guest = Guest.__new__(Guest)
    guest.name, guest.console_log = "web1", console
    assert "networking.service" in (guest.boot_problem() or "")
    console.write_text("[  OK  ] Finished networking.service - Raise network interfaces.\n")
    assert guest.boot_problem() is None
