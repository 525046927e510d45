"""What a freshly deployed site must show, whatever its image: test_local_boot.py checks the default guest with
these, test_debian12.py a Debian 12 one."""

from __future__ import annotations

import re
import time
import uuid

from site_helpers import APP, create_row, sh, upload_photo

from harness.localsite import http_get


def cloud_init_finished_without_errors(site):
    status = sh(site, "cloud-init status --long")
    assert "status: done" in status, status
    assert "errors: []" in status or "errors" not in status, status
    assert sh(site, "systemctl --failed --no-legend --plain").strip() == ""


def every_step_ran_once_in_order(site):
    assert [step.name for step in site.steps] == [
        f"{APP}-{name}" for name in ("connect", "boot", "configure", "upload", "build", "deploy", "superuser")
    ]
    assert all(step.ran for step in site.steps)


def services_enabled_and_active(site):
    for unit in (
        "nginx.service",
        "postgresql.service",
        "gunicorn.socket",
        "gunicorn.service",
        "unattended-upgrades.service",
    ):
        assert sh(site, f"systemctl is-active {unit}").strip() == "active", unit
    for unit in ("nginx.service", "postgresql.service", "gunicorn.socket"):
        assert sh(site, f"systemctl is-enabled {unit}").strip() == "enabled", unit
    # nginx keeps static files open (open_file_cache): its limit is lifted above systemd's default 1024.
    limits = sh(site, "cat /proc/$(cat /run/nginx.pid)/limits")
    assert re.search(r"Max open files\s+16384\s+16384", limits), limits


def healthz_and_home_page_read_from_postgresql(site):
    assert http_get(site.url + "/healthz")[0] == 200
    title = f"row-from-postgres-{uuid.uuid4().hex[:8]}"
    create_row(site, title)
    status, _, body = http_get(site.url + "/")
    assert status == 200 and title.encode() in body
    engine = sh(site, f'{APP}-manage shell -c "from django.db import connection; print(connection.vendor)"')
    assert engine.strip().splitlines()[-1] == "postgresql"


def reboot_keeps_site_and_data(site):
    media_url = upload_photo(site, "before-reboot")
    seconds = site.guest.reboot_and_wait(timeout=180)
    started = time.monotonic()
    while True:
        try:
            if http_get(site.url + "/healthz", timeout=5)[0] == 200:
                break
        except OSError:  # the first request starts gunicorn (socket activation): on a busy host it outlasts a probe
            pass
        assert time.monotonic() - started < 60, "site not back after reboot"
        time.sleep(0.5)
    status, _, page = http_get(site.url + "/")
    assert status == 200 and b"before-reboot" in page
    assert http_get(site.url + media_url)[0] == 200
    print(f"\n[resilience] reboot → SSH in {seconds:.1f} s, site back {time.monotonic() - started:.1f} s later")
