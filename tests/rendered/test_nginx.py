"""nginx: `nginx -t` on every variant, the site's properties, and one real nginx on loopback (127.0.0.1 only,
on free ports, in front of a small echo server on a unix socket)."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import http.client
import http.server
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rendered.helpers import (
    CONFIGS,
    DOMAIN,
    PUBLIC_IP,
    TLS_CONFIGS,
    assert_nginx_accepts,
    certificate,  # noqa: F401  (a fixture: asked for by name)
    echo_server,
    free_port,
    location,
    main_server,
    nginx_test,
    on_loopback,
    parse_nginx,
    plan_for,
    running_nginx,
    servers,
    site_for,
    size_bytes,
    user_data_doc,
    written_files,
)
from server.host import (
    site_hosts,
)


def with_certificate(site: str, domain: str, folder: Path) -> str:
    live = f"/etc/letsencrypt/live/{domain}/"
    assert site.count(live) == 4, "expected the certificate and key paths in both TLS server blocks"
    return site.replace(live, f"{folder}/")


def nginx_variants() -> list[Any]:
    params = []
    for config_id in CONFIGS:
        params.append(pytest.param(config_id, "placeholder", id=f"{config_id}-placeholder"))
        params.append(pytest.param(config_id, "http", id=f"{config_id}-http"))
        if config_id in TLS_CONFIGS:
            params.append(pytest.param(config_id, "https", id=f"{config_id}-https"))
    return params


@pytest.mark.parametrize(("config_id", "variant"), nginx_variants())
def test_nginx_accepts_the_site(config_id: str, variant: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    plan = plan_for(config_id)
    if variant == "placeholder":
        site = written_files(user_data_doc(config_id))[f"/etc/{plan.app.name}/placeholder.conf"]["content"]
    else:
        site = site_for(config_id, https=variant == "https")
    if variant == "https":
        site = with_certificate(site, plan.domain, request.getfixturevalue("certificate"))
    assert_nginx_accepts(tmp_path, site)


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(("client_max_body_size 20m;", "client_max_body_size twenty;"), id="bad-value"),
        pytest.param(("gzip_static on;", "gzip_statik on;"), id="unknown-directive"),
        pytest.param(("proxy_set_header Host $host;", "proxy_set_header Host $hots;"), id="unknown-variable"),
    ],
)
def test_nginx_test_catches_a_broken_site(breakage: tuple[str, str], tmp_path: Path) -> None:
    site = site_for("debian-13-t2.micro", https=False)
    good, bad = breakage
    assert good in site
    assert nginx_test(tmp_path, site.replace(good, bad, 1)).returncode != 0


@pytest.mark.parametrize(("config_id", "https"), [(c, False) for c in CONFIGS] + [(c, True) for c in TLS_CONFIGS])
def test_nginx_site_properties(config_id: str, https: bool) -> None:
    plan = plan_for(config_id)
    site = parse_nginx(site_for(config_id, https))
    hosts = site_hosts(plan, PUBLIC_IP)

    upstreams = site.find("upstream")
    assert len(upstreams) == 1 and upstreams[0].find("server")[0].args[0] == f"unix:{plan.paths.socket_path}"
    for server in servers(site):
        assert server.arg_lists("server_tokens") == [["off"]]

    # The default server answers unknown Host headers with nothing at all.
    default = [s for s in servers(site) if any("default_server" in a for a in s.arg_lists("listen"))]
    assert len(default) == 1
    assert default[0].arg_lists("server_name") == [["_"]]
    assert location(default[0], "/").arg_lists("return") == [["444"]]
    default_ports = sorted({a[0] for a in default[0].arg_lists("listen")})
    assert default_ports == (["443", "80", "[::]:443", "[::]:80"] if https else ["80", "[::]:80"])

    main = main_server(site)
    proxy = location(main, "/")
    assert proxy.arg_lists("proxy_pass") == [[f"http://{upstreams[0].args[0]}"]]
    headers = {args[0]: args[1] for args in proxy.arg_lists("proxy_set_header")}
    assert headers == {"Host": "$host", "X-Forwarded-For": "$proxy_add_x_forwarded_for", "X-Forwarded-Proto": "$scheme"}

    static = location(main, "/static/")
    assert static.arg_lists("alias") == [[plan.paths.static_root + "/"]]
    assert static.arg_lists("gzip_static") == [["on"]]
    hashed = [loc for loc in static.find("location") if loc.args[0] == "~"]
    assert len(hashed) == 1 and re.search(hashed[0].args[1], "site.0123456789ab.css")
    assert not re.search(hashed[0].args[1], "site.css") and not re.search(hashed[0].args[1], "site.0123456789ab.css.gz")
    assert hashed[0].arg_lists("gzip_static") == [["on"]]
    assert ["Cache-Control", "public, max-age=31536000, immutable"] in hashed[0].arg_lists("add_header")

    media = location(main, "/media/")
    assert media.arg_lists("alias") == [[plan.paths.media_root + "/"]]
    executing = {"proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass", "memcached_pass", "perl"}
    assert not [d.name for d in media.walk() if d.name in executing]
    assert ["X-Content-Type-Options", "nosniff"] in media.arg_lists("add_header")
    assert media.arg_lists("default_type") == [["application/octet-stream"]]

    (limit,) = main.arg_lists("client_max_body_size")
    assert size_bytes(limit[0]) >= 10 * (1 << 20)  # the example app accepts 10 MB images

    if https:
        assert sorted(a[0] for a in main.arg_lists("listen")) == ["443", "[::]:443"]
        assert all("ssl" in a for a in main.arg_lists("listen"))
        assert main.arg_lists("server_name") == [[plan.domain]]
        assert any(a[0] == "Strict-Transport-Security" for a in main.arg_lists("add_header"))
        redirect = [s for s in servers(site) if s is not default[0] and s is not main]
        assert len(redirect) == 1
        assert sorted(a[0] for a in redirect[0].arg_lists("listen")) == ["80", "[::]:80"]
        assert redirect[0].arg_lists("server_name") == [hosts]
        assert location(redirect[0], "/").arg_lists("return") == [["301", f"https://{plan.domain}$request_uri"]]
    else:
        assert len(servers(site)) == 2
        assert sorted(a[0] for a in main.arg_lists("listen")) == ["80", "[::]:80"]
        assert main.arg_lists("server_name") == [hosts]
        assert hosts == ([plan.domain, PUBLIC_IP] if plan.domain else [PUBLIC_IP])


@dataclasses.dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(port: int, path: str, host: str, tls: bool = False, **headers: str) -> Reply:
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def assert_no_answer(port: int, host: str, tls: bool = False) -> None:
    """444: nginx closes the connection without sending a response."""
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError)):
        fetch(port, "/", host, tls=tls)


def live_site(folder: Path, config_id: str, https: bool) -> tuple[str, str]:
    """(site with the server's paths moved into `folder`, the upstream socket path)."""
    plan = plan_for(config_id)
    site = site_for(config_id, https)
    socket_path = folder / "gunicorn.sock"
    for old, new, count in (
        (f"unix:{plan.paths.socket_path} ", f"unix:{socket_path} ", 2),  # the upstream's server and its retry
        (f"alias {plan.paths.static_root}/;", f"alias {folder}/static/;", 1),
        (f"alias {plan.paths.media_root}/;", f"alias {folder}/media/;", 1),
    ):
        assert site.count(old) == count, old
        site = site.replace(old, new)
    css = b"body { color: #123456; }\n" * 40
    (folder / "static").mkdir(mode=0o755)
    (folder / "static" / "site.0123456789ab.css").write_bytes(css)
    (folder / "static" / "site.0123456789ab.css.gz").write_bytes(gzip.compress(css, mtime=0))
    (folder / "static" / "plain.css").write_bytes(css)
    (folder / "media").mkdir(mode=0o755)
    (folder / "media" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "media" / "evil.html").write_bytes(b"<script>alert(1)</script>")
    (folder / "media" / "evil.php").write_bytes(b"<?php system('id'); ?>")
    for path in (folder / "static").iterdir():
        path.chmod(0o644)
    for path in (folder / "media").iterdir():
        path.chmod(0o644)
    return site, str(socket_path)


def test_nginx_http_site_really_serves(live_dir: Path) -> None:
    config_id = "debian-13-t2.micro"
    site, socket_path = live_site(live_dir, config_id, https=False)
    port = free_port()
    with running_nginx(live_dir, on_loopback(site, {"80": port}), port):
        # Scanners (any other Host) get no answer at all.
        assert_no_answer(port, "scanner.invalid")

        # Before the first deploy (no gunicorn socket yet): a plain-text explanation instead of nginx's
        # HTML error page. (`error_page 502 … /deploying.txt` without `=503` keeps the upstream error's
        # status, 502, whatever the `return 503` in that location says; either is acceptable here.)
        down = fetch(port, "/", PUBLIC_IP)
        assert down.status in (502, 503) and down.headers["Content-Type"] == "text/plain"
        assert down.body == b"photofeed is being deployed or restarting. Try again in a minute.\n"

        # Hashed static names: the precompressed file, cached for a year.
        hashed = fetch(port, "/static/site.0123456789ab.css", PUBLIC_IP, Accept_Encoding="gzip")
        assert hashed.status == 200
        assert hashed.headers["Content-Encoding"] == "gzip"
        assert hashed.body == (live_dir / "static" / "site.0123456789ab.css.gz").read_bytes()
        assert hashed.headers.get_all("Cache-Control") == ["public, max-age=31536000, immutable"]
        assert "Accept-Encoding" in (hashed.headers["Vary"] or "")
        identity = fetch(port, "/static/site.0123456789ab.css", PUBLIC_IP)
        assert identity.headers["Content-Encoding"] is None
        assert identity.body == (live_dir / "static" / "site.0123456789ab.css").read_bytes()
        plain = fetch(port, "/static/plain.css", PUBLIC_IP)
        assert plain.status == 200 and plain.headers.get_all("Cache-Control") == ["public, max-age=3600"]

        # Uploads are served as data: never run, never sniffed, odd types downloaded.
        photo = fetch(port, "/media/photo.jpg", PUBLIC_IP)
        assert photo.status == 200 and photo.headers["Content-Type"] == "image/jpeg"
        assert photo.headers["X-Content-Type-Options"] == "nosniff"
        for name in ("evil.html", "evil.php"):
            evil = fetch(port, f"/media/{name}", PUBLIC_IP)
            assert evil.status == 200 and evil.headers["Content-Type"] == "application/octet-stream"
            assert evil.body == (live_dir / "media" / name).read_bytes()
            assert "sandbox" in evil.headers["Content-Security-Policy"]

        # The app, through the unix socket, with the headers Django relies on.
        with echo_server(Path(socket_path)):
            app = fetch(port, "/photos/?page=2", PUBLIC_IP)
            assert app.status == 200, app.body
            seen = json.loads(app.body)
            assert seen["path"] == "/photos/?page=2"
            assert seen["headers"]["host"] == PUBLIC_IP
            assert seen["headers"]["x-forwarded-proto"] == "http"
            assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
            assert "Server" not in app.headers or "/" not in app.headers["Server"]  # server_tokens off
    assert not (live_dir / "nginx.pid").exists()


def test_nginx_https_site_really_serves(live_dir: Path, request: pytest.FixtureRequest) -> None:
    cert_folder = request.getfixturevalue("certificate")
    config_id = "domain-https"
    site, socket_path = live_site(live_dir, config_id, https=True)
    site = with_certificate(site, DOMAIN, cert_folder)
    http_port, https_port = free_port(), free_port()
    with running_nginx(live_dir, on_loopback(site, {"80": http_port, "443": https_port}), https_port):
        # Port 80: the domain and the bare address both go to https://<domain>, the rest gets nothing.
        for host in (DOMAIN, PUBLIC_IP):
            moved = fetch(http_port, "/admin/?next=/", host)
            assert moved.status == 301 and moved.headers["Location"] == f"https://{DOMAIN}/admin/?next=/"
        assert_no_answer(http_port, "scanner.invalid")
        assert_no_answer(https_port, "scanner.invalid", tls=True)
        with echo_server(Path(socket_path)):
            app = fetch(https_port, "/", DOMAIN, tls=True)
            assert app.status == 200, app.body
            seen = json.loads(app.body)
            assert seen["headers"]["host"] == DOMAIN and seen["headers"]["x-forwarded-proto"] == "https"
            assert app.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert not (live_dir / "nginx.pid").exists()


@contextlib.contextmanager
def closes_first_connection_unread(path: Path) -> Iterator[list[str]]:
    """gunicorn's stand-in during a restart: the first connection is closed unanswered, as a uvicorn worker told to
    stop closes one it accepted before its request was read; the next ones get a 200. Yields each connection's
    request line ("" for the one closed unread)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    path.chmod(0o777)  # nginx's workers run as another user (nobody) when the tests run as root
    listener.listen(8)
    listener.settimeout(0.2)
    seen: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                if not seen:
                    seen.append("")
                    continue  # closed without reading a byte
                request = connection.recv(65536).decode(errors="replace")
                seen.append(request.split("\r\n", 1)[0])
                connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("method, retried", [("GET", True), ("HEAD", True), ("POST", False)])
def test_a_request_gunicorn_closed_unanswered_is_tried_once_more_if_idempotent(
    live_dir: Path, method: str, retried: bool
) -> None:
    """A GET whose connection the app server closed without an answer (a worker stopping as it accepted it, during a
    release's restart) is sent once more to the socket and answered; a POST is not sent twice (it gets the 503)."""
    site, socket_path = live_site(live_dir, "debian-13-t2.micro", https=False)
    port = free_port()
    with (
        running_nginx(live_dir, on_loopback(site, {"80": port}), port),
        closes_first_connection_unread(Path(socket_path)) as seen,
    ):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request(method, "/photos/", body=b"x=1" if method == "POST" else None, headers={"Host": PUBLIC_IP})
            status = conn.getresponse().status
        finally:
            conn.close()
    if retried:
        assert status == 200 and seen == ["", f"{method} /photos/ HTTP/1.0"], (status, seen)
    else:
        assert status == 503 and seen == [""], (status, seen)
