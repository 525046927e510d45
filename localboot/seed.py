"""The NoCloud seed that stands in for EC2's metadata service: meta-data, network-config and user-data."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from ._util import GuestError


def host_nameserver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str:
    """The host's own IPv4 resolver, for the guest's network-config.

    A loopback stub (systemd-resolved) is unreachable from the guest, so its upstream file
    is used instead when present.
    """
    candidates = [resolv_conf, Path("/run/systemd/resolve/resolv.conf")]
    for path in candidates:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(parts[1])
                except ValueError:
                    continue
                if address.version == 4 and not address.is_loopback:
                    return str(address)
    raise GuestError(f"no non-loopback IPv4 nameserver in {', '.join(map(str, candidates))}")


def write_seed(
    seed: Path, meta_data: dict[str, Any], user_data: bytes, *, address: str, gateway: str, nameserver: str
) -> None:
    """cloud-init's NoCloud files in ``seed`` (root-only): ``address`` is the guest's, with its prefix length."""
    seed.mkdir(parents=True, exist_ok=True)
    seed.chmod(0o700)
    network_config = {
        "version": 1,
        "config": [
            {
                "type": "physical",
                "name": "host0",
                "subnets": [
                    {
                        "type": "static",
                        "address": address,
                        "gateway": gateway,
                        "dns_nameservers": [nameserver],
                    }
                ],
            }
        ],
    }
    # JSON is YAML, and needs no YAML library here.
    _write_private(seed / "meta-data", json.dumps(meta_data, indent=2).encode() + b"\n")
    _write_private(seed / "network-config", json.dumps(network_config, indent=2).encode() + b"\n")
    _write_private(seed / "user-data", user_data)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
