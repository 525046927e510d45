"""Django projects shaped like the ones a new user brings (shared/REAL-APPS.md), written by the tests themselves.

None follows the deployer's contract: each is taken as its own authors would have written it, and deployed
by config alone. Every app has the same small feature (an upload form and a list of uploads, a stylesheet,
the admin), so one set of checks covers them all:

- `classic`  — the classic deployment tutorials: `mysite/settings/{base,prod}.py`, `CLASSIC_`-prefixed env,
  `STATIC_ROOT = BASE_DIR / "staticfiles"`, `MEDIA_ROOT = BASE_DIR / "media"` hard-coded,
  `STATICFILES_DIRS = [BASE_DIR / "static"]`, hard-coded `ALLOWED_HOSTS`, `requirements/prod.txt`, no health view.
- `oss`      — an open-source product shipped for Docker/uWSGI: bare env names (`SECRET_KEY`, `DB=postgres`,
  `DB_NAME`…, `DEBUG` as a string that defaults to True), its own `STATIC_ROOT` under the code,
  django-compressor with `COMPRESS_OFFLINE` (pages 500 until `manage.py compress`), `requirements.txt`
  without gunicorn, and a front page that redirects anonymous visitors to the login page.
- `ldapsite` — needs `python-ldap`, which builds only with libldap/libsasl headers and a compiler (apt).
- `uvshop`   — a uv project like a fresh cookiecutter-django one: `pyproject.toml` + `uv.lock`, no
  requirements file, `config.settings.production` with django-environ (`DATABASE_URL`, `DJANGO_*`),
  whitenoise, `STATIC_ROOT = str(BASE_DIR / "staticfiles")`, a required `DJANGO_ADMIN_URL`.
- `zeroconf` — startproject's project split into `settings/{base,dev,production}.py`, `DEBUG = True` in base,
  deployed with `app.source` alone: its modules found in its files (issue 33, item 4).
- `prebuilt` — assets built with node into a gitignored `assets/dist/`, and the output of `collectstatic` committed
  (`STATIC_ROOT = BASE_DIR / "static"`: hashed names and `staticfiles.json`, the admin's files included) for a host
  that runs no node; `ManifestStaticFilesStorage` (issue 33, item 5). Its developers' collectstatic runs where a
  Django is (`commits_collected_static`: the test does it on the guest, the test host has no Django).
- `monorepo` — a product in one repository: the Django project in `backend/` beside `frontend/` and `docs/`, a
  poetry project (`pyproject.toml` + `poetry.lock`) and `runtime.txt` (`python-3.13.1`) at the top (issue 33,
  items 1 and 6).
- `heroku`   — Heroku's shape: a `Procfile` (release, web with gunicorn's options, a worker), pipenv's `Pipfile` and
  `Pipfile.lock` only, dj-database-url, whitenoise; deployed with `app.source` alone (issue 33, item 3).

The uv project's `uv.lock`, the monorepo's `poetry.lock` (made by `poetry lock` with poetry 2.5.1, the deploy's
own) and the Heroku-shaped one's `Pipfile.lock` are committed fixtures (tests/fixtures/): `uv lock` needs a Python
3.13 interpreter and uv on the test host, `pipenv lock` pipenv, neither of which CI has, and a fixed lock keeps the
release id and the installed versions the same on every run.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.localsite import local_site

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DJANGO = "Django==6.1.3"  # every app on the same Django: one guest's database serves them in turn
PSYCOPG = "psycopg[binary]==3.3.9"
PSYCOPG_C = "psycopg[c]==3.3.9"  # cookiecutter-django's: psycopg's C implementation, built on the server (no wheel)


@dataclass
class ForeignApp:
    key: str
    folder: Path
    config: dict[str, Any]  # the stack's `app` object: config alone, nothing else
    label: str  # the Django app holding the upload feature
    list_path: str  # the page listing uploads (and their form)
    front_status: int  # what `/` answers an anonymous visitor
    stylesheet: str  # a static file the pages link to (URL)
    stylesheet_text: str  # a line in it
    notes: list[str] = field(default_factory=list)
    # Its repository holds the output of `manage.py collectstatic` (STATIC_ROOT), made by its developers before they
    # commit: the test makes it before the first deploy, with the project's own settings and Django.
    commits_collected_static: bool = False

    @property
    def project(self) -> Path:
        """The Django project's folder: the source's top, or the folder app.directory names."""
        return self.folder / self.config.get("directory", "")

    @property
    def template(self) -> Path:
        return self.project / self.label / "templates" / self.label / "list.html"

    @property
    def views(self) -> Path:
        return self.project / self.label / "views.py"

    def change_page(self, marker: str) -> None:
        """A one-line change: the list page's release marker."""
        text = re.sub(r"<!-- release:\w+ -->", f"<!-- release:{marker} -->", self.template.read_text())
        self.template.write_text(text)

    def break_behind_a_redirect(self, broken: bool = True) -> None:
        """The front page redirects anonymous visitors to the login page (the library's way), which raises."""
        views = self.views.read_text()
        good, bad = "    pass  # front page\n", '    return redirect("/accounts/login/?next=/")  # front page\n'
        self.views.write_text(views.replace(good, bad) if broken else views.replace(bad, good))
        login = self.project / "templates" / "registration" / "login.html"
        tag = "{% url 'no-such-view' %}"
        text = login.read_text()
        login.write_text(text.replace("<h1>", tag + "<h1>", 1) if broken else text.replace(tag, ""))

    def break_front_page(self, broken: bool = True) -> None:
        """The front page raises (a release that imports and passes `check`, but cannot serve)."""
        text = self.views.read_text()
        good, bad = "    pass  # front page\n", "    raise RuntimeError('broken release')  # front page\n"
        self.views.write_text(text.replace(good, bad) if broken else text.replace(bad, good))


#: The app's name on the server for every project: one stack, switched from one project to the next, so the same
#: server, database and data volume (tests/test_foreign_apps.py, tests/test_foreign_workers.py).
NAME = "foreign"


def stack_config(app: ForeignApp) -> dict:
    """The stack's config for `app`: its `app` object and the guest's image. Debian 13: its Python 3.13 is what
    Django 6 projects need."""
    return {"app": {"source": str(app.folder), "name": NAME, **app.config}, "keepReleases": 3, "image": "debian-13"}


def foreign_workdir(tmp_path_factory: Any, name: str) -> Path:
    """A module's folder for its projects, with the data volume its guest binds at /data."""
    base = tmp_path_factory.mktemp(name)
    (base / "data-volume").mkdir()
    return base


@contextlib.contextmanager
def foreign_site(network: Any, workdir: Path, guest_name: str, first: ForeignApp) -> Iterator[Any]:
    """The foreign stack's Debian 13 guest, first booted with project `first` and Redis, the data volume bound."""
    config = {**stack_config(first), "redis": True}
    binds = ((str(workdir / "data-volume"), "/data"),)
    with local_site(network, guest_name, config, release="trixie", binds=binds) as site:
        yield site


def d(text: str) -> str:
    """Source written indented in this file, as it stands in the app."""
    return textwrap.dedent(text).lstrip("\n")


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(d(text) if text.startswith("\n") else text)


def _fixtures(key: str, *names: str) -> dict[str, str]:
    """Committed files of an app (tests/fixtures/<key>): its lock, and the project file it was made from."""
    return {name: (FIXTURES / key / name).read_text() for name in names}


MANAGE = """
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

WSGI = """
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
application = get_wsgi_application()
"""


def _feature(label: str, *, redirect_front: bool, head: str) -> dict[str, str]:
    """The Django app every project has: an Upload model, a list page with a form, the admin."""
    front = (
        """
        def front(request):
            pass  # front page
            if not request.user.is_authenticated:
                return redirect("/accounts/login/?next=/")
            return redirect("list")
        """
        if redirect_front
        else """
        def front(request):
            pass  # front page
            return uploads(request)
        """
    )
    return {
        f"{label}/__init__.py": "",
        f"{label}/apps.py": f'''
            from django.apps import AppConfig


            class Config(AppConfig):
                name = "{label}"
                default_auto_field = "django.db.models.BigAutoField"
            ''',
        f"{label}/models.py": """
            from django.db import models


            class Upload(models.Model):
                title = models.CharField(max_length=100)
                file = models.FileField(upload_to="uploads/")
                created = models.DateTimeField(auto_now_add=True)
            """,
        f"{label}/admin.py": """
            from django.contrib import admin

            from .models import Upload

            admin.site.register(Upload)
            """,
        f"{label}/migrations/__init__.py": "",
        f"{label}/migrations/0001_initial.py": """
            from django.db import migrations, models


            class Migration(migrations.Migration):
                initial = True
                dependencies = []
                operations = [
                    migrations.CreateModel(
                        name="Upload",
                        fields=[
                            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                            ("title", models.CharField(max_length=100)),
                            ("file", models.FileField(upload_to="uploads/")),
                            ("created", models.DateTimeField(auto_now_add=True)),
                        ],
                    ),
                ]
            """,
        f"{label}/views.py": d(
            f'''
            from django import forms
            from django.shortcuts import redirect, render
            from django.views.decorators.http import require_POST

            from .models import Upload


            class UploadForm(forms.ModelForm):
                class Meta:
                    model = Upload
                    fields = ["title", "file"]


            def uploads(request):
                context = {{"uploads": Upload.objects.order_by("-id")[:20], "form": UploadForm()}}
                return render(request, "{label}/list.html", context)

            {{front}}

            @require_POST
            def upload(request):
                form = UploadForm(request.POST, request.FILES)
                if form.is_valid():
                    form.save()
                return redirect("list")
            '''
        ).replace("{front}\n", d(front)),
        f"{label}/urls.py": """
            from django.urls import path

            from . import views

            urlpatterns = [
                path("", views.front, name="front"),
                path("uploads/", views.uploads, name="list"),
                path("upload/", views.upload, name="upload"),
            ]
            """,
        f"{label}/templates/{label}/list.html": f"""
            {{% load static %}}<!doctype html>
            <html><head><title>{label}</title>
            {head}
            </head><body>
            <!-- release:v1 -->
            <h1>{label} uploads</h1>
            <form method="post" action="{{% url 'upload' %}}" enctype="multipart/form-data">{{% csrf_token %}}
            {{{{ form.as_p }}}}<button>Upload</button></form>
            <ul>{{% for item in uploads %}}
            <li><a href="{{{{ item.file.url }}}}">{{{{ item.title }}}}</a></li>{{% endfor %}}</ul>
            </body></html>
            """,
        "templates/registration/login.html": """
            <!doctype html><html><body><h1>Log in</h1>
            <form method="post">{% csrf_token %}{{ form.as_p }}<button>Log in</button></form>
            </body></html>
            """,
    }


def _urls(label: str, admin: str = '"admin/"') -> str:
    return f"""
        from django.contrib import admin
        from django.urls import include, path

        urlpatterns = [
            path({admin}, admin.site.urls),
            path("accounts/", include("django.contrib.auth.urls")),
            path("", include("{label}.urls")),
        ]
        """


def _project(package: str, label: str, *, manage: str, wsgi: str) -> dict[str, str]:
    """manage.py (with its own settings default, which the deployer's env overrides), the WSGI module, URLs."""
    return {
        "manage.py": MANAGE.format(settings=manage),
        f"{package}/__init__.py": "",
        f"{package}/wsgi.py": WSGI.format(settings=wsgi),
        f"{package}/urls.py": _urls(label),
    }


COMMON_SETTINGS = """
    INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "{label}",{extra_apps}
    ]
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",{extra_middleware}
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]
    ROOT_URLCONF = "{urls}"
    TEMPLATES = [
        {{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [BASE_DIR / "templates"],
            "APP_DIRS": True,
            "OPTIONS": {{
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ],
            }},
        }},
    ]
    USE_TZ = True
    DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""


def _common(label: str, urls: str, extra_apps: str = "", extra_middleware: str = "") -> str:
    return COMMON_SETTINGS.format(label=label, urls=urls, extra_apps=extra_apps, extra_middleware=extra_middleware)


# The database from the env contract's DJANGO_-prefixed names, as a Python dict's text.
DJANGO_DATABASE = (
    "{"
    + ", ".join(
        ['"ENGINE": "django.db.backends.postgresql"']
        + [f'"{key}": os.environ["DJANGO_DB_{key}"]' for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")]
    )
    + "}"
)
# Settings read from the env contract's DJANGO_-prefixed database names (ldapsite, and more).
DJANGO_DATABASE_AND_URLS = f"""
    DATABASES = {{"default": {DJANGO_DATABASE}}}
    STATIC_URL = "static/"
    MEDIA_URL = "media/"
"""


# A settings package's dev.py, as the tutorials and `wagtail start` have it: SQLite beside manage.py.
DEV_SETTINGS = """
    from .base import *  # noqa

    DEBUG = True
    SECRET_KEY = "dev"
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
"""


def classic(folder: Path) -> ForeignApp:
    """(a) The classic tutorials' project, exactly as the issue describes it."""
    settings = "mysite.settings.prod"
    files = {
        **_project("mysite", "uploads", manage="mysite.settings.dev", wsgi="mysite.settings.prod"),
        "mysite/settings/__init__.py": "",
        "mysite/settings/base.py": d("""
            from pathlib import Path

            BASE_DIR = Path(__file__).resolve().parent.parent.parent
            """)
        + d(_common("uploads", "mysite.urls"))
        + d("""
            STATIC_URL = "static/"
            STATIC_ROOT = BASE_DIR / "staticfiles"
            STATICFILES_DIRS = [BASE_DIR / "static"]
            MEDIA_URL = "media/"
            MEDIA_ROOT = BASE_DIR / "media"
            """),
        "mysite/settings/dev.py": DEV_SETTINGS,
        "mysite/settings/prod.py": """
            import os

            from .base import *  # noqa

            DEBUG = False
            SECRET_KEY = os.environ["CLASSIC_SECRET_KEY"]
            ALLOWED_HOSTS = ["www.classic-site.example"]
            DATABASES = {
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": os.environ["CLASSIC_DB_NAME"],
                    "USER": os.environ["CLASSIC_DB_USER"],
                    "PASSWORD": os.environ["CLASSIC_DB_PASSWORD"],
                    "HOST": os.environ.get("CLASSIC_DB_HOST", "localhost"),
                    "PORT": os.environ.get("CLASSIC_DB_PORT", "5432"),
                }
            }
            """,
        "static/css/site.css": "body { font-family: sans-serif; }\n/* classic stylesheet */\n",
        "requirements/base.txt": f"{DJANGO}\n{PSYCOPG}\n",
        "requirements/prod.txt": "-r base.txt\ngunicorn==27.0.1\n",
        "requirements/dev.txt": "-r base.txt\n",
        **_feature(
            "uploads", redirect_front=False, head='<link rel="stylesheet" href="{% static \'css/site.css\' %}">'
        ),
    }
    _write(folder, files)
    return ForeignApp(
        key="classic",
        folder=folder,
        config={"settingsModule": settings, "wsgiModule": "mysite.wsgi", "envPrefix": "CLASSIC_"},
        label="uploads",
        list_path="/",
        front_status=200,
        stylesheet="/static/css/site.css",
        stylesheet_text="classic stylesheet",
    )


def oss(folder: Path) -> ForeignApp:
    """(b) An open-source product shipped for Docker/uWSGI, deployed from its tree unchanged."""
    head = (
        "{% load compress %}{% compress css %}"
        '<link rel="stylesheet" href="{% static \'library/site.css\' %}">{% endcompress %}'
    )
    files = {
        **_project("hub", "library", manage="hub.settings", wsgi="hub.settings"),
        "hub/settings.py": d("""
            import os
            from pathlib import Path

            BASE_DIR = Path(__file__).resolve().parent.parent


            def envbool(name, default):
                return os.getenv(name, default).lower() in ("true", "1", "yes")


            SECRET_KEY = os.getenv("SECRET_KEY", "---")
            DEBUG = envbool("DEBUG", "True")
            ALLOWED_HOSTS = os.getenv("ALLOWED_HOSTS", "*").split(",")
            SITE_ROOT = os.getenv("SITE_ROOT", "http://localhost:8000")
            """)
        + d(_common("library", "hub.urls", extra_apps='\n        "compressor",'))
        + d("""
            DB = os.getenv("DB", "sqlite")
            if DB == "postgres":
                DATABASES = {
                    "default": {
                        "ENGINE": "django.db.backends.postgresql",
                        "NAME": os.getenv("DB_NAME", "hub"),
                        "USER": os.getenv("DB_USER", "postgres"),
                        "PASSWORD": os.getenv("DB_PASSWORD", ""),
                        "HOST": os.getenv("DB_HOST", ""),
                        "PORT": os.getenv("DB_PORT", ""),
                    }
                }
            else:
                DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "hub.sqlite"}}

            STATIC_URL = "/static/"
            STATIC_ROOT = os.path.join(BASE_DIR, "static-collected")
            STATICFILES_FINDERS = (
                "django.contrib.staticfiles.finders.FileSystemFinder",
                "django.contrib.staticfiles.finders.AppDirectoriesFinder",
                "compressor.finders.CompressorFinder",
            )
            COMPRESS_OFFLINE = True
            COMPRESS_CSS_HASHING_METHOD = "content"
            """),
        "library/static/library/site.css": "body { color: #222; }\n/* oss stylesheet */\n",
        "requirements.txt": f"{DJANGO}\n{PSYCOPG}\ndjango-compressor==4.6.0\n",
        **_feature("library", redirect_front=True, head=head),
    }
    _write(folder, files)
    return ForeignApp(
        key="oss",
        folder=folder,
        config={
            "settingsModule": "hub.settings",
            "wsgiModule": "hub.wsgi",
            "envPrefix": "",
            "env": {"DB": "postgres", "DEBUG": "False"},
            "releaseCommands": ["compress"],
        },
        label="library",
        list_path="/uploads/",
        front_status=302,
        stylesheet="/static/library/site.css",
        stylesheet_text="oss stylesheet",
    )


def ldapsite(folder: Path) -> ForeignApp:
    """(c) An app with a requirement that builds only against system libraries (python-ldap)."""
    files = {
        **_project("ldapsite", "records", manage="ldapsite.settings", wsgi="ldapsite.settings"),
        "ldapsite/settings.py": d("""
            import os
            from pathlib import Path

            import ldap  # the directory login backend's library: fails without libldap at run time

            BASE_DIR = Path(__file__).resolve().parent.parent
            LDAP_VERSION = ldap.__version__
            SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
            DEBUG = False
            ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")
            """)
        + d(_common("records", "ldapsite.urls"))
        + d(DJANGO_DATABASE_AND_URLS),
        "records/static/records/site.css": "body { margin: 0; }\n/* ldapsite stylesheet */\n",
        "requirements.txt": f"{DJANGO}\n{PSYCOPG}\npython-ldap==3.4.8\n",
        **_feature(
            "records", redirect_front=False, head='<link rel="stylesheet" href="{% static \'records/site.css\' %}">'
        ),
    }
    _write(folder, files)
    return ForeignApp(
        key="ldapsite",
        folder=folder,
        config={
            "settingsModule": "ldapsite.settings",
            "wsgiModule": "ldapsite.wsgi",
            # python-ldap has no wheels: its C extension needs these headers and a compiler.
            "packages": ["gcc", "libldap-dev", "libsasl2-dev", "python3-dev"],
        },
        label="records",
        list_path="/",
        front_status=200,
        stylesheet="/static/records/site.css",
        stylesheet_text="ldapsite stylesheet",
    )


def uvshop(folder: Path) -> ForeignApp:
    """(d) A uv project shaped like a fresh cookiecutter-django one (no Docker, whitenoise)."""
    files = {
        **_project("config", "files", manage="config.settings.local", wsgi="config.settings.production"),
        "config/urls.py": "from django.conf import settings\n" + d(_urls("files", admin="settings.ADMIN_URL")),
        "config/settings/__init__.py": "",
        "config/settings/base.py": d("""
            from pathlib import Path

            import environ

            BASE_DIR = Path(__file__).resolve(strict=True).parent.parent.parent
            APPS_DIR = BASE_DIR / "uvshop"
            env = environ.Env()
            """)
        + d(
            _common(
                "files",
                "config.urls",
                extra_middleware='\n        "whitenoise.middleware.WhiteNoiseMiddleware",',
            )
        )
        + d("""
            DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///uvshop.sqlite")}
            DATABASES["default"]["ATOMIC_REQUESTS"] = True
            STATIC_URL = "/static/"
            STATIC_ROOT = str(BASE_DIR / "staticfiles")
            STATICFILES_DIRS = [str(APPS_DIR / "static")]
            MEDIA_URL = "/media/"
            MEDIA_ROOT = str(APPS_DIR / "media")
            ADMIN_URL = "admin/"
            """),
        "config/settings/local.py": """
            from .base import *  # noqa

            DEBUG = True
            SECRET_KEY = "local"
            """,
        "config/settings/production.py": """
            from .base import *  # noqa
            from .base import env

            SECRET_KEY = env("DJANGO_SECRET_KEY")
            ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["uvshop.example.com"])
            DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
            SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
            SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
            # Secure cookies as cookiecutter sets them, here read from the env so that a plain-HTTP try-out
            # (the local guest has no certificate) can log in.
            SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=True)
            CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=True)
            STORAGES = {
                "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
            }
            ADMIN_URL = env("DJANGO_ADMIN_URL")
            """,
        "uvshop/static/css/project.css": "h1 { font-weight: 300; }\n/* uvshop stylesheet */\n",
        **_feature(
            "files", redirect_front=False, head='<link rel="stylesheet" href="{% static \'css/project.css\' %}">'
        ),
    }
    _write(folder, files | _fixtures("uvshop", "pyproject.toml", "uv.lock"))
    return ForeignApp(
        key="uvshop",
        folder=folder,
        config={
            "settingsModule": "config.settings.production",
            "wsgiModule": "config.wsgi",
            "env": {
                "DJANGO_ADMIN_URL": "admin/",
                # Plain HTTP on the guest's address: no redirect loop, cookies over HTTP.
                "DJANGO_SECURE_SSL_REDIRECT": "False",
                "DJANGO_SESSION_COOKIE_SECURE": "False",
                "DJANGO_CSRF_COOKIE_SECURE": "False",
            },
        },
        label="files",
        list_path="/",
        front_status=200,
        stylesheet="/static/css/project.css",
        stylesheet_text="uvshop stylesheet",
    )


# The workers project's configuration.py (NetBox's shape: DATABASE, REDIS, SECRET_KEY, ALLOWED_HOSTS), here from the
# deploy's own values in the process environment (the env contract); MARK tells the tests which file a process runs.
WORKERS_CONFIGURATION_PATH = "shop/configuration.py"
WORKERS_CONFIGURATION = d("""
    import os

    ALLOWED_HOSTS = os.environ["DJANGO_ALLOWED_HOSTS"].split(",")
    DATABASE = {database}
    REDIS = {{"url": os.environ["REDIS_URL"]}}
    SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
    MARK = "{mark}"
    """)


def workers(folder: Path) -> ForeignApp:
    """(e) More than a web process (issue 14), shaped like cookiecutter-django's Celery set-up: a Celery worker
    (`shop/celery.py`, broker and results in Redis from REDIS_URL) consuming jobs a web request queues, a
    `manage.py listen` command that runs for ever, a `manage.py tick` command for a schedule, and an ASGI module
    that answers a websocket echo itself and hands everything else to Django. Every piece writes rows stamped
    with `jobs/version.py`'s VERSION, so a test can tell which release's code did the work. `psycopg[c]` as
    cookiecutter-django has it: psycopg-c has no wheel, its build needs libpq's headers and a compiler."""
    files = {
        **_project("shop", "jobs", manage="shop.settings", wsgi="shop.settings"),
        "shop/__init__.py": 'from .celery import app as celery_app\n\n__all__ = ("celery_app",)\n',
        "shop/celery.py": """
            import os

            from celery import Celery

            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
            app = Celery("shop")
            app.config_from_object("django.conf:settings", namespace="CELERY")
            app.autodiscover_tasks()
            """,
        "shop/asgi.py": """
            import os

            from django.core.asgi import get_asgi_application

            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
            django_application = get_asgi_application()

            from jobs.version import VERSION  # noqa: E402 (after Django is set up)


            async def echo(scope, receive, send):
                while True:
                    event = await receive()
                    if event["type"] == "websocket.connect":
                        await send({"type": "websocket.accept"})
                    elif event["type"] == "websocket.receive":
                        await send({"type": "websocket.send", "text": f"echo {VERSION}: {event.get('text')}"})
                    else:
                        return


            async def application(scope, receive, send):
                if scope["type"] == "websocket" and scope["path"] == "/ws/echo/":
                    return await echo(scope, receive, send)
                return await django_application(scope, receive, send)
            """,
        # NetBox's shape: the operator's configuration.py, copied from the example the repository ships (it never
        # ships the real one); without it the settings say so and stop.
        "shop/configuration_example.py": WORKERS_CONFIGURATION.format(mark="example", database=DJANGO_DATABASE),
        ".gitignore": "shop/configuration.py\n",
        "shop/settings.py": d("""
            from pathlib import Path

            from django.core.exceptions import ImproperlyConfigured

            try:
                from shop import configuration
            except ModuleNotFoundError as error:
                if error.name != "shop.configuration":
                    raise
                raise ImproperlyConfigured(
                    "shop/configuration.py not found: copy shop/configuration_example.py to it and fill it in"
                ) from None

            BASE_DIR = Path(__file__).resolve().parent.parent
            SECRET_KEY = configuration.SECRET_KEY
            DEBUG = False
            ALLOWED_HOSTS = configuration.ALLOWED_HOSTS
            DATABASES = {"default": configuration.DATABASE}
            STATIC_URL = "static/"
            MEDIA_URL = "media/"
            CONFIG_MARK = configuration.MARK
            """)
        + d(_common("jobs", "shop.urls"))
        + d("""
            CELERY_BROKER_URL = configuration.REDIS["url"]
            CELERY_RESULT_BACKEND = configuration.REDIS["url"]
            CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
            """),
        "jobs/version.py": 'VERSION = "v1"\n',
        "jobs/tasks.py": """
            import os

            from celery import shared_task
            from django.conf import settings

            from .models import Job
            from .version import VERSION


            @shared_task
            def record(token):
                # A `mark-` job records the configuration file's mark the worker runs with, not the code's version.
                version = settings.CONFIG_MARK if token.startswith("mark-") else VERSION
                Job.objects.create(token=token, version=version, pid=os.getpid())
            """,
        "jobs/work.py": """
            from django.db import models


            class Job(models.Model):
                token = models.CharField(max_length=64)
                version = models.CharField(max_length=16)
                pid = models.IntegerField()
                created = models.DateTimeField(auto_now_add=True)


            class Heartbeat(models.Model):
                version = models.CharField(max_length=16)
                pid = models.IntegerField()
                created = models.DateTimeField(auto_now_add=True)


            class Tick(models.Model):
                version = models.CharField(max_length=16)
                created = models.DateTimeField(auto_now_add=True)
            """,
        "jobs/migrations/0002_work.py": """
            from django.db import migrations, models


            def fields(*extra):
                return [("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)), *extra,
                        ("version", models.CharField(max_length=16)),
                        ("created", models.DateTimeField(auto_now_add=True))]


            class Migration(migrations.Migration):
                dependencies = [("jobs", "0001_initial")]
                operations = [
                    migrations.CreateModel(name="Job", fields=fields(
                        ("token", models.CharField(max_length=64)), ("pid", models.IntegerField()))),
                    migrations.CreateModel(name="Heartbeat", fields=fields(("pid", models.IntegerField()))),
                    migrations.CreateModel(name="Tick", fields=fields()),
                ]
            """,
        "jobs/management/__init__.py": "",
        "jobs/management/commands/__init__.py": "",
        "jobs/management/commands/listen.py": """
            import os
            import time

            from django.core.management.base import BaseCommand

            from jobs.models import Heartbeat
            from jobs.version import VERSION


            class Command(BaseCommand):
                help = "Runs for ever (an alert sender, a queue consumer): a heartbeat row a second."

                def handle(self, *args, **options):
                    while True:
                        Heartbeat.objects.create(version=VERSION, pid=os.getpid())
                        time.sleep(1)
            """,
        "jobs/management/commands/tick.py": """
            from django.core.management.base import BaseCommand, CommandError

            from jobs.models import Tick
            from jobs.version import VERSION


            class Command(BaseCommand):
                help = "A scheduled job: one row per run; --fail fails the run."

                def add_arguments(self, parser):
                    parser.add_argument("--fail", action="store_true")

                def handle(self, *args, **options):
                    if options["fail"]:
                        raise CommandError("this scheduled job fails on purpose")
                    Tick.objects.create(version=VERSION)
            """,
        "jobs/management/commands/housekeeping.py": """
            import datetime

            from django.conf import settings
            from django.core.management.base import BaseCommand
            from django.utils import timezone

            from jobs.models import Heartbeat


            class Command(BaseCommand):
                help = "Nightly housekeeping (NetBox's shape): rows older than 90 days go."

                def handle(self, *args, **options):
                    cutoff = timezone.now() - datetime.timedelta(days=90)
                    removed, _ = Heartbeat.objects.filter(created__lt=cutoff).delete()
                    self.stdout.write(f"housekeeping ({settings.CONFIG_MARK}): {removed} old heartbeats removed")
            """,
        # A command whose import fails slowly (a module that loads for seconds, then is missing something): for the
        # start check of the processes, which must refuse it however long it took.
        "jobs/management/commands/slowstart.py": """
            import time

            time.sleep(6)
            raise ImportError("slowstart: a module this command needs is missing (on purpose, 6 s into its import)")
            """,
        "jobs/static/jobs/site.css": "body { margin: 1em; }\n/* workers stylesheet */\n",
        "requirements.txt": f"{DJANGO}\n{PSYCOPG_C}\ncelery[redis]==5.7.0\n",
        **_feature("jobs", redirect_front=False, head='<link rel="stylesheet" href="{% static \'jobs/site.css\' %}">'),
    }
    files = {name: d(text) if text.startswith("\n") else text for name, text in files.items()}
    files["jobs/models.py"] += "\n\nfrom .work import Heartbeat, Job, Tick  # noqa: E402, F401\n"
    files["jobs/urls.py"] = files["jobs/urls.py"].replace(
        'path("upload/", views.upload, name="upload"),',
        'path("upload/", views.upload, name="upload"),\n    path("enqueue/<slug:token>/", views.enqueue),\n'
        '    path("state/", views.state),',
    )
    files["jobs/views.py"] += "\n\n" + d('''
        def enqueue(request, token):
            """A web request queues a job through Redis; the worker does it."""
            from django.http import HttpResponse

            from .tasks import record

            record.delay(token)
            return HttpResponse("queued\\n", status=202)


        def state(request):
            """What the worker, the listener and the schedule have written, for the tests."""
            from django.conf import settings
            from django.db.models import Max
            from django.http import JsonResponse

            from .models import Heartbeat, Job, Tick

            return JsonResponse({
                "jobs": {job.token: job.version for job in Job.objects.all()},
                "heartbeats": Heartbeat.objects.count(),
                "last_heartbeat": list(Heartbeat.objects.order_by("-id").values("version", "pid")[:1]),
                "listener_pids": sorted(set(Heartbeat.objects.values_list("pid", flat=True))),
                "ticks": Tick.objects.count(),
                "tick_versions": sorted(set(Tick.objects.values_list("version", flat=True))),
                "last_tick": Tick.objects.aggregate(at=Max("created"))["at"],
                "config_mark": settings.CONFIG_MARK,
            })
        ''')
    _write(folder, files)
    return ForeignApp(
        key="workers",
        folder=folder,
        config={
            "settingsModule": "shop.settings",
            "wsgiModule": "shop.wsgi",
            "asgiModule": "shop.asgi",
            "processes": {"worker": "celery -A shop worker --pool solo -l info", "listener": "manage.py listen"},
            "schedules": {
                "tick": {"schedule": "*:*:0/5", "command": "manage.py tick"},
                # Every 20 s: its failed state lasts until the next run, for `systemctl --failed` to show it.
                "failing": {"schedule": "*:*:0/20", "command": "manage.py tick --fail"},
                "housekeeping": {"schedule": "*-*-* 03:30:00", "command": "manage.py housekeeping"},
            },
            # Given by config (secret on the server whether set with --secret or not), never by the repository.
            "files": {
                WORKERS_CONFIGURATION_PATH: WORKERS_CONFIGURATION.format(mark="file-v1", database=DJANGO_DATABASE)
            },
        },
        label="jobs",
        list_path="/",
        front_status=200,
        stylesheet="/static/jobs/site.css",
        stylesheet_text="workers stylesheet",
    )


def zeroconf(folder: Path) -> ForeignApp:
    """(f) `django-admin startproject`'s project split into a settings package as the tutorials do it
    (`base/dev/production`): `base.py` keeps startproject's `DEBUG = True`, insecure key, `ALLOWED_HOSTS = []` and
    `WSGI_APPLICATION`; manage.py and wsgi.py default to `dev`; `production.py` reads the environment. Deployed with
    `app.source` alone (issue 33, item 4): the modules are found in its files — `zeroconf.settings.production`
    beside manage.py's `dev`, the WSGI module from WSGI_APPLICATION — and its env names are the contract's own
    (`DJANGO_` prefix, the default), so nothing else is needed."""
    files = {
        "manage.py": MANAGE.format(settings="zeroconf.settings.dev"),
        "zeroconf/__init__.py": "",
        "zeroconf/wsgi.py": WSGI.format(settings="zeroconf.settings.dev"),
        "zeroconf/urls.py": _urls("notes"),
        "zeroconf/settings/__init__.py": "",
        "zeroconf/settings/base.py": d("""
            from pathlib import Path

            BASE_DIR = Path(__file__).resolve().parent.parent.parent
            SECRET_KEY = "django-insecure-startproject-default"
            DEBUG = True
            ALLOWED_HOSTS = []
            WSGI_APPLICATION = "zeroconf.wsgi.application"
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
            STATIC_URL = "static/"
            """)
        + d(_common("notes", "zeroconf.urls")),
        "zeroconf/settings/dev.py": """
            from .base import *  # noqa
            """,
        "zeroconf/settings/production.py": d("""
            import os

            from .base import *  # noqa

            DEBUG = os.environ.get("DJANGO_DEBUG", "False") == "True"
            SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
            ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")
            STATIC_ROOT = BASE_DIR / "staticfiles"
            MEDIA_ROOT = BASE_DIR / "media"
            """)
        + d(DJANGO_DATABASE_AND_URLS),
        "notes/static/notes/site.css": "body { padding: 1em; }\n/* zeroconf stylesheet */\n",
        "requirements.txt": f"{DJANGO}\n{PSYCOPG}\n",
        **_feature(
            "notes", redirect_front=False, head='<link rel="stylesheet" href="{% static \'notes/site.css\' %}">'
        ),
    }
    _write(folder, files)
    return ForeignApp(
        key="zeroconf",
        folder=folder,
        config={},  # app.source alone (the tests' stack adds only the shared app name)
        label="notes",
        list_path="/",
        front_status=200,
        stylesheet="/static/notes/site.css",
        stylesheet_text="zeroconf stylesheet",
    )


def prebuilt(folder: Path) -> ForeignApp:
    """(g) A project whose host cannot run node (issue 33, item 5): its stylesheet and images are built by node
    (`npm run build`: assets/src → assets/dist, gitignored), and its developers commit the output of `collectstatic`
    — STATIC_ROOT is `static/` in the repository, with ManifestStaticFilesStorage's hashed names and its
    `staticfiles.json`, the admin's files included. Nothing else in the repository has the built assets."""
    files = {
        **_project("atelier", "gallery", manage="atelier.settings", wsgi="atelier.settings"),
        "atelier/settings.py": d("""
            import os
            from pathlib import Path

            BASE_DIR = Path(__file__).resolve().parent.parent
            SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
            DEBUG = False
            ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")
            """)
        + d(_common("gallery", "atelier.urls"))
        + d(DJANGO_DATABASE_AND_URLS)
        + d("""
            # Built by `npm run build` into assets/dist (not in git); `manage.py collectstatic` before each commit
            # puts them, hashed, with the admin's files and the manifest, into static/, which is committed.
            STATICFILES_DIRS = [BASE_DIR / "assets" / "dist"]
            STATIC_ROOT = BASE_DIR / "static"
            MEDIA_ROOT = BASE_DIR / "media"
            STORAGES = {
                "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
            }
            """),
        ".gitignore": "node_modules/\n/assets/dist/\n/media/\n",
        "package.json": d("""
            {
              "private": true,
              "scripts": {"build": "esbuild assets/src/site.css --bundle --loader:.svg=file --outdir=assets/dist/css"},
              "devDependencies": {"esbuild": "^0.25.0"}
            }
            """),
        "assets/src/site.css": "body { margin: 2em; }\n/* prebuilt stylesheet */\n",
        # What `npm run build` leaves (gitignored): the stylesheet with its image beside it.
        "assets/dist/css/site.css": (
            'body { margin: 2em; }\nh1 { background: url("../img/mark.svg") no-repeat; }\n/* prebuilt stylesheet */\n'
        ),
        "assets/dist/img/mark.svg": '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"></svg>\n',
        "requirements.txt": f"{DJANGO}\n{PSYCOPG}\n",
        **_feature(
            "gallery", redirect_front=False, head='<link rel="stylesheet" href="{% static \'css/site.css\' %}">'
        ),
    }
    _write(folder, files)
    return ForeignApp(
        key="prebuilt",
        folder=folder,
        config={"settingsModule": "atelier.settings", "wsgiModule": "atelier.wsgi"},
        label="gallery",
        list_path="/",
        front_status=200,
        stylesheet="/static/css/site.css",
        stylesheet_text="prebuilt stylesheet",
        commits_collected_static=True,
    )


def monorepo(folder: Path) -> ForeignApp:
    """(g) A product kept in one repository (issue 33, items 1 and 6): the Django API and admin in `backend/`, a
    Vite web client in `frontend/`, the handbook in `docs/`, scripts; a poetry project at the top (`pyproject.toml`
    with `package-mode = false` and its Python as `^3.12` in `[tool.poetry.dependencies]`, `poetry.lock`) and
    Heroku's `runtime.txt` pinned to the patch that was current when it was written. Twelve-factor settings in one
    module (`DATABASE_URL` through dj-database-url, `DJANGO_*`), gunicorn among its dependencies. Deployed with
    `app.directory` alone: its modules found in backend/, its dependencies at the top, its Python the image's."""
    project = {
        "manage.py": MANAGE.format(settings="tessera.settings"),
        "tessera/__init__.py": "",
        "tessera/wsgi.py": WSGI.format(settings="tessera.settings"),
        "tessera/urls.py": _urls("albums"),
        "tessera/settings.py": d("""
            \"\"\"Tessera's settings: one module, configured by the environment.\"\"\"

            import os
            from pathlib import Path

            import dj_database_url

            BASE_DIR = Path(__file__).resolve().parent.parent  # backend/

            SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-local-only")
            DEBUG = os.environ.get("DJANGO_DEBUG", "false").lower() == "true"
            ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
            WSGI_APPLICATION = "tessera.wsgi.application"
            DATABASES = {
                "default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600)
            }
            """)
        + d(_common("albums", "tessera.urls"))
        + d("""
            STATIC_URL = "static/"
            STATIC_ROOT = BASE_DIR / "staticfiles"
            MEDIA_URL = "media/"
            MEDIA_ROOT = BASE_DIR / "media"
            """),
        "albums/static/albums/site.css": "main { max-width: 60em; }\n/* monorepo stylesheet */\n",
        **_feature(
            "albums", redirect_front=False, head='<link rel="stylesheet" href="{% static \'albums/site.css\' %}">'
        ),
    }
    files = {f"backend/{name}": text for name, text in project.items()}
    files |= {
        "README.md": """
            # Tessera

            Photo albums for teams. `backend/` is the Django API and admin, `frontend/` the web client, `docs/` the
            handbook. `poetry install` at the top, then `cd backend && python manage.py runserver`; `cd frontend &&
            npm ci && npm run dev`.
            """,
        ".gitignore": "__pycache__/\n.venv/\nnode_modules/\nfrontend/dist/\nbackend/db.sqlite3\nbackend/staticfiles/\n",
        "runtime.txt": "python-3.13.1\n",
        "frontend/package.json": d("""
            {
              "name": "tessera-web",
              "private": true,
              "type": "module",
              "scripts": {"dev": "vite", "build": "vite build"},
              "devDependencies": {"vite": "^7.1.0"}
            }
            """),
        "frontend/index.html": '<!doctype html><html><body><div id="app"></div>'
        '<script type="module" src="/src/main.js"></script></body></html>\n',
        "frontend/src/main.js": d("""
            const response = await fetch("/uploads/");
            document.querySelector("#app").innerHTML = await response.text();
            """),
        "frontend/vite.config.js": d("""
            export default { server: { proxy: { "/uploads": "http://localhost:8000" } } };
            """),
        "docs/index.md": "# Tessera handbook\n\nRunning it locally, deploying it, the API.\n",
        "scripts/bootstrap.sh": "#!/bin/sh\nset -e\npoetry install\n(cd frontend && npm ci)\n",
    }
    _write(folder, files | _fixtures("monorepo", "pyproject.toml", "poetry.lock"))
    return ForeignApp(
        key="monorepo",
        folder=folder,
        config={"directory": "backend"},
        label="albums",
        list_path="/",
        front_status=200,
        stylesheet="/static/albums/site.css",
        stylesheet_text="monorepo stylesheet",
    )


def heroku(folder: Path) -> ForeignApp:
    """(g) A Heroku-shaped project (issue 33, item 3), as Heroku's Python getting-started guide has it: a `Procfile`
    (`release: python manage.py migrate`, `web: gunicorn gettingstarted.wsgi --log-file -` with gunicorn's tuning
    options, a `worker:` line running a management command that works for ever), pipenv's `Pipfile` and
    `Pipfile.lock` and no requirements file, `DATABASE_URL` through dj-database-url, whitenoise. Deployed with
    `app.source` alone: the Procfile says how it runs, the lock what it needs (a committed fixture, locked by pipenv
    itself: tests/fixtures/heroku)."""
    files = {
        "manage.py": MANAGE.format(settings="gettingstarted.settings"),
        "Procfile": (
            "release: python manage.py migrate\n"
            "web: gunicorn gettingstarted.wsgi --log-file - --max-requests 1000 --max-requests-jitter 100\n"
            "worker: python manage.py process_queue\n"
        ),
        "gettingstarted/__init__.py": "",
        "gettingstarted/wsgi.py": WSGI.format(settings="gettingstarted.settings"),
        "gettingstarted/urls.py": _urls("hello"),
        "gettingstarted/settings.py": d("""
            import os
            from pathlib import Path

            import dj_database_url

            BASE_DIR = Path(__file__).resolve().parent.parent
            SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-local-only")
            DEBUG = os.environ.get("DJANGO_DEBUG", "False") == "True"
            # Heroku's router in front: any host reaches the dynos.
            ALLOWED_HOSTS = ["*"]
            SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
            """)
        + d(
            _common(
                "hello",
                "gettingstarted.urls",
                extra_middleware='\n        "whitenoise.middleware.WhiteNoiseMiddleware",',
            )
        )
        + d("""
            WSGI_APPLICATION = "gettingstarted.wsgi.application"
            DATABASES = {
                "default": dj_database_url.config(
                    default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600, conn_health_checks=True
                )
            }
            STATIC_ROOT = BASE_DIR / "staticfiles"
            STATIC_URL = "static/"
            STORAGES = {
                "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
            }
            MEDIA_URL = "media/"
            """),
        "hello/static/hello/site.css": "body { line-height: 1.4; }\n/* heroku stylesheet */\n",
        "hello/work.py": """
            from django.db import models


            class Beat(models.Model):
                pid = models.IntegerField()
                created = models.DateTimeField(auto_now_add=True)
            """,
        "hello/migrations/0002_beat.py": """
            from django.db import migrations, models


            class Migration(migrations.Migration):
                dependencies = [("hello", "0001_initial")]
                operations = [
                    migrations.CreateModel(
                        name="Beat",
                        fields=[
                            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                            ("pid", models.IntegerField()),
                            ("created", models.DateTimeField(auto_now_add=True)),
                        ],
                    ),
                ]
            """,
        "hello/management/__init__.py": "",
        "hello/management/commands/__init__.py": "",
        "hello/management/commands/process_queue.py": """
            import os
            import time

            from django.core.management.base import BaseCommand

            from hello.models import Beat


            class Command(BaseCommand):
                help = "The worker dyno: works for ever (here a row a second)."

                def handle(self, *args, **options):
                    while True:
                        Beat.objects.create(pid=os.getpid())
                        time.sleep(1)
            """,
        **_feature(
            "hello", redirect_front=False, head='<link rel="stylesheet" href="{% static \'hello/site.css\' %}">'
        ),
    }
    files = {name: d(text) if text.startswith("\n") else text for name, text in files.items()}
    files["hello/models.py"] += "\n\nfrom .work import Beat  # noqa: E402, F401\n"
    _write(folder, files | _fixtures("heroku", "Pipfile", "Pipfile.lock"))
    return ForeignApp(
        key="heroku",
        folder=folder,
        config={},  # app.source alone: the Procfile and the lock say the rest
        label="hello",
        list_path="/",
        front_status=200,
        stylesheet="/static/hello/site.css",
        stylesheet_text="heroku stylesheet",
    )


WAGTAIL_APPS = [
    "wagtail.contrib.forms",
    "wagtail.contrib.redirects",
    "wagtail.embeds",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
]


def wagtailsite(folder: Path) -> ForeignApp:
    """(g) A Wagtail site as `wagtail start` lays it out (`mysite/settings/{base,dev,production}.py`, `DATABASE_URL`
    through dj-database-url), with Wagtail's ~40 packages and its migrations, and psycopg2 as its docs once had it:
    published for Linux as source only, so its first boot needs the build tools. For bench/first_boot.py (a
    Wagtail-sized app, issue 34 item 5); the front page is the upload feature, the CMS's admin at /cms/."""
    files = {
        **_project("mysite", "uploads", manage="mysite.settings.dev", wsgi="mysite.settings.dev"),
        "mysite/urls.py": d("""
            from django.contrib import admin
            from django.urls import include, path
            from wagtail import urls as wagtail_urls
            from wagtail.admin import urls as wagtailadmin_urls
            from wagtail.documents import urls as wagtaildocs_urls

            urlpatterns = [
                path("admin/", admin.site.urls),
                path("cms/", include(wagtailadmin_urls)),
                path("documents/", include(wagtaildocs_urls)),
                path("accounts/", include("django.contrib.auth.urls")),
                path("pages/", include(wagtail_urls)),
                path("", include("uploads.urls")),
            ]
            """),
        "mysite/settings/__init__.py": "",
        "mysite/settings/base.py": d("""
            from pathlib import Path

            BASE_DIR = Path(__file__).resolve().parent.parent.parent
            """)
        + d(
            _common(
                "uploads",
                "mysite.urls",
                extra_apps="".join(f'\n        "{app}",' for app in WAGTAIL_APPS),
                extra_middleware='\n        "wagtail.contrib.redirects.middleware.RedirectMiddleware",',
            )
        )
        + d("""
            STATIC_URL = "/static/"
            STATIC_ROOT = BASE_DIR / "static"
            MEDIA_URL = "/media/"
            MEDIA_ROOT = BASE_DIR / "media"
            WAGTAIL_SITE_NAME = "mysite"
            WAGTAILADMIN_BASE_URL = "http://example.com"
            WAGTAILDOCS_EXTENSIONS = ["csv", "docx", "pdf", "txt", "xlsx"]
            """),
        "mysite/settings/dev.py": DEV_SETTINGS,
        "mysite/settings/production.py": """
            import os

            import dj_database_url

            from .base import *  # noqa

            DEBUG = False
            SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
            ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")
            DATABASES = {"default": dj_database_url.config(conn_max_age=600)}
            """,
        "uploads/static/uploads/site.css": "body { margin: 2em; }\n/* wagtailsite stylesheet */\n",
        "requirements.txt": "Django==5.2.20\nwagtail==8.0.1\ndj-database-url==3.1.2\npsycopg2==2.9.13\n",
        **_feature(
            "uploads", redirect_front=False, head='<link rel="stylesheet" href="{% static \'uploads/site.css\' %}">'
        ),
    }
    _write(folder, files)
    return ForeignApp(
        key="wagtailsite",
        folder=folder,
        config={"settingsModule": "mysite.settings.production", "wsgiModule": "mysite.wsgi"},
        label="uploads",
        list_path="/",
        front_status=200,
        stylesheet="/static/uploads/site.css",
        stylesheet_text="wagtailsite stylesheet",
    )


def leave_debug_on(app: ForeignApp, on: bool = True) -> None:
    """zeroconf's production settings with DEBUG on by default, as many settings files have it."""
    path = app.folder / "zeroconf" / "settings" / "production.py"
    off, on_ = 'os.environ.get("DJANGO_DEBUG", "False")', 'os.environ.get("DJANGO_DEBUG", "True")'
    text = path.read_text()
    path.write_text(text.replace(off, on_) if on else text.replace(on_, off))


BUILDERS = {"classic": classic, "oss": oss, "ldapsite": ldapsite, "uvshop": uvshop, "workers": workers}
BUILDERS |= {"zeroconf": zeroconf, "prebuilt": prebuilt, "monorepo": monorepo, "heroku": heroku}
BUILDERS["wagtailsite"] = wagtailsite  # bench/first_boot.py's Wagtail-sized app; no test deploys it


def build(key: str, folder: Path) -> ForeignApp:
    folder.mkdir(parents=True, exist_ok=True)
    return BUILDERS[key](folder)


def workers_for_app_servers(folder: Path) -> ForeignApp:
    """The workers project as the scaled profile's app servers take it (test_scaled_workers, test_scaled_move):
    psycopg's wheel (app servers get build tools only on demand, and those modules are about what runs and what
    moves, not builds), and its configuration.py shipped with the code, reading the env contract as the one
    app.files gives it does — the scaled profile does not carry app.files (its preview refuses them)."""
    project = build("workers", folder)
    requirements = project.folder / "requirements.txt"
    requirements.write_text(requirements.read_text().replace(PSYCOPG_C, PSYCOPG))
    configuration = WORKERS_CONFIGURATION.format(mark="shipped", database=DJANGO_DATABASE)
    (project.folder / WORKERS_CONFIGURATION_PATH).write_text(configuration)
    (project.folder / ".gitignore").write_text("")  # it ships with the code here
    project.config = {key: value for key, value in project.config.items() if key != "files"}
    return project
