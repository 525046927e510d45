"""The move, one verb (issue 31): a single server's data into a scaled stack built beside it, by
`python3 -m djangoship --outputs-file SINGLE move --to-outputs-file SCALED` as an operator runs it.

The source is a single-server guest (harness/localsite.py) running tests/foreign_apps.py's `workers` project —
Celery through its Redis, a listener writing a row a second, schedules — with rows, uploads and a job still queued
when the move starts; the target a scaled site on the stand-ins (harness/scaledsite.py, one app server, ElastiCache's
stand-in) running the same project, whose own listener has already written rows. In order: the move refuses a target
with data and changes nothing; with the operator's word it drains the queue (the job is done by the source's worker,
into the dump), is killed after its dump step and, run again, goes on from there; then both sides are counted — every
table's rows, every upload's bytes, served through CloudFront — the source unchanged, the target taking writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from foreign_apps import ForeignApp, workers_for_app_servers
from site_helpers import Browser, multipart, png_bytes, sh, wait_for

from harness.localsite import http_get, local_site, write_outputs
from harness.scaledsite import scaled_site

pytestmark = pytest.mark.localboot
ROOT = Path(__file__).resolve().parent.parent.parent
NAME = "shop"
# Tables the test counts itself on both sides (the verb counts every table; these are the ones this app writes).
TABLES = ("jobs_job", "jobs_heartbeat", "jobs_tick", "jobs_upload", "auth_user", "django_migrations")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> ForeignApp:
    return workers_for_app_servers(tmp_path_factory.mktemp("move") / "workers")


@pytest.fixture(scope="module")
def source(network, app):
    config = {"app": {"source": str(app.folder), "name": NAME, **app.config}, "redis": True}
    with local_site(network, "movesrc", config, release="trixie") as site:
        yield site


@pytest.fixture(scope="module")
def target(network, app, source, tmp_path_factory):
    config = {
        "app": {
            "source": str(app.folder),
            "name": NAME,
            **app.config,
            "schedules": {"tick": {"schedule": "*:*:00", "command": "manage.py tick"}},
        },
        "appMinSize": 1,
        "appDesiredCapacity": 1,
        "redis": True,
    }
    with scaled_site(network, config, tmp_path_factory.mktemp("move-target")) as live:
        for server in live.group.in_service():
            assert live.balancer.wait_healthy(server.address, 120), live.balancer.state(server.address)
        yield live


@pytest.fixture(scope="module")
def operator(source, target, tmp_path_factory):
    """The operator's machine (this host): both stacks' outputs in files, the AWS CLI pointed at the stand-ins'
    front on loopback, OpenSSH to the single server; the move's folder."""
    folder = tmp_path_factory.mktemp("operator")
    write_outputs(source, folder / "prod.json")
    scaled = folder / "prod-scaled.json"
    scaled.write_text(json.dumps(target.run.outputs, default=str))
    scaled.chmod(0o600)
    cli = folder / "bin" / "aws"
    cli.parent.mkdir()
    # The AWS CLI of requirements-dev (beside this Python), sent to the stand-ins' front.
    cli.write_text(f'#!/bin/sh\nexec {Path(sys.executable).parent / "aws"} --endpoint-url "$AWS_ENDPOINT_URL" "$@"\n')
    cli.chmod(0o755)
    (folder / "config").mkdir(mode=0o700)
    env = {
        **os.environ,
        "PATH": f"{cli.parent}{os.pathsep}{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{target.api.local_port}",
        "AWS_ACCESS_KEY_ID": "operator",
        "AWS_SECRET_ACCESS_KEY": "operator",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "XDG_CONFIG_HOME": str(folder / "config"),
    }
    argv = [sys.executable, "-m", "djangoship", "--outputs-file", str(folder / "prod.json"), "move"]
    argv += ["--to-outputs-file", str(scaled), "--folder", str(folder / "move")]
    return argv, env, folder / "move"


def source_rows(source) -> dict[str, int]:
    return {
        table: int(sh(source, f"runuser -u postgres -- psql -d {NAME} -tAc 'SELECT count(*) FROM {table}'"))
        for table in TABLES
    }


def target_rows(target) -> dict[str, int]:
    return {table: int(target.database.psql(f"SELECT count(*) FROM {table}", NAME)) for table in TABLES}


def source_files(source) -> dict[str, str]:
    """Every upload on the single server: its name under media/ → SHA-256."""
    listing = sh(source, f"cd /srv/{NAME}/media/ && find . -type f -printf '%P\\0' | xargs -0 -r sha256sum")
    return {name: digest for digest, name in (line.split(None, 1) for line in listing.splitlines())}


def maintenance_on(source) -> bool:
    return sh(source, f"test -e /etc/{NAME}/maintenance && echo on || echo off").strip() == "on"


def jobs(site_get) -> set[str]:
    status, _, body = site_get("/state/")
    assert status == 200, (status, body[:300])
    return set(json.loads(body)["jobs"])


@pytest.fixture(scope="module")
def before(source, target):
    """The source with rows, two uploads and a job done; then its worker stopped and one more job queued, waiting
    in Redis when the move starts."""
    browser = Browser(source.url)
    for title, data in (("first photo", png_bytes()), ("second file", b"not an image, bytes all the same\n" * 100)):
        token = browser.csrf("/")
        body, kind = multipart({"csrfmiddlewaretoken": token, "title": title}, {"file": ("up.png", data, "image/png")})
        status, _, _ = browser.request("/upload/", body, {"Content-Type": kind, "Referer": source.url + "/"})
        assert status in (302, 303), status
    assert http_get(source.url + "/enqueue/done-before/")[0] == 202
    wait_for("the worker's job", lambda: "done-before" in jobs(lambda path: http_get(source.url + path)))
    sh(source, f"systemctl stop {NAME}-worker.service")
    assert http_get(source.url + "/enqueue/queued-at-the-move/")[0] == 202
    files = source_files(source)
    assert len(files) == 2, files
    return files


def test_a_target_with_data_is_refused_and_nothing_changes(source, target, operator, before):
    argv, env, folder = operator
    # The target's own listener has written its heartbeats: data the move would overwrite.
    wait_for("the target's heartbeats", lambda: target_rows(target)["jobs_heartbeat"] > 0)
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    assert "refused:" in result.stderr and "public.jobs_heartbeat" in result.stderr, result.stderr
    assert not maintenance_on(source) and target.balancer.fixed_response is None
    assert sh(source, f"systemctl is-active {NAME}-listener.service").strip() == "active"


def test_the_move_drains_the_queue_and_is_killed_after_its_dump(source, target, operator, before):
    argv, env, folder = operator
    process = subprocess.Popen(
        [*argv, "--replace-target-data"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    said: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            said.append(line)
            if "job(s) waiting for the worker" in line and not any("worker back" in s for s in said):
                said.append("(test: worker back)\n")
                # The queued job waits for a worker: the move waits for it (bounded) rather than lose it.
                sh(source, f"systemctl start {NAME}-worker.service")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    state_file = folder / "state.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.exists() and "dump" in json.loads(state_file.read_text())["done"]:
            process.send_signal(signal.SIGKILL)  # half-way: nothing of the move runs after this
            break
        time.sleep(0.1)
    process.wait(timeout=60)
    reader.join(timeout=10)
    text = "".join(said)
    print(f"\n[move] first run, killed after its dump:\n{text}")
    assert process.returncode == -signal.SIGKILL, text
    state = json.loads(state_file.read_text())
    assert "dump" in state["done"] and "restore" not in state["done"], state["done"]
    assert "(test: worker back)" in text and "queue: empty" in text, text
    # The queued job was done by the source's worker before the dump: its row is in the dump's counts.
    assert "queued-at-the-move" in sh(
        source, f"runuser -u postgres -- psql -d {NAME} -tAc 'SELECT token FROM jobs_job'"
    )
    assert state["source_tables"]["public.jobs_job"][0] == 2
    # The source stays stopped as the killed move left it: maintenance page, no process writing.
    assert maintenance_on(source)
    assert sh(source, f"systemctl is-active {NAME}-listener.service", check=False).strip() == "inactive"
    assert (folder / "db.dump").stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700


def test_a_second_run_goes_on_after_the_last_finished_step(source, target, operator, before):
    argv, env, folder = operator
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    print(f"\n[move] second run ({time.monotonic() - started:.0f} s):\n{result.stderr}\n{result.stdout}")
    assert result.returncode == 0, result.stderr
    assert re.search(r"resuming after `(dump|upload)`", result.stderr), result.stderr
    assert "the source is as it was at the dump" in result.stderr
    assert "step 1/6: dump" not in result.stderr and "step 6/6: serve" in result.stderr
    state = json.loads((folder / "state.json").read_text())
    assert state["done"] == ["dump", "upload", "restore", "media", "check", "serve"], state
    # The verb's own check, before the target took writes: every table of the source, its rows on both sides.
    checked = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(checked) >= len(TABLES) and all(before == after for _, before, after in checked), checked
    # Nothing secret on the operator's terminal: the database's and Redis's passwords, Django's key.
    env_text = sh(source, f"cat /etc/{NAME}/env")
    secrets = re.findall(r"://[^:/@]*:([^@']+)@", env_text) + re.findall(
        r"^DJANGO_SECRET_KEY='([^']+)'", env_text, re.M
    )
    assert len(secrets) >= 3 and not [s for s in secrets if s in result.stderr + result.stdout]


def test_every_row_and_upload_is_on_the_target_and_the_source_is_unchanged(source, target, operator, before):
    argv, env, folder = operator
    state = json.loads((folder / "state.json").read_text())
    at_dump = {name.removeprefix("public."): rows for name, (rows, _) in state["source_tables"].items()}
    source_now, target_now = source_rows(source), target_rows(target)
    print(f"\n[move] rows at the dump {at_dump}\n[move] source now {source_now}\n[move] target now {target_now}")
    assert source_now == {table: at_dump[table] for table in TABLES}, "the source is as it was at the dump"
    # The target's listener and schedule write again since the move ended: their tables only grew.
    growing = {"jobs_heartbeat", "jobs_tick"}
    assert {t: n for t, n in target_now.items() if t not in growing} == {
        t: n for t, n in source_now.items() if t not in growing
    }
    assert all(target_now[table] >= source_now[table] for table in growing), (target_now, source_now)
    assert source_files(source) == before, "the source's uploads are untouched"
    # Each upload in the bucket, byte for byte, served through CloudFront at its old address.
    s3 = target.api.client("s3")
    bucket = target.run.outputs["mediaBucket"]
    for name, digest in before.items():
        stored = s3.get_object(Bucket=bucket, Key=f"media/{name}")["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == digest, name
        status, _, served = target.get(f"/media/{name}")
        assert status == 200 and served == stored, (name, status)
    # The dump is gone from the artifacts bucket, every version of it.
    versions = s3.list_object_versions(Bucket=target.run.outputs["artifactsBucket"], Prefix="moves/")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers"), versions
    # The source stays in maintenance, its processes stopped: its writes would not reach the target.
    assert maintenance_on(source) and http_get(source.url + "/")[0] == 503
    assert sh(source, f"systemctl is-active {NAME}-listener.service", check=False).strip() == "inactive"


def test_the_target_serves_the_moved_data_and_takes_writes(target):
    assert target.balancer.fixed_response is None
    moved = jobs(target.get)
    assert {"done-before", "queued-at-the-move"} <= moved, moved
    # Its processes run again: a web request's job through ElastiCache, done by its worker, in its database.
    assert target.get("/enqueue/after-the-move/")[0] == 202
    wait_for("a job on the target after the move", lambda: "after-the-move" in jobs(target.get))
    heartbeats = target_rows(target)["jobs_heartbeat"]
    wait_for("the target's listener", lambda: target_rows(target)["jobs_heartbeat"] > heartbeats, 30)
