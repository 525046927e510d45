"""The app's environment contract: every variable the deployer writes, how each value is computed, and so
which names `app.env` may not take. Pure functions, no Pulumi.

One dict literal (`variables`) names them all, in the env file's order. It is read three ways: by the single
server's configure step (`single_server_env_file`), by the scaled profile's SSM parameter
(`app_server_env_file`), and by config validation (`reserved_names`), so an `app.env` entry that would clash
with the deployer's own is a config error before anything is declared. The README's "environment contract"
lists the same names (tests/test_settings.py keeps the two in step).

Values are written single-quoted, one per line, so that systemd's EnvironmentFile and a shell that sources
the file read them alike: a value may not hold a quote, a backslash or a line break.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: host.py imports settings.py, which imports this module
    from .host import HostPlan

NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # a variable name `app.env` may use (fullmatch; when not reserved)
# Names the env file must not set although nothing of ours writes them: `sudo <app>-manage` sources the file into
# bash (`set -a`), where UID, EUID, PPID, SHELLOPTS and BASHOPTS are read-only (the wrapper dies), PATH, IFS,
# BASH_ENV, ENV, CDPATH and GLOBIGNORE change what its next lines run; systemd passes the file to gunicorn, where
# the loader's LD_* and Python's own start-up variables change the program before the app is imported.
_SYSTEM_NAMES = """
PATH IFS UID EUID PPID GROUPS SHELLOPTS BASHOPTS BASHPID ENV CDPATH GLOBIGNORE POSIXLY_CORRECT PS4 PROMPT_COMMAND
SHELL HOME USER LOGNAME PWD OLDPWD SHLVL TMPDIR HOSTNAME SECONDS RANDOM LINENO OPTIND OPTARG FUNCNAME HISTFILE
PYTHONHOME PYTHONSTARTUP PYTHONINSPECT PYTHONUSERBASE PYTHONNOUSERSITE PYTHONSAFEPATH PYTHONEXECUTABLE PYTHONPLATLIBDIR
NOTIFY_SOCKET LISTEN_FDS LISTEN_PID LISTEN_FDNAMES INVOCATION_ID
"""
SYSTEM_NAMES = frozenset(_SYSTEM_NAMES.split())
UNSAFE_VALUE = re.compile(r"['\\\n\r]")
PG_SSLMODE = "require"  # RDS for PostgreSQL ≥ 15 refuses unencrypted connections (rds.force_ssl)
# DJANGO_SETTINGS_MODULE: the deployer's overlay (cloud-init/python/), which imports the app's own module.
SETTINGS_OVERLAY = "djangoship_settings"


@dataclass(frozen=True)
class Site:
    """What the values are computed from: where the app's database, names, folders and uploads are."""

    app: str = ""  # the database's name and user, like the system user's
    settings_module: str = ""  # the deployer's overlay (SETTINGS_OVERLAY)
    python_path: str = ""  # where the overlay and the WSGI wrapper are
    secret_key: str = ""
    db_password: str = ""
    db_host: str = ""
    db_port: str = ""
    db_options: str = ""  # the DATABASE_URL's query string, "" or "?sslmode=…"
    hosts: tuple[str, ...] = ()  # host names Django answers for
    csrf_origins: tuple[str, ...] = ()
    static_root: str = ""
    media_root: str = ""
    media_bucket: str = ""  # scaled: where uploads go (django-storages)
    media_domain: str = ""  # scaled: the name they are served under (CloudFront)
    region: str = ""  # scaled: the bucket's and the parameters' region
    media_credentials_url: str = ""  # scaled: where boto3 gets the media role's credentials (never the instance's)
    media_token_file: str = ""  # scaled: the token it shows there
    redis_url: str = ""  # `redis: true`: redis://:<password>@127.0.0.1:<port>/0; scaled: rediss:// to ElastiCache


def variables(site: Site, prefix: str, profile: str) -> dict[str, str]:
    """Every variable the deployer writes for a profile, in the env file's order (`prefix`: `app.envPrefix`)."""
    env = {
        "DJANGO_SETTINGS_MODULE": site.settings_module,
        "PYTHONPATH": site.python_path,
        "DATABASE_URL": f"postgres://{site.app}:{site.db_password}@{site.db_host}:{site.db_port}/{site.app}"
        + site.db_options,
        f"{prefix}SECRET_KEY": site.secret_key,
        f"{prefix}DB_NAME": site.app,
        f"{prefix}DB_USER": site.app,
        f"{prefix}DB_PASSWORD": site.db_password,
        f"{prefix}DB_HOST": site.db_host,
        f"{prefix}DB_PORT": site.db_port,
        f"{prefix}ALLOWED_HOSTS": ",".join(site.hosts),
        f"{prefix}CSRF_TRUSTED_ORIGINS": ",".join(site.csrf_origins),
        f"{prefix}STATIC_ROOT": site.static_root,
        f"{prefix}MEDIA_ROOT": site.media_root,
    }
    if site.redis_url:
        # `redis: true`: REDIS_URL as Celery, RQ, django-redis and Channels' examples read it, and the prefixed one.
        env["REDIS_URL"] = site.redis_url
        env[f"{prefix}REDIS_URL"] = site.redis_url
    if profile == "scaled":
        # Uploads go to S3 and are served by CloudFront (docs/scaling-out.md); boto3 needs the region.
        env[f"{prefix}MEDIA_BUCKET"] = site.media_bucket
        env[f"{prefix}MEDIA_DOMAIN"] = site.media_domain
        env["AWS_DEFAULT_REGION"] = site.region
        # RDS refuses unencrypted connections: libpq (psycopg 2 and 3) reads this wherever the app's DATABASES
        # names the DB_* variables rather than DATABASE_URL (which says it itself).
        env["PGSSLMODE"] = PG_SSLMODE
        # boto3's container credentials (as on ECS/EKS): the app's uploads only, from a root-run endpoint on the
        # server (scaled/media-credentials.py.j2); the instance role's credentials stay root's.
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = site.media_credentials_url
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = site.media_token_file
    return env


def reserved_names(prefix: str, profile: str, redis: bool = False) -> frozenset[str]:
    """The names the deployer writes for this profile (and `redis`): `app.env` may not set them. The names do
    not depend on the values, so any Site gives them."""
    return frozenset(variables(Site(redis_url="redis" if redis else ""), prefix, profile))


def owned_by_the_system(name: str) -> bool:
    """Whether `app.env` may not set this name because bash, the loader, Python or systemd read it."""
    return name in SYSTEM_NAMES or name.startswith(("LD_", "BASH_", "BASH_FUNC_"))


def writable(value: str) -> bool:
    """Whether a value can be written to the env file and read back the same by systemd and by a shell."""
    return not UNSAFE_VALUE.search(value)


def format_env_file(values: dict[str, str], extra: dict[str, str]) -> str:
    """KEY='value' lines: the deployer's values, then the app's own (`app.env`, sorted; config validation
    has kept them apart from the deployer's names and free of unsafe characters)."""
    lines = [f"{name}='{value}'" for name, value in values.items()]
    lines += [f"{name}='{extra[name]}'" for name in sorted(extra)]
    for name, value in [*values.items(), *extra.items()]:
        if not writable(value):
            raise ValueError(f"{name}: value cannot be written safely to the env file")
    return "\n".join(lines) + "\n"


def _from_plan(plan: HostPlan) -> Site:
    """The values that come from the host plan, the same on one server and on the app servers."""
    return Site(
        app=plan.app,
        settings_module=SETTINGS_OVERLAY,
        python_path=plan.python_dir,
        static_root=plan.static_root,
        media_root=plan.media_root,
    )


def single_server_env_file(
    plan: HostPlan,
    *,
    secret_key: str,
    db_password: str,
    hosts: list[str],
    extra: dict[str, str],
    redis_password: str = "",
) -> str:
    """The env file on one server. Called inside an Output.apply with the secrets: the text stays in memory
    and travels on stdin."""
    # With the pooler on, the app talks to PgBouncer (loopback TCP, which every driver and URL parser takes);
    # PgBouncer holds the connections to PostgreSQL on 127.0.0.1:5432.
    site = dataclasses.replace(
        _from_plan(plan),
        secret_key=secret_key,
        db_password=db_password,
        db_host="127.0.0.1",
        db_port=str(plan.pooler_port) if plan.db_pooler else "5432",
        hosts=tuple(hosts),
        csrf_origins=(f"https://{plan.domain}",) if plan.tls else (),
        redis_url=f"redis://:{redis_password}@127.0.0.1:{plan.redis_port}/0" if plan.redis else "",
    )
    return format_env_file(variables(site, plan.env_prefix, "single"), extra)


def app_server_env_file(
    plan: HostPlan,
    *,
    secret_key: str,
    db_password: str,
    db_host: str,
    db_port: int | str,
    public_host: str,
    cdn_domain: str,
    media_bucket: str,
    region: str,
    extra: dict[str, str],
    redis_host: str = "",
    redis_password: str = "",
) -> str:
    """The scaled profile's env file: the same contract pointing at RDS (over TLS), plus where uploads go, and with
    `redis: true` ElastiCache (over TLS, its certificate verified: `ssl_cert_reqs=required`, which Celery asks for).
    Called inside an Output.apply with the secrets: the text goes only into the SecureString parameter."""
    site = dataclasses.replace(
        _from_plan(plan),
        secret_key=secret_key,
        db_password=db_password,
        db_host=db_host,
        db_port=str(db_port),
        db_options=f"?sslmode={PG_SSLMODE}",
        # Django answers for the site's name and CloudFront's: the load balancer serves only what CloudFront sends.
        hosts=tuple(dict.fromkeys([public_host, cdn_domain])),
        csrf_origins=tuple(f"https://{host}" for host in dict.fromkeys([public_host, cdn_domain])),
        media_bucket=media_bucket,
        media_domain=public_host,
        region=region,
        media_credentials_url=f"http://127.0.0.1:{plan.media_credentials_port}/media",
        media_token_file=plan.paths.media_token,
        redis_url=f"rediss://:{redis_password}@{redis_host}:{plan.redis_port}/0?ssl_cert_reqs=required"
        if plan.redis
        else "",
    )
    return format_env_file(variables(site, plan.env_prefix, "scaled"), extra)
