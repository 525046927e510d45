"""The rendered-file tests' fixtures: what the program sends for each of `PROGRAMS`, run once."""

from __future__ import annotations

import pytest

from rendered.helpers import PROGRAMS, Sent, run_sent


@pytest.fixture(scope="session")
def sent() -> dict[str, Sent]:
    return {name: run_sent(config) for name, config in PROGRAMS.items()}
