"""The instance metadata service at 169.254.169.254, IMDSv2 only (as the launch template requires), one identity
per guest address: its instance id, the region and zone, and its instance role's credentials.

Guests send 169.254.169.254:80 to their gateway; an nft rule of this module's own on the host turns that into
the bridge's address, port 80, where this server answers. The source address says which instance asks.
"""

from __future__ import annotations

import datetime
import json
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

METADATA_ADDRESS = "169.254.169.254"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"


@dataclass
class Identity:
    instance_id: str
    role: str
    zone: str
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""


class MetadataService:
    def __init__(self, bridge: str, address: str, region: str, on_register: Any = None) -> None:
        self.bridge, self.address, self.region = bridge, address, region
        self.on_register = on_register  # called with each identity: e.g. IAM's stand-in learns its access key
        self.identities: dict[str, Identity] = {}  # by guest address
        self.tokens: dict[str, tuple[str, float]] = {}  # token → (guest address, expiry)
        self.requests: list[tuple[str, str, str]] = []  # (guest address, method, path)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.table = "djangoship_imds_" + bridge.replace("-", "_")

    def register(self, guest_address: str, identity: Identity) -> None:
        identity.access_key = identity.access_key or "ASIA" + secrets.token_hex(8).upper()
        identity.secret_key = identity.secret_key or secrets.token_urlsafe(30)
        identity.session_token = identity.session_token or secrets.token_urlsafe(60)
        with self.lock:
            self.identities[guest_address] = identity
        if self.on_register is not None:
            self.on_register(identity)

    def forget(self, guest_address: str) -> None:
        with self.lock:
            self.identities.pop(guest_address, None)

    def __enter__(self) -> MetadataService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:  # noqa: N802
                service.answer_put(self)

            def do_GET(self) -> None:  # noqa: N802
                service.answer_get(self)

        self.server = ThreadingHTTPServer((self.address, 80), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self._nft(f"delete table ip {self.table}", check=False)
        self._nft(
            f"add table ip {self.table}; "
            f"add chain ip {self.table} prerouting {{ type nat hook prerouting priority dstnat; }}; "
            f'add rule ip {self.table} prerouting iifname "{self.bridge}" ip daddr {METADATA_ADDRESS} '
            f"tcp dport 80 dnat to {self.address}:80"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._nft(f"delete table ip {self.table}", check=False)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @staticmethod
    def _nft(command: str, check: bool = True) -> None:
        subprocess.run(["nft", command], check=check, capture_output=True)

    # --- IMDSv2 -----------------------------------------------------------------------------------------------

    def answer_put(self, request: BaseHTTPRequestHandler) -> None:
        client = request.client_address[0]
        length = int(request.headers.get("Content-Length") or 0)
        request.rfile.read(length)
        ttl = request.headers.get(TTL_HEADER, "")
        if request.path != "/latest/api/token" or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._send(request, 400, "")
        if "X-Forwarded-For" in request.headers:  # IMDSv2 refuses tokens to proxied requests
            return self._send(request, 403, "")
        token = secrets.token_urlsafe(40)
        with self.lock:
            self.tokens[token] = (client, time.monotonic() + int(ttl))
            self.requests.append((client, "PUT", request.path))
        self._send(request, 200, token, {TTL_HEADER: ttl})

    def answer_get(self, request: BaseHTTPRequestHandler) -> None:
        client = request.client_address[0]
        with self.lock:
            self.requests.append((client, "GET", request.path))
            holder, expiry = self.tokens.get(request.headers.get(TOKEN_HEADER, ""), ("", 0.0))
            identity = self.identities.get(client)
        if holder != client or expiry < time.monotonic():
            return self._send(request, 401, "")  # IMDSv1 (no token) is off, as the launch template says
        if identity is None:
            return self._send(request, 404, "")
        body = self.document(request.path, identity, client)
        self._send(request, 404, "") if body is None else self._send(request, 200, body)

    def document(self, path: str, identity: Identity, client: str) -> str | None:
        now = datetime.datetime.now(datetime.UTC)
        credentials = {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": identity.access_key,
            "SecretAccessKey": identity.secret_key,
            "Token": identity.session_token,
            "Expiration": (now + datetime.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        answers = {
            "/latest/meta-data/instance-id": identity.instance_id,
            "/latest/meta-data/local-ipv4": client,
            "/latest/meta-data/placement/region": self.region,
            "/latest/meta-data/placement/availability-zone": identity.zone,
            "/latest/meta-data/iam/security-credentials/": identity.role,
            "/latest/meta-data/iam/security-credentials": identity.role,
            f"/latest/meta-data/iam/security-credentials/{identity.role}": json.dumps(credentials),
            "/latest/dynamic/instance-identity/document": json.dumps(
                {
                    "instanceId": identity.instance_id,
                    "region": self.region,
                    "availabilityZone": identity.zone,
                    "privateIp": client,
                    "accountId": "123456789012",
                }
            ),
        }
        return answers.get(path)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        request.send_response(status)
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.send_header("Content-Type", "text/plain")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
