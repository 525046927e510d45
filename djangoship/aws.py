"""The AWS CLI as the scaled profile's transport, as OpenSSH is one server's (ssh.py): the operator's own `aws`
(v2, or v1 for everything but sessions), run as a subprocess with an argument vector — never a shell string, so
nothing in an argument (a management command's, a log unit's) is ever parsed by a shell here. Sessions
(`aws ssm start-session`) need AWS's session-manager-plugin beside it. Credentials, profile and endpoint are the
CLI's own (`AWS_PROFILE`, `aws sso login`, …); the region is the stack's.

Building a command line (`Aws.argv`, and the functions below) is kept apart from running it (`Aws.call`,
`Aws.interactive`), so tests check the first without AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from .attached import run_attached

RUN_SHELL_SCRIPT = "AWS-RunShellScript"  # Run Command's document: the commands run by `sh` as root
INTERACTIVE_COMMAND = "AWS-StartInteractiveCommand"  # a session running one command (as ssm-user), with a terminal
OUTPUT_LIMIT = 24000  # characters of a command's stdout (and stderr) GetCommandInvocation returns; the rest is cut


class AwsError(Exception):
    """An AWS CLI call failed; the message is the CLI's own."""


@dataclass(frozen=True)
class Aws:
    region: str

    def argv(self, service: str, operation: str, *args: str) -> list[str]:
        """`aws SERVICE OPERATION ARGS…` in the stack's region, answering JSON whatever the user's profile says."""
        return ["aws", "--region", self.region, "--output", "json", service, operation, *args]

    def call(self, service: str, operation: str, *args: str) -> Any:
        """Run one API call and return its parsed answer."""
        command = self.argv(service, operation, *args)
        if shutil.which("aws") is None:
            raise AwsError(
                "the AWS CLI (`aws`) is not on PATH: the scaled profile's verbs use it (v2, with the "
                "session-manager-plugin for sessions; docs/operations.md, 'Day to day')"
            )
        result = subprocess.run(command, capture_output=True, text=True, env=_cli_env())
        if result.returncode != 0:
            raise AwsError(f"`aws {service} {operation}` failed: {result.stderr.strip() or result.stdout.strip()}")
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def interactive(self, command: list[str]) -> int:
        """A session at the terminal (`aws ssm start-session …`); returns its exit status (130: interrupted)."""
        if shutil.which("session-manager-plugin") is None:
            raise AwsError(
                "sessions need AWS's session-manager-plugin beside the AWS CLI (docs/operations.md, 'Day to day'); "
                f"the command would have been: {' '.join(command)}"
            )
        return run_attached(command, env=_cli_env())


def _cli_env() -> dict[str, str]:
    # No pager (v2 pipes output through `less` by default): the verbs read the CLI's output themselves.
    return {**os.environ, "AWS_PAGER": ""}


# --- the calls the verbs make ------------------------------------------------------------------------------


def describe_group(group: str) -> tuple[str, ...]:
    return ("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", group)


def last_refresh(group: str) -> tuple[str, ...]:
    return ("autoscaling", "describe-instance-refreshes", "--auto-scaling-group-name", group, "--max-records", "1")


def send_command(instance_ids: list[str], command: str, comment: str, timeout: int) -> tuple[str, ...]:
    """Run Command: `command` (one shell command line, as the single server's ssh would run it) on each instance, as
    root; `timeout` s before the agent stops it. The parameters are JSON, one argument: the CLI reads it as such."""
    parameters = {"commands": [command], "executionTimeout": [str(timeout)]}
    return (
        "ssm",
        "send-command",
        "--document-name",
        RUN_SHELL_SCRIPT,
        "--instance-ids",
        *instance_ids,
        "--comment",
        comment[:100],  # the API's limit
        "--parameters",
        json.dumps(parameters),
    )


def command_invocations(command_id: str) -> tuple[str, ...]:
    return ("ssm", "list-command-invocations", "--command-id", command_id)


def command_invocation(command_id: str, instance_id: str) -> tuple[str, ...]:
    return ("ssm", "get-command-invocation", "--command-id", command_id, "--instance-id", instance_id)


def start_session(aws: Aws, instance_id: str, command: str | None) -> list[str]:
    """A shell on the instance (as ssm-user, who may sudo), or one command with a terminal."""
    argv = ["aws", "--region", aws.region, "ssm", "start-session", "--target", instance_id]
    if command is not None:
        argv += ["--document-name", INTERACTIVE_COMMAND, "--parameters", json.dumps({"command": [command]})]
    return argv
