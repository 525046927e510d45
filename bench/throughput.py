"""Throughput and latency, side by side on ONE guest in one run, with `wrk --latency` from the host.

    sudo .venv/bin/python -m bench.throughput [--seconds 10] [--rounds 3] [--connections 50]

(a) static: the same stylesheet through nginx (gzip_static, pre-compressed at deploy) vs through
    gunicorn/Django (StaticFilesHandler behind the same nginx), `Accept-Encoding: gzip` on both.
(b) the home page (a DB read of the latest 20 of ~100 rows, rendered by a template):
      seed            — the tutorial's literal set-up: nginx proxy_pass to 127.0.0.1:8000, gunicorn
                        --workers 3 (sync), no upstream keepalive, no gzip of proxied pages, CONN_MAX_AGE=0,
                        PostgreSQL direct;
      ours            — this project's settings as deployed (PgBouncer on, the app's CONN_MAX_AGE=0);
      ours-nopool     — this project's settings with dbPooler=false (CONN_MAX_AGE=0: a backend per request);
      ours-persistent — this project's settings with app.env DJANGO_CONN_MAX_AGE=60 (through PgBouncer);
    on both cores, then with every process of the guest pinned to one core (≈ a t2's single vCPU; wrk on
    the other core). Configs alternate within each round; medians of the rounds are printed.
(c) ours-persistent on one core at the given concurrency for 30 s: non-2xx/3xx responses and socket errors
    (nginx must queue requests while the workers are busy, not fail them).

The guest runs the default instanceType (t2.micro sizing: 3 sync workers, the seed's count). The seed
variant is set up on the same guest by the bench itself: its nginx site and a gunicorn unit on 127.0.0.1:8000.
Traffic goes only to the guest's own address on the local bridge.
"""

from __future__ import annotations

import argparse
import re
import time

from bench.common import APP, WrkResult, gsh, header, median, pin_guest, require, seed_rows, write_file, wrk
from localboot.network import bridge_network
from tools.localup import http_get, local_site

STATIC_ROOT = f"/srv/{APP}/current/static"
SEED_SITE = """# The seed tutorial's nginx site, literally.
upstream seed_app {{
    server 127.0.0.1:8000;
}}
server {{
    listen 80;
    server_name {ip};
    location /static {{
        alias {static_root};
    }}
    location / {{
        proxy_pass http://seed_app;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
}}
"""
SEED_UNIT = f"""[Unit]
Description=the seed tutorial's gunicorn (bench only)
After=network.target postgresql.service
[Service]
User={APP}
Group={APP}
WorkingDirectory=/srv/{APP}/current
EnvironmentFile=/etc/{APP}/seed.env
ExecStart=/srv/{APP}/current/venv/bin/gunicorn --workers 3 --bind 127.0.0.1:8000 photofeed.wsgi:application
"""
# The same file served by Django: staticfiles' own handler (what runserver uses), behind the same nginx.
STATIC_WSGI = """import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "photofeed.settings")
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application
application = StaticFilesHandler(get_wsgi_application())
"""
# …and by django.views.static.serve through the app's whole middleware stack (the seed-style
# `urlpatterns += static(...)` route, forced on without DEBUG).
SERVE_WSGI = """import os
os.environ["DJANGO_SETTINGS_MODULE"] = "benchsettings"
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
"""
SERVE_SETTINGS = """from photofeed.settings import *  # noqa: F403
ROOT_URLCONF = "benchurls"
"""
SERVE_URLS = f"""from django.urls import re_path
from django.views.static import serve
from photofeed.urls import urlpatterns as app_patterns
urlpatterns = [re_path(r"^static/(?P<path>.*)$", serve, {{"document_root": "{STATIC_ROOT}"}}), *app_patterns]
"""
DJANGO_STATIC_SITE = """server {
    listen 8080;
    server_name _;
    location / {
        proxy_pass http://127.0.0.1:8001;
        proxy_set_header Host $host;
    }
}
server {
    listen 8081;
    server_name _;
    location / {
        proxy_pass http://127.0.0.1:8002;
        proxy_set_header Host $host;
    }
}
"""


class Bench:
    def __init__(self, site, seconds: int, connections: int):
        self.site, self.guest, self.seconds, self.connections = site, site.guest, seconds, connections
        self.base_config = dict(site.config)
        self.current = "ours"
        self.wrk_cpus: str | None = None

    def prepare(self) -> None:
        seed_rows(self.guest, 100)
        write_file(
            self.guest, f"/etc/{APP}/seed-site.conf", SEED_SITE.format(ip=self.guest.ip, static_root=STATIC_ROOT)
        )
        write_file(self.guest, "/etc/systemd/system/seed-gunicorn.service", SEED_UNIT)
        write_file(self.guest, "/var/tmp/bench/staticwsgi.py", STATIC_WSGI)
        write_file(self.guest, "/var/tmp/bench/servewsgi.py", SERVE_WSGI)
        write_file(self.guest, "/var/tmp/bench/benchsettings.py", SERVE_SETTINGS)
        write_file(self.guest, "/var/tmp/bench/benchurls.py", SERVE_URLS)
        write_file(self.guest, "/etc/nginx/sites-enabled/bench-django-static.conf", DJANGO_STATIC_SITE)
        gsh(self.guest, "chmod 0755 /var/tmp/bench && systemctl daemon-reload && nginx -t -q && systemctl reload nginx")
        gsh(
            self.guest,
            f"systemd-run --unit bench-django-static -p User={APP} -p Group={APP} "
            f"-p EnvironmentFile=/etc/{APP}/env -p WorkingDirectory=/srv/{APP}/current "
            f"/srv/{APP}/current/venv/bin/gunicorn --workers 3 --bind 127.0.0.1:8001 "
            f"--pythonpath /var/tmp/bench --no-control-socket staticwsgi:application",
        )
        gsh(
            self.guest,
            f"systemd-run --unit bench-django-serve -p User={APP} -p Group={APP} "
            f"-p EnvironmentFile=/etc/{APP}/env -p WorkingDirectory=/srv/{APP}/current "
            f"/srv/{APP}/current/venv/bin/gunicorn --workers 3 --bind 127.0.0.1:8002 "
            f"--pythonpath /var/tmp/bench --no-control-socket servewsgi:application",
        )

    def seed_env(self) -> None:
        """The seed's environment: PostgreSQL direct on 5432, Django's default CONN_MAX_AGE."""
        gsh(
            self.guest,
            f"sed -e \"s/^DJANGO_DB_PORT=.*/DJANGO_DB_PORT='5432'/\" -e 's/@127.0.0.1:6432\\//@127.0.0.1:5432\\//' "
            f"-e '/^DJANGO_CONN_MAX_AGE=/d' /etc/{APP}/env > /etc/{APP}/seed.env && "
            f"chown root:{APP} /etc/{APP}/seed.env && chmod 0640 /etc/{APP}/seed.env",
        )

    def use(self, variant: str) -> None:
        if variant == self.current:
            return
        if variant == "seed":
            self.seed_env()
            gsh(
                self.guest,
                "systemctl stop gunicorn.socket gunicorn.service && "
                f"ln -sfn /etc/{APP}/seed-site.conf /etc/nginx/sites-enabled/{APP}.conf && "
                "nginx -t -q && systemctl reload nginx && systemctl start seed-gunicorn.service",
            )
        else:
            if self.current == "seed":
                gsh(
                    self.guest,
                    "systemctl stop seed-gunicorn.service && "
                    f"ln -sfn /etc/{APP}/nginx-site.conf /etc/nginx/sites-enabled/{APP}.conf && "
                    "nginx -t -q && systemctl reload nginx && systemctl start gunicorn.socket",
                )
            config = dict(self.base_config)
            if variant == "ours-nopool":
                config["dbPooler"] = False
            if variant == "ours-persistent":
                config["app"] = {**config.get("app", {}), "env": {"DJANGO_CONN_MAX_AGE": "60"}}
            ran = [step.name for step in self.site.up(config) if step.ran]
            assert all(name.endswith("configure") for name in ran), ran
        self.current = variant
        if self.wrk_cpus:
            pin_guest(self.guest, "0")  # services restarted by the switch: pin them (and their children) again
        self.warm()

    def warm(self) -> None:
        deadline = time.monotonic() + 60
        while http_get(self.site.url + "/", timeout=10)[0] != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("home page not 200 after switching")
            time.sleep(0.5)
        wrk(self.site.url + "/", connections=10, seconds=2, cpus=self.wrk_cpus)

    def load(self, url: str, seconds: int | None = None) -> WrkResult:
        return wrk(
            url,
            connections=self.connections,
            seconds=seconds or self.seconds,
            headers={"Accept-Encoding": "gzip"},
            cpus=self.wrk_cpus,
        )


def row(name: str, results: list[WrkResult]) -> tuple[float, float]:
    rps = median([r.requests_per_second for r in results])
    p99 = median([r.p99_ms for r in results])
    non_ok = sum(r.non_2xx_3xx for r in results)
    errors = [m.group(0) for r in results if (m := re.search(r"Socket errors:.*", r.raw))]
    print(
        f"  {name:<40} {rps:9.0f} req/s   p50 {median([r.p50_ms for r in results]):7.1f} ms   "
        f"p99 {p99:7.1f} ms   non-2xx/3xx {non_ok}   runs: {', '.join(f'{r.requests_per_second:.0f}' for r in results)}"
        + (f"   wrk: {'; '.join(errors)}" if errors else ""),
        flush=True,
    )
    return rps, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per config (default 3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (default 50)")
    parser.add_argument("--static-only", action="store_true", help="only (a), the static file")
    args = parser.parse_args()
    require("wrk")
    header("bench/throughput.py")
    with bridge_network() as network, local_site(network, "benchtp") as site:
        bench = Bench(site, args.seconds, args.connections)
        bench.prepare()
        print(
            f"guest {site.guest.ip}; wrk -t2 -c{args.connections} -d{args.seconds}s --latency, "
            f"Accept-Encoding: gzip; medians of {args.rounds} alternating rounds\n",
            flush=True,
        )

        # (a) static: nginx vs gunicorn/Django, same file (the unhashed name, present in STATIC_ROOT).
        css = "/static/feed/site.css"
        status, headers, _ = http_get(site.url + css)
        assert status == 200, status
        time.sleep(3)
        assert http_get(f"http://{site.guest.ip}:8081{css}")[0] == 200
        nginx_runs, django_runs, serve_runs = [], [], []
        for _ in range(args.rounds):
            nginx_runs.append(bench.load(site.url + css))
            django_runs.append(bench.load(f"http://{site.guest.ip}:8080{css}"))
            serve_runs.append(bench.load(f"http://{site.guest.ip}:8081{css}"))
        print("(a) static file feed/site.css (19.7 KB; 5 KB gzipped), both cores")
        nginx_rps, _ = row("nginx gzip_static", nginx_runs)
        django_rps, _ = row("gunicorn/Django StaticFilesHandler", django_runs)
        serve_rps, _ = row("gunicorn/Django serve view + middleware", serve_runs)
        print(
            f"  → nginx ÷ gunicorn: {nginx_rps / django_rps:.1f}× (StaticFilesHandler), "
            f"{nginx_rps / serve_rps:.1f}× (static.serve through the middleware)\n",
            flush=True,
        )
        gsh(site.guest, "systemctl stop bench-django-static.service bench-django-serve.service")
        if args.static_only:
            return

        variants = ["seed", "ours", "ours-nopool", "ours-persistent"]
        summary: dict[str, dict[str, tuple[float, float]]] = {}
        for mode in ("2 cores", "1 core"):
            if mode == "1 core":
                pin_guest(site.guest, "0")
                bench.wrk_cpus = "1"
            results: dict[str, list[WrkResult]] = {variant: [] for variant in variants}
            for index in range(args.rounds):
                order = variants if index % 2 == 0 else list(reversed(variants))
                for variant in order:
                    bench.use(variant)
                    results[variant].append(bench.load(site.url + "/"))
            print(f"(b) home page (20 of 100 rows), {mode}, c={args.connections}")
            summary[mode] = {variant: row(variant, results[variant]) for variant in variants}
            seed_rps, seed_p99 = summary[mode]["seed"]
            for variant in variants[1:]:
                rps, p99 = summary[mode][variant]
                print(f"  → {variant} ÷ seed: req/s {rps / seed_rps:.2f}×, p99 {p99 / seed_p99:.2f}×")
            print(flush=True)

        # (c) a longer run at the concurrency, one core, persistent connections: nothing may fail.
        bench.use("ours-persistent")
        long = bench.load(site.url + "/", seconds=30)
        print(
            f"(c) ours-persistent, 1 core, c={args.connections}, 30 s: {long.requests} requests, "
            f"{long.requests_per_second:.0f} req/s, p99 {long.p99_ms:.0f} ms, "
            f"non-2xx/3xx {long.non_2xx_3xx}, socket errors {long.socket_errors}"
        )
        bench.use("ours")
        long = bench.load(site.url + "/", seconds=30)
        print(
            f"    ours (CONN_MAX_AGE=0, pooler), same: {long.requests} requests, "
            f"{long.requests_per_second:.0f} req/s, p99 {long.p99_ms:.0f} ms, "
            f"non-2xx/3xx {long.non_2xx_3xx}, socket errors {long.socket_errors}"
        )


if __name__ == "__main__":
    main()
