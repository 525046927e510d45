"""First boot → first 200 through nginx, median of fresh guests, split into phases.

    sudo .venv/bin/python -m bench.first_boot [--guests 3]
    sudo .venv/bin/python -m bench.first_boot --compare REV     # REV (e.g. HEAD) vs the working tree, alternating
    sudo .venv/bin/python -m bench.first_boot --app wagtailsite  # a Wagtail-sized app instead of the example

Each guest boots the program's own user-data (the default settings; with `--app`, one of the tests' real-shaped
projects, tests/foreign_apps.py, as the app source, under the example's app name) and replays its remote steps
(harness.localsite.local_site); the clock starts when systemd-nspawn starts the guest and stops at the first
200 for / through nginx (polled every 0.2 s while the steps run). Independent steps run side by side, as
Pulumi runs them (connect → boot → configure, beside connect → upload → build). Phases come from cloud-init's
own records (`cloud-init analyze blame`, its result.json) and the steps' timings; inside the build and deploy
steps, from what they leave on disk (the virtualenv's pyvenv.cfg → .complete for venv + pip, the release's
staticfiles.json / .complete for collectstatic + gzip) and PostgreSQL's django_migrations.applied (migrate).

`--compare REV` exports REV with `git archive` into a temporary folder and runs the same measurement there
(a subprocess with that tree first on sys.path), one guest of REV then one of the working tree, in turn, and
prints both columns and the ratio of each pair: on a shared machine, pairs booted back to back compare fairly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
APP = "photofeed"
PHASES = [
    ("cloud-init: package update + install", "packages"),
    ("cloud-init: firstboot script (runcmd)", "firstboot"),
    ("cloud-init done (since guest start)", "cloud_init_done"),
    ("step connect (SSH dial + host key)", "step_connect"),
    ("step boot (wait for cloud-init)", "step_boot"),
    ("step configure (env, PostgreSQL, pgbouncer, nginx)", "step_configure"),
    ("step upload (beside boot)", "step_upload"),
    ("step build (beside boot and configure)", "step_build"),
    ("  build: venv + pip install", "pip"),
    ("step deploy", "step_deploy"),
    ("  deploy: compileall + checks + collectstatic + gzip", "static"),
    ("  deploy: migrate", "migrate"),
    ("step superuser", "step_superuser"),
    ("first 200 through nginx (since guest start)", "first_200"),
]


def guest_float(guest, command: str) -> float | None:
    result = guest.exec(["bash", "-c", command], timeout=60)
    text = result.stdout.decode().strip()
    try:
        return float(text.splitlines()[-1])
    except (ValueError, IndexError):
        return None


def app_config(app: str) -> dict:
    """The stack's config for `--app`: {} for the example app, else the tests' project of that name (the same
    project for both columns of --compare: the builder is this tree's), deployed under the example's name."""
    if app == APP:
        return {}
    sys.path.append(str(HERE / "tests"))
    from foreign_apps import build

    project = build(app, Path(tempfile.mkdtemp(prefix=f"bench-{app}-")))
    # The workers project's settings need Redis (REDIS_URL), as its test guest has it.
    return {"app": {"source": str(project.folder), "name": APP, **project.config}, "redis": app == "workers"}


def measure_one(network, name: str, app: str) -> dict[str, float]:
    from harness.localsite import local_site

    with local_site(network, name, app_config(app)) as site:
        guest = site.guest
        figures: dict[str, float] = {"first_200": site.first_boot_seconds}
        for step in site.steps:
            figures["step_" + step.name.removeprefix(f"{APP}-")] = step.seconds
        blame = guest.exec(["cloud-init", "analyze", "blame"], timeout=60).stdout.decode()
        for seconds, module in re.findall(r"([\d.]+)s \(([^)]+)\)", blame):
            if module.endswith("package-update-upgrade-install") or module.endswith("package_update_upgrade_install"):
                figures["packages"] = figures.get("packages", 0) + float(seconds)
            if module.endswith("scripts-user") or module.endswith("scripts_user"):
                figures["firstboot"] = figures.get("firstboot", 0) + float(seconds)
        # Wall clock of the guest start: the guest shares the host's clock.
        started_wall = time.time() - (time.monotonic() - guest.boot_started_at)
        done = guest_float(
            guest,
            "stat -c %.3Y /run/cloud-init/result.json 2> /dev/null || stat -c %.3Y /var/lib/cloud/data/result.json",
        )
        if done:
            figures["cloud_init_done"] = done - started_wall
        venv = f"/srv/{APP}/venvs/*"
        start = guest_float(guest, f"stat -c %.3Y {venv}/pyvenv.cfg | sort -n | head -n 1")
        end = guest_float(guest, f"stat -c %.3Y {venv}/.complete | sort -n | tail -n 1")
        if start and end:
            figures["pip"] = end - start
        release = f"/srv/{APP}/current/"
        linked = guest_float(guest, f"stat -c %.3Y {release}venv")  # the symlink itself: made right after pip
        complete = guest_float(guest, f"stat -c %.3Y {release}.complete")
        if linked and complete:
            figures["static"] = complete - linked
        migrated = (
            guest.exec(
                [
                    "bash",
                    "-c",
                    f"runuser -u postgres -- psql -X -qAt -d {APP} -c "
                    '"SELECT extract(epoch FROM max(applied) - min(applied)) FROM django_migrations"',
                ],
                timeout=60,
            )
            .stdout.decode()
            .strip()
        )
        if migrated:
            figures["migrate"] = float(migrated)
        packages = guest.exec(["bash", "-c", "dpkg-query -W -f '${Package}\\n' | wc -l"], timeout=60).stdout.decode()
        figures["installed_packages"] = float(packages.strip() or 0)
        return figures


def measure(guests: int, app: str) -> list[dict[str, float]]:
    """One guest after the other: the program runs under Pulumi's mocks (process-global state), and a
    second guest booting at the same time would share the two CPUs and the mirror."""
    # Not bench.common.bench_network: with --compare this runs inside an older tree, whose bench/ may lack it.
    from localboot.network import bridge_network

    name, cidr = os.environ.get("LOCALBOOT_BRIDGE", "lbr0,10.77.0.1/24").split(",")
    results: list[dict[str, float]] = []
    with bridge_network(name, cidr) as network:
        for index in range(guests):
            results.append(measure_one(network, f"fb{index + 1}", app))
            print(
                f"[first boot] guest done: first 200 after {results[-1]['first_200']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    return results


def med(runs: list[dict[str, float]], key: str) -> float | None:
    values = sorted(run[key] for run in runs if key in run)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def table(columns: dict[str, list[dict[str, float]]]) -> None:
    names = list(columns)
    print(f"{'phase (median s)':<52}" + "".join(f"{name:>16}" for name in names))
    for label, key in PHASES + [("packages installed in the guest (count)", "installed_packages")]:
        cells = []
        for name in names:
            value = med(columns[name], key)
            cells.append(f"{value:16.1f}" if value is not None else f"{'—':>16}")
        print(f"{label:<52}" + "".join(cells))
    for name in names:
        runs = ", ".join(f"{run['first_200']:.1f}" for run in columns[name])
        print(f"  {name}: first 200 per guest: {runs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guests", type=int, default=3)
    parser.add_argument("--app", choices=(APP, "wagtailsite", "workers"), default=APP, help="the app deployed")
    parser.add_argument("--project", type=Path, default=HERE, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV, side by side")
    args = parser.parse_args()
    sys.path[:0] = [str(args.project), str(HERE)]

    if args.json:  # a child run in an exported tree
        args.json.write_text(json.dumps(measure(args.guests, args.app)))
        return

    from bench.common import child_run, header, revision_tree

    header("bench/first_boot.py")
    columns: dict[str, list[dict[str, float]]] = {}
    if args.compare:
        before: list[dict[str, float]] = []
        after: list[dict[str, float]] = []
        with revision_tree(args.compare) as (rev, tree):
            # Alternating, one guest of each in turn: on a machine others share, load that comes and goes
            # falls on both columns alike, and the ratio between them stays meaningful.
            for _ in range(args.guests):
                before += child_run(str(Path(__file__).resolve()), tree, "--guests", "1", "--app", args.app)
                after += measure(1, args.app)
        columns[f"{rev} (before)"] = before
        columns["working tree"] = after
    else:
        columns["working tree"] = measure(args.guests, args.app)
    print(
        f"{args.guests} fresh guests per column, one at a time (alternating with --compare); default settings, "
        f"app: {args.app}\n"
    )
    table(columns)
    if args.compare:
        pairs = [(b["first_200"], a["first_200"]) for b, a in zip(columns[f"{rev} (before)"], after, strict=True)]
        ratios = ", ".join(f"{a / b:.2f}" for b, a in pairs)
        print(f"  after ÷ before, first 200, guest by guest (booted back to back): {ratios}")


if __name__ == "__main__":
    main()
