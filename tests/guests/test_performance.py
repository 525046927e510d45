"""The connection pooler on a real guest: the app reaches PostgreSQL only through PgBouncer (session pooling),
everything Django does works through it, and nothing new listens beyond loopback.

The default-settings guest (web1, shared with test_local_boot through conftest.default_site; dbPooler on).
Timings are never asserted here: the figures come from `bench/` (see docs/performance.md).
"""

from __future__ import annotations

import re
import urllib.parse

import pytest
from site_helpers import APP, admin_login, sh, upload_photo

from harness.localsite import http_get

pytestmark = pytest.mark.localboot
POOLER_PORT = 6432
ADMIN_CONSOLE = "runuser -u postgres -- psql -X -qA -P footer=off -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer"
PSQL = "runuser -u postgres -- psql -X -qAt -d postgres"


@pytest.fixture(scope="module")
def site(default_site):
    """The default-settings guest that test_local_boot also checks (conftest.default_site): the pooler is on
    by default, so that guest is the one to prove it on, without a first boot of its own."""
    return default_site


def env_values(site) -> dict[str, str]:
    text = sh(site, f"cat /etc/{APP}/env")
    return {key: value.strip("'") for key, value in (line.split("=", 1) for line in text.splitlines() if line)}


def console(site, command: str) -> list[dict[str, str]]:
    """The rows of a PgBouncer admin console command, by column name: the columns differ between versions
    (1.23 added `replication` to SHOW SERVERS: Debian 13 has 1.24, Debian 12 1.18)."""
    header, *lines = sh(site, f"{ADMIN_CONSOLE} -F '|' -c '{command}'").splitlines()
    return [dict(zip(header.split("|"), line.split("|"), strict=True)) for line in lines if line]


def manage(site, code: str) -> str:
    return sh(site, f"{APP}-manage shell -c {sh_quote(code)}").strip()


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_env_contract_points_at_the_pooler(site):
    env = env_values(site)
    assert env["DJANGO_DB_HOST"] == "127.0.0.1" and env["DJANGO_DB_PORT"] == str(POOLER_PORT)
    url = urllib.parse.urlsplit(env["DATABASE_URL"])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", POOLER_PORT, f"/{APP}")
    assert url.password == env["DJANGO_DB_PASSWORD"]


def test_app_requests_are_served_through_pgbouncer(site):
    for _ in range(5):
        assert http_get(site.url + "/")[0] == 200
    # PgBouncer's own view: a pool for the app's database and role, with PostgreSQL connections in it.
    pools = console(site, "SHOW POOLS")
    assert any(row["database"] == APP and row["user"] == APP for row in pools), pools
    servers = console(site, "SHOW SERVERS")
    assert servers, "PgBouncer holds no PostgreSQL connection after five page views"
    # PostgreSQL's view: every connection of the app's role comes from PgBouncer's side of loopback
    # (its client port is one that PgBouncer lists as a server connection's local port).
    pgbouncer_ports = {int(row["local_port"]) for row in servers}
    backends = sh(
        site, f"{PSQL} -F '|' -c \"SELECT client_addr, client_port FROM pg_stat_activity WHERE usename = '{APP}'\""
    )
    rows = [line.split("|") for line in backends.splitlines() if line]
    assert rows, "no PostgreSQL connection of the app's role"
    for address, port in rows:
        assert address == "127.0.0.1", backends
        assert int(port) in pgbouncer_ports, (backends, servers)


def test_the_app_itself_reports_the_pooler(site):
    settings = manage(
        site,
        "from django.db import connection; connection.ensure_connection(); "
        "print(connection.settings_dict['PORT'], connection.connection.info.port)",
    )
    assert settings.splitlines()[-1].split() == [str(POOLER_PORT), str(POOLER_PORT)]


def test_migrations_ran_through_the_pooler(site):
    result = site.guest.exec(["bash", "-c", f"{APP}-manage migrate --check"], timeout=120)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    plan = sh(site, f"{APP}-manage showmigrations --plan")
    assert "[X]  feed.0001" in plan and "[ ]" not in plan, plan


def test_session_features_work_through_the_pooler(site):
    """Session pooling keeps what transaction pooling would break: server-side cursors (.iterator() outside a
        transaction uses WITH HOLD cursors), prepared statements that outlive a transaction (psycopg 3 prepares
    repeated queries with server-side binding), transactions, session settings."""
    code = (
        "from django.db import connection, transaction\n"
        "from feed.models import Photo\n"
        "[Photo.objects.create(title=f'cursor-{i}', image='photos/none.png') for i in range(5)]\n"
        "rows = [p.pk for p in Photo.objects.filter(title__startswith='cursor-').iterator(chunk_size=2)]\n"
        "assert len(rows) >= 5, rows\n"
        "with transaction.atomic():\n"
        "    [list(Photo.objects.filter(pk=rows[0])) for _ in range(10)]\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('PREPARE perf_check AS SELECT count(*) FROM feed_photo')\n"
        "    cursor.execute('EXECUTE perf_check')\n"
        "    cursor.execute('SELECT count(*) FROM pg_prepared_statements'); prepared = cursor.fetchone()[0]\n"
        "    cursor.execute(\"SET application_name = 'perf-check'\")\n"
        "    cursor.execute('SHOW application_name'); name = cursor.fetchone()[0]\n"
        "print('ok', prepared, name)\n"
    )
    out = sh(site, f"{APP}-manage shell <<'PY'\n{code}PY").strip().splitlines()[-1].split()
    assert out[0] == "ok" and int(out[1]) >= 1 and out[2] == "perf-check", out


def test_admin_login_and_upload_work(site):
    media_url = upload_photo(site, "uploaded-through-the-pooler")
    assert http_get(site.url + media_url)[0] == 200
    browser = admin_login(site)
    status, _, page = browser.request("/admin/feed/photo/")
    assert status == 200 and b"uploaded-through-the-pooler" in page


def test_postgresql_and_pgbouncer_listen_on_loopback_only(site):
    listening = sh(site, "ss -H -ltnp")
    postgres = [line for line in listening.splitlines() if '"postgres"' in line]
    pgbouncer = [line for line in listening.splitlines() if '"pgbouncer"' in line]
    assert postgres and all(re.search(r"(127\.0\.0\.1|\[::1\]):5432\s", line) for line in postgres), postgres
    assert pgbouncer and all(re.search(r"127\.0\.0\.1:6432\s", line) for line in pgbouncer), pgbouncer
    exposed = {
        int(line.split()[3].rsplit(":", 1)[1])
        for line in listening.splitlines()
        if not line.split()[3].startswith(("127.", "[::1]"))
    }
    assert exposed == {22, 80}, listening


def test_auth_file_is_private_and_password_stays_scram_in_postgresql(site):
    assert sh(site, "stat -c %a:%U:%G /etc/pgbouncer/userlist.txt").strip() == "640:root:postgres"
    assert sh(site, "stat -c %a:%U:%G /etc/pgbouncer/pgbouncer.ini").strip() == "640:root:postgres"
    password = env_values(site)["DJANGO_DB_PASSWORD"]
    assert sh(site, "cat /etc/pgbouncer/userlist.txt") == f'"{APP}" "{password}"\n'
    # Written from the environment on stdin: not in user-data, not in any command line of the steps.
    assert password not in sh(site, "cat /var/lib/cloud/instance/user-data.txt")
    assert all(password not in step.inputs.get("create", "") for step in site.run.steps())
    stored = sh(site, f"{PSQL} -c \"SELECT rolpassword FROM pg_authid WHERE rolname = '{APP}'\"").strip()
    assert stored.startswith("SCRAM-SHA-256$"), stored[:20]


def test_pooler_refuses_a_wrong_password(site):
    wrong = site.guest.exec(
        [
            "bash",
            "-c",
            f"PGPASSWORD=not-the-password psql -X -h 127.0.0.1 -p {POOLER_PORT} -U {APP} -d {APP} -c 'SELECT 1'",
        ],
        timeout=30,
    )
    assert wrong.returncode != 0 and b"authentication failed" in wrong.stderr, wrong.stderr
    right = sh(
        site,
        f"set -a; . /etc/{APP}/env; PGPASSWORD=$DJANGO_DB_PASSWORD psql -X -qAt -h 127.0.0.1 "
        f"-p {POOLER_PORT} -U {APP} -d {APP} -c 'SELECT current_user'",
    )
    assert right.strip() == APP


def test_pooler_off_then_on_again(site):
    """dbPooler=false: only configure runs; the app goes straight to PostgreSQL and PgBouncer stops."""
    steps = site.up({**site.config, "dbPooler": False})
    assert [step.name for step in steps if step.ran] == [f"{APP}-configure"]
    assert env_values(site)["DJANGO_DB_PORT"] == "5432"
    assert sh(site, "systemctl is-active pgbouncer.service", check=False).strip() != "active"
    assert http_get(site.url + "/")[0] == 200
    steps = site.up({**site.config, "dbPooler": True})
    assert [step.name for step in steps if step.ran] == [f"{APP}-configure"]
    assert env_values(site)["DJANGO_DB_PORT"] == str(POOLER_PORT)
    assert sh(site, "systemctl is-active pgbouncer.service").strip() == "active"
    assert http_get(site.url + "/")[0] == 200
