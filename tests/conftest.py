"""Shared test set-up: the project on sys.path, the rule for tests that need a capable host, and the lanes the
suite runs in side by side (pytest-xdist's workers)."""

from __future__ import annotations

import ipaddress
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


# --- lanes ---------------------------------------------------------------------------------------------------
# scripts/test.sh runs the suite in three worker processes side by side (pytest-xdist: `-n 3 --dist loadgroup
# --no-loadscope-reorder`). Most of a guest module's time is waiting (boots, drains, minute timers), so three lanes
# on CI's two cores finish in about the time of the longest module instead of the sum.
#
# A module runs whole on one worker: a guest module's tests run in file order on its module-scoped guest, which a
# split would boot once per worker (and a module under mocks computes its module fixtures once). Modules that share
# a session fixture booting a guest (`default_site`) share a group, or each worker would boot its own. Every module
# that boots guests has a row here; tests/fast/test_lanes.py fails while one has none (it still runs whole meanwhile,
# after the rows' groups).
#
# The rows are in the order the lanes take them, longest first (the minutes: setup + call, measured in CI), so the
# longest module starts at once and the shorter ones fill the other lanes around it; the modules under Pulumi's
# mocks come last, filling whichever lane is free.
#
# The scheduler is ours (`pytest_xdist_make_scheduler`), not xdist's `xdist_group` marks: xdist 3.8 passes a
# mark's group to its scheduler by rewriting the test's node id, which pytest 9.2 no longer lets a plugin do, so
# the marks are silently ignored there (pytest-dev/pytest-xdist#1386) and a guest module was split over workers.
GROUPS: dict[str, str] = {
    # Minutes from the lanes' timeline of a fresh-clone run at a2ccb8d (test_foreign_apps': alone at 5844522, its eight
    # projects): the longest first, so the lanes end together (tests/conftest.py's timeline says whether they did).
    "guests/test_scaled_servers.py": "scaled_servers",  # 16.6
    "guests/test_day2.py": "day2",  # 10.8
    "guests/test_foreign_apps.py": "foreign_apps",  # 9.5
    "guests/test_scaled_workers.py": "scaled_workers",  # 8.3
    "guests/test_foreign_workers.py": "foreign_workers",  # 7.3
    "guests/test_scaled_move.py": "scaled_move",  # 5.8
    "guests/test_faults.py": "faults",  # 4.7
    "guests/test_debian12.py": "debian12",  # 3.1
    "guests/test_local_boot.py": "default_site",  # 2.9 with test_performance: both check conftest.default_site's guest
    "guests/test_performance.py": "default_site",
    "guests/test_operator_verbs.py": "operator_verbs",  # 2.3
    "guests/test_localboot_guest.py": "localboot_guest",  # 2, on a bridge of its own (lbrlab)
}
#: The group of the modules that use `default_site`.
DEFAULT_SITE_GROUP = "default_site"
#: What the collection found amiss with GROUPS (tests/fast/test_lanes.py fails on it).
LANE_PROBLEMS = pytest.StashKey[list[str]]()


def lane_of(nodeid: str) -> str:
    """What one worker runs whole, for a test's node id (`tests/guests/test_day2.py::test_…`): its module's group, or
    its module."""
    module = nodeid.split("::", 1)[0].removeprefix("tests/")
    return GROUPS.get(module, module)


def _module_of(item: pytest.Item) -> str:
    """The item's module as GROUPS names it: its path under tests/ (`guests/test_day2.py`)."""
    return item.path.relative_to(Path(__file__).parent).as_posix()


def boots_guests(item: pytest.Item) -> bool:
    """A test boots a guest, or shares one, when it is marked `localboot` or needs the run's bridge."""
    return item.get_closest_marker("localboot") is not None or "network" in item.fixturenames


def lane_problems(items: list[pytest.Item]) -> list[str]:
    """The guest modules without a row in GROUPS, and default_site's users outside its group."""
    problems = set()
    for item in items:
        module = _module_of(item)
        if boots_guests(item) and module not in GROUPS:
            problems.add(f"{module} boots guests but has no row in GROUPS (tests/conftest.py)")
        if "default_site" in item.fixturenames and GROUPS.get(module) != DEFAULT_SITE_GROUP:
            problems.add(f"{module} uses default_site: its row's group must be {DEFAULT_SITE_GROUP!r}")
    return sorted(problems)


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the fast run checks every module too
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[LANE_PROBLEMS] = lane_problems(items)
    # The order the scheduler hands the lanes out in (with --no-loadscope-reorder): the rows' groups in the table's
    # order, then every other module as collected. Stable: a module's tests keep their file order.
    rank = {group: at for at, group in enumerate(dict.fromkeys(GROUPS.values()))}
    items.sort(key=lambda item: rank.get(lane_of(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown to a pytest without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadgroup`, with our lanes: xdist's scheduler by scope (a scope's tests all go to one worker, the
    scopes in collection order), each scope a lane (`lane_of`)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lane_of(nodeid)

        def _reschedule(self, node) -> None:  # noqa: ANN001 (xdist's WorkerController)
            # xdist hands a worker its next lane while two of its tests are left; a guest module's last two can
            # take minutes, and the lane handed out waits behind them while another worker may be idle. A worker
            # runs a test only once it knows the one after it, so the latest a lane can be handed out is when one
            # test is left: the worker waits for its next test there.
            if not node.shutting_down and self.workqueue and self._pending_of(self.assigned_work[node]) > 1:
                return
            super()._reschedule(node)

    return Lanes(config, log)


def worker_bridge(name: str, cidr: str, worker: int) -> tuple[str, str]:
    """The bridge and gateway address of xdist worker `worker`, from the run's own (`name`, `cidr`).

    The name gets `w<N>` (cut to Linux's 15 bytes): guests off lbr0 are named after the bridge's last 3 characters
    (localboot.guest), so each worker's must differ from the others' and from other runs' (lbr1, lbrlab), and
    `bridge_network` refuses a bridge that ends like a live one. The subnet is the (N+1)-th /24 after the run's own
    in the same /16 (10.77.1.0/24, 10.77.2.0/24, … for lbr0's 10.77.0.1/24): the run's own /24 stays free for a run
    without xdist, and other runs keep theirs (10.78–10.99).
    """
    suffix = f"w{worker}"
    base = ipaddress.IPv4Interface(cidr)
    own = ipaddress.IPv4Network(f"{base.ip}/24", strict=False)
    subnet = ipaddress.IPv4Network((int(own.network_address) + (worker + 1) * 256, 24))
    if not subnet.subnet_of(ipaddress.IPv4Network(f"{base.ip}/16", strict=False)):
        raise ValueError(f"worker {worker}'s subnet {subnet} leaves {cidr}'s /16")
    return name[: 15 - len(suffix)] + suffix, f"{subnet.network_address + 1}/24"


def run_bridge() -> tuple[str, str]:
    """This process's bridge and gateway address: LOCALBOOT_BRIDGE=NAME,CIDR (e.g. lbr1,10.78.0.1/24 gives a second
    run on this machine its own) or lbr0 on 10.77.0.1/24; under xdist, the worker's own derived from it."""
    name, cidr = os.environ.get("LOCALBOOT_BRIDGE", "lbr0,10.77.0.1/24").split(",")
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, …: set by pytest-xdist in its workers
    return (name, cidr) if worker is None else worker_bridge(name, cidr, int(worker.removeprefix("gw")))


@pytest.fixture(scope="module")
def release() -> str:
    """The Debian release of a module's guests: the default image's (13); a module may override it."""
    from localboot import DEFAULT_RELEASE

    return DEFAULT_RELEASE


@pytest.fixture(scope="session")
def network():
    """The local guests' bridge and NAT, one for the whole run (a guest may serve several modules: see
    `default_site`), one per worker under xdist (`run_bridge`); the run leaves the host as it found it."""
    from localboot.requirements import check_host

    missing = check_host()
    if missing:
        skip_or_fail("; ".join(missing))
    from localboot.network import bridge_network

    # Another run on this machine (a benchmark, a second pytest) may hold the bridge: wait for it, bounded.
    name, cidr = run_bridge()
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


# --- the lanes' timeline -------------------------------------------------------------------------------------
# Where a run's time went: each worker's modules, from the reports' own start and stop, printed at the end of a run
# in lanes, so a slow CI run says which lane was long and what waited in it. Filled in the controller only: only
# there do reports carry the worker (`report.node`).
LANE_SPANS: dict[tuple[str, str], list[float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    worker = getattr(getattr(report, "node", None), "gateway", None)
    if worker is not None:
        span = LANE_SPANS.setdefault((worker.id, lane_of(report.nodeid)), [report.start, report.stop])
        span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)


def lane_timeline(spans: dict[tuple[str, str], list[float]], at_least: float = 60) -> list[str]:
    """Each worker's modules that took `at_least` seconds, in the order they ran, then when the worker ended and
    its shorter modules summed: minutes from the run's first test."""
    if not spans:
        return []
    zero = min(start for start, _ in spans.values())
    lines = []
    for worker in sorted({worker for worker, _ in spans}):
        own = sorted((start, stop, lane) for (of, lane), (start, stop) in spans.items() if of == worker)
        shorter = [stop - start for start, stop, _ in own if stop - start < at_least]
        lines += [
            f"{worker} {(start - zero) / 60:5.1f} → {(stop - zero) / 60:5.1f} min  {lane}"
            for start, stop, lane in own
            if stop - start >= at_least
        ]
        end = max(stop for _, stop, _ in own)
        total = sum(shorter) / 60
        lines.append(f"{worker} ends at {(end - zero) / 60:.1f} min; {len(shorter)} shorter: {total:.1f} min")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = lane_timeline(LANE_SPANS)
    if lines:
        terminalreporter.section("lanes")
        for line in lines:
            terminalreporter.write_line(line)
