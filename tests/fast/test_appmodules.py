"""`app.source` alone (issue 33, item 4): the settings and WSGI modules found in the app's files as Django finds them
(config/appmodules.py) — at preview for a local folder, by the deploy for a git source — and, where the files do not
decide, a message naming the key to set. Then the program under Pulumi's mocks: what the preview says, what the
server receives, and that a git source's overlay serves what the deploy found."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from config.appmodules import CHOSEN_FILE, Undecided, debug_refusal, decide
from config.settings import load_settings
from harness.mockrun import run_program
from server.files import render_python_modules
from server.host import APP_MODULES, plan_host

ROOT = Path(__file__).resolve().parent.parent.parent


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return folder


def manage(settings: str) -> str:
    """manage.py as `django-admin startproject` writes it."""
    return f"""
        #!/usr/bin/env python
        import os
        import sys


        def main():
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)


        if __name__ == "__main__":
            main()
        """


def startproject(folder: Path, **extra: str) -> Path:
    return write(
        folder,
        {
            "manage.py": manage("mysite.settings"),
            "mysite/__init__.py": "",
            "mysite/settings.py": 'DEBUG = True\nWSGI_APPLICATION = "mysite.wsgi.application"\n',
            "mysite/wsgi.py": "application = None\n",
            "mysite/asgi.py": "application = None\n",
            **extra,
        },
    )


def settings_package(folder: Path, default: str, *production: str, base: str = "") -> Path:
    """A settings package base/dev(/production…), manage.py naming `default`."""
    files = {
        "manage.py": manage(default),
        "proj/__init__.py": "",
        "proj/wsgi.py": "application = None\n",
        "proj/settings/__init__.py": "",
        "proj/settings/base.py": base or 'DEBUG = True\nWSGI_APPLICATION = "proj.wsgi.application"\n',
        "proj/settings/dev.py": "from .base import *  # noqa\n",
    }
    files |= {f"proj/settings/{name}.py": "from .base import *  # noqa\nDEBUG = False\n" for name in production}
    return write(folder, files)


# --- the rules, on files ------------------------------------------------------------------------------------------


def test_startproject_manage_py_default_and_wsgi_application(tmp_path):
    found = decide(startproject(tmp_path))
    assert (found.settings, found.wsgi) == ("mysite.settings", "mysite.wsgi")
    settings_reason, wsgi_reason = found.reasons
    assert "manage.py's DJANGO_SETTINGS_MODULE default" in settings_reason
    assert settings_reason.endswith("pulumi config set --path app.settingsModule mysite.settings")
    assert "WSGI_APPLICATION at mysite/settings.py:2" in wsgi_reason
    assert wsgi_reason.endswith("pulumi config set --path app.wsgiModule mysite.wsgi")


def test_wsgi_application_is_followed_through_star_imports_and_the_last_one_wins(tmp_path):
    settings_package(tmp_path, "proj.settings.production", "production")
    write(tmp_path, {"proj/server.py": "application = None\n"})
    (tmp_path / "proj/settings/production.py").write_text(
        'from .base import *  # noqa\nWSGI_APPLICATION = "proj.server.application"\n'
    )
    found = decide(tmp_path)
    assert (found.settings, found.wsgi) == ("proj.settings.production", "proj.server")
    assert "WSGI_APPLICATION at proj/settings/production.py:2" in found.reasons[1]


def test_without_wsgi_application_the_projects_wsgi_py(tmp_path):
    startproject(tmp_path)
    (tmp_path / "mysite/settings.py").write_text("DEBUG = False\n")
    found = decide(tmp_path)
    assert found.wsgi == "mysite.wsgi" and "no WSGI_APPLICATION" in found.reasons[1]


def test_asgi_application_is_reported_with_the_line_that_serves_it(tmp_path):
    startproject(tmp_path)
    (tmp_path / "mysite/settings.py").write_text(
        'WSGI_APPLICATION = "mysite.wsgi.application"\nASGI_APPLICATION = "mysite.asgi.application"\n'
    )
    found = decide(tmp_path)
    assert found.wsgi == "mysite.wsgi"
    (note,) = [reason for reason in found.reasons if "ASGI_APPLICATION" in reason]
    assert note.endswith("pulumi config set --path app.asgiModule mysite.asgi")
    # Served as ASGI already: nothing to say.
    assert not [reason for reason in decide(tmp_path, asgi_module="mysite.asgi").reasons if "ASGI" in reason]


def test_only_asgi_and_no_wsgi_module_names_the_key(tmp_path):
    startproject(tmp_path)
    (tmp_path / "mysite/wsgi.py").unlink()
    (tmp_path / "mysite/settings.py").write_text('ASGI_APPLICATION = "mysite.asgi.application"\n')
    with pytest.raises(Undecided) as undecided:
        decide(tmp_path)
    assert undecided.value.key == "app.wsgiModule" and "pulumi config set --path app.wsgiModule" in str(undecided.value)
    # With app.asgiModule the WSGI module is not needed.
    assert decide(tmp_path, asgi_module="mysite.asgi").wsgi == ""


@pytest.mark.parametrize("production", ["production", "prod"])
def test_a_settings_package_serves_its_production_module_and_says_why(tmp_path, production):
    found = decide(settings_package(tmp_path, "proj.settings.dev", production))
    assert found.settings == f"proj.settings.{production}"
    assert "default is proj.settings.dev" in found.reasons[0] and "production module" in found.reasons[0]
    assert found.reasons[0].endswith(f"pulumi config set --path app.settingsModule proj.settings.{production}")
    # WSGI_APPLICATION from the base module the production one star-imports.
    assert found.wsgi == "proj.wsgi" and "proj/settings/base.py:2" in found.reasons[1]


def test_manage_py_naming_the_settings_package_itself_serves_its_production_module(tmp_path):
    assert decide(settings_package(tmp_path, "proj.settings", "production")).settings == "proj.settings.production"


def test_manage_py_naming_the_production_module_is_taken_as_it_is(tmp_path):
    found = decide(settings_package(tmp_path, "proj.settings.prod", "production", "prod"))
    assert found.settings == "proj.settings.prod"


def test_a_package_without_a_production_module_keeps_manage_py_s_default(tmp_path):
    assert decide(settings_package(tmp_path, "proj.settings.dev")).settings == "proj.settings.dev"


def test_a_prod_module_outside_a_settings_package_is_not_taken_for_settings(tmp_path):
    startproject(tmp_path, **{"mysite/prod.py": "PRODUCTS = []\n"})
    assert decide(tmp_path).settings == "mysite.settings"


@pytest.mark.parametrize(
    "change,key,says",
    [
        ("two production modules", "app.settingsModule", "holds two production modules"),
        ("no default", "app.settingsModule", "sets no DJANGO_SETTINGS_MODULE default"),
        ("a default the app lacks", "app.settingsModule", "is not a module of the app"),
        ("WSGI_APPLICATION elsewhere", "app.wsgiModule", "is not a module of the app"),
        ("manage.py outside the app", "app.settingsModule", "sets no DJANGO_SETTINGS_MODULE default"),
    ],
)
def test_what_the_files_do_not_decide_names_the_key(tmp_path, change, key, says):
    app = tmp_path / "app"
    settings_package(app, "proj.settings.dev", *(["production", "prod"] if change == "two production modules" else []))
    if change == "no default":
        (app / "manage.py").write_text("import sys\n")
    elif change == "a default the app lacks":
        (app / "manage.py").write_text(textwrap.dedent(manage("proj.config")))
    elif change == "WSGI_APPLICATION elsewhere":
        (app / "proj/settings/base.py").write_text('WSGI_APPLICATION = "other.wsgi.application"\n')
    elif change == "manage.py outside the app":  # a link in a git source: root never reads through it
        write(tmp_path, {"elsewhere.py": textwrap.dedent(manage("proj.settings.dev"))})
        (app / "manage.py").unlink()
        (app / "manage.py").symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(Undecided) as undecided:
        decide(app)
    assert undecided.value.key == key and says in str(undecided.value), str(undecided.value)
    assert f"pulumi config set --path {key}" in str(undecided.value)


def test_keys_given_are_taken_as_they_are(tmp_path):
    found = decide(settings_package(tmp_path, "proj.settings.dev", "production", "prod"), "a.b", "c.d")
    assert (found.settings, found.wsgi, found.reasons) == ("a.b", "c.d", ())


# --- the deploy's DEBUG message -----------------------------------------------------------------------------------


def test_debug_read_from_the_environment_names_the_app_env_line(tmp_path):
    settings_package(tmp_path, "proj.settings.dev", "production")
    (tmp_path / "proj/settings/production.py").write_text(
        'import os\nfrom .base import *  # noqa\nDEBUG = os.environ.get("DJANGO_DEBUG", "True") == "True"\n'
    )
    message = debug_refusal(tmp_path, "proj.settings.production")
    assert "DEBUG is True in the release's settings (proj.settings.production)" in message
    assert "proj/settings/production.py:3" in message
    assert "    pulumi config set --path app.env.DJANGO_DEBUG False" in message.splitlines()
    assert "pulumi config set --path app.allowDebug true" in message


def test_debug_written_in_the_code_says_where(tmp_path):
    settings_package(tmp_path, "proj.settings.dev")
    message = debug_refusal(tmp_path, "proj.settings.dev")
    assert "written in the code (proj/settings/base.py:1)" in message
    assert "pulumi config set --path app.settingsModule" in message


# --- the program, under Pulumi's mocks ----------------------------------------------------------------------------


def configure_text(run, app: str) -> str:
    return run.named(f"{app}-configure").sent.script


def deploy_text(run, app: str) -> str:
    return run.named(f"{app}-deploy").sent.script


def test_a_local_folder_alone_is_served_with_what_its_files_say_and_the_preview_says_so(tmp_path, monkeypatch):
    import pulumi

    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda message, *args, **kwargs: said.append(message))
    app = settings_package(tmp_path / "zeroconf", "proj.settings.dev", "production")
    run = run_program({"app": {"source": str(app)}})
    configure = configure_text(run, "zeroconf")
    assert '_app = importlib.import_module("proj.settings.production")' in configure
    assert '_application = importlib.import_module("proj.wsgi").application' in configure
    assert f"python3 -I -S /usr/local/lib/zeroconf/python/{APP_MODULES}.py" not in deploy_text(run, "zeroconf"), (
        "decided at preview: nothing to decide on the server"
    )
    assert "_chosen" not in configure
    assert "app: settings proj.settings.production (manage.py's DJANGO_SETTINGS_MODULE default is" in said[0]
    assert said[0].endswith("pulumi config set --path app.settingsModule proj.settings.production")
    assert said[1].endswith("pulumi config set --path app.wsgiModule proj.wsgi")


def test_an_undecided_local_folder_fails_the_preview_naming_the_key(tmp_path):
    app = settings_package(tmp_path / "zeroconf", "proj.settings.dev", "production", "prod")
    run = run_program({"app": {"source": str(app)}}, expect_error=True)
    # Among the config's problems, before anything is declared (config/checks.py, modules_found).
    assert "invalid stack configuration" in str(run.error), run.error
    assert "app.settingsModule = '' is invalid: " in str(run.error) and "two production modules" in str(run.error)
    assert run.resources == {}
    # Named, it deploys.
    run_program({"app": {"source": str(app), "settingsModule": "proj.settings.prod"}})


def test_a_git_source_alone_is_decided_by_its_deploy(tmp_path):
    run = run_program({"app": {"source": "git://127.0.0.1:1/zeroconf.git", "ref": "a" * 40}})
    configure, deploy = configure_text(run, "zeroconf"), deploy_text(run, "zeroconf")
    installed = f"/usr/local/lib/zeroconf/python/{APP_MODULES}.py"
    assert f"install_file {installed} 0644 root root" in configure
    assert (ROOT / "config/appmodules.py").read_text() in configure, "the very file the preview runs"
    detect = deploy.index(f"python3 -I -S {installed} \"$build\" '' '' ''")
    assert (
        deploy.index('ln -sfn "../../venvs/$venv_key" "$build/venv"') < detect < deploy.index("chown -R root:zeroconf")
    )
    assert detect < deploy.index("manage shell"), "decided before the release's settings are first loaded"
    # Keys given: no detection on the server.
    run = run_program(
        {
            "app": {
                "source": "git://127.0.0.1:1/zeroconf.git",
                "ref": "a" * 40,
                "settingsModule": "a.b",
                "wsgiModule": "a.c",
            }
        }
    )
    assert f"python3 -I -S {installed}" not in deploy_text(run, "zeroconf")
    assert "_chosen" not in configure_text(run, "zeroconf")


def test_on_the_server_the_deploy_s_answer_is_what_the_overlay_and_the_wrapper_import(tmp_path):
    """The server's side of a git source, run here: appmodules.py as the deploy runs it (python3 -I -S, root),
    then the rendered settings overlay and WSGI wrapper imported from the release folder, as gunicorn does."""
    settings = load_settings(
        {"app": {"source": "git://127.0.0.1:1/zeroconf.git", "ref": "a" * 40}}, project="p", stack="s"
    )
    plan = plan_host(settings)
    python_dir = tmp_path / "python"
    python_dir.mkdir()
    for name, text in render_python_modules(plan).items():
        (python_dir / name).write_text(text)
    release = settings_package(tmp_path / "release", "proj.settings.dev", "production")
    (release / "proj/wsgi.py").write_text("application = 'the app'\n")
    script = [sys.executable, "-I", "-S", str(python_dir / f"{APP_MODULES}.py"), str(release), "", "", ""]
    deployed = subprocess.run(script, capture_output=True, text=True, check=True)
    assert "settings proj.settings.production" in deployed.stdout
    assert json.loads((release / CHOSEN_FILE).read_text()) == {
        "settings": "proj.settings.production",
        "wsgi": "proj.wsgi",
    }
    env = {"PYTHONPATH": f"{python_dir}:{release}", "DJANGO_STATIC_ROOT": "/s", "DJANGO_MEDIA_ROOT": "/m"}
    probe = "import djangoship_settings as s, djangoship_wsgi as w; print(s._app.__name__, s.DEBUG, w._application)"
    served = subprocess.run([sys.executable, "-c", probe], cwd=release, env=env, capture_output=True, text=True)
    assert served.stdout.split() == ["proj.settings.production", "False", "the", "app"], served.stderr
    # Undecided on the server: the deploy fails naming the key, and writes nothing.
    (release / CHOSEN_FILE).unlink()
    (release / "proj/settings/prod.py").write_text("DEBUG = False\n")
    failed = subprocess.run(script, capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.startswith("app.settingsModule: ")
    assert not (release / CHOSEN_FILE).exists()


def test_detection_reads_as_debian_12s_python_does():
    """The server's python3 runs appmodules.py: nothing in it newer than Debian 12's 3.11."""
    import ast

    ast.parse((ROOT / "config/appmodules.py").read_text(), feature_version=(3, 11))


# --- the DEBUG gate, in what the server receives ------------------------------------------------------------------


def test_every_deploy_refuses_debug_on_unless_app_allow_debug_says_so():
    """The check step (python/prepare-release.py.j2, run as the app's user through manage.py shell) exits 5 with
    debug_refusal's message when the release's settings end with DEBUG on, before the server module is imported and
    anything goes live; the deploy names the step. app.allowDebug: true serves it and says so."""
    run = run_program({})
    deploy, configure = deploy_text(run, "photofeed"), configure_text(run, "photofeed")
    gate = deploy.index("if settings.DEBUG:")
    refusal = deploy.index("print(debug_refusal(Path.cwd(), served), file=sys.stderr)\n    sys.exit(5)")
    assert deploy.index('call_command("check"') < gate < refusal < deploy.index("import djangoship_wsgi")
    refused = "refused before it took any traffic; $(site_now)"  # what serves, from a request made then (issue 34)
    assert f"5) fail \"step 'DEBUG': the release's settings leave DEBUG on (above); {refused}" in deploy
    # The message's code is on the app's PYTHONPATH.
    assert f"install_file /usr/local/lib/photofeed/python/{APP_MODULES}.py 0644 root root" in configure
    allowed = deploy_text(run_program({"app": {"allowDebug": True}}), "photofeed")
    assert "sys.exit(5)" not in allowed
    assert 'if settings.DEBUG:\n    print("DEBUG: True, and served so (app.allowDebug is true)")' in allowed


def test_a_release_whose_found_modules_fail_to_load_names_the_key():
    """A wrong guess that Django cannot load (its settings need a variable this site lacks, say) fails the check
    step naming the key that picks other settings; named settings get the plain message."""
    found = deploy_text(run_program({}), "photofeed")
    assert (
        "does not pass Django's checks (error above); its settings (photofeed.settings) were found in the app's files, "
        "not set: pulumi config set --path app.settingsModule MODULE serves others" in found
    )
    assert "it was found in the app's files, not set: pulumi config set --path app.wsgiModule MODULE" in found
    named = deploy_text(
        run_program({"app": {"settingsModule": "photofeed.settings", "wsgiModule": "photofeed.wsgi"}}), "photofeed"
    )
    assert "Django's checks (error above)\" ;;" in named and "found in the app's files" not in named
