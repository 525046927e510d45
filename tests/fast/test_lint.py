"""Style and types: ruff and mypy with the settings in pyproject.toml, over the whole project.

Each tool runs from this virtualenv (`python -m`), so the versions are the ones requirements-dev.txt installs.
A failure shows the tool's own report.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

CHECKS = {
    "ruff check": ["ruff", "check", "--output-format=concise", "."],
    "ruff format": ["ruff", "format", "--check", "."],
    # The program (its profiles hold what __main__.py declares). The policy pack is a separate program with a
    # __main__.py of its own, so it is checked apart.
    "mypy program": ["mypy", "catalog", "config", "server", "components", "profiles", "__main__.py"],
    # The operator's verbs (standard library only).
    "mypy operator verbs": ["mypy", "djangoship"],
    "mypy policy pack": ["mypy", "policy"],
}


@pytest.mark.parametrize("command", CHECKS.values(), ids=CHECKS.keys())
def test_clean(command):
    # mypy's first run reads the pulumi_aws services the program uses (~20 s; see the next test); later runs
    # use .mypy_cache.
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)} (exit {result.returncode}):\n{result.stdout}{result.stderr}"


def test_mypy_reads_every_pulumi_aws_service_the_program_uses():
    """mypy skips pulumi_aws' services but those pyproject.toml names (reading all ~240 took 1.5 min): a service
    the program starts using must be named there, or its calls would go unchecked (Any)."""
    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    read = {
        module for override in overrides if override.get("follow_imports") == "normal" for module in override["module"]
    }
    code = "\n".join(
        path.read_text() for folder in ("components", "profiles") for path in (ROOT / folder).rglob("*.py")
    )
    code += (ROOT / "__main__.py").read_text()
    used = set(re.findall(r"\baws\.([a-z][a-z0-9_]*)", code))
    assert used, "no aws.<service> found: the pattern no longer matches how the program imports pulumi_aws"
    unread = sorted(name for name in used if f"pulumi_aws.{name}" not in read)
    assert not unread, f"add pulumi_aws.<name> (and .<name>.*) for {unread} to the mypy override in pyproject.toml"
