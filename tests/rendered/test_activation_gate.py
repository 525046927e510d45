"""The activation's judgement of the front page (scripts/activate.sh.j2's page_status): same-site redirects are
followed to the page a visitor ends on, a redirect elsewhere is the answer itself, and a loop stops. The function
as rendered, run by bash against an app stand-in on a Unix socket (as gunicorn's)."""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from rendered.helpers import UnixHTTPServer, plan_for
from server.host import render

HOST = "shop.example.com"
# path → (status, Location)
ROUTES = {
    "/": (302, "/accounts/login/?next=/"),
    "/accounts/login/?next=/": (500, ""),
    "/absolute": (301, f"http://{HOST}/fine"),
    "/fine": (200, ""),
    "/elsewhere": (302, "https://sso.example.org/login"),
    "/loop": (302, "/loop"),
    "/tls-only": (301, f"https://{HOST}/fine"),
}


class Routes(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, location = ROUTES.get(self.path, (404, ""))
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def address_string(self) -> str:
        return "unix-socket"

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def app_socket(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gate") / "app.sock"
    server = UnixHTTPServer(str(path), Routes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    thread.join(5)


def page_status(socket: Path, path: str) -> tuple[str, str]:
    script = render("scripts/activate.sh.j2", plan_for("debian-13-t2.micro"), health_host=HOST)
    function = re.search(r"^page_status\(\) \{\n.*?^\}\n", script, re.MULTILINE | re.DOTALL)
    assert function, "page_status() is no longer in the activation"
    run = function[0] + f'page_status {socket} "$1" {HOST}\necho "$code|$page"\n'
    result = subprocess.run(["bash", "-c", run, "gate", path], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    code, page = result.stdout.strip().split("|")
    return code, page


@pytest.mark.parametrize(
    ("path", "code", "page"),
    [
        ("/", "500", "/ → /accounts/login/?next=/"),  # the login page it leads to is judged
        ("/absolute", "200", "/absolute → /fine"),  # this host, written in full
        ("/elsewhere", "302", "/elsewhere"),  # off-site: the redirect is the answer
        ("/tls-only", "301", "/tls-only"),  # https on a site without TLS: not this site's
        ("/loop", "302", "/loop" + " → /loop" * 5),  # at most 5 hops
    ],
)
def test_the_gate_follows_same_site_redirects(app_socket: Path, path: str, code: str, page: str) -> None:
    assert page_status(app_socket, path) == (code, page)
