"""Run Command, stood in for: what AWS Systems Manager does between an operator's `aws ssm send-command` and the
agent on each instance (moto's SSM records a command but nothing runs it).

- The operator's side, AWS's JSON API (`AmazonSSM.*`): SendCommand (document AWS-RunShellScript), then
  ListCommandInvocations and GetCommandInvocation as AWS answers them — Pending, InProgress, then Success, Failed or
  TimedOut, the command's exit status as ResponseCode, its output cut at 24,000 characters.
- The agent's side, a channel of the harness's own in place of ec2messages: the stand-in agent on each instance
  (harness/standins/agent.py) asks `ec2messages.<region>.amazonaws.com` for its commands (a long poll), signed
  with its instance role's credentials, runs each as root and sends back its output and exit status. The instance
  is the one whose credentials signed the request (the metadata stand-in's identity), as AWS knows it.
Who may call: the operator on loopback (any credentials); a guest by IAM's stand-in (an app server's role may use
the agent's channel, AmazonSSMManagedInstanceCore, and not SendCommand).
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OUTPUT_LIMIT = 24000  # GetCommandInvocation's StandardOutputContent / StandardErrorContent
DOCUMENT = "AWS-RunShellScript"
OPERATOR_ACTIONS = {"SendCommand", "ListCommandInvocations", "GetCommandInvocation"}
AGENT_ACTIONS = {"GetMessages", "SendReply"}
CREDENTIAL_SCOPE = re.compile(r"Credential=([^/\s]+)/\d{8}/[a-z0-9-]+/([a-z0-9-]+)/aws4_request")

Answer = tuple[str, str, bytes]  # (status, content type, body)


@dataclass
class Invocation:
    command_id: str
    instance_id: str
    commands: list[str]
    timeout: int
    comment: str
    requested: float = field(default_factory=time.time)
    status: str = "Pending"
    code: int = -1
    stdout: str = ""
    stderr: str = ""
    started: float = 0.0
    ended: float = 0.0

    def listed(self) -> dict[str, Any]:
        return {
            "CommandId": self.command_id,
            "InstanceId": self.instance_id,
            "DocumentName": DOCUMENT,
            "Comment": self.comment,
            "RequestedDateTime": self.requested,
            "Status": self.status,
            "StatusDetails": self.status,
        }


def request_service(environ: dict[str, Any]) -> tuple[str, str]:
    """(access key, service) of a signed request: the credential scope names the service, whatever the host (the
    operator's CLI reaches the front at 127.0.0.1); unsigned: ("", the host's first label)."""
    found = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found:
        return found.group(1), found.group(2)
    return "", environ.get("HTTP_HOST", "").split(".")[0]


def read_body(environ: dict[str, Any]) -> bytes:
    """The request's body, left readable again for whoever answers it (moto)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def json_error(kind: str, message: str, status: str = "400 Bad Request") -> Answer:
    return status, "application/x-amz-json-1.1", json.dumps({"__type": kind, "message": message}).encode()


def json_answer(value: dict[str, Any]) -> Answer:
    return "200 OK", "application/x-amz-json-1.1", json.dumps(value).encode()


class RunCommand:
    def __init__(
        self,
        instance_by_key: Callable[[str], str | None],  # an instance's access key → its id (the metadata stand-in)
        judge: Callable[[str, str], str | None],  # (access key, action) → None if IAM allows it, else why not
    ) -> None:
        self.instance_by_key, self.judge = instance_by_key, judge
        self.lock = threading.Condition()
        self.invocations: dict[tuple[str, str], Invocation] = {}
        self.online: set[str] = set()  # instances whose agent asked for messages

    # --- the front's hook -----------------------------------------------------------------------------------

    def handle(self, environ: dict[str, Any]) -> Answer | None:
        action = environ.get("HTTP_X_AMZ_TARGET", "").split(".")[-1]
        key, service = request_service(environ)
        loopback = environ.get("REMOTE_ADDR") == "127.0.0.1"
        if service == "ssm" and action in OPERATOR_ACTIONS:
            if not loopback:
                why = self.judge(key, f"ssm:{action}")
                if why is not None:
                    return json_error("AccessDeniedException", why)
            body = json.loads(read_body(environ) or b"{}")
            return {"SendCommand": self.send, "ListCommandInvocations": self.list, "GetCommandInvocation": self.get}[
                action
            ](body)
        if service == "ec2messages" and action in AGENT_ACTIONS:
            why = self.judge(key, f"ec2messages:{action}")
            instance_id = self.instance_by_key(key)
            if why is not None or instance_id is None:
                return json_error("AccessDeniedException", why or "not an instance's credentials")
            body = json.loads(read_body(environ) or b"{}")
            if action == "GetMessages":
                return json_answer({"Messages": self.messages(instance_id, float(body.get("WaitSeconds", 10)))})
            return self.reply(instance_id, body)
        return None

    # --- the operator's API -----------------------------------------------------------------------------------

    def send(self, body: dict[str, Any]) -> Answer:
        if body.get("DocumentName") != DOCUMENT:
            return json_error("InvalidDocument", f"the stand-in runs {DOCUMENT} only")
        instance_ids = body.get("InstanceIds") or []
        parameters = body.get("Parameters") or {}
        commands = parameters.get("commands") or []
        timeout = int((parameters.get("executionTimeout") or ["3600"])[0])
        with self.lock:
            offline = [i for i in instance_ids if i not in self.online]
            if not instance_ids or offline:
                return json_error("InvalidInstanceId", f"Instances {offline} not in a valid state for account")
            command_id = str(uuid.uuid4())
            for instance_id in instance_ids:
                self.invocations[(command_id, instance_id)] = Invocation(
                    command_id, instance_id, list(commands), timeout, body.get("Comment", "")
                )
            self.lock.notify_all()
        return json_answer(
            {
                "Command": {
                    "CommandId": command_id,
                    "DocumentName": DOCUMENT,
                    "InstanceIds": instance_ids,
                    "Parameters": parameters,
                    "Status": "Pending",
                    "TargetCount": len(instance_ids),
                }
            }
        )

    def list(self, body: dict[str, Any]) -> Answer:
        command_id = body.get("CommandId")
        with self.lock:
            found = [i.listed() for (c, _), i in self.invocations.items() if command_id in (None, c)]
        return json_answer({"CommandInvocations": found})

    def get(self, body: dict[str, Any]) -> Answer:
        with self.lock:
            item = self.invocations.get((body.get("CommandId", ""), body.get("InstanceId", "")))
            if item is None:
                return json_error("InvocationDoesNotExist", "")
            return json_answer(
                {
                    "CommandId": item.command_id,
                    "InstanceId": item.instance_id,
                    "DocumentName": DOCUMENT,
                    "Status": item.status,
                    "StatusDetails": item.status,
                    "ResponseCode": item.code,
                    "StandardOutputContent": item.stdout[:OUTPUT_LIMIT],
                    "StandardErrorContent": item.stderr[:OUTPUT_LIMIT],
                }
            )

    # --- the agent's channel ----------------------------------------------------------------------------------

    def messages(self, instance_id: str, wait: float) -> list[dict[str, Any]]:
        """The commands waiting for `instance_id` (now InProgress), after up to `wait` s for one to arrive."""
        deadline = time.monotonic() + min(wait, 20)
        with self.lock:
            self.online.add(instance_id)
            while True:
                pending = [
                    i for (_, target), i in self.invocations.items() if target == instance_id and i.status == "Pending"
                ]
                if pending or time.monotonic() >= deadline:
                    break
                self.lock.wait(timeout=max(0.0, deadline - time.monotonic()))
            for item in pending:
                item.status, item.started = "InProgress", time.time()
            return [{"CommandId": i.command_id, "Commands": i.commands, "TimeoutSeconds": i.timeout} for i in pending]

    def reply(self, instance_id: str, body: dict[str, Any]) -> Answer:
        with self.lock:
            item = self.invocations.get((body.get("CommandId", ""), instance_id))
            if item is None or item.status != "InProgress":
                return json_error("InvalidCommandId", "no such command in progress on this instance")
            item.status = str(body["Status"])
            item.code = int(body["ResponseCode"])
            item.stdout, item.stderr = str(body.get("Stdout", "")), str(body.get("Stderr", ""))
            item.ended = time.time()
            self.lock.notify_all()
        return json_answer({})

    def forget(self, instance_id: str) -> None:
        """A terminated instance: its agent is gone; what it had not finished never will."""
        with self.lock:
            self.online.discard(instance_id)
            for (_, target), item in self.invocations.items():
                if target == instance_id and item.status in ("Pending", "InProgress"):
                    item.status, item.code = "Terminated", -1


def for_site(api: Any, access: Any, metadata: Any) -> RunCommand:
    """Run Command behind the front `api` (awsapi.AwsApi): instances known by the metadata stand-in's identities,
    callers judged by IAM's stand-in (access.AccessControl)."""
    from .access import ApiRequest

    def instance_by_key(key: str) -> str | None:
        with metadata.lock:
            return next((i.instance_id for i in metadata.identities.values() if i.access_key == key), None)

    def judge(key: str, action: str) -> str | None:
        with access.lock:
            principal = access.principals.get(key)
        if principal is None:
            return "The security token included in the request is invalid."
        decision = access.judge(principal, ApiRequest(action, "*"), [])
        return None if decision.allowed else decision.why

    run_command = RunCommand(instance_by_key, judge)
    api.answerers.append(run_command.handle)
    return run_command
