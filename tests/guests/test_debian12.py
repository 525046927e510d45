"""Debian 12 (`image: debian-12`), still offered: the core of the local-boot and day-2 checks on one bookworm
guest — first boot, the deploy, a redeploy under load, a reboot, backup and restore — then the move to
Debian 13 that an `image` change makes: a new server on the same data volume, whose first boot upgrades the
PostgreSQL 15 cluster to 17 (a dump of it taken first) and serves the same rows and files.

The whole suite runs on Debian 13, the default (test_local_boot.py, test_day2.py, test_performance.py); the
checks below are those modules' own (tests/site_checks.py, tests/day2_site.py), called in this order on this
module's guests. Day 2's fixtures (`site`, `s3`, `workdir`, `replacement`) take `release` and
`replacement_release` from this module.
"""

from __future__ import annotations

import day2_site
import pytest
import site_checks
from day2_site import replacement, s3, site, workdir  # noqa: F401  (fixtures, used by name)
from site_helpers import APP, sh

pytestmark = pytest.mark.localboot


@pytest.fixture(scope="module")
def release() -> str:
    return "bookworm"


@pytest.fixture(scope="module")
def replacement_release() -> str:
    return "trixie"


def test_first_boot_finished_and_every_step_ran(site):
    site_checks.cloud_init_finished_without_errors(site)
    site_checks.every_step_ran_once_in_order(site)
    site_checks.services_enabled_and_active(site)


def test_debian_12_runs_postgresql_15_and_python_3_11(site):
    assert sh(site, ". /etc/os-release; echo $VERSION_ID").strip() == "12"
    assert sh(site, "pg_lsclusters --no-header").split()[:4] == ["15", "main", "5432", "online"]
    version = sh(site, f"/srv/{APP}/current/venv/bin/python -c 'import sys; print(sys.version_info[:2])'")
    assert version.strip() == "(3, 11)"


def test_pages_read_from_postgresql(site):
    site_checks.healthz_and_home_page_read_from_postgresql(site)


def test_redeploy_under_load(site, workdir):
    day2_site.new_version_deploys_in_place_with_no_failed_request(site, workdir)


def test_reboot_keeps_site_and_data(site):
    site_checks.reboot_keeps_site_and_data(site)


def test_backup_damage_restore_round_trip(site, s3):
    day2_site.backup_damage_restore_round_trip(site, s3)


def test_replaced_server_finds_the_same_rows_and_files(replacement):
    day2_site.replaced_server_finds_the_same_rows_and_files(replacement)


# --- Debian 12 → 13 on the same data volume: PostgreSQL 15 → 17 --------------------------------------------


def test_the_replacement_upgraded_postgresql_15_to_17(replacement):
    live, _ = replacement
    assert sh(live, ". /etc/os-release; echo $VERSION_ID").strip() == "13"
    # One cluster, the new version's, on the port the app's pooler expects, with the app's data in it.
    clusters = sh(live, "pg_lsclusters --no-header").strip().splitlines()
    assert [line.split()[:4] for line in clusters] == [["17", "main", "5432", "online"]], clusters
    assert sh(live, "readlink -f /var/lib/postgresql/17/main").startswith("/var/lib/postgresql/17/main")
    assert sh(live, "findmnt -no SOURCE /var/lib/postgresql").strip().endswith("/postgresql]"), "still on the volume"
    log = sh(live, "cat /var/log/cloud-init-output.log")
    assert "upgraded from PostgreSQL 15 to 17" in log, log[-3000:]
    for line in log.splitlines():
        if line.startswith(f"{APP}-pg-upgrade:"):
            print(f"\n[debian 12 → 13] {line}", end="")


def test_a_dump_of_the_old_cluster_was_taken_first(replacement):
    live, _ = replacement
    dumps = sh(live, "ls /data/backups").split()
    (dump,) = [name for name in dumps if name.startswith("pre-upgrade-postgresql-15-")]
    # The whole cluster: the app's role (its password hash) and its rows.
    text = sh(live, f"zcat /data/backups/{dump}")
    assert f"CREATE ROLE {APP};" in text and "SCRAM-SHA-256$" in text
    assert "survives-the-server" in text


def test_the_old_server_packages_are_gone_again(replacement):
    live, _ = replacement
    assert sh(live, "dpkg-query -W -f '${db:Status-Abbrev}' postgresql-15 2> /dev/null || true").strip() in {"", "un"}
    assert sh(live, f"ls /etc/apt/sources.list.d/ /etc/apt/preferences.d/ | grep {APP} || true").strip() == ""
    assert sh(live, "ls /usr/lib/postgresql").split() == ["17"]
