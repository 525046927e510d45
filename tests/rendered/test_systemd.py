"""systemd: `systemd-analyze verify` on every unit, with nothing tolerated on stderr; the units' properties."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import skip_or_fail

from rendered.helpers import (
    CONFIGS,
    plan_for,
    site_for,
    systemd_verify,
    unit_sections,
    unit_value,
    user_data_doc,
    written_files,
)
from server.files import AFTER_BOOT, server_files
from server.host import render


def gunicorn_units(config_id: str) -> dict[str, str]:
    files = written_files(user_data_doc(config_id))
    return {name: files[f"/etc/systemd/system/{name}"]["content"] for name in ("gunicorn.socket", "gunicorn.service")}


@pytest.mark.parametrize("config_id", CONFIGS)
def test_systemd_verify_units(config_id: str, tmp_path: Path) -> None:
    result = systemd_verify(gunicorn_units(config_id), tmp_path / "root")
    # Unknown keys and bad values are only warnings with exit 0: any output at all is a failure.
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


@pytest.mark.parametrize("config_id", CONFIGS)
def test_systemd_verify_release_check_unit(config_id: str, tmp_path: Path) -> None:
    """The unit that runs a release on its own socket before the switch, as an instance (a release id)."""
    plan = plan_for(config_id)
    unit = render("systemd/release-check.service.j2", plan)
    sections = unit_sections(unit)
    assert unit_value(sections, "Service", "RuntimeDirectory") == f"{plan.app.name}-check/%i"
    assert f"--bind unix:/run/{plan.app.name}-check/%i/gunicorn.sock --workers 1" in unit_value(
        sections, "Service", "ExecStart"
    )
    result = systemd_verify({f"{plan.app.name}-release-check@0123456789ab.service": unit}, tmp_path / "root")
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


@pytest.mark.parametrize("config_id", CONFIGS)
def test_systemd_verify_metadata_block_unit(config_id: str, tmp_path: Path) -> None:
    plan = plan_for(config_id)
    unit = render("systemd/metadata-block.service.j2", plan)
    result = systemd_verify({f"{plan.app.name}-metadata-block.service": unit}, tmp_path / "root")
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_systemd_verify_nftables_puts_the_metadata_block_back(tmp_path: Path) -> None:
    """Debian's nftables.service with the drop-in: its start, reload and stop (each of which flushes the ruleset)
    are followed by the block's rules."""
    plan = plan_for("debian-13-t2.micro")
    if not any(
        Path(folder, "nftables.service").exists() for folder in ("/usr/lib/systemd/system", "/lib/systemd/system")
    ):
        skip_or_fail("nftables.service is not on this host (apt-get install nftables)")
    dropin = render("systemd/nftables-metadata-block.conf.j2", plan)
    result = systemd_verify(
        {f"nftables.service.d/{plan.app.name}-metadata-block.conf": dropin},
        tmp_path / "root",
        also=("nftables.service",),
    )
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout
    sections = unit_sections(dropin)
    assert {key: unit_value(sections, "Service", key) for key in ("ExecStartPost", "ExecReload", "ExecStopPost")} == {
        key: f"/usr/sbin/nft -f {plan.paths.metadata_block}" for key in ("ExecStartPost", "ExecReload", "ExecStopPost")
    }


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(("NoNewPrivileges=yes", "NoNewPrivileges=maybe"), id="bad-value"),
        pytest.param(("PrivateTmp=yes", "PrivateTmp=yes\nPrivateTemp=yes"), id="unknown-key"),
        pytest.param(("ExecReload=", "ExecStartPre=/nowhere/missing\nExecReload="), id="missing-program"),
    ],
)
def test_systemd_verify_catches_a_broken_unit(breakage: tuple[str, str], tmp_path: Path) -> None:
    units = gunicorn_units("debian-13-t2.micro")
    good, bad = breakage
    assert good in units["gunicorn.service"]
    units["gunicorn.service"] = units["gunicorn.service"].replace(good, bad, 1)
    result = systemd_verify(units, tmp_path / "root", missing=("/nowhere/missing",))
    assert result.returncode != 0 or result.stderr != "", "the broken unit passed verify silently"


@pytest.mark.parametrize("config_id", CONFIGS)
def test_systemd_unit_properties(config_id: str) -> None:
    plan = plan_for(config_id)
    units = gunicorn_units(config_id)
    socket_unit, service = unit_sections(units["gunicorn.socket"]), unit_sections(units["gunicorn.service"])

    listen = unit_value(socket_unit, "Socket", "ListenStream")
    assert listen == plan.paths.socket_path and listen.startswith("/run/")  # a unix socket (a path), under /run
    assert unit_value(socket_unit, "Socket", "SocketUser") == "www-data"
    assert unit_value(socket_unit, "Socket", "SocketGroup") == "www-data"
    assert unit_value(socket_unit, "Socket", "SocketMode") == "0600"
    assert unit_value(socket_unit, "Install", "WantedBy") == "sockets.target"
    assert f"server unix:{listen} " in site_for(config_id, https=False)  # nginx dials the same socket

    expected = {
        "Type": "notify",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "User": plan.app.name,
        "Group": plan.app.name,
        "EnvironmentFile": plan.paths.env_file,
        "ReadWritePaths": plan.paths.media_root,
        "ExecStart": f"{plan.paths.current_dir}/venv/bin/gunicorn --config {plan.paths.config_dir}/gunicorn.conf.py",
    }
    for key, value in expected.items():
        assert unit_value(service, "Service", key) == value, key
    assert re.fullmatch(r"/(usr/)?bin/kill -(s )?HUP \$MAINPID", unit_value(service, "Service", "ExecReload"))
    assert unit_value(service, "Unit", "Requires") == "gunicorn.socket"
    # The user the service runs as is the one cloud-init creates (verify does not check this).
    assert any(isinstance(u, dict) and u["name"] == plan.app.name for u in user_data_doc(config_id)["users"])


@pytest.mark.parametrize("config_id", CONFIGS)
def test_gunicorns_start_limit_reaches_a_server_that_booted_before_it(config_id: str, tmp_path: Path) -> None:
    """The start limit (how a crash loop ends) is a drop-in written after boot, not in the unit: the unit is
    first-boot data a running instance never reads again, so a server that booted with the old one-minute window
    (which a slow crash loop never filled) gets the five minutes from its next configure."""
    plan = plan_for(config_id)
    dropin = "/etc/systemd/system/gunicorn.service.d/start-limit.conf"
    declared = {file.path: file for file in server_files(plan)}
    assert declared[dropin].stage == AFTER_BOOT
    text = declared[dropin].text(plan)
    limit = unit_sections(text)
    assert (unit_value(limit, "Unit", "StartLimitIntervalSec"), unit_value(limit, "Unit", "StartLimitBurst")) == (
        "300",
        "5",
    )
    assert "StartLimit" not in gunicorn_units(config_id)["gunicorn.service"]
    # A server that booted before: its unit still names the old window; the drop-in wins, and verify accepts both.
    old_unit = gunicorn_units(config_id)["gunicorn.service"].replace(
        "[Service]", "StartLimitIntervalSec=60\nStartLimitBurst=5\n\n[Service]", 1
    )
    units = {
        **gunicorn_units(config_id),
        "gunicorn.service": old_unit,
        "gunicorn.service.d/start-limit.conf": text,
    }
    result = systemd_verify(units, tmp_path / "root")
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout
