"""Boot the program's exact first-boot document on a local Debian guest, then deploy with its own steps.

    sudo .venv/bin/python -m tools.localup [--stack dev] [--release trixie|bookworm] [--outputs FILE]

Try the whole site before paying for EC2 (Linux, root): the program runs under Pulumi's mocks with the
guest's address standing in for the Elastic IP; the guest (systemd-nspawn, see localboot/) is seeded with
the rendered user-data byte for byte, and the remote steps run over real SSH with the generated key.
It prints the site's address and admin password, and tears everything down on Ctrl-C. `--outputs FILE` writes
the stack outputs as `pulumi stack output --json --show-secrets` would (mode 0600: the SSH key is in them), for
the operator's verbs: `python3 -m djangoship --outputs-file FILE status`.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

import yaml

from harness.localsite import IMAGES, local_site, write_outputs
from harness.mockrun import PROJECT, PROJECT_ROOT
from localboot import DEFAULT_RELEASE
from localboot.network import bridge_network


def stack_config(stack: str) -> dict[str, Any]:
    """This project's keys from Pulumi.<stack>.yaml, without the namespace."""
    path = PROJECT_ROOT / f"Pulumi.{stack}.yaml"
    values = (yaml.safe_load(path.read_text()) or {}).get("config", {}) if path.exists() else {}
    prefix = f"{PROJECT}:"
    return {key[len(prefix) :]: value for key, value in values.items() if key.startswith(prefix)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev", help="take the config from Pulumi.<stack>.yaml (default dev)")
    parser.add_argument(
        "--release", default=DEFAULT_RELEASE, choices=sorted(IMAGES), help="Debian release of the guest"
    )
    parser.add_argument(
        "--data", type=Path, help="a host folder to keep the guest's data in (stands in for the data volume)"
    )
    parser.add_argument(
        "--outputs",
        type=Path,
        help="write the stack outputs here (JSON, 0600) for `python3 -m djangoship --outputs-file`",
    )
    args = parser.parse_args()
    config = stack_config(args.stack)
    config.pop("instanceType", None)  # the guest has the host's CPUs and memory; keep the default sizing
    with bridge_network() as network, local_site(network, "localup", config, release=args.release) as site:
        for step in site.steps:
            print(f"  {step.name:<28} {step.seconds:6.1f} s")
        print(f"\nfirst boot → first 200 through nginx: {site.first_boot_seconds:.1f} s")
        print(
            f"site:  {site.url}/\nadmin: {site.url}/admin/  user {site.run.outputs['adminUser']}, "
            f"password {site.run.outputs['adminPassword']}"
        )
        if args.outputs:
            write_outputs(site, args.outputs)
            print(f"outputs: {args.outputs}  (python3 -m djangoship --outputs-file {args.outputs} status)")
        print("Ctrl-C tears the guest down.")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
