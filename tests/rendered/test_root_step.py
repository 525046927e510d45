"""How a remote step's script reaches root (server/rootstep.py), run by the real bash the server runs it with:
a script of any size arrives whole, with its secret after it on stdin, or not one line of it runs.

The command line is run as sudo would run it (`bash -c READER LABEL`, its argv after `sudo -n`); the guests
(tests/guests/test_local_boot.py, test_foreign_workers.py with a configure script over 128 KiB) run it through sudo
and sshd."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from harness.mockrun import MockState, run_program
from rendered.helpers import need
from server.rootstep import read_sent_step, root_command, root_stdin

ARG_MAX_STRLEN = 128 * 1024  # Linux's MAX_ARG_STRLEN: the most one argument (sshd's `bash -c COMMAND`) may hold


def run_as_sudo_would(command: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    argv = shlex.split(command)
    assert argv[:2] == ["sudo", "-n"], argv[:2]
    return subprocess.run([need("bash"), *argv[3:]], input=stdin, capture_output=True, timeout=60, check=False)


def big_script(marker: Path) -> str:
    """Over 128 KiB (as a configure step with a few processes is), with multibyte text and trailing newlines."""
    padding = "".join(f"# line {n}: files, units, comments — ünïcödé → {'·' * 40}\n" for n in range(3000))
    return (
        f"set -euo pipefail\ntouch {shlex.quote(str(marker))}\n{padding}"
        'echo "run as: $0"\nsecret=$(cat)\necho "its stdin: [$secret]"\nexit 7\n\n\n'
    )


def test_a_script_over_the_argument_limit_runs_whole_with_its_secret_after_it(tmp_path):
    marker = tmp_path / "ran"
    script = big_script(marker)
    assert len(script.encode()) > ARG_MAX_STRLEN, "the script must be one that `bash -c SCRIPT` is refused"
    command = root_command(script, "configure-host")
    assert len(command.encode()) < 1024 and "ünïcödé" not in command
    result = run_as_sudo_would(command, root_stdin(script, "line one\nline two\n").encode())
    assert result.returncode == 7, result.stderr  # the script's own exit status
    assert result.stdout.decode() == "run as: configure-host\nits stdin: [line one\nline two]\n", result.stderr
    assert marker.exists()


@pytest.mark.parametrize("cut", [0, 1, 5000, -1])
def test_a_script_cut_short_runs_not_one_line(tmp_path, cut):
    """A dropped connection mid-stdin: the reader refuses, naming the step, and the script's first line (which
    would have run under `bash -s`) never does."""
    marker = tmp_path / "ran"
    script = big_script(marker)
    stdin = root_stdin(script).encode()
    result = run_as_sudo_would(root_command(script, "deploy-abc"), stdin[:cut] if cut >= 0 else stdin[:-40])
    assert result.returncode == 1
    assert result.stderr.decode() == "deploy-abc: its script did not arrive whole on stdin\n"
    assert not marker.exists()


def test_a_script_that_is_not_the_one_named_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    script = big_script(marker)
    other = script.replace("exit 7", "exit 0")
    result = run_as_sudo_would(root_command(script, "boot"), root_stdin(other).encode())
    assert result.returncode == 1 and b"did not arrive whole" in result.stderr and not marker.exists()
    with pytest.raises(ValueError, match="digest"):
        read_sent_step(root_command(script, "boot"), root_stdin(other))


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "redis": True,
            "app": {
                "processes": {f"worker{n}": f"celery -A photofeed worker -Q queue{n}" for n in range(12)},
            },
        },
    ],
    ids=["default", "twelve-processes"],
)
def test_every_command_line_is_small_and_its_script_is_read_back_whole(config):
    """What each step sends, whatever the config: a command line far below the limit; the script (however large
    a dozen processes make it) and its secret read back from stdin as sent."""
    run = run_program(config, state=MockState())
    commands = run.of_type("command:remote:Command")
    assert len(commands) == 6
    for step in commands:
        assert len(step.inputs["create"].encode()) < 1024, step.name
        sent = step.sent
        assert sent.script in step.inputs["triggers"], f"{step.name}: preview --diff shows its script"
        assert sent.script.startswith("#!/bin/bash\n"), step.name
    if config:
        configure = run.named("photofeed-configure").sent.script
        assert len(configure.encode()) > ARG_MAX_STRLEN, "not a config whose configure script needs stdin"
