"""The scaled profile, booted (issue 30): app servers from their own launch template, behind the stand-ins.

Two app servers boot from the launch template's user-data (harness/scaledsite.py: the program under its mocks,
moto behind AWS's host names, IMDSv2, RDS with TLS, the load balancer and CloudFront's routing, the group played
from its declared settings). Then, in order on the same site: what the first boot did, pages and uploads, what
the app may reach, a release and an environment change each rolled under load, a server powered off mid-traffic,
and last a release that cannot serve.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from site_helpers import Browser, multipart, png_bytes, sh

from harness.localsite import RequestLoop, change_home_page, http_get
from harness.scaledsite import launch_template_user_data, scaled_site

pytestmark = pytest.mark.localboot
ROOT = Path(__file__).resolve().parent.parent.parent
APP = "photofeed"
# The stand-in CA is in the guests' system store (as an AMI trusts the public CAs that sign AWS's endpoints), but
# the app's boto3 reads PyPI's certifi bundle, which knows only public CAs: the test's config points it at the
# system store. On EC2 the app needs nothing of the kind.
TRUST_STANDIN_CA = {"AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}


# A process on every server and a job every minute (issue 31): management commands the fixture adds to the app,
# which write where they ran into the database.
HEARTBEAT = """
import os, socket, time
from django.core.management.base import BaseCommand
from django.db import connection

class Command(BaseCommand):
    def handle(self, *args, **options):
        release = os.path.basename(os.getcwd())  # the unit's WorkingDirectory, resolved: the live release
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS test_heartbeat (host text, release text, at timestamptz DEFAULT now())"
            )
            while True:
                cursor.execute(
                    "INSERT INTO test_heartbeat (host, release) VALUES (%s, %s)", [socket.gethostname(), release]
                )
                time.sleep(2)
"""
TICK = """
import socket
from django.core.management.base import BaseCommand
from django.db import connection

class Command(BaseCommand):
    def handle(self, *args, **options):
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS test_tick (host text, at timestamptz DEFAULT now())")
            cursor.execute("INSERT INTO test_tick (host) VALUES (%s)", [socket.gethostname()])
"""


def config(app: Path, env: dict[str, str] | None = None) -> dict:
    return {
        "app": {
            "source": str(app),
            "requirements": "requirements/scaled.txt",  # django-storages: uploads to the bucket
            "env": {**TRUST_STANDIN_CA, **(env or {})},
            "processes": {"heartbeat": "manage.py heartbeat"},
            "schedules": {"tick": {"schedule": "*:*:00", "command": "manage.py tick"}},
        },
        "appMinSize": 2,
        "appDesiredCapacity": 2,
        "redis": True,  # ElastiCache (its stand-in: a TLS-only redis-server)
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scaled") / APP
    shutil.copytree(
        ROOT / "examples" / APP,
        folder,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "media", "staticfiles"),
    )
    commands = folder / "feed" / "management" / "commands"
    commands.mkdir(parents=True)
    for package in (commands.parent, commands):
        (package / "__init__.py").write_text("")
    (commands / "heartbeat.py").write_text(HEARTBEAT)
    (commands / "tick.py").write_text(TICK)
    return folder


@pytest.fixture(scope="module")
def site(network, app, tmp_path_factory):
    started = time.time()
    with scaled_site(network, config(app), tmp_path_factory.mktemp("scaled-run")) as live:
        live.started = started  # type: ignore[attr-defined]
        yield live


def boot_log(instance) -> str:
    """The server's first-boot output, once cloud-init is done (the hook is completed just before its last line)."""
    status = sh(instance, "cloud-init status --wait --long || true")
    assert "status: done" in status, status
    return sh(instance, "cat /var/log/cloud-init-output.log")


def releases_recorded(site) -> list[tuple[str, str]]:
    rows = site.database.psql("SELECT release_id, installed_by FROM djangoship_release ORDER BY installed_at", APP)
    return [tuple(line.split("|")) for line in rows.split()]  # type: ignore[misc]


def test_both_servers_boot_from_the_launch_template_and_one_migrates(site):
    servers = site.group.in_service()
    assert len(servers) == 2 and all(site.balancer.state(s.address) in ("healthy", "initial") for s in servers)
    user_data = launch_template_user_data(site.run)
    for server in servers:
        # cloud-init kept what it was handed: the launch template's user-data, byte for byte.
        kept = server.guest.exec(["cat", "/var/lib/cloud/instance/user-data.txt"], check=True).stdout
        assert kept == user_data
        assert server.hook_result == "CONTINUE", server.reason
        log = boot_log(server)
        assert f"release {site.run.outputs['releaseId']} is live on {server.name}" in log, log[-2000:]
    logs = [boot_log(server) for server in servers]
    migrated = [log for log in logs if "first app server on this release: static files to S3, then migrations" in log]
    skipped = [log for log in logs if "already migrated by" in log]
    assert len(migrated) == 1 and len(skipped) == 1, [log[-1500:] for log in logs]
    assert len(releases_recorded(site)) == 1
    # Each server read its parameters itself, with its instance role's credentials.
    reads = [call for call in site.api.calls_to("ssm") if call.action == "GetParameter"]
    assert {call.client for call in reads} == {server.address for server in servers}, reads
    # Everything the boots did, the instance role's declared policies allow (IAM's stand-in judged each call).
    assert site.api.access.denials == [], site.api.access.denials


def test_pages_admin_and_static_files_through_the_load_balancer(site):
    for server in site.group.in_service():
        assert site.balancer.wait_healthy(server.address, 120), site.balancer.state(server.address)
    status, _, page = site.get("/")
    assert status == 200 and b"photofeed" in page.lower(), page[:300]
    # Static files come from the bucket (the first server of the release uploaded them), through CloudFront.
    links = re.findall(rb'(?:href|src)="(/static/[^"]+)"', page)
    assert links, page[:800]
    for link in links:
        status, headers, _ = site.get(link.decode())
        assert status == 200 and "immutable" in headers.get("Cache-Control", ""), (link, status, headers)
    keys = [
        o["Key"] for o in site.api.client("s3").list_objects_v2(Bucket=f"{APP}-assets", Prefix="static/")["Contents"]
    ]
    assert f"static{links[0].decode()[len('/static') :]}" in keys, keys[:10]
    # Anything that does not come through CloudFront (without its secret header) is refused by the listener.
    assert http_get(site.balancer.url + "/")[0] == 403
    browser = Browser(site.url, (site.cdn.handler(),))
    token = browser.csrf("/admin/login/")
    form = (
        f"csrfmiddlewaretoken={token}&username={site.run.outputs['adminUser']}"
        f"&password={site.run.outputs['adminPassword']}&next=/admin/"
    ).encode()
    status, headers, _ = browser.request(
        "/admin/login/?next=/admin/",
        form,
        {"Referer": site.url + "/admin/login/", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 302 and headers["Location"] == "/admin/", status
    status, _, page = browser.request("/admin/")
    assert status == 200 and b"Site administration" in page


def test_an_upload_lands_in_the_bucket_and_is_served(site):
    browser = Browser(site.url, (site.cdn.handler(),))
    token = browser.csrf("/")
    body, kind = multipart(
        {"csrfmiddlewaretoken": token, "title": "scaled upload"}, {"image": ("dot.png", png_bytes(), "image/png")}
    )
    status, _, _ = browser.request("/upload/", body, {"Content-Type": kind, "Referer": site.url + "/"})
    assert status in (302, 303), status
    _, _, page = browser.request("/")
    match = re.search(rb'src="https://[^/"]+(/media/[^"]+)"', page)
    assert b"scaled upload" in page and match, page[:800]
    key = match.group(1).decode().lstrip("/")
    stored = site.api.client("s3").get_object(Bucket=f"{APP}-assets", Key=key)["Body"].read()
    assert stored == png_bytes()
    status, headers, served = site.get("/" + key)
    assert status == 200 and served == png_bytes(), status
    # Uploads are data, never code: the behaviour's response headers.
    assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]


def test_the_app_gets_the_media_role_and_never_the_instance_role(site):
    server = site.group.in_service()[0]
    # The app's user cannot reach the metadata service (the instance role is root's).
    refused = sh(
        server,
        f"setpriv --reuid={APP} --regid={APP} --init-groups -- "
        "curl -s -m 5 -o /dev/null -w '%{http_code}' -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
        "http://169.254.169.254/latest/api/token || echo ' refused'",
    )
    assert "refused" in refused, refused
    # The token file: root and the app's group only; without it the endpoint refuses.
    assert sh(server, f"stat -c %a:%U:%G /run/{APP}-media/token").strip() == f"640:root:{APP}"
    assert "403" in sh(server, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:51680/media")
    # What the app's boto3 gets: credentials of the media role, from the endpoint the env file names.
    identity = sh(
        server,
        f"set -a; . /etc/{APP}/env; set +a; setpriv --reuid={APP} --regid={APP} --init-groups -- "
        f"/srv/{APP}/current/venv/bin/python -c "
        "'import boto3, json; s = boto3.Session(); c = s.get_credentials(); "
        'print(json.dumps({"method": c.method, "arn": s.client("sts").get_caller_identity()["Arn"]}))\'',
    )
    found = json.loads(identity.strip().splitlines()[-1])
    assert found["method"] == "container-role", found
    assert ":assumed-role/" in found["arn"] and "media-role" in found["arn"], found
    # With those credentials: the uploads, and nothing else — no parameter, no release archive, no static file.
    env_parameter = site.run.named(f"{APP}-env").inputs["name"]
    archive = site.run.named(f"{APP}-release").inputs["key"]
    attempts = sh(
        server,
        f"set -a; . /etc/{APP}/env; set +a; setpriv --reuid={APP} --regid={APP} --init-groups -- "
        f"/srv/{APP}/current/venv/bin/python -c '{MEDIA_ATTEMPTS}' {env_parameter} {archive}",
    )
    outcomes = json.loads(attempts.strip().splitlines()[-1])
    assert outcomes == {
        "put media": "ok",
        "get media": "ok",
        "list media": "ok",
        "put static": "AccessDenied",
        "get release archive": "AccessDenied",
        "get parameter": "AccessDeniedException",
    }, outcomes
    # IAM's stand-in refused exactly those three, as the media role's: nothing else was refused to anyone.
    refused = [(d.principal.rsplit("/", 1)[-1], d.action) for d in site.api.access.denials]
    assert sorted(refused) == [
        (f"{APP}-media-role", "s3:GetObject"),
        (f"{APP}-media-role", "s3:PutObject"),
        (f"{APP}-media-role", "ssm:GetParameter"),
    ], site.api.access.denials
    site.api.access.denials.clear()  # expected: later tests check that nothing else is refused


# Run on an app server as the app, with its environment: what the media credentials may do.
MEDIA_ATTEMPTS = """
import json, sys, boto3
s3, ssm, bucket = boto3.client("s3"), boto3.client("ssm"), "photofeed-assets"
def attempt(call):
    try:
        call()
        return "ok"
    except Exception as error:
        return error.response["Error"]["Code"]
print(json.dumps({
    "put media": attempt(lambda: s3.put_object(Bucket=bucket, Key="media/probe.txt", Body=b"probe")),
    "get media": attempt(lambda: s3.get_object(Bucket=bucket, Key="media/probe.txt")),
    "list media": attempt(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="media/")),
    "put static": attempt(lambda: s3.put_object(Bucket=bucket, Key="static/probe.txt", Body=b"x")),
    "get release archive": attempt(lambda: s3.get_object(Bucket="photofeed-artifacts", Key=sys.argv[2])),
    "get parameter": attempt(lambda: ssm.get_parameter(Name=sys.argv[1], WithDecryption=True)),
}))
"""


def test_redis_is_reached_over_tls_with_its_certificate_checked_and_its_token(site):
    server = site.group.in_service()[0]
    # As the app, with its environment: REDIS_URL as Celery or django-redis read it (TLS, certificate verified
    # against the system's store, the auth token), with nothing but Python's standard library.
    answers = sh(
        server,
        f"set -a; . /etc/{APP}/env; set +a; setpriv --reuid={APP} --regid={APP} --init-groups -- "
        f"python3 -c '{REDIS_ATTEMPT}'",
    )
    assert answers.split() == ["+OK", "+PONG", "+OK", "$5", "hello"], answers
    assert "ssl_cert_reqs=required" in sh(server, f"grep ^REDIS_URL= /etc/{APP}/env")


# Run on an app server: AUTH, PING, SET and GET over TLS to REDIS_URL, printing the raw answers.
REDIS_ATTEMPT = r"""
import os, socket, ssl, urllib.parse
url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
assert url.scheme == "rediss"
context = ssl.create_default_context()
with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
        tls.sendall(f"AUTH {url.password}\r\nPING\r\nSET probe hello\r\nGET probe\r\n".encode())
        data = b""
        while data.count(b"\r\n") < 5:
            data += tls.recv(4096)
print(data.decode())
"""


def test_a_new_release_rolls_through_both_servers_with_no_failed_request(site, app):
    before = {server.instance_id for server in site.group.in_service()}
    change_home_page(app, "rolled-v2")
    with RequestLoop(site.url + "/", clients=2, fetch=site.http_get, limit=900) as loop:
        result = site.up(config(app))
        time.sleep(2)
    assert result is not None and result.status == "Successful", result
    assert loop.failed == 0 and loop.ok > 20, (loop.ok, loop.errors[:5])
    after = site.group.in_service()
    assert len(after) == 2 and not before & {server.instance_id for server in after}
    for _ in range(6):
        assert b"release:rolled-v2" in site.get("/")[2]
    recorded = releases_recorded(site)
    assert len(recorded) == 2 and recorded[-1][1] in {server.name for server in after}, recorded


def test_an_env_change_rolls_them_the_same_way(site, app):
    before = {server.instance_id for server in site.group.in_service()}
    with RequestLoop(site.url + "/", clients=2, fetch=site.http_get, limit=900) as loop:
        result = site.up(config(app, {"ROLL_CHECK": "env-v2"}))
        time.sleep(2)
    assert result is not None and result.status == "Successful", result
    assert loop.failed == 0 and loop.ok > 20, (loop.ok, loop.errors[:5])
    after = site.group.in_service()
    assert len(after) == 2 and not before & {server.instance_id for server in after}
    for server in after:
        assert "ROLL_CHECK='env-v2'" in sh(server, f"cat /etc/{APP}/env")
    # The same release: nothing to migrate again, no second row.
    assert len(releases_recorded(site)) == 2


def test_the_process_runs_on_every_server_with_the_live_release(site):
    """app.processes on the scaled profile: on each app server, restarted onto the release each boot installed."""
    for server in site.group.in_service():
        host = sh(server, "hostname").strip()
        live = sh(server, f"basename $(readlink -f /srv/{APP}/current)").strip()
        assert sh(server, f"systemctl is-active {APP}-heartbeat.service").strip() == "active"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            beats = site.database.psql(
                f"SELECT DISTINCT release FROM test_heartbeat WHERE host = '{host}' AND at > now() - interval '10 s'",
                APP,
            ).split()
            if beats:
                break
            time.sleep(1)
        assert beats == [live], (server.name, beats, live)


def test_a_powered_off_server_is_routed_around_and_replaced(site):
    check = site.balancer.check
    # The load balancer notices within its health check's window: unhealthy_threshold failures, interval apart,
    # each up to its timeout; a request already sent to the server may take up to the connect timeout to fail.
    window = check.unhealthy_threshold * check.interval + check.timeout + 10
    victim = site.group.in_service()[0]
    with RequestLoop(site.url + "/", clients=2, fetch=site.http_get, limit=900) as loop:
        time.sleep(3)
        powered_off = time.monotonic()
        victim.guest.exec(["systemctl", "poweroff", "--force", "--force"], timeout=30)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            serving = [s for s in site.group.in_service() if s.instance_id != victim.instance_id]
            if len(serving) == 2 and all(site.balancer.state(s.address) == "healthy" for s in serving):
                break
            time.sleep(2)
        settled = time.monotonic()
    late = [started - powered_off for started in loop.failed_at if started > powered_off + window]
    assert not late, f"requests failed {late} s after the power-off (window {window:.0f} s): {loop.errors[:5]}"
    assert loop.ok > 20, loop.ok
    assert settled < deadline, "no replacement joined the load balancer"
    replacement = [s for s in site.group.in_service() if s.instance_id != victim.instance_id]
    assert any(s.launched_at > powered_off for s in replacement), replacement


# --- the operator's verbs, through Systems Manager (issue 31, item 5) ---------------------------------------


@pytest.fixture(scope="module")
def operator(site, tmp_path_factory):
    """`python3 -m djangoship` on the operator's machine (this host): the stack's outputs in a file, the AWS CLI
    pointed at the stand-ins' front on loopback (the guests reach it at AWS's names, unchanged)."""
    folder = tmp_path_factory.mktemp("operator")
    outputs = folder / "prod.json"
    outputs.write_text(json.dumps(site.run.outputs, default=str))
    outputs.chmod(0o600)
    # The AWS CLI of requirements-dev (beside this Python: a worktree has no .venv of its own), sent to the front.
    # As `--endpoint-url`, not only AWS_ENDPOINT_URL: CLI v1 sends RDS's calls in us-east-1 to rds.amazonaws.com
    # unless the option is given.
    cli = folder / "bin" / "aws"
    cli.parent.mkdir()
    cli.write_text(f'#!/bin/sh\nexec {Path(sys.executable).parent / "aws"} --endpoint-url "$AWS_ENDPOINT_URL" "$@"\n')
    cli.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{cli.parent}{os.pathsep}{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{site.api.local_port}",
        "AWS_ACCESS_KEY_ID": "operator",
        "AWS_SECRET_ACCESS_KEY": "operator",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }

    def verb(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "djangoship", "--outputs-file", str(outputs), *argv]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
        )

    return verb


def test_the_operators_status_shows_the_group_each_servers_release_and_the_last_roll(site, operator):
    result = operator("status")
    assert result.returncode == 0, result.stderr + result.stdout
    serving = site.group.in_service()
    for server in serving:
        assert re.search(rf"^  {server.instance_id}  us-east-1[ab]  InService  Healthy  ", result.stdout, re.M), (
            result.stdout
        )
        # Each server's own answer, run on it as root by the stand-in agent through Run Command.
        assert re.search(rf"^{server.instance_id}:\n  release {site.run.outputs['releaseId']} ", result.stdout, re.M)
    assert "gunicorn=active" in result.stdout and "maintenance:  off" in result.stdout, result.stdout
    last = site.group.refreshes[-1] if site.group.refreshes else None
    assert f"last roll:    {last['status'] if last else 'none yet'}" in result.stdout, result.stdout
    ran = [i for i in site.run_command.invocations.values() if "status" in i.comment]
    assert {i.instance_id for i in ran} == {s.instance_id for s in serving} and {i.status for i in ran} == {"Success"}
    # The agents fetched their commands with their instance role's credentials, which IAM's stand-in allowed.
    assert site.api.access.denials == [], site.api.access.denials


def test_the_operators_logs_come_from_every_server_each_line_prefixed(site, operator):
    servers = {server.instance_id for server in site.group.in_service()}
    # The load balancer's health checks, in each server's nginx access log: the last lines may be an earlier
    # test's requests, so until each server's last few show a check (one interval apart, each server's own).
    deadline = time.monotonic() + 2 * site.balancer.check.interval + 30
    while True:
        result = operator("logs", "-n", "5", "nginx")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines and {line.split("  ", 1)[0] for line in lines} == servers, result.stdout[:2000]
        checked = {s for s in servers if any(line.startswith(s) and "/healthz" in line for line in lines)}
        if checked == servers:
            break
        assert time.monotonic() < deadline, result.stdout[:2000]
        time.sleep(site.balancer.check.interval / 2)


def test_manage_runs_on_one_server_said_which_and_passes_failures_through(site, operator):
    result = operator("manage", "check")
    assert result.returncode == 0 and "System check identified no issues" in result.stdout, result
    assert "one of 2 in service; --instance ID picks another" in result.stderr, result.stderr
    other = site.group.in_service()[1].instance_id
    failed = operator("--instance", other, "manage", "no-such-command")
    assert failed.returncode != 0 and "Unknown command: 'no-such-command'" in failed.stderr, failed
    assert f"failed on {other}: Failed" in failed.stderr, failed.stderr


def test_backup_is_an_rds_snapshot_holding_the_databases_rows(site, operator):
    result = operator("backup")
    assert result.returncode == 0, result.stderr
    snapshot = site.operator.snapshots[result.stdout.strip()]
    assert snapshot.status == "available" and "available, 100 %" in result.stderr, result.stderr
    for table in ("djangoship_release", "django_migrations", "auth_user"):
        query = f"SELECT count(*) FROM {table}"
        assert site.database.psql(query, snapshot.database) == site.database.psql(query, APP), table


def test_maintenance_is_the_load_balancers_answer_through_cloudfront(site, operator):
    status, _, page = site.get("/")
    links = re.findall(rb'(?:href|src)="(/static/[^"]+)"', page)
    assert status == 200 and links
    on = operator("maintenance", "on")
    assert on.returncode == 0 and on.stdout.strip() == "on", on
    try:
        status, _, page = site.get("/")
        assert status == 503 and b"Down for maintenance" in page, (status, page[:300])
        # Static files and uploads still come from the bucket; the servers stay healthy and in service.
        assert site.get(links[0].decode())[0] == 200
        assert "maintenance:  ON" in operator("status").stdout
        assert all(site.balancer.state(s.address) == "healthy" for s in site.group.in_service())
    finally:
        off = operator("maintenance", "off")
    assert off.returncode == 0 and off.stdout.strip() == "off", off
    assert site.get("/")[0] == 200


def test_releases_are_the_groups_record(site, operator):
    result = operator("releases")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^\* {site.run.outputs['releaseId']}  first installed ", result.stdout, re.M), result.stdout


def test_an_app_server_cannot_send_commands(site):
    """Its role lets its agent fetch its own commands, never send one (to itself or another server)."""
    attempt = sh(site.group.in_service()[0], f"python3 - <<'PY'\n{SEND_COMMAND}PY")
    assert attempt.strip() == "AccessDeniedException", attempt


SEND_COMMAND = """\
import boto3
try:
    boto3.client("ssm", region_name="us-east-1").send_command(
        InstanceIds=["i-0123456789abcdef0"], DocumentName="AWS-RunShellScript", Parameters={"commands": ["id"]}
    )
    print("sent")
except Exception as error:
    print(error.response["Error"]["Code"])
"""


def schedule_story(site) -> str:
    """What a missed minute's cause is read from: each run's record, and the schedule's sessions in the database's
    log (connected, waited on the lock, left), with the group's launches and terminations beside them."""
    rows = site.database.psql(
        "SELECT to_char(due, 'HH24:MI:SS'), ran_by, to_char(finished, 'HH24:MI:SS.MS'), status"
        " FROM djangoship_schedule WHERE job = 'tick' ORDER BY due",
        APP,
    )
    sessions = [line for line in site.database.log().splitlines() if f"{APP}-schedule-tick" in line]
    return f"records (due, server, finished, status):\n{rows}\nthe schedule's sessions:\n" + "\n".join(sessions[-300:])


def test_the_schedule_ran_once_a_minute_across_the_servers(site):
    """app.schedules on the scaled profile: every server's timer fires each minute, through two rolls and a server
    powered off; each minute's job ran exactly once, none was missed."""
    # Not while a minute's run may be between its job and its record.
    while not 15 <= time.gmtime().tm_sec <= 45:
        time.sleep(1)
    dues = site.database.psql(
        "SELECT extract(epoch FROM due)::bigint, ran_by, status FROM djangoship_schedule"
        " WHERE job = 'tick' ORDER BY due",
        APP,
    ).split()
    runs = [line.split("|") for line in dues]
    ticks = int(site.database.psql("SELECT count(*) FROM test_tick", APP))
    print(f"\n[scaled] tick: {len(runs)} minutes, run by {sorted({host for _, host, _ in runs})}")
    assert len(runs) >= 5, runs
    assert ticks == len(runs), f"{ticks} runs of the job for {len(runs)} recorded minutes"
    minutes = [int(due) for due, _, _ in runs]
    assert all(due % 60 == 0 for due in minutes), minutes
    # The minutes the servers lived through, not others: none before the site, the last one just now.
    assert minutes[0] >= site.started - 60 and minutes[-1] >= time.time() - 120, (site.started, minutes)
    gaps = [b - a for a, b in itertools.pairwise(minutes)]
    assert gaps == [60] * (len(minutes) - 1), f"a minute missed: {gaps}\n{schedule_story(site)}"
    assert all(status == "0" for _, _, status in runs), runs
    # Each server has the timer; the ones that did not run a minute said so, and every run ended cleanly (a psql
    # left behind would hold the unit in its stop, and the next minute's firing with it).
    skipped = 0
    for server in site.group.in_service():
        assert "OnCalendar" in sh(server, f"systemctl cat {APP}-tick.timer")
        assert sh(server, f"systemctl is-active {APP}-tick.timer").strip() == "active"
        journal = sh(server, f"journalctl -u {APP}-tick.service --no-pager -o cat")
        skipped += journal.count("already ran on another server")
        for trouble in ("Broken pipe", "timed out", "Killing process", "ERROR"):
            assert trouble not in journal, journal
    assert skipped > 0, "the server that did not run a minute said so"


def test_a_release_that_cannot_serve_never_receives_a_request(site, app):
    serving = {server.instance_id for server in site.group.in_service()}
    # A front page that raises: the new server's own activation check refuses it (500), its boot abandons.
    template = app / "feed" / "templates" / "feed" / "home.html"
    template.write_text(template.read_text().replace("{% block content %}", "{% block content %}{% url 'nope' %}", 1))
    with RequestLoop(site.url + "/", clients=2, fetch=site.http_get, limit=900) as loop:
        result = site.up(config(app, {"ROLL_CHECK": "env-v2"}))
    assert result is not None and result.status == "Failed", result
    assert "ABANDON" in result.reason, result.reason
    assert loop.failed == 0 and loop.ok > 10, (loop.ok, loop.errors[:5])
    abandoned = result.launched
    assert abandoned and all(i.state == "Terminated" and i.hook_result == "ABANDON" for i in abandoned), abandoned
    # Never in the load balancer, so never a request; the old servers still serve, the roll stopped.
    assert {server.instance_id for server in site.group.in_service()} == serving
    assert all(site.balancer.state(i.address) == "unused" for i in abandoned)
    assert site.get("/")[0] == 200
