"""A websocket through a stand-in proxy (the load balancer's, CloudFront's): the upgrade request goes on as it came,
its Upgrade and Connection headers included (both services pass websockets through), then bytes flow both ways
until either side closes or nothing passes for the proxy's idle timeout — an ALB's `idle_timeout`, which pings
inside the websocket reset as any data does."""

from __future__ import annotations

import select
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP_KEPT = {"upgrade", "connection"}  # what a websocket's handshake needs of the hop-by-hop headers


class ProxyListener(ThreadingHTTPServer):
    """A stand-in proxy's listener. A client that hangs up mid-request (wrk closing its connections as its run ends)
    is the client's business, as it is a real load balancer's: not a traceback on the harness's output."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def is_websocket(request: BaseHTTPRequestHandler) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def tunnel(request: BaseHTTPRequestHandler, upstream: socket.socket, headers: dict[str, str], idle: float) -> None:
    """Send the upgrade request on `upstream` with `headers`, then relay until a close or `idle` s of silence."""
    head = f"{request.command} {request.path} HTTP/1.1\r\n"
    head += "".join(f"{key}: {value}\r\n" for key, value in headers.items()) + "\r\n"
    upstream.sendall(head.encode("latin-1"))
    request.close_connection = True
    # A websocket client sends nothing after its request head until the 101 (RFC 6455, 4.1): the handler's read
    # buffer holds nothing of it, and the socket is all there is.
    client = request.connection
    other = {client: upstream, upstream: client}
    while True:
        ready = [s for s in (client, upstream) if isinstance(s, ssl.SSLSocket) and s.pending()]
        if not ready:
            ready, _, _ = select.select([client, upstream], [], [], idle)
            if not ready:
                return  # idle: the proxy closes both sides
        for side in ready:
            try:
                data = side.recv(65536)
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                return
            other[side].sendall(data)


def forwarded_headers(request: BaseHTTPRequestHandler, drop: set[str]) -> dict[str, str]:
    """The request's headers for the upstream: hop-by-hop ones dropped, except what the websocket needs."""
    return {k: v for k, v in request.headers.items() if k.lower() not in drop - HOP_BY_HOP_KEPT}
