"""A transport's command (ssh, or the AWS CLI's session) run with the terminal attached, ended cleanly by an
interrupt: shared by ssh.py and aws.py."""

from __future__ import annotations

import signal
import subprocess
from typing import IO

INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def run_attached(command: list[str], *, stdout: IO[bytes] | None = None, env: dict[str, str] | None = None) -> int:
    """Run `command` (stdout to a file if given) and return its exit status, or INTERRUPTED. An interrupt ends the
    command, not this process, which then cleans up: at a terminal Ctrl-C reaches the command itself (or, with a
    TTY, the remote one); a SIGINT sent to this process alone (`kill -INT`) ends it too."""
    process = subprocess.Popen(command, stdout=stdout, env=env)
    interrupted = False

    def interrupt(*_: object) -> None:
        nonlocal interrupted
        interrupted = True
        # SIGTERM, not SIGINT: ssh leaves SIGINT alone when it started with it ignored (anything started in the
        # background by a non-interactive shell, e.g. `djangoship logs -f &` in a script), and would never end.
        process.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        status = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return INTERRUPTED if interrupted else status
