"""AWS's HTTPS endpoints for the guests: moto in server mode behind TLS on the bridge's port 443.

The guests' DNS stand-in sends every `*.amazonaws.com` name here, so the app servers' own boto3 and curl calls
(`ssm.us-east-1.amazonaws.com`, `<bucket>.s3.amazonaws.com`, `autoscaling.us-east-1.amazonaws.com`, …) reach moto
unchanged, TLS verified against the stand-in CA. The same moto (in this process) also answers plain HTTP on
loopback, for the harness's own calls (`client(...)`), so what the harness seeds is what the guests read.

Auto Scaling is not moto's here: moto 5.2 implements no lifecycle actions (CompleteLifecycleAction is missing), so
the two calls an app server makes — DescribeAutoScalingInstances and CompleteLifecycleAction — are answered by the
group stand-in (`harness.standins.group`), which plays the group itself.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.sax.saxutils import escape

import boto3
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from .tls import Authority

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account, and the mocks' (harness/mockrun.py)
AUTOSCALING_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
# The names the endpoint certificate covers: every regional and global host name the guests use.
CERTIFICATE_NAMES = [
    "amazonaws.com",
    "*.amazonaws.com",
    f"*.{REGION}.amazonaws.com",
    "*.s3.amazonaws.com",
    f"*.s3.{REGION}.amazonaws.com",
    f"*.s3-{REGION}.amazonaws.com",
]


class AutoScaling(Protocol):
    """What the group stand-in answers for an app server."""

    def describe_instance(self, instance_id: str) -> dict[str, str] | None: ...

    def complete_lifecycle_action(self, group: str, hook: str, instance_id: str, result: str) -> str | None:
        """None when done; else the error message AWS would give."""


@dataclass
class Call:
    """One request a guest made: which service, which action (or S3 method and path), from which address."""

    host: str
    method: str
    path: str
    action: str
    client: str


@dataclass
class AwsApi:
    address: str  # the bridge's address: guests reach port 443 here
    authority: Authority
    autoscaling: AutoScaling | None = None
    access: Any = None  # harness.standins.access.AccessControl: IAM for the guests' calls
    calls: list[Call] = field(default_factory=list)
    # Answerers consulted before anything else (runcommand.RunCommand, operatorapi.OperatorApi): each returns
    # (status, content type, body) for a request of its own, or None.
    answerers: list[Callable[[dict[str, Any]], tuple[str, str, bytes] | None]] = field(default_factory=list)
    _servers: list[BaseWSGIServer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    local_port: int = 0

    def __enter__(self) -> AwsApi:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in the tests' output
        # moto's backends belong to the process, not to this server: an earlier site of the same run (another
        # module's, with the same app and stack names) would leave its parameters, their versions and its buckets
        # here. A stand-in starts empty, as a new account does.
        moto_api_backend.reset()
        moto = DomainDispatcherApplication(create_backend_app)
        app = self._front(moto)
        context = self.authority.server_context(self.authority.issue(CERTIFICATE_NAMES, (self.address,)))
        for host, port, ssl_context in ((self.address, 443, context), ("127.0.0.1", 0, None)):
            server = make_server(
                host, port, app, threaded=True, request_handler=MotoRequestHandler, ssl_context=ssl_context
            )
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self.local_port = self._servers[1].server_address[1]
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of the same moto, for the harness (plain HTTP on loopback, any credentials)."""
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=f"http://127.0.0.1:{self.local_port}",
            aws_access_key_id="harness",
            aws_secret_access_key="harness",
            **kwargs,
        )

    def calls_to(self, service: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.host.split(".")[0] == service or f".{service}." in call.host]

    # --- the WSGI front: records guests' calls, answers Auto Scaling, hands the rest to moto ---------------

    def _front(self, moto: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            host = environ.get("HTTP_HOST", "").split(":")[0]
            client = environ.get("REMOTE_ADDR", "")
            for answerer in self.answerers:
                answered = answerer(environ)
                if answered is not None:
                    self._record(host, environ, environ.get("HTTP_X_AMZ_TARGET", "").split(".")[-1], client)
                    status, content_type, body = answered
                    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
                    return [body]
            if client == "127.0.0.1":  # the harness itself, and the operator's CLI
                return moto(environ, start_response)
            body = b""
            if host.split(".")[0] in ("ssm", "sts", "autoscaling"):
                # Small API calls whose parameters are in the body; S3's bodies (uploads, maybe aws-chunked
                # without a length) go to moto untouched.
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
            query = {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), True).items()}
            form = {}
            if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), True).items()}
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            action = target.split(".")[-1] or form.get("Action") or query.get("Action", "")
            self._record(host, environ, action, client)
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            principal = self.access.principal(headers, query) if self.access else None
            if principal is not None:
                refused = self._refused(principal, host, environ, query, headers, form, body)
                if refused is not None:
                    status, content_type, answer = refused
                    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(answer)))])
                    return [answer]
            if host.startswith("autoscaling."):
                status, answer = self._autoscaling(form)
                start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))])
                return [answer]
            if principal is not None and action == "AssumeRole":
                return self._assumed(moto, environ, start_response, form.get("RoleArn", ""))
            return moto(environ, start_response)

        return app

    def _refused(
        self,
        principal: str,
        host: str,
        environ: dict[str, Any],
        query: dict[str, str],
        headers: dict[str, str],
        form: dict[str, str],
        body: bytes,
    ) -> tuple[str, str, bytes] | None:
        """(status, content type, body) of the service's refusal, or None when IAM allows the request."""
        service = host.split(".")[0]
        if service == "ssm":
            decision = self.access.ssm(principal, headers.get("x-amz-target", ""), json.loads(body or b"{}"))
            message = json.dumps({"__type": "AccessDeniedException", "message": decision.why}).encode()
            return None if decision.allowed else ("400 Bad Request", "application/x-amz-json-1.1", message)
        if service == "sts" and form.get("Action") == "AssumeRole":
            decision = self.access.assume_role(principal, form.get("RoleArn", ""))
        elif service == "autoscaling":
            decision = self.access.autoscaling(principal, form.get("Action", ""), form.get("AutoScalingGroupName", ""))
        elif service == "s3" or ".s3" in host:
            decision = self.access.s3(
                principal, environ["REQUEST_METHOD"], host, environ.get("PATH_INFO", ""), query, headers
            )
            if not decision.allowed:
                answer = f"<Error><Code>AccessDenied</Code><Message>{escape(decision.why)}</Message></Error>"
                return "403 Forbidden", "application/xml", answer.encode()
            return None
        else:
            return None
        if decision.allowed:
            return None
        return "403 Forbidden", "text/xml", _error("AccessDenied", decision.why)[1]

    def _assumed(
        self,
        moto: Callable[..., Iterable[bytes]],
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        role: str,
    ) -> Iterable[bytes]:
        """moto's AssumeRole, its new access key made a principal of `role`."""
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, *rest)

        answer = b"".join(moto(environ, keep))
        found = re.search(rb"<AccessKeyId>([A-Z0-9]+)</AccessKeyId>", answer)
        if found and self.access is not None:
            self.access.grant(found.group(1).decode(), role)
        return [answer]

    def _record(self, host: str, environ: dict[str, Any], action: str, client: str) -> None:
        with self._lock:
            self.calls.append(Call(host, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), action, client))

    def _autoscaling(self, params: dict[str, str]) -> tuple[str, bytes]:
        action = params.get("Action", "")
        if self.autoscaling is None:
            return _error("ServiceUnavailable", "no Auto Scaling group stands in yet")
        if action == "DescribeAutoScalingInstances":
            ids = [value for key, value in sorted(params.items()) if key.startswith("InstanceIds.member.")]
            members = []
            for instance_id in ids:
                found = self.autoscaling.describe_instance(instance_id)
                if found is not None:
                    fields = "".join(f"<{key}>{escape(value)}</{key}>" for key, value in found.items())
                    members.append(f"<member>{fields}</member>")
            result = f"<AutoScalingInstances>{''.join(members)}</AutoScalingInstances>"
            return _answer(action, result)
        if action == "CompleteLifecycleAction":
            error = self.autoscaling.complete_lifecycle_action(
                params.get("AutoScalingGroupName", ""),
                params.get("LifecycleHookName", ""),
                params.get("InstanceId", ""),
                params.get("LifecycleActionResult", ""),
            )
            return _error("ValidationError", error) if error else _answer(action, "")
        return _error("InvalidAction", f"the stand-in answers no {action}")


def _answer(action: str, result: str) -> tuple[str, bytes]:
    body = (
        f'<{action}Response xmlns="{AUTOSCALING_NS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
    )
    return "200 OK", body.encode()


def _error(code: str, message: str) -> tuple[str, bytes]:
    body = (
        f'<ErrorResponse xmlns="{AUTOSCALING_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return "400 Bad Request", body.encode()
