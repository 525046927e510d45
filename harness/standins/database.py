"""RDS for PostgreSQL, stood in for by a PostgreSQL cluster of the host's own, on the bridge's address:5432,
TLS on and plain connections refused (RDS for PostgreSQL 16+ forces SSL: the env's `sslmode=require` must hold).
The master user is the app's role as the program declares it (database.py: `username` = the database's name), with
the stack's generated password, and — as on RDS — no superuser."""

from __future__ import annotations

import glob
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .lifetime import die_with_parent
from .tls import Authority


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed on the host (scripts/test.sh installs it)")
    return Path(found[-1]).parent


class DatabaseServer:
    def __init__(self, address: str, subnet: str, authority: Authority, hostname: str) -> None:
        self.address, self.subnet, self.authority, self.hostname = address, subnet, authority, hostname
        self.port = 5432
        self.folder = Path(tempfile.mkdtemp(prefix="djangoship-rds-"))
        self.data = self.folder / "data"
        self.bin = _postgres_bin()
        self.process: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, *argv: str, input: str | None = None) -> str:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], input=input, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr}{result.stdout}")
        return result.stdout

    def __enter__(self) -> DatabaseServer:
        shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "peer",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        certificate = self.authority.issue([self.hostname], (self.address,))
        for name, content in (("server.crt", certificate.cert_pem), ("server.key", certificate.key_pem)):
            path = self.data / name
            path.write_bytes(content)
            path.chmod(0o600)
            shutil.chown(path, "postgres", "postgres")
        (self.data / "pg_hba.conf").write_text(
            f"local all all peer\nhostssl all all {self.subnet} scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{self.address}'\nport = {self.port}\nssl = on\n"
                f"unix_socket_directories = '{self.folder}'\nmax_connections = 100\nfsync = off\n"
                # Who connected, left and waited on a lock, and when: what a test's failure message quotes.
                "log_connections = on\nlog_disconnections = on\nlog_lock_waits = on\nlog_line_prefix = '%m [%p] %a '\n"
            )
        # In the foreground, a child of this process that dies with it (no cluster left behind by a killed run).
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data)],
            user="postgres",
            group="postgres",
            extra_groups=[],
            stdout=open(self.folder / "log", "ab"),  # noqa: SIM115 — the server's log, for the run's length
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", str(self.folder), "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the RDS stand-in did not start:\n{self.log()[-2000:]}")
            time.sleep(0.2)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._as_postgres(
            str(self.bin / "psql"),
            "-h",
            str(self.folder),
            "-p",
            str(self.port),
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        )

    def create_master(self, user: str, password: str, database: str) -> None:
        """What RDS creates: the master user (not a superuser) and its database."""
        quoted = password.replace("'", "''")
        self.psql(f"CREATE ROLE \"{user}\" LOGIN CREATEDB CREATEROLE PASSWORD '{quoted}'")
        self.psql(f'CREATE DATABASE "{database}" OWNER "{user}"')

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
            self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        path = self.folder / "log"
        return path.read_text(errors="replace") if path.exists() else ""


__all__ = ["DatabaseServer"]
