"""The operator's verbs without a server: what each runs on the server (shellchecked), the ssh command line, the
key's handling, reading the stack's outputs, and the `--help` of each verb. tests/guests/test_operator_verbs.py runs
every verb for real on a guest."""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rendered.helpers import check_shell, plan_for, site_for

from djangoship import remote, report
from djangoship.cli import main, parser
from djangoship.remote import Layout
from djangoship.ssh import HostTrust, Session, ssh_command
from djangoship.stack import Stack, StackError, from_outputs, read_pulumi_stack
from djangoship.verbs import VERBS
from harness.mockrun import run_program

ROOT = Path(__file__).resolve().parent.parent.parent
LAYOUT = Layout("photofeed")
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-bits\n-----END OPENSSH PRIVATE KEY-----\n"
OUTPUTS = {
    "url": "http://203.0.113.10",
    "publicIp": "203.0.113.10",
    "sshUser": "admin",
    "appName": "photofeed",
    "sshPrivateKey": KEY,
    "sshCommand": "ssh -i photofeed-key.pem admin@203.0.113.10",
}


def test_the_program_exports_what_the_verbs_read():
    run = run_program({})
    stack = from_outputs("dev", run.outputs)
    assert (stack.host, stack.user, stack.app) == ("203.0.113.10", "admin", "photofeed")
    assert stack.private_key == run.outputs["sshPrivateKey"]
    assert stack.host_key == run.outputs["sshHostKey"] and stack.host_key.startswith("ssh-ed25519 ")


def test_the_repair_status_names_replaces_the_program_s_own_deploy_step():
    """`status` names, for damage made by hand, `pulumi up --replace` of the deploy step: the URN must be the one the
    program declares (an unchanged `pulumi up` runs nothing; this runs the deploy alone again)."""
    run = run_program({})
    deploy = next(step for step in run.steps() if step.name == "photofeed-deploy")
    assert shlex.split(remote.redeploy(LAYOUT, "dev")) == ["pulumi", "up", "--stack", "dev", "--replace", deploy.urn]
    assert shlex.split(remote.redeploy(LAYOUT, "acme/djangoship/dev"))[-1] == deploy.urn
    assert shlex.split(report.status(LAYOUT, "dev"))[-1] == remote.redeploy(LAYOUT, "dev")


def test_the_layout_is_the_servers():
    plan = plan_for("debian-13-t2.micro")
    paths = Layout(plan.app.name).paths
    assert (paths.base_dir, paths.releases_dir, paths.current_dir, paths.backup_dir, paths.data_dir) == (
        plan.paths.base_dir,
        plan.paths.releases_dir,
        plan.paths.current_dir,
        plan.paths.backup_dir,
        plan.paths.data_dir,
    )
    assert paths.maintenance_flag == plan.paths.maintenance_flag
    assert paths == plan.paths


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_nginx_checks_the_flag_the_maintenance_verb_sets(https):
    site = site_for("debian-13-t2.micro", https)
    assert f"if (-f {LAYOUT.paths.maintenance_flag})" in site
    assert "add_header Retry-After 300 always;" in site and "return 503" in site


# --- what runs on the server ------------------------------------------------------------------------------


def scripts_sent() -> dict[str, str]:
    return {
        "status": report.status(LAYOUT),
        "releases": report.releases(LAYOUT),
        "download-backup": report.find_backup(LAYOUT, None),
        "maintenance": remote.maintenance(LAYOUT, "on"),
    }


@pytest.mark.parametrize("name", scripts_sent())
def test_the_scripts_are_clean_bash_run_as_root(name, tmp_path):
    argv = shlex.split(scripts_sent()[name])
    assert argv[:4] == ["sudo", "-n", "bash", "-c"] and argv[5] == name
    check_shell("#!/bin/bash\n" + argv[4], tmp_path)


def test_status_warns_at_the_fill_level_the_server_warns_at():
    from server.host import HostPlan

    assert HostPlan.__dataclass_fields__["volume_warn_percent"].default == report.VOLUME_WARN_PERCENT
    script = shlex.split(report.status(LAYOUT))[4]
    assert f"-ge {report.VOLUME_WARN_PERCENT} ]; then\n    printf '  WARNING: %s is %s %% full" in script


def test_commands_call_the_servers_own():
    assert (
        remote.manage(LAYOUT, ["shell", "-c", "print('a b')"])
        == "sudo -n photofeed-manage shell -c 'print('\"'\"'a b'\"'\"')'"
    )
    assert remote.rollback(LAYOUT, None) == "sudo -n photofeed-activate --previous"
    assert remote.rollback(LAYOUT, "0123456789ab") == "sudo -n photofeed-activate 0123456789ab"
    assert remote.backup(LAYOUT) == "sudo -n photofeed-backup"
    assert remote.restore(LAYOUT, None) == "sudo -n photofeed-restore"
    assert remote.restore(LAYOUT, "20261128T033000Z") == "sudo -n photofeed-restore 20261128T033000Z"
    assert shlex.split(report.find_backup(LAYOUT, "20261128T033000Z"))[-1] == "20261128T033000Z"


@pytest.mark.parametrize(
    "bad", [lambda: remote.rollback(LAYOUT, "HEAD; rm -rf /"), lambda: remote.restore(LAYOUT, "latest")]
)
def test_bad_ids_are_refused_before_anything_runs(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize("stamp", ["../../x", "--help", "20261128T033000Z/../../x", "20261128T033000Z\n", "latest"])
def test_a_stamp_that_is_not_one_reaches_no_root_script(stamp, tmp_path, monkeypatch, capsys):
    """`restore` and `download-backup` check a stamp in one place (issue 29, item 6); the script that receives one
    checks it again before it reads or fetches anything."""
    for command in (remote.restore, report.find_backup):
        with pytest.raises(ValueError, match="is not a backup stamp"):
            command(LAYOUT, stamp)
    script = shlex.split(report.find_backup(LAYOUT, None))[4]
    received = subprocess.run(["bash", "-c", script, "download-backup", stamp], capture_output=True, text=True)
    assert received.returncode == 2 and "is not a backup stamp" in received.stderr, received
    # From the command line: refused before ssh runs.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr("djangoship.ssh.subprocess.run", lambda *a, **k: pytest.fail("ssh ran"))
    monkeypatch.setattr("djangoship.ssh.subprocess.Popen", lambda *a, **k: pytest.fail("ssh ran"))
    outputs = tmp_path / "dev.json"
    outputs.write_text(json.dumps(OUTPUTS))
    assert main(["--outputs-file", str(outputs), "download-backup", "--", stamp]) == 2
    assert "is not a backup stamp" in capsys.readouterr().err


class _Downloads:
    """A session that serves a backup's files as the server's `find_backup` and `cat` would."""

    def __init__(self, files: dict[str, bytes]):
        self.stack = from_outputs("dev", OUTPUTS)
        self.files = files

    def capture(self, command: str) -> subprocess.CompletedProcess[str]:
        listing = "".join(f"{name} {len(data)}\n" for name, data in self.files.items())
        return subprocess.CompletedProcess(command, 0, stdout=listing)

    def run(self, command: str, *, tty: bool = False, stdout=None) -> int:
        stdout.write(self.files[shlex.split(command)[-1].rsplit("/", 1)[-1]])
        return 0


def test_a_download_writes_into_no_file_planted_in_its_folder(tmp_path):
    """`--to` a folder others can write to (issue 29, item 7): a file planted at the partial file's name (one
    everyone may read) or a link there to elsewhere is neither written into nor kept: each backup file is a new
    file of this user's, 0600."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o1777)
    files = {"db-20261128T033000Z.dump": b"every row", "media-20261128T033000Z.tar.gz": b"every upload"}
    planted = folder / ".db-20261128T033000Z.dump.partial"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    (folder / ".media-20261128T033000Z.tar.gz.partial").symlink_to(elsewhere)
    args = parser().parse_args(["download-backup", "--to", str(folder)])
    assert VERBS["download-backup"](args, from_outputs("dev", OUTPUTS), _Downloads(files)) == 0  # type: ignore[arg-type]
    for name, data in files.items():
        target = folder / name
        assert target.read_bytes() == data and not target.is_symlink()
        assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.stat().st_uid == os.getuid()
    assert planted.read_bytes() == b"" and stat.S_IMODE(planted.stat().st_mode) == 0o666
    assert elsewhere.read_bytes() == b""
    # Nothing of the download's own is left beside them.
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [*files, planted.name, ".media-20261128T033000Z.tar.gz.partial"]
    )


def test_logs_sources():
    assert remote.logs("web", follow=False, lines=100) == (
        "sudo -n journalctl --no-pager -n 100 -u gunicorn.service -u gunicorn.socket"
    )
    assert remote.logs("all", follow=True, lines=5) == "sudo -n journalctl --no-pager -n 5 -f"
    assert remote.logs("photofeed-backup", follow=False, lines=1).endswith("-u photofeed-backup")
    assert shlex.split(remote.logs("nginx", follow=True, lines=10))[-1] == (
        "tail -n 10 -F /var/log/nginx/access.log /var/log/nginx/error.log"
    )
    with pytest.raises(ValueError, match="neither a log source"):
        remote.logs("x; reboot", follow=False, lines=1)


# --- ssh and the key --------------------------------------------------------------------------------------


def test_ssh_command_pins_or_trusts_and_never_carries_the_key(tmp_path):
    stack = from_outputs("dev", OUTPUTS)
    pinned = ssh_command(stack, tmp_path / "id", HostTrust(tmp_path / "kh", "yes", True), "uptime", tty=False)
    assert pinned[:2] == ["ssh", "-T"] and pinned[-2:] == ["admin@203.0.113.10", "uptime"]
    assert "StrictHostKeyChecking=yes" in pinned and "BatchMode=yes" in pinned and "IdentitiesOnly=yes" in pinned
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in pinned and "GlobalKnownHostsFile=/dev/null" in pinned
    shell = ssh_command(stack, None, HostTrust(tmp_path / "kh", "accept-new", False), None, tty=True)
    assert shell[:2] == ["ssh", "-t"] and shell[-1] == "admin@203.0.113.10" and "-i" not in shell
    assert "StrictHostKeyChecking=accept-new" in shell
    assert not any("secret-bits" in part for part in pinned + shell)


def test_the_key_is_private_to_the_user_and_gone_afterwards(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    stack = from_outputs("dev", OUTPUTS)
    with Session(stack) as session:
        assert session.key_file is not None and session.trust is not None
        key, folder = session.key_file, session.key_file.parent
        assert key.read_text() == KEY
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert session.trust.known_hosts == tmp_path / "djangoship" / "known_hosts" / "dev"
        assert not session.trust.pinned
    assert not folder.exists()
    assert "trusting 203.0.113.10's host key on first use" in capsys.readouterr().err


def test_a_host_key_output_is_pinned(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    stack = from_outputs("dev", {**OUTPUTS, "sshHostKey": "ssh-ed25519 AAAAC3Nza\necdsa-sha2-nistp256 AAAAE2V\n"})
    with Session(stack) as session:
        assert session.trust is not None and session.trust.pinned and session.trust.strict == "yes"
        assert session.trust.known_hosts.read_text() == (
            "203.0.113.10 ssh-ed25519 AAAAC3Nza\n203.0.113.10 ecdsa-sha2-nistp256 AAAAE2V\n"
        )
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "djangoship").exists()


def test_an_interrupt_ends_ssh_even_when_it_started_with_sigint_ignored(tmp_path, monkeypatch):
    """`kill -INT` on the verb ends its ssh and the verb says 130, also where ssh inherited SIGINT ignored (started
    in the background by a non-interactive shell, which ignores it for its background jobs): ssh then never
    reacts to SIGINT, so the verb must not rely on it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    # A stand-in for ssh that, like ssh started with SIGINT ignored, leaves SIGINT alone; bounded (60 s).
    stand_in = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)",
    ]
    monkeypatch.setattr(Session, "command", lambda self, remote, tty: stand_in)
    with Session(from_outputs("dev", OUTPUTS)) as session:
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        assert session.run("tail -F /var/log/nginx/access.log") == 130
    assert time.monotonic() - started < 30


# --- the stack's outputs ----------------------------------------------------------------------------------


def test_no_outputs_yet_says_run_pulumi_up():
    with pytest.raises(StackError, match=r"no outputs yet: run `pulumi up` first"):
        from_outputs("dev", {})


def test_an_older_stack_without_ssh_user_reads_it_from_ssh_command():
    older = {key: value for key, value in OUTPUTS.items() if key != "sshUser"}
    assert from_outputs("dev", older).user == "admin"


def fake_pulumi(tmp_path: Path, outputs: dict, monkeypatch) -> Path:
    """A `pulumi` on PATH that records its arguments and prints `outputs` as `stack output --json` does."""
    calls = tmp_path / "calls"
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'[ "$1 $2" = "stack --show-name" ] && {{ echo picked; exit 0; }}\n'
        f"cat <<'JSON'\n{json.dumps(outputs)}\nJSON\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_outputs_come_from_the_chosen_or_current_stack(tmp_path, monkeypatch):
    calls = fake_pulumi(tmp_path, OUTPUTS, monkeypatch)
    assert read_pulumi_stack("prod") == Stack("prod", "203.0.113.10", "admin", "photofeed", OUTPUTS["url"], KEY, None)
    assert read_pulumi_stack(None).name == "picked"
    assert calls.read_text().splitlines() == [
        "stack output --json --show-secrets --stack prod",
        "stack output --json --show-secrets",
        "stack --show-name",
    ]


def test_a_stack_without_outputs_is_a_clear_error_and_exit_2(tmp_path, monkeypatch, capsys):
    fake_pulumi(tmp_path, {}, monkeypatch)
    assert main(["status"]) == 2
    assert "stack 'picked' has no outputs yet: run `pulumi up` first" in capsys.readouterr().err


# --- the command line -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, *VERBS])
def test_every_verb_has_help(name):
    result = subprocess.run(
        [sys.executable, "-m", "djangoship", *([name] if name else []), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: python3 -m djangoship"), result.stderr


def test_the_parser_knows_every_verb_the_operations_doc_lists():
    readme = (ROOT / "docs" / "operations.md").read_text()
    choices = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    # `move` is the one verb with two stacks (djangoship/move.py): not a verb of one stack's transport.
    assert set(choices) == set(VERBS) | {"move"}
    for name in VERBS:
        assert f"`python3 -m djangoship {name}" in readme, f"docs/operations.md's day-to-day table lacks {name}"
    assert "`python3 -m djangoship --stack SINGLE move --to SCALED" in readme


def test_restore_without_a_terminal_needs_yes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    outputs = tmp_path / "dev.json"
    outputs.write_text(json.dumps(OUTPUTS))
    with open(os.devnull) as no_terminal:
        monkeypatch.setattr(sys, "stdin", no_terminal)
        assert main(["--outputs-file", str(outputs), "restore"]) == 2
    assert "pass --yes" in capsys.readouterr().err
