"""The program's modules in layers, imports one way (issue 32, item 3).

    catalog → config → server → components → profiles → __main__.py

`catalog/` what the program knows of AWS, `config/` the key table and its checks, `server/` what runs on a server
(pure functions), `components/` the Pulumi components, `profiles/` the two sites built from them. A module imports
from its own layer or those below, never above, and no modules import each other round. Below `components/`
nothing imports Pulumi; `components/` holds Pulumi components only, and every component is there. The operator's
verbs (`djangoship/`, standard library only) take nothing from the program but the server's layout. Read from the
source (the AST), so an import inside a function or under TYPE_CHECKING counts as much as one at the top.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LAYERS = ("catalog", "config", "server", "components", "profiles")  # lowest first; __main__.py above them all
TOP = "__main__"
# Paths of the program's modules named in the docs and in comments: each must exist.
MENTIONED = re.compile(r"(?<![\w/.-])((?:" + "|".join(LAYERS) + r")/[\w/]*\w\.py)\b")
DOCUMENTS = (
    "README.md",
    "CONTRIBUTING.md",
    "docs/*.md",
    "bench/*.md",
    "Pulumi.yaml",
    "pyproject.toml",
    "requirements.txt",
)
DOCUMENTED_CODE = (*LAYERS, "djangoship", "harness", "tools", "bench", "policy")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """The program's modules by dotted name: every layer's, and __main__.py."""
    found = {module_name(path): path for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py"))}
    return found | {TOP: ROOT / "__main__.py"}


def layer(name: str) -> int:
    return len(LAYERS) if name == TOP else LAYERS.index(name.split(".")[0])


@cache
def imported(path: Path) -> frozenset[str]:
    """The modules of the program that a file imports (relative imports resolved; `from package import module`
    is the module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules():
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    return frozenset(found)


def test_the_layers_are_found():
    # The checks below pass vacuously if the walk finds nothing: every layer has modules and imports.
    assert {name.split(".")[0] for name in modules()} == {*LAYERS, TOP}
    assert imported(modules()["config.checks"]) >= {"config.envcontract", "config.table", "catalog.offerings"}
    assert "server.host" in imported(modules()["profiles.single"])


def test_imports_go_down_only():
    upward = [
        f"{name} imports {target} ({target.split('.')[0]}/ is above {name.split('.')[0]}/)"
        for name, path in modules().items()
        for target in sorted(imported(path))
        if layer(target) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " → ".join(trail[trail.index(name) :] + (name,))
            raise AssertionError(f"import cycle: {cycle}")
        if name in done:
            return
        for target in sorted(imported(modules()[name])):
            if target != name:
                visit(target, (*trail, name))
        done.add(name)

    for name in modules():
        visit(name, ())


def test_below_components_no_pulumi():
    """catalog/, config/ and server/ are plain functions and data, testable alone and the same bytes every run; Pulumi
    comes in with components/. The one exception reads the stack's config: `config.settings.read_stack_config`."""
    found = []
    for name, path in modules().items():
        if layer(name) >= LAYERS.index("components"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        allowed = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef)
            and (name, function.name) == ("config.settings", "read_stack_config")
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0].startswith("pulumi") for n in names) and id(node) not in allowed:
                found.append(f"{name}:{node.lineno}")
    assert not found, f"Pulumi imported below components/: {found}"


def component_classes(path: Path) -> list[str]:
    """Classes that derive from pulumi.ComponentResource, as the program writes them."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base) in ("pulumi.ComponentResource", "ComponentResource") for base in node.bases)
    ]


def test_components_holds_components_only_and_all_of_them():
    elsewhere = [
        f"{name}: {classes}"
        for name, path in modules().items()
        if not name.startswith("components") and (classes := component_classes(path))
    ]
    assert not elsewhere, "ComponentResources outside components/:\n" + "\n".join(elsewhere)
    helpers = [
        name
        for name, path in modules().items()
        if name.startswith("components.") and path.name != "__init__.py" and not component_classes(path)
    ]
    assert not helpers, f"modules in components/ that declare no ComponentResource (move them down a layer): {helpers}"


def test_operator_verbs_take_only_the_servers_layout():
    """djangoship/ runs with the standard library alone: what it takes from the program is the layout, which
    imports nothing else (and its package's __init__ nothing at all)."""
    taken = {target for path in (ROOT / "djangoship").rglob("*.py") for target in imported(path)}
    assert taken == {"server.layout"}
    for module in ("server", "server.layout"):
        tree = ast.parse(modules()[module].read_text())
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        outside = [n for n in names if n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"]
        assert not outside, f"{module} imports {outside}: djangoship/ would need more than the standard library"


def test_module_paths_named_in_docs_and_comments_exist():
    texts = [path for pattern in DOCUMENTS for path in sorted(ROOT.glob(pattern))]
    texts += [path for folder in DOCUMENTED_CODE for path in sorted((ROOT / folder).rglob("*.py"))]
    texts.append(ROOT / "__main__.py")
    texts += sorted((ROOT / "cloud-init").rglob("*.j2"))  # the templates' comments, which servers carry too
    missing = [
        f"{path.relative_to(ROOT)}: {mentioned}"
        for path in texts
        for mentioned in sorted(set(MENTIONED.findall(path.read_text())))
        if not (ROOT / mentioned).is_file()
    ]
    assert not missing, "\n".join(missing)


def test_no_test_module_imports_another():
    """A test module's collection is its own: what two share (fixtures, checks, helpers) lives in a module that is
    not a test module (tests/site_helpers.py, tests/day2_site.py, tests/site_checks.py, tests/policy_helpers.py),
    so running one module never runs or collects another's tests through an import (issue 32, item 5)."""
    importing: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found = [name for name in names if name.split(".")[-1].startswith("test_")]
            if found:
                importing.setdefault(str(path.relative_to(ROOT)), []).extend(found)
    assert not importing, importing
