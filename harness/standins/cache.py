"""ElastiCache for Valkey, stood in for by the host's redis-server: TLS only, on the bridge's address:6379, the auth
token as its password, a certificate from the stand-in CA for the primary endpoint's name (the guests verify it,
as the env's `ssl_cert_reqs=required` asks). Started with what the app servers' env file says: the REDIS_URL the
program wrote into the env parameter."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .lifetime import die_with_parent
from .tls import Authority


class CacheServer:
    def __init__(self, address: str, authority: Authority, redis_url: str) -> None:
        url = urlsplit(redis_url)
        if url.scheme != "rediss" or not url.hostname or not url.password:
            raise ValueError("the stand-in serves a rediss:// URL with a password")
        self.address, self.authority = address, authority
        self.hostname, self.port, self.password = url.hostname, url.port or 6379, url.password
        self.folder = Path(tempfile.mkdtemp(prefix="djangoship-cache-"))
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CacheServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed on the host (scripts/test.sh installs it)")
        certificate = self.authority.issue([self.hostname], (self.address,))
        (self.folder / "cert.pem").write_bytes(certificate.cert_pem)
        (self.folder / "key.pem").write_bytes(certificate.key_pem)
        (self.folder / "ca.pem").write_bytes(self.authority.pem)
        (self.folder / "redis.conf").write_text(
            f"bind {self.address}\nport 0\ntls-port {self.port}\n"
            f"tls-cert-file {self.folder}/cert.pem\ntls-key-file {self.folder}/key.pem\n"
            f"tls-ca-cert-file {self.folder}/ca.pem\ntls-auth-clients no\n"
            f'requirepass {self.password}\nsave ""\nappendonly no\ndir {self.folder}\n'
        )
        self.process = subprocess.Popen(
            [binary, str(self.folder / "redis.conf")],
            stdout=open(self.folder / "log", "ab"),  # noqa: SIM115 — the server's log, for the run's length
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 20
        while "Ready to accept connections" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ElastiCache stand-in did not start:\n{self.log()[-2000:]}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        path = self.folder / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)
