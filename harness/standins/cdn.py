"""CloudFront's routing as the distribution declares it, for the tests' visitors: HTTPS on a loopback address of
the run's own (the stand-in CA's certificate for the distribution's domain), `/static/*` and `/media/*` from the
assets bucket (the S3 stand-in: what Origin Access Control lets CloudFront read), everything else to the load
balancer with the origin's custom headers (the secret that the listener's rule asks for), the visitor's Host kept.

Not stood in (proven only by the mocks and the policy tests): caching, compression, the edge's TLS and HTTP/3,
the viewer protocol redirect (visitors here come over HTTPS only), Origin Access Control's signing, geo and price
class, the managed cache and origin request policies beyond "the visitor's Host, cookies and query string".
"""

from __future__ import annotations

import fnmatch
import http.client
import socket
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from .balancer import HOP_BY_HOP, OWN_HEADERS
from .tls import Authority
from .tunnel import ProxyListener, forwarded_headers, is_websocket, tunnel

# CloudFront closes a websocket with no data either way for 10 minutes (its documented idle timeout).
WEBSOCKET_IDLE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Behavior:
    path_pattern: str  # "/static/*"; "" for the default behaviour
    origin: str  # "s3" or "balancer"
    headers: tuple[tuple[str, str], ...] = ()  # the response headers policy's overrides


class Distribution:
    def __init__(
        self,
        domain: str,
        address: str,
        authority: Authority,
        behaviors: list[Behavior],
        bucket: str,
        s3: Any,  # a boto3 S3 client of the S3 stand-in
        balancer_url: str,
        origin_headers: dict[str, str],
    ) -> None:
        self.domain, self.address, self.authority = domain, address, authority
        self.behaviors, self.bucket, self.s3 = behaviors, bucket, s3
        self.balancer_url, self.origin_headers = balancer_url, origin_headers
        self.server: ProxyListener | None = None
        self.requests = 0

    @property
    def url(self) -> str:
        return f"https://{self.domain}"

    def __enter__(self) -> Distribution:
        distribution = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                distribution.handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

        self.server = ProxyListener((self.address, 443), Handler)
        context = self.authority.server_context(self.authority.issue([self.domain]))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def behavior(self, path: str) -> Behavior:
        for behavior in self.behaviors:
            if behavior.path_pattern and fnmatch.fnmatchcase(path, behavior.path_pattern):
                return behavior
        return next(b for b in self.behaviors if not b.path_pattern)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        self.requests += 1
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        path = urlsplit(request.path).path
        behavior = self.behavior(path)
        if behavior.origin == "s3":
            status, headers, data = self._from_bucket(request.command, path)
        elif is_websocket(request):
            return self._websocket(request)
        else:
            status, headers, data = self._from_balancer(request, body)
        headers = [(k, v) for k, v in headers if k.lower() not in {h.lower() for h, _ in behavior.headers}]
        headers += list(behavior.headers)
        request.send_response(status)
        for key, value in headers:
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _from_bucket(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if method not in ("GET", "HEAD"):
            return 403, [("Content-Type", "text/plain")], b"method not allowed on this behaviour\n"
        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=path.lstrip("/"))
        except self.s3.exceptions.NoSuchKey:
            # Origin Access Control grants GetObject only, not ListBucket: S3 answers a missing key with 403.
            return 403, [("Content-Type", "application/xml")], b"<Error><Code>AccessDenied</Code></Error>"
        headers = [("Content-Type", found.get("ContentType", "binary/octet-stream")), ("ETag", found["ETag"])]
        if found.get("CacheControl"):
            headers.append(("Cache-Control", found["CacheControl"]))
        return 200, headers, found["Body"].read()

    def _websocket(self, request: BaseHTTPRequestHandler) -> None:
        """CloudFront carries a websocket to the origin when the behaviour forwards the viewer's headers."""
        target = urlsplit(self.balancer_url)
        headers = forwarded_headers(request, HOP_BY_HOP) | self.origin_headers
        headers["CloudFront-Forwarded-Proto"] = "https"
        headers["X-Forwarded-For"] = request.client_address[0]
        with socket.create_connection((target.hostname, target.port), timeout=30) as upstream:
            tunnel(request, upstream, headers, WEBSOCKET_IDLE_TIMEOUT)

    def _from_balancer(self, request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers |= self.origin_headers
        headers["CloudFront-Forwarded-Proto"] = "https"
        headers["X-Forwarded-For"] = request.client_address[0]
        target = urlsplit(self.balancer_url)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            connection.request(request.command, request.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | OWN_HEADERS]
            return response.status, kept, data
        except (OSError, http.client.HTTPException):
            return 502, [("Content-Type", "text/plain")], b"502 Bad Gateway (CloudFront could not reach the origin)\n"
        finally:
            connection.close()

    # --- for the tests' visitors ------------------------------------------------------------------------------

    def handler(self) -> urllib.request.HTTPSHandler:
        """An HTTPS handler that reaches the distribution's domain at its loopback address (SNI and Host kept)."""
        address, context = self.address, self.authority.client_context()

        class Connection(http.client.HTTPSConnection):
            def connect(self) -> None:
                sock = socket.create_connection((address, self.port), self.timeout)
                self.sock = context.wrap_socket(sock, server_hostname=self.host)

        class Handler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> Any:
                return self.do_open(Connection, req, context=context)

        return Handler(context=context)
