"""Memory of the stack on a t2.nano-sized deploy: RSS and PSS of PostgreSQL, gunicorn (master + workers),
nginx and PgBouncer — idle, under load, and idle again after it — against t2.nano's 512 MiB.

    sudo .venv/bin/python -m bench.memory [--instance-type t2.nano] [--seconds 20] [--connections 20]
    sudo .venv/bin/python -m bench.memory --app workers --instance-type t2.micro

`--app workers` deploys the tests' `workers` project instead (tests/foreign_apps.py: ASGI, a Celery worker and a
`manage.py` command that runs for ever, a schedule, `redis: true`) and also reports Redis, the worker, the
command and everything else on the machine ("other": systemd, journald, sshd, …): the figures behind the memory
budget at preview (catalog/offerings.py MEMORY_MIB).

The program is run with `instanceType` set, so it sizes PostgreSQL, the gunicorn workers and the pool for
that instance (the guest itself has the host's memory). Figures come from the guest's /proc/<pid>/smaps_rollup
(Rss, Pss) for every process of each service, summed. RSS counts shared memory (PostgreSQL's shared_buffers,
gunicorn's copy-on-write pages) once per process; PSS divides it among the sharers, so PSS sums add up.
Load: `wrk` on the home page (a DB read of ~100 rows) from the host, bounded by -d.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import APP, gsh, header, pin_guest, require, seed_rows, wrk
from harness.localsite import http_get, local_site
from localboot.network import bridge_network

GROUPS = {
    "postgresql": ("postgres",),
    "gunicorn": ("gunicorn",),
    "nginx": ("nginx",),
    "pgbouncer": ("pgbouncer",),
    "redis": ("redis-server",),
    "celery": ("celery",),
    "manage.py": (),  # a command of app.processes, by its command line
    "other": (),  # the rest of the machine
}
SAMPLE = r"""
for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2> /dev/null) || continue
    exe=$(cat "$p/cmdline" 2> /dev/null | tr '\0' ' ' | cut -c1-80)
    awk -v comm="$comm" -v exe="$exe" '/^Rss:/ {r=$2} /^Pss:/ {p=$2}
        END {if (r) print comm "\t" r "\t" p "\t" exe}' "$p/smaps_rollup" 2> /dev/null
done
"""


def sample(guest) -> dict[str, tuple[float, float, int]]:
    """group → (RSS MiB, PSS MiB, processes)."""
    totals: dict[str, list[float]] = {group: [0.0, 0.0, 0] for group in GROUPS}
    for line in gsh(guest, SAMPLE).splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
            continue
        comm, rss, pss, cmdline = (fields + [""])[:4]
        for group, names in GROUPS.items():
            # gunicorn workers (and celery, manage.py) are python processes named by their command line.
            if comm in names or (group in ("gunicorn", "celery", "manage.py") and group in cmdline) or group == "other":
                totals[group][0] += int(rss) / 1024
                totals[group][1] += int(pss) / 1024
                totals[group][2] += 1
                break
    return {group: (values[0], values[1], int(values[2])) for group, values in totals.items()}


def show(title: str, figures: dict[str, tuple[float, float, int]]) -> tuple[float, float]:
    print(title)
    for group, (rss, pss, count) in figures.items():
        print(f"  {group:<12} {count:3d} proc   RSS {rss:7.1f} MiB   PSS {pss:7.1f} MiB")
    # The stack's total, as before "other" was reported: comparable with the earlier runs in bench/README.md.
    rss = sum(v[0] for group, v in figures.items() if group != "other")
    pss = sum(v[1] for group, v in figures.items() if group != "other")
    print(
        f"  {'total':<12}            RSS {rss:7.1f} MiB   PSS {pss:7.1f} MiB   (other left out)\n",
        flush=True,
    )
    return rss, pss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instance-type", default="t2.nano")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="gunicornWorkers (default 0: the program's sizing)")
    parser.add_argument(
        "--one-core", action="store_true", help="pin the guest to CPU 0 and wrk to CPU 1 (≈ t2's one vCPU)"
    )
    parser.add_argument("--conn-max-age", default="", help="also set app.env DJANGO_CONN_MAX_AGE (e.g. 60)")
    parser.add_argument("--app", choices=("photofeed", "workers"), default="photofeed")
    args = parser.parse_args()
    require("wrk")
    header("bench/memory.py")
    config: dict = {"instanceType": args.instance_type}
    if args.workers:
        config["gunicornWorkers"] = args.workers
    if args.conn_max_age:
        config["app"] = {"env": {"DJANGO_CONN_MAX_AGE": args.conn_max_age}}
    if args.app == "workers":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from foreign_apps import build

        project = build("workers", Path(tempfile.mkdtemp(prefix="bench-workers-")))
        # Named like the example app, so that the paths below hold.
        config |= {"redis": True, "app": {"source": str(project.folder), "name": APP, **project.config}}
        del config["app"]["schedules"]["failing"]
    # LOCALBOOT_BRIDGE=NAME,CIDR: another bridge than lbr0, as the tests take it (tests/conftest.py).
    bridge = os.environ.get("LOCALBOOT_BRIDGE", "lbr0,10.77.0.1/24").split(",")
    with bridge_network(*bridge) as network, local_site(network, "benchmem", config) as site:
        guest = site.guest
        if args.app == "workers":
            for token in range(20):
                http_get(f"{site.url}/enqueue/bench{token}/")
        else:
            seed_rows(guest, 100)
        if args.one_core:
            pin_guest(guest, "0")
        settings = gsh(
            guest,
            "runuser -u postgres -- psql -X -qAt -c \"SELECT name || '=' || setting || coalesce(unit, '') "
            "FROM pg_settings WHERE name IN ('shared_buffers','max_connections','work_mem')\"",
        )
        workers = gsh(guest, f"grep -E '^(workers|worker_class)' /etc/{APP}/gunicorn.conf.py")
        print(
            f"{args.instance_type} sizing: {' '.join(settings.split())}; {' '.join(workers.split())}; "
            f"CONN_MAX_AGE={args.conn_max_age or '0 (app default)'}\n"
        )
        time.sleep(5)
        idle = show("idle, after the first deploy (one page view)", sample(guest))

        peak: dict[str, tuple[float, float, int]] = {}
        done = threading.Event()

        def sampler() -> None:
            while not done.wait(2):
                current = sample(guest)
                if sum(v[1] for v in current.values()) > sum(v[1] for v in peak.values()) if peak else True:
                    peak.clear()
                    peak.update(current)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        result = wrk(
            site.url + "/",
            connections=args.connections,
            seconds=args.seconds,
            headers={"Accept-Encoding": "gzip"},
            cpus="1" if args.one_core else None,
        )
        done.set()
        thread.join(timeout=30)
        loaded = show(
            f"under load (peak PSS sample; wrk -c{args.connections} {args.seconds}s"
            f"{', one core' if args.one_core else ''}: {result.requests_per_second:.0f} req/s, "
            f"p99 {result.p99_ms:.0f} ms)",
            peak,
        )
        time.sleep(5)
        after = show("idle again, 5 s after the load", sample(guest))
        time.sleep(60)
        settled = show(
            "idle, 65 s after the load (PgBouncer closes idle PostgreSQL connections after 60 s)", sample(guest)
        )
        print("settled idle RSS/PSS {:.0f}/{:.0f} MiB".format(*settled))
        available = gsh(guest, "grep -E 'MemTotal|MemAvailable' /proc/meminfo")
        print(
            "summary (MiB):  idle RSS/PSS {:.0f}/{:.0f}   load RSS/PSS {:.0f}/{:.0f}   "
            "after RSS/PSS {:.0f}/{:.0f}".format(*idle, *loaded, *after)
        )
        print("(guest /proc/meminfo is the host's:", " ".join(available.split()), ")")


if __name__ == "__main__":
    main()
