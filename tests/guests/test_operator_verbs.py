"""The operator's verbs (`python3 -m djangoship VERB`) run for real, over OpenSSH, against one guest deployed by the
program's own steps; the CLI reads the outputs the local try-out writes (`tools.localup --outputs`), as it reads
`pulumi stack output` for a real stack.

What runs on the server is built by pure functions; tests/fast/test_operator_cli.py checks those without a guest.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# Day 2's guest (a copy of the example app, backups to moto's S3): fixtures, used by name.
from day2_site import s3, site, workdir  # noqa: F401
from site_helpers import APP, create_row, live_release, sh

from harness.localsite import change_home_page, http_get, wait_for_200, write_outputs
from localboot.keys import generate_ed25519_keypair

pytestmark = pytest.mark.localboot
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def outputs(site, workdir):
    """The local try-out's outputs file for day 2's guest (backups to moto's S3), and a config home for the CLI
    (XDG_CONFIG_HOME: the trust-on-first-use known_hosts go there)."""
    base, *_ = workdir
    (base / "config").mkdir(mode=0o700)
    write_outputs(site, base / "local.json")
    return base / "local.json", base / "config"


class Verb:
    """`python3 -m djangoship --outputs-file FILE …` from the project folder, as the operator types it."""

    def __init__(self, outputs: Path, config_home: Path):
        self.outputs, self.env = outputs, {**os.environ, "XDG_CONFIG_HOME": str(config_home)}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "djangoship", "--outputs-file", str(self.outputs), *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited {result.returncode}:\n{result.stderr}{result.stdout}")
        return result


@pytest.fixture(scope="module")
def verb(outputs):
    return Verb(*outputs)


def test_outputs_file_holds_what_the_verbs_need_and_only_the_user_reads_it(site, outputs):
    path, _ = outputs
    written = json.loads(path.read_text())
    assert written["publicIp"] == site.guest.ip and written["sshUser"] == "admin" and written["appName"] == APP
    assert written["sshPrivateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert path.stat().st_mode & 0o777 == 0o600


def test_status_pins_the_stacks_host_key_and_reports_the_site(site, verb, outputs):
    _, config_home = outputs
    first = verb("status")
    assert "first use" not in first.stderr, first.stderr  # the program's `sshHostKey` is pinned
    assert not (config_home / "djangoship" / "known_hosts" / "local").exists()
    assert f"on admin@{site.guest.ip}" in first.stderr  # says what runs where
    report = first.stdout
    print(f"\n[operator] status:\n{report}")
    assert f"release:      {site.run.outputs['releaseId']}, live for" in report
    assert "maintenance:  off" in report
    for unit in ("nginx.service", "gunicorn.socket", "gunicorn.service", "pgbouncer.service"):
        assert any(line.split()[:2] == [unit, "active"] for line in report.splitlines()), unit
    assert "postgresql@" in report and f"{APP}-backup.timer" in report and "FAILED" not in report
    assert "kept:         none" in report and "Mounted on" in report and "Mem:" in report
    assert "certificate:  none (plain HTTP)" in report


def test_a_stack_without_a_host_key_output_is_trusted_on_first_use(site, outputs, workdir):
    """Stacks made before the program pinned the server's host key have no `sshHostKey` output."""
    base, *_ = workdir
    older, config_home = base / "older.json", base / "config-older"
    older.write_text(json.dumps({k: v for k, v in json.loads(outputs[0].read_text()).items() if k != "sshHostKey"}))
    first = Verb(older, config_home)("releases")
    assert "trusting" in first.stderr and "first use" in first.stderr, first.stderr
    known_hosts = config_home / "djangoship" / "known_hosts" / "older"  # the outputs file's name stands for the stack
    assert known_hosts.read_text().startswith(site.guest.ip + " ")
    second = Verb(older, config_home)("releases")
    assert "first use" not in second.stderr, "a known host is not announced again"


def test_a_pinned_host_key_is_used_and_a_wrong_one_refused(site, outputs, workdir):
    base, *_ = workdir
    outputs = json.loads(outputs[0].read_text())
    pinned, wrong = base / "pinned.json", base / "wrong.json"
    for path, keys in ((pinned, site.guest.host_keys()), (wrong, [generate_ed25519_keypair()[1].strip()])):
        path.write_text(json.dumps({**outputs, "sshHostKey": "\n".join(keys)}))
    fresh_config = base / "config-pinned"  # nothing trusted on first use here
    good = Verb(pinned, fresh_config)("releases")
    assert "first use" not in good.stderr and site.run.outputs["releaseId"] in good.stdout
    refused = Verb(wrong, fresh_config)("releases", check=False)
    assert refused.returncode == 255 and "failed (exit 255)" in refused.stderr, refused.stderr
    assert not (fresh_config / "djangoship" / "known_hosts").exists() or not any(
        (fresh_config / "djangoship" / "known_hosts").iterdir()
    )


def test_unreachable_host_and_missing_outputs_say_what_to_do(network, outputs, workdir):
    base, *_ = workdir
    outputs = json.loads(outputs[0].read_text())
    nowhere = base / "nowhere.json"
    nowhere.write_text(json.dumps({**outputs, "publicIp": network.allocate()}))  # an address no guest has
    result = Verb(nowhere, base / "config")("status", check=False)
    assert result.returncode == 255 and "may still be booting" in result.stderr, result.stderr
    empty = base / "empty.json"
    empty.write_text("{}")
    result = Verb(empty, base / "config")("status", check=False)
    assert result.returncode == 2 and "no outputs yet: run `pulumi up` first" in result.stderr, result.stderr


def test_ssh_runs_a_command_and_passes_its_exit_status(site, verb):
    assert verb("ssh", "hostname").stdout == sh(site, "hostname")
    assert verb("ssh", "exit 7", check=False).returncode == 7


def test_manage_runs_as_the_app_with_its_env_and_passes_failures_through(site, verb):
    title = f"managed-{uuid.uuid4().hex[:6]}"
    create_row(site, title)
    count = verb(
        "manage", "shell", "-c", f"from feed.models import Photo; print(Photo.objects.filter(title='{title}').count())"
    )
    assert count.stdout.splitlines()[-1] == "1"  # after Django 5.2's "N objects imported automatically"
    failed = verb("manage", "no_such_command", check=False)
    assert failed.returncode == 1 and "Unknown command" in failed.stderr, failed.stderr


def test_manage_shell_is_interactive_in_a_terminal(site, verb):
    """`manage shell` at a terminal: ssh gets a TTY, so Django's shell reads what is typed, line by line."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        verb.argv("manage", "shell"), cwd=ROOT, env=verb.env, stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    seen = b""

    def read_until(marker: bytes, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen[-2000:]
            if select.select([primary], [], [], 1)[0]:
                try:
                    seen += os.read(primary, 4096)
                except OSError:
                    break

    try:
        read_until(b">>> ", 60)
        os.write(primary, b"print(6 * 7, 'from the tty')\r")
        read_until(b"42 from the tty", 30)
        os.write(primary, b"exit()\r")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)


def test_logs_of_each_source(site, verb):
    marker = f"/logs-marker-{uuid.uuid4().hex[:8]}"
    http_get(site.url + marker)
    assert marker in verb("logs", "nginx").stdout
    assert "gunicorn" in verb("logs", "-n", "50").stdout.lower()  # web (gunicorn) is the default
    assert "database system is ready" in verb("logs", "postgres", "-n", "200").stdout
    verb("logs", "pgbouncer")
    assert verb("logs", "all", "-n", "5").stdout.strip()
    verb("logs", "ssh.service", "-n", "5")  # any systemd unit
    bad = verb("logs", "nginx; reboot", check=False)
    assert bad.returncode == 2 and "neither a log source" in bad.stderr


def test_logs_follow_shows_new_lines_until_interrupted(site, verb):
    process = subprocess.Popen(
        verb.argv("logs", "-f", "-n", "0", "nginx"), cwd=ROOT, env=verb.env, stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(2)  # tail -F has started on the server
        marker = f"/follow-marker-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + 30
        seen = ""
        assert process.stdout is not None
        while marker not in seen:
            http_get(site.url + marker)
            assert time.monotonic() < deadline, seen
            if select.select([process.stdout], [], [], 2)[0]:
                seen += process.stdout.readline()
        process.send_signal(signal.SIGINT)  # as `kill -INT`; at a terminal Ctrl-C reaches ssh directly
        assert process.wait(timeout=15) == 130
    finally:
        if process.poll() is None:
            process.kill()


def test_backup_download_and_restore(site, verb, workdir):
    base, *_ = workdir
    title = f"backed-up-{uuid.uuid4().hex[:6]}"
    create_row(site, title)
    made = verb("backup")
    assert "wrote db-" in made.stdout, made.stdout + made.stderr
    stamp = made.stdout.split("wrote db-")[1].split(".dump")[0]
    assert f"last backup:  db-{stamp}.dump, 0 min ago" in verb("status").stdout

    target = base / "downloads"
    verb("download-backup", "--to", str(target))
    dump = target / f"db-{stamp}.dump"
    assert dump.read_bytes().startswith(b"PGDMP"), "pg_dump's custom format"
    assert (target / f"media-{stamp}.tar.gz").exists()
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in target.iterdir())
    assert dump.stat().st_size == int(sh(site, f"stat -c %s /data/backups/db-{stamp}.dump"))
    # Gone from the server, the backup is fetched from the bucket first.
    sh(site, "rm -f /data/backups/*")
    from_s3 = base / "from-s3"
    verb("download-backup", stamp, "--to", str(from_s3))
    assert (from_s3 / f"db-{stamp}.dump").read_bytes() == dump.read_bytes()
    missing = verb("download-backup", "20000101T000000Z", "--to", str(target), check=False)
    assert missing.returncode != 0 and "20000101T000000Z" in missing.stderr, missing.stderr

    sh(site, f"{APP}-manage shell -c \"from feed.models import Photo; Photo.objects.filter(title='{title}').delete()\"")
    assert title.encode() not in http_get(site.url + "/")[2]
    refused = verb("restore", stamp, check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr, "no terminal, no --yes: nothing is restored"
    verb("restore", stamp, "--yes")
    wait_for_200(site.url + "/healthz", timeout=30)
    assert title.encode() in http_get(site.url + "/")[2]


def test_maintenance_page_survives_a_deploy_which_still_checks_health(site, verb, workdir):
    _, app, _ = workdir
    before = live_release(site)
    assert verb("maintenance", "on").stdout.strip() == "on"
    status, headers, page = http_get(site.url + "/")
    assert status == 503 and headers["Retry-After"] == "300" and b"Down for maintenance" in page
    assert http_get(site.url + "/healthz")[0] == 503, "outside monitors see the maintenance too"
    assert http_get(site.url + "/static/feed/site.css")[0] == 200, "static files stay served"
    # The app and database keep running: the server itself (loopback) still reaches them.
    on_the_box = f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {site.guest.ip}' http://127.0.0.1/healthz"
    assert sh(site, on_the_box) == "200"
    assert "maintenance:  ON" in verb("status").stdout

    # A `pulumi up` meanwhile: the deploy's activation checks health through the socket and through nginx (from
    # loopback), so the new release goes live; visitors still get the maintenance page.
    change_home_page(app, "during-maintenance")
    steps = site.up()
    assert [step.name for step in steps if step.ran] == [
        f"{APP}-configure",
        f"{APP}-upload",
        f"{APP}-build",
        f"{APP}-deploy",
    ]
    assert live_release(site) != before
    assert http_get(site.url + "/")[0] == 503
    # …and one that re-runs the configure step, which re-renders and reloads the nginx site: still on.
    config = {**site.config, "app": {**site.config["app"], "env": {"DJANGO_CONN_MAX_AGE": "60"}}}
    assert [step.name for step in site.up(config) if step.ran] == [f"{APP}-configure"]
    assert http_get(site.url + "/")[0] == 503
    assert verb("maintenance").stdout.strip() == "on"

    assert verb("maintenance", "off").stdout.strip() == "off"
    status, _, page = http_get(site.url + "/")
    assert status == 200 and b"release:during-maintenance" in page


def test_releases_and_rollback(site, verb):
    listed = verb("releases").stdout.splitlines()
    live = live_release(site)
    assert listed[0].startswith(f"* {live}") and len(listed) == 2, listed
    earlier = listed[1].split()[0]
    verb("rollback")
    assert live_release(site) == earlier and b"release:during-maintenance" not in http_get(site.url + "/")[2]
    verb("rollback", live)
    assert live_release(site) == live
    unknown = verb("rollback", "0123456789ab", check=False)
    assert unknown.returncode == 1 and "is not built on this server" in unknown.stderr
    assert "exit 1" in unknown.stderr
    assert verb("rollback", "not-a-release", check=False).returncode == 2
