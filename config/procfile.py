"""What an app's `Procfile` (Heroku's, Dokku's, Render's) says about how it runs, read as defaults under the keys.

A Procfile has one `name: command` line per process type. Three kinds of line mean something here:
- `web:` — the server and the module it serves (`gunicorn proj.wsgi`, `uvicorn proj.asgi:application`, …) and the
  server's options. The deploy always serves with its own gunicorn behind nginx: the module becomes the default of
  `app.wsgiModule` (or `app.asgiModule` for an ASGI server or worker), `--workers` of `gunicornWorkers`, and the
  tuning options of `app.serverOptions`; the options that say where to listen and log are the deployer's own
  (a socket behind nginx, the journal) and are left out, said so.
- `release:` — the command run before a release goes live: a `manage.py` command becomes `app.releaseCommands`;
  one the deploy runs itself anyway (`migrate`, `collectstatic`, `check`) is not run twice.
- any other line — a long-running process, the default of `app.processes.<name>`.
A monorepo on Heroku keeps its Procfile at the repository's top and points into the project's folder
(`gunicorn --chdir backend proj.wsgi`, `python backend/manage.py migrate`, `celery --workdir backend …`): read
with that folder (`app.directory`), those say only what the deploy does anyway (it runs everything from the
project's folder) and are taken as such; a web line serving from any other folder is refused, naming it.
The lines are commands for a shell (Heroku runs them with `bash -c`), but the deploy runs each as one program with
its arguments (systemd's ExecStart, the manage wrapper): what only a shell does (`&&`, pipes, redirections, `cd`,
`$VAR` other than `$PORT`, `VAR=value` before the program) is refused, naming the line, not half-run.

Reading is pure (the file's text in, a `Procfile` out); which key a line is the default of, and what the preview
says about it, is config/checks.py's (`procfile_defaults`). Standard library only: the server may run it too.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FILE = "Procfile"
# What the deploy runs for every release itself (python/prepare-release.py.j2, the migrate step).
OWN_STEPS = {"migrate": "the migrate step", "collectstatic": "the static files step", "check": "the check step"}
# gunicorn settings a web line (or app.serverOptions) may set, with the values allowed: (low, high) for a number,
# None for true/false. Bounded by what surrounds gunicorn: nginx waits 60 s for an answer (proxy_read_timeout), and
# systemd gives gunicorn 30 s to stop (TimeoutStopSec) before it kills the workers.
SERVER_OPTIONS: dict[str, tuple[int, int] | None] = {
    "timeout": (1, 60),
    "graceful_timeout": (1, 25),
    "keepalive": (1, 60),
    "threads": (1, 32),
    "max_requests": (0, 1_000_000),
    "max_requests_jitter": (0, 1_000_000),
    "preload_app": None,
}
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_LINE = re.compile(r"^([^:\s]+)\s*:\s*(.*)$")
_PORT = re.compile(r"\$PORT\b|\$\{PORT\}|\$\{PORT:-\d+\}")
_OPERATORS = set("();<>|&")
_SHELL_BUILTINS = {"cd", "export", "exec", "source", ".", "eval", "set", "sh", "bash", "env", "sudo", "nohup"}
_ASGI_WORKERS = {"uvicorn.workers.UvicornWorker", "uvicorn_worker.UvicornWorker"}
_SYNC_WORKERS = {"sync", "gthread"}


class ProcfileError(ValueError):
    """A line the deploy cannot run as written: the message names the line and says what to set instead."""


@dataclass(frozen=True)
class Line:
    number: int
    name: str
    text: str  # the command as written

    def where(self) -> str:
        return f"the Procfile's line {self.number} `{self.name}: {self.text}`"


@dataclass(frozen=True)
class Web:
    line: Line
    server: str  # the program the line runs: gunicorn, uvicorn, daphne, waitress-serve
    module: str = ""  # the module whose `application` it serves
    asgi: bool = False
    workers: int = 0  # 0 = not said
    options: dict[str, str] = field(default_factory=dict)  # SERVER_OPTIONS → value as gunicorn's config file has it
    left_out: tuple[str, ...] = ()  # options the deployer's own setup replaces (where to listen, where to log)
    folder: str = ""  # the folder it serves from (--chdir, --app-dir), relative to the Procfile's ("" = that one)


@dataclass(frozen=True)
class Procfile:
    web: Web | None = None
    web_unread: str = ""  # why a web line names no module the deploy can take (a development server, a wrapper)
    release: tuple[Line, str] | None = None  # the line, and its manage.py command ("" = one the deploy runs itself)
    processes: tuple[tuple[Line, str, str], ...] = ()  # (line, unit name, command as app.processes writes it)
    # Lines the deploy cannot run as written: (line, unit name for a process line, why). A refusal counts only
    # where the line is used: a key set in the stack's config takes its place (config/checks.py).
    refused: tuple[tuple[Line, str, str], ...] = ()

    def refusal(self, name: str) -> str:
        """Why the line `name` (web, release, or a process's unit name) cannot be run; "" when it can."""
        return next((why for line, unit, why in self.refused if name in (line.name, unit)), "")


def read(folder: Path, project: str = "") -> Procfile | None:
    """The folder's Procfile, or None when it has none; `project`: the project's folder inside it ("" = itself)."""
    path = folder / FILE
    if not path.is_file() or not path.resolve().is_relative_to(folder.resolve()):
        return None
    return parse(path.read_text(encoding="utf-8", errors="replace"), project)


def _folder(text: str) -> str:
    """A folder as a line may write it (`./backend/`), as app.directory does (`backend`)."""
    return "/".join(part for part in text.split("/") if part not in ("", "."))


def parse(text: str, project: str = "") -> Procfile:
    """Every line read. A line that is not `name: command` (or a name twice) raises ProcfileError: the file itself
    is broken. A line that cannot be run as written is kept with the reason (`refused`). `project`: the folder of
    the project (manage.py) inside the Procfile's, where the deploy runs every line ("" = the Procfile's own)."""
    project = _folder(project)
    web: Web | None = None
    web_unread = ""
    release: tuple[Line, str] | None = None
    processes: list[tuple[Line, str, str]] = []
    refused: list[tuple[Line, str, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        if not match or not _NAME.fullmatch(match.group(1)) or not match.group(2).strip():
            raise ProcfileError(f"the Procfile's line {number} `{stripped}` is not `name: command`")
        line = Line(number, match.group(1), match.group(2).strip())
        if line.name in seen:
            raise ProcfileError(f"{line.where()}: a second `{line.name}:` line (Heroku would run only one of them)")
        seen.add(line.name)
        try:
            words = _in_project(_words(line), project)
            if line.name == "web":
                web, web_unread = _web(line, words)
                if web is not None and web.folder != project:
                    raise ProcfileError(
                        f"{line.where()}: it serves from {_named(web.folder)}, and the project (manage.py) is "
                        f"{_named(project)} (app.directory); {_instead(line)}"
                    )
            elif line.name == "release":
                release = (line, _release(line, words))
            else:
                processes.append((line, _unit_name(line), _process(words)))
        except ProcfileError as error:
            refused.append((line, _unit_name(line), str(error)))
    return Procfile(web, web_unread, release, tuple(processes), tuple(refused))


def _words(line: Line) -> list[str]:
    """The line as the program and its arguments; what needs a shell to mean anything is refused."""

    def refuse(what: str) -> ProcfileError:
        return ProcfileError(
            f"{line.where()}: {what} needs a shell, and the deploy runs each line as one program with its "
            f"arguments; {_instead(line)}"
        )

    if "`" in line.text or "$(" in line.text:
        raise refuse("command substitution")
    variable = re.search(r"\$\{?[A-Za-z_][A-Za-z0-9_]*[^\s]*", _PORT.sub("", line.text))
    if variable:
        raise refuse(f"`{variable.group(0)}` (only $PORT is known, and the deployer chooses where to listen)")
    lexer = shlex.shlex(line.text, posix=False, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        operators = [token for token in lexer if set(token) <= _OPERATORS]
        words = shlex.split(line.text)
    except ValueError as error:
        raise refuse(f"its quoting ({error})") from None
    if operators:
        raise refuse(f"`{operators[0]}`")
    if words and "=" in words[0] and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        raise refuse(f"setting {words[0].split('=')[0]} for one command (app.env sets the environment)")
    if words and words[0] in _SHELL_BUILTINS:
        raise refuse(f"`{words[0]}`")
    blank = next((word for word in words if not word or re.search(r"\s", word)), None)
    if blank is not None:
        # systemd's ExecStart and the manage wrapper take plain words: the quoting would be lost, not kept.
        raise ProcfileError(f"{line.where()}: the argument {blank!r} has blanks in it; {_instead(line)}")
    return words


def _named(folder: str) -> str:
    return f"the folder {folder}" if folder else "the Procfile's own folder"


def _in_project(words: list[str], project: str) -> list[str]:
    """The words as run from the project's folder: `backend/manage.py` is its manage.py, and a process's
    `--workdir backend` (celery's) says only where the deploy runs it anyway. A web line's --chdir stays, for
    _web to weigh."""
    if not project:
        return words
    prefix = project + "/"
    out: list[str] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "--workdir" and rest and _folder(rest[0]) == project:
            rest.pop(0)
            continue
        if word.startswith("--workdir=") and _folder(word.partition("=")[2]) == project:
            continue
        stripped = word.removeprefix("./")
        out.append(stripped.removeprefix(prefix) if stripped == prefix + "manage.py" else word)
    return out


def _instead(line: Line) -> str:
    if line.name == "web":
        return "set app.wsgiModule (or app.asgiModule) and app.serverOptions instead, or app.procfile false"
    if line.name == "release":
        return (
            "set the manage.py commands as app.releaseCommands instead (pulumi config set --path "
            "'app.releaseCommands[0]' COMMAND), or app.procfile false"
        )
    return f"set app.processes.{_unit_name(line)} instead, or app.procfile false"


def _unit_name(line: Line) -> str:
    return line.name.lower().replace("_", "-")


def _program(words: list[str]) -> list[str]:
    """`python manage.py x` / `./manage.py x` → `manage.py x`; `python -m gunicorn …` → `gunicorn …`."""
    if words[:1] and re.fullmatch(r"python3?(\.\d+)?", words[0]):
        if words[1:2] == ["-m"] and len(words) > 2:
            return words[2:]
        if len(words) > 1 and words[1].removeprefix("./") == "manage.py":
            return ["manage.py", *words[2:]]
    if words[:1] == ["./manage.py"]:
        return ["manage.py", *words[1:]]
    return words


def _release(line: Line, words: list[str]) -> str:
    words = _program(words)
    if words[:1] != ["manage.py"] or len(words) < 2:
        raise ProcfileError(
            f"{line.where()}: only manage.py commands are run before a release goes live (the deploy runs them "
            f"as the app, in the new release); {_instead(line)}"
        )
    if words[1] in OWN_STEPS:
        return ""
    return " ".join(words[1:])


def _process(words: list[str]) -> str:
    return " ".join(_program(words))


# --- the web line ------------------------------------------------------------------------------------------------

# Per server: option → what it is. "workers", "class" and SERVER_OPTIONS names take a value; "own" options (where to
# listen, where and what to log) are the deployer's, "own-flag" the same without a value; "flag:NAME" sets a
# true/false server option.
_GUNICORN = {
    "-w": "workers",
    "--workers": "workers",
    "-k": "class",
    "--worker-class": "class",
    "-t": "timeout",
    "--timeout": "timeout",
    "--graceful-timeout": "graceful_timeout",
    "--keep-alive": "keepalive",
    "--threads": "threads",
    "--max-requests": "max_requests",
    "--max-requests-jitter": "max_requests_jitter",
    "--preload": "flag:preload_app",
    "-b": "own",
    "--bind": "own",
    "--log-file": "own",
    "--access-logfile": "own",
    "--error-logfile": "own",
    "--log-level": "own",
    "--access-logformat": "own",
    "--forwarded-allow-ips": "own",
    "--name": "own",
    "-n": "own",
    "--capture-output": "own-flag",
    "--enable-stdio-inheritance": "own-flag",
    "--reload": "own-flag",
    "--chdir": "folder",
}
_UVICORN = {
    "--workers": "workers",
    "--app-dir": "folder",
    "--host": "own",
    "--port": "own",
    "--uds": "own",
    "--forwarded-allow-ips": "own",
    "--log-level": "own",
    "--proxy-headers": "own-flag",
    "--no-proxy-headers": "own-flag",
    "--access-log": "own-flag",
    "--no-access-log": "own-flag",
}
_DAPHNE = {
    "-b": "own",
    "--bind": "own",
    "-p": "own",
    "--port": "own",
    "-u": "own",
    "--unix-socket": "own",
    "-v": "own",
    "--verbosity": "own",
    "--access-log": "own",
    "--proxy-headers": "own-flag",
}
_WAITRESS = {"--port": "own", "--host": "own", "--listen": "own", "--threads": "threads"}
_SERVERS = {"gunicorn": _GUNICORN, "uvicorn": _UVICORN, "daphne": _DAPHNE, "waitress-serve": _WAITRESS}
_ASGI_SERVERS = {"uvicorn", "daphne"}


def _web(line: Line, words: list[str]) -> tuple[Web | None, str]:
    words = _program(words)
    server = words[0].rsplit("/", 1)[-1]
    if words[:2] == ["manage.py", "runserver"]:
        return None, "it runs Django's development server, which a production server never serves with"
    if server not in _SERVERS:
        return None, f"it runs {words[0]}, not a server the deploy knows (gunicorn, uvicorn, daphne, waitress-serve)"
    known = _SERVERS[server]
    modules: list[str] = []
    workers, worker_class, folder = 0, "", ""
    options: dict[str, str] = {}
    left_out: list[str] = []
    rest = words[1:]
    while rest:
        word = rest.pop(0)
        if not word.startswith("-"):
            modules.append(word)
            continue
        name, has_value, value = word.partition("=")
        kind = known.get(name)
        if kind is None:
            raise ProcfileError(
                f"{line.where()}: {server}'s option {name} is not one the deploy carries over to its gunicorn "
                f"({', '.join(sorted(option for option in known if option.startswith('--')))}); {_instead(line)}"
            )
        if kind in ("own-flag",) or kind.startswith("flag:"):
            if has_value:
                raise ProcfileError(f"{line.where()}: {name} takes no value")
            if kind.startswith("flag:"):
                options[kind.removeprefix("flag:")] = "True"
            else:
                left_out.append(name)
            continue
        if not has_value:
            if not rest:
                raise ProcfileError(f"{line.where()}: {name} without its value")
            value = rest.pop(0)
        if kind == "own":
            left_out.append(f"{name} {value}")
        elif kind == "workers":
            workers = _number(line, name, value, 1, 64)
        elif kind == "class":
            worker_class = value
        elif kind == "folder":
            folder = _folder(value)
        else:
            low, high = SERVER_OPTIONS[kind] or (0, 0)
            options[kind] = str(_number(line, name, value, low, high))
    if len(modules) != 1:
        raise ProcfileError(f"{line.where()}: no single module to serve in it (found {modules or 'none'})")
    module, _, attribute = modules[0].partition(":")
    if attribute not in ("", "application") or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module):
        raise ProcfileError(
            f"{line.where()}: the deploy serves the `application` of a module (proj.wsgi or proj.wsgi:application); "
            f"{_instead(line)}"
        )
    if worker_class and worker_class not in _ASGI_WORKERS | _SYNC_WORKERS:
        raise ProcfileError(
            f"{line.where()}: gunicorn's worker class {worker_class} is not one the deploy runs (sync, gthread with "
            f"--threads, or uvicorn's worker for ASGI); {_instead(line)}"
        )
    asgi = server in _ASGI_SERVERS or worker_class in _ASGI_WORKERS
    return Web(line, server, module, asgi, workers, options, tuple(left_out), folder), ""


def _number(line: Line, name: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,7}", value) or not low <= int(value) <= high:
        raise ProcfileError(f"{line.where()}: {name} {value} is not a whole number from {low} to {high}{_why(name)}")
    return int(value)


def _why(name: str) -> str:
    if name in ("-t", "--timeout"):
        return " (nginx waits 60 s for an answer)"
    if name == "--graceful-timeout":
        return " (systemd gives gunicorn 30 s to stop)"
    return ""
