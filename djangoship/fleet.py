"""The scaled profile's app servers as the verbs see them: the Auto Scaling group's instances, which one a verb runs
on (`--instance`, or one in service, said which), and a server command run on one or all of them through Run
Command — the same command line the single server's ssh would run (remote.py, report.py), as root.

Run Command is not a stream: a command's output comes back when it has ended, cut by AWS at 24,000 characters
(said when it is). What needs a terminal or a stream (`manage shell`, `logs -f`, `ssh`) is a Session Manager
session instead (aws.start_session).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass

from . import aws
from .aws import Aws
from .stack import GroupStack, StackError

INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
# Run Command's statuses of an invocation that has not ended yet.
RUNNING = {"Pending", "InProgress", "Delayed", "Cancelling"}


def say(message: str) -> None:
    print(f"djangoship: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Server:
    instance_id: str
    zone: str
    state: str  # the group's lifecycle state: Pending:Wait, InService, Terminating, …
    health: str  # Healthy | Unhealthy (the load balancer's health check, with the ELB check type)
    launch_template_version: str


@dataclass(frozen=True)
class Invocation:
    """One server's end of a command."""

    instance_id: str
    status: str  # Success, Failed, TimedOut, Cancelled, …
    code: int  # the command's exit status (-1: it never ran)
    stdout: str
    stderr: str
    details: str = ""

    @property
    def exit_status(self) -> int:
        if self.status == "Success":
            return 0
        return self.code if self.code > 0 else 1


class Fleet:
    def __init__(self, stack: GroupStack, cli: Aws, instance: str | None = None, poll: float = 0.5):
        if instance is not None and not INSTANCE_ID.fullmatch(instance):
            raise StackError(f"{instance!r} is not an instance id like i-0123456789abcdef0")
        self.stack, self.aws, self.instance, self.poll = stack, cli, instance, poll
        self._group: dict | None = None

    # --- the group ----------------------------------------------------------------------------------------

    def group(self) -> dict:
        if self._group is None:
            found = self.aws.call(*aws.describe_group(self.stack.group)).get("AutoScalingGroups", [])
            if not found:
                raise StackError(f"the Auto Scaling group {self.stack.group} does not exist (destroyed?)")
            self._group = found[0]
        return self._group

    def servers(self) -> list[Server]:
        return sorted(
            (
                Server(
                    item["InstanceId"],
                    item.get("AvailabilityZone", "?"),
                    item.get("LifecycleState", "?"),
                    item.get("HealthStatus", "?"),
                    str((item.get("LaunchTemplate") or {}).get("Version", "?")),
                )
                for item in self.group().get("Instances", [])
            ),
            key=lambda server: server.instance_id,
        )

    def in_service(self) -> list[Server]:
        return [server for server in self.servers() if server.state == "InService"]

    def targets(self) -> list[str]:
        """The servers a verb for all of them runs on: `--instance`, or every one in service."""
        if self.instance is not None:
            return [self.one()]
        serving = self.in_service()
        if not serving:
            raise StackError(f"no app server of {self.stack.group} is in service (see the status verb)")
        return [server.instance_id for server in serving]

    def one(self) -> str:
        """The server a verb for one runs on: `--instance` (any server of the group), or one in service."""
        if self.instance is not None:
            if self.instance not in {server.instance_id for server in self.servers()}:
                raise StackError(f"{self.instance} is not a server of {self.stack.group} (see the status verb)")
            return self.instance
        serving = self.in_service()
        if not serving:
            raise StackError(f"no app server of {self.stack.group} is in service (see the status verb)")
        chosen = serving[0]
        others = f", one of {len(serving)} in service" if len(serving) > 1 else ""
        say(f"on {chosen.instance_id} ({chosen.zone}{others}; --instance ID picks another)")
        return chosen.instance_id

    # --- Run Command --------------------------------------------------------------------------------------

    def run(self, instance_ids: list[str], command: str, what: str, timeout: int = 600) -> dict[str, Invocation]:
        """`command` on each instance as root; waits for every one to end. Ctrl-C stops the waiting (not the
        command: the message says how to cancel it)."""
        sent = self.aws.call(*aws.send_command(instance_ids, command, f"djangoship {what}", timeout))
        command_id = sent["Command"]["CommandId"]
        pending, ended, states = set(instance_ids), {}, {}
        delay = self.poll
        started = time.monotonic()
        # Past the command's own timeout (and a margin for delivery), an instance that never answered is given up.
        deadline, next_word = started + timeout + 120, started + 30
        try:
            while pending:
                time.sleep(delay)
                delay = min(delay * 1.5, 3.0)
                listed = self.aws.call(*aws.command_invocations(command_id)).get("CommandInvocations", [])
                for item in listed:
                    instance_id = item.get("InstanceId", "")
                    states[instance_id] = item.get("Status", "Pending")
                    if instance_id in pending and states[instance_id] not in RUNNING:
                        ended[instance_id] = self.invocation(command_id, instance_id)
                        pending.discard(instance_id)
                now = time.monotonic()
                if pending and now >= next_word:
                    waiting = ", ".join(f"{i} {states.get(i, 'Pending')}" for i in sorted(pending))
                    say(f"{what}: waiting for {waiting} ({now - started:.0f} s)")
                    next_word = now + 30
                if pending and now >= deadline:
                    for instance_id in sorted(pending):
                        ended[instance_id] = Invocation(
                            instance_id, "NoAnswer", -1, "", "", f"no answer after {timeout + 120} s (its agent?)"
                        )
                    pending.clear()
        except KeyboardInterrupt:
            say(
                f"stopped waiting; the command goes on on the server (`aws ssm cancel-command --command-id "
                f"{command_id}` stops it)"
            )
            raise
        return {instance_id: ended[instance_id] for instance_id in instance_ids}

    def invocation(self, command_id: str, instance_id: str) -> Invocation:
        found = self.aws.call(*aws.command_invocation(command_id, instance_id))
        return Invocation(
            instance_id,
            found.get("Status", "?"),
            int(found.get("ResponseCode", -1)),
            found.get("StandardOutputContent", ""),
            found.get("StandardErrorContent", ""),
            found.get("StatusDetails", ""),
        )


def report_ended(invocation: Invocation, what: str) -> None:
    """What the operator needs to know beyond the output: a cut output, a command that did not succeed."""
    for name, text in (("output", invocation.stdout), ("error output", invocation.stderr)):
        if len(text) >= aws.OUTPUT_LIMIT:
            say(
                f"{invocation.instance_id}: Run Command returns {aws.OUTPUT_LIMIT:,} characters of {name}; "
                "the rest was cut"
            )
    if invocation.status != "Success":
        detail = f", {invocation.details}" if invocation.details and invocation.details != invocation.status else ""
        say(f"{what} failed on {invocation.instance_id}: {invocation.status}{detail} (exit {invocation.code})")
