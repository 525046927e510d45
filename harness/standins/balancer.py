"""The application load balancer, as declared: one listener with its rules, one target group with its health check.

- Rules: a request matching a rule's header condition (CloudFront's origin header with its secret) is forwarded
  to the target group; any other gets the listener's default fixed response (403).
- Health checks: every target is asked `path` every `interval` s (timeout `timeout`); `healthy_threshold`
  successes in a row make it healthy, `unhealthy_threshold` failures unhealthy (the target group's own figures).
- Routing: round robin over healthy targets; with none healthy but some unhealthy, to those (ALB fails open);
  with none at all, 503.
- Deregistration: the target takes no new request; in-flight ones finish, for at most `deregistration_delay` s.
- The rule's action may be changed (elbv2 ModifyRule, harness.standins.operatorapi): `fixed_response` answers
  instead of forwarding, as the maintenance verb makes it.
Everything listens on loopback; the targets are guests on the bridge.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from .tunnel import ProxyListener, forwarded_headers, is_websocket, tunnel

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
CONNECT_TIMEOUT = 10.0  # s: an ALB's connection timeout to a target
# Set by the listener itself when it answers.
OWN_HEADERS = {"content-length", "date", "server"}


@dataclass(frozen=True)
class HealthCheck:
    path: str
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int
    matcher: str = "200"


@dataclass(frozen=True)
class ListenerRules:
    header: str  # forwarded when this header carries one of `values`
    values: tuple[str, ...]
    default_status: int
    default_body: str


@dataclass
class Target:
    address: str
    state: str = "initial"  # initial → healthy ⇄ unhealthy; draining once deregistered
    successes: int = 0
    failures: int = 0
    in_flight: int = 0
    served: int = 0
    checks: int = 0
    last_reason: str = ""
    stop: threading.Event = field(default_factory=threading.Event)


class LoadBalancer:
    def __init__(self, rules: ListenerRules, check: HealthCheck, deregistration_delay: float, idle_timeout: float):
        self.rules, self.check = rules, check
        self.deregistration_delay, self.idle_timeout = deregistration_delay, idle_timeout
        self.targets: dict[str, Target] = {}
        self.lock = threading.Condition()
        self.rotation = itertools.count()
        self.server: ProxyListener | None = None
        self.answered: dict[int, int] = {}  # status → count, for what the balancer itself answered
        # The forward rule's action replaced by a fixed response: (status, content type, body), or None.
        self.fixed_response: tuple[int, str, str] | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # --- targets ------------------------------------------------------------------------------------------------

    def register(self, address: str) -> None:
        with self.lock:
            target = Target(address)
            self.targets[address] = target
        threading.Thread(target=self._health_loop, args=(target,), daemon=True, name=f"health-{address}").start()

    def deregister(self, address: str) -> float:
        """Drain `address`: no new requests; returns once its in-flight requests ended (or the delay passed)."""
        started = time.monotonic()
        with self.lock:
            target = self.targets.get(address)
            if target is None:
                return 0.0
            target.state = "draining"
            deadline = started + self.deregistration_delay
            while target.in_flight and time.monotonic() < deadline:
                self.lock.wait(timeout=0.2)
            target.stop.set()
            del self.targets[address]
        return time.monotonic() - started

    def state(self, address: str) -> str:
        with self.lock:
            target = self.targets.get(address)
            return target.state if target else "unused"

    def wait_healthy(self, address: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while time.monotonic() < deadline:
                target = self.targets.get(address)
                if target is None:
                    return False
                if target.state == "healthy":
                    return True
                self.lock.wait(timeout=0.5)
        return False

    def _health_loop(self, target: Target) -> None:
        while not target.stop.is_set():
            ok, reason = self._probe(target.address)
            with self.lock:
                target.checks += 1
                target.last_reason = reason
                if ok:
                    target.successes, target.failures = target.successes + 1, 0
                    if target.state in ("initial", "unhealthy") and target.successes >= self.check.healthy_threshold:
                        target.state = "healthy"
                else:
                    target.failures, target.successes = target.failures + 1, 0
                    if target.state in ("initial", "healthy") and target.failures >= self.check.unhealthy_threshold:
                        target.state = "unhealthy"
                self.lock.notify_all()
            target.stop.wait(self.check.interval)

    def _probe(self, address: str) -> tuple[bool, str]:
        connection = http.client.HTTPConnection(address, 80, timeout=self.check.timeout)
        try:
            connection.request("GET", self.check.path, headers={"Host": address, "User-Agent": "ELB-HealthChecker/2.0"})
            status = connection.getresponse().status
            return str(status) == self.check.matcher, f"status {status}"
        except (OSError, http.client.HTTPException) as error:
            return False, type(error).__name__
        finally:
            connection.close()

    def _pick(self) -> Target | None:
        with self.lock:
            healthy = [t for t in self.targets.values() if t.state == "healthy"]
            pool = healthy or [t for t in self.targets.values() if t.state == "unhealthy"]
            if not pool:
                return None
            target = pool[next(self.rotation) % len(pool)]
            target.in_flight += 1
            return target

    def _done(self, target: Target) -> None:
        with self.lock:
            target.in_flight -= 1
            target.served += 1
            self.lock.notify_all()

    # --- the listener -----------------------------------------------------------------------------------------

    def __enter__(self) -> LoadBalancer:
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                balancer.handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

        self.server = ProxyListener(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            for target in self.targets.values():
                target.stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if request.headers.get(self.rules.header) not in self.rules.values:
            return self._reply(
                request, self.rules.default_status, [("Content-Type", "text/plain")], self.rules.default_body.encode()
            )
        fixed = self.fixed_response
        if fixed is not None:
            return self._reply(request, fixed[0], [("Content-Type", fixed[1])], fixed[2].encode())
        target = self._pick()
        if target is None:
            return self._reply(request, 503, [("Content-Type", "text/plain")], b"503 Service Temporarily Unavailable\n")
        if is_websocket(request):
            return self._websocket(target, request)
        try:
            status, headers, data = self._forward(target.address, request, body)
        except TimeoutError:
            status, headers, data = 504, [("Content-Type", "text/plain")], b"504 Gateway Time-out\n"
        except (OSError, http.client.HTTPException):
            status, headers, data = 502, [("Content-Type", "text/plain")], b"502 Bad Gateway\n"
        finally:
            self._done(target)
        self._reply(request, status, headers, data)

    def _websocket(self, target: Target, request: BaseHTTPRequestHandler) -> None:
        """An ALB passes a websocket's upgrade to the target and keeps the connection while data flows."""
        try:
            upstream = socket.create_connection((target.address, 80), timeout=CONNECT_TIMEOUT)
        except OSError:
            self._done(target)
            return self._reply(request, 502, [("Content-Type", "text/plain")], b"502 Bad Gateway\n")
        headers = forwarded_headers(request, HOP_BY_HOP)
        headers["X-Forwarded-For"] = request.client_address[0]
        headers["X-Forwarded-Proto"], headers["X-Forwarded-Port"] = "http", "80"
        with self.lock:
            self.answered[101] = self.answered.get(101, 0) + 1
        try:
            with upstream:
                tunnel(request, upstream, headers, self.idle_timeout)
        finally:
            self._done(target)

    def _forward(
        self, address: str, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        forwarded_for = request.headers.get("X-Forwarded-For")
        client = request.client_address[0]
        headers["X-Forwarded-For"] = f"{forwarded_for}, {client}" if forwarded_for else client
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = "80"
        # An ALB gives up connecting to a target after 10 s (a 504), then waits for its answer up to the idle timeout.
        connection = http.client.HTTPConnection(address, 80, timeout=CONNECT_TIMEOUT)
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self.idle_timeout)
            connection.request(request.command, request.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | OWN_HEADERS]
            return response.status, kept, data
        finally:
            connection.close()

    def _reply(self, request: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        with self.lock:
            self.answered[status] = self.answered.get(status, 0) + 1
        request.send_response(status)
        for key, value in headers:
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)
