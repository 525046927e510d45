"""What the tests' request loop costs the deploy it watches: a one-line change's `up` with no loop, with clients
sending back to back, and with clients paced, in turns on one guest.

    sudo .venv/bin/python -m bench.request_loop [--rounds 3] [--clients 1] [--interval 0.05]

The tests wrap every deploy and roll in a `RequestLoop` (harness/localsite.py) to show that no request fails.
Back to back, each client keeps a CPU busy (the client, nginx, gunicorn, Django, PostgreSQL) on a machine whose
two cores the deploy and two other guests' lanes also need. The modes take turns (A B C A B C …) on the same
guest so that the machine's noise falls on all of them; printed: each round, each mode's median, and the ratios
to the deploy with no loop. Then what each loop costs the machine by itself: the cores busy (/proc/stat) while it
runs against the idle site (the guest's processes and the clients', in CPU seconds, which the machine's other work
moves less than it moves wall time), in turns again — what the other lanes of a test run lose while a loop watches
a deploy.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """CPU time so far of `root` and every process under it, with the children they reaped (/proc/PID/stat)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS

    def under(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 0)
        return False

    return sum(seconds for pid, seconds in times.items() if under(pid))


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.05, help="paced: s between a client's request starts")
    parser.add_argument("--seconds", type=float, default=15, help="each mode's turn against the idle site")
    args = parser.parse_args()

    from bench.common import APP, ROOT, header, median
    from harness.localsite import RequestLoop, change_home_page, http_get, local_site
    from localboot.network import bridge_network

    header("bench/request_loop.py")
    modes: dict[str, dict[str, Any] | None] = {
        "no loop": None,
        f"{args.clients} back to back": {"clients": args.clients},
        f"{args.clients} paced {args.interval * 1000:.0f} ms": {"clients": args.clients, "interval": args.interval},
    }
    rows: dict[str, list[tuple[float, int]]] = {mode: [] for mode in modes}
    cost: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="request-loop-") as work:
        app = Path(work) / APP
        shutil.copytree(
            ROOT / "examples" / APP,
            app,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "media", "staticfiles"),
        )
        with bridge_network() as network, local_site(network, "benchrl", {"app": {"source": str(app)}}) as site:
            for index in range(args.rounds):
                for number, (mode, loop_args) in enumerate(modes.items()):
                    marker = f"r{index}-m{number}"  # each up a new release
                    change_home_page(app, marker)
                    loop = RequestLoop(site.url + "/", **loop_args) if loop_args else None
                    started = time.monotonic()
                    if loop:
                        with loop:
                            site.up()
                            took = time.monotonic() - started
                    else:
                        site.up()
                        took = time.monotonic() - started
                    assert f"release:{marker}".encode() in http_get(site.url + "/")[2], "the new release is not live"
                    assert loop is None or loop.failed == 0, (mode, loop.errors[:3])
                    requests = loop.ok if loop else 0
                    rows[mode].append((took, requests))
                    print(f"round {index + 1}, {mode}: up {took:.1f} s, {requests} requests", file=sys.stderr)
            # What a loop costs the machine by itself: CPU while it runs against the idle site, the
            # modes in turns again (the other lanes of a test run pay this while a loop watches a deploy).
            for index in range(args.rounds):
                for mode, loop_args in modes.items():
                    # CPU time (not the machine's busy share, which other work on it moves): the guest's processes
                    # (nginx, gunicorn, PostgreSQL answer the loop) and this process (the loop's clients).
                    guest = site.guest._proc.pid  # noqa: SLF001 — the nspawn process, the guest's root
                    before = cpu_seconds(guest) + own_cpu_seconds()
                    if loop_args:
                        with RequestLoop(site.url + "/", **loop_args):
                            time.sleep(args.seconds)
                    else:
                        time.sleep(args.seconds)
                    cores = (cpu_seconds(guest) + own_cpu_seconds() - before) / args.seconds
                    cost[mode].append(cores)
                    print(f"round {index + 1}, {mode}, idle site: {cores:.2f} cores", file=sys.stderr)
    print(f"\n{args.rounds} rounds; the modes in turns on one guest\n")
    base = median([took for took, _ in rows["no loop"]])
    for mode, values in rows.items():
        took = median([t for t, _ in values])
        requests = median([float(r) for _, r in values])
        print(f"{mode:>22}: median `up` {took:5.1f} s, {requests:6.0f} requests; ÷ no loop {took / base:.2f}")
    idle = median(cost["no loop"])
    print(f"\nCPU of the guest and the clients, {args.seconds:.0f} s against the idle site (median of {args.rounds}):")
    for mode, values in cost.items():
        own = median(values) - idle
        print(f"{mode:>22}: {median(values):.2f} cores; the loop's own {own:+.2f}")


if __name__ == "__main__":
    main()
