"""Redeploy of a one-line change under a steady request loop: how long `pulumi up` takes, and failed requests.

    sudo .venv/bin/python -m bench.redeploy [--rounds 3] [--clients 4] [--compare REV]

The example app is copied to a temporary folder (the app source), deployed on one guest, then its home
page template gets a one-line change and `up` runs again (upload + deploy steps only: the virtualenv is
reused) while `--clients` threads GET / (as the tests do: paced since 2026-12-07, back to back before; each bounded
to 300 s), counting anything but a 200.
Repeated `--rounds` times on the same guest; median and every round printed. With `--compare REV`, git
revision REV is measured the same way on a guest of its own, first, and the ratio of the medians printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def measure(rounds: int, clients: int) -> list[dict[str, Any]]:
    """One guest, `rounds` one-line changes deployed under `clients` request loops: per round, the `up`'s
    seconds, the steps that ran, requests ok and failed."""
    # Imported here: with --compare this runs inside an older tree (its harness, its program).
    from bench.common import APP, ROOT
    from harness.localsite import RequestLoop, change_home_page, http_get, local_site
    from localboot.network import bridge_network

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="redeploy-") as work:
        app = Path(work) / APP
        shutil.copytree(
            ROOT / "examples" / APP,
            app,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "media", "staticfiles"),
        )
        with bridge_network() as network, local_site(network, "benchrd", {"app": {"source": str(app)}}) as site:
            for index in range(rounds):
                change_home_page(app, f"r{index}")
                with RequestLoop(site.url + "/", clients) as loop:
                    started = time.monotonic()
                    steps = site.up()
                    took = time.monotonic() - started
                    time.sleep(1)
                ran = {step.name.removeprefix(f"{APP}-"): step.seconds for step in steps if step.ran}
                served = http_get(site.url + "/")[2]
                assert f"release:r{index}".encode() in served, "the new release is not live"
                rows.append({"up": took, "steps": ran, "ok": loop.ok, "failed": loop.failed})
                print(
                    f"round {index + 1}: up {took:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in ran.items())}); "
                    f"requests ok {loop.ok}, failed {loop.failed} {loop.errors[:3] or ''}",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def summary(name: str, rows: list[dict[str, Any]]) -> float:
    from bench.common import median

    for index, row in enumerate(rows, 1):
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in row["steps"].items())
        requests = f"requests ok {row['ok']}, failed {row['failed']}"
        print(f"  {name} round {index}: up {row['up']:.1f} s ({steps}); {requests}")
    took = median([row["up"] for row in rows])
    print(
        f"{name}: median `up` for a one-line change {took:.1f} s (target ≤ 5 s); failed requests "
        f"{sum(row['failed'] for row in rows)} of {sum(row['ok'] + row['failed'] for row in rows)} (target 0)\n"
    )
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV, on a guest of its own")
    parser.add_argument("--project", type=Path, default=HERE, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path[:0] = [str(args.project), str(HERE)]

    if args.json:  # a child run in an exported tree
        args.json.write_text(json.dumps(measure(args.rounds, args.clients)))
        return

    from bench.common import child_run, header, revision_tree

    header("bench/redeploy.py")
    columns: dict[str, list[dict[str, Any]]] = {}
    if args.compare:
        with revision_tree(args.compare) as (rev, tree):
            rounds = ["--rounds", str(args.rounds), "--clients", str(args.clients)]
            columns[f"{rev} (before)"] = child_run(str(Path(__file__).resolve()), tree, *rounds)
    columns["working tree"] = measure(args.rounds, args.clients)
    print(
        f"\n{args.clients} clients (harness.localsite.RequestLoop) during each `up`; {args.rounds} rounds per guest\n"
    )
    medians = [summary(name, rows) for name, rows in columns.items()]
    if args.compare:
        print(f"after ÷ before, median `up`: {medians[1] / medians[0]:.2f}")


if __name__ == "__main__":
    main()
