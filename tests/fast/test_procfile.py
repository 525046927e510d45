"""The repository already says how it runs (issue 33, item 3): a `Procfile` read as defaults under the keys
(config/procfile.py, config/checks.py `procfile_defaults`), printed at preview with the lines that pin it; what
only a shell can run refused, naming the line; and a pipenv project installed from its `Pipfile.lock`, hashes
checked (python/pipfile-requirements.py.j2 in the deploy's dependency step)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from config.procfile import parse
from config.settings import ConfigError, load_settings
from harness.mockrun import run_program
from server.host import plan_host, render, render_gunicorn_config

ROOT = Path(__file__).resolve().parent.parent.parent
LOCK = ROOT / "tests" / "fixtures" / "apps" / "heroku" / "Pipfile.lock"


def heroku_app(folder: Path, procfile: str, **extra: str) -> Path:
    """A Heroku-shaped project: startproject's files, and the Procfile given."""
    files = {
        "manage.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")\n',
        "proj/__init__.py": "",
        "proj/settings.py": 'DEBUG = False\nWSGI_APPLICATION = "proj.wsgi.application"\n',
        "proj/wsgi.py": "application = None\n",
        "proj/asgi.py": "application = None\n",
        "Procfile": textwrap.dedent(procfile).lstrip("\n"),
        **extra,
    }
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def app_settings(folder: Path, **keys: object):
    return load_settings({"app": {"source": str(folder), **keys}}, project="djangoship", stack="dev")


def problems(folder: Path, **keys: object) -> str:
    with pytest.raises(ConfigError) as refused:
        app_settings(folder, **keys)
    return str(refused.value)


HEROKU = """
    release: python manage.py migrate
    web: gunicorn proj.wsgi --log-file - --timeout 45 --workers 2 --max-requests 1000
    worker: celery -A proj worker -l info
    clock_tower: python manage.py run_clock
"""


# --- what a Procfile implies ---------------------------------------------------------------------------------------


def test_a_heroku_procfile_fills_in_the_keys_left_unset_and_says_how_to_pin_each(tmp_path):
    settings = app_settings(heroku_app(tmp_path / "shop", HEROKU))
    app = settings.app
    assert app.wsgi_module == "proj.wsgi" and app.asgi_module == ""
    assert app.server_options == {"timeout": "45", "max_requests": "1000"}
    assert app.processes == {"worker": "celery -A proj worker -l info", "clock-tower": "manage.py run_clock"}
    assert app.release_commands == [], "migrate is the deploy's own step: not run twice"
    notes = "\n".join(app.procfile_notes)
    for pin in (
        "pulumi config set --path app.wsgiModule proj.wsgi",
        "pulumi config set gunicornWorkers 2",
        "pulumi config set --path app.serverOptions.timeout 45",
        "pulumi config set --path app.serverOptions.max_requests 1000",
        "pulumi config set --path app.processes.worker 'celery -A proj worker -l info'",
        "pulumi config set --path app.processes.clock-tower 'manage.py run_clock'",
    ):
        assert pin in notes, (pin, notes)
    assert "the Procfile's line 1 `release: python manage.py migrate` is not run twice" in notes
    assert "left out of the Procfile's web line: --log-file -" in notes
    plan = plan_host(settings)
    assert plan.workers == 2 and plan.app.wsgi_module == "proj.wsgi"
    assert [name for name, _ in plan.app.processes] == ["clock-tower", "worker"]
    conf = render_gunicorn_config(plan)
    assert "timeout = 45\n" in conf and "max_requests = 1000\n" in conf and "log_file" not in conf


def test_a_release_line_the_deploy_does_not_run_itself_becomes_the_release_command(tmp_path):
    app = heroku_app(tmp_path / "shop", "release: ./manage.py createcachetable --database default\n")
    settings = app_settings(app)
    assert settings.app.release_commands == ["createcachetable --database default"]
    assert "pulumi config set --path 'app.releaseCommands[0]' createcachetable --database default" in "\n".join(
        settings.app.procfile_notes
    )
    assert plan_host(settings).app.release_commands == (("createcachetable", "--database", "default"),)
    for own in ("python manage.py collectstatic --noinput", "python3 manage.py check --deploy"):
        (app / "Procfile").write_text(f"release: {own}\n")
        assert app_settings(app).app.release_commands == [], own


@pytest.mark.parametrize(
    ("web", "module", "asgi"),
    [
        ("gunicorn proj.asgi:application -k uvicorn.workers.UvicornWorker --bind 0.0.0.0:$PORT", "proj.asgi", True),
        ("gunicorn -k uvicorn_worker.UvicornWorker proj.asgi", "proj.asgi", True),
        ("uvicorn proj.asgi:application --host 0.0.0.0 --port ${PORT:-8000} --proxy-headers", "proj.asgi", True),
        ("daphne -b 0.0.0.0 -p $PORT proj.asgi:application", "proj.asgi", True),
        ("waitress-serve --port=$PORT proj.wsgi:application", "proj.wsgi", False),
        ("python -m gunicorn proj.wsgi:application --threads 4 --preload", "proj.wsgi", False),
        ("bin/start-nginx gunicorn -c config/gunicorn.conf.py proj.wsgi", "", False),
        ("python manage.py runserver 0.0.0.0:$PORT", "", False),
    ],
)
def test_the_web_line_names_the_module_served_as_wsgi_or_asgi(tmp_path, web, module, asgi):
    app = app_settings(heroku_app(tmp_path / "shop", f"web: {web}\n")).app
    assert (app.asgi_module if asgi else app.wsgi_module) == module
    if not module:
        # A wrapper or the development server: the module found in the app's files, said so.
        assert "the Procfile's web line is not used: it runs" in app.procfile_notes[0], app.procfile_notes
    if "--threads 4" in web:
        assert app.server_options == {"threads": "4", "preload_app": "True"}
        conf = render_gunicorn_config(plan_host(load_settings({"app": {"source": app.source}}, project="p", stack="s")))
        assert "threads = 4\npreload_app = True\n" in conf


def test_keys_set_in_the_config_win_over_the_procfile(tmp_path):
    app = heroku_app(tmp_path / "shop", HEROKU)
    settings = app_settings(
        app,
        wsgiModule="proj.wsgi",
        releaseCommands=["compress"],
        processes={"worker": "manage.py rqworker"},
        serverOptions={"timeout": "20"},
    )
    assert settings.app.processes == {"worker": "manage.py rqworker", "clock-tower": "manage.py run_clock"}
    assert settings.app.release_commands == ["compress"]
    assert settings.app.server_options == {"timeout": "20"}, "the web line is not used with app.wsgiModule set"
    assert plan_host(settings).workers == 3, "nor its --workers: the instance's own count"
    notes = "\n".join(settings.app.procfile_notes)
    assert "the Procfile's web line is not used: app.wsgiModule is set" in notes
    assert "is not used: app.processes.worker is set" in notes
    # Only an option: the web line's others still apply, this one is the config's.
    options = app_settings(app, serverOptions={"timeout": "20"}).app.server_options
    assert options == {"timeout": "20", "max_requests": "1000"}
    pinned = load_settings({"app": {"source": str(app)}, "gunicornWorkers": 1}, project="djangoship", stack="dev")
    assert pinned.app.procfile_workers == 0 and plan_host(pinned).workers == 1
    # app.procfile false: the file is not read at all.
    ignored = app_settings(app, procfile=False).app
    assert (ignored.processes, ignored.server_options, ignored.procfile_notes) == ({}, {}, ())
    assert ignored.wsgi_module == "", "found by the deploy's rules, from WSGI_APPLICATION"


def test_the_preview_prints_what_the_procfile_implies(tmp_path, monkeypatch):
    import pulumi

    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda message, *args, **kwargs: said.append(message))
    run = run_program({"app": {"source": str(heroku_app(tmp_path / "shop", HEROKU))}})
    assert (
        "app: WSGI module proj.wsgi (WSGI, by the deployer's gunicorn; the Procfile's line 2 `web: gunicorn" in said[0]
    )
    assert any(
        line.endswith("pulumi config set --path app.processes.worker 'celery -A proj worker -l info'") for line in said
    )
    configure = run.named("shop-configure").sent.script
    assert "timeout = 45" in configure and "[Service]" in configure
    assert "ExecStart=/srv/shop/current/venv/bin/celery -A proj worker -l info" in configure


# --- refused: what only a shell can run ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("release: python manage.py migrate && python manage.py compress", "`&&` needs a shell"),
        ("release: python manage.py migrate; python manage.py compress", "`;` needs a shell"),
        ("release: ./release-tasks.sh", "only manage.py commands are run before a release goes live"),
        ("web: gunicorn proj.wsgi --workers $WEB_CONCURRENCY", "`$WEB_CONCURRENCY` (only $PORT is known"),
        ("web: cd src && gunicorn proj.wsgi", "`&&` needs a shell"),
        ("web: cd src", "`cd` needs a shell"),
        ("web: gunicorn proj.wsgi --timeout 120", "--timeout 120 is not a whole number from 1 to 60 (nginx waits"),
        ("web: gunicorn proj.wsgi -k gevent", "worker class gevent is not one the deploy runs"),
        ("web: gunicorn proj.wsgi --statsd-host localhost:8125", "option --statsd-host is not one the deploy carries"),
        ("web: gunicorn proj.wsgi:app", "the deploy serves the `application` of a module"),
        ("web: gunicorn nosuch.wsgi", "nosuch.wsgi is not a module of the app"),
        ("web: gunicorn proj.wsgi --workers 64", "--workers 64 is more than a t2.micro holds"),
        ("worker: celery -A proj worker 2>&1 | tee worker.log", "needs a shell"),
        ("worker: DJANGO_SETTINGS_MODULE=proj.other celery -A proj worker", "setting DJANGO_SETTINGS_MODULE"),
        ("worker: python manage.py process_tasks `hostname`", "command substitution needs a shell"),
        ("worker: bash -c 'celery -A proj worker'", "`bash` needs a shell"),
        ("worker: celery -A proj worker -Q 'a b'", "the argument 'a b' has blanks in it"),
        ("worker: celery -A proj worker -Q a%b", "app.processes.worker (from the Procfile's line 1"),
        ("redis: redis-server", "app.processes.redis (from the Procfile's line 1"),
        ("this is not a procfile line", "is not `name: command`"),
    ],
)
def test_a_line_that_cannot_run_as_written_fails_the_preview_naming_it(tmp_path, line, why):
    said = problems(heroku_app(tmp_path / "shop", line + "\n"))
    assert why in said, said
    assert "line 1" in said, said


def test_a_refused_line_whose_key_is_set_is_not_used_and_not_refused(tmp_path):
    shell = """
        release: python manage.py migrate && python manage.py compress
        web: gunicorn proj.wsgi --workers $WEB_CONCURRENCY
        worker: celery -A proj worker | tee log
    """
    app = heroku_app(tmp_path / "shop", shell)
    said = problems(app)
    for number in (1, 2, 3):
        assert f"the Procfile's line {number} " in said, said
    assert "set the manage.py commands as app.releaseCommands instead" in said, "each says what to set instead"
    settings = app_settings(
        app, releaseCommands=["compress"], wsgiModule="proj.wsgi", processes={"worker": "celery -A proj worker"}
    )
    assert settings.app.release_commands == ["compress"]
    notes = "\n".join(settings.app.procfile_notes)
    assert "release line is not run: app.releaseCommands is set" in notes
    assert "worker line is not used: app.processes.worker is set" in notes


MONOREPO_TOP = """
    release: python backend/manage.py migrate
    web: gunicorn --chdir backend proj.wsgi --log-file - --timeout 30
    worker: celery --workdir backend -A proj worker -l info
    mailer: ./backend/manage.py send_queued_mail --loop
"""


def monorepo(folder: Path, procfile: str) -> Path:
    """Heroku's monorepo shape: the project in backend/, the Procfile at the repository's top pointing into it."""
    heroku_app(folder / "backend", "web: unused\n")
    (folder / "backend" / "Procfile").unlink()
    (folder / "Procfile").write_text(textwrap.dedent(procfile).lstrip("\n"))
    return folder


def test_a_monorepos_procfile_at_the_top_is_read_as_run_from_the_project_folder(tmp_path):
    settings = app_settings(monorepo(tmp_path / "shop", MONOREPO_TOP), directory="backend")
    app = settings.app
    assert app.wsgi_module == "proj.wsgi" and app.server_options == {"timeout": "30"}
    # Run from backend/ (the release holds it alone): pointing there again would be backend/backend.
    assert app.processes == {"worker": "celery -A proj worker -l info", "mailer": "manage.py send_queued_mail --loop"}
    assert app.release_commands == [], "migrate is the deploy's own step"
    assert "pulumi config set --path app.wsgiModule proj.wsgi" in "\n".join(app.procfile_notes)


@pytest.mark.parametrize(
    ("web", "why"),
    [
        ("gunicorn --chdir frontend proj.wsgi", "it serves from the folder frontend, and the project"),
        ("gunicorn proj.wsgi", "it serves from the Procfile's own folder, and the project"),
        ("uvicorn --app-dir ./web proj.asgi:application", "it serves from the folder web, and the project"),
    ],
)
def test_a_web_line_serving_from_another_folder_than_the_projects_fails_the_preview(tmp_path, web, why):
    said = problems(monorepo(tmp_path / "shop", f"web: {web}\n"), directory="backend")
    assert why in said and "(manage.py) is the folder backend (app.directory)" in said, said
    # Beside manage.py, the same line's folder must be that one.
    said = problems(heroku_app(tmp_path / "flat", "web: gunicorn --chdir backend proj.wsgi\n"))
    assert "it serves from the folder backend, and the project (manage.py) is the Procfile's own folder" in said


def test_port_is_the_one_variable_a_web_line_may_name_and_it_is_the_deployers():
    parsed = parse("web: gunicorn proj.wsgi --bind 0.0.0.0:$PORT\n")
    assert parsed.web is not None and parsed.web.left_out == ("--bind 0.0.0.0:$PORT",)
    assert not parsed.refused


def test_a_name_twice_is_a_broken_procfile(tmp_path):
    said = problems(heroku_app(tmp_path / "shop", "worker: celery -A proj worker\nworker: manage.py rqworker\n"))
    assert "the Procfile's line 2 `worker: manage.py rqworker`: a second `worker:` line" in said


def test_server_options_are_checked_naming_the_key(tmp_path):
    app = heroku_app(tmp_path / "shop", "")
    said = problems(app, serverOptions={"timeout": "90", "preload_app": "yes", "statsd_host": "x"})
    assert "app.serverOptions.timeout = '90' is invalid: a whole number from 1 to 60: nginx waits 60 s" in said
    assert "app.serverOptions.preload_app = 'yes' is invalid: true or false" in said
    assert "app.serverOptions.statsd_host (value not shown) is invalid: one of timeout" in said
    assert app_settings(app, serverOptions={"keepalive": 10, "preload_app": "true"}).app.server_options == {
        "keepalive": "10",
        "preload_app": "True",
    }


def test_no_procfile_and_no_options_render_gunicorn_as_before():
    """An app without a Procfile (photofeed) gets the same gunicorn config as before this change, byte for byte."""
    conf = render_gunicorn_config(plan_host(load_settings({}, project="p", stack="s")))
    assert "timeout = 30\ngraceful_timeout = 25\nkeepalive = 5\n# No access log" in conf
    assert "serverOptions" not in conf


# --- pipenv: Pipfile.lock, hashes checked ---------------------------------------------------------------------------


def pipfile_requirements() -> str:
    """python/pipfile-requirements.py.j2 as the deploy renders it."""
    return render("python/pipfile-requirements.py.j2", plan_host(load_settings({}, project="p", stack="s")))


def convert(tmp_path: Path, lock: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "Pipfile.lock"
    path.write_text(json.dumps(lock))
    script = [sys.executable, "-I", "-S", "-c", pipfile_requirements(), str(path)]
    return subprocess.run(script, capture_output=True, text=True)


def test_pipfile_lock_becomes_pinned_requirements_with_every_hash(tmp_path):
    lock = json.loads(LOCK.read_text())
    converted = convert(tmp_path, lock)
    assert converted.returncode == 0, converted.stderr
    lines = converted.stdout.splitlines()
    assert lines[0] == "--index-url https://pypi.org/simple"
    packages = {line.split("==")[0].split("[")[0]: line for line in lines[1:]}
    assert set(packages) == set(lock["default"]), "the default packages, not the develop ones"
    assert "pytest" not in converted.stdout
    assert packages["psycopg"].startswith("psycopg[binary]==3.3.9 ; python_version >= '3.10' --hash=sha256:")
    for name, entry in lock["default"].items():
        assert packages[name].count("--hash=") == len(entry["hashes"]) > 0


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"git": "https://github.com/x/y.git", "ref": "abc"}, "is a git requirement, which pip cannot check by hash"),
        ({"path": ".", "editable": True}, "is a path requirement"),
        ({"version": "==1.0"}, "has no pinned version with hashes"),
        ({"version": "*", "hashes": ["sha256:00"]}, "has no pinned version with hashes"),
    ],
)
def test_a_lock_entry_that_cannot_be_hash_checked_fails_naming_it(tmp_path, entry, why):
    converted = convert(tmp_path, {"_meta": {"sources": []}, "default": {"mypkg": entry}})
    assert converted.returncode == 1 and f"Pipfile.lock: mypkg {why}" in converted.stderr, converted.stderr
    assert convert(tmp_path, {"default": []}).returncode == 1


def tiny_wheel(folder: Path) -> tuple[Path, str]:
    files = {"tinypkg.py": b"VALUE = 1\n"}
    info = "tinypkg-1.0.dist-info"
    files[f"{info}/METADATA"] = b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n"
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"

    def digest(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    files[f"{info}/RECORD"] = (
        "".join(f"{name},{digest(data)},{len(data)}\n" for name, data in files.items()) + f"{info}/RECORD,,\n"
    ).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    path = folder / "tinypkg-1.0-py3-none-any.whl"
    path.write_bytes(buffer.getvalue())
    return path, hashlib.sha256(buffer.getvalue()).hexdigest()


def test_pip_installs_what_the_lock_hashes_and_refuses_what_it_does_not(tmp_path):
    """The converted lock, given to pip as the deploy gives it (--require-hashes -r), from a local folder of wheels:
    the locked file installs; the same name with a hash the lock does not list is refused."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _, sha = tiny_wheel(wheels)

    def install(hashes: list[str]) -> subprocess.CompletedProcess:
        lock = {"default": {"tinypkg": {"version": "==1.0", "hashes": hashes, "markers": "python_version >= '3'"}}}
        converted = convert(tmp_path, lock)
        assert converted.returncode == 0, converted.stderr
        (tmp_path / "requirements.txt").write_text(converted.stdout)
        pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(wheels)]
        pip += [
            "--isolated",
            "--target",
            str(tmp_path / "target"),
            "--require-hashes",
            "-r",
            str(tmp_path / "requirements.txt"),
        ]
        return subprocess.run(pip, capture_output=True, text=True)

    good = install([f"sha256:{sha}"])
    assert good.returncode == 0 and "Would install tinypkg-1.0" in good.stdout, good.stdout + good.stderr
    bad = install(["sha256:" + "0" * 64])
    assert bad.returncode != 0 and "DO NOT MATCH THE HASHES" in bad.stderr, bad.stderr


def sent(config: dict, step: str) -> str:
    """The script a step of the program (under Pulumi's mocks) sends to the server."""
    run = run_program(config)
    app = load_settings(config, project="p", stack="s").app.name
    return run.named(f"{app}-{step}").sent.script


def test_the_deploy_installs_a_pipenv_project_from_its_lock_only_without_a_requirements_file():
    deploy = sent({}, "build")
    requirements_loop = deploy.index("for candidate in requirements/production.txt")
    pipenv = deploy.index("kind=pipenv manifest=${1}Pipfile.lock")
    assert deploy.index("kind=poetry manifest=${1}poetry.lock") < requirements_loop < pipenv
    assert '[ -z "$kind" ] && [ -f "$build/${1}Pipfile.lock" ]' in deploy
    install = deploy[deploy.index("                pipenv)") :]
    assert "--require-hashes" in install[:800] and '-r "$build_home/Pipfile.lock.txt"' in install[:800]
    # Root converts the lock with its own python3, isolated and without site: it reads JSON, nothing of the app.
    assert "python3 -I -S -c " in deploy[deploy.index('if [ "$kind" = pipenv ]') :]


def test_a_git_source_s_procfile_is_said_not_read_by_its_deploy():
    """Only a local folder is read at preview: a git source's deploy says that its Procfile is not read."""
    config = {"app": {"source": "https://example.com/shop.git", "ref": "a" * 40}}
    settings = load_settings(config, project="p", stack="s")
    assert settings.app.procfile_notes == () and settings.app.processes == {}
    deploy = sent(config, "build")
    said = deploy.index("the app's Procfile is not read for a git source: set the keys")
    assert deploy.rindex('if [ -f "$build/Procfile" ]; then', 0, said) > deploy.rindex("\n    fi\n", 0, said)
    assert deploy.index('rm -rf "$build/.git"') < said < deploy.index('[ -f "$build/manage.py" ]')
