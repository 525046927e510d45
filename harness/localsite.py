"""A live site on a local Debian guest: the program's first-boot document booted, its own steps replayed.

`local_site(...)` is what the tests, the benches and the local try-out (`tools/localup.py`) stand on: the
program runs under Pulumi's mocks (harness/mockrun.py) with the guest's address standing in for the Elastic IP,
the guest (systemd-nspawn, see localboot/) is seeded with the rendered user-data byte for byte, and the remote
steps run over real SSH with the generated key (harness/replay.py). Also here: HTTP probes of the site, a request
loop to run around a deploy, and a one-line release of the example app.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.mockrun import MockState, ProgramRun, run_program
from harness.replay import ReplayState, StepResult, replay
from localboot import DEFAULT_RELEASE, Guest
from localboot.keys import generate_ed25519_keypair
from localboot.network import BridgeNetwork
from server.host import HEALTH_PATH

# Debian release of the guest → the program's `image` setting that matches it.
IMAGES = {"bookworm": "debian-12", "trixie": "debian-13"}


def user_data_bytes(run: ProgramRun) -> bytes:
    """Exactly what EC2 would hand to cloud-init (decompressed as cloud-init itself would)."""
    inputs = run.one("aws:ec2/instance:Instance").inputs
    if inputs.get("userDataBase64"):
        return gzip.decompress(base64.b64decode(inputs["userDataBase64"]))
    return inputs["userData"].encode()


def http_get(url: str, host: str | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers to check, not to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def wait_until_serving(
    url: str,
    timeout: float = 60,
    serving: Any = lambda status: status == 200,
    *,
    after: str | None = None,
    interval: float = 0.5,
    stop: threading.Event | None = None,
) -> float:
    """Poll `url` every `interval` s until `serving(status)` (and, on the same try, `after` first answers 200);
    the time it first did. 0.0 once `stop` is set."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        try:
            if (after is None or http_get(after, timeout=5)[0] == 200) and serving(http_get(url, timeout=5)[0]):
                return time.monotonic()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer as a live site within {timeout} s")
        stop.wait(interval)
    return 0.0


def wait_for_200(url: str, timeout: float = 60) -> float:
    return wait_until_serving(url, timeout)


def live_front_page(status: int) -> bool:
    """A site is up when its front page answers, a redirect included: many apps send `/` to their login
    page. (nginx's "being deployed" page is a 503; an app error a 500.)"""
    return 200 <= status < 400


class FirstAnswer:
    """Polls the site every 0.2 s in the background (at most 30 min) and keeps the time its front page first
    answered as the app's: a visitor sees the site then, while `pulumi up` may still be at its last step (the
    superuser). The app's, not nginx's own welcome page (a 200 too, while cloud-init installs it): the
    deployer's health path answers 200 first, which only the app behind it does."""

    def __init__(self, site_url: str, serving: Any = lambda status: status == 200):
        self.site_url, self.serving, self.at = site_url.rstrip("/"), serving, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(TimeoutError):
            self.at = wait_until_serving(
                self.site_url + "/",
                1800,
                self.serving,
                after=self.site_url + HEALTH_PATH,
                interval=0.2,
                stop=self._stop,
            )

    def __enter__(self) -> FirstAnswer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class RequestLoop:
    """`clients` threads GET `url` until stopped (each bounded: `limit` s at most, 300 by default), each starting
    a request every `interval` s at most, counting anything but `expect` (200; e.g. 302 for a page that redirects
    to a login) as failed, with the time each failed request started (`failed_at`, monotonic). Used around `up` to
    show a deploy drops no request.

    Paced, 50 ms by default (20 requests a second per client): a failure that lasts 50 ms or more cannot fall
    between two requests. Back to back (`interval=0`), one client kept a whole core busy — the guest's nginx,
    gunicorn and PostgreSQL and the client, 0.95 cores against 0.17 paced (bench/request_loop.py) — which the
    deploy it watches and the other lanes of a test run then lacked."""

    def __init__(
        self,
        url: str,
        clients: int = 1,
        expect: int = 200,
        fetch: Any = None,
        limit: float = 300,
        interval: float = 0.05,
    ):
        self.url, self.ok, self.failed, self.errors = url, 0, 0, []
        self.failed_at: list[float] = []
        self.expect, self.limit, self.interval = expect, limit, interval
        self.fetch = fetch or http_get  # e.g. a scaled site's, through its CloudFront stand-in
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status: int | str = self.fetch(self.url, timeout=30)[0]
            except OSError as error:
                status = repr(error)
            with self._lock:
                if status == self.expect:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(status)
                    self.failed_at.append(started)
            self._stop.wait(started + self.interval - time.monotonic())

    def __enter__(self) -> RequestLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def change_home_page(app: Path, marker: str) -> None:
    """A one-line change to the example app's home page (`<!-- release:MARKER -->`): a new release of it."""
    template = app / "feed" / "templates" / "feed" / "home.html"
    lines = [line for line in template.read_text().splitlines(keepends=True) if "<!-- release:" not in line]
    at = next(i for i, line in enumerate(lines) if "{% block content %}" in line) + 1
    lines.insert(at, f"<!-- release:{marker} -->\n")
    template.write_text("".join(lines))


@dataclass
class LocalSite:
    """A deployed site on a guest, and what is needed to run `pulumi up` against it again."""

    guest: Guest
    config: dict[str, Any]
    state: MockState
    run: ProgramRun
    replay_state: ReplayState = field(default_factory=ReplayState)
    first_boot_seconds: float = 0.0
    steps: list[StepResult] = field(default_factory=list)  # the last `up`'s
    history: list[StepResult] = field(default_factory=list)  # every step run on it since the first boot, in order

    @property
    def url(self) -> str:
        return f"http://{self.guest.ip}"

    def get(self, path: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """A visitor's GET of `path` through nginx (as `ScaledSite.get` through CloudFront and the load balancer)."""
        return http_get(self.url + path, timeout=timeout)

    def up(self, config: dict[str, Any] | None = None, replace: tuple[str, ...] = ()) -> list[StepResult]:
        """`pulumi up` again, with the same state: runs only the steps whose inputs changed, and those named in
        `replace` (`pulumi up --replace URN`: the step runs again with the same inputs)."""
        if config is not None:
            self.config = config
        for name in replace:
            self.replay_state.fingerprints.pop(name, None)
        self.run = run_program(self.config, state=self.state)
        self.steps = replay(self.run, self.guest, self.replay_state)
        self.history += self.steps
        return self.steps


def write_outputs(site: LocalSite, path: Path) -> None:
    """The stack's outputs, secrets shown, as `pulumi stack output --json --show-secrets` prints them: readable
    only by the user, since they hold the SSH private key and the admin password."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump(site.run.outputs, stream, indent=2, sort_keys=True, default=str)
        stream.write("\n")


def guest_config(config: dict[str, Any], release: str) -> dict[str, Any]:
    return {**config, "image": IMAGES[release]}


@contextlib.contextmanager
def local_site(
    network: BridgeNetwork,
    name: str,
    config: dict[str, Any] | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    binds: tuple[tuple[str, str], ...] = (),
) -> Iterator[LocalSite]:
    """Boot a guest from the program's user-data, replay the program's steps, yield the live site."""
    config = guest_config(config or {}, release)
    ip = network.allocate()
    private_key, public_key = generate_ed25519_keypair(comment=f"localboot-{name}")
    state = MockState(
        public_ip=ip, instance_id=f"i-local-{name}", random_passwords=True, generated_key=(private_key, public_key)
    )
    run = run_program(config, state=state)
    key_line = run.one("aws:ec2/keyPair:KeyPair").inputs["publicKey"].strip()
    meta_data = {"instance-id": state.instance_id, "local-hostname": name, "public-keys": [key_line]}
    with Guest(
        network, name, user_data_bytes(run), meta_data, ip=ip, release=release, binds=binds, ssh_key=private_key
    ) as guest:
        site = LocalSite(guest=guest, config=config, state=state, run=run)
        with FirstAnswer(site.url, serving=live_front_page) as first:
            site.steps = replay(run, guest, site.replay_state)
            site.history = list(site.steps)
            served = first.at or wait_until_serving(site.url + "/", serving=live_front_page)
        assert guest.boot_started_at is not None
        site.first_boot_seconds = served - guest.boot_started_at
        yield site
