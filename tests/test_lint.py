"""Style and types: ruff and mypy with the settings in pyproject.toml, over the whole project.

Each tool runs from this virtualenv (`python -m`), so the versions are the ones requirements-dev.txt installs.
A failure shows the tool's own report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHECKS = {
    "ruff check": ["ruff", "check", "--output-format=concise", "."],
    "ruff format": ["ruff", "format", "--check", "."],
    # The program (its profiles hold what __main__.py declares). The policy pack is a separate program with a
    # __main__.py of its own, so it is checked apart.
    "mypy program": ["mypy", "components", "profiles", "__main__.py"],
    # The operator's verbs (standard library only).
    "mypy operator verbs": ["mypy", "djangoship"],
    "mypy policy pack": ["mypy", "policy"],
}


@pytest.mark.parametrize("command", CHECKS.values(), ids=CHECKS.keys())
def test_clean(command):
    # mypy's first run reads pulumi_aws' type information (about 1.5 minutes); later runs use .mypy_cache.
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)} (exit {result.returncode}):\n{result.stdout}{result.stderr}"
