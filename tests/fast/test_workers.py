"""Beyond the web process (issue 14), without a server: the config keys (`app.processes`, `app.schedules`,
`redis`, `app.asgiModule`) and their checks, OnCalendar held to systemd's own parser, the memory budget, the
env contract's REDIS_URL, and every file rendered for them through the project's real validators
(`systemd-analyze verify`, `nginx -t`, shellcheck — the helpers of tests/rendered). The guest proof is
tests/guests/test_foreign_workers.py's `workers` project.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
from rendered.helpers import (
    PUBLIC_IP,
    assert_nginx_accepts,
    certificate,
    check_shell,
    installed,
    need,
    run,
    sent_scripts,
    systemd_verify,
)

from catalog.offerings import INSTANCE_TYPES, MEMORY_MIB
from config.envcontract import reserved_names
from config.memory import memory_budget
from config.oncalendar import CalendarError, check_calendar
from config.settings import load_settings
from config.table import ConfigError
from harness.mockrun import MockState, run_program
from server.appfiles import read_configure_stdin
from server.files import render_app_units, render_python_modules
from server.host import plan_host, render_gunicorn_config, render_nginx_site, site_hosts

EXAMPLE = str(Path(__file__).resolve().parent.parent.parent / "examples" / "photofeed")
WORKERS_APP = {
    "asgiModule": "photofeed.asgi",
    "processes": {"worker": "celery -A photofeed worker -l info", "alerts": "manage.py send_alerts --loop"},
    "schedules": {"sessions": {"schedule": "daily", "command": "manage.py clearsessions"}},
}
WORKERS = {"redis": True, "app": WORKERS_APP}


def settings_for(config: dict[str, Any]):
    return load_settings(config, project="djangoship", stack="dev")


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_for(config)
    return caught.value.problems


# --- OnCalendar: systemd's rules -------------------------------------------------------------------------------

# Accepted and refused by `systemd-analyze calendar` (checked below against the host's systemd, expression by
# expression): the shorthands, weekdays and their ranges, dates with `~`, repetitions, fractions of seconds,
# time zones, @epoch — and the edges where a value, a range or a repetition leaves its component's range.
CALENDAR = [
    "daily",
    "Daily",
    "hourly UTC",
    "semi-annually",
    "quarterly",
    "minutely",
    "weekly",
    "@1700000000",
    "@0",
    "*-*-* 03:30:00",
    "03:30",
    "*:0/15",
    "*:*:0/5",
    "*-*-* *:*:00/10",
    "Mon..Fri 10:00",
    "Mon-Fri *-*-* 10:00",
    "mon,wed 10:00",
    "Monday",
    "Mon..Fri,Sun 1:00",
    "Sat,Sun 20-*-1,5 11:12:13",
    "*-02~03",
    "*-*~07/1",
    "*-*~28/1",
    "2026-*~01",
    "*~1",
    "12:00 UTC",
    "10:00 utc",
    "12:00 Europe/Berlin",
    "1:00 Etc/GMT+1",
    "2003-03-05 05:40",
    "1-1-1",
    "99-1-1",
    "0001-1-1",
    "2199-1-1",
    "*-*-* 10:00:59.5",
    "*:*:1/0.5",
    "0..5/2:00",
    "*:58/1",
    "22/1:00",
    "*-*-1/30",
    "*:*:0/59",
    "1,2,3:00",
    "*-1..12-1",
    "Mon..Mon",
    "Mon,Tue  1:00",
    "*-*",
    "*:*",
    # refused:
    "",
    " 1:00",
    "1:00 ",
    "10",
    "now",
    "today",
    "Mo",
    "thurs",
    "Fri..Mon",
    "Sun..Sat",
    "Fri-Mon 1:00",
    "Mon , Tue 1:00",
    "1:00 Mon",
    "hourly Mon",
    "Mon *-*-* 25:00",
    "24:00",
    "1:60",
    "*-*-* 10:00:60",
    "00:00:59.9999999",
    "*-13-01",
    "*-00-01",
    "*-*-0",
    "2200-1-1",
    "1969-01-01",
    "100-1-1",
    "2026-*",
    "*/2:00",
    "*:59/1",
    "*:58/2",
    "23/1:00",
    "0/24:00",
    "*-*-31/2",
    "*-*-1/31",
    "*-12/1-01",
    "1..3/0:00",
    "23..1:00",
    "*-*~0",
    "*-*~29",
    "*-*~3..1",
    "*-*-1~2",
    "~01",
    "*,1:00",
    "1..2..3:00",
    "1,,2:00",
    "*:*:.5",
    "*:*:5.",
    "12:00 Mars/X",
    "1:00 Europe/berlin",
    "05:40 UTC+1",
    "01:00:00 UTC UTC",
    "2026-12-02T10:00",
    "@abc",
]


def systemd_accepts(expression: str) -> bool:
    analyze = need("systemd-analyze")
    return run([analyze, "calendar", "--", expression]).returncode == 0


@pytest.mark.parametrize("expression", CALENDAR)
def test_oncalendar_check_agrees_with_systemd(expression: str) -> None:
    try:
        check_calendar(expression)
        ours = True
    except CalendarError:
        ours = False
    assert ours == systemd_accepts(expression), f"{expression!r}: systemd-analyze calendar disagrees"


def test_backup_schedule_and_schedules_use_the_same_check() -> None:
    assert settings_for({"backupSchedule": "Mon..Fri 04:00"}).backup_schedule == "Mon..Fri 04:00"
    (problem,) = problems({"backupSchedule": "*-*-* 25:00"})
    assert problem.startswith("backupSchedule = '*-*-* 25:00' is invalid") and "hour '25'" in problem
    job = {"schedule": "*-*-* 25:00", "command": "manage.py clearsessions"}
    (problem,) = problems({"app": {"schedules": {"nightly": job}}})
    assert problem.startswith("app.schedules.nightly.schedule = '*-*-* 25:00' is invalid") and "hour '25'" in problem


# --- the keys ----------------------------------------------------------------------------------------------------

BAD = [
    ({"app": {"processes": {"worker": "celery -A proj worker; rm -rf /"}}}, "app.processes.worker"),
    ({"app": {"processes": {"worker": "manage.py"}}}, "app.processes.worker"),
    ({"app": {"processes": {"worker": "/usr/bin/celery worker"}}}, "app.processes.worker"),
    ({"app": {"processes": {"worker": "celery --name=$HOME"}}}, "app.processes.worker"),
    ({"app": {"processes": {"worker": "celery -n w%h"}}}, "app.processes.worker"),
    ({"app": {"processes": {"Worker": "celery worker"}}}, "app.processes.Worker"),
    ({"app": {"processes": {"backup": "celery worker"}}}, "app.processes.backup"),
    ({"app": {"processes": {"worker": ["celery"]}}}, "app.processes.worker"),
    ({"app": {"schedules": {"nightly": "daily"}}}, "app.schedules.nightly"),
    ({"app": {"schedules": {"nightly": {"schedule": "daily"}}}}, "app.schedules.nightly"),
    (
        {"app": {"schedules": {"nightly": {"schedule": "nightly", "command": "manage.py x"}}}},
        "app.schedules.nightly.schedule",
    ),
    (
        {"app": {"schedules": {"nightly": {"schedule": "daily", "command": "manage.py 'x y'"}}}},
        "app.schedules.nightly.command",
    ),
    (
        {
            "app": {
                "processes": {"tick": "manage.py tick"},
                "schedules": {"tick": {"schedule": "daily", "command": "manage.py tick"}},
            }
        },
        "app.schedules.tick",
    ),
    ({"app": {"asgiModule": "my site.asgi"}}, "app.asgiModule"),
    ({"redis": "yes"}, "redis"),
    ({"profile": "scaled", "redis": True, "cacheNodeType": "cache.t2.huge"}, "cacheNodeType"),
    ({"redis": True, "app": {"env": {"REDIS_URL": "redis://elsewhere"}}}, "app.env.REDIS_URL"),
    ({"redis": True, "app": {"env": {"DJANGO_REDIS_URL": "redis://elsewhere"}}}, "app.env.DJANGO_REDIS_URL"),
]


@pytest.mark.parametrize(("config", "named"), BAD, ids=[f"{i}-{named}" for i, (_, named) in enumerate(BAD)])
def test_bad_config_fails_naming_the_key(config: dict[str, Any], named: str) -> None:
    found = problems(config)
    assert any(problem.split()[0] == named for problem in found), found


def test_the_scaled_profile_takes_the_workers_shape() -> None:
    """Processes, schedules, ASGI and Redis move to the scaled profile as they are (issue 31)."""
    settings = settings_for({"profile": "scaled", "redis": True, "app": WORKERS_APP})
    assert settings.redis  # ElastiCache (components/scaled/cache.py)
    assert settings.app.asgi_module == "photofeed.asgi" and settings.app.processes and settings.app.schedules


def test_good_config_is_read_and_normalised() -> None:
    app = {**WORKERS_APP, "processes": {"worker": "  celery   -A photofeed worker  "}}
    settings = settings_for({"redis": True, "app": app})
    assert settings.redis and settings.app.asgi_module == "photofeed.asgi"
    assert settings.app.processes == {"worker": "celery -A photofeed worker"}
    assert settings.app.schedules["sessions"] == {"schedule": "daily", "command": "manage.py clearsessions"}
    # Without redis, REDIS_URL is the app's own to set (an external Redis).
    assert settings_for({"app": {"env": {"REDIS_URL": "redis://cache.internal:6379/0"}}}).app.env


# --- the memory budget -------------------------------------------------------------------------------------------


def test_the_default_site_fits_every_size() -> None:
    for size in INSTANCE_TYPES:
        assert memory_budget(size).verdict == "fits", size


def test_over_budget_fails_naming_the_cheapest_size_that_fits() -> None:
    n = next(n for n in range(1, 40) if memory_budget("t2.micro", processes=n, redis=True).verdict == "over")
    processes = {f"p{i}": "manage.py run" for i in range(n)}
    (problem,) = problems({"instanceType": "t2.micro", "redis": True, "app": {"processes": processes}})
    assert problem.startswith("instanceType = 't2.micro' is invalid: the site needs ~")
    budget = memory_budget("t2.micro", processes=n, redis=True)
    assert budget.verdict == "over" and budget.cheapest_fit in problem
    fit = INSTANCE_TYPES[budget.cheapest_fit]
    assert memory_budget(budget.cheapest_fit, processes=n, redis=True).verdict == "fits"
    # …and it is the cheapest one of the same architecture that does.
    cheaper = [
        name for name, size in INSTANCE_TYPES.items() if size.arch == fit.arch and size.usd_per_hour < fit.usd_per_hour
    ]
    assert all(memory_budget(name, processes=n, redis=True).verdict != "fits" for name in cheaper)


def test_a_budget_within_half_the_swap_is_a_warning_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = next(
        memory_budget("t2.nano", processes=n, redis=True)
        for n in range(10)
        if memory_budget("t2.nano", processes=n, redis=True).verdict == "swap"
    )
    assert budget.memory_mib < budget.total <= budget.memory_mib + budget.swap_mib // 2
    processes = {f"p{i}": "manage.py run" for i in range(budget.parts["processes"] // MEMORY_MIB["process"])}
    settings_for({"instanceType": "t2.nano", "redis": True, "app": {"processes": processes}})  # no error
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    run_program({"instanceType": "t2.nano", "redis": True, "app": {"processes": processes}}, state=MockState())
    assert any(w.startswith("instanceType: the site needs ~") and "swap" in w for w in warnings), warnings


def test_a_scheduler_among_the_scaled_processes_is_warned_of(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every app server runs every process: celery beat there would send each periodic task once per server."""
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    processes = {"worker": "celery -A shop worker", "beat": "celery -A shop beat -l info"}
    run_program({"profile": "scaled", "redis": True, "app": {"processes": processes}}, state=MockState())
    (warning,) = [w for w in warnings if w.startswith("app.processes.")]
    assert warning.startswith("app.processes.beat: runs on every app server") and "app.schedules" in warning
    warnings.clear()
    run_program({"redis": True, "app": {"processes": processes}}, state=MockState())  # one server: one beat
    assert not [w for w in warnings if w.startswith("app.processes.")]


def test_the_issue_shape_fits_a_t2_micro() -> None:
    """A Celery worker, a long-running command, Redis and ASGI: the site the guest test deploys."""
    assert memory_budget("t2.micro", processes=2, redis=True, asgi=True).verdict == "fits"


# --- rendered files through the real validators -------------------------------------------------------------------


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # Debian 12's render (this host's systemd 252 has no RestartSteps=; the guest test verifies Debian 13's there).
    plan = plan_host(settings_for({**WORKERS, "image": "debian-12"}))
    units = render_app_units(plan)
    assert (
        sorted(units)
        == plan.units
        == [
            "photofeed-alerts.service",
            "photofeed-sessions.service",
            "photofeed-sessions.timer",
            "photofeed-worker.service",
        ]
    )
    result = systemd_verify(units, tmp_path / "root")
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_unit_properties() -> None:
    units = render_app_units(plan_host(settings_for(WORKERS)))
    worker = units["photofeed-worker.service"]
    assert "ExecStart=/srv/photofeed/current/venv/bin/celery -A photofeed worker -l info\n" in worker
    alerts = units["photofeed-alerts.service"]
    assert (
        "ExecStart=/srv/photofeed/current/venv/bin/python /srv/photofeed/current/manage.py send_alerts --loop\n"
        in alerts
    )
    hardening = [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/srv/photofeed/media",
        "CapabilityBoundingSet=",
    ]
    for text in units.values():
        if "[Service]" in text:
            assert "User=photofeed\n" in text and "EnvironmentFile=/etc/photofeed/env\n" in text
            assert all(f"\n{line}\n" in text for line in hardening)  # gunicorn's hardening (the same partial)
    assert "Restart=on-failure" in worker and "RestartSteps=5" in worker and "StartLimitIntervalSec=0" in worker
    debian12 = render_app_units(plan_host(settings_for({**WORKERS, "image": "debian-12"})))
    assert "RestartSteps" not in debian12["photofeed-worker.service"]
    timer = units["photofeed-sessions.timer"]
    assert "OnCalendar=daily\n" in timer and "Persistent=true\n" in timer
    assert "Type=oneshot" in units["photofeed-sessions.service"]


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_nginx_accepts_the_asgi_site(https: bool, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    config = {**WORKERS, "domain": "example.com", "tlsEmail": "a@example.com"} if https else WORKERS
    plan = plan_host(settings_for(config))
    site = render_nginx_site(plan, https=https, hosts=site_hosts(plan, PUBLIC_IP))
    assert "proxy_set_header Upgrade $http_upgrade;" in site and "map $http_upgrade $photofeed_connection" in site
    if https:
        folder = request.getfixturevalue(certificate.__name__)
        site = site.replace("/etc/letsencrypt/live/example.com/", f"{folder}/")
    assert_nginx_accepts(tmp_path, site)
    # A WSGI site is as it was.
    assert "Upgrade" not in render_nginx_site(plan_host(settings_for({})), https=False, hosts=[PUBLIC_IP])


def test_gunicorn_runs_uvicorns_worker_for_asgi() -> None:
    plan = plan_host(settings_for(WORKERS))
    asgi = render_gunicorn_config(plan)
    assert 'worker_class = "djangoship_uvicorn.Worker"' in asgi and 'wsgi_app = "djangoship_asgi:application"' in asgi
    # The module it names is among the deployer's modules on the app's PYTHONPATH (a WSGI site has none).
    assert "from uvicorn_worker import UvicornWorker" in render_python_modules(plan)["djangoship_uvicorn.py"]
    assert "djangoship_uvicorn.py" not in render_python_modules(plan_host(settings_for({})))
    compile(asgi, "gunicorn.conf.py", "exec")
    wsgi = render_gunicorn_config(plan_host(settings_for({})))
    assert 'worker_class = "sync"' in wsgi and 'wsgi_app = "djangoship_wsgi:application"' in wsgi


@pytest.fixture(scope="module")
def workers_run():
    return run_program(WORKERS, state=MockState())


def test_scripts_pass_shellcheck(workers_run, tmp_path: Path) -> None:
    scripts = sent_scripts(workers_run)
    texts = {
        "configure-host": scripts["configure-host"],
        "deploy": scripts["deploy"],
        "processes": installed(scripts["configure-host"], "/usr/local/sbin/photofeed-processes"),
        "activate": installed(scripts["configure-host"], "/usr/local/sbin/photofeed-activate"),
        "restore": installed(scripts["configure-host"], "/usr/local/sbin/photofeed-restore"),
    }
    for name, text in texts.items():
        (tmp_path / name).mkdir()
        check_shell(text, tmp_path / name)
    assert "photofeed-processes restart" in texts["activate"]
    # A restore stops the processes, the schedules' timers and a running job for the swap, and starts them again.
    assert "app_units=(photofeed-alerts.service photofeed-worker.service photofeed-sessions.timer )" in texts["restore"]
    assert 'gunicorn.service "${app_units[@]}" photofeed-sessions.service' in texts["restore"]
    assert 'systemctl start "${app_units[@]}"' in texts["restore"]
    assert "apt_install redis-server ||" in texts["configure-host"]


def test_redis_password_only_on_stdin_and_in_the_env_contract(workers_run) -> None:
    configure = workers_run.named("photofeed-configure")
    env, _ = read_configure_stdin(configure.sent.rest)
    url = re.search(r"^REDIS_URL='redis://:(\w{32})@127\.0\.0\.1:6379/0'$", env, re.MULTILINE)
    assert url and f"DJANGO_REDIS_URL='redis://:{url[1]}@127.0.0.1:6379/0'" in env
    assert {line.split("=", 1)[0] for line in env.splitlines()} == reserved_names("DJANGO_", "single", redis=True)
    password = url[1]
    assert password not in configure.inputs["create"] + configure.sent.script + repr(configure.inputs["triggers"])
    assert all(password not in step.inputs.get("create", "") for step in workers_run.steps())
    assert password not in workers_run.one("aws:ec2/instance:Instance").inputs["userData"]
    assert workers_run.named("photofeed-redis-password").type == "random:index/randomPassword:RandomPassword"
    # Without redis: no password, no REDIS_URL, no Redis installed.
    plain = run_program({}, state=MockState())
    assert "REDIS_URL" not in plain.named("photofeed-configure").sent.rest
    assert "apt_install redis-server" not in plain.named("photofeed-configure").sent.script
    assert not [step for step in plain.steps() if step.name.endswith("redis-password")]


def test_a_change_to_the_processes_re_runs_the_deploy_and_nothing_else_when_unchanged() -> None:
    state = MockState()
    first = run_program(WORKERS, state=state)
    again = run_program(WORKERS, state=state)
    assert first.named("photofeed-deploy").inputs == again.named("photofeed-deploy").inputs
    changed = {**WORKERS, "app": {**WORKERS_APP, "processes": {"worker": "celery -A photofeed worker"}}}
    other = run_program(changed, state=state)
    assert other.named("photofeed-deploy").inputs["triggers"] != first.named("photofeed-deploy").inputs["triggers"]
    # A site without processes keeps the deploy's triggers it always had.
    plain = run_program({}, state=MockState())
    assert len(plain.named("photofeed-deploy").inputs["triggers"]) == 3  # the instance, the script, the release


def test_processes_script_times_each_process_in_its_own_time_and_names_the_unit() -> None:
    """Started: 10 s into the process's own time (its age less its waits for a CPU), judged from systemd's MainPID,
    NRestarts and ActiveState; the guest proof is test_foreign_workers (a slowly failing import is refused)."""
    script = installed(
        sent_scripts(run_program(WORKERS, state=MockState()))["configure-host"], "/usr/local/sbin/photofeed-processes"
    )
    assert "units=(photofeed-alerts.service photofeed-worker.service)" in script
    assert '"$own" -lt $((10 * 1000))' in script and "/schedstat" in script
    assert "-p ActiveState -p NRestarts -p MainPID" in script and 'journalctl -u "$unit" -n 30' in script
    bash = need("bash")
    assert subprocess.run([bash, "-n", "-c", script], check=False).returncode == 0


def test_a_process_that_fails_says_what_the_web_answers_not_that_it_serves() -> None:
    """No message claims the web serves unless a request just proved it (issue 34, item 7): a process that does not
    start fails with what nginx answered then (site_now), never a bare "the web keeps serving"; the guest proof is
    test_foreign_workers (a process that cannot start: the message names the 200 nginx answered)."""
    script = installed(
        sent_scripts(run_program(WORKERS, state=MockState()))["configure-host"], "/usr/local/sbin/photofeed-processes"
    )
    assert 'fail "did not start: ${failed[*]}; the web: $(site_now)"' in script
    assert "site_now() {" in script and "site_answer() {" in script
    assert "keeps serving" not in script


def test_asgi_leaves_persistent_connections_to_the_app() -> None:
    """Under ASGI a request's sync code may run in any thread, and Django's persistent connections belong to a
    thread: the overlay must not turn them on there (it does for WSGI)."""
    from server.files import render_python_modules

    asgi = render_python_modules(plan_host(settings_for(WORKERS)))
    assert "djangoship_asgi.py" in asgi and 'CONN_MAX_AGE"] = ' not in asgi["djangoship_settings.py"]
    compile(asgi["djangoship_asgi.py"], "djangoship_asgi.py", "exec")
    wsgi = render_python_modules(plan_host(settings_for({})))
    assert "djangoship_wsgi.py" in wsgi and 'CONN_MAX_AGE"] = 600' in wsgi["djangoship_settings.py"]


def test_the_pool_has_room_for_every_process_and_schedule() -> None:
    plain, workers = plan_host(settings_for({})), plan_host(settings_for(WORKERS))
    assert workers.db.pool_size == plain.db.pool_size + 3  # two processes, one schedule
    assert int(workers.db.postgres["max_connections"]) >= workers.db.pool_size + 6
