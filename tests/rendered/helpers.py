"""What the tests of the rendered files share: the configs and programs they render, the renders themselves and
what the program really sends (under Pulumi's mocks), small parsers (nginx, systemd units, ini), and the
validators' runners — a validator that is missing skips its tests with the reason, except with CI=true, where
that fails."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from conftest import skip_or_fail

from components.host import (
    USER_DATA_LIMIT,
    HostPlan,
    encode_user_data,
    plan_host,
    remote_script,
    render,
    render_gunicorn_config,
    render_nginx_site,
    render_postgres_config,
    render_user_data,
    site_hosts,
)
from components.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]  # the project, on sys.path through conftest.py
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


def need(tool: str) -> str:
    path = shutil.which(tool) or next(
        (str(p) for p in (Path("/usr/sbin") / tool, Path("/sbin") / tool) if p.exists()), None
    )
    if not path:
        skip_or_fail(f"validator `{tool}` is not installed on this host")
    return str(path)


def run(argv: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, **kwargs)


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


def main_server(site: Directive) -> Directive:
    found = [
        s for s in servers(site) if any(loc.args == ["/"] and loc.find("proxy_pass") for loc in s.find("location"))
    ]
    assert len(found) == 1
    return found[0]


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
