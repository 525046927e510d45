"""Day 2's guest: the example app copied into a folder of the test's, backups to moto's S3 on the bridge, a data
volume that a replacement server takes over — the fixtures test_day2.py runs on, and the checks that
test_debian12.py repeats on a Debian 12 guest and test_operator_verbs.py's verbs run against. A module that uses the
fixtures imports them by name (and may give its own `release`, `replacement_release`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from site_helpers import APP, deploy_output, live_release, sh, upload_photo

from harness.localsite import RequestLoop, change_home_page, http_get, local_site, wait_for_200

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "photofeed-backups-test"


@pytest.fixture(scope="module")
def s3(network):
    """moto's S3 server on the bridge address: the guest's backups go there instead of AWS."""
    import boto3

    port = 5057
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", network.gateway, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://{network.gateway}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    yield endpoint, client
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("day2")
    app = base / APP
    shutil.copytree(
        ROOT / "examples" / APP,
        app,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "media", "staticfiles"),
    )
    data = base / "data-volume"
    data.mkdir()
    return base, app, data


@pytest.fixture(scope="module")
def site(network, workdir, s3, release):
    _, app, data = workdir
    config = {"app": {"source": str(app)}, "backupBucket": BUCKET, "keepReleases": 3}
    with local_site(network, "web3", config, release=release, binds=((str(data), "/data"),)) as live:
        endpoint, _ = s3
        # Where the real server uses its instance role against AWS, the guest uses moto.
        sh(
            live,
            f"printf 'ENDPOINT_URL={endpoint}\\nACCESS_KEY_ID=testing\\nSECRET_ACCESS_KEY=testing\\n' "
            f"> /etc/{APP}/backup.local.conf",
        )
        yield live


@pytest.fixture(scope="module")
def replacement_release(release):
    """The Debian release of the server that replaces web3: the same image (a module may change it)."""
    return release


@pytest.fixture(scope="module")
def replacement(network, site, workdir, replacement_release):
    """A new guest (a new instance) given the same data folder (the same EBS volume), once the old server has
    stopped; yields it and the URL of an upload made on the old one just before."""
    _, _, data = workdir
    media_url = upload_photo(site, "survives-the-server")
    site.guest.stop()  # the old server is gone (its volume detached after a clean stop)
    config = {key: value for key, value in site.config.items() if key != "image"}
    with local_site(network, "web4", config, release=replacement_release, binds=((str(data), "/data"),)) as live:
        seconds = live.first_boot_seconds
        print(f"\n[day 2] replacement server ({replacement_release}): first boot → first 200 in {seconds:.1f} s")
        yield live, media_url


# --- checks (test_day2's, also run by test_debian12) ---------------------------------------------------------


def new_version_deploys_in_place_with_no_failed_request(site, workdir):
    _, app, _ = workdir
    before = live_release(site)
    instance = sh(site, "cat /var/lib/cloud/data/instance-id").strip()
    change_home_page(app, "v2")
    # An unhashed static file that nginx has open (open_file_cache keeps it up to 60 s): the new release's
    # copy must be served as soon as the release is live.
    stylesheet = app / "feed" / "static" / "feed" / "site.css"
    stylesheet.write_text(stylesheet.read_text() + "/* release:v2 */\n")
    assert b"release:v2" not in http_get(site.url + "/static/feed/site.css")[2]
    with RequestLoop(site.url + "/") as loop:
        started = time.monotonic()
        steps = site.up()
        took = time.monotonic() - started
        time.sleep(1)
    print(f"\n[day 2] one-line change deployed in {took:.1f} s under load: {loop.ok} ok, {loop.failed} failed")
    assert [step.name for step in steps if step.ran] == [
        f"{APP}-configure",
        f"{APP}-upload",
        f"{APP}-build",
        f"{APP}-deploy",
    ]
    assert loop.failed == 0, loop.errors[:5]
    assert loop.ok > 10, "the request loop did not run"
    assert "dependencies unchanged: reusing" in deploy_output(site), "a one-line change must not reinstall packages"
    deployed = next(step.stdout for step in steps if step.name == f"{APP}-deploy")
    assert "as the build step left them" in deployed, "the deploy unpacks the release again"
    assert sh(site, f"ls -A /srv/{APP}/releases | grep -c '^.build-' || true").strip() == "0"
    assert live_release(site) != before and sh(site, "cat /var/lib/cloud/data/instance-id").strip() == instance
    assert b"release:v2" in http_get(site.url + "/")[2]
    assert http_get(site.url + "/static/feed/site.css")[2].endswith(b"/* release:v2 */\n")


def backup_damage_restore_round_trip(site, s3):
    _, client = s3
    upload_photo(site, "in-the-backup")
    sh(site, f"rm -f /data/backups/*; {APP}-backup")
    dumps = sh(site, "ls /data/backups").split()
    assert any(name.startswith("db-") for name in dumps) and any(name.startswith("media-") for name in dumps)
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert {f"backups/{name}" for name in dumps} <= set(keys), keys

    sh(site, f'{APP}-manage shell -c "from feed.models import Photo; Photo.objects.all().delete()"')
    sh(site, f"rm -rf /srv/{APP}/media/photos")
    assert b"in-the-backup" not in http_get(site.url + "/")[2]

    stamp = dumps[0].split("-", 1)[1].split(".")[0]
    # Written once: the server cannot replace a backup in the bucket (moto, like S3, honours If-None-Match;
    # on AWS the bucket policy also refuses the instance role any upload without it).
    again = site.guest.exec(["bash", "-c", f"/usr/local/lib/{APP}/s3backup.py upload /data/backups/db-{stamp}.dump"])
    assert again.returncode != 0 and "exists already" in again.stderr.decode(), again.stderr.decode()
    versions = client.list_object_versions(Bucket=BUCKET, Prefix=f"backups/db-{stamp}.dump").get("Versions", [])
    assert len(versions) == 1, versions
    sh(site, "rm -f /data/backups/*")  # the server's copies are gone: restore from S3
    sh(site, f"{APP}-restore {stamp}")
    wait_for_200(site.url + "/healthz", timeout=30)
    status, _, page = http_get(site.url + "/")
    assert status == 200 and b"in-the-backup" in page
    media = page.split(b'src="/media/')[1].split(b'"')[0].decode()
    assert http_get(f"{site.url}/media/{media}")[0] == 200
    # A backup in the bucket without its checksum file is not restored.
    sh(site, "rm -f /data/backups/*")
    client.delete_object(Bucket=BUCKET, Key=f"backups/sums-{stamp}.sha256")
    refused = site.guest.exec(["bash", "-c", f"{APP}-restore {stamp}"], timeout=120)
    assert refused.returncode != 0 and "no checksum file" in refused.stderr.decode(), refused.stderr.decode()
    assert b"in-the-backup" in http_get(site.url + "/")[2]


def replaced_server_finds_the_same_rows_and_files(replacement):
    live, media_url = replacement
    status, _, page = http_get(live.url + "/")
    assert status == 200 and b"survives-the-server" in page and b"in-the-backup" in page
    assert http_get(live.url + media_url)[0] == 200
    # PostgreSQL's configuration is on the volume: it must come back after a reboot too.
    live.guest.reboot_and_wait(timeout=180)
    wait_for_200(live.url + "/healthz", timeout=60)
    assert b"survives-the-server" in http_get(live.url + "/")[2]
