"""Profile `scaled`: what an app server receives (its first-boot document, the server files' archive, their
scripts and units), through the validators its own tools would apply — `cloud-init schema`, `systemd-analyze
verify`, `shellcheck`, `nginx -t`, `compile()` — and the AWS helper against a stand-in boto3 client.

Host tools (skipped with the reason, failed with CI=true): cloud-init, shellcheck, nginx, systemd-analyze.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import skip_or_fail
from rendered.helpers import need, run, systemd_verify

from config.settings import load_settings
from harness.mockrun import ProgramRun, run_program
from harness.serverfiles import app_server_files
from server.appserver import (
    scaled_plan,
)
from server.host import render, without_comment_lines

SCALED: dict[str, Any] = {"profile": "scaled"}
DOMAIN = "shop.example.com"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def decode_user_data(encoded: str) -> str:
    raw = base64.b64decode(encoded)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def user_data(run: ProgramRun) -> str:
    return decode_user_data(run.one(LAUNCH_TEMPLATE).inputs["userData"])


# --------------------------------------------------------------------------------------------------------
# 6. The first-boot document and its scripts, through the validators
# --------------------------------------------------------------------------------------------------------


@cache
def rendered(config_json: str) -> ProgramRun:
    return run_program(json.loads(config_json))


DOCUMENTS = {
    "ubuntu-archive": SCALED | {"image": "ubuntu-24.04"},
    "debian-12-arm-git": SCALED
    | {
        "image": "debian-12",
        "instanceType": "t4g.small",
        "app": {"source": "https://github.com/example/photofeed.git", "ref": "0123456789abcdef" * 2 + "01234567"},
    },
    "domain-platzi": SCALED | {"domain": DOMAIN, "app": {"name": "platzi", "envPrefix": "PLATZI_"}},
    # A private repository: the deploy's SSH fetch and the deploy key's parameter make the largest document.
    "ssh-source": SCALED
    | {"app": {"source": "ssh://git@git.example.com/acme/shop.git", "ref": "0123456789abcdef" * 2 + "01234567"}},
    # The workers shape (issue 31) on top of that: ASGI, two processes, two schedules, ElastiCache.
    "ssh-workers": SCALED
    | {
        "redis": True,
        "app": {
            "source": "ssh://git@git.example.com/acme/shop.git",
            "ref": "0123456789abcdef" * 2 + "01234567",
            "asgiModule": "shop.asgi",
            "processes": {"worker": "celery -A shop worker -l info", "alerts": "manage.py send_alerts --loop"},
            "schedules": {
                "sessions": {"schedule": "daily", "command": "manage.py clearsessions"},
                "digest": {"schedule": "*:0/15", "command": "manage.py send_digest"},
            },
        },
    },
}


def document(config_id: str) -> str:
    return user_data(rendered(json.dumps(DOCUMENTS[config_id], sort_keys=True)))


def all_files(config_id: str) -> dict[str, str]:
    return app_server_files(rendered(json.dumps(DOCUMENTS[config_id], sort_keys=True)))


@pytest.mark.parametrize("config_id", DOCUMENTS)
def test_app_server_units_pass_systemd_verify(config_id: str, tmp_path: Path) -> None:
    """Every unit an app server gets (the user-data's and the server-files archive's), through systemd's own
    check; with schedules, each has its timer's unit and the boot's catch-up unit, which passes --catch-up."""
    files = all_files(config_id)
    folder = "/etc/systemd/system/"
    units = {
        path.removeprefix(folder): text for path, text in files.items() if path.startswith(folder) and "@" not in path
    }
    app_config = DOCUMENTS[config_id].get("app", {})
    for name in app_config.get("schedules", {}):
        (catch_up,) = [unit for unit in units if unit.endswith(f"-{name}-catch-up.service")]
        timer = catch_up.replace("-catch-up.service", ".timer")
        assert " --catch-up -- " in units[catch_up] and timer in units
        assert " --catch-up " not in units[timer.replace(".timer", ".service")]
        # The gate's exit 75 (it failed before the job started) is restarted, its 1 (the job failed) and 2 are not.
        for unit in (catch_up, timer.replace(".timer", ".service")):
            assert "\nRestart=on-failure\nRestartPreventExitStatus=1 2\n" in units[unit], units[unit]
    result = systemd_verify(units, tmp_path / "root")
    # The processes' restart back-off needs systemd 254; Debian 13's app servers have 257, this host may have less.
    version = int(run(["systemctl", "--version"]).stdout.split()[1])
    newer = re.compile(r"Unknown key '(RestartSteps|RestartMaxDelaySec)'")
    problems = [line for line in result.stderr.splitlines() if not (version < 254 and newer.search(line))]
    assert result.returncode == 0 and not problems and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("config_id", DOCUMENTS)
def test_user_data_passes_cloud_init_schema_and_fits(config_id: str, tmp_path: Path) -> None:
    text = document(config_id)
    assert text.startswith("#cloud-config\n")
    path = tmp_path / "user-data"
    path.write_text(text)
    result = run([need("cloud-init"), "schema", "--config-file", str(path)])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Valid cloud-config" in result.stdout, output
    assert "deprecat" not in output.lower(), output
    packages = yaml.safe_load(text)["packages"]
    assert "postgresql-client" in packages and "postgresql" not in packages
    # EC2 takes at most 16 KiB of user-data (before base64): gzip must keep it well inside.
    compressed = len(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    assert compressed < 16384, f"{compressed} bytes gzipped"


def test_cloud_init_schema_catches_a_broken_document(tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(document("ubuntu-archive").replace("package_upgrade: false", 'package_upgrade: "often"'))
    result = run([need("cloud-init"), "schema", "--config-file", str(path)])
    assert result.returncode != 0 or "Valid cloud-config" not in result.stdout


def scripts_of(config_id: str, language: str) -> dict[str, str]:
    shebang = {"bash": "#!/bin/bash", "python": "#!/usr/bin/python3"}[language]
    return {path: text for path, text in all_files(config_id).items() if text.startswith(shebang)}


SHELL_SCRIPTS = [(config_id, path) for config_id in DOCUMENTS for path in scripts_of(config_id, "bash")]


@pytest.mark.parametrize(("config_id", "path"), SHELL_SCRIPTS, ids=[f"{c}:{Path(p).name}" for c, p in SHELL_SCRIPTS])
def test_shell_scripts_pass_shellcheck(config_id: str, path: str, tmp_path: Path) -> None:
    script = tmp_path / Path(path).name
    script.write_text(scripts_of(config_id, "bash")[path])
    result = run([need("shellcheck"), "--norc", "-s", "bash", "-f", "gcc", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr
    syntax = run(["bash", "-n", str(script)])
    assert syntax.returncode == 0, syntax.stderr


def test_every_scaled_script_is_checked() -> None:
    names = {Path(path).name for _, path in SHELL_SCRIPTS}
    assert {
        "photofeed-boot",
        "photofeed-release-once",
        "photofeed-manage",
        "photofeed-deploy",
        "photofeed-activate",
        "photofeed-firstboot",
    } <= names


def test_shellcheck_catches_a_broken_script(tmp_path: Path) -> None:
    script = tmp_path / "broken"
    script.write_text(
        scripts_of("ubuntu-archive", "bash")["/usr/local/sbin/photofeed-boot"] + "rm -rf $undefined_dir/*\n"
    )
    assert run([need("shellcheck"), "--norc", "-s", "bash", "-f", "gcc", str(script)]).returncode != 0


@pytest.mark.parametrize("config_id", DOCUMENTS)
def test_python_programs_compile(config_id: str) -> None:
    programs = scripts_of(config_id, "python")
    assert {Path(path).name.split("-")[-1] for path in programs} == {"aws", "credentials.py"}
    for path, text in programs.items():
        compile(text, path, "exec")


FAKE_BOTO3 = """
import json, os
LOG = os.environ["FAKE_BOTO_LOG"]

def _log(*args):
    with open(LOG, "a") as f:
        f.write(json.dumps(args) + "\\n")

class _Paginator:
    def paginate(self, **kwargs):
        _log("list", kwargs)
        return [{"Contents": [{"Key": "static/site.0123456789ab.css", "Size": 5}]}]

class _Client:
    def __init__(self, service):
        self.service = service
    def get_parameter(self, Name, WithDecryption):
        _log("get_parameter", Name, WithDecryption)
        return {"Parameter": {"Value": "A='1'\\nB='2'"}}
    def get_paginator(self, name):
        return _Paginator()
    def upload_file(self, path, bucket, key, ExtraArgs):
        _log("upload", bucket, key, ExtraArgs)
    def download_file(self, bucket, key, path):
        _log("download", bucket, key)
        with open(path, "w") as f:
            f.write("archive")

def client(service, region_name=None):
    _log("client", service, region_name)
    return _Client(service)
"""


def test_aws_helper_reads_parameters_and_uploads_static_files_once(tmp_path: Path) -> None:
    helper_text = next(text for path, text in scripts_of("ubuntu-archive", "python").items() if path.endswith("-aws"))
    helper = tmp_path / "photofeed-aws"
    helper.write_text(helper_text)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "boto3.py").write_text(FAKE_BOTO3)
    log = tmp_path / "boto.log"
    env = os.environ | {"PYTHONPATH": str(fake), "FAKE_BOTO_LOG": str(log)}

    result = run([sys.executable, str(helper), "get-parameter", "/djangoship/dev/photofeed/env:3"], env=env)
    assert result.returncode == 0 and result.stdout == "A='1'\nB='2'\n", result.stderr
    static = tmp_path / "static"
    (static / "admin").mkdir(parents=True)
    (static / "site.0123456789ab.css").write_text("body{}")  # 6 bytes: differs from the listed 5, uploaded
    (static / "logo.0123456789ab.svg").write_text("<svg/>")
    (static / "logo.0123456789ab.svg.gz").write_bytes(b"gz")  # the deploy's gzip_static copy: stays behind
    (static / "admin" / "base.css").write_text("a{}")
    (static / "archive.tar.gz").write_bytes(b"gz")  # an app's own .gz file (no sibling): uploaded
    result = run([sys.executable, str(helper), "sync-static", str(static), "photofeed-assets", "static"], env=env)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert ["get_parameter", "/djangoship/dev/photofeed/env:3", True] in calls
    assert ["client", "ssm", "us-east-1"] in calls
    uploads = {call[2]: call[3] for call in calls if call[0] == "upload"}
    assert sorted(uploads) == [
        "static/admin/base.css",
        "static/archive.tar.gz",
        "static/logo.0123456789ab.svg",
        "static/site.0123456789ab.css",
    ]
    assert uploads["static/logo.0123456789ab.svg"] == {
        "ContentType": "image/svg+xml",
        "CacheControl": "public, max-age=31536000, immutable",
    }
    assert uploads["static/admin/base.css"] == {"ContentType": "text/css", "CacheControl": "public, max-age=3600"}
    result = run(
        [sys.executable, str(helper), "fetch", "photofeed-artifacts", "releases/x.tar.gz", str(tmp_path / "x.tar.gz")],
        env=env,
    )
    assert result.returncode == 0 and (tmp_path / "x.tar.gz").read_text() == "archive", result.stderr
    assert not list(tmp_path.glob(".fetch-*"))
    assert run([sys.executable, str(helper), "bogus"], env=env).returncode != 0


def test_nginx_accepts_the_app_server_site(tmp_path: Path) -> None:
    nginx = need("nginx")
    if not Path("/etc/nginx/mime.types").exists():
        skip_or_fail("/etc/nginx/mime.types is missing (the distribution's nginx package provides it)")
    site = all_files("ubuntu-archive")["/etc/photofeed/nginx-site.conf"]
    (tmp_path / "site.conf").write_text(site)
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        f"    include /etc/nginx/mime.types;\n    access_log {tmp_path}/access.log;\n{temp_paths}"
        f"    include {tmp_path}/site.conf;\n}}\n"
    )
    result = run([nginx, "-t", "-c", str(tmp_path / "nginx.conf")])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "[warn]" not in output, output
    assert "listen 80 default_server;" in site and "server_name _;" in site, "answers the ALB's health checks by IP"


def test_app_servers_reuse_the_single_servers_templates() -> None:
    plan = scaled_plan(load_settings(SCALED, project="djangoship", stack="dev"))
    files = all_files("ubuntu-archive")
    # In the user-data without their comment lines: the document must stay within EC2's 16 KiB.
    for path, template in (
        ("/etc/systemd/system/gunicorn.service", "systemd/gunicorn.service.j2"),
        ("/etc/systemd/system/gunicorn.socket", "systemd/gunicorn.socket.j2"),
        ("/usr/local/sbin/photofeed-firstboot", "scripts/firstboot.sh.j2"),
    ):
        assert files[path] == without_comment_lines(render(template, plan)), path
    # In the server files' archive as they are, comments and all.
    for path, template in (
        ("/usr/local/lib/photofeed/manage", "scripts/manage.sh.j2"),
        ("/etc/photofeed/gunicorn.conf.py", "gunicorn/gunicorn.conf.py.j2"),
        ("/etc/systemd/system/photofeed-release-check@.service", "systemd/release-check.service.j2"),
    ):
        assert files[path] == render(template, plan), path
    assert files["/etc/photofeed/metadata-block.nft"] == without_comment_lines(
        render("nftables/metadata-block.nft.j2", plan)
    )
    # nftables.service's flush of the ruleset is followed by the block there too.
    assert files["/etc/systemd/system/nftables.service.d/photofeed-metadata-block.conf"] == without_comment_lines(
        render("systemd/nftables-metadata-block.conf.j2", plan)
    )
