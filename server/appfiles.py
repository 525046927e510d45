"""app.files on the single server: how they follow the env file on the configure step's stdin. Pure, no Pulumi.

The configure step reads its stdin (after its script: server/rootstep.py) as

    <the env file><APP_FILES_MARKER>\\n<the number of files>\\n
    <size in bytes> <path>\\n<the file's bytes>    (once per file)

The marker can never be a line of the env file (configure refuses any line that is not KEY='value'). It and the
count are there with no app.files too, so that the script tells a stdin cut short (no marker, fewer files, a file
shorter than its size) from one that is whole, and refuses it before it changes anything. Paths are checked at
preview (config/checks.py app_files: no blank, no newline) and again by the script.
"""

from __future__ import annotations

APP_FILES_MARKER = "# djangoship: app.files"


def configure_stdin(env_file: str, files: dict[str, str]) -> str:
    """What the configure script reads on its stdin: the env file, then each of `files` framed by its size.
    Called inside an Output.apply with the secrets: the text stays in memory and travels on stdin."""
    framed = "".join(f"{len(content.encode())} {path}\n{content}" for path, content in sorted(files.items()))
    return f"{env_file.rstrip(chr(10))}\n{APP_FILES_MARKER}\n{len(files)}\n{framed}"


def read_configure_stdin(stdin: str) -> tuple[str, dict[str, str]]:
    """The env file and the files from what `configure_stdin` made (tests, the render check)."""
    env_file, marker, rest = stdin.partition(f"\n{APP_FILES_MARKER}\n")
    if not marker:
        raise ValueError("not a configure step's stdin: no app.files marker")
    count, _, data = rest.partition("\n")
    files, raw = {}, data.encode()
    for _ in range(int(count)):
        header, _, raw = raw.partition(b"\n")
        size, _, path = header.decode().partition(" ")
        files[path], raw = raw[: int(size)].decode(), raw[int(size) :]
    if raw:
        raise ValueError("a configure step's stdin with more than its files")
    return env_file + "\n", files
