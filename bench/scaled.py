"""The scaled profile beside the single server, in one run: how long a server takes to serve, how long a roll
takes, and requests per second through the load balancer with one and with two app servers.

    sudo .venv/bin/python -m bench.scaled [--seconds 10] [--rounds 3]

1. One server (the default settings): guest start → first 200 through nginx (harness.localsite), then the home
   page under wrk at the server's own address.
2. The scaled profile with one app server (harness.scaledsite: the launch template's user-data, the AWS stand-ins):
   launch → in service (its boot completed the lifecycle hook) → healthy in the load balancer stand-in (the
   target group's own checks); the home page under wrk through the load balancer stand-in (with CloudFront's
   origin header, as only CloudFront may send).
3. A second app server launched as the group would (desired capacity 2): the same wrk.
4. A new release rolled through both (the group's instance refresh): `pulumi up` → the refresh done.

Everything shares this machine's cores (the guests, the stand-ins, wrk): a second app server adds no CPU here,
so its row shows how the balancer spreads the load, not the capacity two EC2 instances would add. The load
balancer stand-in is a Python proxy with its own ceiling, printed beside the rows (wrk to a server's own address
against wrk through it). Load goes only to guests on the local bridge and to the stand-ins on loopback.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import header, median, wrk

ROOT = Path(__file__).resolve().parent.parent
APP = "photofeed"


def rows(label: str, results: list) -> float:
    rates = [r.requests_per_second for r in results]
    failed = sum(r.non_2xx_3xx + r.socket_errors for r in results)
    if failed:  # a rate of error pages measures nothing
        raise SystemExit(f"{label}: {failed} requests failed (status or socket), the figures would be of errors")
    print(
        f"  {label:44s} {median(rates):8.0f} req/s   p99 {median([r.p99_ms for r in results]):7.1f} ms"
        f"   failed {failed}   runs: {', '.join(f'{x:.0f}' for x in rates)}"
    )
    return median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    import os

    from harness.localsite import change_home_page, local_site
    from harness.scaledsite import scaled_site
    from localboot.network import bridge_network

    header("bench/scaled.py")
    name, cidr = os.environ.get("LOCALBOOT_BRIDGE", "lbr0,10.77.0.1/24").split(",")
    load = {"connections": 20, "seconds": options.seconds}
    with bridge_network(name, cidr, lock_wait=1800) as network, tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        app = work / APP
        shutil.copytree(ROOT / "examples" / APP, app, ignore=shutil.ignore_patterns("__pycache__", "media"))

        print("\n1. one server (the default settings)")
        with local_site(network, "single", {"app": {"source": str(app)}}) as single:
            print(f"  guest start → first 200 through nginx        {single.first_boot_seconds:8.1f} s")
            one = rows(
                "home page at the server's address", [wrk(single.url + "/", **load) for _ in range(options.rounds)]
            )

        config = {
            "app": {
                "source": str(app),
                "requirements": "requirements/scaled.txt",
                "env": {"AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"},
            },
            "appMinSize": 1,
            "appDesiredCapacity": 1,
        }
        print("\n2. the scaled profile, one app server")
        started = time.monotonic()
        with scaled_site(network, config, work, log=lambda line: None) as site:
            (first,) = site.group.in_service()
            in_service = first.in_service_at - first.launched_at
            site.balancer.wait_healthy(first.address, 300)
            healthy = time.monotonic() - started
            print(f"  launch → in service (lifecycle hook done)    {in_service:8.1f} s")
            print(f"  stand-ins up + launch → healthy in the LB    {healthy:8.1f} s")
            # What CloudFront sends the origin for a visitor: the site's host, the viewer's https, the secret
            # header the listener's rule wants. Sent to the app server itself too, or Django refuses the host.
            secret = dict(site.cdn.origin_headers) | {"Host": site.cdn.domain, "CloudFront-Forwarded-Proto": "https"}
            direct = rows(
                "home page at the app server's address",
                [wrk(f"http://{first.address}/", headers=secret, **load) for _ in range(options.rounds)],
            )
            through_one = rows(
                "through the load balancer, 1 server",
                [wrk(site.balancer.url + "/", headers=secret, stand_in=True, **load) for _ in range(options.rounds)],
            )

            print("\n3. a second app server (desired capacity 2)")
            began = time.monotonic()
            (second,) = site.group.launch_many(1, site.group.version)
            site.balancer.wait_healthy(second.address, 300)
            print(f"  launch → healthy in the LB                   {time.monotonic() - began:8.1f} s")
            through_two = rows(
                "through the load balancer, 2 servers",
                [wrk(site.balancer.url + "/", headers=secret, stand_in=True, **load) for _ in range(options.rounds)],
            )

            print("\n4. a new release rolled through both servers")
            change_home_page(app, "bench-roll")
            began = time.monotonic()
            result = site.up()
            print(
                f"  pulumi up → refresh {result.status if result else 'none':10s}             "
                f"{time.monotonic() - began:8.1f} s ({len(result.launched) if result else 0} launched at once)"
            )

    print("\nratios")
    print(f"  1 app server through the LB ÷ one server at its address:   {through_one / one:.2f}×")
    print(f"  2 app servers ÷ 1, through the LB:                         {through_two / through_one:.2f}×")
    print(f"  the LB stand-in's cost: through it ÷ at the app server:    {through_one / direct:.2f}×")


if __name__ == "__main__":
    main()
