"""Throughput and latency, side by side on ONE guest in one run, with `wrk --latency`.

    sudo .venv/bin/python -m bench.throughput [--seconds 10] [--rounds 3] [--connections 50] [--via bridge]

Load comes from the host's wrk run inside the guest's network namespace against 127.0.0.1 (loopback, how
../shared/PERF-NOTES.md measured; wrk stays a host process, outside the guest's CPU pinning), or with
`--via bridge` from the host to the guest's address across the local bridge (adds the veth/bridge path).
Beside each figure: the CPU each service of the guest spent per request (cgroup accounting).

(a) static: the same stylesheet through nginx (gzip_static, pre-compressed at deploy) vs through
    gunicorn/Django (StaticFilesHandler, and the serve view through the app's middleware, behind the same
    nginx), `Accept-Encoding: gzip` on all.
(b) two pages:
      home   — the example app's home page: the latest 20 of ~100 rows, a count, the upload form (CSRF);
      latest — PERF-NOTES' workload: the latest 20 rows of one table through a small template (a bench-only
               URL added by a settings overlay, below; the app itself is unchanged);
    for each of
      seed            — the tutorial's literal set-up: nginx proxy_pass to 127.0.0.1:8000, gunicorn
                        --workers 3 (sync), no upstream keepalive, no gzip of proxied pages, CONN_MAX_AGE=0,
                        PostgreSQL direct;
      ours            — this project's settings as deployed: PgBouncer on, the app's CONN_MAX_AGE=0 raised to
                        persistent connections by the deployer's settings overlay;
      ours-conn0      — the same with the overlay's database group turned off (DJANGOSHIP_KEEP=database):
                        the app's CONN_MAX_AGE=0 through PgBouncer, a pooled login per request;
      ours-nopool     — this project's settings with dbPooler=false (persistent connections straight to
                        PostgreSQL);
      ours-persistent — this project's settings with app.env DJANGO_CONN_MAX_AGE=60 (through PgBouncer): the
                        ceiling for anything a pooler can do, as no connection is opened at all;
    on both cores, then with every process of the guest pinned to one core (≈ a t2's single vCPU; wrk on
    the other core). Configs alternate within each round; medians of the rounds are printed.
(c) ours and ours-persistent on one core at the given concurrency for 30 s: non-2xx/3xx responses and socket
    errors (nginx must queue requests while the workers are busy, not fail them).

The guest runs the default instanceType (t2.micro sizing: 3 sync workers, the seed's count). The seed
variant is set up on the same guest by the bench itself: its nginx site and a gunicorn unit on 127.0.0.1:8000.
Both gunicorns run the app with a settings overlay (/opt/bench) that only adds URLs: the `latest` page and
the serve view. Traffic never leaves the guest's loopback or the local bridge.
"""

from __future__ import annotations

import argparse
import time

from bench.common import (
    APP,
    WrkResult,
    gsh,
    guest_cpu_seconds,
    header,
    median,
    pin_guest,
    require,
    seed_rows,
    write_file,
    wrk,
)
from harness.localsite import http_get, local_site
from localboot.network import bridge_network

STATIC_ROOT = f"/srv/{APP}/current/.djangoship-static"
# The deployer's settings overlay and WSGI wrapper (server/host.py): "ours" runs through them.
DEPLOYER_PYTHONPATH = f"/usr/local/lib/{APP}/python"
# Outside /tmp and /var/tmp: the deployed gunicorn.service has PrivateTmp.
OVERLAY = "/opt/bench"
PAGES = {"home": "/", "latest": "/bench/latest/"}
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
EnvironmentFile={OVERLAY}/overlay.env
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
# The overlay: the app's settings, plus two URLs (the serve view and the `latest` page) and a template folder.
# The seed runs the app's own settings; ours the deployer's overlay of them, as deployed.
OVERLAY_SETTINGS = f"""from photofeed.settings import *  # noqa: F403
ROOT_URLCONF = "benchurls"
TEMPLATES = [{{**TEMPLATES[0], "DIRS": [*TEMPLATES[0]["DIRS"], "{OVERLAY}/templates"]}}]  # noqa: F405
"""
OURS_SETTINGS = OVERLAY_SETTINGS.replace("from photofeed.settings import", "from djangoship_settings import")
OVERLAY_URLS = f"""from django.shortcuts import render
from django.urls import path, re_path
from django.views.static import serve
from feed.models import Photo
from photofeed.urls import urlpatterns as app_patterns


def latest(request):
    # PERF-NOTES' page: the latest 20 rows of one table through a template.
    return render(request, "bench/latest.html", {{"photos": Photo.objects.all()[:20]}})


urlpatterns = [
    re_path(r"^static/(?P<path>.*)$", serve, {{"document_root": "{STATIC_ROOT}"}}),
    path("bench/latest/", latest),
    *app_patterns,
]
"""
OVERLAY_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Latest</title></head>
<body><ul>
{% for photo in photos %}  <li>{{ photo.title }} <time>{{ photo.created_at|date:"Y-m-d H:i" }}</time></li>
{% endfor %}</ul></body></html>
"""
OVERLAY_ENV = f"DJANGO_SETTINGS_MODULE=benchsettings\nPYTHONPATH={OVERLAY}\n"
OURS_ENV = f"DJANGO_SETTINGS_MODULE=benchours\nPYTHONPATH={OVERLAY}:{DEPLOYER_PYTHONPATH}\n"
# A drop-in for the deployed unit: a second EnvironmentFile, read after the deployer's, wins.
OVERLAY_DROPIN = f"[Service]\nEnvironmentFile={OVERLAY}/ours.env\n"
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
    def __init__(self, site, seconds: int, connections: int, via: str = "loopback"):
        self.site, self.guest, self.seconds, self.connections = site, site.guest, seconds, connections
        self.via = via
        self.base_config = dict(site.config)
        self.current = "ours"
        self.wrk_cpus: str | None = None

    def url(self, path: str, port: int = 80) -> str:
        host = "127.0.0.1" if self.via == "loopback" else self.guest.ip
        return f"http://{host}{'' if port == 80 else f':{port}'}{path}"

    def prepare(self) -> None:
        seed_rows(self.guest, 100)
        write_file(
            self.guest, f"/etc/{APP}/seed-site.conf", SEED_SITE.format(ip=self.guest.ip, static_root=STATIC_ROOT)
        )
        write_file(self.guest, "/etc/systemd/system/seed-gunicorn.service", SEED_UNIT)
        write_file(self.guest, f"{OVERLAY}/staticwsgi.py", STATIC_WSGI)
        write_file(self.guest, f"{OVERLAY}/servewsgi.py", SERVE_WSGI)
        write_file(self.guest, f"{OVERLAY}/benchsettings.py", OVERLAY_SETTINGS)
        write_file(self.guest, f"{OVERLAY}/benchurls.py", OVERLAY_URLS)
        write_file(self.guest, f"{OVERLAY}/templates/bench/latest.html", OVERLAY_TEMPLATE)
        write_file(self.guest, f"{OVERLAY}/overlay.env", OVERLAY_ENV)
        write_file(self.guest, f"{OVERLAY}/benchours.py", OURS_SETTINGS)
        write_file(self.guest, f"{OVERLAY}/ours.env", OURS_ENV)
        write_file(self.guest, "/etc/systemd/system/gunicorn.service.d/bench-overlay.conf", OVERLAY_DROPIN)
        write_file(self.guest, "/etc/nginx/sites-enabled/bench-django-static.conf", DJANGO_STATIC_SITE)
        gsh(
            self.guest,
            f"chmod -R a+rX {OVERLAY} && systemctl daemon-reload && systemctl restart gunicorn.service && "
            "nginx -t -q && systemctl reload nginx",
        )
        for unit, port, module in (("static", 8001, "staticwsgi"), ("serve", 8002, "servewsgi")):
            gsh(
                self.guest,
                f"systemd-run --unit bench-django-{unit} -p User={APP} -p Group={APP} "
                f"-p EnvironmentFile=/etc/{APP}/env -p WorkingDirectory=/srv/{APP}/current "
                f"/srv/{APP}/current/venv/bin/gunicorn --workers 3 --bind 127.0.0.1:{port} "
                f"--pythonpath {OVERLAY} --no-control-socket {module}:application",
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
            if variant == "ours-conn0":
                config["app"] = {**config.get("app", {}), "env": {"DJANGOSHIP_KEEP": "database"}}
            ran = [step.name for step in self.site.up(config) if step.ran]
            assert all(name.endswith("configure") for name in ran), ran
        self.current = variant
        if self.wrk_cpus:
            pin_guest(self.guest, "0")  # services restarted by the switch: pin them (and their children) again
        self.warm()

    def warm(self) -> None:
        deadline = time.monotonic() + 60
        for path in PAGES.values():
            while http_get(self.site.url + path, timeout=10)[0] != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} not 200 after switching to {self.current}")
                time.sleep(0.5)
            self.load(path, seconds=2, connections=10)

    def load(self, path: str, port: int = 80, seconds: int | None = None, connections: int | None = None) -> WrkResult:
        before = guest_cpu_seconds(self.guest)
        result = wrk(
            self.url(path, port),
            connections=connections or self.connections,
            seconds=seconds or self.seconds,
            headers={"Accept-Encoding": "gzip", "Host": self.guest.ip},
            cpus=self.wrk_cpus,
            netns_pid=self.guest.init_pid if self.via == "loopback" else None,
        )
        after = guest_cpu_seconds(self.guest)
        result.cpu_ms = {
            unit: (after[unit] - before.get(unit, 0.0)) * 1000 / max(result.requests, 1)
            for unit in after
            if after[unit] - before.get(unit, 0.0) > 0.01 * (seconds or self.seconds)
        }
        return result


def row(name: str, results: list[WrkResult]) -> tuple[float, float]:
    rps = median([r.requests_per_second for r in results])
    p99 = median([r.p99_ms for r in results])
    non_ok = sum(r.non_2xx_3xx for r in results)
    errors = sum(r.socket_errors for r in results)
    units = sorted(
        {unit for r in results for unit in r.cpu_ms}, key=lambda u: -median([r.cpu_ms.get(u, 0) for r in results])
    )
    cpu = ", ".join(f"{unit} {median([r.cpu_ms.get(unit, 0.0) for r in results]):.2f}" for unit in units)
    print(
        f"  {name:<40} {rps:9.0f} req/s   p50 {median([r.p50_ms for r in results]):7.1f} ms   "
        f"p99 {p99:7.1f} ms   non-2xx/3xx {non_ok}   socket errors {errors}   "
        f"runs: {', '.join(f'{r.requests_per_second:.0f}' for r in results)}\n"
        f"  {'':<40} CPU ms per request: {cpu}",
        flush=True,
    )
    return rps, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per config (default 3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (default 50)")
    parser.add_argument(
        "--via", choices=["loopback", "bridge"], default="loopback", help="where wrk connects from (default loopback)"
    )
    parser.add_argument("--static-only", action="store_true", help="only (a), the static file")
    args = parser.parse_args()
    require("wrk")
    header("bench/throughput.py")
    with bridge_network() as network, local_site(network, "benchtp") as site:
        bench = Bench(site, args.seconds, args.connections, args.via)
        bench.prepare()
        print(
            f"guest {site.guest.ip}; wrk -t2 -c{args.connections} -d{args.seconds}s --latency via {args.via} "
            f"({bench.url('/')}), Accept-Encoding: gzip; medians of {args.rounds} alternating rounds\n",
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
            nginx_runs.append(bench.load(css))
            django_runs.append(bench.load(css, port=8080))
            serve_runs.append(bench.load(css, port=8081))
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

        variants = ["seed", "ours", "ours-conn0", "ours-nopool", "ours-persistent"]
        for mode in ("2 cores", "1 core"):
            if mode == "1 core":
                pin_guest(site.guest, "0")
                bench.wrk_cpus = "1"
            results: dict[tuple[str, str], list[WrkResult]] = {(v, p): [] for v in variants for p in PAGES}
            for index in range(args.rounds):
                order = variants if index % 2 == 0 else list(reversed(variants))
                for variant in order:
                    bench.use(variant)
                    for page, path in PAGES.items():
                        results[(variant, page)].append(bench.load(path))
            for page, path in PAGES.items():
                print(f"(b) {page} page ({path}), {mode}, c={args.connections}")
                summary = {variant: row(variant, results[(variant, page)]) for variant in variants}
                seed_rps, seed_p99 = summary["seed"]
                for variant in variants[1:]:
                    rps, p99 = summary[variant]
                    print(f"  → {variant} ÷ seed: req/s {rps / seed_rps:.2f}×, p99 {p99 / seed_p99:.2f}×")
                print(flush=True)

        # (c) longer runs at the concurrency, one core: nothing may fail.
        for variant in ("ours-persistent", "ours"):
            bench.use(variant)
            long = bench.load("/", seconds=30)
            print(
                f"(c) {variant}, home page, 1 core, c={args.connections}, 30 s: {long.requests} requests, "
                f"{long.requests_per_second:.0f} req/s, p99 {long.p99_ms:.0f} ms, "
                f"non-2xx/3xx {long.non_2xx_3xx}, socket errors {long.socket_errors}",
                flush=True,
            )


if __name__ == "__main__":
    main()
