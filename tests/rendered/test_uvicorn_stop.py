"""The ASGI worker the deployer gives gunicorn (python/djangoship_uvicorn.py.j2), run for real: gunicorn with it on a
unix socket, stopped the way a release's restart stops it, while a connection it accepted has not sent its request
yet. uvicorn's own worker closes that connection unanswered (nginx then answers 502, or retries a GET once; never
a POST): proven by running uvicorn_worker.UvicornWorker the same way when this was written (a broken pipe on the
request)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import skip_or_fail

from config.settings import load_settings
from server.files import render_python_modules
from server.host import plan_host

ASGI = {"app": {"asgiModule": "photofeed.asgi"}}
APP = """\
async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\\n"})
"""
# The mixin over h11 when the module's own choice is httptools (and so both are run where httptools is installed).
H11_WORKER = """\
from uvicorn.protocols.http.h11_impl import H11Protocol

import djangoship_uvicorn


class Worker(djangoship_uvicorn.Worker):
    CONFIG_KWARGS = {
        **djangoship_uvicorn.Worker.CONFIG_KWARGS,
        "http": type("H11", (djangoship_uvicorn.AnswersWhatItAccepted, H11Protocol), {}),
    }
"""
POST = b"POST / HTTP/1.1\r\nHost: site\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for module in ("gunicorn", "uvicorn", "uvicorn_worker"):
        try:
            __import__(module)
        except ImportError:
            skip_or_fail(f"{module} is not installed (requirements-dev.txt)")
    plan = plan_host(load_settings(ASGI, project="djangoship", stack="dev"))
    (tmp_path / "djangoship_uvicorn.py").write_text(render_python_modules(plan)["djangoship_uvicorn.py"])
    (tmp_path / "h11_worker.py").write_text(H11_WORKER)
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def start_gunicorn(folder: Path, worker_class: str) -> tuple[subprocess.Popen[bytes], str]:
    path = str(folder / "gunicorn.sock")
    command = [sys.executable, "-m", "gunicorn", "--bind", f"unix:{path}", "--workers", "1"]
    command += ["--worker-class", worker_class, "--graceful-timeout", "20", "app:application"]
    log = open(folder / "gunicorn.log", "wb")  # noqa: SIM115 (the process writes it until it ends)
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:  # serving: one whole request answered
        try:
            assert answer(connect(path), b"GET / HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n").startswith(
                b"HTTP/1.1 200"
            )
            return process, path
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (folder / "gunicorn.log").read_text()
            time.sleep(0.1)


def connect(path: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    client.connect(path)
    return client


def answer(client: socket.socket, request: bytes) -> bytes:
    with client:
        client.sendall(request)
        received = b""
        while chunk := client.recv(4096):  # to the end: the server closes the connection after its answer
            received += chunk
        return received


@pytest.mark.parametrize("worker_class", ["djangoship_uvicorn.Worker", "h11_worker.Worker"])
def test_a_stopping_worker_answers_the_request_of_a_connection_it_had_accepted(folder: Path, worker_class: str) -> None:
    process, path = start_gunicorn(folder, worker_class)
    try:
        waiting = connect(path)
        time.sleep(0.5)  # accepted by the worker's event loop; its request not sent yet
        process.send_signal(signal.SIGTERM)  # as systemd's stop of gunicorn.service: the master stops its workers
        time.sleep(0.5)  # the worker is stopping: uvicorn's own would have closed the connection by now
        reply = answer(waiting, POST)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\nok\n"), reply
        assert process.wait(timeout=20) == 0, (folder / "gunicorn.log").read_text()
    finally:
        process.kill()
        process.wait()


def test_a_connection_that_brings_no_request_does_not_hold_the_stop(folder: Path) -> None:
    process, path = start_gunicorn(folder, "djangoship_uvicorn.Worker")
    try:
        silent = connect(path)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        with silent:
            assert silent.recv(100) == b""  # closed, unanswered: it never asked anything
        assert process.wait(timeout=60) == 0, (folder / "gunicorn.log").read_text()
        # It ended by itself after its grace, not killed at gunicorn's graceful_timeout.
        assert "SIGKILL" not in (folder / "gunicorn.log").read_text()
    finally:
        process.kill()
        process.wait()
