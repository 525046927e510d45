"""What runs on the server, rendered from the templates in `cloud-init/` by pure functions (no Pulumi here).

Every function returns the same bytes for the same inputs — no timestamps, no dict-order surprises, gzip
with a fixed mtime — because the user-data and the remote commands' text are resource inputs: a byte that
changes between two runs replaces the server or re-runs a command.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

from catalog.offerings import IMAGES, INSTANCE_TYPES, default_workers, redis_maxmemory_mib, swap_mib
from config.appmodules import Modules, decide
from config.apppython import PythonPlan, plan_python
from config.settings import Settings

from .layout import STATIC_LINK, ServerPaths

TEMPLATES = Path(__file__).resolve().parent.parent / "cloud-init"
# The deployer's Python modules on the app's PYTHONPATH: DJANGO_SETTINGS_MODULE and gunicorn's app point here.
WSGI_WRAPPER = "djangoship_wsgi"
# config/appmodules.py as it is installed beside them: the deploy finds a git source's modules with it.
APP_MODULES = "djangoship_appmodules"
# server/shippedstatic.py as installed beside them: with it the deploy's check decides where static files come from.
SHIPPED_STATIC = "djangoship_static"
ASGI_WRAPPER = "djangoship_asgi"  # with app.asgiModule: the same health answer, for uvicorn's worker
UVICORN_WORKER = "djangoship_uvicorn"  # with app.asgiModule: uvicorn's worker, answering what it accepted as it stops
HEALTH_PATH = "/healthz"  # answered by the WSGI wrapper for any app (the scaled load balancer checks it too)
METADATA_TABLE = "inet djangoship_metadata"  # the nftables table of the metadata block (nftables/metadata-block.nft.j2)
GUNICORN_VERSION = "27.0.1"  # added to an app whose dependencies have no gunicorn; the app's own pin wins
UV_VERSION = "0.13.8"  # from PyPI, for uv projects and for Pythons the image lacks
POETRY_VERSION = "2.5.1"  # from PyPI, for poetry projects
# pip's own wheel, pinned by its sha256: every virtualenv is made without ensurepip and gets pip from it, so the
# build needs nothing from the image but python3 (no python3-venv) and can start before cloud-init's packages.
PIP_WHEEL = (
    "https://files.pythonhosted.org/packages/07/25/ee8c38ae72d66b844ce8eb9711ba905dba21ca1a8a0c960057c41cd23337/"
    "pip-26.3-py3-none-any.whl",
    "f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13",
)
# With app.asgiModule: uvicorn's worker class for gunicorn (the maintained uvicorn-worker package; uvicorn's own
# uvicorn.workers is deprecated) and websockets for the protocol, each added when the app lacks it, pinned.
ASGI_PACKAGES = (
    ("uvicorn_worker", "uvicorn-worker==0.4.0"),
    ("uvicorn", "uvicorn==0.54.0"),
    ("websockets", "websockets==17.4"),
)
REDIS_PORT = 6379
PROCESS_SETTLE_SECONDS = 10  # a process (app.processes) this far into its own time after a restart has started
MEDIA_CREDENTIALS_PORT = 51680  # app servers: where boto3 in the app asks for its uploads' credentials
CONN_MAX_AGE = 600  # persistent database connections (s) for an app that leaves Django's 0
USER_DATA_LIMIT = 16384  # EC2 rejects larger user-data; beyond it the document is sent gzip-compressed

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_environment.filters["shq"] = lambda value: shlex.quote(str(value))


def without_comment_lines(text: str) -> str:
    """Whole-line `#` comments dropped (not `#!` lines nor shellcheck directives): for copies of scripts
    and modules inside a document that must stay within EC2's 16 KiB of user-data. Only for text whose
    lines starting with `#` are comments (shell and Python, no here-documents holding such lines)."""
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if not line.lstrip().startswith("#") or line.startswith("#!") or "shellcheck" in line
    ]
    return "".join(kept)


@dataclass(frozen=True)
class DatabasePlan:
    """How the app reaches its database: the single server's PostgreSQL settings, PgBouncer in front of it."""

    postgres: dict[str, str] = field(default_factory=dict)  # postgresql.conf settings sized for the machine
    # PgBouncer between the app and PostgreSQL (dbPooler): loopback only, session pooling.
    pooler: bool = True
    pooler_port: int = 6432
    pool_size: int = 5  # server connections per database/user pair: one per sync worker + management commands
    conn_max_age: int = CONN_MAX_AGE


@dataclass(frozen=True)
class RedisPlan:
    """Redis for the app (`redis: true`): the single server's own, or the scaled profile's ElastiCache."""

    port: int = REDIS_PORT
    maxmemory_mib: int = 0  # the single server's Redis (0: none here, ElastiCache)


@dataclass(frozen=True)
class AppPlan:
    """The app as its `app.*` keys and its files say: its name, how it is built, checked and run."""

    name: str  # system user and group, and the directory names below
    wsgi_module: str  # "" = decided by the deploy from a git source's files (config/appmodules.py)
    settings_module: str  # as wsgi_module
    requirements: str  # "" = detected by the deploy (uv.lock, poetry.lock, a requirements file)
    directory: str  # app.directory: the project's folder in the source ("" = its top), which the release is
    env_prefix: str
    # How the app is built and checked (docs/deploying.md).
    health_path: str = ""  # app.healthPath: the app's own health view, probed instead of its front page
    allow_debug: bool = False  # app.allowDebug: else the deploy's check refuses a release whose settings leave DEBUG on
    # app.settingsModule / app.wsgiModule when not set: found in the app's files (at preview, or by a git source's
    # deploy). A release that then fails to load them says so, naming the key that picks others.
    found_keys: tuple[str, ...] = ()
    python_request: str = ""  # "" = the image's python3; else a CPython minor that uv installs on the server
    packages: tuple[str, ...] = ()  # app.packages, installed with apt before the virtualenv is built
    release_commands: tuple[tuple[str, ...], ...] = ()  # app.releaseCommands, manage.py commands per release
    # An ssh:// or git@host: source is fetched with the stack's deploy key (components/deploykey.py), kept in a
    # root-only file; the git host's key is pinned (app.gitHostKey) or trusted on first use and then kept.
    git_ssh: bool = False
    git_host_key: str = ""
    # Beyond the web process (issue 14; docs/deploying.md, "Processes, schedules, Redis, ASGI").
    asgi_module: str = ""  # app.asgiModule: gunicorn with uvicorn's worker, websockets through nginx
    server_options: tuple[tuple[str, str], ...] = ()  # app.serverOptions with the Procfile web line's: gunicorn.conf.py
    processes: tuple[tuple[str, str], ...] = ()  # (name, ExecStart) of each app.processes entry
    schedules: tuple[tuple[str, str, str], ...] = ()  # (name, OnCalendar, ExecStart) of each app.schedules entry


@dataclass(frozen=True)
class HostPlan:
    """Every value a host template may use. Derived from Settings only, so it is known at preview."""

    app: AppPlan  # templates: {{ app.name }}, {{ app.NAME }}
    ssh_user: str
    memory_mib: int
    vcpus: int
    workers: int
    swap_mib: int
    domain: str
    tls_email: str
    paths: ServerPaths  # every path on the server (server/layout.py); templates: {{ paths.NAME }}
    keep_releases: int = 5
    # Past this fill level of the data volume the backup, each deploy and `status` warn (PostgreSQL stops
    # when the volume is full). djangoship/report.py has the same figure (tested).
    volume_warn_percent: int = 80
    backup_bucket: str = ""
    backup_region: str = ""
    backup_retention_days: int = 7
    backup_schedule: str = "*-*-* 03:30:00"
    db: DatabasePlan = field(default_factory=lambda: DatabasePlan())  # templates: {{ db.NAME }}
    health_path: str = HEALTH_PATH  # answered by the deployer's WSGI wrapper through Django's database connection
    gunicorn_version: str = GUNICORN_VERSION
    uv_version: str = UV_VERSION
    poetry_version: str = POETRY_VERSION
    pip_wheel: tuple[str, str] = PIP_WHEEL  # (URL, sha256)
    deploy_key_from_stdin: bool = True  # one server: the deploy step's stdin; app servers: from SSM at boot
    data_on_server: bool = True  # the data volume, PostgreSQL and the media are here (one server); app servers: RDS, S3
    # App servers: the media role's credentials for the app, on loopback (scaled/media-credentials.py.j2).
    media_credentials_port: int = MEDIA_CREDENTIALS_PORT
    asgi_packages: tuple[tuple[str, str], ...] = ASGI_PACKAGES
    process_settle_seconds: int = PROCESS_SETTLE_SECONDS
    restart_steps: bool = True  # systemd ≥ 254 (RestartSteps=, the restart back-off): not Debian 12's 252
    redis: RedisPlan | None = None  # `redis: true`; templates: {% if redis %}, {{ redis.NAME }}

    @property
    def tls(self) -> bool:
        return bool(self.domain and self.tls_email)

    @property
    def server_module(self) -> str:
        """The deployer's wrapper gunicorn runs: WSGI, or ASGI with app.asgiModule."""
        return ASGI_WRAPPER if self.app.asgi_module else WSGI_WRAPPER

    @property
    def units(self) -> list[str]:
        """The systemd units of the app's processes and schedules, as configure installs them."""
        app = self.app.name
        names = [f"{app}-{name}.service" for name, _ in self.app.processes]
        for name, _, _ in self.app.schedules:
            names += [f"{app}-{name}.service", f"{app}-{name}.timer"]
        return sorted(names)

    @property
    def app_server(self) -> bool:
        """One of the scaled profile's app servers: several run the same release, beside RDS and S3."""
        return not self.data_on_server

    @property
    def probe_path(self) -> str:
        """What activation asks of the app itself besides health_path: its health view, or its front page."""
        return self.app.health_path or "/"


def postgres_memory(memory_mib: int) -> dict[str, str]:
    """PostgreSQL sized for a small shared box: ~1/8 of RAM for shared_buffers (it shares the machine with
    gunicorn and nginx), few connections (gunicorn's sync workers hold one each), modest work_mem."""
    shared = max(32, min(memory_mib // 8, 1024))
    return {
        "max_connections": "40" if memory_mib <= 1024 else "80",
        "shared_buffers": f"{shared}MB",
        "effective_cache_size": f"{max(128, memory_mib // 2)}MB",
        "work_mem": "2MB" if memory_mib <= 1024 else "4MB",
        "maintenance_work_mem": f"{max(16, min(memory_mib // 16, 256))}MB",
    }


def plan_host(settings: Settings) -> HostPlan:
    size = INSTANCE_TYPES[settings.instance_type]
    app = settings.app.name
    paths = ServerPaths.for_app(app)
    modules = app_modules(settings)
    workers = settings.gunicorn_workers or settings.app.procfile_workers or default_workers(settings.instance_type)
    pg = postgres_memory(size.memory_mib)
    # Room for every worker's connection (or PgBouncer's pool and its reserve), the deploy's migrate beside
    # them, and PostgreSQL's 3 superuser slots (backups, the operator), whatever gunicornWorkers says.
    # Each of the app's processes and scheduled jobs holds a connection of its own while it runs.
    pool = pool_size(workers) + len(settings.app.processes) + len(settings.app.schedules)
    pg["max_connections"] = str(max(int(pg["max_connections"]), pool + 1 + 5))
    return HostPlan(
        app=AppPlan(
            name=app,
            wsgi_module=modules.wsgi,
            settings_module=modules.settings,
            found_keys=tuple(
                name
                for name, given in (
                    ("app.settingsModule", settings.app.settings_module),
                    ("app.wsgiModule", settings.app.wsgi_module or settings.app.asgi_module),
                )
                if not given
            ),
            requirements=settings.app.requirements,
            directory=settings.app.directory,
            env_prefix=settings.app.env_prefix,
            health_path=settings.app.health_path,
            allow_debug=settings.app.allow_debug,
            python_request=app_python(settings).request,
            packages=tuple(sorted(set(settings.app.packages))),
            release_commands=tuple(tuple(command.split()) for command in settings.app.release_commands),
            git_ssh=settings.app.source_is_ssh,
            git_host_key=settings.app.git_host_key,
            asgi_module=settings.app.asgi_module,
            server_options=tuple(sorted(settings.app.server_options.items())),
            processes=tuple(
                (name, exec_start(command, paths.current_dir))
                for name, command in sorted(settings.app.processes.items())
            ),
            schedules=tuple(
                (name, job["schedule"], exec_start(job["command"], paths.current_dir))
                for name, job in sorted(settings.app.schedules.items())
            ),
        ),
        ssh_user=settings.ssh_user,
        memory_mib=size.memory_mib,
        vcpus=size.vcpus,
        workers=workers,
        swap_mib=swap_mib(settings.instance_type),
        domain=settings.domain,
        tls_email=settings.tls_email,
        paths=paths,
        db=DatabasePlan(postgres=pg, pooler=settings.db_pooler, pool_size=pool),
        keep_releases=settings.keep_releases,
        backup_bucket=settings.backup_bucket,
        backup_retention_days=settings.backup_retention_days,
        backup_schedule=settings.backup_schedule,
        restart_steps=settings.image != "debian-12",
        redis=RedisPlan(maxmemory_mib=redis_maxmemory_mib(settings.instance_type)) if settings.redis else None,
    )


def exec_start(command: str, current_dir: str) -> str:
    """A process's or a schedule's command (validated at preview: plain words) as systemd's ExecStart=, run in
    the live release: `manage.py X …` with the release's Python, any other program from its virtualenv."""
    words = command.split()
    if words[0] == "manage.py":
        return " ".join([f"{current_dir}/venv/bin/python", f"{current_dir}/manage.py", *words[1:]])
    return " ".join([f"{current_dir}/venv/bin/{words[0]}", *words[1:]])


def app_python(settings: Settings) -> PythonPlan:
    """The app's Python, as config validation decided it at preview (config/checks.py, python_available)."""
    app = settings.app
    return plan_python(app.python_folders, app.python, settings.image, IMAGES[settings.image].python)


def app_modules(settings: Settings) -> Modules:
    """The settings and WSGI modules, as config validation decided them at preview (config/checks.py,
    modules_found): a local folder's from its files where the keys are empty; a git source's empty keys stay
    empty, for its deploy to decide from the files it fetched."""
    app = settings.app
    if app.project_folder is None or (app.settings_module and (app.wsgi_module or app.asgi_module)):
        return Modules(app.settings_module, app.wsgi_module)
    return decide(app.project_folder, app.settings_module, app.wsgi_module, app.asgi_module)


def pool_size(workers: int) -> int:
    """PgBouncer's server connections for the app: each sync worker holds at most one at a time, plus two
    for what runs beside them (migrate during a deploy, the superuser step, `<app>-manage shell`). A client
    beyond the pool waits in PgBouncer's queue; it does not fail."""
    return workers + 2


def render(template: str, plan: HostPlan, **extra: object) -> str:
    context = asdict(plan) | {"tls": plan.tls, "static_link": STATIC_LINK, "probe_path": plan.probe_path}
    context |= {"metadata_table": METADATA_TABLE, "app_modules": APP_MODULES, "shipped_static": SHIPPED_STATIC}
    context |= {"uvicorn_worker": UVICORN_WORKER}
    context |= {"server_module": plan.server_module, "units": plan.units, "app_server": plan.app_server} | extra
    return _environment.get_template(template).render(context)


def encode_user_data(document: str) -> tuple[str, bool]:
    """(base64 text, gzipped?) for EC2's `user_data_base64`: plain while it fits, gzip (mtime 0) beyond."""
    raw = document.encode()
    if len(raw) <= USER_DATA_LIMIT:
        return base64.b64encode(raw).decode(), False
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as stream:
        stream.write(raw)
    return base64.b64encode(buffer.getvalue()).decode(), True


def render_nginx_site(plan: HostPlan, https: bool, hosts: list[str]) -> str:
    return render("nginx/site.conf.j2", plan, https=https, hosts=hosts)


def build_id(release_id: str, plan: HostPlan) -> str:
    """The folder a release is built into (releases/<id>): the release itself, unless the way it is built
    was configured (app.python, app.packages, app.requirements, app.releaseCommands, app.directory). Then a
    change to that alone builds anew beside the live release, as a code change does, instead of switching to
    the folder built the old way."""
    build: tuple[object, ...] = (
        plan.app.python_request,
        plan.app.packages,
        plan.app.requirements,
        plan.app.release_commands,
    )
    if plan.app.asgi_module:  # its virtualenv holds uvicorn's worker: switching to ASGI builds anew
        build += (plan.app.asgi_module, plan.asgi_packages)
    if plan.app.directory:  # the same commit released from another folder of it
        build += (plan.app.directory,)
    if build == ("", (), "", ()):
        return release_id
    return digest(release_id, repr(build))[:12]


def render_gunicorn_config(plan: HostPlan) -> str:
    return render("gunicorn/gunicorn.conf.py.j2", plan)


def render_postgres_config(plan: HostPlan) -> str:
    return render("postgresql/djangoship.conf.j2", plan)


def render_pgbouncer_config(plan: HostPlan) -> str:
    """PgBouncer's settings (no secret in them), as the configure step installs them (server/files.py)."""
    return render("pgbouncer/pgbouncer.ini.j2", plan)


def remote_script(name: str, plan: HostPlan, **extra: object) -> str:
    """A script for one remote command, rendered; the command runs it as root (server/rootstep.py)."""
    return render(f"scripts/{name}.sh.j2", plan, **extra)


def digest(*parts: str | bytes) -> str:
    """A short stable hash of text, for triggers and release ids."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def site_hosts(plan: HostPlan, public_ip: str) -> list[str]:
    """Host names the site answers to (nginx server_name, Django ALLOWED_HOSTS): the domain, the address."""
    return [plan.domain, public_ip] if plan.domain else [public_ip]
