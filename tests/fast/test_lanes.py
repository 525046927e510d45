"""The suite's lanes (tests/conftest.py, "lanes"): every guest module runs whole on one pytest-xdist worker, the
modules sharing `default_site` on the same one, and each worker's guests on a bridge and subnet of its own.

No guest here: the sources are read, the collection check is fed stand-in items, and the bridges are computed.
"""

from __future__ import annotations

import ast
import importlib.util
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import (
    DEFAULT_SITE_GROUP,
    GROUPS,
    LANE_PROBLEMS,
    lane_of,
    lane_problems,
    lane_timeline,
    skip_or_fail,
    worker_bridge,
)

from localboot import Guest
from localboot.network import BridgeNetwork

TESTS = Path(__file__).resolve().parent.parent
# Other runs' bridges on a shared machine (a second run's LOCALBOOT_BRIDGE, test_localboot_guest's own).
OTHER_BRIDGES = ("lbr0", "lbr1", "lbr2", "lbrlab")


def _takes(source: str, *fixtures: str) -> bool:
    """A function of the module (a test or a fixture) takes one of `fixtures` by name."""
    return any(
        isinstance(node, ast.FunctionDef) and set(fixtures) & {arg.arg for arg in node.args.args}
        for node in ast.walk(ast.parse(source))
    )


def _boots_guests(source: str) -> bool:
    """Read from the source: marked `localboot`, or a test or fixture taking the run's bridge or guest (`network`,
    `default_site`), or fixtures imported from a module that boots guests."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and ast.unparse(node) == "pytest.mark.localboot":
            return True
        if isinstance(node, ast.ImportFrom) and f"{node.module}.py" in GROUPS:
            return True
    return _takes(source, "network", "default_site")


def _modules() -> dict[str, str]:
    return {path.relative_to(TESTS).as_posix(): path.read_text() for path in sorted(TESTS.rglob("test_*.py"))}


def test_every_module_that_boots_guests_has_a_group():
    unlisted = [name for name, source in _modules().items() if _boots_guests(source) and name not in GROUPS]
    assert not unlisted, f"add a row for each to GROUPS in tests/conftest.py: {unlisted}"


def test_every_row_is_a_module_and_a_group_s_rows_are_together():
    assert set(GROUPS) <= set(_modules()), set(GROUPS) - set(_modules())
    groups = list(GROUPS.values())
    for group in set(groups):
        first, last = groups.index(group), len(groups) - groups[::-1].index(group)
        assert groups[first:last] == [group] * (last - first), f"{group}'s rows are not next to each other"


def test_the_modules_sharing_default_site_share_a_group():
    users = [name for name, source in _modules().items() if _takes(source, "default_site")]
    assert users and {GROUPS.get(name) for name in users} == {DEFAULT_SITE_GROUP}, users


def _item(module: str, fixtures: tuple[str, ...] = (), localboot: bool = False) -> SimpleNamespace:
    """Enough of a pytest.Item for the collection check."""
    return SimpleNamespace(
        path=TESTS / module,
        fixturenames=list(fixtures),
        get_closest_marker=lambda name: object() if localboot and name == "localboot" else None,
    )


def test_the_collection_found_every_guest_module_in_the_table(request):
    """The collection's own check (conftest.lane_problems, on every collected test: the fast run collects all)."""
    assert request.config.stash.get(LANE_PROBLEMS, []) == []


def test_a_guest_module_without_a_row_is_named_and_still_runs_whole():
    listed, mocks = (
        _item("guests/test_local_boot.py", ("site", "default_site", "network")),
        _item("fast/test_program.py"),
    )
    new, marked = _item("guests/test_new_guest.py", ("site", "network")), _item("guests/test_marked.py", localboot=True)
    shares = _item("guests/test_more_pages.py", ("default_site", "network"))
    assert lane_problems([listed, mocks]) == []
    assert lane_problems([listed, mocks, new, marked, shares]) == [
        "guests/test_marked.py boots guests but has no row in GROUPS (tests/conftest.py)",
        "guests/test_more_pages.py boots guests but has no row in GROUPS (tests/conftest.py)",
        "guests/test_more_pages.py uses default_site: its row's group must be 'default_site'",
        "guests/test_new_guest.py boots guests but has no row in GROUPS (tests/conftest.py)",
    ]
    assert lane_of("tests/guests/test_new_guest.py::test_one") == lane_of(
        "tests/guests/test_new_guest.py::test_two[a::b]"
    )


def test_a_lane_is_a_row_s_group_or_a_whole_module():
    assert lane_of("tests/guests/test_local_boot.py::test_reboot_keeps_site_and_data") == "default_site"
    assert lane_of("tests/guests/test_performance.py::test_pgbouncer_is_the_only_way_in") == "default_site"
    assert lane_of("tests/guests/test_day2.py::test_rollback_without_rebuild") == "day2"
    assert lane_of("tests/rendered/test_nginx.py::test_nginx_t[https]") == "rendered/test_nginx.py"


def test_the_run_s_scheduler_hands_out_lanes(request):
    """With xdist (`-n 3 --dist loadgroup`), the scheduler is conftest's: each lane to one worker, whole."""
    if importlib.util.find_spec("xdist") is None:
        skip_or_fail("pytest-xdist is not installed (requirements-dev.txt)")
    config = SimpleNamespace(getvalue=lambda name: "loadgroup", option=request.config.option)
    scheduler = request.config.pluginmanager.hook.pytest_xdist_make_scheduler(config=config, log=None)
    assert scheduler._split_scope("tests/guests/test_debian12.py::test_pages_read_from_postgresql") == "debian12"
    assert scheduler._split_scope("tests/fast/test_program.py::test_ports") == "fast/test_program.py"


def test_default_site_s_users_outside_its_group_are_named(monkeypatch):
    monkeypatch.setitem(GROUPS, "guests/test_performance.py", "elsewhere")
    assert lane_problems([_item("guests/test_performance.py", ("default_site",))]) == [
        "guests/test_performance.py uses default_site: its row's group must be 'default_site'"
    ]


@pytest.mark.parametrize("base", ["lbr0,10.77.0.1/24", "lbr1,10.78.0.1/24", "localbootbridge,10.80.5.1/24"])
def test_each_worker_has_its_own_bridge_subnet_and_guest_names(base, tmp_path):
    name, cidr = base.split(",")
    bridges = [worker_bridge(name, cidr, worker) for worker in range(4)]
    own = ipaddress.IPv4Interface(cidr).network
    subnets = [ipaddress.IPv4Interface(gateway).network for _, gateway in bridges]
    assert len(set(subnets)) == len(subnets)
    for subnet in subnets:
        assert subnet.prefixlen == 24 and subnet.subnet_of(
            ipaddress.IPv4Network(f"{own.network_address}/16", strict=False)
        )
        assert not subnet.overlaps(own)
    machines = []
    for bridge, gateway in bridges:
        assert len(bridge) <= 15
        guest = Guest(
            BridgeNetwork(bridge, ipaddress.IPv4Interface(gateway)),
            "benchmem",
            b"#cloud-config\n",
            nameserver="192.0.2.53",
            run_root=tmp_path,
            log_dir=tmp_path,
        )
        assert len(f"vb-{guest.machine_name}") <= 15  # nspawn's host-side veth
        machines.append(guest.machine_name)
    others = {bridge[-3:] for bridge in OTHER_BRIDGES}
    assert len(set(machines)) == len(machines) and not {m[-3:] for m in machines} & others, machines


def test_workers_of_two_runs_side_by_side_do_not_collide():
    first = {worker_bridge("lbr0", "10.77.0.1/24", worker) for worker in range(3)}
    second = {worker_bridge("lbr1", "10.78.0.1/24", worker) for worker in range(3)}
    assert not {b[-3:] for b, _ in first} & {b[-3:] for b, _ in second}
    assert not {g for _, g in first} & {g for _, g in second}


def test_the_timeline_says_when_each_lane_ran_its_long_modules_and_ended():
    spans = {
        ("gw0", "scaled_servers"): [1000.0, 1000.0 + 17 * 60],
        ("gw0", "test_scaled.py"): [1000.0 + 17 * 60, 1000.0 + 17 * 60 + 30],
        ("gw1", "day2"): [1010.0, 1010.0 + 5 * 60],
    }
    assert lane_timeline(spans) == [
        "gw0   0.0 →  17.0 min  scaled_servers",
        "gw0 ends at 17.5 min; 1 shorter: 0.5 min",
        "gw1   0.2 →   5.2 min  day2",
        "gw1 ends at 5.2 min; 0 shorter: 0.0 min",
    ]
