"""The app's environment contract: every variable the deployer writes, how each value is computed, and so
which names `app.env` may not take. Pure functions, no Pulumi.

One dict literal (`variables`) names them all, in the env file's order. It is read three ways: by the single
server's configure step (`single_server_env_file`), by the scaled profile's SSM parameter
(`app_server_env_file`; both in server/envfile.py, which fill in `Site` from the host plan), and by config
validation (`reserved_names`), so an `app.env` entry that would clash with the deployer's own is a config error
before anything is declared. docs/deploying.md's "environment contract" lists the same names
(tests/fast/test_settings.py keeps the two in step).

Values are written single-quoted, one per line, so that systemd's EnvironmentFile and a shell that sources
the file read them alike: a value may not hold a quote, a backslash or a line break.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
