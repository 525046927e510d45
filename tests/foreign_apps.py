"""Django projects shaped like the ones a new user brings (shared/REAL-APPS.md): their files are under
tests/fixtures/apps/<key>/, and `build(key, folder)` copies one into a test's folder.

None follows the deployer's contract: each is written as its own authors would have written it (so ruff leaves
them alone, pyproject.toml), and deployed by config alone — `APPS` holds that config and what the checks look for.
Every app has the same small feature (an upload form and a list of uploads, a stylesheet, the admin), so one set of
checks covers them all:

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
- `workers`  — more than a web process (issue 14), shaped like cookiecutter-django's Celery set-up: a Celery worker
  (`shop/celery.py`, broker and results in Redis from REDIS_URL) consuming jobs a web request queues, a
  `manage.py listen` command that runs for ever, a `manage.py tick` command for a schedule, a nightly
  `housekeeping`, a `slowstart` command whose import fails after 6 s (for the processes' start check), and an ASGI
  module that answers a websocket echo itself and hands everything else to Django. Every piece writes rows stamped
  with `jobs/version.py`'s VERSION, so a test can tell which release's code did the work. NetBox's shape for its
  settings: the repository ships `shop/configuration_example.py` and gitignores `shop/configuration.py`, which the
  stack's `app.files` gives. `psycopg[c]` as cookiecutter-django has it: no wheel, its build needs libpq's headers
  and a compiler.
- `zeroconf` — `django-admin startproject`'s project split into `settings/{base,dev,production}.py` as the tutorials
  do it: `base.py` keeps startproject's `DEBUG = True`, insecure key, `ALLOWED_HOSTS = []` and `WSGI_APPLICATION`;
  manage.py and wsgi.py default to `dev`; `production.py` reads the environment. Deployed with `app.source` alone
  (issue 33, item 4): `zeroconf.settings.production` found beside manage.py's `dev`, the WSGI module from
  WSGI_APPLICATION, and its env names are the contract's own (`DJANGO_` prefix, the default).
- `prebuilt` — assets built with node (`npm run build`: assets/src → a gitignored `assets/dist/`, here as that
  build leaves it), and the output of `collectstatic` committed (`STATIC_ROOT = BASE_DIR / "static"`: hashed names
  and `staticfiles.json`, the admin's files included) for a host that runs no node; `ManifestStaticFilesStorage`
  (issue 33, item 5). Its developers' collectstatic runs where a Django is (`commits_collected_static`: the test
  does it on the guest, the test host has no Django).
- `monorepo` — a product in one repository (issue 33, items 1 and 6): the Django API and admin in `backend/` beside
  a Vite client in `frontend/`, the handbook in `docs/` and scripts; a poetry project at the top (`pyproject.toml`
  with `package-mode = false` and Python `^3.12`, `poetry.lock`) and Heroku's `runtime.txt` (`python-3.13.1`).
  Twelve-factor settings in one module (`DATABASE_URL` through dj-database-url, `DJANGO_*`). Deployed with
  `app.directory` alone: its modules found in backend/, its dependencies at the top, its Python the image's.
- `heroku`   — Heroku's shape, as its Python getting-started guide has it: a `Procfile` (release, web with gunicorn's
  options, a worker running a management command that works for ever), pipenv's `Pipfile` and `Pipfile.lock` only,
  dj-database-url, whitenoise; deployed with `app.source` alone (issue 33, item 3).
- `wagtailsite` — a Wagtail site as `wagtail start` lays it out (`mysite/settings/{base,dev,production}.py`,
  `DATABASE_URL` through dj-database-url), with Wagtail's ~40 packages and its migrations, and psycopg2 as its docs
  once had it: published for Linux as source only, so its first boot needs the build tools. For bench/first_boot.py
  (a Wagtail-sized app, issue 34 item 5; no test deploys it); the front page is the upload feature, the CMS's admin
  at /cms/.

Every app but wagtailsite pins Django 6.1.3: one guest's database serves them in turn. The uv project's `uv.lock`,
the monorepo's `poetry.lock` (made by `poetry lock` with poetry 2.5.1, the deploy's own) and the Heroku-shaped one's
`Pipfile.lock` are committed as made, not made by the tests: `uv lock` needs a Python 3.13 interpreter and uv on the
test host, `pipenv lock` pipenv, neither of which CI has, and a fixed lock keeps the release id and the installed
versions the same on every run.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.localsite import local_site

TREES = Path(__file__).resolve().parent / "fixtures" / "apps"
PSYCOPG = "psycopg[binary]==3.3.9"
PSYCOPG_C = "psycopg[c]==3.3.9"  # cookiecutter-django's: psycopg's C implementation, built on the server (no wheel)
# An app's own .gitignore is kept in its tree as `gitignore`: inside this repository git would obey it, and leave out
# of every commit the files it names that the fixture has (prebuilt's assets/dist/).
GITIGNORE_STORED_AS = "gitignore"


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
#: server, database and data volume (tests/guests/test_foreign_apps.py, tests/guests/test_foreign_workers.py).
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


# The file the workers project's settings import (NetBox's shape: DATABASE, REDIS, SECRET_KEY, ALLOWED_HOSTS, here
# from the deploy's own values in the process environment); its MARK tells the tests which file a process runs.
WORKERS_CONFIGURATION_PATH = "shop/configuration.py"


def workers_configuration(mark: str) -> str:
    """The workers project's configuration.py as its operator makes it: the example it ships, marked `mark`."""
    example = (TREES / "workers" / "shop" / "configuration_example.py").read_text()
    assert 'MARK = "example"\n' in example, "shop/configuration_example.py no longer sets MARK"
    return example.replace('MARK = "example"\n', f'MARK = "{mark}"\n')


# Each app's config (the stack's `app` object) and what the checks look for; its files are TREES / key.
APPS: dict[str, dict[str, Any]] = {
    "classic": {
        "config": {"settingsModule": "mysite.settings.prod", "wsgiModule": "mysite.wsgi", "envPrefix": "CLASSIC_"},
        "label": "uploads",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/css/site.css",
        "stylesheet_text": "classic stylesheet",
    },
    "oss": {
        "config": {
            "settingsModule": "hub.settings",
            "wsgiModule": "hub.wsgi",
            "envPrefix": "",
            "env": {"DB": "postgres", "DEBUG": "False"},
            "releaseCommands": ["compress"],
        },
        "label": "library",
        "list_path": "/uploads/",
        "front_status": 302,
        "stylesheet": "/static/library/site.css",
        "stylesheet_text": "oss stylesheet",
    },
    "ldapsite": {
        "config": {
            "settingsModule": "ldapsite.settings",
            "wsgiModule": "ldapsite.wsgi",
            # python-ldap has no wheels: its C extension needs these headers and a compiler.
            "packages": ["gcc", "libldap-dev", "libsasl2-dev", "python3-dev"],
        },
        "label": "records",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/records/site.css",
        "stylesheet_text": "ldapsite stylesheet",
    },
    "uvshop": {
        "config": {
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
        "label": "files",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/css/project.css",
        "stylesheet_text": "uvshop stylesheet",
    },
    "workers": {
        "config": {
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
            "files": {WORKERS_CONFIGURATION_PATH: workers_configuration("file-v1")},
        },
        "label": "jobs",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/jobs/site.css",
        "stylesheet_text": "workers stylesheet",
    },
    "zeroconf": {
        "config": {},  # app.source alone (the tests' stack adds only the shared app name)
        "label": "notes",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/notes/site.css",
        "stylesheet_text": "zeroconf stylesheet",
    },
    "prebuilt": {
        "config": {"settingsModule": "atelier.settings", "wsgiModule": "atelier.wsgi"},
        "label": "gallery",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/css/site.css",
        "stylesheet_text": "prebuilt stylesheet",
        "commits_collected_static": True,
    },
    "monorepo": {
        "config": {"directory": "backend"},
        "label": "albums",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/albums/site.css",
        "stylesheet_text": "monorepo stylesheet",
    },
    "heroku": {
        "config": {},  # app.source alone: the Procfile and the lock say the rest
        "label": "hello",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/hello/site.css",
        "stylesheet_text": "heroku stylesheet",
    },
    "wagtailsite": {
        "config": {"settingsModule": "mysite.settings.production", "wsgiModule": "mysite.wsgi"},
        "label": "uploads",
        "list_path": "/",
        "front_status": 200,
        "stylesheet": "/static/uploads/site.css",
        "stylesheet_text": "wagtailsite stylesheet",
    },
}


def build(key: str, folder: Path) -> ForeignApp:
    """App `key` in `folder`: its files copied from TREES (contents only: modes and times are the new files' own, as
    a checkout's are), and what the tests know of it."""
    tree = TREES / key
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(tree.rglob("*")):
        # Python run in the fixture itself leaves bytecode there (git ignores it); the app never had it.
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        relative = source.relative_to(tree)
        if relative.name == GITIGNORE_STORED_AS:
            relative = relative.with_name(".gitignore")
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return ForeignApp(key=key, folder=folder, **copy.deepcopy(APPS[key]))


def leave_debug_on(app: ForeignApp, on: bool = True) -> None:
    """zeroconf's production settings with DEBUG on by default, as many settings files have it."""
    path = app.folder / "zeroconf" / "settings" / "production.py"
    off, on_ = 'os.environ.get("DJANGO_DEBUG", "False")', 'os.environ.get("DJANGO_DEBUG", "True")'
    text = path.read_text()
    path.write_text(text.replace(off, on_) if on else text.replace(on_, off))


def workers_with_psycopg_wheel(folder: Path) -> ForeignApp:
    """The workers project with psycopg's wheel instead of its C build: for the modules about what runs and what
    moves, not what builds (test_foreign_workers, and the app servers', which get build tools only on demand)."""
    project = build("workers", folder)
    requirements = project.folder / "requirements.txt"
    assert PSYCOPG_C in requirements.read_text(), f"the workers project no longer asks for {PSYCOPG_C}"
    requirements.write_text(requirements.read_text().replace(PSYCOPG_C, PSYCOPG))
    return project


def workers_for_app_servers(folder: Path) -> ForeignApp:
    """The workers project as the scaled profile's app servers take it (test_scaled_workers, test_scaled_move):
    psycopg's wheel, and its configuration.py shipped with the code, reading the env contract as the one app.files
    gives it does — the scaled profile does not carry app.files (its preview refuses them)."""
    project = workers_with_psycopg_wheel(folder)
    (project.folder / WORKERS_CONFIGURATION_PATH).write_text(workers_configuration("shipped"))
    (project.folder / ".gitignore").write_text("")  # it ships with the code here
    project.config = {key: value for key, value in project.config.items() if key != "files"}
    return project
