"""A Django project in a folder of its repository (issue 33, item 1: `app.directory`, Render's root directory), and
runtime.txt's pin read as its users mean it (item 6). What the preview decides and what the release ships are
checked here; the deploy on a server is tests/guests/test_foreign_apps.py's `monorepo` project."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings
from harness.mockrun import run_program
from server.host import app_modules, app_python, build_id, plan_host
from server.release import local_release, shipped

COMMIT = "0123456789abcdef" * 2 + "01234567"
BACKEND = {
    "backend/manage.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")\n',
    "backend/shop/__init__.py": "",
    "backend/shop/settings.py": 'WSGI_APPLICATION = "shop.wsgi.application"\nDEBUG = False\n',
    "backend/shop/wsgi.py": "application = None\n",
    "backend/media/upload.png": "not code",
}
TOP = {
    "pyproject.toml": '[tool.poetry]\nname = "shop"\npackage-mode = false\n\n[tool.poetry.dependencies]\n'
    'python = "^3.12"\n',
    "poetry.lock": "# a lock\n",
    "runtime.txt": "python-3.13.1\n",
    "README.md": "# Shop\n",
    ".gitignore": "backend/media/\nnode_modules/\n",
    "frontend/package.json": "{}\n",
    "frontend/src/main.js": "// the client\n",
    "docs/index.md": "# Handbook\n",
}


def repository(folder: Path, files: dict[str, str] | None = None) -> Path:
    for name, text in (files if files is not None else {**BACKEND, **TOP}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def settings_for(source: Path | str, image: str = "debian-13", **app: str):
    return load_settings({"image": image, "app": {"source": str(source), **app}}, project="p", stack="s")


def problems(source: Path | str, **app: str) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_for(source, **app)
    return str(caught.value)


# --- the key ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["backend", "./backend/", "backend/"])
def test_the_folder_is_taken_relative_to_the_source_and_normalised(tmp_path, written):
    settings = settings_for(repository(tmp_path / "shop"), directory=written)
    assert settings.app.directory == "backend"
    assert settings.app.project_folder == tmp_path / "shop" / "backend"
    assert settings.app.name == "shop", "the app's name stays the repository's"


@pytest.mark.parametrize("written", ["/srv/shop/backend", "..", "../shop", "backend/../..", "backend/../../etc", "a b"])
def test_a_folder_outside_the_source_or_not_a_path_is_refused_at_preview_naming_the_key(tmp_path, written):
    message = problems(repository(tmp_path / "shop"), directory=written)
    assert f"app.directory = {written!r} is invalid: a folder inside the source such as backend" in message, message


def test_the_form_is_checked_for_a_git_source_too_and_the_folder_by_its_deploy(tmp_path):
    source = "https://github.com/example/shop.git"
    assert settings_for(source, ref=COMMIT, directory="src/shop/").app.directory == "src/shop"
    assert "app.directory = '../shop' is invalid" in problems(source, ref=COMMIT, directory="../shop")


@pytest.mark.parametrize("written", ["frontend", "no-such-folder"])
def test_a_folder_without_manage_py_is_refused_naming_the_folder_that_has_it(tmp_path, written):
    message = problems(repository(tmp_path / "shop"), directory=written)
    assert f"app.directory = {written!r} is invalid: a folder of app.source holding manage.py" in message, message
    assert "manage.py is in backend: pulumi config set --path app.directory backend" in message, message


def test_a_repository_without_manage_py_at_its_top_says_which_folder_to_name(tmp_path):
    message = problems(repository(tmp_path / "shop"))
    assert "app.source = " in message and "a local folder with manage.py (at its top, or in app.directory)" in message
    assert "pulumi config set --path app.directory backend" in message, message
    # A folder that has none anywhere is still just refused.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "app.directory backend" not in problems(empty)


def test_a_link_leading_out_of_the_source_is_refused(tmp_path):
    elsewhere = repository(tmp_path / "elsewhere", {"manage.py": "", "shop/settings.py": ""})
    source = repository(tmp_path / "shop", TOP)
    (source / "backend").symlink_to(elsewhere)
    assert "app.directory = 'backend' is invalid" in problems(source, directory="backend")


def test_the_modules_are_found_in_the_folder(tmp_path):
    settings = settings_for(repository(tmp_path / "shop"), directory="backend")
    found = app_modules(settings)
    assert (found.settings, found.wsgi) == ("shop.settings", "shop.wsgi")
    assert "WSGI_APPLICATION at shop/settings.py:1" in found.reasons[1], "paths inside the project's folder"


# --- the app's Python ------------------------------------------------------------------------------------------


def test_runtime_txt_pinned_to_a_patch_means_its_minor_and_the_image_python_runs_it(tmp_path):
    settings = settings_for(repository(tmp_path / "shop"), directory="backend")
    decided = app_python(settings)
    assert (decided.request, decided.spec) == ("", "==3.13.*"), "Debian 13's python3 3.13.5 is a 3.13"
    assert decided.reason == (
        "Python: the image's python3 3.13.5 meets ==3.13.* (runtime.txt: python-3.13.1, read as 3.13, any build of "
        "it); to choose another: pulumi config set --path app.python 3.X"
    )
    # Where the image has another minor: the newest 3.13 that uv offers, not the exact 3.13.1 build.
    decided = app_python(settings_for(tmp_path / "shop", image="debian-12", directory="backend"))
    assert decided.request == "3.13" and "uv" in decided.reason, decided


def test_the_project_folder_says_it_before_the_top(tmp_path):
    source = repository(tmp_path / "shop", {**BACKEND, **TOP, "backend/.python-version": "3.12\n"})
    decided = app_python(settings_for(source, directory="backend"))
    assert (decided.request, decided.source) == ("3.12", ".python-version in backend/")
    # An exact pin there, or in app.python, is still exact.
    (source / "backend" / ".python-version").write_text("3.12.7\n")
    assert app_python(settings_for(source, directory="backend")).request == "3.12.7"
    assert app_python(settings_for(source, directory="backend", python="3.12.3")).request == "3.12.3"


# --- what the release ships ------------------------------------------------------------------------------------


def test_the_archive_holds_the_folder_and_the_top_files_its_dependencies_are_declared_in(tmp_path):
    source = repository(tmp_path / "shop", {**BACKEND, **TOP, "requirements/base.txt": "django\n"})
    assert shipped(source, "backend") == [
        "backend/manage.py",
        "backend/shop/__init__.py",
        "backend/shop/settings.py",
        "backend/shop/wsgi.py",
        "poetry.lock",
        "pyproject.toml",
        "requirements/base.txt",
        "runtime.txt",
    ], "no frontend, docs or README; the top's .gitignore still leaves out backend/media/"
    assert "frontend/src/main.js" in shipped(source), "without app.directory, the whole folder as before"


def test_a_change_beside_the_project_is_no_new_release(tmp_path):
    source = repository(tmp_path / "shop")
    build = tmp_path / "build"
    first = local_release(source, "backend", build_dir=build)
    (source / "docs" / "index.md").write_text("# Handbook, second edition\n")
    (source / "frontend" / "src" / "main.js").write_text("// rewritten\n")
    assert local_release(source, "backend", build_dir=build).id == first.id
    (source / "poetry.lock").write_text("# a newer lock\n")
    assert local_release(source, "backend", build_dir=build).id != first.id
    (source / "backend" / "shop" / "views.py").write_text("")
    assert len({first.id, local_release(source, "backend", build_dir=build).id}) == 2


def test_the_same_commit_from_another_folder_is_built_anew(tmp_path):
    source = "https://github.com/example/shop.git"
    top, backend = (plan_host(settings_for(source, ref=COMMIT, directory=folder)) for folder in ("", "backend"))
    assert build_id(COMMIT[:12], top) == COMMIT[:12]
    assert build_id(COMMIT[:12], backend) != COMMIT[:12]


# --- the program ----------------------------------------------------------------------------------------------


def deploy_text(run, app: str) -> str:
    return run.named(f"{app}-deploy").sent.script


def test_the_preview_says_what_it_found_and_the_deploy_releases_the_folder(tmp_path, monkeypatch):
    import pulumi

    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda message, *args, **kwargs: said.append(message))
    run = run_program({"app": {"source": str(repository(tmp_path / "shop")), "directory": "backend"}})
    assert said[0].startswith("app: settings shop.settings (manage.py's DJANGO_SETTINGS_MODULE default"), said
    assert said[2].startswith("app: Python: the image's python3 3.13.5 meets ==3.13.* (runtime.txt: python-3.13.1"), (
        said
    )
    deploy = deploy_text(run, "shop")
    # Dependencies looked for in backend/ first, then at the top; manage.py in backend/.
    assert 'find_manifest backend/\n    [ -n "$kind" ] || find_manifest ""\n' in deploy
    assert '[ ! -f "$build"/backend/manage.py ]' in deploy
    # The folder becomes the release once its dependencies are installed, before anything else reads the code.
    order = ['install_dependencies || fail "step', 'mv -T "$build.source"/backend "$build"', "-I -S -m compileall"]
    positions = [deploy.index(text) for text in order]
    assert positions == sorted(positions), positions
