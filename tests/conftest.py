"""Shared test set-up: the project on sys.path, and the rule for tests that need a capable host."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test that this machine cannot run — but in CI a skip would hide a broken set-up: fail."""
    if IN_CI:
        pytest.fail(f"CI=true and this test cannot run: {reason}")
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "localboot: boots a real Debian guest (root, systemd-nspawn)")


@pytest.fixture(scope="module")
def release() -> str:
    """The Debian release of a module's guests: the default image's (13); a module may override it."""
    from localboot import DEFAULT_RELEASE

    return DEFAULT_RELEASE


@pytest.fixture(scope="session")
def network():
    """The local guests' bridge and NAT, one for the whole run (a guest may serve several modules: see
    `default_site`); the run leaves the host as it found it."""
    from localboot.requirements import check_host

    missing = check_host()
    if missing:
        skip_or_fail("; ".join(missing))
    from localboot.network import bridge_network

    # Another run on this machine (a benchmark, a second pytest) may hold the bridge: wait for it, bounded.
    # LOCALBOOT_BRIDGE=NAME,CIDR (e.g. lbr1,10.78.0.1/24) gives a second run on this machine its own bridge.
    name, cidr = os.environ.get("LOCALBOOT_BRIDGE", "lbr0,10.77.0.1/24").split(",")
    with bridge_network(name, cidr, lock_wait=1800) as net:
        yield net


@pytest.fixture(scope="session")
def default_site(network):
    """One guest at the default settings (the default image, the example app from this folder), booted once
    for every module that checks such a site (test_local_boot, test_performance): a first boot costs over a
    minute of CI. A module using it may change the site (a reboot, a setting and back) but leaves it serving."""
    from harness.localsite import local_site

    with local_site(network, "web1") as live:
        print(f"\n[first boot] guest start → first 200 through nginx: {live.first_boot_seconds:.1f} s")
        for step in live.steps:
            print(f"[first boot]   {step.name}: {step.seconds:.1f} s")
        yield live


@pytest.fixture()
def live_dir() -> Iterator[Path]:
    """A world-traversable temp dir (pytest's own are 0700): nginx's workers run as nobody under root."""
    folder = Path(tempfile.mkdtemp(prefix="djangoship-nginx-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
