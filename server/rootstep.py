"""How a remote step's script reaches root on the server: its command line and its stdin (pulumi-command's
`create` and `stdin`).

The script travels on stdin, not in the command line. sshd runs a command as one argument of the login shell
(`bash -c COMMAND`), and Linux refuses any single argument over 128 KiB (MAX_ARG_STRLEN) with "Argument list
too long" before anything runs: a configure step that writes a site's files is that big with a few app
processes. So the command line is a fixed reader, the same size for any script; stdin is

    <the script's size in bytes>\\n<the script><what the script itself reads on stdin: a secret, or nothing>

The reader takes exactly the script's bytes (the rest stays on stdin for the script), checks them against the
digest its command line names, and only then runs them, in the same shell as `bash -c` would (`eval`; $0 is the
step's label, which names it in `ps`, in apt's lock and in errors). A script cut short (a dropped connection)
runs not one line of itself. Nothing is written to the server's disk.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

# The reader, run by `sudo -n bash -c READER LABEL`. dd's fullblock reads never ask for more than is left, so
# what follows the script stays on stdin; $(…) drops the script's trailing newlines, and the digest is of the
# text without them.
READER = (
    "IFS= read -r step_size"
    ' && step_text=$(dd bs="$step_size" count=1 iflag=fullblock status=none)'
    ' && [ "$(printf %s "$step_text" | sha256sum)" = "{digest}  -" ]'
    ' || {{ echo "$0: its script did not arrive whole on stdin" >&2; exit 1; }}'
    '\neval "$step_text"'
)


def _digest(script: str) -> str:
    return hashlib.sha256(script.rstrip("\n").encode()).hexdigest()


def root_command(script: str, label: str) -> str:
    """The command line of the step that runs `script` as root: no secret, and a few hundred bytes whatever
    the script's size (the script is on stdin: `root_stdin`). `label` becomes the script's $0."""
    return f"sudo -n bash -c {shlex.quote(READER.format(digest=_digest(script)))} {shlex.quote(label)}"


def root_stdin(script: str, rest: str = "") -> str:
    """The step's stdin: the script framed by its size, then `rest`, which the script reads as its own stdin."""
    return f"{len(script.encode())}\n{script}{rest}"


@dataclass(frozen=True)
class SentStep:
    """A step as the server receives it, read back from its command line and stdin (tests, the render check)."""

    label: str
    script: str
    rest: str  # what the script reads on its stdin


def read_sent_step(command: str, stdin: str) -> SentStep:
    argv = shlex.split(command)
    if argv[:4] != ["sudo", "-n", "bash", "-c"] or len(argv) != 6:
        raise ValueError(f"not a root step's command line: {command[:200]!r}")
    size_line, _, framed = stdin.partition("\n")
    data = framed.encode()
    size = int(size_line)
    script, rest = data[:size].decode(), data[size:].decode()
    if argv[4] != READER.format(digest=_digest(script)):
        raise ValueError(f"{argv[5]}: the command line's digest is not its script's")
    return SentStep(argv[5], script, rest)
