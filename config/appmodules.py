"""Which settings and WSGI module a Django project is served with when the stack does not say, found as Django
itself finds them — by reading the app's files, never by running them.

Django starts from `manage.py`'s `os.environ.setdefault("DJANGO_SETTINGS_MODULE", …)` and serves
`WSGI_APPLICATION` from those settings (`ASGI_APPLICATION` for an ASGI server). So does this, with one step
more: where that default is a development module of a settings package that also holds a production module
(`production` or `prod`, as cookiecutter-django and the deployment tutorials have it), the production module is
served, and the preview or the deploy log says so and how to choose another. Two production modules, no default,
a module the app does not have: no guess — a message naming the key to set (`app.settingsModule`,
`app.wsgiModule`). A guess is never trusted with a development configuration: the deploy refuses any release whose
settings end with DEBUG on (`app.allowDebug`), and `debug_refusal` below says where the settings set it and which
`app.env` line turns it off.

One file, used in three places:
- at preview, for a local folder (config/checks.py checks it decides; server/host.py puts the answer in the plan);
- on the server, for a git source (only fetched there): installed beside the settings overlay as
  `djangoship_appmodules.py` (server/host.py), the deploy runs it as root with `python3 -I -S` on the release it
  unpacked — it parses the app's files with `ast` and imports nothing of the app — and it writes its answer into
  the release (CHOSEN_FILE), which the settings overlay and the WSGI wrapper read (`chosen`);
- in the deploy's check (python/prepare-release.py.j2, the app's user), for the DEBUG gate's message.
So it needs the standard library only, and Python syntax that Debian 12's python3 (3.11) reads.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PRODUCTION = ("production", "prod")  # a settings package's production module, by the names projects give it
SETTINGS_KEY = "app.settingsModule"
WSGI_KEY = "app.wsgiModule"
CHOSEN_FILE = ".djangoship-modules.json"  # in a release: what the deploy decided for it (a git source)
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_MAX_DEPTH = 12  # `from .base import *` chains followed this deep


class Undecided(ValueError):
    """No safe choice: the message says why and how to set `key`."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class Modules:
    settings: str  # DJANGO_SETTINGS_MODULE of the app ("" = decided by the deploy, from a git source's files)
    wsgi: str  # the module whose `application` gunicorn serves ("" as above, or unused with app.asgiModule)
    reasons: tuple[str, ...] = ()  # what was found and chosen, one line each (empty when both keys were set)


def module_file(folder: Path, dotted: str) -> Path | None:
    """The file of a module of the app: a.b → a/b.py or a/b/__init__.py."""
    base = folder.joinpath(*dotted.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file() and _inside(folder, candidate):
            return candidate
    return None


def _inside(folder: Path, path: Path) -> bool:
    """Root reads a git source's files here: never through a link to a file outside the app."""
    return path.resolve().is_relative_to(folder.resolve())


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8", errors="replace"), filename=str(path))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # Django's own check says what is wrong with it; here it just gives no answer


def manage_default(folder: Path) -> str:
    """manage.py's DJANGO_SETTINGS_MODULE default: `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x")` or
    `os.environ["DJANGO_SETTINGS_MODULE"] = "x"`; "" when it sets none."""
    tree = _parse(folder / "manage.py") if _inside(folder, folder / "manage.py") else None
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault":
            args = [_text(arg) for arg in node.args[:2]]
            if len(args) == 2 and args[0] == "DJANGO_SETTINGS_MODULE" and args[1]:
                return args[1]
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Subscript)
            and _text(node.targets[0].slice) == "DJANGO_SETTINGS_MODULE"
            and _text(node.value)
        ):
            return _text(node.value)
    return ""


def _text(node: ast.AST) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""


@dataclass(frozen=True)
class Assignment:
    value: ast.expr
    path: Path
    line: int

    def where(self, folder: Path) -> str:
        return f"{self.path.relative_to(folder)}:{self.line}"


def assignments(folder: Path, module: str, names: tuple[str, ...]) -> dict[str, Assignment]:
    """The last top-level assignment of each name in a settings module, following `from x import *` (the
    settings packages' `from .base import *`) where the import stands, as Python runs it. Branches of `if` and
    `try` are read in order, both taken: the answer is where a name is set last in the text."""
    found: dict[str, Assignment] = {}
    _collect(folder, module, names, found, depth=0)
    return found


def _collect(folder: Path, module: str, names: tuple[str, ...], found: dict[str, Assignment], depth: int) -> None:
    path = module_file(folder, module)
    tree = _parse(path) if path else None
    if path is None or tree is None or depth > _MAX_DEPTH:
        return
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.ImportFrom) and any(alias.name == "*" for alias in statement.names):
                base = package
                for _ in range(max(statement.level - 1, 0)):
                    base = base.rpartition(".")[0]
                target = ".".join(part for part in (base if statement.level else "", statement.module or "") if part)
                if target:
                    _collect(folder, target, names, found, depth + 1)
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                for target_node in targets:
                    if isinstance(target_node, ast.Name) and target_node.id in names and statement.value is not None:
                        found[target_node.id] = Assignment(statement.value, path, statement.lineno)
            elif isinstance(statement, ast.If):
                walk(statement.body)
                walk(statement.orelse)
            elif isinstance(statement, ast.Try):
                walk(statement.body)
                for handler in statement.handlers:
                    walk(handler.body)
                walk(statement.orelse)
                walk(statement.finalbody)

    walk(tree.body)


def _production_beside(folder: Path, named: str) -> tuple[str, str]:
    """manage.py's default, or the production module of the settings package it belongs to."""
    parts = named.split(".")
    is_package = (folder.joinpath(*parts) / "__init__.py").is_file()
    package = named if is_package else ".".join(parts[:-1])
    default = "manage.py's DJANGO_SETTINGS_MODULE default, as Django runs it"
    # Only a settings package (`…settings`, or the module manage.py names being itself a package) is looked in:
    # a project's `prod.py` elsewhere is no settings module.
    if parts[-1] in PRODUCTION or not package or not (is_package or package.rsplit(".", 1)[-1] == "settings"):
        return named, default
    found = [f"{package}.{name}" for name in PRODUCTION if module_file(folder, f"{package}.{name}")]
    if not found:
        return named, default
    if len(found) > 1:
        raise Undecided(
            SETTINGS_KEY,
            f"manage.py's DJANGO_SETTINGS_MODULE default is {named}, and {package} holds two production modules, "
            f"{' and '.join(found)}: say which one to serve (pulumi config set --path {SETTINGS_KEY} {found[0]})",
        )
    return found[0], (
        f"manage.py's DJANGO_SETTINGS_MODULE default is {named}; its settings package holds this production module "
        "beside it, which is served instead"
    )


def decide(folder: Path, settings_module: str = "", wsgi_module: str = "", asgi_module: str = "") -> Modules:
    """The modules to serve the app in `folder` with; a key given (non-empty) is taken as it is. Raises
    `Undecided` naming the key to set when the files do not decide."""
    reasons: list[str] = []
    if not settings_module:
        named = manage_default(folder)
        if not named:
            raise Undecided(
                SETTINGS_KEY,
                "manage.py sets no DJANGO_SETTINGS_MODULE default to start from: name the settings to serve "
                f"(pulumi config set --path {SETTINGS_KEY} mysite.settings)",
            )
        if module_file(folder, named) is None:
            raise Undecided(
                SETTINGS_KEY,
                f"manage.py's DJANGO_SETTINGS_MODULE default {named} is not a module of the app: name the settings "
                f"to serve (pulumi config set --path {SETTINGS_KEY} …)",
            )
        settings_module, why = _production_beside(folder, named)
        reasons.append(_reason("settings", settings_module, why, SETTINGS_KEY))
    if wsgi_module:
        return Modules(settings_module, wsgi_module, tuple(reasons))
    found = assignments(folder, settings_module, ("WSGI_APPLICATION", "ASGI_APPLICATION"))
    asgi = found.get("ASGI_APPLICATION")
    if asgi and _text(asgi.value) and not asgi_module:
        reasons.append(
            f"the settings set ASGI_APPLICATION = {_text(asgi.value)!r} ({asgi.where(folder)}); served as WSGI "
            f"unless you say: pulumi config set --path app.asgiModule {_text(asgi.value).rpartition('.')[0]}"
        )
    try:
        wsgi_module, why = _wsgi(folder, settings_module, found.get("WSGI_APPLICATION"))
    except Undecided:
        if asgi_module:  # served as ASGI: no WSGI module is needed
            return Modules(settings_module, "", tuple(reasons))
        raise
    reasons.append(_reason("WSGI module", wsgi_module, why, WSGI_KEY))
    return Modules(settings_module, wsgi_module, tuple(reasons))


def _reason(what: str, module: str, why: str, key: str) -> str:
    return f"{what} {module} ({why}); to pin it, or serve another: pulumi config set --path {key} {module}"


def _wsgi(folder: Path, settings_module: str, assignment: Assignment | None) -> tuple[str, str]:
    if assignment is not None:
        dotted = _text(assignment.value)
        module, _, attribute = dotted.rpartition(".")
        if not dotted or attribute != "application" or module_file(folder, module) is None:
            raise Undecided(
                WSGI_KEY,
                f"the settings' WSGI_APPLICATION ({assignment.where(folder)}) is not a module of the app with "
                f"`application` in it: name the module to serve (pulumi config set --path {WSGI_KEY} mysite.wsgi)",
            )
        return module, f"WSGI_APPLICATION at {assignment.where(folder)}"
    beside = settings_module.split(".")[0] + ".wsgi"  # startproject's <project>/wsgi.py
    if module_file(folder, beside):
        return beside, "the settings set no WSGI_APPLICATION: the project's wsgi.py, as startproject writes it"
    raise Undecided(
        WSGI_KEY,
        f"{settings_module} sets no WSGI_APPLICATION and there is no {beside}: name the module to serve "
        f"(pulumi config set --path {WSGI_KEY} mysite.wsgi)",
    )


def debug_refusal(folder: Path, settings_module: str) -> str:
    """Why a release with DEBUG on is refused, where its settings set DEBUG, and the `app.env` line or the code
    change that turns it off (the deploy's check prints it; python/prepare-release.py.j2)."""
    where = assignments(folder, settings_module, ("DEBUG",)).get("DEBUG")
    lines = [
        f"DEBUG is True in the release's settings ({settings_module}): Django would show every visitor "
        "tracebacks with the settings and local variables in them. The release is refused; the previous one keeps "
        "serving."
    ]
    names = _env_names(where.value) if where else []
    if where and names:
        source = ast.get_source_segment(where.path.read_text(encoding="utf-8", errors="replace"), where.value)
        lines.append(f"It is read from the environment ({where.where(folder)}: DEBUG = {source}); turn it off with:")
        lines += [f"    pulumi config set --path app.env.{name} False" for name in names]
    elif where:
        lines.append(
            f"It is written in the code ({where.where(folder)}): set it from the environment there, or serve "
            f"settings that turn it off (pulumi config set --path {SETTINGS_KEY} MODULE); a variable the "
            "settings read goes in app.env: pulumi config set --path app.env.NAME False"
        )
    else:
        lines.append(
            "Where the settings set it was not found in their text: if they read it from the environment, set "
            "that variable: pulumi config set --path app.env.NAME False"
        )
    lines.append("To serve it with DEBUG on all the same: pulumi config set --path app.allowDebug true")
    return "\n".join(lines)


def _env_names(value: ast.expr) -> list[str]:
    """Environment variable names an expression reads: `os.environ["X"]`, `os.getenv("X")`, `env.bool("X")`,
    `envbool("X", …)` — the first argument or the key, when it looks like a variable's name."""
    names: list[str] = []
    for node in ast.walk(value):
        text = ""
        if isinstance(node, ast.Call) and node.args:
            text = _text(node.args[0])
        elif isinstance(node, ast.Subscript):
            text = _text(node.slice)
        if _ENV_NAME.fullmatch(text) and text not in names:
            names.append(text)
    return names


def chosen(kind: str) -> str:
    """In a release built from a git source without app.settingsModule/app.wsgiModule: the module the deploy
    decided ("settings" or "wsgi"). Every process of the app runs in its release's folder (gunicorn's and the
    units' WorkingDirectory, the manage wrapper's cd)."""
    return json.loads(Path(CHOSEN_FILE).read_text())[kind]


def main(argv: list[str]) -> int:
    """`python3 -I -S djangoship_appmodules.py RELEASE SETTINGS WSGI ASGI` (the deploy, as root, on a git
    source's files): writes RELEASE/CHOSEN_FILE and prints the reasons; exit 2 naming the key when undecided."""
    folder = Path(argv[1])
    try:
        modules = decide(folder, *argv[2:5])
    except Undecided as error:
        print(f"{error.key}: {error}", file=sys.stderr)
        return 2
    (folder / CHOSEN_FILE).write_text(json.dumps({"settings": modules.settings, "wsgi": modules.wsgi}) + "\n")
    print(*modules.reasons, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
