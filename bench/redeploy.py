"""Redeploy of a one-line change under a steady request loop: how long `pulumi up` takes, and failed requests.

    sudo .venv/bin/python -m bench.redeploy [--rounds 3] [--clients 4]

The example app is copied to a temporary folder (the app source), deployed on one guest, then its home
page template gets a one-line change and `up` runs again (upload + deploy steps only: the virtualenv is
reused) while `--clients` threads GET / back to back (each bounded to 300 s), counting anything but a 200.
Repeated `--rounds` times on the same guest; median and every round printed. Also `wrk` during one round
for the p99 while the release switches.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import APP, ROOT, header, median
from harness.localsite import RequestLoop, change_home_page, http_get, local_site
from localboot.network import bridge_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    header("bench/redeploy.py")
    with tempfile.TemporaryDirectory(prefix="redeploy-") as work:
        app = Path(work) / APP
        shutil.copytree(
            ROOT / "examples" / APP,
            app,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "media", "staticfiles"),
        )
        with bridge_network() as network, local_site(network, "benchrd", {"app": {"source": str(app)}}) as site:
            rows = []
            for index in range(args.rounds):
                change_home_page(app, f"r{index}")
                with RequestLoop(site.url + "/", args.clients) as loop:
                    started = time.monotonic()
                    steps = site.up()
                    took = time.monotonic() - started
                    time.sleep(1)
                ran = {step.name.removeprefix(f"{APP}-"): step.seconds for step in steps if step.ran}
                served = http_get(site.url + "/")[2]
                assert f"release:r{index}".encode() in served, "the new release is not live"
                rows.append((took, ran, loop.ok, loop.failed, loop.errors[:3]))
                print(
                    f"round {index + 1}: up {took:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in ran.items())}); "
                    f"requests ok {loop.ok}, failed {loop.failed} {loop.errors[:3] or ''}",
                    flush=True,
                )
            print(
                f"\nmedian `up` for a one-line change: {median([r[0] for r in rows]):.1f} s "
                f"(target ≤ 15 s); failed requests in all rounds: {sum(r[3] for r in rows)} "
                f"of {sum(r[2] + r[3] for r in rows)} (target 0); {args.clients} clients back to back"
            )


if __name__ == "__main__":
    main()
