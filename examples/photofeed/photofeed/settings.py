"""Settings for photofeed.

Everything deploy-specific comes from the environment (the deployer writes a
systemd EnvironmentFile); see README.md for the full contract. Variables use
the prefix below, which is the deployer's default.
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

ENV_PREFIX = "DJANGO_"
BASE_DIR = Path(__file__).resolve().parent.parent


def env(name, default=None, prefix=ENV_PREFIX):
    """Return the variable's value; unset and empty both mean `default`."""
    value = os.environ.get(prefix + name, "").strip()
    return value if value else default


def env_bool(name, default=False):
    value = env(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes", "on")


def env_int(name, default):
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{ENV_PREFIX}{name} must be an integer, got {value!r}") from None


def env_list(name):
    return [item.strip() for item in (env(name) or "").split(",") if item.strip()]


def database_from_url(url):
    """Django DATABASES entry for postgres://user:pass@host:port/name[?opt=val]."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured("DATABASE_URL must start with postgres:// or postgresql://")
    db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        # unquote so a socket directory can be given as %2Frun%2Fpostgresql
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(parts.port or ""),
    }
    # e.g. ?sslmode=require is passed straight to libpq
    options = dict(parse_qsl(parts.query))
    if options:
        db["OPTIONS"] = options
    return db


def database_from_env():
    db_vars = {key: env("DB_" + key) for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")}
    if any(db_vars.values()):
        # A half-written contract (say a host but no name) is a deploy bug: fail fast.
        if not db_vars["NAME"]:
            raise ImproperlyConfigured(f"{ENV_PREFIX}DB_NAME is required when other {ENV_PREFIX}DB_* variables are set")
        return {"ENGINE": "django.db.backends.postgresql", **{k: v or "" for k, v in db_vars.items()}}
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return database_from_url(url)
    # Development and the app's own tests only.
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}


DEBUG = env_bool("DEBUG")

SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(f"{ENV_PREFIX}SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-only-key"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if DEBUG:
    ALLOWED_HOSTS += ["localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "feed",
]

MIDDLEWARE = [
    # First, so /healthz answers before host validation, SSL redirects or APPEND_SLASH.
    "feed.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "photofeed.urls"
WSGI_APPLICATION = "photofeed.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_env()}
# Django's default (0: a new connection per request) on purpose; the deployer
# benchmarks an app that leaves it alone, and can raise it through the env.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env_bool("CONN_HEALTH_CHECKS")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", BASE_DIR / "staticfiles"))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", BASE_DIR / "media"))

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed file names in production, so nginx can serve /static as immutable.
    # DEBUG keeps plain names so runserver works without collectstatic.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
    },
}

# The deployer's scaled-out profile keeps uploads in S3, served by CloudFront under /media/ (each app server
# has its own disk, replaced with every release). requirements/scaled.txt adds django-storages for that.
if env("MEDIA_BUCKET"):
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("MEDIA_BUCKET"),
            "location": "media",
            "custom_domain": env("MEDIA_DOMAIN") or None,
            "querystring_auth": False,  # CloudFront reads the bucket itself (Origin Access Control)
            "file_overwrite": False,
        },
    }

# nginx (another user) reads uploads straight from MEDIA_ROOT; don't let a
# strict service umask make new upload directories unreadable to it.
FILE_UPLOAD_PERMISSIONS = 0o644
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o755

# nginx terminates TLS and sets X-Forwarded-Proto; the Host header is trusted
# as sent (validated by ALLOWED_HOSTS), never X-Forwarded-Host.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False

# stderr only: gunicorn passes it through and systemd's journal keeps it
# (and adds timestamps, so the format doesn't).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    # Replace Django's own handlers for "django" so records aren't printed twice.
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
