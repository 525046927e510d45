"""Which Python an app needs, read from the app the way its own tools read it, and decided at preview.

An app says which Python it runs on in one of these places: `app.python` in the stack config, else its
`pyproject.toml`'s `requires-python` (what uv, pip and poetry enforce), `.python-version` (pyenv, uv),
`runtime.txt` (Heroku's), the `Pipfile`'s `[requires]` (pipenv's), or last poetry's own range
(`[tool.poetry.dependencies] python`), looked for in the project's folder (app.directory), then at the source's top. The
image's own Python is used when it fits (no download, security updates from the distribution); otherwise the
deploy installs a CPython build managed by uv on the server. When neither can provide it, the preview fails and
names where the requirement came from. Pure: files in, a plan out.

`runtime.txt`'s `python-3.11.9` is read as 3.11, any build of it: Heroku itself installs the newest patch of
the minor it names (and says to write the minor alone), and a file pinned to a patch is most often one that
was current when it was written, not a build the app depends on. `app.python` and `.python-version` pin a
patch exactly when they name one (both are written for the tools that honour it: uv, pyenv).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# CPython minors that uv can install as managed builds (python-build-standalone); the newest first.
MANAGED_MINORS = tuple((3, minor) for minor in range(14, 8, -1))
_CLAUSE = re.compile(r"^\s*(~=|===|==|!=|<=|>=|<|>)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?\s*$")


@dataclass(frozen=True)
class PythonPlan:
    request: str  # "" = the image's python3; else the minor for `uv python install`, e.g. "3.14"
    source: str  # where the requirement came from, for the deploy log and error messages
    spec: str  # the requirement as the app wrote it ("" = none)
    image_python: str = ""  # the image's python3, which it was weighed against

    @property
    def managed(self) -> bool:
        return bool(self.request)

    @property
    def reason(self) -> str:
        """What was decided and why, for the preview ("" when the app states no requirement)."""
        if not self.spec:
            return ""
        pin = "" if self.source == "app.python" else "; to choose another: pulumi config set --path app.python 3.X"
        if self.managed:
            return (
                f"Python {self.request}, a CPython that the deploy installs with uv: the app needs {self.spec} "
                f"({self.source}) and the image's python3 is {self.image_python}{pin}"
            )
        return f"Python: the image's python3 {self.image_python} meets {self.spec} ({self.source}){pin}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _matches_clause(version: tuple[int, ...], clause: str) -> bool:
    match = _CLAUSE.match(clause)
    if not match:
        raise ValueError(f"cannot read the version requirement {clause.strip()!r}")
    operator, number, wildcard = match.group(1), _version(match.group(2)), bool(match.group(3))
    width = max(len(version), len(number))
    left, right = version + (0,) * (width - len(version)), number + (0,) * (width - len(number))
    if operator in ("==", "!=", "==="):
        # ==3.14.* compares the parts written; ==3.14 is 3.14.0 exactly (PEP 440 pads with zeros).
        equal = version[: len(number)] == number if wildcard else left == right
        return equal if operator != "!=" else not equal
    if operator == "~=":
        return left >= right and version[: len(number) - 1] == number[:-1]
    return {">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right}[operator]


def satisfies(version: str | tuple[int, ...], spec: str) -> bool:
    """Does this Python version meet a PEP 440 specifier set such as `>=3.12,<4` or `==3.14.*`?"""
    parsed = _version(version) if isinstance(version, str) else version
    return all(_matches_clause(parsed, clause) for clause in spec.split(",") if clause.strip())


def _exact_or_minor(text: str) -> str:
    """`3.13` → `==3.13.*`; `3.13.1` → `==3.13.1` (how .python-version and app.python read)."""
    return f"=={text}.*" if text.count(".") == 1 else f"=={text}"


def app_python_spec(folders: Sequence[Path], configured: str) -> tuple[str, str]:
    """(specifier, where it came from); ("", "") when the app says nothing. `folders`: the project's folder, then
    the source's top (none for a git source, read only on the server); the first file found decides."""
    if configured:
        return _exact_or_minor(configured), "app.python"
    for folder in folders:
        spec, name, note = _folder_python_spec(folder)
        if spec:
            # Named by where it sits in the source when it is not at the top (app.directory's folder).
            inside = f" in {folder.relative_to(folders[-1]).as_posix()}/" if folder != folders[-1] else ""
            return spec, f"{name}{inside}{note}"
    return "", ""


def _folder_python_spec(folder: Path) -> tuple[str, str, str]:
    """(specifier, the file that says it, a note on how it was read) for one folder; ("", "", "") if none does."""
    pyproject, data = folder / "pyproject.toml", {}
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"pyproject.toml of the app cannot be read: {error}") from error
        spec = data.get("project", {}).get("requires-python", "")
        if isinstance(spec, str) and spec.strip():
            return spec.strip(), "requires-python in pyproject.toml", ""
    version_file = folder / ".python-version"
    if version_file.is_file():
        first = next((line.strip() for line in version_file.read_text().splitlines() if line.strip()), "")
        if re.fullmatch(r"3\.\d+(\.\d+)?", first):
            return _exact_or_minor(first), ".python-version", ""
    runtime = folder / "runtime.txt"
    if runtime.is_file():
        match = re.fullmatch(r"python-(3\.\d+)(\.\d+)?", runtime.read_text().strip())
        if match:
            minor, patch = match.groups()
            return (
                f"=={minor}.*",
                "runtime.txt",
                f": python-{minor}{patch}, read as {minor}, any build of it" if patch else "",
            )
    pipfile = folder / "Pipfile"
    if pipfile.is_file():
        try:
            requires = tomllib.loads(pipfile.read_text()).get("requires", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"Pipfile of the app cannot be read: {error}") from error
        for key in ("python_full_version", "python_version"):
            value = str(requires.get(key, "")).strip()
            if re.fullmatch(r"3\.\d+(\.\d+)?", value):
                return _exact_or_minor(value), f"[requires] {key} in Pipfile", ""
    # Last: poetry's range is what the project supports, the files above say what it is deployed on.
    poetry = data.get("tool", {}).get("poetry", {}).get("dependencies", {}).get("python", "")
    if isinstance(poetry, str) and poetry.strip() not in ("", "*"):
        spec = _from_poetry(poetry)
        note = f": {poetry.strip()}, read as {spec}" if poetry.strip()[0] in "^~" else ""
        return spec, "tool.poetry.dependencies.python in pyproject.toml", note
    return "", "", ""


def _from_poetry(constraint: str) -> str:
    """Poetry's constraint on Python as a PEP 440 specifier set: `^3.10` is `>=3.10,<4.0`, `~3.10` is
    `>=3.10,<3.11`, a bare `3.10` any 3.10 (`==3.10.*`); clauses joined by commas or blanks. Unions (`||`) are
    refused."""
    if "||" in constraint:
        raise ValueError(f"cannot read the version requirement {constraint.strip()!r} (a union of ranges)")
    clauses = []
    for clause in re.split(r"[,\s]+", constraint.strip()):
        if not clause:
            continue
        match = re.fullmatch(r"([\^~])(\d+(?:\.\d+)*)", clause)
        if match:
            operator, number = match.groups()
            parts = _version(number)
            # ^ allows up to the next major; ~ up to the next minor (the next major when only a major is given).
            whole_major = operator == "^" or len(parts) == 1
            upper = f"{parts[0] + 1}.0" if whole_major else f"{parts[0]}.{parts[1] + 1}"
            clauses += [f">={number}", f"<{upper}"]
        elif re.fullmatch(r"\d+(?:\.\d+)+", clause):
            clauses.append(_exact_or_minor(clause))  # a minor alone means any build of it, as for Python's users
        elif re.fullmatch(r"\d+(?:\.\d+)*\.\*", clause):
            clauses.append(f"=={clause}")
        else:
            clauses.append(clause)
    return ",".join(clauses)


def plan_python(folders: Sequence[Path], configured: str, image: str, image_python: str) -> PythonPlan:
    """The image's Python when it meets the app's requirement, else a uv-managed minor that does, else an
    error naming the requirement, its source and what was available."""
    spec, source = app_python_spec(folders, configured)
    if not spec or satisfies(image_python, spec):
        return PythonPlan(request="", source=source or "none stated", spec=spec, image_python=image_python)
    exact = re.fullmatch(r"\s*===?\s*(3\.\d+\.\d+)\s*", spec)
    if exact:
        # One exact release (app.python or .python-version naming a patch): uv installs that one.
        if _version(exact.group(1))[:2] in MANAGED_MINORS:
            return PythonPlan(request=exact.group(1), source=source, spec=spec, image_python=image_python)
    else:
        for minor in MANAGED_MINORS:
            # The newest patch of that minor stands for it: uv installs the latest build of a requested minor.
            if satisfies((*minor, 99), spec):
                return PythonPlan(f"{minor[0]}.{minor[1]}", source, spec, image_python)
    offered = ", ".join(f"{major}.{minor}" for major, minor in MANAGED_MINORS)
    raise ValueError(
        f"the app needs Python {spec} ({source}); the image {image} has {image_python} and uv can install "
        f"CPython {offered}: none fits"
    )
