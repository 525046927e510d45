"""Wall time of evaluating the program (`__main__.py`) under Pulumi's mocks, as `pulumi preview` would pay
for the program itself: each run in a fresh Python process, so imports count.

    .venv/bin/python -m bench.evaluation [--runs 5]

Runs `harness.mockrun.run_program({})` (the default stack config) in a new interpreter per run and times the
whole process from the outside (interpreter start, imports of pulumi/pulumi_aws/…, the program, the mocks).
No guest and no network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.common import ROOT, header, median

CHILD = "from harness.mockrun import run_program; run = run_program({}); assert run.outputs.get('url') is not None"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    header("bench/evaluation.py")
    subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, check=True, timeout=300)  # warm the page cache once
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, check=True, timeout=300)
        times.append(time.perf_counter() - started)
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300
    ).stderr
    heavy = sorted(
        (
            (int(line.split("|")[1]), line.split("|")[2].strip())
            for line in imports.splitlines()
            if line.startswith("import time:") and line.split("|")[1].strip().isdigit()
        ),
        reverse=True,
    )[:5]
    print(f"{sys.executable} -c run_program({{}}), fresh process each, {args.runs} runs (after one warm-up)")
    print(f"  median {median(times):.2f} s (target ≤ 2 s); runs: {', '.join(f'{t:.2f}' for t in times)}")
    print("  slowest imports (cumulative): " + "; ".join(f"{name} {us / 1e6:.2f} s" for us, name in heavy))


if __name__ == "__main__":
    main()
