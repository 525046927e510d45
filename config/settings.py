"""Stack configuration: every key once, in the table below — read once, here, and validated before any
resource exists.

Each field of `Settings` (and of `AppSettings`, the `app.*` keys) is one config key: its name in camelCase
(`instance_type` is `pulumi config set instanceType`), its type, its default, its checks, a one-line doc, the
profile that reads it (both unless said) and whether it may or must be set with `--secret`. How a row is read
and checked is `table.py`; the checks themselves are `checks.py`. Pulumi.yaml's `config:` section
and docs/configuration.md's two key tables are generated from this table (`python -m tools.configdoc`), and
tests/fast/test_settings.py fails while either differs from it.

`load_settings` is pure (a mapping in, a frozen `Settings` out) so tests can feed it bad values directly;
`read_stack_config` is the only place that talks to Pulumi's config. A bad value raises `ConfigError`, which
lists every problem at once, each naming the key (and the bad value, unless it may be a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog.offerings import CACHE_NODE_TYPES, IMAGES, INSTANCE_TYPES

from .checks import (
    AMI_ID,
    APT_PACKAGE,
    DOMAIN,
    EMAIL,
    GIT_URL,
    KNOWN_HOSTS_LINE,
    NAME,
    OPENSSH_PUBLIC_KEY,
    PROFILES,
    PY_MODULE,
    SSH_GIT_URL,
    app_environment,
    app_files,
    app_processes,
    app_schedules,
    deployable_and_served,
    fits_in_memory,
    git_url_or_local_folder,
    gunicorn_settings,
    image_fits_instance_type,
    ipv4_network,
    manage_command,
    modules_found,
    needs_domain,
    not_a_database_port,
    not_a_system_user,
    not_root,
    on_calendar,
    only_with_git_source,
    only_with_ssh_source,
    or_image_user,
    or_name_from_source,
    pairs_with_public_key,
    path_inside_app,
    priced_when_scaled,
    procfile_defaults,
    project_and_top,
    project_folder,
    python_available,
    reachable_over_ssh,
    s3_bucket_name,
    within_group_size,
    workers_fit_memory,
)
from .table import (
    ConfigError,
    between,
    each,
    key,
    lower_case,
    matches,
    one_of,
    optional,
    read_table,
    rows,
)

__all__ = ["KEYS", "APP_KEYS", "AppSettings", "ConfigError", "Settings", "load_settings", "read_stack_config"]


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    """`app.*`: the Django project to deploy (`pulumi config set --path app.source …`)."""

    source: str = key(
        "examples/photofeed",
        "A git URL or a local folder (relative to this project): the repository, manage.py at its top or in "
        "app.directory.",
        git_url_or_local_folder,  # made absolute
    )
    directory: str = key(
        "",
        "The Django project's folder inside the source (manage.py's), e.g. backend; empty = the source's top. "
        "Dependencies are looked for there, then at the top; only that folder is released.",
        project_folder,  # normalised; a local folder's must hold manage.py (at preview)
    )
    ref: str = key(
        "",
        "Git branch, tag or commit; empty = the remote's HEAD. Resolved to a commit at preview time.",
        optional(matches(r"[\w./-]{1,200}", "a branch, tag or commit")),
        only_with_git_source,
    )
    git_host_key: str = key(
        "",
        "The git host's SSH key as a known_hosts line (`ssh-keyscan HOST`, checked against the host's published "
        "fingerprints) for an ssh:// or git@host: source; empty = each server trusts the key it first sees.",
        optional(matches(KNOWN_HOSTS_LINE, "a known_hosts line: host ssh-ed25519 AAAA…")),
        only_with_ssh_source,
    )
    name: str = key(
        "",
        "System user, database, /srv/<name>; empty = from the source's folder or repository name.",
        or_name_from_source,
        matches(NAME, "lower case letters, digits and _, starting with a letter (≤ 31)"),
        not_a_system_user,
    )
    settings_module: str = key(
        "",
        "DJANGO_SETTINGS_MODULE; empty = found as Django does: manage.py's default (a settings package's "
        "production module beside it), at preview for a folder, by the deploy for git.",
        optional(matches(PY_MODULE, "a dotted Python module such as mysite.settings")),
    )
    wsgi_module: str = key(
        "",
        "The WSGI module (`application` inside it); empty = the Procfile's web line, else the settings' "
        "WSGI_APPLICATION.",
        optional(matches(PY_MODULE, "a dotted Python module such as mysite.wsgi")),
    )
    allow_debug: bool = key(
        False,
        "serve a release whose settings leave DEBUG on (tracebacks and settings shown to every visitor); "
        "false = the deploy refuses it, naming the app.env line that turns it off.",
    )
    requirements: str = key(
        "",
        "A pip requirements file, in app.directory or else at the source's top; empty = detected there: uv.lock, "
        "poetry.lock, a requirements file, or Pipfile.lock (hashes checked).",
        optional(path_inside_app),
    )
    env_prefix: str = key(
        "DJANGO_",
        "Prefix of the env contract's variables; PLATZI_ gives exactly the seed tutorial's.",
        matches(r"([A-Z][A-Z0-9]*_)?", "upper case letters and digits ending in _, such as DJANGO_ or PLATZI_"),
    )
    env: dict[str, str] = key(
        {},
        "Extra environment for the app; secret values with `pulumi config set --secret --path app.env.NAME …`.",
        app_environment,  # names the deployer does not write, values the env file can hold
        secret="may",
    )
    files: dict[str, str] = key(
        {},
        "Files the app reads beside its code (a configuration.py, a secrets file), path in app.directory → "
        "content: `pulumi config set --secret --path 'app.files[\"PATH\"]' < FILE`; always kept secret; "
        "single profile only.",
        app_files,  # relative paths, not the deployer's own, sizes capped; refused with profile scaled
        secret="always",
    )
    health_path: str = key(
        "",
        "The app's own health view (2xx), asked at activation instead of its front page (which must answer < 500).",
        optional(matches(r"/[\w/.-]{0,200}", "a URL path such as /health/ (letters, digits, /._-)")),
    )
    python: str = key(
        "",
        "The Python the app needs, e.g. 3.14; empty = what the app says (requires-python, "
        ".python-version, runtime.txt, the Pipfile's [requires], poetry's python).",
        optional(matches(r"3\.\d{1,2}(\.\d{1,2})?", "a Python version such as 3.13 or 3.14.2")),
        python_available,  # the image's, or a uv-managed CPython; else a problem at preview
    )
    packages: list[str] = key(
        [],
        "apt packages the app needs to build or run (libldap-dev, libmagic1), installed before its virtualenv.",
        each(matches(APT_PACKAGE, "a Debian/Ubuntu package name such as libldap-dev")),
    )
    release_commands: list[str] = key(
        [],
        "manage.py commands run for each new release after collectstatic, before migrations (e.g. compress); "
        "empty = the Procfile's release line.",
        each(manage_command),
    )
    asgi_module: str = key(
        "",
        "serve the app as ASGI from this module (`application` inside it; uvicorn's worker in gunicorn, "
        "websockets through nginx); empty = WSGI, unless the Procfile's web line runs an ASGI server.",
        optional(matches(PY_MODULE, "a dotted Python module such as mysite.asgi")),
    )
    procfile: bool = key(
        True,
        "read the app's Procfile (a local folder's) as defaults under the keys: web → app.wsgiModule/asgiModule, "
        "gunicornWorkers, app.serverOptions; release → app.releaseCommands; other lines → app.processes.",
    )
    server_options: dict[str, str] = key(
        {},
        "gunicorn settings, name → value: timeout (≤ 60), graceful_timeout (≤ 25), keepalive, threads, "
        "max_requests, max_requests_jitter, preload_app; each wins over the Procfile's web line.",
        gunicorn_settings,
    )
    processes: dict[str, str] = key(
        {},
        "long-running processes beside the web, name → command (`manage.py CMD …` or a program from "
        "the app's virtualenv, e.g. celery -A proj worker); each a systemd service <name>-<process>; the "
        "Procfile's other lines add theirs.",
        app_processes,
    )
    schedules: dict[str, dict[str, str]] = key(
        {},
        "scheduled jobs, name → {schedule: systemd OnCalendar (UTC), command: as in app.processes}; "
        "systemd timers, Persistent=true.",
        app_schedules,
    )

    # Not config: what procfile_defaults took from a local folder's Procfile (config/checks.py).
    procfile_workers: int = 0  # the web line's --workers, when gunicornWorkers is not set
    procfile_notes: tuple[str, ...] = ()  # what it implies, each with the line that pins it (printed at preview)

    @property
    def source_is_git(self) -> bool:
        return bool(GIT_URL.match(self.source))

    @property
    def project_folder(self) -> Path | None:
        """A local source's Django project (the folder app.directory names in it); None for git (on the server)."""
        return None if self.source_is_git else Path(self.source, self.directory)

    @property
    def python_folders(self) -> list[Path]:
        """Where a local source says which Python it needs: its project's folder, then its top (none for git)."""
        return [] if self.source_is_git else project_and_top(self.source, self.directory)

    @property
    def source_is_ssh(self) -> bool:
        """Fetched over SSH: the stack generates a deploy key for it (components/deploykey.py)."""
        return bool(SSH_GIT_URL.match(self.source))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every top-level key, in the order of Pulumi.yaml and docs/configuration.md."""

    profile: str = key(
        "single",
        "single (one server, everything on it) or scaled (RDS, load-balanced app servers, S3 + CloudFront).",
        one_of(PROFILES),
    )
    instance_type: str = key(
        "t2.micro",  # the seed tutorial's size; t2.nano works too (swap is added)
        "EC2 instance type (see catalog/offerings.py for the supported list; t2.nano works).",
        one_of(INSTANCE_TYPES),
    )
    image: str = key(
        "debian-13",  # Debian stable: the image the tests boot in full
        "Operating system image, debian-13, debian-12 or ubuntu-24.04; the newest AMI is looked up once.",
        one_of(IMAGES),
        image_fits_instance_type,
    )
    ami_id: str = key(
        "",
        "Pin an exact AMI instead of the lookup. Changing it replaces the server.",
        optional(matches(AMI_ID, "an AMI ID such as ami-0123456789abcdef0, or empty to look one up")),
    )
    ssh_user: str = key(
        "",
        "login user of the image; empty = ubuntu on Ubuntu, admin on Debian.",
        or_image_user,
        matches(NAME, "a Unix user name (lower case letters, digits, _)"),
        not_root,
        profile="single",
    )
    ssh_public_key: str = key(
        "",
        "your own OpenSSH public key; empty = generate an ed25519 key pair (exported as the secret sshPrivateKey).",
        optional(matches(OPENSSH_PUBLIC_KEY, "an OpenSSH public key line (ssh-ed25519 AAAA… comment)")),
        profile="single",
    )
    ssh_private_key: str = key(
        "",
        "the private key matching sshPublicKey (set it with --secret); the deploy commands log in with it.",
        pairs_with_public_key,
        profile="single",
        secret="must",
    )
    ssh_allowed_cidrs: list[str] = key(
        ["0.0.0.0/0"],  # key-only auth, root login off; narrow it to your own network
        "IPv4 networks allowed to reach port 22.",
        each(ipv4_network),
        reachable_over_ssh,
        profile="single",
    )
    ingress_ports: list[int] = key(
        [22, 80, 8000],  # the seed's security group; 443 is added when TLS is on
        "ports open in the security group (443 is added with TLS). Database ports are refused in both profiles.",
        each(between(1, 65535)),
        each(not_a_database_port),
        deployable_and_served,  # sorted, without repeats
        profile="single",
    )
    domain: str = key(
        "",
        "DNS name of the site (point its A record at the publicIp output).",
        lower_case,
        optional(matches(DOMAIN, "a DNS name such as www.example.com, or empty")),
    )
    tls_email: str = key(
        "",
        "with domain, turns on HTTPS through Let's Encrypt using this account e-mail.",
        optional(matches(EMAIL, "an e-mail address for the Let's Encrypt account, or empty")),
        needs_domain,
        profile="single",
    )
    root_volume_gb: int = key(10, "Size of the encrypted gp3 root volume, GiB.", between(8, 1024))
    gunicorn_workers: int = key(
        0,
        "Gunicorn worker processes; 0 = 2 x vCPU + 1, capped by memory; more must fit in memory (~60 MiB each).",
        between(0, 64),
        workers_fit_memory,
    )
    db_pooler: bool = key(
        True,  # docs/performance.md
        "PgBouncer (session pooling, loopback only, password auth) between the app and PostgreSQL; "
        "the env contract points at it.",
        profile="single",
    )
    redis: bool = key(
        False,
        "Redis: on one server Debian's (loopback only, a generated password, memory capped for the instance, "
        "data on the data volume); scaled, ElastiCache for Valkey (private subnets, TLS, an auth token, the app "
        "servers only); REDIS_URL in the env contract.",
    )
    data_volume_gb: int = key(
        8,
        "size of the data volume (PostgreSQL and media; encrypted gp3, survives a replaced server), GiB.",
        between(1, 16384),
        profile="single",
    )
    retain_data_volume: bool = key(
        True,
        "keep the data volume on `pulumi destroy` (delete it by hand when you mean it).",
        profile="single",
    )
    keep_releases: int = key(
        5, "app releases kept on the server for instant rollback.", between(2, 50), profile="single"
    )
    backup_bucket: str = key(
        "",
        "name of an S3 bucket to create for off-server backups; empty = local backups only.",
        optional(s3_bucket_name),
        profile="single",
    )
    backup_retention_days: int = key(
        7, "days of nightly backups kept, on the server and in S3.", between(1, 3650), profile="single"
    )
    backup_schedule: str = key(
        "*-*-* 03:30:00",
        "when the nightly backup runs (systemd OnCalendar, UTC).",
        on_calendar,
        profile="single",
    )
    db_instance_class: str = key(
        "db.t4g.micro",
        "RDS for PostgreSQL instance class.",
        matches(r"db\.[a-z0-9]+\.[a-z0-9]+", "an RDS instance class such as db.t4g.micro"),
        priced_when_scaled,
        profile="scaled",
    )
    cache_node_type: str = key(
        "cache.t4g.micro",
        "with redis: the ElastiCache for Valkey node type.",
        one_of(CACHE_NODE_TYPES),
        profile="scaled",
    )
    db_allocated_storage_gb: int = key(20, "RDS storage, GiB (gp3, encrypted).", between(20, 65536), profile="scaled")
    db_multi_az: bool = key(False, "a standby database in a second availability zone.", profile="scaled")
    db_backup_retention_days: int = key(7, "days of RDS automated backups.", between(1, 35), profile="scaled")
    db_deletion_protection: bool = key(True, "RDS refuses deletion while true.", profile="scaled")
    app_min_size: int = key(2, "fewest app servers.", between(1, 100), profile="scaled")
    app_max_size: int = key(4, "most app servers.", between(1, 100), profile="scaled")
    app_desired_capacity: int = key(2, "app servers to run now.", between(1, 100), within_group_size, profile="scaled")
    admin_user: str = key(
        "admin",
        "Django superuser name; its password is the secret output adminPassword.",
        matches(r"[\w.@+-]{1,150}", "a Django user name: letters, digits and @.+-_ (1–150)"),
    )
    admin_email: str = key(
        "admin@example.com",
        "Django superuser e-mail.",
        matches(EMAIL, "an e-mail address"),
    )
    app: AppSettings = key(
        {},
        "The app to deploy, an object of the app.* keys (`--secret` when app.env holds secrets).",
        procfile_defaults,  # a local folder's Procfile fills in the keys left unset
        modules_found,  # app.settingsModule and app.wsgiModule, read from a local folder's files at preview
        fits_in_memory,  # its processes, with Redis, gunicorn and PostgreSQL, on instanceType
        secret="may",
    )

    # Not config: where the settings apply, and which keys were set with --secret.
    project: str
    stack: str
    secret_keys: frozenset[str] = frozenset()

    @property
    def tls(self) -> bool:
        return bool(self.domain and self.tls_email)

    @property
    def open_ports(self) -> list[int]:
        """Ports the security group opens: the configured ones, plus 443 when HTTPS is on."""
        return sorted(set(self.ingress_ports) | ({443} if self.tls else set()))

    @property
    def generate_key(self) -> bool:
        return not self.ssh_public_key

    @property
    def app_env_is_secret(self) -> bool:
        """`pulumi config set --secret --path app.env.X` marks all of `app` secret: its env stays secret."""
        return "app" in self.secret_keys


KEYS = rows(Settings)
APP_KEYS = rows(AppSettings)


def load_settings(
    raw: Mapping[str, Any],
    *,
    project: str,
    stack: str,
    secret_keys: frozenset[str] = frozenset(),
) -> Settings:
    """Validate raw config values (already without the `project:` namespace) into Settings."""
    values = read_table(Settings, raw, secret_keys)
    return Settings(project=project, stack=stack, secret_keys=secret_keys, **values)


def read_stack_config() -> Settings:
    """Read this stack's config through Pulumi's runtime (the only Pulumi-aware function here)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    project, stack = pulumi.get_project(), pulumi.get_stack()
    prefix = f"{project}:"
    # Every key given for this project, from the explicit config and the CLI's environment alike, so that
    # a misspelt key is reported rather than silently ignored.
    names = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    raw = {name[len(prefix) :]: runtime_config.get_config(name) for name in names if name.startswith(prefix)}
    secrets = frozenset(name for name in raw if runtime_config.is_config_secret(prefix + name))
    return load_settings(raw, project=project, stack=stack, secret_keys=secrets)
