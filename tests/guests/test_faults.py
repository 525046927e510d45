"""Ordinary faults on a live site, each ending by itself with nothing lost (issue: a self-healing server).

One guest whose data volume is a real ext4 filesystem of its own (a loop device on the host), so that it can
be filled. Each test makes one fault the way it happens in production, then measures the seconds until `/`
answers 200 again with no one stepping in, and counts the rows and uploaded files before and after. The
figures are printed as a table at the end (docs/reliability.md's table comes from it).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import skip_or_fail
from site_helpers import APP, create_row, live_release, services_story, sh, upload_photo

from djangoship import report
from djangoship.remote import Layout
from harness.localsite import RequestLoop, change_home_page, http_get, local_site, wait_until_serving
from harness.replay import StepFailed, presented_host_key

pytestmark = pytest.mark.localboot
ROOT = Path(__file__).resolve().parent.parent.parent
RECOVERY: dict[str, float] = {}  # fault → seconds until / answered 200 again
# How long a fault may take to end by itself before its test fails: a bound that ends the test, not a timing claim
# (no test asserts a timing; the seconds are printed above and are docs/reliability.md's figures). It is many times
# the quiet figures (3–12 s): CI runs three lanes of guests on two cores, where a restart's imports take several
# times as long. What each test asserts is that the site came back with no one stepping in, and lost nothing.
BY_ITSELF = 90


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A 1.5 GiB ext4 filesystem on a loop device, mounted on the host: the guest's /data."""
    if not shutil.which("losetup") or not Path("/dev/loop-control").exists():
        skip_or_fail("no loop devices on this host")
    base = tmp_path_factory.mktemp("faults")
    image, mount = base / "data.img", base / "data"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "1536M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    app = tmp_path_factory.mktemp("faults-app") / APP
    shutil.copytree(
        ROOT / "examples" / APP,
        app,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "media", "staticfiles"),
    )
    return app


@pytest.fixture(scope="module")
def site(network, volume, workdir):
    with local_site(network, "faults", {"app": {"source": str(workdir)}}, binds=((str(volume), "/data"),)) as live:
        upload_photo(live, "before-the-faults")
        yield live
    print("\n[faults] seconds until / answered 200 again, no one stepping in:")
    for fault, seconds in RECOVERY.items():
        print(f"[faults]   {fault:<58} {seconds:5.1f} s")


def counts(site) -> tuple[int, int]:
    """(rows in the app's table, files under the media folder)."""
    rows = sh(site, f'{APP}-manage shell -c "from feed.models import Photo; print(Photo.objects.count())"')
    files = sh(site, f"find /srv/{APP}/media -type f | wc -l")
    return int(rows.strip().splitlines()[-1]), int(files)


def serving_again(site, fault: str, started: float, limit: float, ready=lambda: True) -> float:
    """Seconds from `started` until `ready()` holds and / answers 200; fails after `limit` seconds."""
    while True:
        try:
            if http_get(site.url + "/", timeout=3)[0] == 200 and ready():
                break
        except OSError:
            pass
        if time.monotonic() - started >= limit:
            story = services_story(site, "gunicorn.service", "gunicorn.socket", "nginx.service", "pgbouncer.service")
            raise AssertionError(f"{fault}: / did not answer 200 within {limit} s\n{story}")
        time.sleep(0.25)
    RECOVERY[fault] = took = time.monotonic() - started
    return took


def main_pid(site, unit: str) -> str:
    return sh(site, f"systemctl show -p MainPID --value {unit}").strip()


def with_env(site, **env: str) -> dict:
    """The site's config with `app.env` entries added: a change that re-runs only the configure step."""
    app = site.config["app"]
    return {**site.config, "app": {**app, "env": {**app.get("env", {}), **env}}}


def step_ran(site, name: str):
    return next(step for step in site.steps if step.name == f"{APP}-{name}" and step.ran)


def cluster_unit(site) -> str:
    version, cluster = sh(site, "pg_lsclusters --no-header | head -n 1").split()[:2]
    return f"postgresql@{version}-{cluster}.service"


@pytest.mark.parametrize(
    "fault, unit",
    [
        ("PostgreSQL's postmaster killed (kill -9, as the OOM killer)", "postgresql"),
        ("PgBouncer killed (kill -9)", "pgbouncer.service"),
        ("nginx's master killed (kill -9)", "nginx.service"),
        ("gunicorn's master killed (kill -9)", "gunicorn.service"),
    ],
)
def test_a_killed_service_comes_back_by_itself(site, fault, unit):
    unit = cluster_unit(site) if unit == "postgresql" else unit
    before, pid = counts(site), main_pid(site, unit)
    started = time.monotonic()
    sh(site, f"kill -9 {pid}")
    # Served again only once the unit runs a new process (orphans of the old one may answer for a moment).
    took = serving_again(site, fault, started, limit=BY_ITSELF, ready=lambda: main_pid(site, unit) not in ("0", pid))
    assert sh(site, f"systemctl is-active {unit}").strip() == "active"
    assert counts(site) == before
    print(f"\n[faults] {fault}: serving again after {took:.1f} s")


def test_a_postgresql_restart_costs_seconds_and_a_deploy_right_after_succeeds(site, workdir):
    fault = "PostgreSQL restarted behind PgBouncer"
    with RequestLoop(site.url + "/") as loop:
        started = time.monotonic()
        sh(site, "systemctl restart postgresql")
        serving_again(site, fault, started, limit=BY_ITSELF)
        time.sleep(2)
    assert loop.failed <= 10, loop.errors[:10]  # a few requests while PostgreSQL is really down, no more
    change_home_page(workdir, "after-a-database-restart")
    sh(site, "systemctl restart postgresql")
    site.up()  # the deploy's migrate and health check go through PgBouncer at once
    assert b"release:after-a-database-restart" in http_get(site.url + "/")[2]


def test_postgresql_stop_and_start_act_on_the_cluster_after_a_reboot(site):
    before = counts(site)
    started = time.monotonic()
    site.guest.reboot_and_wait(timeout=180)
    serving_again(site, "a reboot (from the reboot command)", started, limit=240)
    unit = cluster_unit(site)
    sh(site, "systemctl stop postgresql")
    # The umbrella's stop reaches the cluster as a job of its own, which finishes a moment later.
    deadline = time.monotonic() + 30
    while sh(site, f"systemctl is-active {unit} || true").strip() != "inactive":
        assert time.monotonic() < deadline, "`systemctl stop postgresql` did not stop the cluster"
        time.sleep(0.5)
    started = time.monotonic()
    sh(site, "systemctl start postgresql")
    assert sh(site, f"systemctl is-active {unit}").strip() == "active"
    serving_again(site, "`systemctl stop/start postgresql` after a reboot", started, limit=BY_ITSELF)
    assert counts(site) == before


def test_a_configure_step_that_failed_half_way_is_completed_by_the_retry(site):
    """The env file is written, then the step fails (PostgreSQL cannot start); the retry finds nothing to
    write but must still restart gunicorn, whose environment is the old one."""
    config = {**site.config, "app": {**site.config["app"], "env": {"FAULT_MARKER": "one"}}}
    unit = cluster_unit(site)
    sh(site, f"systemctl stop postgresql && systemctl mask --runtime {unit}")
    try:
        with pytest.raises(StepFailed):
            site.up(config)
        assert "FAULT_MARKER='one'" in sh(site, f"cat /etc/{APP}/env")
    finally:
        sh(site, f"systemctl unmask --runtime {unit}")
    site.up(config)
    environ = sh(site, "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value gunicorn.service)/environ")
    assert "FAULT_MARKER=one" in environ, "gunicorn still runs with the environment from before the change"
    serving_again(site, "configure failed half-way, then retried", time.monotonic(), limit=BY_ITSELF)


def test_the_steps_pin_the_servers_host_key_and_another_key_fails_them(site):
    """The connect step installed the program's host key; sshd offers only it (even to a client that prefers
    ECDSA); every later step checked it. Another key at the address fails the step before anything is sent."""
    pinned = site.run.outputs["sshHostKey"]
    assert sh(site, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub").strip() == pinned
    for preferred in ("ecdsa-sha2-nistp256", "rsa-sha2-512", "ssh-ed25519"):
        assert presented_host_key(site.guest.ip, preferred) == pinned, preferred
    sh(site, "cp -p /etc/ssh/ssh_host_ed25519_key /root/pinned-host-key")
    sh(site, "rm /etc/ssh/ssh_host_ed25519_key*; ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key")
    sh(site, "systemctl reload ssh.service")
    try:
        with pytest.raises(StepFailed) as failure:
            site.up(with_env(site, HOST_KEY_MARKER="sent"))
        assert failure.value.step == f"{APP}-configure" and "host key mismatch" in str(failure.value)
        assert "HOST_KEY_MARKER" not in sh(site, f"cat /etc/{APP}/env"), "the environment went to another key"
    finally:
        sh(
            site,
            "install -m 0600 /root/pinned-host-key /etc/ssh/ssh_host_ed25519_key && ssh-keygen -y -f "
            "/etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub && systemctl reload ssh.service",
        )
    site.up(with_env(site, HOST_KEY_MARKER="sent"))
    assert "HOST_KEY_MARKER='sent'" in sh(site, f"cat /etc/{APP}/env")


def test_a_site_file_broken_by_hand_is_rewritten_by_the_next_deploy(site, workdir):
    site_file = f"/etc/{APP}/nginx-site.conf"
    rendered = sh(site, f"cat {site_file}")
    sh(site, f"echo 'this is not nginx' >> {site_file}")
    change_home_page(workdir, "after-a-hand-broken-site")
    steps = site.up()
    assert [step.name for step in steps if step.ran] == [
        f"{APP}-configure",
        f"{APP}-upload",
        f"{APP}-build",
        f"{APP}-deploy",
    ]
    assert f"changed: {site_file}" in step_ran(site, "configure").stdout
    assert sh(site, f"cat {site_file}") == rendered
    sh(site, "nginx -t -q")
    assert b"release:after-a-hand-broken-site" in http_get(site.url + "/")[2]


def test_nginx_rejecting_its_configuration_fails_the_step_with_nginx_s_error(site):
    sh(site, "echo 'this is not nginx' > /etc/nginx/conf.d/hand-made.conf")
    try:
        with pytest.raises(StepFailed) as failure:
            site.up(with_env(site, NGINX_MARKER="one"))
        assert failure.value.step == f"{APP}-configure"
        assert "/etc/nginx/conf.d/hand-made.conf" in failure.value.stderr, failure.value.stderr[-2000:]
        assert "nginx rejected the site configuration" in failure.value.stderr
        assert http_get(site.url + "/")[0] == 200, "nginx keeps serving the configuration it has loaded"
    finally:
        sh(site, "rm -f /etc/nginx/conf.d/hand-made.conf")
    site.up(with_env(site, NGINX_MARKER="one"))


def test_a_deploy_whose_second_migration_fails_leaves_the_schema_as_it_was(site, workdir):
    """0002 adds a NOT NULL column (and would commit on its own under Django), 0003 fails: the release that
    keeps serving must still be able to write."""
    migrations = workdir / "feed" / "migrations"
    (migrations / "0002_photo_rating.py").write_text(
        "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
        "    dependencies = [('feed', '0001_initial')]\n"
        "    operations = [migrations.AddField('photo', 'rating', models.IntegerField(default=0), "
        "preserve_default=False)]\n"
    )
    (migrations / "0003_broken.py").write_text(
        "from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
        "    dependencies = [('feed', '0002_photo_rating')]\n"
        "    operations = [migrations.RunSQL('SELECT no_such_column FROM feed_photo')]\n"
    )
    try:
        with pytest.raises(StepFailed) as failure:
            site.up()
        assert "the schema is as it was" in failure.value.stderr, failure.value.stderr[-2000:]
    finally:
        for name in ("0002_photo_rating.py", "0003_broken.py"):
            (migrations / name).unlink()
    columns = sh(
        site,
        f'runuser -u postgres -- psql -tAc "SELECT column_name FROM information_schema.columns '
        f"WHERE table_name = 'feed_photo'\" {APP}",
    ).split()
    assert "rating" not in columns, columns
    upload_photo(site, "written-by-the-release-that-kept-serving")


def test_a_broken_nginx_site_fails_the_deploy_with_nginx_s_error(site):
    live = Path(sh(site, f"readlink -f /srv/{APP}/current").strip()).name
    sh(site, f"cp /etc/{APP}/nginx-site.conf /root/site.conf && echo 'this is not nginx' >> /etc/{APP}/nginx-site.conf")
    try:
        result = site.guest.exec(["bash", "-c", f"{APP}-activate {live}"], timeout=60)
        assert result.returncode != 0
        stderr = result.stderr.decode()
        assert "nginx's configuration on this server is broken" in stderr and f"{APP}.conf" in stderr, stderr
        assert http_get(site.url + "/")[0] == 200, "nginx keeps serving the configuration it has loaded"
    finally:
        sh(site, f"cp /root/site.conf /etc/{APP}/nginx-site.conf")


def test_a_damaged_backup_is_refused_before_anything_is_touched(site):
    upload_photo(site, "kept-through-a-bad-restore")
    sh(site, f"rm -f /data/backups/*; {APP}-backup")
    stamp = sh(site, "ls /data/backups | sed -n 's/^db-\\(.*\\)\\.dump$/\\1/p'").strip()
    before = counts(site)
    media = f"/data/backups/media-{stamp}.tar.gz"
    sh(site, f"truncate -s $(( $(stat -c %s {media}) * 3 / 10 )) {media}")
    result = site.guest.exec(["bash", "-c", f"{APP}-restore {stamp}"], timeout=120)
    assert result.returncode != 0 and "does not match its checksums" in result.stderr.decode()
    assert counts(site) == before
    assert sh(site, f"stat -c %U /srv/{APP}/media/photos").strip() == APP
    # The same damage in a backup without checksums (older ones): the full read refuses it just as well.
    sh(site, f"rm /data/backups/sums-{stamp}.sha256")
    result = site.guest.exec(["bash", "-c", f"{APP}-restore {stamp}"], timeout=120)
    assert result.returncode != 0 and "nothing was changed" in result.stderr.decode()
    assert counts(site) == before and http_get(site.url + "/")[0] == 200


def test_a_filling_data_volume_is_named_by_the_deploy_and_by_status(site):
    size, used = (int(v) for v in sh(site, "df -BM --output=size,used /data | tail -n 1").replace("M", "").split())
    sh(site, f"fallocate -l {int(size * 0.85) - used}M /data/filler")
    try:
        site.up(with_env(site, VOLUME_MARKER="filling"))
        warning = step_ran(site, "configure").stderr
        assert re.search(r"configure: WARNING: the data volume \(/data\) is (8[5-9]|9\d) % full", warning), warning
        status = site.guest.exec(["bash", "-c", shlex.split(report.status(Layout(APP)))[4]], timeout=60)
        assert re.search(r"WARNING: /data is (8[5-9]|9\d) % full", status.stdout.decode()), status.stdout.decode()
    finally:
        sh(site, "rm -f /data/filler")
    status = site.guest.exec(["bash", "-c", shlex.split(report.status(Layout(APP)))[4]], timeout=60)
    assert "WARNING" not in status.stdout.decode()


def test_a_full_data_volume_refuses_backups_and_postgresql_returns_when_space_does(site):
    before = counts(site)
    sh(site, "rm -f /data/backups/*")
    free_mib = int(sh(site, "df -BM --output=avail /data | tail -n 1").strip().rstrip("M"))
    sh(site, f"fallocate -l {free_mib - 40}M /data/filler")
    try:
        result = site.guest.exec(["bash", "-c", f"{APP}-backup"], timeout=120)
        assert result.returncode != 0 and "not enough space" in result.stderr.decode(), result.stderr.decode()
        assert sh(site, "ls /data/backups").strip() == "", "a refused backup leaves nothing behind"
        # Now fill it to the last block and make PostgreSQL write: it stops (PANIC) or refuses the write.
        sh(site, "fallocate -l 39M /data/filler2 || true; dd if=/dev/zero of=/data/filler3 bs=1M 2> /dev/null || true")
        sh(
            site,
            'runuser -u postgres -- psql -c "CREATE TABLE wal_filler AS '
            "SELECT repeat('x', 1000) AS pad FROM generate_series(1, 50000)\" " + APP,
            check=False,
        )
        # A backup on the full volume says so itself, before PostgreSQL is asked anything (psql's own connection
        # fails there: "could not write init file").
        result = site.guest.exec(["bash", "-c", f"{APP}-backup"], timeout=120)
        stderr = result.stderr.decode()
        assert result.returncode != 0 and "not enough space" in stderr and "init file" not in stderr, stderr
    finally:
        sh(site, "rm -f /data/filler /data/filler2 /data/filler3")
    started = time.monotonic()
    serving_again(site, "data volume full, then space freed", started, limit=BY_ITSELF)
    assert counts(site) == before
    sh(site, f"runuser -u postgres -- psql -c 'DROP TABLE IF EXISTS wal_filler' {APP}")


def test_restoring_a_backup_from_before_a_migration_brings_the_schema_forward(site, workdir):
    sh(site, f"rm -f /data/backups/*; {APP}-backup")
    before = counts(site)
    models = workdir / "feed" / "models.py"
    models.write_text(
        models.read_text().replace(
            "    created_at = ", '    caption = models.CharField(max_length=50, default="")\n    created_at = '
        )
    )
    (workdir / "feed" / "migrations" / "0002_photo_caption.py").write_text(
        "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
        "    dependencies = [('feed', '0001_initial')]\n"
        "    operations = [migrations.AddField('photo', 'caption', models.CharField(max_length=50, default=''))]\n"
    )
    site.up()
    create_row(site, "after-the-migration")
    sh(site, f"{APP}-restore")
    serving_again(site, "restore of a backup from before a migration", time.monotonic(), limit=BY_ITSELF)
    assert counts(site) == before
    upload_photo(site, "written-after-the-restore")


def test_a_restore_whose_migrations_fail_on_its_data_changes_nothing(site, workdir):
    """The backup holds a row the live release's next migration refuses. The restore goes into a new database
    and is migrated there: the migration fails, the live database is never touched, the site keeps serving."""
    databases = sh(site, "runuser -u postgres -- psql -tAc 'SELECT datname FROM pg_database'").split()
    assert f"{APP}_before_restore" in databases, "the previous restore keeps the database it replaced"
    create_row(site, "blocks-the-migration")
    sh(site, f"rm -f /data/backups/*; {APP}-backup")
    stamp = sh(site, "ls /data/backups | sed -n 's/^db-\\(.*\\)\\.dump$/\\1/p'").strip()
    sh(
        site,
        f'{APP}-manage shell -c "from feed.models import Photo; '
        "Photo.objects.filter(title='blocks-the-migration').delete()\"",
    )
    (workdir / "feed" / "migrations" / "0003_refuse_blocked_rows.py").write_text(
        "from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
        "    dependencies = [('feed', '0002_photo_caption')]\n"
        '    operations = [migrations.RunSQL("DO $$ BEGIN IF EXISTS (SELECT 1 FROM feed_photo WHERE title = '
        "'blocks-the-migration') THEN RAISE EXCEPTION 'a blocked row'; END IF; END $$\")]\n"
    )
    site.up()  # the live data passes the migration
    create_row(site, "written-after-the-migration")
    before = counts(site)
    result = site.guest.exec(["bash", "-c", f"{APP}-restore {stamp}"], timeout=180)
    stderr = result.stderr.decode()
    assert result.returncode != 0 and "migrations fail on the data" in stderr and "nothing was changed" in stderr, (
        stderr
    )
    assert "a blocked row" in stderr
    assert counts(site) == before and http_get(site.url + "/")[0] == 200
    databases = sh(site, "runuser -u postgres -- psql -tAc 'SELECT datname FROM pg_database'").split()
    assert f"{APP}_restoring" not in databases, "the refused copy is dropped"
    upload_photo(site, "written-after-the-refused-restore")


def test_a_first_release_that_cannot_serve_leaves_nothing_live_and_the_next_one_goes_live(site, workdir):
    """The first activation (nothing live: a new server's first deploy, here `current` removed by hand) starts the
    release once, on the live socket, with no check beside it. One whose front page raises there is not left
    half-live: no `current`, gunicorn stopped and not failed, not in the release history. The next good release
    goes live as a first one does."""
    paths = Layout(APP).paths
    history = sh(site, f"cat {paths.releases_dir}/.history")
    sh(site, f"rm {paths.current_dir} && systemctl stop gunicorn.service")
    template = workdir / "feed" / "templates" / "feed" / "home.html"
    working = template.read_text()
    template.write_text(working.replace("{% block content %}", "{% block content %}{% url 'no-such-view' %}", 1))
    change_home_page(workdir, "first-and-broken")
    try:
        with pytest.raises(StepFailed) as failure:
            site.up()
    finally:
        template.write_text(working)
    assert failure.value.step == f"{APP}-deploy"
    message = failure.value.stderr
    assert "nothing is live yet: switching to release" in failure.value.stdout
    assert "cannot serve after the switch: / answered 500" in message, message[-2000:]
    assert "NoReverseMatch" in message, "gunicorn's log (the app's traceback) is shown"
    assert sh(site, f"test -e {paths.current_dir} && echo live || echo none").strip() == "none"
    assert sh(site, "systemctl is-active gunicorn.service || true").strip() == "inactive"
    assert "gunicorn" not in sh(site, "systemctl --failed --no-legend --plain")
    assert sh(site, f"cat {paths.releases_dir}/.history") == history, "a refused release is not in the history"

    change_home_page(workdir, "first-after-the-refusal")
    site.up()
    assert b"release:first-after-the-refusal" in http_get(site.url + "/")[2]
    assert "nothing is live yet" in step_ran(site, "deploy").stdout


# --- hand-made damage, repaired by the deploy step run again (issue 34, item 7) ------------------------------------


def as_root(site, command: str) -> tuple[int, str]:
    """A command's exit status and everything it printed (stdout, then stderr), shown for the record."""
    result = site.guest.exec(["bash", "-c", command], timeout=300)
    said = result.stdout.decode() + result.stderr.decode()
    print(f"\n[damage] $ {command} (exit {result.returncode})\n{said}")
    return result.returncode, said


def answers_503(site) -> None:
    """The damage shows: nginx answers 503 (its "being deployed or restarting" page), once systemd has given up
    starting gunicorn (meanwhile a request may wait in the socket's backlog)."""
    wait_until_serving(site.url + "/", timeout=120, serving=lambda status: status == 503)


def site_status(site) -> str:
    """What `python3 -m djangoship status` prints from the server (its command line run as root)."""
    result = site.guest.exec(shlex.split(report.status(Layout(APP)))[2:], timeout=120)
    said = result.stdout.decode() + result.stderr.decode()
    print(f"\n[damage] status:\n{said}")
    return said


def with_two_releases(site, workdir) -> str:
    """A release before the live one is kept (what `--previous` goes back to): the live release's id."""
    if len(sh(site, f"cat /srv/{APP}/releases/.history").split()) < 2:
        change_home_page(workdir, "a-second-release")
        site.up()
    return live_release(site)


@pytest.fixture
def serving_afterwards(site, workdir):
    """Should a test below fail half-way, a new release brings the site back for the tests after it."""
    yield
    if http_get(site.url + "/healthz")[0] != 200:
        change_home_page(workdir, f"after-a-failed-repair-{time.monotonic_ns()}")
        site.up()


def repaired_by_the_deploy_run_again(site, live: str, before: tuple[int, int]) -> str:
    """The repair that `status` names: `pulumi up --replace` of the deploy step. It alone runs, with the same release,
    and brings the site back to 200 on that release with nothing lost. What the deploy printed."""
    steps = site.up(replace=(f"{APP}-deploy",))
    assert [step.name for step in steps if step.ran] == [f"{APP}-deploy"]
    deploy = step_ran(site, "deploy")
    said = deploy.stdout + deploy.stderr
    print(f"\n[damage] the deploy run again:\n{said}")
    assert http_get(site.url + "/")[0] == 200 and live_release(site) == live
    assert counts(site) == before
    assert "damage:" not in site_status(site)
    return said


def test_a_deleted_virtualenv_is_built_again_by_the_deploy_run_again(site, workdir, serving_afterwards):
    """Every release shares the virtualenv: deleted by hand, the site answers 503 once gunicorn starts again (a
    reboot, a crash). No message may say a release still serves; `status` names the damage and the repair."""
    live = with_two_releases(site, workdir)
    before = counts(site)
    venv = Path(sh(site, f"readlink -f /srv/{APP}/current/venv").strip()).name
    sh(site, f"rm -rf /srv/{APP}/venvs/{venv} && (systemctl restart gunicorn.service || true)")
    answers_503(site)

    for command in (f"{APP}-activate --previous", f"{APP}-activate {live}"):
        code, said = as_root(site, command)
        assert code != 0
        assert f"the virtualenv venvs/{venv} of release" in said and "is missing" in said, said
        assert "through nginx /healthz answered 503" in said, said
        assert "still serving" not in said and "is serving" not in said, said
    assert http_get(site.url + "/")[0] == 503

    status = site_status(site)
    assert f"damage:       the virtualenv venvs/{venv} of release {live} is missing" in status, status
    assert "through nginx /healthz answered 503" in status and f"{APP}-deploy" in status, status

    said = repaired_by_the_deploy_run_again(site, live, before)
    assert f"the virtualenv venvs/{venv} of release {live} is missing: building it again" in said, said
    assert "already built" not in said and "still serving" not in said, said
    assert f"activate: release {live} is live" in said, said


def test_a_deleted_live_release_is_built_again_by_the_deploy_run_again(site, workdir, serving_afterwards):
    """The live release's folder deleted by hand: `--previous` goes back to the release before it (nothing serves,
    so there is nothing to protect) and says so truly; the deploy run again builds the deleted release from its
    archive, kept on the server for that, and makes it live again."""
    live = with_two_releases(site, workdir)
    before = counts(site)
    earlier = [r for r in sh(site, f"cat /srv/{APP}/releases/.history").split() if r != live][-1]
    sh(site, f"rm -rf /srv/{APP}/releases/{live} && (systemctl restart gunicorn.service || true)")
    answers_503(site)

    status = site_status(site)
    assert f"damage:       release {live} (current) is missing from this server" in status, status
    assert "through nginx /healthz answered 503" in status and f"{APP}-deploy" in status, status

    code, said = as_root(site, f"{APP}-activate --previous")
    assert code == 0, said
    assert f"release {live} (current) is missing from this server" in said, said
    assert "through nginx /healthz answered 503" in said and "nothing is live yet" not in said, said
    assert f"activate: release {earlier} is live" in said, said
    assert http_get(site.url + "/")[0] == 200 and live_release(site) == earlier

    said = repaired_by_the_deploy_run_again(site, live, before)
    assert f"release {live} is not on this server: building it" in said, said
    assert f"release {live} serves on its own socket: switching to it" in said, said
    assert "still serving" not in said, said
