"""Where a release's static files come from (server/shippedstatic.py, issue 33 item 5): the rules on real folders
shaped as the deploy's check meets them, and the check step that uses them as the server receives it.

On a guest: tests/guests/test_foreign_apps.py's `prebuilt` project (its committed collectstatic output served, with and
without DJANGOSHIP_KEEP=static)."""

from __future__ import annotations

import ast
import json
import stat
from pathlib import Path

from config.settings import load_settings
from harness.mockrun import run_program
from server.files import render_python_modules
from server.host import SHIPPED_STATIC, plan_host
from server.shippedstatic import plan_static

MANIFEST = "staticfiles.json"  # ManifestStaticFilesStorage's, and WhiteNoise's


def release_with_collected_output(tmp_path: Path) -> Path:
    """A release as the deploy unpacks it (code readable by the app's group only) that ships `static/`, the output of
    its developers' collectstatic: hashed names, the manifest, the admin's files; its sources (assets/dist) are
    gitignored, so not in it."""
    release = tmp_path / "releases" / "abc"
    files = {
        "static/css/site.css": "h1 { background: url('../img/mark.svg'); }\n",
        "static/css/site.0123456789ab.css": "h1 { background: url('../img/mark.ba9876543210.svg'); }\n",
        "static/img/mark.svg": "<svg/>\n",
        "static/img/mark.ba9876543210.svg": "<svg/>\n",
        "static/admin/css/base.fedcba987654.css": "body {}\n",
        f"static/{MANIFEST}": json.dumps({"paths": {"css/site.css": "css/site.0123456789ab.css"}, "version": "1.1"}),
        "atelier/settings.py": "STATIC_ROOT = BASE_DIR / 'static'\n",
    }
    for name, text in files.items():
        path = release / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o640)
    for folder in [release, *(path for path in release.rglob("*") if path.is_dir())]:
        folder.chmod(0o750)
    return release


def plan(release: Path, served: Path, **overrides):
    args = {
        "release": release,
        "served": served,
        "static_root": served,  # the overlay's: the release's static folder
        "app_static_root": release / "static",
        "sources": [release / "assets" / "dist"],
        "manifest_name": MANIFEST,
        "kept": False,
    }
    return plan_static(**(args | overrides))


def test_a_release_that_ships_its_collected_files_serves_them_as_they_are(tmp_path: Path) -> None:
    """Not collected again (collectstatic would write a manifest of only what it finds: the admin's files), but copied
    byte for byte into the release's static folder, where the storage reads its manifest and nginx serves them:
    readable by all, whatever the release's own modes."""
    release, served = release_with_collected_output(tmp_path), tmp_path / "static" / "abc"
    served.mkdir(parents=True)
    (release / "static" / "img" / "elsewhere.svg").symlink_to("/etc/hostname")  # `collectstatic --link`'s kind
    static = plan(release, served)
    assert not static.collect and not static.refusal
    assert static.says == (
        "static: the release ships its collected files (static/: 6 files, manifest staticfiles.json): served as they "
        "are, not collected again (collectstatic would write a manifest of only the files it finds)"
    )
    assert static.prepare() == 6
    shipped = sorted(path.relative_to(release / "static") for path in (release / "static").rglob("*") if path.is_file())
    copied = sorted(path.relative_to(served) for path in served.rglob("*") if path.is_file())
    assert copied == [name for name in shipped if name.name != "elsewhere.svg"]
    for name in copied:
        assert (served / name).read_bytes() == (release / "static" / name).read_bytes()
        assert stat.S_IMODE((served / name).stat().st_mode) == 0o644, name
    assert {stat.S_IMODE(path.stat().st_mode) for path in served.rglob("*") if path.is_dir()} == {0o755}


def test_collectstatic_runs_where_the_release_ships_no_collected_output(tmp_path: Path) -> None:
    """The usual shapes are collected as before: STATIC_ROOT not in the release (the tutorials' gitignored
    staticfiles/), a storage that keeps no manifest, a STATIC_ROOT that is (or holds) a folder of sources."""
    release, served = release_with_collected_output(tmp_path), tmp_path / "static" / "abc"
    collected = f"static: collectstatic into {served} (the release's static folder, served by nginx)"
    shapes = {
        "not shipped": {"app_static_root": release / "staticfiles"},
        "not set": {"app_static_root": None},
        "no manifest storage": {"manifest_name": None},
        "a folder of sources": {"sources": [release / "static"]},
        "holding a folder of sources": {"sources": [("vendor", str(release / "static" / "css"))]},
    }
    for shape, overrides in shapes.items():
        static = plan(release, served, **overrides)
        assert (static.collect, static.shipped, static.says) == (True, None, collected), shape
    (release / "static" / MANIFEST).unlink()
    assert plan(release, served).collect, "a manifest storage's output without its manifest is not taken"


def test_djangoship_keep_static_leaves_static_root_to_the_app(tmp_path: Path) -> None:
    """Kept: collectstatic writes where the app's settings say, never into the release (read-only on the server); a
    STATIC_ROOT inside it must already hold the files, which are served as they are (nginx's folder gets a copy)."""
    release, served = release_with_collected_output(tmp_path), tmp_path / "static" / "abc"
    served.mkdir(parents=True)
    own = release / "static"
    static = plan(release, served, static_root=own, kept=True)
    assert not static.collect and static.shipped == own.resolve() and not static.refusal
    assert static.says.startswith("static: STATIC_ROOT static/ is the app's (DJANGOSHIP_KEEP=static) and the release")
    assert static.prepare() == 6 and (served / "css" / "site.0123456789ab.css").is_file()
    # Even without a manifest: the app said its static files are its own.
    assert not plan(release, served, static_root=own, kept=True, manifest_name=None).collect

    outside = plan(release, served, static_root="/var/www/atelier", app_static_root="/var/www/atelier", kept=True)
    assert outside.collect and outside.shipped is None and not outside.refusal
    assert outside.says == (
        "static: collectstatic with the app's own settings (DJANGOSHIP_KEEP=static): STATIC_ROOT /var/www/atelier"
    )

    empty = release / "staticfiles"
    refused = plan(release, served, static_root=empty, app_static_root=empty, kept=True)
    assert not refused.collect and refused.shipped is None
    assert refused.refusal.startswith(
        "DJANGOSHIP_KEEP=static keeps the app's STATIC_ROOT (staticfiles/ in the release), but the release is "
        "read-only on the server and the repository ships no files there."
    )
    assert "remove static from app.env.DJANGOSHIP_KEEP" in refused.refusal


def test_the_check_step_decides_with_it_before_collectstatic():
    """As the server receives it: the module is installed beside the overlay, runs on the app's Python (3.9 at the
    oldest), and the deploy's check (python/prepare-release.py.j2) asks it before collectstatic, which runs only when
    it says so; a refusal or a failure is the step's exit 4, named with its line."""
    modules = render_python_modules(plan_host(load_settings({}, project="djangoship", stack="dev")))
    ast.parse(modules[f"{SHIPPED_STATIC}.py"], feature_version=(3, 9))
    deploy = run_program({}).named("photofeed-deploy").sent.script
    decided = deploy.index(f"from {SHIPPED_STATIC} import plan_static")
    served = deploy.index('served=os.environ["DJANGO_STATIC_ROOT"],')
    assert deploy.index("import djangoship_wsgi") < decided < served < deploy.index("print(static.says)")
    guarded = deploy.index('    static.prepare()\n    if static.collect:\n        call_command("collectstatic"')
    assert deploy.index("print(static.refusal, file=sys.stderr)\n        sys.exit(4)") < guarded
    assert "4) fail \"step 'collectstatic' failed (error above); $(grep -m 1 '^static: '" in deploy
