"""What the tests of the rendered files share: the configs and programs they render, the renders themselves and
what the program really sends (under Pulumi's mocks), small parsers (nginx, systemd units, ini), and the
validators' runners — a validator that is missing skips its tests with the reason, except with CI=true, where
that fails."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import skip_or_fail

from config.settings import load_settings
from server.files import render_user_data
from server.host import (
    USER_DATA_LIMIT,
    HostPlan,
    encode_user_data,
    plan_host,
    remote_script,
    render,
    render_gunicorn_config,
    render_nginx_site,
    render_postgres_config,
    site_hosts,
)

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
APP_FILE_SECRET = "SECRET_KEY = 'app-file-secret-not-in-any-plain-input'\n"  # in PROGRAMS["foreign"]'s app.files
PROGRAMS: dict[str, dict[str, Any]] = {
    "http": {},
    "https": CONFIGS["domain-https"],
    "git": {"app": {"source": "https://github.com/example/photofeed.git", "ref": "0123456789abcdef" * 2 + "01234567"}},
    # A monorepo: the Django project in backend/, its dependencies looked for there, then at the repository's top.
    "monorepo": {
        "app": {
            "source": "https://github.com/example/shop.git",
            "ref": "0123456789abcdef" * 2 + "01234567",
            "directory": "backend",
        }
    },
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
            # A product configured by a file (app.files), set without --secret: still a secret.
            "files": {"shop/configuration.py": APP_FILE_SECRET, "conf/.env": "TOKEN=file-token\n"},
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
        "install-host-key": remote_script("install-host-key", plan),
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


# configure-host's loop over server/files.py's list: `install_file PATH MODE OWNER GROUP <<'SERVER_FILE'`.
INSTALLED = re.compile(
    r"^install_file (?P<path>/\S+) (?P<args>\d{4} \S+ \S+) <<'SERVER_FILE'\n(?P<body>.*?)^SERVER_FILE$",
    re.DOTALL | re.MULTILINE,
)


def installed_files(script: str) -> dict[str, tuple[str, str]]:
    """path → ("MODE OWNER GROUP", text) of every file the configure script installs from the list."""
    return {m["path"]: (m["args"], m["body"]) for m in INSTALLED.finditer(script)}


def installed(script: str, path: str) -> str:
    """The text of one file the configure script installs from the list, by its path."""
    files = installed_files(script)
    assert path in files, f"the script installs no {path} (it installs {sorted(files)})"
    return files[path][1]


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
        sent = step.sent
        label = re.sub(r"^(deploy|build)-[0-9a-f]{12}$", r"\1", sent.label)
        assert label not in scripts
        scripts[label] = sent.script
    expected = ["install-host-key", "wait-for-boot", "build", "configure-host", "deploy", "create-superuser"]
    assert sorted(scripts) == sorted(expected), list(scripts)
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


# --- validators more than one subject uses: nginx -t, systemd-analyze verify ------------------------------

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


EXEC_KEYS = re.compile(
    r"^(?:ExecStart|ExecStartPre|ExecStartPost|ExecReload|ExecStop|ExecStopPost)=[-@:+!|]*(\S+)", re.MULTILINE
)


def systemd_verify(
    units: dict[str, str], root: Path, missing: tuple[str, ...] = (), also: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify --root=ROOT` on the units (and on `also`, units of the host's tree that the
    drop-ins among `units` change), in a throwaway root that holds:
    - the host's own unit tree, so that sysinit.target, sockets.target, … resolve as on a real system;
    - the units and drop-ins under test in /etc/systemd/system, where cloud-init and configure write them;
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
        (unit_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (unit_dir / name).write_text(text)
        for program in EXEC_KEYS.findall(text):
            assert program.startswith("/"), f"{name}: {program} is not an absolute path"
            if program in missing:
                continue
            stub = root / program.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return run([analyze, "verify", f"--root={root}", *(name for name in units if "/" not in name), *also])


# --- a real nginx on loopback, in front of gunicorn's stand-in -------------------------------------------------


class EchoHandler(http.server.BaseHTTPRequestHandler):
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


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextlib.contextmanager
def echo_server(path: Path) -> Iterator[None]:
    server = UnixHTTPServer(str(path), EchoHandler)
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
