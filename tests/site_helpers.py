"""What the guest tests do on a live site (a `harness.localsite.LocalSite`, or a `harness.scaledsite.ScaledSite` where a
helper takes a server or `site.get`): run a command on a guest as root, wait for what the product promises, visit
the site as a browser with cookies, upload a photo through the example app's form, write a row through its models,
log in to its admin, read the workers app's state and queue a job on it."""

from __future__ import annotations

import http.cookiejar
import io
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from harness.localsite import NoRedirect

APP = "photofeed"


def services_story(site, *units: str) -> str:
    """What systemd says of `units` now and what it did lately (its own journal lines: a restart scheduled, a start
    limit hit, a retry timer): for the message of a recovery that took too long, so the next one says why."""
    names = " ".join(units)
    return sh(
        site,
        f"systemctl show -p Id,ActiveState,SubState,Result,NRestarts,MainPID {names}; "
        f"journalctl _PID=1 -o short-monotonic --no-pager -n 40 | grep -F -e {' -e '.join(units)} || true",
        check=False,
    )


def sh(site, command: str, check: bool = True, timeout: float = 120) -> str:
    """`command` as root on the guest of `site` (a site, or one scaled app server: anything with a `guest`)."""
    result = site.guest.exec(["bash", "-c", command], timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command!r} on {site.guest.name} failed ({result.returncode}): "
            f"{result.stderr.decode()}{result.stdout.decode()}"
        )
    return result.stdout.decode()


def live_release(site, app: str = APP) -> str:
    """The release `current` names (its id), whether or not its folder is still there."""
    return sh(site, f"readlink /srv/{app}/current").strip().rsplit("/", 1)[-1]


def deploy_output(site, app: str = APP) -> str:
    """What the last `up`'s build step (the release's virtualenv) and deploy step printed, in that order."""
    return "".join(step.stdout + step.stderr for step in site.steps if step.name in (f"{app}-build", f"{app}-deploy"))


def wait_for(what: str, check, seconds: float = 60, every: float = 0.5):
    """Poll `check` until it returns something truthy, and return that; the bound is the product's promise, not a
    margin."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {seconds} s")


def app_state(site) -> dict:
    """The workers app's `/state/` (tests/foreign_apps.py): its jobs done, its processes' and schedules' rows."""
    status, _, body = site.get("/state/")
    assert status == 200, (status, body[:500])
    return json.loads(body)


def job_done(site, token: str, version: str, seconds: float = 60) -> None:
    """A web request queues job `token` on the workers app; a worker running release `version` does it."""
    status, _, body = site.get(f"/enqueue/{token}/")
    assert status == 202, (status, body[:300])
    wait_for(f"job {token} done by a worker", lambda: app_state(site)["jobs"].get(token) == version, seconds)


class Browser:
    """A visitor with cookies, speaking to the guest's address (or, with `handlers`, e.g. to a scaled site's
    CloudFront stand-in over HTTPS)."""

    def __init__(self, base: str, handlers: tuple = ()):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), NoRedirect, *handlers
        )

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def csrf(self, path: str) -> str:
        status, _, body = self.request(path)
        assert status == 200, (path, status, body[:300])
        return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()


def png_bytes() -> bytes:
    """A real 8×8 PNG, made without Pillow on the host (zlib + struct)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * 8 for _ in range(8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, kind) in files.items():
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {kind}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def create_row(site, title: str, image: str = "photos/none.png") -> None:
    """A row written through the app's own models, as the app user with its environment."""
    model = "from feed.models import Photo; Photo.objects.create"
    sh(site, f"{APP}-manage shell -c \"{model}(title='{title}', image='{image}')\"")


def upload_photo(site, title: str) -> str:
    """Upload through the app's own form; returns the /media/ URL the home page shows for it."""
    browser = Browser(site.url)
    token = browser.csrf("/")
    body, kind = multipart(
        {"csrfmiddlewaretoken": token, "title": title}, {"image": ("dot.png", png_bytes(), "image/png")}
    )
    status, headers, _ = browser.request("/upload/", body, {"Content-Type": kind, "Referer": site.url + "/"})
    assert status in (302, 303), status
    _, _, page = browser.request("/")
    match = re.search(rb'src="(/media/[^"]+)"', page)
    assert title.encode() in page and match, page[:500]
    return match.group(1).decode()


def admin_login(site) -> Browser:
    """Log in to /admin/ with the stack's outputs adminUser and adminPassword; the browser keeps the session."""
    browser = Browser(site.url)
    token = browser.csrf("/admin/login/")
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": site.run.outputs["adminUser"],
            "password": site.run.outputs["adminPassword"],
            "next": "/admin/",
        }
    ).encode()
    status, headers, _ = browser.request("/admin/login/?next=/admin/", form, {"Referer": site.url + "/admin/login/"})
    assert status == 302 and headers["Location"] == "/admin/", status
    return browser


def units_acted_on_unread(site) -> dict[str, list[str]]:
    """systemctl's "The unit file, source configuration file or drop-ins of X changed on disk. Run 'systemctl
    daemon-reload'" lines, by where they were said: the first boot's log and every step the site has run (configure,
    deploy with its activation and the processes' restart). Each means a step acted on a unit before systemd had read
    what is on disk for it (a restart policy, the hardening) — or, on systemd 255+, before the reload that follows a
    change to any unit's links."""
    said = {f"{step.name} #{number}": step.stdout + step.stderr for number, step in enumerate(site.history)}
    said["first boot"] = sh(site, "cat /var/log/cloud-init-output.log")
    lines = {where: [line for line in text.splitlines() if "changed on disk" in line] for where, text in said.items()}
    return {where: found for where, found in lines.items() if found}
