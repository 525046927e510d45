"""What a request with CONN_MAX_AGE=0 still pays through the pooler, piece by piece (the basis of the
pooler's settings in docs/performance.md).

    sudo .venv/bin/python -m bench.pooler_variants [--seconds 10] [--rounds 2]

One guest at the default settings; every process of the guest pinned to one core (wrk on the other). The
home page (~100 rows) is loaded with wrk -c50 while the guest is changed by hand between variants:
  deployed       — as configure-host writes it (SCRAM to PgBouncer over 127.0.0.1, PostgreSQL TimeZone Etc/UTC)
  tz-utc         — PostgreSQL `timezone = 'UTC'`: Django (USE_TZ) no longer sends SET TIME ZONE per connection
  tz-utc+md5     — and clients authenticate to PgBouncer with md5 (auth file with the password) instead of SCRAM
  tz-utc+md5+uds — and the app connects over PgBouncer's Unix socket instead of loopback TCP
Configs alternate within each round; medians printed.
"""

from __future__ import annotations

import argparse

from bench.common import APP, gsh, header, median, pin_guest, require, seed_rows, wrk
from harness.localsite import http_get, local_site
from localboot.network import bridge_network

VARIANTS = ["deployed", "tz-utc", "tz-utc+md5", "tz-utc+md5+uds"]


def apply(guest, variant: str) -> None:
    tz = variant != "deployed"
    md5 = "md5" in variant
    uds = "uds" in variant
    tz_line = "echo \"timezone = 'UTC'\" > $conf/90-bench.conf" if tz else "rm -f $conf/90-bench.conf"
    script = (
        """
set -e
conf=$(ls -d /etc/postgresql/*/main/conf.d | tail -n 1)
TZ_LINE
systemctl reload postgresql
cp -n /etc/pgbouncer/pgbouncer.ini /etc/pgbouncer/pgbouncer.ini.deployed
cp -n /etc/pgbouncer/userlist.txt /etc/pgbouncer/userlist.txt.deployed
cp -n /etc/APP/env /etc/APP/env.deployed
cp /etc/pgbouncer/pgbouncer.ini.deployed /etc/pgbouncer/pgbouncer.ini
cp /etc/pgbouncer/userlist.txt.deployed /etc/pgbouncer/userlist.txt
cp /etc/APP/env.deployed /etc/APP/env
password=$(sed -n "s/^DJANGO_DB_PASSWORD='\\(.*\\)'$/\\1/p" /etc/APP/env)
if MD5; then
    sed -i 's/^auth_type = .*/auth_type = md5/' /etc/pgbouncer/pgbouncer.ini
    printf '"%s" "%s"\\n' APP "$password" > /etc/pgbouncer/userlist.txt
fi
if UDS; then
    sed -i -e "s|^DJANGO_DB_HOST=.*|DJANGO_DB_HOST='/var/run/postgresql'|" /etc/APP/env
fi
systemctl restart pgbouncer
systemctl restart gunicorn.service
""".replace("TZ_LINE", tz_line)
        .replace("APP", APP)
        .replace("MD5", str(md5).lower())
        .replace("UDS", str(uds).lower())
    )
    gsh(guest, script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    require("wrk")
    header("bench/pooler_variants.py")
    with bridge_network() as network, local_site(network, "benchpv") as site:
        guest = site.guest
        seed_rows(guest, 100)
        pin_guest(guest, "0")
        results: dict[str, list] = {variant: [] for variant in VARIANTS}
        for index in range(args.rounds):
            for variant in VARIANTS if index % 2 == 0 else list(reversed(VARIANTS)):
                apply(guest, variant)
                pin_guest(guest, "0")
                assert http_get(site.url + "/")[0] == 200
                wrk(site.url + "/", connections=10, seconds=2, cpus="1")
                results[variant].append(
                    wrk(
                        site.url + "/",
                        connections=50,
                        seconds=args.seconds,
                        headers={"Accept-Encoding": "gzip"},
                        cpus="1",
                    )
                )
        print(
            f"home page, 1 core, wrk -c50 -d{args.seconds}s, CONN_MAX_AGE=0 through PgBouncer; medians of {args.rounds}"
        )
        for variant in VARIANTS:
            runs = results[variant]
            print(
                f"  {variant:<16} {median([r.requests_per_second for r in runs]):6.0f} req/s   "
                f"p99 {median([r.p99_ms for r in runs]):7.0f} ms   "
                f"errors {sum(r.non_2xx_3xx + r.socket_errors for r in runs)}"
                f"   runs: {', '.join(f'{r.requests_per_second:.0f}' for r in runs)}"
            )


if __name__ == "__main__":
    main()
