"""The first-boot document: cloud-init's own schema, plus the top-level keys it lets through; its properties;
the firstboot script's swap and PostgreSQL-upgrade decisions, run with stand-ins for the system's commands."""

from __future__ import annotations

import base64
import gzip
import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import skip_or_fail

from catalog.offerings import swap_mib
from config.settings import load_settings
from rendered.helpers import CONFIGS, need, plan_for, run, user_data_doc, user_data_for, written_files
from server.host import (
    USER_DATA_LIMIT,
    encode_user_data,
    render,
    without_comment_lines,
)

SCHEMA_KEYS_SCRIPT = r"""
import json
from cloudinit.config.schema import get_schema
schema = get_schema()
keys = set(schema.get("properties", {}))
# 22.4: {"allOf": [{"$ref": "#/$defs/cc_<module>"}, ...]}; each module's definition lists its keys.
for part in schema.get("allOf", []):
    ref = part.get("$ref", "")
    node = schema["$defs"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/$defs/") else part
    keys |= set(node.get("properties", {}))
print(json.dumps(sorted(keys)))
"""


@pytest.fixture(scope="module")
def cloud_init_keys() -> frozenset[str]:
    """Top-level keys of cloud-config known to the installed cloud-init. Its Python module lives in the
    distribution's Python (/usr/bin/python3), not in the project's virtualenv."""
    need("cloud-init")
    python = "/usr/bin/python3"
    if not Path(python).exists() or run([python, "-c", "import cloudinit"]).returncode != 0:
        skip_or_fail(f"{python} cannot import cloudinit (install Debian's cloud-init package)")
    result = run([python, "-c", SCHEMA_KEYS_SCRIPT])
    assert result.returncode == 0, result.stderr
    keys = frozenset(json.loads(result.stdout))
    # Not vacuous: the schema really was found and read.
    assert len(keys) > 50 and {"packages", "write_files", "runcmd", "users", "ssh_pwauth"} <= keys
    return keys


def unknown_top_level_keys(document_text: str, known: frozenset[str]) -> list[str]:
    return sorted(set(yaml.safe_load(document_text)) - known)


def cloud_init_schema(document_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user-data"
    path.write_text(document_text)
    return run([need("cloud-init"), "schema", "--config-file", str(path)])


@pytest.mark.parametrize("config_id", CONFIGS)
def test_user_data_passes_cloud_init_schema(config_id: str, tmp_path: Path, cloud_init_keys: frozenset[str]) -> None:
    text = user_data_for(config_id)
    result = cloud_init_schema(text, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Valid cloud-config" in result.stdout, output
    # Deprecated keys pass here but make newer cloud-init (Ubuntu 24.04's) finish "degraded".
    assert "deprecat" not in output.lower(), output
    assert unknown_top_level_keys(text, cloud_init_keys) == []


def test_top_level_key_check_catches_a_misspelt_module(cloud_init_keys: frozenset[str]) -> None:
    text = user_data_for("debian-13-t2.micro")
    assert "\npackages:\n" in text
    misspelt = text.replace("\npackages:\n", "\npakages:\n")
    assert unknown_top_level_keys(misspelt, cloud_init_keys) == ["pakages"]


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(("package_upgrade: false\n", 'package_upgrade: "often"\n'), id="type-error"),
        pytest.param(("    shell: /usr/sbin/nologin\n", "    shelll: /usr/sbin/nologin\n"), id="bad-nested-key"),
        pytest.param(("#cloud-config\n", "# no header\n"), id="missing-header"),
    ],
)
def test_cloud_init_schema_catches_a_broken_document(breakage: tuple[str, str], tmp_path: Path) -> None:
    """The real document, broken in one place: the validator as called above must reject it."""
    text = user_data_for("debian-13-t2.micro")
    good, bad = breakage
    assert text.count(good) == 1
    result = cloud_init_schema(text.replace(good, bad), tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr


@pytest.mark.parametrize("config_id", CONFIGS)
def test_user_data_properties(config_id: str) -> None:
    plan, text, doc = plan_for(config_id), user_data_for(config_id), user_data_doc(config_id)
    assert text.splitlines()[0] == "#cloud-config"
    packages = set(doc["packages"])
    assert {"postgresql", "pgbouncer", "nginx", "git", "unattended-upgrades"} <= packages
    assert "python3-venv" not in packages  # the build needs only python3 (deploy.sh: pip's pinned wheel)
    # Build tools are not installed at first boot (every example requirement has a wheel): docs/performance.md.
    assert not packages & {"gcc", "python3-dev", "libpq-dev", "libjpeg-dev", "zlib1g-dev"}
    assert doc["package_update"] is True and doc["package_upgrade"] is False

    app_users = [u for u in doc["users"] if isinstance(u, dict) and u.get("name") == plan.app.name]
    assert len(app_users) == 1
    user = app_users[0]
    assert user["system"] is True and user["lock_passwd"] is True
    assert user["shell"] in {"/usr/sbin/nologin", "/sbin/nologin"}
    assert user["homedir"] == plan.paths.base_dir and user["homedir"].startswith("/srv/")
    assert "default" in doc["users"]  # the image's login user (ubuntu/admin) is kept for SSH

    # No secret can be in user-data (readable through the EC2 API and from the instance's metadata).
    for marker in ("PASSWORD=", "PASSWORD'", "SECRET_KEY=", "PRIVATE KEY", "BEGIN OPENSSH"):
        assert marker not in text, marker
    assert "chpasswd" not in doc and "password" not in doc
    assert not {"passwd", "hashed_passwd", "plain_text_passwd"} & set(user)

    assert len(text.encode()) <= USER_DATA_LIMIT
    encoded, gzipped = encode_user_data(text)
    assert not gzipped and base64.b64decode(encoded).decode() == text

    # SSH: key only, no root, both through cloud-init and through an sshd drop-in.
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    sshd = written_files(doc)[f"/etc/ssh/sshd_config.d/60-{plan.app.name}.conf"]["content"].splitlines()
    assert {"PasswordAuthentication no", "PermitRootLogin no", "KbdInteractiveAuthentication no"} <= set(sshd)

    files = written_files(doc)
    assert files[f"/usr/local/sbin/{plan.app.name}-firstboot"]["permissions"] == "0755"
    assert doc["runcmd"] == [[f"/usr/local/sbin/{plan.app.name}-firstboot"]]
    # The embedded files are exactly the rendered ones (YAML block scalars keep them byte for byte), the scripts and
    # units without their comment lines: the document must stay within EC2's 16 KiB.
    for path, template in (
        ("/etc/systemd/system/gunicorn.socket", "systemd/gunicorn.socket.j2"),
        ("/etc/systemd/system/gunicorn.service", "systemd/gunicorn.service.j2"),
        (f"/usr/local/sbin/{plan.app.name}-firstboot", "scripts/firstboot.sh.j2"),
    ):
        assert files[path]["content"] == without_comment_lines(render(template, plan)), path
    assert files[f"/etc/{plan.app.name}/placeholder.conf"]["content"] == render("nginx/placeholder.conf.j2", plan)


def test_large_user_data_takes_the_gzip_path() -> None:
    big = user_data_for("debian-13-t2.micro") + "# padding\n" * 2000
    assert len(big.encode()) > USER_DATA_LIMIT
    encoded, gzipped = encode_user_data(big)
    assert gzipped
    raw = base64.b64decode(encoded)
    assert len(raw) <= USER_DATA_LIMIT and gzip.decompress(raw).decode() == big
    assert encode_user_data(big) == (encoded, True)  # mtime 0: the same bytes every time


def _swap_block(config_id: str) -> str:
    script = written_files(user_data_doc(config_id))[f"/usr/local/sbin/{plan_for(config_id).app.name}-firstboot"][
        "content"
    ]
    match = re.search(r"^swap_mib=.*?^fi$", script, re.DOTALL | re.MULTILINE)
    assert match, "no swap block in the firstboot script"
    block = match.group(0)
    assert "systemd-detect-virt --container" in block
    assert block.index("systemd-detect-virt --container") < block.index("fallocate")
    return block


@pytest.mark.parametrize(
    ("config_id", "container", "expect_swap"),
    [
        ("debian-13-t2.micro", False, True),
        ("debian-13-t2.micro", True, False),  # the local first-boot guest (systemd-nspawn)
        ("debian-12-t2.nano", False, True),
        ("ubuntu-24.04", False, True),
        ("t3.medium-9-workers", False, False),  # 4 GiB: no swap wanted
    ],
)
def test_firstboot_swap_logic(config_id: str, container: bool, expect_swap: bool, tmp_path: Path) -> None:
    """The swap block of the real firstboot script, run with stand-ins for the commands that touch the
    system and with /swapfile and /etc/fstab redirected into a temp dir."""
    block = _swap_block(config_id)
    assert block.count("/swapfile") >= 4 and block.count("/etc/fstab") == 1
    block = block.replace("/swapfile", f"{tmp_path}/swapfile").replace("/etc/fstab", f"{tmp_path}/fstab")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "systemd-detect-virt": f'echo "$0 $*" >> {tmp_path}/calls\n'
        + (
            '[ "${1:-}" = --container ] || exit 1\n[ "${2:-}" = --quiet ] || echo systemd-nspawn\nexit 0\n'
            if container
            else "echo none\nexit 1\n"
        ),
        "fallocate": f'echo "fallocate $*" >> {tmp_path}/calls\n: > "$3"\n',
        "mkswap": f'echo "mkswap $*" >> {tmp_path}/calls\n',
        "swapon": f'echo "swapon $*" >> {tmp_path}/calls\n',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    script = 'set -euo pipefail\nlog() { echo "LOG: $*"; }\n' + block + "\n"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = run(["bash", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text()
    if expect_swap:
        mib = swap_mib(load_settings(CONFIGS[config_id], project="p", stack="s").instance_type)
        assert f"fallocate -l {mib}M {tmp_path}/swapfile" in calls
        assert f"mkswap {tmp_path}/swapfile" in calls and f"swapon {tmp_path}/swapfile" in calls
        assert (tmp_path / "fstab").read_text() == f"{tmp_path}/swapfile none swap sw 0 0\n"
        assert stat.S_IMODE((tmp_path / "swapfile").stat().st_mode) == 0o600
        # Idempotent: a second run (a re-run of the script) adds nothing.
        again = run(["bash", "-c", script], env=env)
        assert again.returncode == 0 and len((tmp_path / "fstab").read_text().splitlines()) == 1
    else:
        assert "fallocate" not in calls and not (tmp_path / "fstab").exists()
        if container:
            assert "container detected (systemd-nspawn)" in result.stdout


PG_UPGRADE_CASES = {
    # (system, server installed, clusters on the volume) → what the script must do
    "same-version": ("trixie", "17", ["17 main"], "nothing"),
    "debian-12-volume-on-13": ("trixie", "17", ["15 main", "17 main"], "upgrade"),
    "debian-13-volume-on-12": ("bookworm", "15", ["15 main", "17 main"], "refuse"),
    "debian-12-volume-on-ubuntu": ("noble", "16", ["15 main", "16 main"], "refuse"),
}


@pytest.mark.parametrize("case", PG_UPGRADE_CASES)
def test_pg_upgrade_decisions(case: str, tmp_path: Path) -> None:
    """The real pg-upgrade script with stand-ins for PostgreSQL's and apt's commands and the system's files
    under a temp dir: which clusters it upgrades, refuses or leaves alone, and in what order. (The real
    upgrade, with data, is proven on guests: tests/guests/test_debian12.py.)"""
    codename, installed, clusters, expected = PG_UPGRADE_CASES[case]
    plan = plan_for("debian-13-t2.micro")
    script = written_files(user_data_doc("debian-13-t2.micro"))[f"/usr/local/sbin/{plan.app.name}-pg-upgrade"][
        "content"
    ]
    root = tmp_path / "root"
    for path in (
        "/etc/os-release",
        "/usr/lib/postgresql",
        "/etc/postgresql",
        "/etc/apt",
        "/run/lock",
        plan.paths.backup_dir,
    ):
        assert path in script, path
        script = script.replace(path, f"{root}{path}")
    (root / "run/lock").mkdir(parents=True)
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/apt/preferences.d").mkdir()
    (root / "etc/apt/sources.list.d/debian.sources").write_text(f"Suites: {codename} {codename}-updates\n")
    (root / "etc/os-release").write_text(f'VERSION_CODENAME={codename}\nPRETTY_NAME="OS {codename}"\n')
    server = root / f"usr/lib/postgresql/{installed}/bin/postgres"
    server.parent.mkdir(parents=True)
    server.write_text("")
    server.chmod(0o755)
    for cluster in clusters:
        (root / "etc/postgresql" / cluster.replace(" ", "/")).mkdir(parents=True)
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log_call = f'echo "$(basename "$0") $*" >> {calls}\n'
    stubs = {
        "pg_lsclusters": "".join(f"echo '{c} 5432 online postgres /x /y'\n" for c in clusters),
        "pg_conftool": "echo 5432\n",
        # psql counting the databases of the package's empty cluster; pg_dumpall writing the dump.
        "runuser": log_call + 'case "$*" in *psql*) echo 0 ;; *pg_dumpall*) echo "-- dump" ;; esac\n',
    }
    for name in ("pg_ctlcluster", "pg_dropcluster", "pg_upgradecluster", "apt-get"):
        stubs[name] = log_call
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    result = run(["bash", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    # (apt's lock timeout, the seconds left of the apt helper's bound, left out)
    done = (
        [re.sub(r" -o DPkg::Lock::Timeout=\d+", "", call) for call in calls.read_text().splitlines()]
        if calls.exists()
        else []
    )
    if expected == "nothing":
        assert result.returncode == 0 and done == [], (result.stderr, done)
    elif expected == "refuse":
        old = next(c for c in clusters if not c.startswith(installed))
        assert result.returncode == 1
        assert f"holds a PostgreSQL {old.split()[0]} cluster" in result.stderr, result.stderr
        assert "The data was not changed. Set `image` back" in result.stderr
        # Only the package's own empty cluster went; the old one and apt were not touched.
        assert not [call for call in done if old in call or call.startswith(("apt-get", "pg_upgradecluster"))]
        assert f"pg_dropcluster --stop {installed} main" in done
    else:
        assert result.returncode == 0, result.stderr
        order = [
            "pg_dropcluster --stop 17 main",  # the empty cluster the package made
            "apt-get -y -q install --no-install-recommends postgresql-15",
            "pg_ctlcluster 15 main start",
            "pg_upgradecluster -m upgrade 15 main",  # after the dump
            "pg_dropcluster --stop 15 main",
            "apt-get -y -q purge postgresql-15 postgresql-client-15",
        ]
        positions = [next(i for i, call in enumerate(done) if call.startswith(step)) for step in order]
        assert positions == sorted(positions), done
        dump = next(call for call in done if "pg_dumpall" in call)
        assert positions[2] < done.index(dump) < positions[3]
        (written,) = (root / plan.paths.backup_dir.lstrip("/")).glob("pre-upgrade-postgresql-15-*.sql.gz")
        assert gzip.decompress(written.read_bytes()) == b"-- dump\n"
        # The old release's archive was there for the upgrade only.
        assert sorted(p.name for p in (root / "etc/apt/sources.list.d").iterdir()) == ["debian.sources"]
        assert not list((root / "etc/apt/preferences.d").iterdir())
