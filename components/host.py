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

from .catalog import INSTANCE_TYPES, default_workers, swap_mib
from .settings import Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "cloud-init"
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


@dataclass(frozen=True)
class HostPlan:
    """Every value a host template may use. Derived from Settings only, so it is known at preview."""

    app: str  # system user and group, and the directory names below
    ssh_user: str
    wsgi_module: str
    settings_module: str
    requirements: str
    env_prefix: str
    memory_mib: int
    vcpus: int
    workers: int
    swap_mib: int
    domain: str
    tls_email: str
    keep_releases: int = 5
    # Layout on the server. /srv, not a home directory: nginx (www-data) must traverse it.
    base_dir: str = ""
    releases_dir: str = ""
    current_dir: str = ""
    media_root: str = ""
    static_root: str = ""
    config_dir: str = ""
    env_file: str = ""
    socket_path: str = ""
    upload_dir: str = ""
    data_dir: str = "/data"  # the data volume's mount point
    backup_dir: str = "/data/backups"
    backup_bucket: str = ""
    backup_region: str = ""
    backup_retention_days: int = 7
    backup_schedule: str = "*-*-* 03:30:00"
    pg: dict[str, str] = field(default_factory=dict)
    # PgBouncer between the app and PostgreSQL (dbPooler): loopback only, session pooling.
    db_pooler: bool = True
    pooler_port: int = 6432
    pool_size: int = 5  # server connections per database/user pair: one per sync worker + management commands

    @property
    def tls(self) -> bool:
        return bool(self.domain and self.tls_email)


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
    base = f"/srv/{app}"
    workers = settings.gunicorn_workers or default_workers(settings.instance_type)
    pg = postgres_memory(size.memory_mib)
    # Room for every worker's connection (or PgBouncer's pool and its reserve), the deploy's migrate beside
    # them, and PostgreSQL's 3 superuser slots (backups, the operator), whatever gunicornWorkers says.
    pg["max_connections"] = str(max(int(pg["max_connections"]), pool_size(workers) + 1 + 5))
    return HostPlan(
        app=app,
        ssh_user=settings.ssh_user,
        wsgi_module=settings.app.wsgi_module,
        settings_module=settings.app.settings_module,
        requirements=settings.app.requirements,
        env_prefix=settings.app.env_prefix,
        memory_mib=size.memory_mib,
        vcpus=size.vcpus,
        workers=workers,
        swap_mib=swap_mib(settings.instance_type),
        domain=settings.domain,
        tls_email=settings.tls_email,
        base_dir=base,
        releases_dir=f"{base}/releases",
        current_dir=f"{base}/current",
        media_root=f"{base}/media",
        static_root=f"{base}/current/static",
        config_dir=f"/etc/{app}",
        env_file=f"/etc/{app}/env",
        socket_path=f"/run/{app}/gunicorn.sock",
        upload_dir=f"/var/tmp/{app}-uploads",
        pg=pg,
        keep_releases=settings.keep_releases,
        backup_bucket=settings.backup_bucket,
        backup_retention_days=settings.backup_retention_days,
        backup_schedule=settings.backup_schedule,
        db_pooler=settings.db_pooler,
        pool_size=pool_size(workers),
    )


def pool_size(workers: int) -> int:
    """PgBouncer's server connections for the app: each sync worker holds at most one at a time, plus two
    for what runs beside them (migrate during a deploy, the superuser step, `<app>-manage shell`). A client
    beyond the pool waits in PgBouncer's queue; it does not fail."""
    return workers + 2


def render(template: str, plan: HostPlan, **extra: object) -> str:
    context = asdict(plan) | {"tls": plan.tls} | extra
    return _environment.get_template(template).render(context)


def render_user_data(plan: HostPlan) -> str:
    """The first-boot document, `#cloud-config`. Holds no secret at all."""
    return render(
        "user-data.yaml.j2",
        plan,
        gunicorn_socket=render("systemd/gunicorn.socket.j2", plan),
        gunicorn_service=render("systemd/gunicorn.service.j2", plan),
        placeholder_site=render("nginx/placeholder.conf.j2", plan),
        firstboot_script=render("scripts/firstboot.sh.j2", plan),
        pg_upgrade_script=render("scripts/pg-upgrade.sh.j2", plan),
        data_volume_script=render("scripts/data-volume.sh.j2", plan),
    )


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


def render_gunicorn_config(plan: HostPlan) -> str:
    return render("gunicorn/gunicorn.conf.py.j2", plan)


def render_postgres_config(plan: HostPlan) -> str:
    return render("postgresql/djangoship.conf.j2", plan)


def render_pgbouncer_config(plan: HostPlan) -> str:
    """PgBouncer's settings (no secret in them); configure-host includes this same render."""
    return render("pgbouncer/pgbouncer.ini.j2", plan)


def remote_script(name: str, plan: HostPlan, **extra: object) -> str:
    """A script for one remote command, rendered; the command runs it as root with `bash -c`."""
    return render(f"scripts/{name}.sh.j2", plan, **extra)


def as_root(script: str, label: str) -> str:
    """The command line pulumi-command sends: the whole script as one argument of `sudo bash -c`, so its
    text is visible in `pulumi preview --diff` and nothing is left on the server's disk. Secrets never appear
    here: they arrive on stdin. `label` becomes $0, naming the step in `ps` and in error messages."""
    return f"sudo -n bash -c {shlex.quote(script)} {shlex.quote(label)}"


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
