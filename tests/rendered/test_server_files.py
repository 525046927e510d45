"""server/files.py's list is what lands on a server, by every road: both profiles' first-boot documents, the app
servers' files archive, and the single server's configure step — which installs each file as declared and runs
what a changed one notifies (issue 32, items 1 and 2)."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import tarfile
from typing import Any

import pytest
import yaml

from config.settings import load_settings
from harness.mockrun import MockState, run_program
from harness.serverfiles import server_files_archive, user_data_document
from rendered.helpers import CONFIGS, PUBLIC_IP, installed_files, plan_for, user_data_doc, written_files
from server import files as server_list
from server.appserver import scaled_plan
from server.files import AFTER_BOOT, FIRST_BOOT, ServerFile, configure_context, notified, rendered, server_files
from server.host import TEMPLATES, plan_host, remote_script, site_hosts

# A single server with everything the list can hold: the pooler, Redis, processes, a schedule, backups to S3, TLS.
EVERYTHING = {
    "domain": "www.example.com",
    "tlsEmail": "ops@example.com",
    "backupBucket": "photofeed-backups-example",
    "redis": True,
    "app": {
        "processes": {"worker": "celery -A photofeed worker"},
        "schedules": {"sessions": {"schedule": "daily", "command": "manage.py clearsessions"}},
    },
}
SCALED = {"profile": "scaled", "redis": True, "app": EVERYTHING["app"]}


def configure_script(plan: Any) -> str:
    hosts = site_hosts(plan, PUBLIC_IP)
    return remote_script(
        "configure-host",
        plan,
        **configure_context(plan, health_host=hosts[0]),
        release_id="0123456789ab",
        postgres_config="",
        nginx_site_http="",
        nginx_site_https="",
    )


def everything_plan() -> Any:
    return plan_host(load_settings(EVERYTHING, project="djangoship", stack="dev"))


def test_every_declared_template_exists() -> None:
    plans = [plan_for(config_id) for config_id in CONFIGS]
    plans += [everything_plan(), scaled_plan(load_settings(SCALED, project="djangoship", stack="dev"))]
    for plan in plans:
        paths = [file.path for file in server_files(plan)]
        assert len(paths) == len(set(paths)), "a path declared twice"
        for file in server_files(plan):
            assert bool(file.template) + bool(file.copied_from) + bool(file.written_by) == 1, file.path
            for template in (file.template, file.written_by):
                assert not template or (TEMPLATES / template).is_file(), (file.path, template)


@pytest.mark.parametrize("config_id", CONFIGS)
def test_the_first_boot_document_carries_the_lists_first_boot_files(config_id: str) -> None:
    plan = plan_for(config_id)
    files = written_files(user_data_doc(config_id))
    expected = {file.path: (file.mode, file.text.rstrip("\n") + "\n") for file in rendered(plan, FIRST_BOOT)}
    assert {path: (entry["permissions"], entry["content"]) for path, entry in files.items()} == expected


def test_the_app_servers_get_the_lists_files_first_boot_and_after() -> None:
    run = run_program(SCALED, state=MockState())
    plan = scaled_plan(load_settings(SCALED, project="djangoship", stack="dev"))
    document = yaml.safe_load(user_data_document(run))
    modes = {entry["path"]: entry["permissions"] for entry in document["write_files"]}
    assert modes == {file.path: file.mode for file in server_files(plan) if file.stage == FIRST_BOOT}
    archive = base64.b64decode(server_files_archive(run).inputs["contentBase64"])
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = {"/" + member.name: f"{member.mode:04o}" for member in tar.getmembers()}
    assert members == {file.path: file.mode for file in server_files(plan) if file.stage == AFTER_BOOT}
    assert not [file for file in server_files(plan) if file.written_by], "an app server writes nothing itself"


def test_configure_installs_the_lists_files_and_runs_what_each_notifies() -> None:
    """Each file as declared; each unit a file restarts or reloads is judged stale by exactly its files; the units the
    files link at boot linked once, before the one reload."""
    plan = everything_plan()
    script = configure_script(plan)
    declared = [file for file in server_files(plan) if file.stage == AFTER_BOOT]
    assert {path: args for path, (args, _) in installed_files(script).items()} == {
        file.path: f"{file.mode} {file.owner} {file.group}" for file in declared if not file.written_by
    }
    # Each `stale UNIT FILE…` judgement, on one line (continuations joined).
    stale_lines = [line for line in re.sub(r"\\\n\s*", " ", script).splitlines() if "stale " in line]
    for kind in ("restarts", "reloads"):
        for unit, paths in notified(declared, kind).items():
            judged = [line for line in stale_lines if f"stale {unit} " in line or 'stale "$unit" ' in line]
            assert any(" ".join(paths) in line for line in judged), (kind, unit, paths, judged)
    # What a change restarts, as an operator expects it (the same as before the list: issue 32).
    overlay = [
        f"{plan.paths.python_dir}/{name}.py"
        for name in ("djangoship_settings", "djangoship_wsgi", "djangoship_appmodules", "djangoship_static")
    ]
    assert notified(declared, "restarts") == {
        "photofeed-metadata-block.service": [plan.paths.metadata_block],
        "gunicorn.service": [plan.paths.env_file, *overlay, f"{plan.paths.config_dir}/gunicorn.conf.py"],
        "photofeed-worker.service": [plan.paths.env_file, *overlay],
        "pgbouncer.service": ["/etc/pgbouncer/pgbouncer.ini", "/etc/systemd/system/pgbouncer.service.d/photofeed.conf"],
        "redis-server.service": [
            "/etc/redis/photofeed-password.conf",
            "/etc/redis/photofeed.conf",
            "/etc/systemd/system/redis-server.service.d/photofeed.conf",
        ],
        "nginx.service": ["/etc/systemd/system/nginx.service.d/photofeed.conf"],
    }
    assert notified(declared, "reloads") == {"pgbouncer.service": ["/etc/pgbouncer/userlist.txt"]}
    (links,) = [line for line in script.splitlines() if line.startswith("enable_at_boot ")]
    assert links.split()[1:] == [
        "photofeed-metadata-block.service",
        "pgbouncer.service",
        "redis-server.service",
        "photofeed-backup.timer",
        "photofeed-worker.service",
        "photofeed-sessions.timer",
    ]
    (reload,) = [line for line in script.splitlines() if line.startswith("daemon_reload ")]
    assert script.index(links) < script.index(reload) < script.index("load_metadata_block\n")


def test_a_new_file_is_one_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    """What CONTRIBUTING's recipe says: a declaration (and its template) installs the file and restarts its unit."""
    plan = everything_plan()
    listed = server_list.server_files

    def with_one_more(plan: Any) -> list[ServerFile]:
        extra = ServerFile("/etc/nginx/conf.d/extra.conf", "apt/auto-upgrades.j2", restarts=("nginx.service",))
        return [*listed(plan), dataclasses.replace(extra, mode="0640", group="www-data")]

    monkeypatch.setattr(server_list, "server_files", with_one_more)
    script = configure_script(plan)
    assert installed_files(script)["/etc/nginx/conf.d/extra.conf"][0] == "0640 root www-data"
    nginx = (
        f"stale nginx.service /etc/systemd/system/nginx.service.d/{plan.app.name}.conf /etc/nginx/conf.d/extra.conf;"
    )
    assert f"if {nginx} then\n    restart_unit nginx.service\nfi\n" in script
