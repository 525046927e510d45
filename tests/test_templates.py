"""Every file the server receives, through the validator the server itself would apply to it.

The first-boot document goes through `cloud-init schema`, the nginx sites through `nginx -t` (and one real
nginx on loopback), the systemd units through `systemd-analyze verify`, every shell script through
`shellcheck` and `bash -n`, the gunicorn settings through `compile()`. The scripts of the remote commands
are taken from what `harness.mockrun.run_program` records — the exact text `pulumi up` would send — and the
files they install are taken back out of those scripts' here-documents, so what is validated is what is sent.

A validator that is missing skips its tests with the reason — except with CI=true, where that fails: a CI
machine without the validators would otherwise pass vacuously. Each validator also has a negative test
showing that the way it is called here does catch a broken file.

Host tools: cloud-init (Debian's, with its `cloudinit` module for /usr/bin/python3), nginx, openssl,
shellcheck, systemd-analyze. Network: the live nginx listens on 127.0.0.1 only, on free ports.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import socketserver
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import skip_or_fail

from components.catalog import default_workers, swap_mib
from components.host import (
    USER_DATA_LIMIT,
    HostPlan,
    encode_user_data,
    plan_host,
    remote_script,
    render,
    render_gunicorn_config,
    render_nginx_site,
    render_pgbouncer_config,
    render_postgres_config,
    render_python_modules,
    render_user_data,
    site_hosts,
)
from components.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent  # on sys.path through conftest.py
PUBLIC_IP = "203.0.113.10"  # harness.mockrun.MockState's Elastic IP: the same hosts as run_program renders
DOMAIN = "www.example.com"

CONFIGS: dict[str, dict[str, Any]] = {
    "debian-13-t2.micro": {},  # the defaults
    "debian-12-t2.nano": {"image": "debian-12", "instanceType": "t2.nano"},
    "ubuntu-24.04": {"image": "ubuntu-24.04"},
    "t3.medium-9-workers": {"instanceType": "t3.medium", "gunicornWorkers": 9},
    "domain-http": {"domain": DOMAIN},
    "domain-https": {"domain": DOMAIN, "tlsEmail": "ops@example.com"},
    "platzi-prefix": {"app": {"name": "platzi", "envPrefix": "PLATZI_"}},
}
TLS_CONFIGS = [name for name, config in CONFIGS.items() if config.get("tlsEmail")]

# The program as `pulumi up` would evaluate it: local folder (archive) over HTTP, HTTPS, a git source
# pinned to a full commit (resolved without any network access), and the seed tutorial's env prefix.
PROGRAMS: dict[str, dict[str, Any]] = {
    "http": {},
    "https": CONFIGS["domain-https"],
    "git": {"app": {"source": "https://github.com/example/photofeed.git", "ref": "0123456789abcdef" * 2 + "01234567"}},
    "platzi": CONFIGS["platzi-prefix"],
    "backups": {"backupBucket": "photofeed-backups-example"},
    "nopooler": {"dbPooler": False},
    # A foreign project's build: unprefixed env, its own health view, a Python the image lacks, apt packages,
    # release commands, dependencies detected on the server.
    "foreign": {
        "image": "debian-13",
        "app": {
            "envPrefix": "",
            "healthPath": "/health/",
            "python": "3.14",
            "packages": ["libldap-dev", "gcc"],
            "releaseCommands": ["compress", "compilemessages --ignore=venv"],
        },
    },
}
# The programs whose config is also one of CONFIGS: (program, config id).
PROGRAM_CONFIGS = [("http", "debian-13-t2.micro"), ("https", "domain-https"), ("platzi", "platzi-prefix")]


# --------------------------------------------------------------------------------------------------------
# Helpers: tools, rendering, parsing
# --------------------------------------------------------------------------------------------------------


def need(tool: str) -> str:
    path = shutil.which(tool) or next(
        (str(p) for p in (Path("/usr/sbin") / tool, Path("/sbin") / tool) if p.exists()), None
    )
    if not path:
        skip_or_fail(f"validator `{tool}` is not installed on this host")
    return str(path)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, **kwargs)


@cache
def plan_for(config_id: str) -> HostPlan:
    return plan_host(load_settings(CONFIGS[config_id], project="djangoship", stack="dev"))


@cache
def user_data_for(config_id: str) -> str:
    return render_user_data(plan_for(config_id))


@cache
def user_data_doc(config_id: str) -> dict[str, Any]:
    return yaml.safe_load(user_data_for(config_id))


def written_files(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """cloud-init's write_files, by path."""
    return {entry["path"]: entry for entry in document["write_files"]}


def site_for(config_id: str, https: bool) -> str:
    plan = plan_for(config_id)
    return render_nginx_site(plan, https=https, hosts=site_hosts(plan, PUBLIC_IP))


def everything_rendered(plan: HostPlan) -> dict[str, str]:
    """Every text the host receives for one plan, by a name: used for the determinism checks."""
    hosts = site_hosts(plan, PUBLIC_IP)
    texts = {
        "user-data": render_user_data(plan),
        "user-data.b64": encode_user_data(render_user_data(plan))[0],
        "user-data.gz.b64": encode_user_data(render_user_data(plan) + "#" * USER_DATA_LIMIT)[0],
        "nginx-http": render_nginx_site(plan, https=False, hosts=hosts),
        "gunicorn.conf.py": render_gunicorn_config(plan),
        "postgresql.conf": render_postgres_config(plan),
        "manage": render("scripts/manage.sh.j2", plan),
        "wait-for-boot": remote_script("wait-for-boot", plan, boot_timeout_seconds=1500),
        "create-superuser": remote_script("create-superuser", plan, admin_user="admin", admin_email="a@example.com"),
    }
    if plan.tls:
        texts["nginx-https"] = render_nginx_site(plan, https=True, hosts=hosts)
    for kind in ("archive", "git"):
        texts[f"deploy-{kind}"] = remote_script(
            "deploy",
            plan,
            release_id="0123456789ab",
            archive_id="0123456789ab",
            source_kind=kind,
            git_url="https://example.com/app.git",
            git_ref="main",
            git_commit="0123456789abcdef0123456789abcdef01234567",
            health_path="/healthz",
            health_host=hosts[0],
        )
    return texts


HEREDOC = re.compile(r"<<'(?P<tag>[A-Z_]+)'\n(?P<body>.*?)^(?P=tag)$", re.DOTALL | re.MULTILINE)


def heredocs(script: str) -> list[tuple[str, str]]:
    """(delimiter, body) of every quoted here-document: the files a remote script installs, verbatim."""
    return [(m["tag"], m["body"]) for m in HEREDOC.finditer(script)]


def heredoc(script: str, tag: str, index: int = 0) -> str:
    bodies = [body for name, body in heredocs(script) if name == tag]
    assert len(bodies) > index, f"no here-document {tag!r} #{index} in the script"
    return bodies[index]


# A small nginx configuration parser: enough to assert on directives by structure rather than by grep.
@dataclasses.dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def find(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def walk(self) -> Iterator[Directive]:
        for child in self.block or []:
            yield child
            yield from child.walk()

    def arg_lists(self, name: str) -> list[list[str]]:
        return [d.args for d in self.find(name)]


def _tokens(text: str) -> Iterator[str]:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c
            i += 1
        elif c in "\"'":
            j, out = i + 1, []
            while text[j] != c:
                if text[j] == "\\":
                    out.append(text[j : j + 2])
                    j += 2
                else:
                    out.append(text[j])
                    j += 1
            yield "\0" + "".join(out)  # marked as quoted: never mistaken for { } ;
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 1
            yield text[i:j]
            i = j


def parse_nginx(text: str) -> Directive:
    tokens = list(_tokens(text))
    position = 0

    def block() -> list[Directive]:
        nonlocal position
        items: list[Directive] = []
        while position < len(tokens):
            token = tokens[position]
            if token == "}":
                position += 1
                return items
            words: list[str] = []
            while tokens[position] not in ("{", ";"):
                words.append(tokens[position].lstrip("\0"))
                position += 1
            end = tokens[position]
            position += 1
            items.append(Directive(words[0], words[1:], block() if end == "{" else None))
        return items

    return Directive("main", [], block())


def servers(site: Directive) -> list[Directive]:
    return site.find("server")


def location(server: Directive, *args: str) -> Directive:
    found = [d for d in server.find("location") if d.args == list(args)]
    assert len(found) == 1, f"expected one `location {' '.join(args)}`, found {len(found)}"
    return found[0]


def size_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
        else:
            key, _, value = line.partition("=")
            sections[current].append((key.strip(), value.strip()))
    return sections


def unit_value(sections: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    values = [v for k, v in sections.get(section, []) if k == key]
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times, expected once"
    return values[0]


# --------------------------------------------------------------------------------------------------------
# What the program really sends (run under Pulumi mocks)
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Sent:
    run: Any  # harness.mockrun.ProgramRun
    state: Any  # harness.mockrun.MockState
    scripts: dict[str, str]  # step name (wait-for-boot, configure-host, deploy, create-superuser) → script


def sent_scripts(program_run: Any) -> dict[str, str]:
    scripts: dict[str, str] = {}
    for step in program_run.steps():
        if step.type != "command:remote:Command":
            continue
        argv = shlex.split(step.inputs["create"])
        assert argv[:4] == ["sudo", "-n", "bash", "-c"] and len(argv) == 6, argv[:4]
        label = re.sub(r"^deploy-[0-9a-f]{12}$", "deploy", argv[5])
        assert label not in scripts
        scripts[label] = argv[4]
    assert list(scripts) == ["wait-for-boot", "configure-host", "deploy", "create-superuser"], list(scripts)
    return scripts


def run_sent(config: dict[str, Any]) -> Sent:
    from harness.mockrun import MockState, run_program

    state = MockState()
    program_run = run_program(config, state=state)
    return Sent(program_run, state, sent_scripts(program_run))


@pytest.fixture(scope="module")
def sent() -> dict[str, Sent]:
    return {name: run_sent(config) for name, config in PROGRAMS.items()}


# --------------------------------------------------------------------------------------------------------
# 1. The first-boot document: cloud-init's own schema, plus the top-level keys it lets through
# --------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------
# 2. The first-boot document's properties
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_id", CONFIGS)
def test_user_data_properties(config_id: str) -> None:
    plan, text, doc = plan_for(config_id), user_data_for(config_id), user_data_doc(config_id)
    assert text.splitlines()[0] == "#cloud-config"
    packages = set(doc["packages"])
    assert {"postgresql", "pgbouncer", "nginx", "python3-venv", "git", "unattended-upgrades"} <= packages
    # Build tools are not installed at first boot (every example requirement has a wheel): docs/performance.md.
    assert not packages & {"gcc", "python3-dev", "libpq-dev", "libjpeg-dev", "zlib1g-dev"}
    assert doc["package_update"] is True and doc["package_upgrade"] is False

    app_users = [u for u in doc["users"] if isinstance(u, dict) and u.get("name") == plan.app]
    assert len(app_users) == 1
    user = app_users[0]
    assert user["system"] is True and user["lock_passwd"] is True
    assert user["shell"] in {"/usr/sbin/nologin", "/sbin/nologin"}
    assert user["homedir"] == plan.base_dir and user["homedir"].startswith("/srv/")
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
    sshd = written_files(doc)[f"/etc/ssh/sshd_config.d/60-{plan.app}.conf"]["content"].splitlines()
    assert {"PasswordAuthentication no", "PermitRootLogin no", "KbdInteractiveAuthentication no"} <= set(sshd)

    files = written_files(doc)
    assert files[f"/usr/local/sbin/{plan.app}-firstboot"]["permissions"] == "0755"
    assert doc["runcmd"] == [[f"/usr/local/sbin/{plan.app}-firstboot"]]
    # The embedded files are exactly the rendered ones (YAML block scalars keep them byte for byte).
    assert files["/etc/systemd/system/gunicorn.socket"]["content"] == render("systemd/gunicorn.socket.j2", plan)
    assert files["/etc/systemd/system/gunicorn.service"]["content"] == render("systemd/gunicorn.service.j2", plan)
    assert files[f"/etc/{plan.app}/placeholder.conf"]["content"] == render("nginx/placeholder.conf.j2", plan)
    assert files[f"/usr/local/sbin/{plan.app}-firstboot"]["content"] == render("scripts/firstboot.sh.j2", plan)


def test_large_user_data_takes_the_gzip_path() -> None:
    big = user_data_for("debian-13-t2.micro") + "# padding\n" * 2000
    assert len(big.encode()) > USER_DATA_LIMIT
    encoded, gzipped = encode_user_data(big)
    assert gzipped
    raw = base64.b64decode(encoded)
    assert len(raw) <= USER_DATA_LIMIT and gzip.decompress(raw).decode() == big
    assert encode_user_data(big) == (encoded, True)  # mtime 0: the same bytes every time


def _swap_block(config_id: str) -> str:
    script = written_files(user_data_doc(config_id))[f"/usr/local/sbin/{plan_for(config_id).app}-firstboot"]["content"]
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
    upgrade, with data, is proven on guests: tests/test_debian12.py.)"""
    codename, installed, clusters, expected = PG_UPGRADE_CASES[case]
    plan = plan_for("debian-13-t2.micro")
    script = written_files(user_data_doc("debian-13-t2.micro"))[f"/usr/local/sbin/{plan.app}-pg-upgrade"]["content"]
    root = tmp_path / "root"
    for path in ("/etc/os-release", "/usr/lib/postgresql", "/etc/postgresql", "/etc/apt", plan.backup_dir):
        assert path in script, path
        script = script.replace(path, f"{root}{path}")
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
    done = calls.read_text().splitlines() if calls.exists() else []
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
            "apt-get install -y -qq --no-install-recommends postgresql-15",
            "pg_ctlcluster 15 main start",
            "pg_upgradecluster -m upgrade 15 main",  # after the dump
            "pg_dropcluster --stop 15 main",
            "apt-get purge -y -qq postgresql-15 postgresql-client-15",
        ]
        positions = [next(i for i, call in enumerate(done) if call.startswith(step)) for step in order]
        assert positions == sorted(positions), done
        dump = next(call for call in done if "pg_dumpall" in call)
        assert positions[2] < done.index(dump) < positions[3]
        (written,) = (root / plan.backup_dir.lstrip("/")).glob("pre-upgrade-postgresql-15-*.sql.gz")
        assert gzip.decompress(written.read_bytes()) == b"-- dump\n"
        # The old release's archive was there for the upgrade only.
        assert sorted(p.name for p in (root / "etc/apt/sources.list.d").iterdir()) == ["debian.sources"]
        assert not list((root / "etc/apt/preferences.d").iterdir())


# --------------------------------------------------------------------------------------------------------
# 3. nginx: `nginx -t` on every variant, the site's properties, and one real nginx on loopback
# --------------------------------------------------------------------------------------------------------

# nginx ≥ 1.25.1 deprecates `listen … http2`, which the site uses because Ubuntu 24.04 (1.24) and
# Debian 12 (1.22) have no `http2 on;`. Only this exact warning is tolerated, on hosts with a newer nginx.
TOLERATED_NGINX_WARNINGS = re.compile(r'the "listen \.\.\. http2" directive is deprecated')


def nginx_main_conf(work: Path, site: str, extra_http: str = "") -> Path:
    """A minimal main configuration around one site, with every path nginx writes inside `work`."""
    site_path = work / "site.conf"
    site_path.write_text(site)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {work}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = work / "nginx.conf"
    main.write_text(
        f"pid {work}/nginx.pid;\n"
        f"error_log {work}/error.log;\n"
        "events {}\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        f"    access_log {work}/access.log;\n"
        f"{temp_paths}\n"
        f"{extra_http}"
        f"    include {site_path};\n"
        "}\n"
    )
    return main


def nginx_test(work: Path, site: str) -> subprocess.CompletedProcess[str]:
    nginx = need("nginx")
    if not Path("/etc/nginx/mime.types").exists():
        skip_or_fail("/etc/nginx/mime.types is missing (the distribution's nginx package provides it)")
    return run([nginx, "-t", "-c", str(nginx_main_conf(work, site))])


def assert_nginx_accepts(work: Path, site: str) -> None:
    result = nginx_test(work, site)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    warnings = [line for line in output.splitlines() if "[warn]" in line and not TOLERATED_NGINX_WARNINGS.search(line)]
    assert not warnings, output


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway self-signed certificate, laid out like certbot's live/<domain>/ folder."""
    openssl = need("openssl")
    folder = tmp_path_factory.mktemp("letsencrypt-live")
    result = run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(folder / "privkey.pem"),
            "-out",
            str(folder / "fullchain.pem"),
            "-days",
            "2",
            "-subj",
            f"/CN={DOMAIN}",
            "-addext",
            f"subjectAltName=DNS:{DOMAIN}",
        ]
    )
    assert result.returncode == 0, result.stderr
    return folder


def with_certificate(site: str, domain: str, folder: Path) -> str:
    live = f"/etc/letsencrypt/live/{domain}/"
    assert site.count(live) == 4, "expected the certificate and key paths in both TLS server blocks"
    return site.replace(live, f"{folder}/")


def nginx_variants() -> list[Any]:
    params = []
    for config_id in CONFIGS:
        params.append(pytest.param(config_id, "placeholder", id=f"{config_id}-placeholder"))
        params.append(pytest.param(config_id, "http", id=f"{config_id}-http"))
        if config_id in TLS_CONFIGS:
            params.append(pytest.param(config_id, "https", id=f"{config_id}-https"))
    return params


@pytest.mark.parametrize(("config_id", "variant"), nginx_variants())
def test_nginx_accepts_the_site(config_id: str, variant: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    plan = plan_for(config_id)
    if variant == "placeholder":
        site = written_files(user_data_doc(config_id))[f"/etc/{plan.app}/placeholder.conf"]["content"]
    else:
        site = site_for(config_id, https=variant == "https")
    if variant == "https":
        site = with_certificate(site, plan.domain, request.getfixturevalue("certificate"))
    assert_nginx_accepts(tmp_path, site)


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(("client_max_body_size 20m;", "client_max_body_size twenty;"), id="bad-value"),
        pytest.param(("gzip_static on;", "gzip_statik on;"), id="unknown-directive"),
        pytest.param(("proxy_set_header Host $host;", "proxy_set_header Host $hots;"), id="unknown-variable"),
    ],
)
def test_nginx_test_catches_a_broken_site(breakage: tuple[str, str], tmp_path: Path) -> None:
    site = site_for("debian-13-t2.micro", https=False)
    good, bad = breakage
    assert good in site
    assert nginx_test(tmp_path, site.replace(good, bad, 1)).returncode != 0


def _main_server(site: Directive) -> Directive:
    found = [
        s for s in servers(site) if any(loc.args == ["/"] and loc.find("proxy_pass") for loc in s.find("location"))
    ]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize(("config_id", "https"), [(c, False) for c in CONFIGS] + [(c, True) for c in TLS_CONFIGS])
def test_nginx_site_properties(config_id: str, https: bool) -> None:
    plan = plan_for(config_id)
    site = parse_nginx(site_for(config_id, https))
    hosts = site_hosts(plan, PUBLIC_IP)

    upstreams = site.find("upstream")
    assert len(upstreams) == 1 and upstreams[0].find("server")[0].args[0] == f"unix:{plan.socket_path}"
    for server in servers(site):
        assert server.arg_lists("server_tokens") == [["off"]]

    # The default server answers unknown Host headers with nothing at all.
    default = [s for s in servers(site) if any("default_server" in a for a in s.arg_lists("listen"))]
    assert len(default) == 1
    assert default[0].arg_lists("server_name") == [["_"]]
    assert location(default[0], "/").arg_lists("return") == [["444"]]
    default_ports = sorted({a[0] for a in default[0].arg_lists("listen")})
    assert default_ports == (["443", "80", "[::]:443", "[::]:80"] if https else ["80", "[::]:80"])

    main = _main_server(site)
    proxy = location(main, "/")
    assert proxy.arg_lists("proxy_pass") == [[f"http://{upstreams[0].args[0]}"]]
    headers = {args[0]: args[1] for args in proxy.arg_lists("proxy_set_header")}
    assert headers == {"Host": "$host", "X-Forwarded-For": "$proxy_add_x_forwarded_for", "X-Forwarded-Proto": "$scheme"}

    static = location(main, "/static/")
    assert static.arg_lists("alias") == [[plan.static_root + "/"]]
    assert static.arg_lists("gzip_static") == [["on"]]
    hashed = [loc for loc in static.find("location") if loc.args[0] == "~"]
    assert len(hashed) == 1 and re.search(hashed[0].args[1], "site.0123456789ab.css")
    assert not re.search(hashed[0].args[1], "site.css") and not re.search(hashed[0].args[1], "site.0123456789ab.css.gz")
    assert hashed[0].arg_lists("gzip_static") == [["on"]]
    assert ["Cache-Control", "public, max-age=31536000, immutable"] in hashed[0].arg_lists("add_header")

    media = location(main, "/media/")
    assert media.arg_lists("alias") == [[plan.media_root + "/"]]
    executing = {"proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass", "memcached_pass", "perl"}
    assert not [d.name for d in media.walk() if d.name in executing]
    assert ["X-Content-Type-Options", "nosniff"] in media.arg_lists("add_header")
    assert media.arg_lists("default_type") == [["application/octet-stream"]]

    (limit,) = main.arg_lists("client_max_body_size")
    assert size_bytes(limit[0]) >= 10 * (1 << 20)  # the example app accepts 10 MB images

    if https:
        assert sorted(a[0] for a in main.arg_lists("listen")) == ["443", "[::]:443"]
        assert all("ssl" in a for a in main.arg_lists("listen"))
        assert main.arg_lists("server_name") == [[plan.domain]]
        assert any(a[0] == "Strict-Transport-Security" for a in main.arg_lists("add_header"))
        redirect = [s for s in servers(site) if s is not default[0] and s is not main]
        assert len(redirect) == 1
        assert sorted(a[0] for a in redirect[0].arg_lists("listen")) == ["80", "[::]:80"]
        assert redirect[0].arg_lists("server_name") == [hosts]
        assert location(redirect[0], "/").arg_lists("return") == [["301", f"https://{plan.domain}$request_uri"]]
    else:
        assert len(servers(site)) == 2
        assert sorted(a[0] for a in main.arg_lists("listen")) == ["80", "[::]:80"]
        assert main.arg_lists("server_name") == [hosts]
        assert hosts == ([plan.domain, PUBLIC_IP] if plan.domain else [PUBLIC_IP])


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Stands in for gunicorn: answers with the request line and headers it received, as JSON."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix-socket"

    def log_message(self, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextlib.contextmanager
def echo_server(path: Path) -> Iterator[None]:
    server = _UnixHTTPServer(str(path), _EchoHandler)
    path.chmod(0o777)  # nginx's workers run as another user (nobody) when the tests run as root
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def on_loopback(site: str, ports: dict[str, int]) -> str:
    """The site with its listeners moved to 127.0.0.1:<free port> and the IPv6 ones dropped."""
    site = re.sub(r"^\s*listen \[::\]:\d+[^;]*;\n", "", site, flags=re.MULTILINE)
    for port, local in ports.items():
        site = re.sub(rf"^(\s*listen ){port}\b", rf"\g<1>127.0.0.1:{local}", site, flags=re.MULTILINE)
    listens = re.findall(r"^\s*listen (\S+)", site, re.MULTILINE)
    assert listens and all(address.startswith("127.0.0.1:") for address in listens), listens
    return site


@contextlib.contextmanager
def running_nginx(work: Path, site: str, port: int) -> Iterator[None]:
    """nginx in the foreground, as a child of this test, stopped (and waited for) at the end."""
    nginx = need("nginx")
    if not Path("/etc/nginx/mime.types").exists():
        skip_or_fail("/etc/nginx/mime.types is missing (the distribution's nginx package provides it)")
    conf = nginx_main_conf(work, site)
    with open(work / "stderr", "w") as stderr:
        process = subprocess.Popen([nginx, "-c", str(conf), "-g", "daemon off;"], stdout=stderr, stderr=stderr)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                logs = [p.read_text() for p in (work / "stderr", work / "error.log") if p.exists()]
                pytest.fail(f"nginx exited with {process.returncode}: {''.join(logs)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            assert time.monotonic() < deadline, "nginx did not listen within 10 s"
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclasses.dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(port: int, path: str, host: str, tls: bool = False, **headers: str) -> Reply:
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def assert_no_answer(port: int, host: str, tls: bool = False) -> None:
    """444: nginx closes the connection without sending a response."""
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError)):
        fetch(port, "/", host, tls=tls)


@pytest.fixture()
def live_dir() -> Iterator[Path]:
    """A world-traversable temp dir (pytest's own are 0700): nginx's workers run as nobody under root."""
    folder = Path(tempfile.mkdtemp(prefix="djangoship-nginx-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def live_site(folder: Path, config_id: str, https: bool) -> tuple[str, str]:
    """(site with the server's paths moved into `folder`, the upstream socket path)."""
    plan = plan_for(config_id)
    site = site_for(config_id, https)
    socket_path = folder / "gunicorn.sock"
    for old, new in (
        (f"unix:{plan.socket_path} ", f"unix:{socket_path} "),
        (f"alias {plan.static_root}/;", f"alias {folder}/static/;"),
        (f"alias {plan.media_root}/;", f"alias {folder}/media/;"),
    ):
        assert site.count(old) == 1, old
        site = site.replace(old, new)
    css = b"body { color: #123456; }\n" * 40
    (folder / "static").mkdir(mode=0o755)
    (folder / "static" / "site.0123456789ab.css").write_bytes(css)
    (folder / "static" / "site.0123456789ab.css.gz").write_bytes(gzip.compress(css, mtime=0))
    (folder / "static" / "plain.css").write_bytes(css)
    (folder / "media").mkdir(mode=0o755)
    (folder / "media" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "media" / "evil.html").write_bytes(b"<script>alert(1)</script>")
    (folder / "media" / "evil.php").write_bytes(b"<?php system('id'); ?>")
    for path in (folder / "static").iterdir():
        path.chmod(0o644)
    for path in (folder / "media").iterdir():
        path.chmod(0o644)
    return site, str(socket_path)


def test_nginx_http_site_really_serves(live_dir: Path) -> None:
    config_id = "debian-13-t2.micro"
    site, socket_path = live_site(live_dir, config_id, https=False)
    port = free_port()
    with running_nginx(live_dir, on_loopback(site, {"80": port}), port):
        # Scanners (any other Host) get no answer at all.
        assert_no_answer(port, "scanner.invalid")

        # Before the first deploy (no gunicorn socket yet): a plain-text explanation instead of nginx's
        # HTML error page. (`error_page 502 … /deploying.txt` without `=503` keeps the upstream error's
        # status, 502, whatever the `return 503` in that location says; either is acceptable here.)
        down = fetch(port, "/", PUBLIC_IP)
        assert down.status in (502, 503) and down.headers["Content-Type"] == "text/plain"
        assert down.body == b"photofeed is being deployed or restarting. Try again in a minute.\n"

        # Hashed static names: the precompressed file, cached for a year.
        hashed = fetch(port, "/static/site.0123456789ab.css", PUBLIC_IP, Accept_Encoding="gzip")
        assert hashed.status == 200
        assert hashed.headers["Content-Encoding"] == "gzip"
        assert hashed.body == (live_dir / "static" / "site.0123456789ab.css.gz").read_bytes()
        assert hashed.headers.get_all("Cache-Control") == ["public, max-age=31536000, immutable"]
        assert "Accept-Encoding" in (hashed.headers["Vary"] or "")
        identity = fetch(port, "/static/site.0123456789ab.css", PUBLIC_IP)
        assert identity.headers["Content-Encoding"] is None
        assert identity.body == (live_dir / "static" / "site.0123456789ab.css").read_bytes()
        plain = fetch(port, "/static/plain.css", PUBLIC_IP)
        assert plain.status == 200 and plain.headers.get_all("Cache-Control") == ["public, max-age=3600"]

        # Uploads are served as data: never run, never sniffed, odd types downloaded.
        photo = fetch(port, "/media/photo.jpg", PUBLIC_IP)
        assert photo.status == 200 and photo.headers["Content-Type"] == "image/jpeg"
        assert photo.headers["X-Content-Type-Options"] == "nosniff"
        for name in ("evil.html", "evil.php"):
            evil = fetch(port, f"/media/{name}", PUBLIC_IP)
            assert evil.status == 200 and evil.headers["Content-Type"] == "application/octet-stream"
            assert evil.body == (live_dir / "media" / name).read_bytes()
            assert "sandbox" in evil.headers["Content-Security-Policy"]

        # The app, through the unix socket, with the headers Django relies on.
        with echo_server(Path(socket_path)):
            app = fetch(port, "/photos/?page=2", PUBLIC_IP)
            assert app.status == 200, app.body
            seen = json.loads(app.body)
            assert seen["path"] == "/photos/?page=2"
            assert seen["headers"]["host"] == PUBLIC_IP
            assert seen["headers"]["x-forwarded-proto"] == "http"
            assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
            assert "Server" not in app.headers or "/" not in app.headers["Server"]  # server_tokens off
    assert not (live_dir / "nginx.pid").exists()


def test_nginx_https_site_really_serves(live_dir: Path, certificate: Path) -> None:
    config_id = "domain-https"
    site, socket_path = live_site(live_dir, config_id, https=True)
    site = with_certificate(site, DOMAIN, certificate)
    http_port, https_port = free_port(), free_port()
    with running_nginx(live_dir, on_loopback(site, {"80": http_port, "443": https_port}), https_port):
        # Port 80: the domain and the bare address both go to https://<domain>, the rest gets nothing.
        for host in (DOMAIN, PUBLIC_IP):
            moved = fetch(http_port, "/admin/?next=/", host)
            assert moved.status == 301 and moved.headers["Location"] == f"https://{DOMAIN}/admin/?next=/"
        assert_no_answer(http_port, "scanner.invalid")
        assert_no_answer(https_port, "scanner.invalid", tls=True)
        with echo_server(Path(socket_path)):
            app = fetch(https_port, "/", DOMAIN, tls=True)
            assert app.status == 200, app.body
            seen = json.loads(app.body)
            assert seen["headers"]["host"] == DOMAIN and seen["headers"]["x-forwarded-proto"] == "https"
            assert app.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert not (live_dir / "nginx.pid").exists()


# --------------------------------------------------------------------------------------------------------
# 4. systemd: `systemd-analyze verify`, with nothing tolerated on stderr
# --------------------------------------------------------------------------------------------------------

EXEC_KEYS = re.compile(
    r"^(?:ExecStart|ExecStartPre|ExecStartPost|ExecReload|ExecStop|ExecStopPost)=[-@:+!|]*(\S+)", re.MULTILINE
)


def systemd_verify(
    units: dict[str, str], root: Path, missing: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify --root=ROOT` on the units, in a throwaway root that holds:
    - the host's own unit tree, so that sysinit.target, sockets.target, … resolve as on a real system;
    - the units under test in /etc/systemd/system, where cloud-init writes them;
    - an executable stand-in at every Exec*= path (verify fails on a missing program: the venv's
      gunicorn exists only after the first deploy, and /bin/kill is resolved inside the root), except
      for the paths in `missing`.
    User=/Group= are not checked by verify (measured: an unknown user passes silently); the tests below
    check that they name the user cloud-init creates instead."""
    analyze = need("systemd-analyze")
    host_units = next(
        (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if (p / "sysinit.target").exists()),
        None,
    )
    if host_units is None:
        skip_or_fail("no systemd unit tree on this host (sysinit.target not found)")
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text)
        for program in EXEC_KEYS.findall(text):
            assert program.startswith("/"), f"{name}: {program} is not an absolute path"
            if program in missing:
                continue
            stub = root / program.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return run([analyze, "verify", f"--root={root}", *units])


def gunicorn_units(config_id: str) -> dict[str, str]:
    files = written_files(user_data_doc(config_id))
    return {name: files[f"/etc/systemd/system/{name}"]["content"] for name in ("gunicorn.socket", "gunicorn.service")}


@pytest.mark.parametrize("config_id", CONFIGS)
def test_systemd_verify_units(config_id: str, tmp_path: Path) -> None:
    result = systemd_verify(gunicorn_units(config_id), tmp_path / "root")
    # Unknown keys and bad values are only warnings with exit 0: any output at all is a failure.
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


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
    assert listen == plan.socket_path and listen.startswith("/run/")  # a unix socket (a path), under /run
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
        "User": plan.app,
        "Group": plan.app,
        "EnvironmentFile": plan.env_file,
        "ReadWritePaths": plan.media_root,
        "ExecStart": f"{plan.current_dir}/venv/bin/gunicorn --config {plan.config_dir}/gunicorn.conf.py",
    }
    for key, value in expected.items():
        assert unit_value(service, "Service", key) == value, key
    assert re.fullmatch(r"/(usr/)?bin/kill -(s )?HUP \$MAINPID", unit_value(service, "Service", "ExecReload"))
    assert unit_value(service, "Unit", "Requires") == "gunicorn.socket"
    # The user the service runs as is the one cloud-init creates (verify does not check this).
    assert any(isinstance(u, dict) and u["name"] == plan.app for u in user_data_doc(config_id)["users"])


# --------------------------------------------------------------------------------------------------------
# 5. Shell: shellcheck and bash -n on every script the server runs, as sent
# --------------------------------------------------------------------------------------------------------

SENT_SCRIPTS = {
    # id → (program run, where the script is)
    "wait-for-boot": ("http", "wait-for-boot"),
    "configure-host-http": ("http", "configure-host"),
    "configure-host-https": ("https", "configure-host"),
    "configure-host-platzi": ("platzi", "configure-host"),
    "configure-host-nopooler": ("nopooler", "configure-host"),
    "deploy-archive-http": ("http", "deploy"),
    "deploy-archive-https": ("https", "deploy"),
    "deploy-git": ("git", "deploy"),
    "deploy-foreign": ("foreign", "deploy"),
    "activate-foreign": ("foreign", "configure-host:ACTIVATE"),
    "configure-host-foreign": ("foreign", "configure-host"),
    "manage-foreign": ("foreign", "configure-host:MANAGE"),
    "create-superuser": ("http", "create-superuser"),
    "manage": ("http", "configure-host:MANAGE"),
    "manage-platzi": ("platzi", "configure-host:MANAGE"),
    "letsencrypt-renewal-hook": ("https", "configure-host:HOOK"),
    "activate-http": ("http", "configure-host:ACTIVATE"),
    "activate-https": ("https", "configure-host:ACTIVATE"),
    "backup-local": ("http", "configure-host:BACKUP"),
    "backup-s3": ("backups", "configure-host:BACKUP"),
    "restore-local": ("http", "configure-host:RESTORE"),
    "restore-s3": ("backups", "configure-host:RESTORE"),
    "configure-host-backups": ("backups", "configure-host"),
}


@pytest.mark.parametrize("config_id", CONFIGS)
def test_shellcheck_data_volume_script(config_id: str, tmp_path: Path) -> None:
    """The bootcmd that mounts the data volume before any package is installed."""
    (command,) = user_data_doc(config_id)["bootcmd"]
    assert command[:2] == ["bash", "-c"] and command[3] == f"{plan_for(config_id).app}-data-volume"
    assert command[2] == render("scripts/data-volume.sh.j2", plan_for(config_id))
    check_shell(command[2], tmp_path)


def test_foreign_build_steps_are_in_the_deploy(sent: dict[str, Sent]) -> None:
    deploy = script_from(sent, "foreign", "deploy")
    # apt packages before the virtualenv, the managed Python, release commands after collectstatic, then migrate.
    order = [
        "for package in gcc libldap-dev; do",
        "python install 3.14",
        "collectstatic --noinput",
        "-manage compress \\",
        "-manage compilemessages --ignore=venv \\",
        "migrations: applying {len(plan)} in one transaction",
    ]
    positions = [deploy.index(text) for text in order]
    assert positions == sorted(positions), list(zip(order, positions, strict=True))
    # Every failure names its step (and collectstatic's, the static settings the app had and the deployer's).
    for step in (
        "step 'dependencies'",
        "step 'manage.py check' failed",
        "step 'WSGI import'",
        "step 'collectstatic' failed (error above); static files go to $static, whatever the app's own settings say",
        "release command 'manage.py compress' failed (error above); the previous release is still serving",
        "step 'migrate' failed (error above); the schema is as it was and the previous release is still serving",
    ):
        assert step in deploy, step
    activate = script_from(sent, "foreign", "configure-host:ACTIVATE")
    assert "http://localhost/health/" in activate and "-lt 300 ]" in activate
    assert "-lt 500 ]" in script_from(sent, "http", "configure-host:ACTIVATE")


@pytest.mark.parametrize("config_id", CONFIGS)
def test_python_modules_compile(config_id: str) -> None:
    for name, text in render_python_modules(plan_for(config_id)).items():
        compile(text, name, "exec")


def test_settings_overlay_takes_the_app_as_it_is_and_sets_what_the_deployment_owns(tmp_path: Path, monkeypatch) -> None:
    """The overlay run for real (it needs no Django): an app settings module shaped like the tutorials'."""
    import importlib
    import sys

    plan = plan_for("domain-https")
    for name, text in render_python_modules(plan).items():
        (tmp_path / name).write_text(text)
    package = tmp_path / "photofeed"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        "STATIC_ROOT = '/srv/code/staticfiles'\nSTATICFILES_DIRS = ['/srv/code/static']\nCOMPRESS_ROOT = STATIC_ROOT\n"
        "ALLOWED_HOSTS = ['app.example']\nDATABASES = {'default': {'ENGINE': 'x'}, 'other': {'CONN_MAX_AGE': 30}}\n"
        "_private = 1\n"
    )
    env = {
        "DJANGO_STATIC_ROOT": "/srv/photofeed/static/abc",
        "DJANGO_MEDIA_ROOT": "/srv/photofeed/media",
        "DJANGO_ALLOWED_HOSTS": f"{DOMAIN},{PUBLIC_IP}",
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{DOMAIN}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(keep: str) -> Any:
        monkeypatch.setenv("DJANGOSHIP_KEEP", keep)
        for module in ("djangoship_settings", "photofeed.settings", "photofeed"):
            sys.modules.pop(module, None)
        return importlib.import_module("djangoship_settings")

    overlay = load("")
    assert overlay.STATIC_ROOT == "/srv/photofeed/static/abc" and overlay.STATIC_URL == "/static/"
    assert overlay.COMPRESS_ROOT == overlay.STATIC_ROOT
    assert overlay.STATICFILES_DIRS == ["/srv/code/static"], "the app's own static sources stay"
    assert (overlay.MEDIA_ROOT, overlay.MEDIA_URL) == ("/srv/photofeed/media", "/media/")
    assert overlay.ALLOWED_HOSTS == ["app.example", DOMAIN, PUBLIC_IP]
    assert overlay.CSRF_TRUSTED_ORIGINS == ["https://" + DOMAIN]
    assert overlay.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    assert overlay.DATABASES["default"]["CONN_MAX_AGE"] == 600 and overlay.DATABASES["default"]["CONN_HEALTH_CHECKS"]
    assert overlay.DATABASES["other"]["CONN_MAX_AGE"] == 30, "an app's own persistent connections win"
    assert overlay.LOGGING["root"]["handlers"] == ["stderr"]
    assert not hasattr(overlay, "_private")
    assert any(line.startswith("STATIC_ROOT: the app's '/srv/code/staticfiles'") for line in overlay.DJANGOSHIP_REPORT)

    kept = load("static,media,hosts,csrf,proxy,database,logging")
    assert kept.STATIC_ROOT == "/srv/code/staticfiles" and kept.ALLOWED_HOSTS == ["app.example"]
    assert not hasattr(kept, "MEDIA_ROOT") and not hasattr(kept, "SECURE_PROXY_SSL_HEADER")
    assert "CONN_MAX_AGE" not in kept.DATABASES["default"] and not hasattr(kept, "LOGGING")
    assert kept.DJANGOSHIP_REPORT == []


def test_s3_backup_helper_is_python(sent: dict[str, Sent]) -> None:
    script = script_from(sent, "backups", "configure-host:BACKUP_UPLOADER")
    compile(script, "s3backup.py", "exec")
    assert "photofeed-backups-example" not in script or "s3://" in script
    conf = script_from(sent, "backups", "configure-host:BACKUP_CONF")
    assert conf == "BUCKET=photofeed-backups-example\nREGION=us-east-1\n"


@pytest.mark.parametrize("unit", ["BACKUP_SERVICE", "BACKUP_TIMER"])
def test_backup_units_are_well_formed(unit: str, sent: dict[str, Sent]) -> None:
    text = script_from(sent, "http", f"configure-host:{unit}")
    sections = unit_sections(text)
    if unit == "BACKUP_TIMER":
        assert unit_value(sections, "Timer", "OnCalendar") == "*-*-* 03:30:00"
        assert unit_value(sections, "Timer", "Persistent") == "true"
    else:
        assert unit_value(sections, "Service", "ExecStart") == "/usr/local/sbin/photofeed-backup"


def script_from(sent: dict[str, Sent], program: str, where: str) -> str:
    step, _, tag = where.partition(":")
    script = sent[program].scripts[step]
    return heredoc(script, tag) if tag else script


def shell_of(script: str) -> str:
    first = script.splitlines()[0]
    assert first in {"#!/bin/bash", "#!/bin/sh"}, first
    return "sh" if first == "#!/bin/sh" else "bash"


def check_shell(script: str, tmp_path: Path) -> None:
    shellcheck = need("shellcheck")
    dialect = shell_of(script)
    path = tmp_path / "script"
    path.write_text(script)
    # --norc: no .shellcheckrc anywhere may switch checks off; every check at its default severity.
    result = run([shellcheck, "--norc", "-s", dialect, "-f", "gcc", str(path)])
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    syntax = run([dialect, "-n", str(path)])
    assert syntax.returncode == 0 and syntax.stderr == "", syntax.stderr


@pytest.mark.parametrize("script_id", SENT_SCRIPTS)
def test_shellcheck_sent_script(script_id: str, sent: dict[str, Sent], tmp_path: Path) -> None:
    check_shell(script_from(sent, *SENT_SCRIPTS[script_id]), tmp_path)


@pytest.mark.parametrize("config_id", CONFIGS)
def test_shellcheck_firstboot(config_id: str, tmp_path: Path) -> None:
    files = written_files(user_data_doc(config_id))
    for name in ("firstboot", "pg-upgrade"):
        check_shell(files[f"/usr/local/sbin/{plan_for(config_id).app}-{name}"]["content"], tmp_path)


def test_shellcheck_catches_a_broken_script(sent: dict[str, Sent], tmp_path: Path) -> None:
    script = sent["http"].scripts["wait-for-boot"]
    with pytest.raises(AssertionError, match="SC2086"):
        check_shell(script + "echo $status_unquoted\n", tmp_path)
    with pytest.raises(AssertionError):
        check_shell(script + "if true; then\n", tmp_path)


def test_sent_scripts_install_exactly_the_rendered_files(sent: dict[str, Sent]) -> None:
    """The here-documents of configure-host are the pure renders (so validating renders validates what is
    sent), each ends in a newline (else its delimiter would not end it) and none contains a delimiter."""
    for program, config_id in PROGRAM_CONFIGS:
        plan = plan_for(config_id)
        script = sent[program].scripts["configure-host"]
        assert heredoc(script, "PG_CONF") == render_postgres_config(plan)
        assert heredoc(script, "GUNICORN_CONF") == render_gunicorn_config(plan)
        assert heredoc(script, "MANAGE") == render("scripts/manage.sh.j2", plan)
        assert heredoc(script, "NGINX_SITE", 0) == site_for(config_id, https=False)
        if plan.tls:
            assert heredoc(script, "NGINX_SITE", 1) == site_for(config_id, https=True)
        for tag, body in heredocs(script):
            assert body.endswith("\n") and f"\n{tag}\n" not in "\n" + body, tag
        # gunicorn is started with the settings file that configure-host installs.
        assert f"install_file {plan.config_dir}/gunicorn.conf.py " in script
        assert f"install_file {plan.env_file} 0640 root {plan.app} " in script


# --------------------------------------------------------------------------------------------------------
# 6. gunicorn and PostgreSQL settings
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_id", CONFIGS)
def test_gunicorn_config_is_python_with_the_configured_workers(config_id: str) -> None:
    plan = plan_for(config_id)
    settings = load_settings(CONFIGS[config_id], project="djangoship", stack="dev")
    namespace: dict[str, Any] = {}
    # gunicorn itself exec()s this file; it is rendered from our own template (assignments only).
    exec(compile(render_gunicorn_config(plan), "gunicorn.conf.py", "exec"), namespace)
    expected = settings.gunicorn_workers or default_workers(settings.instance_type)
    assert namespace["workers"] == expected
    if config_id == "t3.medium-9-workers":
        assert namespace["workers"] == 9
    if config_id == "debian-13-t2.micro":
        assert namespace["workers"] == 3  # the seed tutorial's three
    # The deployer's wrapper, which imports the app's own WSGI module (and answers the health path).
    assert namespace["wsgi_app"] == "djangoship_wsgi:application"
    assert f'importlib.import_module("{plan.wsgi_module}")' in render_python_modules(plan)["djangoship_wsgi.py"]
    assert namespace["worker_class"] == "sync"


@pytest.mark.parametrize("config_id", CONFIGS)
def test_postgres_dropin(config_id: str) -> None:
    lines = [line for line in render_postgres_config(plan_for(config_id)).splitlines() if line and line[0] != "#"]
    values = {}
    for line in lines:
        match = re.fullmatch(r"([a-z_]+) = ('[^']*'|[0-9]+(?:[kMG]B)?)", line)
        assert match, f"not a postgresql.conf setting: {line!r}"
        values[match[1]] = match[2]
    assert values["listen_addresses"] == "'localhost'"
    assert values["password_encryption"] == "'scram-sha-256'"
    assert values["timezone"] == "'UTC'"  # Django skips SET TIME ZONE on each new connection
    assert int(values["max_connections"]) >= plan_for(config_id).workers + 5


# --------------------------------------------------------------------------------------------------------
# 7. Determinism, and what the program really sends
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_id", CONFIGS)
def test_renders_are_byte_identical(config_id: str) -> None:
    def fresh() -> HostPlan:
        return plan_host(load_settings(CONFIGS[config_id], project="djangoship", stack="dev"))

    assert everything_rendered(fresh()) == everything_rendered(fresh())


HASH_RENDERS = r"""
import hashlib, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]  # the project, and the tests' shared conftest
from tests.test_templates import CONFIGS, everything_rendered
from components.host import plan_host
from components.settings import load_settings
print(json.dumps({c: {k: hashlib.sha256(v.encode()).hexdigest() for k, v in everything_rendered(
    plan_host(load_settings(CONFIGS[c], project="djangoship", stack="dev"))).items()} for c in CONFIGS}))
"""


def test_renders_do_not_depend_on_hash_seed() -> None:
    """Two fresh interpreters with different hash seeds (set and dict order) render the same bytes."""
    digests = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = run([sys.executable, "-c", HASH_RENDERS, str(ROOT)], env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        digests.append(json.loads(result.stdout))
    assert digests[0] == digests[1]
    here = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in everything_rendered(plan_for("domain-https")).items()}
    assert digests[0]["domain-https"] == here


def test_program_sends_the_rendered_documents(sent: dict[str, Sent]) -> None:
    for program, config_id in PROGRAM_CONFIGS:
        instance = sent[program].run.one("aws:ec2/instance:Instance").inputs
        user_data = user_data_for(config_id)
        if len(user_data.encode()) <= USER_DATA_LIMIT:
            assert instance["userData"] == user_data and not instance.get("userDataBase64")
        else:
            assert gzip.decompress(base64.b64decode(instance["userDataBase64"])).decode() == user_data


def test_secrets_travel_only_on_stdin(sent: dict[str, Sent]) -> None:
    for name, result in sent.items():
        secrets = [value for value in result.state.passwords.values() if value]
        assert len(secrets) >= 3, f"{name}: the mock generated no passwords: nothing would be checked"
        instance = result.run.one("aws:ec2/instance:Instance").inputs
        public = [instance.get("userData") or "", *(s.inputs.get("create", "") for s in result.run.steps())]
        stdin = "".join(s.inputs.get("stdin") or "" for s in result.run.steps())
        for secret in secrets:
            assert not any(secret in text for text in public), f"{name}: a secret is in user-data or a command line"
        assert any(secret in stdin for secret in secrets), f"{name}: no secret on stdin: the check is vacuous"
        for text in public:
            assert "PRIVATE KEY" not in text


def test_two_program_runs_send_identical_bytes(sent: dict[str, Sent]) -> None:
    first, second = sent["http"].run, run_sent(PROGRAMS["http"]).run
    instance = "aws:ec2/instance:Instance"
    assert first.one(instance).inputs["userData"] == second.one(instance).inputs["userData"]

    def steps(program_run: Any) -> list[tuple[str, Any, Any]]:
        return [(s.name, s.inputs.get("create"), s.inputs.get("triggers")) for s in program_run.steps()]

    assert steps(first) == steps(second)
    assert len(steps(first)) == 5


# --------------------------------------------------------------------------------------------------------
# 8. The connection pooler (PgBouncer) and compression: what docs/performance.md relies on
# --------------------------------------------------------------------------------------------------------

# Every setting PgBouncer 1.18 (Debian 12) and 1.22 (Ubuntu 24.04) both know, in the sections we write.
PGBOUNCER_KEYS = {
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "auth_type",
    "auth_file",
    "pool_mode",
    "server_reset_query",
    "server_login_retry",
    "default_pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "max_db_connections",
    "max_client_conn",
    "query_wait_timeout",
    "server_idle_timeout",
    "server_lifetime",
    "ignore_startup_parameters",
    "log_connections",
    "log_disconnections",
    "log_pooler_errors",
}


def parse_ini(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not an ini setting: {line!r}"
        key, value = (part.strip() for part in line.split("=", 1))
        assert key not in current, f"{key} set twice"
        current[key] = value
    return sections


@pytest.mark.parametrize("config_id", CONFIGS)
def test_pgbouncer_ini(config_id: str) -> None:
    plan = plan_for(config_id)
    ini = parse_ini(render_pgbouncer_config(plan))
    assert set(ini) == {"databases", "pgbouncer"}
    settings = ini["pgbouncer"]
    assert set(settings) <= PGBOUNCER_KEYS, set(settings) - PGBOUNCER_KEYS
    # Loopback only, password-checked, and the pool mode that is safe for everything Django does.
    assert settings["listen_addr"] == "127.0.0.1" and settings["listen_port"] == "6432"
    # md5 from the app over loopback (SCRAM's PBKDF2 per connection is measured to cost 30 % of throughput);
    # PostgreSQL keeps the role's password as SCRAM (password_encryption, test_postgres_dropin).
    assert settings["auth_type"] == "md5" and settings["auth_file"] == "/etc/pgbouncer/userlist.txt"
    assert settings["pool_mode"] == "session" and settings["server_reset_query"] == "DISCARD ALL"
    assert ini["databases"] == {"*": "host=127.0.0.1 port=5432"}
    # Every sync worker can hold a connection, with room for migrate beside them, within max_connections
    # (which keeps 3 for superusers: backups, the operator).
    pool, most = int(settings["default_pool_size"]), int(settings["max_db_connections"])
    assert pool >= plan.workers + 1 and most >= pool
    assert most + 3 + 2 <= int(plan.pg["max_connections"])


def test_env_contract_points_at_the_pooler_when_on() -> None:
    from components.envcontract import single_server_env_file

    for pooler, port in ((True, "6432"), (False, "5432")):
        settings = load_settings({"dbPooler": pooler}, project="djangoship", stack="dev")
        plan = plan_host(settings)
        env = single_server_env_file(plan, secret_key="k", db_password="pw", hosts=[PUBLIC_IP], extra={})
        assert f"DJANGO_DB_PORT='{port}'" in env and "DJANGO_DB_HOST='127.0.0.1'" in env
        assert f"DATABASE_URL='postgres://photofeed:pw@127.0.0.1:{port}/photofeed'" in env
    assert load_settings({}, project="djangoship", stack="dev").db_pooler is True


def test_configure_host_installs_the_pooler_only_when_on(sent: dict[str, Sent]) -> None:
    script = sent["http"].scripts["configure-host"]
    assert heredoc(script, "PGBOUNCER_INI") == render_pgbouncer_config(plan_for("debian-13-t2.micro"))
    # The auth file: root:postgres 0640, from a variable through bash builtins — no secret on a command line.
    assert (
        'install_file /etc/pgbouncer/userlist.txt 0640 root postgres < <(printf \'"%s" "%s"\\n\' '
        "'photofeed' \"${db_password//"
    ) in script
    assert "install_file /etc/pgbouncer/pgbouncer.ini 0640 root postgres " in script
    off = sent["nopooler"].scripts["configure-host"]
    assert "PGBOUNCER_INI" not in off and "systemctl disable --now pgbouncer.service" in off
    assert "pgbouncer" in user_data_doc("debian-13-t2.micro")["packages"]


@pytest.mark.parametrize("config_id", CONFIGS)
def test_compression_on_the_fly_only_for_proxied_pages(config_id: str) -> None:
    main = _main_server(parse_nginx(site_for(config_id, https=False)))
    assert main.arg_lists("gzip") == [["on"]] and main.arg_lists("gzip_comp_level") == [["1"]]
    # text/html is always compressed when gzip is on; JSON is the only type added.
    assert main.arg_lists("gzip_types") == [["application/json"]]
    for path in ("/static/", "/media/"):
        assert location(main, path).arg_lists("gzip") == [["off"]], path
    assert location(main, "/static/").arg_lists("gzip_static") == [["on"]]
