"""Every script the server runs, as sent: shellcheck and `bash -n`; every apt and dpkg use through the one helper;
the Python modules it installs compile, the settings overlay takes the app as it is; the backup helper and units;
the files the scripts install."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.mockrun import run_program
from harness.serverfiles import server_files, user_data_document
from rendered.helpers import (
    CONFIGS,
    DOMAIN,
    PROGRAM_CONFIGS,
    PUBLIC_IP,
    Sent,
    check_shell,
    heredoc,
    heredocs,
    installed,
    installed_files,
    plan_for,
    run_sent,
    site_for,
    unit_sections,
    unit_value,
    user_data_doc,
    user_data_for,
    written_files,
)
from server.files import AFTER_BOOT, configure_context, render_python_modules
from server.files import server_files as declared_files
from server.host import (
    TEMPLATES,
    render,
    render_gunicorn_config,
    render_postgres_config,
    site_hosts,
)

SENT_SCRIPTS = {
    # id → (program run, where the script is)
    "install-host-key": ("http", "install-host-key"),
    "wait-for-boot": ("http", "wait-for-boot"),
    "build-archive-http": ("http", "build"),
    "build-git": ("git", "build"),
    "build-foreign": ("foreign", "build"),
    "build-monorepo": ("monorepo", "build"),
    "configure-host-http": ("http", "configure-host"),
    "configure-host-https": ("https", "configure-host"),
    "configure-host-platzi": ("platzi", "configure-host"),
    "configure-host-nopooler": ("nopooler", "configure-host"),
    "deploy-archive-http": ("http", "deploy"),
    "deploy-archive-https": ("https", "deploy"),
    "deploy-git": ("git", "deploy"),
    "deploy-foreign": ("foreign", "deploy"),
    "deploy-monorepo": ("monorepo", "deploy"),
    "activate-foreign": ("foreign", "configure-host:/usr/local/sbin/photofeed-activate"),
    "configure-host-foreign": ("foreign", "configure-host"),
    "manage-foreign": ("foreign", "configure-host:/usr/local/bin/photofeed-manage"),
    "create-superuser": ("http", "create-superuser"),
    "manage": ("http", "configure-host:/usr/local/bin/photofeed-manage"),
    "manage-platzi": ("platzi", "configure-host:/usr/local/bin/platzi-manage"),
    "letsencrypt-renewal-hook": ("https", "configure-host:/etc/letsencrypt/renewal-hooks/deploy/reload-nginx"),
    "activate-http": ("http", "configure-host:/usr/local/sbin/photofeed-activate"),
    "activate-https": ("https", "configure-host:/usr/local/sbin/photofeed-activate"),
    "backup-local": ("http", "configure-host:/usr/local/sbin/photofeed-backup"),
    "backup-s3": ("backups", "configure-host:/usr/local/sbin/photofeed-backup"),
    "restore-local": ("http", "configure-host:/usr/local/sbin/photofeed-restore"),
    "restore-s3": ("backups", "configure-host:/usr/local/sbin/photofeed-restore"),
    "configure-host-backups": ("backups", "configure-host"),
}


@pytest.mark.parametrize("config_id", CONFIGS)
def test_shellcheck_data_volume_script(config_id: str, tmp_path: Path) -> None:
    """The bootcmd that mounts the data volume before any package is installed."""
    (command,) = user_data_doc(config_id)["bootcmd"]
    assert command[:2] == ["bash", "-c"] and command[3] == f"{plan_for(config_id).app.name}-data-volume"
    assert command[2] == render("scripts/data-volume.sh.j2", plan_for(config_id))
    check_shell(command[2], tmp_path)


def test_foreign_build_steps_are_in_the_deploy(sent: dict[str, Sent]) -> None:
    deploy = script_from(sent, "foreign", "deploy")
    # apt packages before the virtualenv, the managed Python, release commands after collectstatic, then migrate.
    order = [
        "for package in gcc libldap-dev; do",
        "python install 3.14",
        'call_command("collectstatic"',
        "-manage compress \\",
        "-manage compilemessages --ignore=venv \\",
        "migrations: applying {len(plan)} in one transaction",
    ]
    positions = [deploy.index(text) for text in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))
    # Every failure names its step (and the static files', where they were to come from: djangoship_static's line).
    for step in (
        "step 'dependencies'",
        "step 'manage.py check' failed",
        "step 'WSGI import'",
        "step 'collectstatic' failed (error above); $(grep -m 1 '^static: ' <<< \"$report\" || echo",
        # What serves is said from a request through nginx made then, never assumed (issue 34, item 7).
        "release command 'manage.py compress' failed (error above); $(site_now)",
        "step 'migrate' failed (error above); the schema is as it was and $(site_now)",
    ):
        assert step in deploy, step
    activate = script_from(sent, "foreign", "configure-host:/usr/local/sbin/photofeed-activate")
    assert 'status_of "$socket" /health/ ' in activate and "-lt 300 ]" in activate
    assert "-lt 500 ]" in script_from(sent, "http", "configure-host:/usr/local/sbin/photofeed-activate")


@pytest.mark.parametrize("config_id", CONFIGS)
def test_python_modules_compile(config_id: str) -> None:
    for name, text in render_python_modules(plan_for(config_id)).items():
        compile(text, name, "exec")


def test_settings_overlay_takes_the_app_as_it_is_and_sets_what_the_deployment_owns(tmp_path: Path, monkeypatch) -> None:
    """The overlay run for real (it needs no Django): an app settings module shaped like the tutorials'."""
    import importlib

    plan = plan_for("domain-https")
    for name, text in render_python_modules(plan).items():
        (tmp_path / name).write_text(text)
    package = tmp_path / "photofeed"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        "STATIC_ROOT = '/srv/code/staticfiles'\nSTATICFILES_DIRS = ['/srv/code/static']\nCOMPRESS_ROOT = STATIC_ROOT\n"
        "ALLOWED_HOSTS = ['app.example']\nDATABASES = {'default': {'ENGINE': 'x'}, 'other': {'CONN_MAX_AGE': 30}}\n"
        "_private = 1\n"
    )
    env = {
        "DJANGO_STATIC_ROOT": "/srv/photofeed/static/abc",
        "DJANGO_MEDIA_ROOT": "/srv/photofeed/media",
        "DJANGO_ALLOWED_HOSTS": f"{DOMAIN},{PUBLIC_IP}",
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{DOMAIN}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(keep: str) -> Any:
        monkeypatch.setenv("DJANGOSHIP_KEEP", keep)
        for module in ("djangoship_settings", "photofeed.settings", "photofeed"):
            sys.modules.pop(module, None)
        return importlib.import_module("djangoship_settings")

    overlay = load("")
    assert overlay.STATIC_ROOT == "/srv/photofeed/static/abc" and overlay.STATIC_URL == "/static/"
    assert overlay.COMPRESS_ROOT == overlay.STATIC_ROOT
    assert overlay.STATICFILES_DIRS == ["/srv/code/static"], "the app's own static sources stay"
    assert (overlay.MEDIA_ROOT, overlay.MEDIA_URL) == ("/srv/photofeed/media", "/media/")
    assert overlay.ALLOWED_HOSTS == ["app.example", DOMAIN, PUBLIC_IP]
    assert overlay.CSRF_TRUSTED_ORIGINS == ["https://" + DOMAIN]
    assert overlay.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    assert overlay.DATABASES["default"]["CONN_MAX_AGE"] == 600 and overlay.DATABASES["default"]["CONN_HEALTH_CHECKS"]
    assert overlay.DATABASES["other"]["CONN_MAX_AGE"] == 30, "an app's own persistent connections win"
    assert overlay.LOGGING["root"]["handlers"] == ["stderr"]
    assert not hasattr(overlay, "_private")
    assert any(line.startswith("STATIC_ROOT: the app's '/srv/code/staticfiles'") for line in overlay.DJANGOSHIP_REPORT)

    kept = load("static,media,hosts,csrf,proxy,database,logging")
    assert kept.STATIC_ROOT == "/srv/code/staticfiles" and kept.ALLOWED_HOSTS == ["app.example"]
    assert not hasattr(kept, "MEDIA_ROOT") and not hasattr(kept, "SECURE_PROXY_SSL_HEADER")
    assert "CONN_MAX_AGE" not in kept.DATABASES["default"] and not hasattr(kept, "LOGGING")
    assert kept.DJANGOSHIP_REPORT == []


def test_s3_backup_helper_is_python(sent: dict[str, Sent]) -> None:
    script = script_from(sent, "backups", "configure-host:/usr/local/lib/photofeed/s3backup.py")
    compile(script, "s3backup.py", "exec")
    assert "photofeed-backups-example" not in script or "s3://" in script
    conf = script_from(sent, "backups", "configure-host:/etc/photofeed/backup.conf")
    assert conf == "BUCKET=photofeed-backups-example\nREGION=us-east-1\n"


@pytest.mark.parametrize("unit", ["photofeed-backup.service", "photofeed-backup.timer"])
def test_backup_units_are_well_formed(unit: str, sent: dict[str, Sent]) -> None:
    text = script_from(sent, "http", f"configure-host:/etc/systemd/system/{unit}")
    sections = unit_sections(text)
    if unit.endswith(".timer"):
        assert unit_value(sections, "Timer", "OnCalendar") == "*-*-* 03:30:00"
        assert unit_value(sections, "Timer", "Persistent") == "true"
    else:
        assert unit_value(sections, "Service", "ExecStart") == "/usr/local/sbin/photofeed-backup"


def script_from(sent: dict[str, Sent], program: str, where: str) -> str:
    """A step's script, or (`step:/path`) a file it installs from server/files.py's list."""
    step, _, path = where.partition(":")
    script = sent[program].scripts[step]
    return installed(script, path) if path else script


@pytest.mark.parametrize("script_id", SENT_SCRIPTS)
def test_shellcheck_sent_script(script_id: str, sent: dict[str, Sent], tmp_path: Path) -> None:
    check_shell(script_from(sent, *SENT_SCRIPTS[script_id]), tmp_path)


@pytest.mark.parametrize("config_id", CONFIGS)
def test_shellcheck_firstboot(config_id: str, tmp_path: Path) -> None:
    files = written_files(user_data_doc(config_id))
    for name in ("firstboot", "pg-upgrade"):
        check_shell(files[f"/usr/local/sbin/{plan_for(config_id).app.name}-{name}"]["content"], tmp_path)


def test_shellcheck_catches_a_broken_script(sent: dict[str, Sent], tmp_path: Path) -> None:
    script = sent["http"].scripts["wait-for-boot"]
    with pytest.raises(AssertionError, match="SC2086"):
        check_shell(script + "echo $status_unquoted\n", tmp_path)
    with pytest.raises(AssertionError):
        check_shell(script + "if true; then\n", tmp_path)


def test_sent_scripts_install_exactly_the_rendered_files(sent: dict[str, Sent]) -> None:
    """configure-host installs exactly server/files.py's files after the first boot, each as declared (mode, owner,
    group) and as the pure render (so validating renders validates what is sent); its other here-documents are the
    renders too. Each here-document ends in a newline (else its delimiter would not end it) and none contains a
    delimiter."""
    for program, config_id in PROGRAM_CONFIGS:
        plan = plan_for(config_id)
        script = sent[program].scripts["configure-host"]
        declared = [file for file in declared_files(plan) if file.stage == AFTER_BOOT]
        context = configure_context(plan, health_host=site_hosts(plan, PUBLIC_IP)[0])
        expected = {r.path: (f"{r.mode} {r.file.owner} {r.file.group}", r.text) for r in context["files"]}
        assert installed_files(script) == expected
        # What the server writes itself, with the declaration's mode and owner.
        for file in declared:
            if file.written_by:
                args = f"{file.path} {file.mode} {file.owner} {file.group}"
                assert re.search(rf"^\s*install_file {re.escape(args)}( |$)", script, re.MULTILINE), file.path
        assert heredoc(script, "PG_CONF") == render_postgres_config(plan)
        assert installed(script, f"{plan.paths.config_dir}/gunicorn.conf.py") == render_gunicorn_config(plan)
        assert installed(script, plan.paths.manage) == render("scripts/manage.sh.j2", plan)
        assert heredoc(script, "NGINX_SITE", 0) == site_for(config_id, https=False)
        if plan.tls:
            assert heredoc(script, "NGINX_SITE", 1) == site_for(config_id, https=True)
        for tag, body in heredocs(script):
            assert (body == "" or body.endswith("\n")) and f"\n{tag}\n" not in "\n" + body, tag
        assert f"install_file {plan.paths.env_file} 0640 root {plan.app.name} " in script


# --- apt and dpkg: every use through cloud-init/scripts/lib/apt.sh.j2 (issue 34) ------------------------------------
# The single server's steps run side by side, beside the image's apt timers; dpkg lets one in at a time. A use of apt
# or dpkg that bypasses the helper fails the first time two of them meet.

APT_HELPER = "scripts/lib/apt.sh.j2"
# The programs that take apt's or dpkg's locks, as words of code (not dpkg-query, which reads without a lock; not a
# path such as /etc/apt/, nor the helper's apt_get).
LOCKING_PROGRAM = re.compile(
    r"(?<![\w./$-])(?:apt-get|apt-mark|aptitude|apt|dpkg-reconfigure|dpkg|unattended-upgrade)(?![\w.-])"
)
# Beyond the `sent` programs: Redis's install in configure, and the app servers' document (their boot, their deploy).
REDIS_PROGRAM = {"redis": True, "app": {"processes": {"worker": "celery -A photofeed worker"}}}
SCALED_PROGRAM = {"profile": "scaled", "app": {"packages": ["libmagic1"]}}


def apt_uses(text: str) -> list[str]:
    """The lines of `text` (shell, YAML, Python or their jinja2 templates) that run apt or dpkg, comments left out:
    jinja2's, and from a `#` that starts a word to the end of its line."""
    text = re.sub(r"\{#.*?#\}", "", text, flags=re.DOTALL)
    lines = (re.sub(r"(^|\s)#.*", "", line).strip() for line in text.splitlines())
    return [line for line in lines if LOCKING_PROGRAM.search(line)]


def document_parts(name: str, document: str) -> dict[str, str]:
    """A first-boot document and each script or file it carries, by a name."""
    parsed = yaml.safe_load(document)
    parts = {name: document} | {f"{name}:{path}": entry["content"] for path, entry in written_files(parsed).items()}
    parts |= {f"{name}:bootcmd": command[2] for command in parsed.get("bootcmd", [])}
    return parts


def server_texts(sent: dict[str, Sent]) -> dict[str, str]:
    """Every script and file the server gets, by a name: each program's steps (configure-host with the files it
    installs, in its here-documents), each config's first-boot document and what it carries, the app servers'."""
    texts = {f"{program}:{step}": script for program, done in sent.items() for step, script in done.scripts.items()}
    texts |= {f"redis:{step}": script for step, script in run_sent(REDIS_PROGRAM).scripts.items()}
    for config_id in CONFIGS:
        texts |= document_parts(f"user-data:{config_id}", user_data_for(config_id))
    scaled = run_program(SCALED_PROGRAM)
    texts |= document_parts("scaled", user_data_document(scaled))
    texts |= {f"scaled:{path}": text for path, text in server_files(scaled).items()}
    return texts


def test_every_template_leaves_apt_and_dpkg_to_the_helper() -> None:
    """Every file under cloud-init/, in every branch (what no config renders included)."""
    found = {
        str(path.relative_to(TEMPLATES)): uses
        for path in sorted(TEMPLATES.rglob("*"))
        if path.is_file() and path != TEMPLATES / APT_HELPER and (uses := apt_uses(path.read_text()))
    }
    assert found == {}, found
    assert apt_uses((TEMPLATES / APT_HELPER).read_text()), "the helper itself runs apt-get"


def test_every_apt_and_dpkg_use_the_server_gets_goes_through_the_helper(sent: dict[str, Sent]) -> None:
    plan = plan_for("debian-13-t2.micro")
    allowed = {
        line for beside in (True, False) for line in apt_uses(render(APT_HELPER, plan, apt_beside_first_boot=beside))
    }
    texts = server_texts(sent)
    for name, text in texts.items():
        assert set(apt_uses(text)) <= allowed, (name, set(apt_uses(text)) - allowed)
    # Each script that installs carries the helper, once (the steps are separate shells): configure (nftables,
    # PgBouncer, Redis, boto3, certbot), the build and the deploy (app.packages, the build tools), the first boot's
    # PostgreSQL upgrade, the app servers' boot (the SSM agent, nftables) and their deploy.
    callers = {
        name for name, text in texts.items() if text.startswith("#!") and re.search(r"\bapt_(get|install) ", text)
    }
    assert {"http:configure-host", "redis:configure-host", "https:configure-host", "backups:configure-host"} <= callers
    assert {"foreign:build", "foreign:deploy", "scaled:/usr/local/sbin/photofeed-boot"} <= callers
    assert {
        "scaled:/usr/local/sbin/photofeed-deploy",
        "user-data:debian-13-t2.micro:/usr/local/sbin/photofeed-pg-upgrade",
    } <= callers
    for name in callers:
        assert texts[name].count("\napt_held() {") == 1, name


@pytest.mark.parametrize(
    "line",
    [
        "apt-get install -y gcc",
        "DEBIAN_FRONTEND=noninteractive apt-get -qq update",
        "dpkg -i agent.deb",
        'x=$(apt install -y redis) || fail "no redis"',
        "apt-mark hold postgresql-17",
        "dpkg-reconfigure tzdata",
    ],
)
def test_a_use_without_the_helper_is_found(line: str) -> None:
    assert apt_uses(f"#!/bin/bash\nset -e\n    {line}  # a comment\n") == [line]
    assert not apt_uses(f"# {line}\n{{# {line} #}}\ndpkg-query -W git\napt_install gcc\nrm -f /etc/apt/x\n")


# --- unit links and the daemon-reload after them (issue 34) ---------------------------------------------------------
# On systemd 255+ any change to a unit's links (`systemctl enable --no-reload`) marks every unit as changed on disk
# until the next daemon-reload; systemctl warns about whatever it starts meanwhile. The guests prove a first boot
# and the steps quiet (test_local_boot, test_foreign_apps); this keeps every script the server runs in that order.
LINKS = re.compile(r"\bsystemctl enable\b.*--no-reload|^enable_at_boot\b(?!\(\))")
RELOAD = re.compile(r"\bsystemctl daemon-reload\b|^daemon_reload\b(?!\(\))")
ACTS = re.compile(
    r"\bsystemctl (?:--?\w+ )*(?:start|restart|reload|reload-or-restart|try-reload-or-restart|try-restart)\b"
    r"|\benable --now\b|^restart_unit \S|-(?:processes restart|activate|deploy)\b"
)
# The app servers with processes and schedules (enabled by their boot), beside the programs of server_texts.
SCALED_WORKERS = {
    "profile": "scaled",
    "app": {
        "processes": {"worker": "celery -A photofeed worker"},
        "schedules": {"sessions": {"schedule": "daily", "command": "manage.py clearsessions"}},
    },
}


def units_acted_on_before_a_reload(script: str) -> list[str]:
    """The lines of `script` that start, restart or reload a unit (or run a script that does) after a change to
    links with no daemon-reload since; here-documents (files installed, not run) and comments left out."""
    found, pending, heredoc_end = [], False, None
    for raw in script.splitlines():
        line = raw.strip()
        if heredoc_end is not None:
            heredoc_end = None if raw == heredoc_end else heredoc_end
            continue
        if tag := re.search(r"<<'(\w+)'", line):
            heredoc_end = tag[1]
        if not line or line.startswith(("#", "install_file ")):  # a comment; a file installed, not run
            continue
        if RELOAD.search(line):
            pending = False
        elif LINKS.search(line):
            pending = True
            if "--now" in line:
                found.append(line)
        elif pending and ACTS.search(line):
            found.append(line)
    return found


def test_no_script_acts_on_a_unit_between_a_link_and_the_reload(sent: dict[str, Sent]) -> None:
    texts = server_texts(sent)
    scaled = run_program(SCALED_WORKERS)
    texts |= {f"scaled-workers:{path}": text for path, text in server_files(scaled).items()}
    texts |= document_parts("scaled-workers", user_data_document(scaled))
    scripts = {name: text for name, text in texts.items() if text.startswith("#!/bin/bash")}
    assert {"redis:configure-host", "scaled-workers:/usr/local/sbin/photofeed-boot"} <= set(scripts)
    assert any(re.search(r"^enable_at_boot .*\bphotofeed-worker\.service\b", text, re.M) for text in scripts.values())
    found = {name: lines for name, text in scripts.items() if (lines := units_acted_on_before_a_reload(text))}
    assert found == {}, found


@pytest.mark.parametrize(
    "script",
    [
        "systemctl enable --no-reload a.service\nsystemctl restart b.service\n",
        "systemctl enable --now --no-reload a.timer\n",
        "enable_at_boot a.service\nrestart_unit a.service\n",
        "systemctl enable --quiet --no-reload a.service\n/usr/local/sbin/x-deploy\n",
    ],
)
def test_an_action_before_the_reload_is_found(script: str) -> None:
    assert units_acted_on_before_a_reload("#!/bin/bash\n" + script)
    reloaded = script.replace("\n", "\nsystemctl daemon-reload\n", 1)
    assert units_acted_on_before_a_reload("#!/bin/bash\n" + reloaded) == [
        line for line in [script.strip()] if "--now" in line
    ]


# --- the build's dependencies (issue 34 item 5) ----------------------------------------------------------------------


def test_a_stand_in_for_a_requirement_without_a_wheel_is_a_wheel_pip_takes(tmp_path: Path) -> None:
    """While the build tools install, pip resolves the app's requirements with an empty wheel standing in for each
    one that has no wheel (scripts/lib/dependencies.sh.j2): pip must take it for that name and version, extras and
    all, and it must bring nothing with it (no files, no requirements)."""
    library = render("scripts/lib/dependencies.sh.j2", plan_for("debian-13-t2.micro"))
    folder = tmp_path / "stand-ins"
    script = f'log() {{ :; }}\nbuild_home={tmp_path}\nbuilder=nobody\n{library}\npython3 -I -c "$STAND_IN" "$@"\n'
    subprocess.run(
        ["bash", "-c", script, "stand-in", str(folder), "psycopg-c==3.3.9", "Foo.Bar[extra]==1.0"], check=True
    )
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--no-index"]
        + ["--only-binary=:all:", "--find-links", str(folder), "--report", str(report), "--target", str(tmp_path / "t")]
        + ["psycopg-c==3.3.9", "foo-bar==1.0"],
        check=True,
    )
    chosen = {item["metadata"]["name"]: item for item in json.loads(report.read_text())["install"]}
    assert {name: item["metadata"]["version"] for name, item in chosen.items()} == {
        "psycopg-c": "3.3.9",
        "Foo.Bar": "1.0",
    }
    assert all(not item["metadata"].get("requires_dist") for item in chosen.values())
    assert all(item["download_info"]["url"].startswith(folder.as_uri() + "/") for item in chosen.values())
