"""Profile `scaled`'s gates, for real: the app servers' release gate and schedule gate (scaled/release-once.sh.j2,
the schedules' runner) against a local PostgreSQL, servers racing — a release's migrations and a schedule's run
happen once across all of them, a failed one is tried again by the next, a dead server's session is dropped.

Host tools (skipped with the reason, failed with CI=true): PostgreSQL's initdb/pg_ctl/psql (run as root it starts
the server as the `postgres` user), systemd-analyze.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import skip_or_fail
from rendered.helpers import free_port
from rendered.helpers import run as run_tool

from config.settings import load_settings
from server.appserver import (
    GATE_ENV,
    RELEASE_TABLE,
    BootValues,
    release_context,
    scaled_plan,
)
from server.host import render
from server.layout import ServerPaths
from server.release import Release

SCALED: dict[str, Any] = {"profile": "scaled"}


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run_tool(argv, timeout=120, **kwargs)  # a PostgreSQL cluster's start and stop among them


# --- the gate, for real: two app servers of the same release racing on a local PostgreSQL ----------------


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None
    )
    if not found:
        skip_or_fail(f"PostgreSQL's `{name}` is not installed (Debian: postgresql)")
    return str(found)


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL on 127.0.0.1 (password auth, like RDS): the PG* settings to reach it."""
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    _postgres_binary("psql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        if run(["id", "postgres"]).returncode != 0:
            skip_or_fail("running as root and there is no `postgres` user to run the server")
    work = Path(tempfile.mkdtemp(prefix="djangoship-pg-", dir="/tmp"))
    try:
        (work / "pw").write_text("gate-test-password\n")
        if as_user:
            shutil.chown(work, "postgres")
            shutil.chown(work / "pw", "postgres")
        port = str(free_port())
        result = run(
            [
                *as_user,
                initdb,
                "-D",
                str(work / "data"),
                "-A",
                "scram-sha-256",
                "-U",
                "photofeed",
                f"--pwfile={work / 'pw'}",
                "--no-sync",
            ]
        )
        assert result.returncode == 0, result.stdout + result.stderr
        options = f"-k {work} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = run(
            [*as_user, pg_ctl, "-D", str(work / "data"), "-o", options, "-l", str(work / "log"), "-w", "start"]
        )
        assert result.returncode == 0, result.stdout + result.stderr + (work / "log").read_text()
        yield {
            "host": "127.0.0.1",
            "port": port,
            "user": "photofeed",
            "password": "gate-test-password",
            "db": "postgres",
        }
        run([*as_user, pg_ctl, "-D", str(work / "data"), "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fake(path: Path, body: str) -> str:
    path.write_text("#!/bin/bash\nset -euo pipefail\n" + body)
    path.chmod(0o755)
    return str(path)


def render_gate(tmp: Path, postgres: dict[str, str], release_id: str, migrate_fails: bool = False) -> Path:
    """The gate as an app server gets it, with its helpers replaced by recorders and the env file pointing at
    the local PostgreSQL (plain TCP: the test server has no TLS)."""
    plan = scaled_plan(load_settings(SCALED, project="djangoship", stack="dev"))
    (tmp / "env").write_text(
        "".join(
            f"DJANGO_DB_{k}='{v}'\n"
            for k, v in {
                "HOST": postgres["host"],
                "PORT": postgres["port"],
                "NAME": postgres["db"],
                "USER": postgres["user"],
                "PASSWORD": postgres["password"],
            }.items()
        )
    )
    log = tmp / "calls.log"
    (tmp / "admin-password").write_text("admin-secret\n")
    fail = "exit 3\n" if migrate_fails else ""
    paths = dataclasses.replace(
        ServerPaths.for_app(plan.app.name),
        env_file=str(tmp / "env"),
        aws=_fake(tmp / "aws", f'echo "aws $*" >> {log}\n'),
        django_manage=_fake(tmp / "manage", f'echo "manage $* in $RELEASE_DIR" >> {log}\nsleep 1\n{fail}'),
        superuser=_fake(tmp / "superuser", f'echo "superuser $(cat)" >> {log}\n'),
        admin_password=str(tmp / "admin-password"),
    )
    release = Release(id=release_id, archive=Path("/nonexistent.tar.gz"))
    boot = BootValues(
        "us-east-1", "/p/env:1", "/p/admin-password:1", "artifacts", "assets", "arn:aws:iam::123456789012:role/media"
    )
    # The gate's programs are stand-ins in the test's folder: the paths the template is given are theirs.
    context = release_context(plan, release, boot, arch="x86_64", vpc_cidr="10.20.0.0/16")
    context["paths"] = dataclasses.asdict(paths)
    script = tmp / f"release-once-{release_id}"
    script.write_text(render("scaled/release-once.sh.j2", plan, **(context | {"pg_sslmode": "disable"})))
    script.chmod(0o755)
    return script


def gate(script: Path, release_id: str, **env: str) -> subprocess.Popen[str]:
    environment = os.environ | {GATE_ENV: release_id, "RELEASE_DIR": f"/srv/photofeed/releases/{release_id}"} | env
    return subprocess.Popen(
        [str(script), "migrate", "--noinput"],
        env=environment,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=60)
    return process.returncode, output


def psql(postgres: dict[str, str], sql: str) -> str:
    env = os.environ | {
        "PGHOST": postgres["host"],
        "PGPORT": postgres["port"],
        "PGUSER": postgres["user"],
        "PGPASSWORD": postgres["password"],
        "PGDATABASE": postgres["db"],
    }
    result = run([_postgres_binary("psql"), "-qAt", "-c", sql], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_release_gate_migrates_once_when_servers_race(postgres: dict[str, str], tmp_path: Path) -> None:
    release_id = "aaaaaaaaaaa1"
    script = render_gate(tmp_path, postgres, release_id)
    log = tmp_path / "calls.log"
    # Three servers of one release at once: one migrates (1 s), the others wait for its lock and skip.
    racers = [gate(script, release_id) for _ in range(3)]
    results = [finish(process) for process in racers]
    assert all(code == 0 for code, _ in results), results
    calls = log.read_text().splitlines()
    assert calls.count(f"aws sync-static /srv/photofeed/releases/{release_id}/.djangoship-static assets static") == 1, (
        calls
    )
    assert calls.count(f"manage migrate --noinput in /srv/photofeed/releases/{release_id}") == 1, calls
    assert calls.count("superuser admin-secret") == 3, "every server ensures the superuser, one at a time"
    # The static upload and the migrations came before any other server went on.
    assert calls.index(f"manage migrate --noinput in /srv/photofeed/releases/{release_id}") < calls.index(
        "superuser admin-secret"
    )
    skipped = [output for _, output in results if "already migrated by" in output]
    assert len(skipped) == 2, results
    assert psql(postgres, f"SELECT count(*) FROM {RELEASE_TABLE} WHERE release_id = '{release_id}'") == "1"
    # A later server of the same release (scale-out) skips too; the next release migrates again.
    assert finish(gate(script, release_id))[0] == 0
    next_id = "bbbbbbbbbbb2"
    assert finish(gate(render_gate(tmp_path, postgres, next_id), next_id))[0] == 0
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("manage migrate")] == [
        f"manage migrate --noinput in /srv/photofeed/releases/{release_id}",
        f"manage migrate --noinput in /srv/photofeed/releases/{next_id}",
    ]
    assert psql(postgres, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0", "every lock released"


def test_release_gate_failed_migration_is_retried_by_the_next_server(postgres: dict[str, str], tmp_path: Path) -> None:
    release_id = "ccccccccccc3"
    code, output = finish(gate(render_gate(tmp_path, postgres, release_id, migrate_fails=True), release_id))
    assert code != 0, output
    assert psql(postgres, f"SELECT count(*) FROM {RELEASE_TABLE} WHERE release_id = '{release_id}'") == "0"
    assert psql(postgres, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0", "the lock died with it"
    code, output = finish(gate(render_gate(tmp_path, postgres, release_id), release_id))
    assert code == 0, output
    assert "first app server on this release" in output


def test_release_gate_refuses_to_run_outside_a_release_install(postgres: dict[str, str], tmp_path: Path) -> None:
    script = render_gate(tmp_path, postgres, "ddddddddddd4")
    code, output = finish(gate(script, "ddddddddddd4", **{GATE_ENV: "000000000000"}))
    assert code != 0 and "only the install of release ddddddddddd4" in output
    assert not (tmp_path / "calls.log").exists()


# `systemd-analyze calendar` lists a calendar's elapses as "Iter. #2: …" in systemd 252 (Debian 12, this host) and
# "Iteration #2: …" in 257 (Debian 13): the gate must read both. Each test runs with each, whatever the host's.
CALENDAR_FORMATS = {
    "systemd-252": "s/^\\( *\\)Iteration #/\\1Iter. #/",
    "systemd-257": "s/^\\( *\\)Iter\\. #/\\1Iteration #/",
}


@pytest.fixture(params=sorted(CALENDAR_FORMATS))
def calendar_format(request, tmp_path: Path) -> dict[str, str]:
    """PATH with a systemd-analyze that prints that version's listing (the host's own, its lines renamed), and a
    `date` whose `date +%s` says FIRED_AT when set (the moment a server's timer fired: the gate reads its clock as
    it starts)."""
    real = shutil.which("systemd-analyze")
    clock = shutil.which("date")
    if real is None or clock is None:
        skip_or_fail("systemd-analyze is not installed")
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "systemd-analyze"
    wrapper.write_text(f"#!/bin/bash\nset -o pipefail\n{real} \"$@\" | sed '{CALENDAR_FORMATS[request.param]}'\n")
    wrapper.chmod(0o755)
    fired = folder / "date"
    fired.write_text(
        f'#!/bin/bash\nif [ "$*" = +%s ] && [ -n "${{FIRED_AT:-}}" ]; then echo "$FIRED_AT"\n'
        f'else exec {clock} "$@"; fi\n'
    )
    fired.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def render_schedule_once(tmp: Path, postgres: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The scheduled jobs' gate as an app server gets it, and the app's environment (its unit's EnvironmentFile)
    pointing at the local PostgreSQL (plain TCP: the test server has no TLS). The jobs' record starts empty."""
    psql(postgres, "DROP TABLE IF EXISTS djangoship_schedule")
    plan = scaled_plan(load_settings(SCALED, project="djangoship", stack="dev"))
    boot = BootValues(
        "us-east-1", "/p/env:1", "/p/admin-password:1", "artifacts", "assets", "arn:aws:iam::123456789012:role/media"
    )
    release = Release(id="eeeeeeeeeee5", archive=Path("/nonexistent.tar.gz"))
    context = release_context(plan, release, boot, arch="x86_64", vpc_cidr="10.20.0.0/16") | {"pg_sslmode": "disable"}
    script = tmp / "schedule-once"
    script.write_text(render("scaled/schedule-once.sh.j2", plan, **context))
    script.chmod(0o755)
    env = {
        f"DJANGO_DB_{key}": postgres[value]
        for key, value in {"HOST": "host", "PORT": "port", "NAME": "db", "USER": "user", "PASSWORD": "password"}.items()
    }
    return script, env


def schedule_run(
    script: Path,
    env: dict[str, str],
    job: str,
    *args: str,
    due: float | None = None,
    log: Path,
    calendar: str = "hourly",
) -> subprocess.Popen[str]:
    """One server's run of JOB (its timer's, fired at DUE; --catch-up: its boot's, now): the job appends a line to
    LOG."""
    timer = {"FIRED_AT": str(int(due))} if due is not None else {}
    command = ["bash", "-c", f'echo "$$" >> {log}; sleep 1']
    return subprocess.Popen(
        [str(script), job, calendar, *args, "--", *command],
        env=os.environ | env | timer,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def runs_of(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def test_a_schedule_runs_once_per_due_time_across_the_servers(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    due = int(time.time()) // 3600 * 3600
    # Three servers' timers fire for the same due time, each within systemd's accuracy of it (up to 1.8 s apart,
    # across a second's boundary): one runs the job, the others find it done.
    runs = [schedule_run(script, env, "digest", due=due + 0.9 * server, log=log) for server in range(3)]
    results = [finish(p) for p in runs]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert runs_of(log) == 1, results
    assert sum("already ran on another server" in output for _, output in results) == 2, results
    # The next due time runs again, once; a late timer of the first finds it done.
    finish(schedule_run(script, env, "digest", due=due + 3600, log=log))
    code, output = finish(schedule_run(script, env, "digest", due=due, log=log))
    assert code == 0 and "already ran" in output and runs_of(log) == 2, output
    assert psql(postgres, "SELECT count(*) FROM djangoship_schedule WHERE job = 'digest'") == "2"
    assert psql(postgres, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0", "every lock released"


def test_a_minutely_job_runs_once_a_minute_as_the_servers_fire(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """Every minute, two servers' timers a moment apart: one run a minute, recorded as that minute."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    minute = int(time.time()) // 60 * 60 - 300
    for k in range(3):
        for server in range(2):
            finish(schedule_run(script, env, "tick", due=minute + 60 * k + 0.3 + server, log=log, calendar="*:*:00"))
    assert runs_of(log) == 3
    recorded = psql(postgres, "SELECT extract(epoch FROM due)::bigint FROM djangoship_schedule ORDER BY due").split()
    assert [int(due) for due in recorded] == [minute, minute + 60, minute + 120]


def test_a_run_started_late_in_its_minute_still_runs_after_the_next_minute_ran(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """One server's run starts at the end of its minute and reaches the lock after another server's run of the
    next minute: each minute still runs once, none is taken for done because a later one is."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    minute = int(time.time()) // 60 * 60 - 600
    finish(schedule_run(script, env, "tick", due=minute + 0.2, log=log, calendar="*:*:00"))
    finish(schedule_run(script, env, "tick", due=minute + 120.3, log=log, calendar="*:*:00"))
    code, output = finish(schedule_run(script, env, "tick", due=minute + 119.6, log=log, calendar="*:*:00"))
    assert code == 0 and runs_of(log) == 3, output
    recorded = psql(postgres, "SELECT extract(epoch FROM due)::bigint FROM djangoship_schedule ORDER BY due").split()
    assert [int(due) for due in recorded] == [minute, minute + 60, minute + 120]
    # Its twin on another server, as late, finds it done.
    code, output = finish(schedule_run(script, env, "tick", due=minute + 119.9, log=log, calendar="*:*:00"))
    assert code == 0 and "already ran on another server" in output and runs_of(log) == 3, output


def test_the_database_a_moment_away_is_tried_again_and_the_jobs_own_failure_is_not(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """The gate's failure before the job starts exits 75, which the unit restarts (RestartForceExitStatus); the
    job's own failure is recorded and final, so a restart can never run a job twice."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        away = env | {"DJANGO_DB_PORT": str(unused.getsockname()[1])}
        code, output = finish(schedule_run(script, away, "digest", due=time.time(), log=log))
    assert code == 75 and runs_of(log) == 0 and "ERROR" in output, output
    due = int(time.time()) // 3600 * 3600
    failing = subprocess.run(
        [str(script), "digest", "hourly", "--", "bash", "-c", f'echo "$$" >> {log}; exit 3'],
        env=os.environ | env | {"FIRED_AT": str(due + 1)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failing.returncode == 1 and "the job exited with status 3" in failing.stderr and runs_of(log) == 1, failing
    assert psql(postgres, "SELECT status FROM djangoship_schedule WHERE job = 'digest'") == "3"


def test_a_dead_servers_session_is_dropped_by_keepalive_not_after_hours(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """A server powered off mid-run never closes its connection: the database probes it after 30 s idle and drops
    it after three missed probes 10 s apart, freeing its lock (the kernel's default: two hours). Read from the
    gate's own session while it holds the lock."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    holder = subprocess.Popen(
        [str(script), "hold", "hourly", "--", "bash", "-c", f'echo "$$" >> {log}; sleep 30'],
        env=os.environ | env | {"FIRED_AT": str(int(time.time()) // 3600 * 3600)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while runs_of(log) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runs_of(log) == 1, "the job started"
        session = psql(
            postgres,
            "SELECT pid, client_port FROM pg_stat_activity WHERE application_name LIKE '%schedule-hold'",
        )
        assert session, "the gate's session is in pg_stat_activity"
        backend, client_port = session.split("|")
        # Both ends of that connection, with their keepalive timers: the backend's socket and psql's.
        sockets = subprocess.run(
            ["ss", "-tnopH", f"( sport = :{client_port} or dport = :{client_port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=30)
    ends = {("postgres" if f"pid={backend}," in line else "psql"): line for line in sockets}
    assert set(ends) == {"postgres", "psql"}, sockets
    for end, line in ends.items():
        timer = re.search(r"timer:\(keepalive,(?:(\d+)min)?(\d+)?(?:\.\d+)?(m?s)ec", line)
        assert timer and not timer[1] and timer[3] == "s" and int(timer[2]) <= 30, f"{end}: {line}"


def test_a_server_dying_mid_run_leaves_the_due_time_to_the_next(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    due = int(time.time()) // 3600 * 3600 - 7200
    dying = schedule_run(script, env, "reports", due=due, log=log)
    deadline = time.monotonic() + 30
    while runs_of(log) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(dying.pid, signal.SIGKILL)  # the server is gone: its session, and the lock, with it
    dying.communicate(timeout=30)
    code, output = finish(schedule_run(script, env, "reports", due=due, log=log))
    assert code == 0 and runs_of(log) == 2, output
    assert psql(postgres, "SELECT count(*) FROM djangoship_schedule WHERE job = 'reports'") == "1"


def test_a_run_missed_while_no_server_ran_it_happens_once_at_boot(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    # Never recorded: a new job's first run is its next due time, as a timer's is.
    code, output = finish(schedule_run(script, env, "cleanup", "--catch-up", log=log))
    assert code == 0 and runs_of(log) == 0, output
    # Last run three hours ago, then no server for two due times: the booting servers run it once.
    last = int(time.time()) // 3600 * 3600 - 3 * 3600
    finish(schedule_run(script, env, "cleanup", due=last, log=log))
    results = [finish(p) for p in [schedule_run(script, env, "cleanup", "--catch-up", log=log) for _ in range(2)]]
    assert runs_of(log) == 2, results
    assert any("a run was missed while no server ran it" in output for _, output in results), results
    newest = psql(
        postgres, "SELECT extract(epoch FROM max(due))::bigint FROM djangoship_schedule WHERE job = 'cleanup'"
    )
    assert int(newest) == int(time.time()) // 3600 * 3600, "recorded as the latest due time that passed"
    # Caught up: the next boot finds nothing missed.
    finish(schedule_run(script, env, "cleanup", "--catch-up", log=log))
    assert runs_of(log) == 2
