"""Beyond the web process (issue 14), on a Debian 13 guest of its own: the `workers` project of tests/foreign_apps.py
(cookiecutter-django's shape with Celery, shapes from shared/REAL-APPS.md), deployed by config alone with Redis.

A Celery worker fed through Redis by a web request, a `manage.py` command that runs for ever, schedules (one that
writes a row every 5 s, one that fails, a nightly housekeeping), an ASGI websocket echo through nginx; its settings
read from a configuration.py the repository does not ship (NetBox's shape), given by app.files: a change to that file
alone, and one the release refuses; then a release, kill -9, Redis's
append-only file, a restore, a reboot, a process that cannot start, one removed from the config, root never running
the app's dependencies; last, two steps that install packages at the same moment.

Its own guest (not test_foreign_apps.py's, which deploys the other projects in turn): the two run in two lanes side
by side (tests/conftest.py, GROUPS). psycopg's wheel here: the build tools' first boot is test_foreign_apps.py's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shlex
import socket
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from foreign_apps import (
    NAME,
    WORKERS_CONFIGURATION_PATH,
    ForeignApp,
    foreign_site,
    foreign_workdir,
    stack_config,
    workers_configuration,
    workers_with_psycopg_wheel,
)
from site_helpers import app_state, deploy_output, job_done, live_release, sh, units_acted_on_unread, wait_for

from config.settings import load_settings
from djangoship.remote import Layout
from djangoship.report import status
from harness.localsite import RequestLoop, http_get
from harness.mockrun import Registered
from harness.replay import StepFailed, run_step
from server.host import plan_host, render

pytestmark = pytest.mark.localboot

WORKERS = ("worker", "listener")
EXTRA_PACKAGE = "jq"  # an apt package (app.packages) beside the first boot's; the apt test at the end reinstalls it


# A dependency that records who starts a Python with it (issue 29): its .pth file runs at every start of the
# release's interpreter, as any package's may. Root must never be among them. As the build user it also leaves a
# process behind (once), which must not outlive the build.
UID_PROBE = "/opt/uid-probe"
UID_PROBE_RECORDER = f"""\
import os
import pwd
import sys
import time

try:
    with open("{UID_PROBE}/log", "a") as log:
        log.write(f"{{os.getuid()}} {{sys.argv!r:.200}}\\n")
except OSError:
    pass
try:
    if pwd.getpwuid(os.getuid()).pw_name.endswith("-build"):
        os.close(os.open("{UID_PROBE}/run/left-behind", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        if os.fork() == 0:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            time.sleep(300)
            os._exit(0)
except OSError:
    pass
"""


def uid_probe_wheel() -> tuple[str, bytes]:
    """The probe as a wheel (name, bytes): a module and the .pth that imports it."""
    files = {"uidprobe_record.py": UID_PROBE_RECORDER.encode(), "uidprobe.pth": b"import uidprobe_record\n"}
    info = "uidprobe-1.0.dist-info"
    files[f"{info}/METADATA"] = b"Metadata-Version: 2.1\nName: uidprobe\nVersion: 1.0\n"
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: djangoship-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )

    def digest(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{name},{digest(data)},{len(data)}\n" for name, data in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return "uidprobe-1.0-py3-none-any.whl", buffer.getvalue()


def install_uid_probe(site, requirements: Path) -> None:
    """The wheel on the guest, a log any user may append to, and the app requiring it from there."""
    name, data = uid_probe_wheel()
    sh(site, f"install -d -m 0755 {UID_PROBE} && install -d -m 0777 {UID_PROBE}/run")
    sh(site, f": > {UID_PROBE}/log && chmod 0666 {UID_PROBE}/log")
    site.guest.exec(
        ["bash", "-c", f"cat > {UID_PROBE}/{name} && chmod 0644 {UID_PROBE}/{name}"], input=data, check=True
    )
    requirements.write_text(requirements.read_text() + f"uidprobe @ file://{UID_PROBE}/{name}\n")


def uid_probe_users(site) -> dict[str, list[str]]:
    """Who started a Python with the probe installed: user name → the commands."""
    accounts = [line.split(":") for line in sh(site, "getent passwd").splitlines()]
    names = {fields[2]: fields[0] for fields in accounts}
    users: dict[str, list[str]] = {}
    for line in sh(site, f"cat {UID_PROBE}/log").splitlines():
        uid, _, command = line.partition(" ")
        users.setdefault(names.get(uid, uid), []).append(command)
    return users


def workers_project(workdir: Path) -> ForeignApp:
    """The `workers` project with psycopg's wheel: this module is about what runs, not what builds."""
    return workers_with_psycopg_wheel(workdir / "workers")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return foreign_workdir(tmp_path_factory, "foreign-workers")


@pytest.fixture(scope="module")
def guest(network, workdir):
    """The guest, first booted with the `workers` project and Redis."""
    with foreign_site(network, workdir, "workers", workers_project(workdir)) as site:
        print(f"\n[foreign workers] first boot: {site.first_boot_seconds:.1f} s")
        yield site


@pytest.fixture(scope="module")
def workers(guest, workdir) -> ForeignApp:
    project = workers_project(workdir)
    install_uid_probe(guest, project.folder / "requirements.txt")
    started = time.monotonic()
    config = stack_config(project)
    guest.up({**config, "app": {**config["app"], "packages": [EXTRA_PACKAGE]}, "redis": True})
    print(f"\n[foreign] workers (Celery, Redis, ASGI, schedules) deployed in {time.monotonic() - started:.1f} s")
    return project


def answers(url: str) -> bool:
    """200 within 5 s; while the server boots (gunicorn starts on the first request) a slower answer is a no."""
    try:
        return http_get(url, timeout=5)[0] == 200
    except OSError:
        return False


def websocket_echo(host: str, path: str, text: str) -> str:
    """One text message through a websocket (RFC 6455, by hand: the host has no websocket client)."""
    with socket.create_connection((host, 80), timeout=10) as conn:
        key = base64.b64encode(os.urandom(16)).decode()
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        stream = conn.makefile("rb")
        status = stream.readline()
        assert b" 101 " in status, status
        while stream.readline() not in (b"\r\n", b""):
            pass
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        conn.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        first, second = stream.read(2)
        assert first == 0x81 and second < 126, (first, second)
        return stream.read(second).decode()


def unit_pid(site, unit: str) -> int:
    return int(sh(site, f"systemctl show -p MainPID --value {unit}").strip())


def pss_mib(site, pattern: str) -> float:
    """PSS of the processes whose command line matches `pattern` (MiB): the memory budget's measure."""
    total = sh(
        site, f"for p in $(pgrep -f {shlex.quote(pattern)}); do awk '/^Pss:/ {{print $2}}' /proc/$p/smaps_rollup; done"
    )
    return sum(int(kib) for kib in total.split()) / 1024


def test_processes_schedules_and_redis_are_units_systemd_accepts(guest, workers):
    units = [f"{NAME}-{name}.service" for name in WORKERS] + [f"{NAME}-tick.service", f"{NAME}-tick.timer"]
    # The guest's own systemd (Debian 13: RestartSteps= and all): nothing to say about any of them.
    output = sh(guest, "systemd-analyze verify " + " ".join(f"/etc/systemd/system/{unit}" for unit in units) + " 2>&1")
    assert output.strip() == "", output
    for name in WORKERS:
        sh(guest, f"systemctl is-active {NAME}-{name}.service && systemctl is-enabled {NAME}-{name}.service")
        assert sh(guest, f"ps -o user= -p {unit_pid(guest, f'{NAME}-{name}.service')}").strip() == NAME
    sh(guest, f"systemctl is-active {NAME}-tick.timer && systemctl is-enabled {NAME}-tick.timer")
    # The operator's `status` lists them with the site's services.
    services = sh(guest, status(Layout(NAME)))
    for unit in [f"{NAME}-{name}.service" for name in WORKERS] + [f"{NAME}-tick.timer", "redis-server.service"]:
        assert re.search(rf"^  {re.escape(unit)} +active$", services, re.MULTILINE), services
    # Redis: loopback only, a password, memory capped for a t2.micro, data on the data volume.
    listening = sh(guest, "ss -ltnH 'sport = :6379'")
    assert listening and all(addr in ("127.0.0.1:6379", "[::1]:6379") for addr in re.findall(r"\S+:6379", listening))
    assert "NOAUTH" in sh(guest, "redis-cli ping 2>&1")
    env = sh(guest, f"cat /etc/{NAME}/env")
    url = re.search(r"^REDIS_URL='(redis://:\w{32}@127\.0\.0\.1:6379/0)'$", env, re.MULTILINE)
    assert url and f"DJANGO_REDIS_URL='{url[1]}'" in env
    password = url[1].split(":")[2].split("@")[0]
    assert password not in sh(guest, "cat /var/lib/cloud/instance/user-data.txt")
    ask = f"REDISCLI_AUTH={password} redis-cli --no-auth-warning"
    assert sh(guest, f"{ask} config get maxmemory").split() == ["maxmemory", str(64 * 1024 * 1024)]
    assert sh(guest, f"{ask} config get dir").split() == ["dir", "/data/redis"]
    sh(guest, f"{ask} save")
    sh(guest, "test -s /data/redis/dump.rdb")


def test_a_worker_consumes_jobs_a_web_request_queues_through_redis(guest, workers):
    job_done(guest, "first", "v1")


def test_a_long_running_command_and_a_schedule_write_rows_and_a_failed_run_shows(guest, workers):
    before = app_state(guest)
    wait_for("the listener's heartbeats", lambda: app_state(guest)["heartbeats"] >= before["heartbeats"] + 2, 10)
    wait_for("a run of the 5-second schedule", lambda: app_state(guest)["ticks"] > before["ticks"], 30)
    failing = f"{NAME}-failing.service"
    # A run of this release's code (one that fired before its deploy, with the previous app's code, failed too,
    # for another reason): its own error in the journal, the unit in systemctl --failed.
    listed = wait_for(
        "the failing schedule's own error, and the unit in systemctl --failed",
        lambda: (
            "fails on purpose" in sh(guest, f"journalctl -u {failing} --no-pager -o cat")
            and failing in sh(guest, "systemctl --failed --plain --no-legend")
        ),
        45,  # it runs every 20 s, each run a Django start-up
    )
    assert listed, sh(guest, f"systemctl status {NAME}-failing.timer {failing} --no-pager", check=False)
    print(
        f"\n[foreign] PSS: celery worker {pss_mib(guest, 'celery -A shop worker'):.1f} MiB, "
        f"manage.py listen {pss_mib(guest, 'manage.py listen'):.1f} MiB, "
        f"redis {pss_mib(guest, 'redis-server'):.1f} MiB, "
        f"gunicorn (uvicorn workers) {pss_mib(guest, 'gunicorn'):.1f} MiB"
    )


def test_a_websocket_echo_through_nginx(guest, workers):
    assert websocket_echo(guest.guest.ip, "/ws/echo/", "hello") == "echo v1: hello"
    # …and Django's pages through the same ASGI server.
    status, _, page = http_get(guest.url + "/")
    assert status == 200 and b"jobs uploads" in page


def with_configuration(config: dict, mark: str, tail: str = "") -> dict:
    """The stack's config with the workers project's configuration.py marked `mark` (and `tail` appended)."""
    files = {WORKERS_CONFIGURATION_PATH: workers_configuration(mark) + tail}
    return {**config, "app": {**config["app"], "files": files}}


CONFIGURATION_ON_SERVER = f"/etc/{NAME}/files/{WORKERS_CONFIGURATION_PATH}"


def test_a_change_to_app_files_alone_reaches_the_app_its_worker_and_schedules(guest, workers):
    release = live_release(guest, NAME)
    # The file is root's, readable by the app's group alone; the release links it (and ships only the example).
    assert sh(guest, f"stat -c '%a %U %G' {CONFIGURATION_ON_SERVER}").split() == ["640", "root", NAME]
    linked = sh(guest, f"readlink /srv/{NAME}/current/{WORKERS_CONFIGURATION_PATH}").strip()
    assert linked == CONFIGURATION_ON_SERVER
    assert app_state(guest)["config_mark"] == "file-v1"
    job_done(guest, "mark-first", "file-v1")
    with RequestLoop(guest.url + "/") as loop:
        steps = guest.up(with_configuration(guest.config, "file-v2"))
        time.sleep(1)
    # As a change to app.env: configure alone, the live release checked with it, then restarted; no new release.
    assert [step.name for step in steps if step.ran] == [f"{NAME}-configure"]
    assert loop.failed == 0 and loop.ok > 0, (loop.ok, loop.errors[:5])
    assert live_release(guest, NAME) == release
    assert app_state(guest)["config_mark"] == "file-v2"
    job_done(guest, "mark-after-change", "file-v2")
    # The nightly housekeeping (app.schedules) reads the same file.
    sh(guest, f"systemctl start {NAME}-housekeeping.service")
    journal = sh(guest, f"journalctl -u {NAME}-housekeeping.service --no-pager -o cat")
    assert "housekeeping (file-v2): " in journal, journal[-2000:]


def test_a_configuration_file_the_release_refuses_leaves_the_site_on_the_old_one(guest, workers):
    config = guest.config
    kept = sh(guest, f"sha256sum {CONFIGURATION_ON_SERVER}")
    # A syntax error at the end (Python's error shows that line, as the app's own log: nothing else of the file).
    broken = with_configuration(config, "file-v3", tail="SECRET_TAIL = (\n")
    try:
        with RequestLoop(guest.url + "/") as loop, pytest.raises(StepFailed) as failed:
            guest.up(broken)
    finally:
        guest.config = config
    message = failed.value.stdout + failed.value.stderr
    assert "they were put back as they were" in message, message[-3000:]
    assert "DJANGO_SECRET_KEY" not in message and "file-v3" not in message, message[-3000:]
    assert loop.failed == 0 and loop.ok > 0, (loop.ok, loop.errors[:5])
    assert sh(guest, f"sha256sum {CONFIGURATION_ON_SERVER}") == kept
    assert app_state(guest)["config_mark"] == "file-v2"
    job_done(guest, "mark-after-refusal", "file-v2")


def test_after_a_release_every_process_runs_the_new_code(guest, workers):
    pids = {name: unit_pid(guest, f"{NAME}-{name}.service") for name in WORKERS}
    (workers.folder / "jobs" / "version.py").write_text('VERSION = "v2"\n')
    with RequestLoop(guest.url + "/") as loop:
        steps = guest.up()
        time.sleep(1)
    assert [step.name for step in steps if step.ran] == [
        f"{NAME}-configure",
        f"{NAME}-upload",
        f"{NAME}-build",
        f"{NAME}-deploy",
    ]
    assert loop.failed == 0 and loop.ok > 10, (loop.ok, loop.errors[:5])
    assert "running the live release" in deploy_output(guest, NAME)
    assert all(unit_pid(guest, f"{NAME}-{name}.service") != pids[name] for name in WORKERS)
    job_done(guest, "after-release", "v2")
    wait_for("a heartbeat from the new code", lambda: app_state(guest)["last_heartbeat"][0]["version"] == "v2", 10)
    wait_for("a scheduled run of the new code", lambda: "v2" in app_state(guest)["tick_versions"], 30)
    assert websocket_echo(guest.guest.ip, "/ws/echo/", "again") == "echo v2: again"


def test_processes_come_back_after_kill_9(guest, workers):
    for name in WORKERS:
        unit = f"{NAME}-{name}.service"
        pid = unit_pid(guest, unit)
        sh(guest, f"kill -9 {pid}")
        wait_for(f"{unit} restarted", lambda unit=unit, pid=pid: unit_pid(guest, unit) not in (0, pid), 15)
    job_done(guest, "after-kill", "v2")
    before = app_state(guest)["heartbeats"]
    wait_for("heartbeats again", lambda: app_state(guest)["heartbeats"] > before, 10)


def redis_cli(guest) -> str:
    """redis-cli on the guest with the site's password (from its env file, never a command line of the product)."""
    env = sh(guest, f"cat /etc/{NAME}/env")
    password = re.search(r"^REDIS_URL='redis://:(\w{32})@", env, re.MULTILINE)[1]  # type: ignore[index]
    return f"REDISCLI_AUTH={password} redis-cli --no-auth-warning"


def redis_restarted(guest, pid: int) -> None:
    ask = redis_cli(guest)
    wait_for(
        "Redis back",
        lambda: unit_pid(guest, "redis-server.service") not in (0, pid) and "PONG" in sh(guest, f"{ask} ping || true"),
        30,
    )


def test_redis_keeps_what_it_acknowledged_through_kill_9(guest, workers):
    """Append-only, fsynced every second: 500 acknowledged writes, then kill -9 at once (no snapshot between)."""
    ask = redis_cli(guest)
    assert sh(guest, f"{ask} config get appendonly").split() == ["appendonly", "yes"]
    assert sh(guest, f"{ask} config get appendfsync").split() == ["appendfsync", "everysec"]
    pid = unit_pid(guest, "redis-server.service")
    sh(guest, f"for i in $(seq 1 500); do echo SET acked:$i $i; done | {ask} > /dev/null && sleep 1.5 && kill -9 {pid}")
    redis_restarted(guest, pid)
    assert sh(guest, f"{ask} --scan --pattern 'acked:*' | wc -l").strip() == "500"
    assert sh(guest, f"{ask} get acked:500").strip() == "500"


def test_a_site_whose_redis_has_only_a_snapshot_keeps_its_data_when_the_file_is_switched_on(guest, workers):
    """A server from before the append-only file: Redis 7 would start empty from a missing file and lose the
    snapshot's keys. The configure step makes the snapshot the file's base first."""
    ask = redis_cli(guest)
    sh(guest, f"{ask} set snapshot:only kept > /dev/null && {ask} save > /dev/null")
    sh(guest, "systemctl stop redis-server.service && rm -rf /data/redis/appendonlydir")
    # Without the conversion, this Redis would start empty: the same snapshot, the file switched on, no file yet.
    lost = sh(
        guest,
        "d=$(mktemp -d) && cp /data/redis/dump.rdb $d/ && chown -R redis: $d"
        " && runuser -u redis -- redis-server --port 6390 --bind 127.0.0.1 --dir $d --appendonly yes"
        " --daemonize yes --logfile $d/log > /dev/null"
        " && until redis-cli -p 6390 ping > /dev/null 2>&1; do sleep 0.1; done"
        " && redis-cli -p 6390 dbsize; redis-cli -p 6390 shutdown nosave; rm -rf $d",
    )
    assert lost.split()[0] == "0", lost
    configure = next(step for step in guest.run.steps() if step.name == f"{NAME}-configure")
    result = run_step(configure, guest.guest, print)
    assert "Redis: the append-only file starts from the snapshot" in result.stdout, result.stdout[-3000:]
    assert sh(guest, f"{ask} get snapshot:only").strip() == "kept"
    assert sh(guest, f"{ask} get acked:500").strip() == "500"
    sh(guest, "test -s /data/redis/appendonlydir/appendonly.aof.manifest")
    job_done(guest, "after-aof", "v2")


def test_a_restore_pauses_the_processes_and_they_go_on_with_the_restored_data(guest, workers):
    """The processes and the schedules are stopped for the database swap (none writes to the database on its
    way out) and started again after it, working on the restored data."""
    job_done(guest, "in-the-backup", "v2")
    sh(guest, f"rm -f /data/backups/*; {NAME}-backup")
    job_done(guest, "after-the-backup", "v2")
    pids = {name: unit_pid(guest, f"{NAME}-{name}.service") for name in WORKERS}
    sh(guest, f"{NAME}-restore")
    for name in WORKERS:
        unit = f"{NAME}-{name}.service"
        assert sh(guest, f"systemctl is-active {unit}").strip() == "active"
        assert unit_pid(guest, unit) != pids[name], f"{unit} kept running through the swap"
    sh(guest, f"systemctl is-active {NAME}-tick.timer")
    jobs = app_state(guest)["jobs"]
    assert "in-the-backup" in jobs and "after-the-backup" not in jobs, jobs
    job_done(guest, "after-the-restore", "v2")
    ticks = app_state(guest)["ticks"]
    wait_for("a scheduled run on the restored database", lambda: app_state(guest)["ticks"] > ticks, 30)


def test_the_restore_runs_no_sql_as_the_superuser_inside_the_apps_database(guest, workers):
    """The app's role owns its database's schemas: a schema named `postgres` (first on the superuser's search path)
    with a view named like the table the restore reads would run the app's function as the superuser, were the
    restore to query there as postgres (issue 29). Planted through the app itself; the restore must not run it."""
    sh(guest, f"{NAME}-backup")
    plant = """
        CREATE TABLE public.superuser_probe (who text NOT NULL, superuser boolean NOT NULL);
        CREATE SCHEMA postgres;
        CREATE FUNCTION postgres.probe() RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO public.superuser_probe
                SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
            RETURN true;
        END $$;
        CREATE VIEW postgres.django_migrations AS SELECT * FROM public.django_migrations WHERE postgres.probe();
    """
    django = f"from django.db import connection; connection.cursor().execute({plant!r})"
    sh(guest, f"{NAME}-manage shell --verbosity 0 -c {shlex.quote(django)}")
    sh(guest, f"{NAME}-restore")
    # The database that was live (and holds the trap) is kept beside the restored one.
    as_superuser = f"runuser -u postgres -- psql -X -qAt -d {NAME}_before_restore -c"
    probe = f"{as_superuser} 'SELECT who, superuser FROM public.superuser_probe'"
    assert sh(guest, probe).split() == [], "the restore ran the app's function"
    # The trap works: the superuser's plain query of the same name runs it.
    sh(guest, f"{as_superuser} 'SELECT count(*) FROM django_migrations'")
    assert set(sh(guest, probe).split()) == {"postgres|t"}
    job_done(guest, "after-the-second-restore", "v2")


def test_everything_comes_back_after_a_reboot(guest, workers):
    guest.guest.reboot_and_wait(timeout=180)
    wait_for("the site after the reboot", lambda: answers(guest.url + "/healthz"), 60)
    job_done(guest, "after-reboot", "v2")
    ticks = app_state(guest)["ticks"]
    wait_for("a scheduled run after the reboot", lambda: app_state(guest)["ticks"] > ticks, 30)
    assert websocket_echo(guest.guest.ip, "/ws/echo/", "back") == "echo v2: back"


def up_refused_with_process(guest, name: str, command: str) -> str:
    """`pulumi up` with one more process, which must fail that up; its output. The site keeps its config."""
    config = guest.config
    app = {**config["app"], "processes": {**config["app"]["processes"], name: command}}
    try:
        with pytest.raises(StepFailed) as failed:
            guest.up({**config, "app": app})
    finally:
        guest.config = config
    return failed.value.stdout + failed.value.stderr


def test_a_process_that_cannot_start_fails_the_up_and_the_web_keeps_serving(guest, workers):
    # A program the release does not have (a typo): it cannot start at all.
    message = up_refused_with_process(guest, "broken", "celeryy -A shop worker")
    assert f"{NAME}-broken.service did not start" in message and "celeryy" in message, message[-3000:]
    assert "the web: " in message and "through nginx /healthz just answered 200" in message, message[-3000:]
    assert http_get(guest.url + "/healthz")[0] == 200
    job_done(guest, "beside-a-broken-process", "v2")


def test_a_process_whose_import_fails_slowly_fails_the_up(guest, workers):
    """The start check times a process in its own time, not by a pause that a loaded machine outlasts: an import
    that fails 6 s in is refused, however long the machine took to get there."""
    message = up_refused_with_process(guest, "slowstart", "manage.py slowstart")
    assert f"{NAME}-slowstart.service did not start" in message and "6 s into its import" in message, message[-3000:]
    assert http_get(guest.url + "/healthz")[0] == 200


def test_a_process_removed_from_the_config_is_gone_after_up(guest, workers):
    config = guest.config
    processes = {"worker": config["app"]["processes"]["worker"]}  # listener (and broken, slowstart) no longer
    guest.up({**config, "app": {**config["app"], "processes": processes}})
    for gone in ("listener", "broken", "slowstart"):
        assert sh(guest, f"systemctl is-active {NAME}-{gone}.service", check=False).strip() in ("inactive", "unknown")
        sh(guest, f"test ! -e /etc/systemd/system/{NAME}-{gone}.service")
    assert not sh(guest, "pgrep -f 'manage.py listen'", check=False).strip()
    job_done(guest, "after-removal", "v2")


def test_no_step_acts_on_a_unit_systemd_has_not_reread(guest, workers):
    """Through the first boot with Redis and the processes, their deploys, and the units added and removed since:
    no step started, restarted or reloaded a unit whose files systemd had not re-read (issue 34)."""
    assert not units_acted_on_unread(guest)


def test_root_never_starts_a_python_that_runs_the_apps_dependencies(guest, workers):
    """Through a deploy, an ASGI configure (every `up` since), a restore, and now a rollback and back: the probe's
    .pth ran as the build user and as the app, never as root (issue 29). Nothing the build left behind runs."""
    live = live_release(guest, NAME)
    sh(guest, f"{NAME}-activate --previous")
    assert live_release(guest, NAME) != live
    sh(guest, f"{NAME}-activate {live}")
    assert http_get(guest.url + "/healthz")[0] == 200
    users = uid_probe_users(guest)
    assert "root" not in users, users["root"]
    assert {NAME, f"{NAME}-build"} <= set(users), users
    sh(guest, f"test -e {UID_PROBE}/run/left-behind")
    assert sh(guest, f"pgrep -a -u {NAME}-build || true").strip() == ""


# --- apt: two steps that install packages at the same moment (issue 34) -------------------------------------------
# Last: it leaves the site as it found it (the same release; Redis and the app's package installed again).

HOLDER = Path(__file__).resolve().parent.parent / "apt_lock_holder.py"


def label(step: Registered) -> str:
    """What the step runs under on the server: its script's $0 (server/rootstep.py)."""
    return step.sent.label


def holder_says(site, text: str, steps: list[Future]) -> str:
    """The holder's log once it has said `text` (bounded: the holder itself gives up after 240 s). A step that ends
    before that (a failure: none may finish while the locks are held) fails the test with its own output."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        log = sh(site, "cat /root/apt-holder.log")
        if text in log:
            return log
        assert "gave up" not in log, log
        for step in steps:
            if step.done():
                raise AssertionError(f"a step ended while apt's locks were held: {step.result()}; holder: {log}")
        time.sleep(0.5)
    raise AssertionError(f"the holder never said {text!r}: {sh(site, 'cat /root/apt-holder.log')}")


def contended(site, first: Registered, second: Registered) -> tuple[str, str, str]:
    """`first` and `second`, two steps that install packages, while a process of the test holds apt's real locks:
    `first` reaches apt and waits, `second` starts and waits for `first`; dpkg's frontend lock is released, then the
    package lists' (tests/apt_lock_holder.py). (first's output, second's output, the holder's pid)"""
    # Each step installs again: Redis (configure) and the app's package (the build), on a server without package
    # lists (as some images come), so that the first install also refreshes them.
    sh(
        site,
        f"apt-get -q -y -o DPkg::Lock::Timeout=60 remove redis-server {EXTRA_PACKAGE} > /dev/null"
        " && find /var/lib/apt/lists -maxdepth 1 -type f ! -name lock -delete",
    )
    site.guest.exec(["bash", "-c", "cat > /root/apt_lock_holder.py"], input=HOLDER.read_bytes(), check=True)
    sh(
        site,
        f"python3 /root/apt_lock_holder.py {label(first)} {label(second)} > /root/apt-holder.log 2>&1 < /dev/null &",
    )
    holder = re.search(r"^held (\d+)$", holder_says(site, "held ", []), re.MULTILINE)[1]  # type: ignore[index]
    with ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(run_step, first, site.guest, print)
        holder_says(site, "first waits at apt:", [one])
        two = pool.submit(run_step, second, site.guest, print)
        print(holder_says(site, "released the lists lock", [one, two]))
        outputs = [future.result() for future in (one, two)]
    return outputs[0].stdout + outputs[0].stderr, outputs[1].stdout + outputs[1].stderr, holder


def test_two_steps_installing_at_the_same_moment_both_succeed_whichever_reaches_apt_first(guest, workers):
    """configure (Redis) and the build (app.packages) of the live release, run again together as a retried `pulumi up`
    runs them, each in turn first: the one that reaches apt first waits for the test's hold of dpkg's frontend lock
    (apt waits for it itself), then for the package lists' (`apt-get update` does not wait: the helper asks again),
    each time naming the holder; the other waits for it (the deployer's own lock). Both succeed; nothing else
    changes, and the site, its worker and Redis work on."""
    steps = {step.name: step for step in guest.run.steps()}
    configure, build_step = steps[f"{NAME}-configure"], steps[f"{NAME}-build"]
    assert guest.config["app"]["packages"] == [EXTRA_PACKAGE]
    for first, second in ((configure, build_step), (build_step, configure)):
        first_output, second_output, holder = contended(guest, first, second)
        for lock in ("/var/lib/dpkg/lock-frontend", "/var/lib/apt/lists/lock"):
            waited = f"apt: waiting: Could not get lock {lock}. It is held by process {holder} (python3)"
            assert waited in first_output, (lock, first_output[-3000:])
        assert f"apt: waiting for {label(first)} (pid " in second_output, second_output[-3000:]
        build_output = first_output if first is build_step else second_output
        assert f"installing system packages (app.packages): {EXTRA_PACKAGE}" in build_output, build_output[-3000:]
        assert "already built" in build_output, "the release is as it was"
        sh(guest, f"dpkg-query -W redis-server {EXTRA_PACKAGE} > /dev/null && systemctl is-active redis-server.service")
    version = re.search(r'"(\w+)"', (workers.folder / "jobs" / "version.py").read_text())[1]  # type: ignore[index]
    job_done(guest, "after-apt", version)


def test_an_apt_lock_held_past_the_bound_fails_with_apt_s_own_message(guest):
    """The helper's bound, made 3 s here (its own is 600 s): a holder of dpkg's frontend lock that outlasts it is
    named while it waits, then the install fails with apt's message and the bound."""
    plan = plan_host(load_settings({"app": {"name": NAME}}, project="djangoship", stack="dev"))
    script = '#!/bin/bash\nset -euo pipefail\nlog() { echo "test: $*"; }\n'
    script += (
        render("scripts/lib/apt.sh.j2", plan, apt_beside_first_boot=False)
        + f"apt_wait=3\napt_install {EXTRA_PACKAGE}\n"
    )
    hold = (
        "import fcntl, os, time; lock = os.open('/var/lib/dpkg/lock-frontend', os.O_RDWR); "
        "fcntl.lockf(lock, fcntl.LOCK_EX); print(os.getpid(), flush=True); time.sleep(60)"
    )
    pid_file = "/root/frontend-holder.pid"
    holder = sh(
        guest,
        f'rm -f {pid_file}; python3 -c "{hold}" > {pid_file} 2>&1 < /dev/null &'
        f" for _ in $(seq 300); do [ -s {pid_file} ] && break; sleep 0.1; done; cat {pid_file}",
    )
    try:
        result = guest.guest.exec(["bash", "-c", script, "apt-bound-test"], timeout=120)
    finally:
        sh(guest, f"kill {holder.strip()}")
    output, errors = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 75, (result.returncode, output, errors)
    held = f"Could not get lock /var/lib/dpkg/lock-frontend. It is held by process {holder.strip()} (python3)"
    assert f"test: apt: waiting: {held}" in output, output
    assert f"E: {held}" in errors and "apt: still locked after 3 s" in errors, errors
