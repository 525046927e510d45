"""app.files on the single server: how they follow the env file on the configure step's stdin. Pure, no Pulumi.

The configure step reads its stdin (after its script: server/rootstep.py) as

    <the env file, as today><APP_FILES_MARKER>\\n<the number of files>\\n
    <size in bytes> <path>\\n<the file's bytes>    (once per file)

With no app.files nothing follows the env file, so a stack without them sends what it always sent. The marker
can never be a line of the env file (configure refuses any line that is not KEY='value'); the count and the sizes
let the script tell a stdin cut short from one that is whole. Paths are checked at preview (config/checks.py
app_files: no blank, no newline) and again by the script.
"""

from __future__ import annotations

APP_FILES_MARKER = "# djangoship: app.files"


def configure_stdin(env_file: str, files: dict[str, str]) -> str:
    """What the configure script reads on its stdin: the env file, then each of `files` framed by its size.
    Called inside an Output.apply with the secrets: the text stays in memory and travels on stdin."""
    if not files:
        return env_file
    framed = "".join(f"{len(content.encode())} {path}\n{content}" for path, content in sorted(files.items()))
    return f"{env_file.rstrip(chr(10))}\n{APP_FILES_MARKER}\n{len(files)}\n{framed}"
