"""Outgrowing one server loses nothing (issue 31): cookiecutter-django's shape — ASGI with a websocket, a Celery
worker, a long-running command, a schedule, Redis — on two app servers of the scaled profile, behind the stand-ins
(harness/scaledsite.py) with ElastiCache's (TLS, its token). The app is tests/foreign_apps.py's `workers` project
as it is, its settings reading the `DB_*` variables (not DATABASE_URL): the tutorials' way, which RDS's TLS must
not break. Then, in order: a web request's job done by a worker through ElastiCache, a websocket through CloudFront
and the load balancer kept open past the balancer's idle timeout by uvicorn's pings, a release rolled under load
after which the worker, the listener and the websocket run the new code, and the schedule once a minute across the
servers for the module's whole life.
"""

from __future__ import annotations

import base64
import itertools
import os
import socket
import time

import pytest
from foreign_apps import ForeignApp, workers_for_app_servers
from site_helpers import app_state, job_done, sh, wait_for

from harness.localsite import RequestLoop
from harness.scaledsite import scaled_site

pytestmark = pytest.mark.localboot
NAME = "shop"


def config(app: ForeignApp) -> dict:
    return {
        "app": {
            "source": str(app.folder),
            "name": NAME,
            **app.config,
            # Once a minute across the servers (the project's own schedules are every few seconds, for one server).
            "schedules": {"tick": {"schedule": "*:*:00", "command": "manage.py tick"}},
        },
        "appMinSize": 2,
        "appDesiredCapacity": 2,
        "redis": True,
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> ForeignApp:
    return workers_for_app_servers(tmp_path_factory.mktemp("scaled-workers") / "workers")


@pytest.fixture(scope="module")
def site(network, app, tmp_path_factory):
    started = time.time()
    with scaled_site(network, config(app), tmp_path_factory.mktemp("scaled-workers-run")) as live:
        live.started = started  # type: ignore[attr-defined]
        # In service is not yet routed to: the target group's health checks decide that.
        for server in live.group.in_service():
            assert live.balancer.wait_healthy(server.address, 120), live.balancer.state(server.address)
        yield live


class WebSocket:
    """A websocket through CloudFront's stand-in (TLS, its domain), by hand (RFC 6455): the host has no client.
    It answers the server's pings, as browsers do."""

    def __init__(self, site, path: str) -> None:
        raw = socket.create_connection((site.cdn.address, 443), timeout=30)
        self.conn = site.cdn.authority.client_context().wrap_socket(raw, server_hostname=site.cdn.domain)
        key = base64.b64encode(os.urandom(16)).decode()
        self.conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {site.cdn.domain}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        self.pings = 0

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.conn.recv(65536)  # a timeout raises before anything is taken from the buffer
            if not data:
                raise ConnectionError("the websocket was closed")
            self.buffer += data
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def _until(self, end: bytes) -> bytes:
        while end not in self.buffer:
            data = self.conn.recv(65536)
            if not data:
                raise ConnectionError(f"closed before {end!r}: {self.buffer!r}")
            self.buffer += data
        head, self.buffer = self.buffer.split(end, 1)
        return head

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.conn.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _frame(self) -> tuple[int, bytes]:
        while len(self.buffer) < 2:
            data = self.conn.recv(65536)
            if not data:
                raise ConnectionError("the websocket was closed")
            self.buffer += data
        length = self.buffer[1] & 0x7F
        assert length < 126, length
        head = self._read(2 + length)
        return head[0] & 0x0F, head[2:]

    def echo(self, text: str) -> str:
        self._send(0x1, text.encode())
        while True:
            opcode, payload = self._frame()
            if opcode == 0x9:
                self._pong(payload)
            elif opcode == 0x1:
                return payload.decode()
            else:
                raise AssertionError(f"frame {opcode:#x}: {payload!r}")

    def _pong(self, payload: bytes) -> None:
        self.pings += 1
        self._send(0xA, payload)

    def idle(self, seconds: float) -> None:
        """Send nothing for `seconds`, answering pings: only the server's pings pass through the proxies."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.conn.settimeout(left)
            try:
                opcode, payload = self._frame()
            except TimeoutError:
                break
            assert opcode == 0x9, (opcode, payload)
            self._pong(payload)
        self.conn.settimeout(30)

    def close(self) -> None:
        self.conn.close()


def test_a_web_request_s_job_is_done_by_a_worker_through_elasticache(site):
    for server in site.group.in_service():
        for process in ("worker", "listener"):
            assert sh(server, f"systemctl is-active {NAME}-{process}.service").strip() == "active"
        # RDS over TLS for settings that read the DB_* variables: libpq's PGSSLMODE from the env contract.
        assert "PGSSLMODE='require'" in sh(server, f"cat /etc/{NAME}/env")
    for token in ("first", "second", "third"):
        job_done(site, token, "v1")
    # The worker's and the listener's connections to RDS are open now: every one of them over TLS.
    connections = site.database.psql(
        f"SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = '{NAME}'", "postgres"
    ).split()
    assert connections and set(connections) == {"t"}, connections


def test_a_websocket_through_cloudfront_outlives_the_balancers_idle_timeout(site):
    idle = site.balancer.idle_timeout
    websocket = WebSocket(site, "/ws/echo/")
    try:
        assert websocket.echo("hello") == "echo v1: hello"
        websocket.idle(idle + 15)  # longer than the load balancer keeps a silent connection
        assert websocket.pings >= 2, "uvicorn's pings (every 20 s) are what keeps it open"
        assert websocket.echo("still there") == "echo v1: still there"
    finally:
        websocket.close()


def test_a_release_rolls_under_load_and_every_process_runs_the_new_code(site, app):
    (app.folder / "jobs" / "version.py").write_text('VERSION = "v2"\n')
    app.change_page("v2")
    before = {server.instance_id for server in site.group.in_service()}
    with RequestLoop(site.url + app.list_path, clients=2, fetch=site.http_get, limit=900) as loop:
        result = site.up(config(app))
        time.sleep(2)
    assert result is not None and result.status == "Successful", result
    assert loop.failed == 0 and loop.ok > 20, (loop.ok, loop.errors[:5])
    after = site.group.in_service()
    assert len(after) == 2 and not before & {server.instance_id for server in after}
    job_done(site, "after-the-roll", "v2")
    wait_for(
        "the listener's heartbeats from the new code", lambda: app_state(site)["last_heartbeat"][0]["version"] == "v2"
    )
    websocket = WebSocket(site, "/ws/echo/")
    try:
        assert websocket.echo("again") == "echo v2: again"
    finally:
        websocket.close()


def test_the_schedule_ran_once_a_minute_across_the_servers(site):
    wait_for("a scheduled run of the new code", lambda: "v2" in app_state(site)["tick_versions"], 75)
    while not 15 <= time.gmtime().tm_sec <= 45:  # not while a minute's run is between its job and its record
        time.sleep(1)
    rows = site.database.psql(
        "SELECT extract(epoch FROM due)::bigint, ran_by FROM djangoship_schedule WHERE job = 'tick' ORDER BY due", NAME
    ).split()
    minutes = [int(line.split("|")[0]) for line in rows]
    span = " to ".join(time.strftime("%H:%M:%S", time.gmtime(m)) for m in (minutes[0], minutes[-1])) if minutes else ""
    print(
        f"\n[scaled-workers] tick: {len(minutes)} minutes ({span} UTC),"
        f" run by {sorted({r.split('|')[1] for r in rows})}"
    )
    # The minutes the servers lived through, not others: none before the site, the last one just now.
    assert minutes and minutes[0] >= site.started - 60 and minutes[-1] >= time.time() - 120, (site.started, minutes)
    assert len(minutes) >= 3, rows
    assert app_state(site)["ticks"] == len(minutes), "each minute's job ran once, none unrecorded"
    assert [b - a for a, b in itertools.pairwise(minutes)] == [60] * (len(minutes) - 1), "a minute missed"
    for server in site.group.in_service():  # every run ended cleanly (see test_scaled_servers)
        journal = sh(server, f"journalctl -u {NAME}-tick.service --no-pager -o cat")
        for trouble in ("Broken pipe", "timed out", "Killing process", "ERROR"):
            assert trouble not in journal, journal
        # Its boot's catch-up ran, in a unit of its own, and ended well (said by the journal: systemd unloads the
        # unit once it is done, as nothing refers to it, and its state with it).
        catch_up = sh(server, f"journalctl -u {NAME}-tick-catch-up.service --no-pager -o cat")
        assert "Finished" in catch_up and "Failed" not in catch_up, catch_up
