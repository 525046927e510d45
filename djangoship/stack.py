"""The stack's outputs, the only thing the verbs need to know about the servers: on one server, where it is, who to
log in as, the key; on the scaled profile, the Auto Scaling group, the region, the database and the load balancer;
in both, the app's name (which names everything on a server: /srv/<app>, <app>-manage, …).

A scaled stack (`appServerGroup`, no `publicIp`) is a `GroupStack`: its verbs go through AWS Systems Manager
(groupverbs.py), never SSH."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StackError(Exception):
    """The outputs cannot be had or lack what a verb needs; the message says what to do."""


@dataclass(frozen=True)
class Stack:
    name: str  # the Pulumi stack's name (or the outputs file's stem): keys the trust-on-first-use known_hosts
    host: str
    user: str
    app: str
    url: str
    private_key: str | None  # None: the stack was given your own public key (`sshPublicKey`); ssh finds yours
    host_key: str | None  # `sshHostKey`, "ssh-ed25519 AAAA…" (one key a line): pinned when the program provides it

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"


@dataclass(frozen=True)
class GroupStack:
    """A scaled stack: app servers in an Auto Scaling group, reached through AWS Systems Manager."""

    name: str
    app: str
    url: str
    group: str  # `appServerGroup`
    region: str
    database: str  # the RDS instance's identifier (the first label of `databaseEndpoint`)
    load_balancer_dns: str
    # What the `move` verb needs besides (stacks from before it lack `artifactsBucket`: the move says so).
    media_bucket: str = ""
    artifacts_bucket: str = ""


def from_outputs(name: str, outputs: dict[str, Any]) -> Stack | GroupStack:
    """Build a Stack (one server, SSH) or a GroupStack (scaled, SSM) from `pulumi stack output --json
    --show-secrets`'s object. Older single-server stacks have no `sshUser` or `appName`: they are read from
    `sshCommand` ("ssh -i KEY USER@IP") and the `url`-less defaults."""
    if not outputs:
        raise StackError(
            f"stack {name!r} has no outputs yet: run `pulumi up` first (or, locally, "
            "`sudo .venv/bin/python -m tools.localup --outputs FILE` and pass `--outputs-file FILE`)"
        )
    if "publicIp" not in outputs:
        if "appServerGroup" in outputs:
            return _group_stack(name, outputs)
        raise StackError(f"stack {name!r} has neither a `publicIp` nor an `appServerGroup` output: run `pulumi up`")
    user = outputs.get("sshUser") or _user_from_ssh_command(outputs.get("sshCommand", ""))
    app = outputs.get("appName")
    if not user or not app:
        raise StackError(f"stack {name!r} lacks the `sshUser`/`appName` outputs: run `pulumi up` once to add them")
    return Stack(
        name=name,
        host=str(outputs["publicIp"]),
        user=str(user),
        app=str(app),
        url=str(outputs.get("url", f"http://{outputs['publicIp']}")),
        private_key=outputs.get("sshPrivateKey") or None,
        host_key=outputs.get("sshHostKey") or None,
    )


def _group_stack(name: str, outputs: dict[str, Any]) -> GroupStack:
    missing = [key for key in ("appName", "awsRegion", "databaseEndpoint", "loadBalancerDns") if not outputs.get(key)]
    if missing:
        raise StackError(
            f"stack {name!r} lacks the {', '.join(f'`{k}`' for k in missing)} outputs: run `pulumi up` once"
        )
    return GroupStack(
        name=name,
        app=str(outputs["appName"]),
        url=str(outputs.get("url", "")),
        group=str(outputs["appServerGroup"]),
        region=str(outputs["awsRegion"]),
        database=str(outputs["databaseEndpoint"]).split(".", 1)[0],
        load_balancer_dns=str(outputs["loadBalancerDns"]),
        media_bucket=str(outputs.get("mediaBucket", "")),
        artifacts_bucket=str(outputs.get("artifactsBucket", "")),
    )


def _user_from_ssh_command(command: str) -> str:
    last = command.split()[-1] if command.split() else ""
    return last.split("@", 1)[0] if "@" in last else ""


def read_outputs_file(path: Path) -> Stack | GroupStack:
    """Outputs written by the local try-out (`tools.localup --outputs FILE`): the same keys as the stack's."""
    try:
        outputs = json.loads(path.read_text())
    except FileNotFoundError:
        raise StackError(f"{path}: no such outputs file") from None
    except json.JSONDecodeError as error:
        raise StackError(f"{path}: not JSON ({error})") from None
    return from_outputs(path.stem, outputs)


def read_pulumi_stack(stack: str | None) -> Stack | GroupStack:
    """The outputs of `stack` (or of the current stack, as `pulumi` itself picks it), secrets included; they stay
    in this process's memory."""
    if shutil.which("pulumi") is None:
        raise StackError("the Pulumi CLI is not on PATH (or pass --outputs-file FILE from the local try-out)")
    command = ["pulumi", "stack", "output", "--json", "--show-secrets", *(["--stack", stack] if stack else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"`{' '.join(command)}` failed:\n{result.stderr.strip()}")
    name = stack or _current_stack() or "current"
    return from_outputs(name, json.loads(result.stdout or "{}"))


def _current_stack() -> str | None:
    result = subprocess.run(["pulumi", "stack", "--show-name"], capture_output=True, text=True)
    return result.stdout.strip() or None if result.returncode == 0 else None
