"""Config validation: every bad value fails before anything is declared, naming the key; defaults work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from config.envcontract import reserved_names
from config.settings import APP_KEYS, KEYS, ConfigError, load_settings
from harness.mockrun import run_program
from server.appfiles import read_configure_stdin
from server.host import app_python, plan_host
from tools import configdoc

ROOT = Path(__file__).resolve().parent.parent.parent

# (config, the key the message must name, a fragment of what is allowed)
BAD_CONFIGS = [
    ({"instanceType": "t2.mega"}, "instanceType", "one of"),
    ({"image": "windows-2022"}, "image", "ubuntu-24.04"),
    ({"amiId": "ubuntu"}, "amiId", "AMI ID"),
    ({"instanceType": "t4g.micro", "image": "ubuntu-24.04", "sshUser": "Root!"}, "sshUser", "Unix user"),
    ({"sshAllowedCidrs": ["10.0.0.1/8"]}, "sshAllowedCidrs", "no host bits"),
    ({"sshAllowedCidrs": ["10.0.0.0/255.0.0.0"]}, "sshAllowedCidrs", "CIDR form"),
    ({"sshAllowedCidrs": ["167772160"]}, "sshAllowedCidrs", "CIDR form"),
    ({"sshUser": "root"}, "sshUser", "root login is off"),
    ({"gunicornWorkers": 64, "instanceType": "t2.nano"}, "gunicornWorkers", "at most 5 on a t2.nano"),
    ({"backupSchedule": "every day"}, "backupSchedule", "OnCalendar"),
    ({"backupSchedule": "*-*-* 24:00"}, "backupSchedule", "OnCalendar"),
    ({"backupBucket": "my..bucket"}, "backupBucket", "no '..'"),
    ({"backupBucket": "192.168.5.4"}, "backupBucket", "IP address"),
    ({"backupBucket": "sthree-backups"}, "backupBucket", "sthree-"),
    ({"backupBucket": "backups-s3alias"}, "backupBucket", "-s3alias"),
    ({"sshAllowedCidrs": "not json"}, "sshAllowedCidrs", "JSON"),
    ({"sshAllowedCidrs": []}, "sshAllowedCidrs", "at least one"),
    ({"ingressPorts": [22, 80, 5432]}, "ingressPorts", "never opened"),
    ({"ingressPorts": [22, 80, 70000]}, "ingressPorts", "1 to 65535"),
    ({"ingressPorts": [80]}, "ingressPorts", "must include 22"),
    ({"ingressPorts": [22]}, "ingressPorts", "must include 80"),
    ({"domain": "not a domain"}, "domain", "DNS name"),
    ({"tlsEmail": "ops@example.com"}, "tlsEmail", "needs a domain"),
    ({"domain": "example.com", "tlsEmail": "nope"}, "tlsEmail", "e-mail"),
    ({"rootVolumeGb": 2}, "rootVolumeGb", "8 to 1024"),
    ({"rootVolumeGb": "ten"}, "rootVolumeGb", "whole number"),
    ({"gunicornWorkers": -1}, "gunicornWorkers", "0 to 64"),
    ({"adminUser": "bad user"}, "adminUser", "Django user name"),
    ({"adminEmail": "root"}, "adminEmail", "e-mail"),
    ({"sshPublicKey": "ssh-ed25519 AAAAC3Nza"}, "sshPrivateKey", "missing"),
    ({"sshPublicKey": "hello"}, "sshPublicKey", "OpenSSH public key"),
    ({"instanceTyp": "t2.micro"}, "instanceTyp", "unknown key"),
    ({"app": "[]"}, "app", "map"),
    ({"app": {"source": "no/such/folder"}}, "app.source", "manage.py"),
    ({"app": {"ref": "main"}}, "app.ref", "only meaningful with a git source"),
    ({"app": {"name": "Bad-Name"}}, "app.name", "lower case"),
    ({"app": {"name": "postgres"}}, "app.name", "system user"),
    ({"app": {"name": "nobody"}}, "app.name", "system user"),
    ({"app": {"name": "daemon"}}, "app.name", "system user"),
    ({"app": {"name": "sshd"}}, "app.name", "system user"),
    ({"app": {"name": "template1"}}, "app.name", "PostgreSQL role or database"),
    ({"app": {"name": "pg_monitor"}}, "app.name", "PostgreSQL role or database"),
    ({"app": {"wsgiModule": "my site.wsgi"}}, "app.wsgiModule", "dotted"),
    ({"app": {"settingsModule": "my-site.settings"}}, "app.settingsModule", "dotted"),
    ({"app": {"allowDebug": "sometimes"}}, "app.allowDebug", "true or false"),
    ({"app": {"requirements": "../../etc/passwd"}}, "app.requirements", "inside the app"),
    ({"app": {"envPrefix": "django"}}, "app.envPrefix", "upper case"),
    ({"app": {"env": {"DJANGO_DB_PASSWORD": "x"}}}, "app.env.DJANGO_DB_PASSWORD", "not set by the deployer"),
    ({"app": {"env": {"lower": "x"}}}, "app.env.lower", "upper-case"),
    ({"app": {"env": {"TRAILING\n": "x"}}}, "app.env.TRAILING", "upper-case"),
    ({"app": {"env": {"UID": "1000"}}}, "app.env.UID", "bash, the dynamic loader and Python"),
    ({"app": {"env": {"SHELLOPTS": "x"}}}, "app.env.SHELLOPTS", "bash, the dynamic loader and Python"),
    ({"app": {"env": {"PATH": "/tmp"}}}, "app.env.PATH", "bash, the dynamic loader and Python"),
    ({"app": {"env": {"LD_PRELOAD": "/tmp/x.so"}}}, "app.env.LD_PRELOAD", "bash, the dynamic loader and Python"),
    ({"app": {"env": {"GREETING": "it's"}}}, "app.env.GREETING", "without quotes"),
    ({"app": {"srouce": "x"}}, "app.srouce", "unknown key"),
    ({"app": {"healthPath": "healthz"}}, "app.healthPath", "URL path"),
    ({"app": {"python": "2.7"}}, "app.python", "Python version"),
    ({"app": {"python": "3.7"}}, "app.python", "none fits"),
    ({"app": {"packages": ["libldap2-dev; rm -rf /"]}}, "app.packages", "package name"),
    ({"app": {"packages": {"libpq-dev": 1}}}, "app.packages", "list"),
    ({"app": {"releaseCommands": ["compress && curl evil"]}}, "app.releaseCommands", "manage.py command"),
    ({"app": {"releaseCommands": ["'quoted'"]}}, "app.releaseCommands", "manage.py command"),
    ({"app": {"env": {"PYTHONPATH": "/tmp"}}}, "app.env.PYTHONPATH", "not set by the deployer"),
]


@pytest.mark.parametrize("config,key,allowed", BAD_CONFIGS, ids=[case[1] + ":" + case[2] for case in BAD_CONFIGS])
def test_bad_config_is_rejected_before_any_resource(config, key, allowed):
    run = run_program(config, expect_error=True)
    message = str(run.error)
    assert re.search(rf"(^|\s|-\s){re.escape(key)}\b", message), message
    assert allowed in message, message
    assert run.resources == {}, "nothing may be declared when the config is invalid"


def _app_folder(tmp_path: Path, **files: str) -> str:
    """A startproject-shaped folder (its modules found at preview), with `files` beside manage.py."""
    (tmp_path / "manage.py").write_text('import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "site.settings")\n')
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "settings.py").write_text('WSGI_APPLICATION = "site.wsgi.application"\n')
    (tmp_path / "site" / "wsgi.py").write_text("application = None\n")
    for name, text in files.items():
        (tmp_path / name.replace("__", ".").replace("_dot_", ".")).write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize(
    "image,files,request_,source",
    [
        # The image's own Python fits: nothing to install.
        ("debian-13", {"pyproject_dot_toml": '[project]\nrequires-python = ">=3.12"\n'}, "", "requires-python"),
        # A fresh cookiecutter-django project (2026-03 on) pins 3.14, which no offered image has: uv installs it.
        ("debian-13", {"pyproject_dot_toml": '[project]\nrequires-python = "==3.14.*"\n'}, "3.14", "requires-python"),
        ("ubuntu-24.04", {"_dot_python-version": "3.13\n"}, "3.13", ".python-version"),
        # runtime.txt's patch is not a pin: its users mean the minor (Heroku installs the newest patch of it).
        ("debian-12", {"runtime_dot_txt": "python-3.12.4\n"}, "3.12", "runtime.txt: python-3.12.4, read as 3.12,"),
        ("debian-12", {}, "", "none stated"),
        # Poetry's own constraint (no [project] table): ^ and ~ read as poetry reads them.
        (
            "debian-12",
            {"pyproject_dot_toml": '[tool.poetry.dependencies]\npython = "~3.13"\ndjango = "^5.2"\n'},
            "3.13",
            "tool.poetry.dependencies.python in pyproject.toml: ~3.13, read as >=3.13,<3.14",
        ),
        ("debian-13", {"pyproject_dot_toml": '[tool.poetry.dependencies]\npython = "^3.10"\n'}, "", "poetry"),
        # A pipenv project's Pipfile: python_version a minor, python_full_version an exact build.
        ("debian-12", {"Pipfile": '[requires]\npython_version = "3.12"\n'}, "3.12", "[requires] python_version"),
        (
            "debian-13",
            {"Pipfile": '[requires]\npython_full_version = "3.12.7"\n'},
            "3.12.7",
            "[requires] python_full_version in Pipfile",
        ),
    ],
)
def test_app_python_is_decided_at_preview(tmp_path, image, files, request_, source):
    settings = load_settings(
        {"image": image, "app": {"source": _app_folder(tmp_path, **files)}}, project="p", stack="s"
    )
    decided = app_python(settings)
    assert decided.request == request_
    assert source in decided.source


def test_a_poetry_union_of_pythons_fails_the_preview_naming_it(tmp_path):
    folder = _app_folder(tmp_path, pyproject_dot_toml='[tool.poetry.dependencies]\npython = "^3.9 || ^3.10"\n')
    with pytest.raises(ConfigError, match=r"cannot read the version requirement '\^3.9 \|\| \^3.10' \(a union"):
        load_settings({"app": {"source": folder}}, project="p", stack="s")


def test_app_python_nothing_can_provide_is_an_error_at_preview(tmp_path):
    folder = _app_folder(tmp_path, pyproject_dot_toml='[project]\nrequires-python = ">=3.99"\n')
    with pytest.raises(
        ConfigError, match=r"app.source .*needs Python >=3.99 \(requires-python in pyproject.toml\).*none fits"
    ):
        load_settings({"image": "debian-13", "app": {"source": folder}}, project="p", stack="s")


def test_app_build_keys_are_read(tmp_path):
    settings = load_settings(
        {
            "app": {
                "healthPath": "/health/",
                "python": "3.14",
                "packages": ["libpq-dev", "gcc", "libpq-dev"],
                "releaseCommands": ["compress", "compilemessages  --ignore=venv"],
            }
        },
        project="p",
        stack="s",
    )
    plan = plan_host(settings)
    assert (plan.app.health_path, plan.app.python_request) == ("/health/", "3.14")
    assert app_python(settings).source == "app.python"
    assert plan.app.packages == ("gcc", "libpq-dev")
    assert plan.app.release_commands == (("compress",), ("compilemessages", "--ignore=venv"))


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load_settings({"instanceType": "x", "domain": "y y", "adminEmail": "z"}, project="p", stack="s")
    assert len(caught.value.problems) == 3


def test_secret_env_values_are_never_echoed():
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"app": {"env": {"API_TOKEN": "tok'en-123"}}}, project="p", stack="s", secret_keys=frozenset({"app"})
        )
    assert "tok'en-123" not in str(caught.value)


def test_private_key_must_be_a_secret():
    with pytest.raises(ConfigError, match="sshPrivateKey must be set with --secret"):
        load_settings({"sshPublicKey": "ssh-ed25519 AAAAC3Nza k", "sshPrivateKey": "x"}, project="p", stack="s")


def test_defaults_give_a_working_site():
    settings = load_settings({}, project="djangoship", stack="dev")
    assert settings.instance_type == "t2.micro" and settings.image == "debian-13"
    assert settings.ssh_user == "admin" and settings.generate_key
    assert settings.open_ports == [22, 80, 8000]
    assert settings.app.name == "photofeed" and Path(settings.app.source, "manage.py").is_file()
    assert settings.app.env_prefix == "DJANGO_" and settings.gunicorn_workers == 0


def test_values_from_the_cli_arrive_as_text():
    settings = load_settings(
        {"ingressPorts": "[22, 80]", "rootVolumeGb": "12", "app": '{"envPrefix": "PLATZI_"}'}, project="p", stack="s"
    )
    assert settings.ingress_ports == [22, 80] and settings.root_volume_gb == 12
    assert settings.app.env_prefix == "PLATZI_"


# --- secrets: a problem never shows a value that may be one (issue 16, item 1) -------------------------------

KEY_MATERIAL = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"  # what a private key's text looks like
BROKEN_APP = '{"env": {"TOKEN": "' + KEY_MATERIAL + '"}'  # a brace short


@pytest.mark.parametrize(
    ("config", "secret_keys", "key"),
    [
        pytest.param({"sshPrivatekey": KEY_MATERIAL}, {"sshPrivatekey"}, "sshPrivatekey", id="misspelt-secret-key"),
        pytest.param({"sshPrivatekey": KEY_MATERIAL}, set(), "sshPrivatekey", id="unknown-key"),
        pytest.param({"app": {"envv": {"TOKEN": KEY_MATERIAL}}}, {"app"}, "app.envv", id="secret-app-unknown-key"),
        pytest.param({"app": {"envv": {"TOKEN": KEY_MATERIAL}}}, set(), "app.envv", id="app-unknown-key"),
        pytest.param({"app": BROKEN_APP}, {"app"}, "app", id="secret-malformed-json"),
        pytest.param({"app": BROKEN_APP}, set(), "app", id="malformed-json"),
        pytest.param({"sshAllowedCidrs": KEY_MATERIAL}, set(), "sshAllowedCidrs", id="malformed-json-list"),
        pytest.param({"app": {"name": KEY_MATERIAL}}, {"app"}, "app.name", id="secret-app-bad-value"),
        pytest.param({"domain": KEY_MATERIAL}, {"domain"}, "domain", id="secret-bad-value"),
        pytest.param({"sshPrivateKey": 42}, {"sshPrivateKey"}, "sshPrivateKey", id="secret-wrong-type"),
        # app.files' contents are secrets whether set with --secret or not (issue 33, item 2).
        pytest.param({"app": {"files": [KEY_MATERIAL]}}, set(), "app.files", id="files-not-a-map"),
        pytest.param({"app": {"files": {"../x.py": KEY_MATERIAL}}}, set(), "app.files", id="files-parent-path"),
        pytest.param({"app": {"files": {"/etc/x.py": KEY_MATERIAL}}}, set(), "app.files", id="files-absolute-path"),
        pytest.param({"app": {"files": {"a/./x.py": KEY_MATERIAL}}}, set(), "app.files", id="files-dot-path"),
        pytest.param({"app": {"files": {"venv/x.py": KEY_MATERIAL}}}, set(), "app.files", id="files-deployer-own"),
        pytest.param({"app": {"files": {".djangoship-static/x": KEY_MATERIAL}}}, set(), "app.files", id="files-static"),
        pytest.param({"app": {"files": {"x.py": 42}}}, set(), "app.files", id="files-not-a-string"),
        pytest.param({"app": {"files": {"x.py": KEY_MATERIAL * 3000}}}, set(), "app.files", id="files-too-big"),
        pytest.param(
            {"profile": "scaled", "app": {"files": {"x.py": KEY_MATERIAL}}}, set(), "app.files", id="files-scaled"
        ),
    ],
)
def test_problems_never_show_a_secret_an_unknown_key_or_malformed_json(config, secret_keys, key):
    with pytest.raises(ConfigError) as caught:
        load_settings(config, project="p", stack="s", secret_keys=frozenset(secret_keys))
    message = str(caught.value)
    assert KEY_MATERIAL.lower() not in message.lower() and "42" not in message, message
    assert re.search(rf"(^|\s){re.escape(key)}\b", message), message


def test_app_files_name_the_path_and_why_and_are_kept_verbatim():
    with pytest.raises(ConfigError) as caught:
        load_settings({"app": {"files": {"../x.py": "a", "venv/y": "b"}}}, project="p", stack="s")
    assert [problem.split(" (value")[0] for problem in caught.value.problems] == [
        'app.files["../x.py"]',
        'app.files["venv/y"]',
    ]
    assert "a relative path inside the project folder" in caught.value.problems[0]
    with pytest.raises(ConfigError, match="app.files is not carried by profile scaled: .* SSM SecureString"):
        load_settings({"profile": "scaled", "app": {"files": {"x.py": "a"}}}, project="p", stack="s")
    files = {"netbox/configuration.py": "SECRET_KEY = 'x'\n\n", "conf/.env": " A=1"}
    assert load_settings({"app": {"files": files}}, project="p", stack="s").app.files == files


def test_a_misspelt_secret_key_fails_the_preview_without_its_value():
    run = run_program({"sshPrivatekey": KEY_MATERIAL}, secret_keys=("sshPrivatekey",), expect_error=True)
    assert "sshPrivatekey" in str(run.error) and KEY_MATERIAL not in str(run.error)


# --- the table is the one home of a key: Pulumi.yaml and docs/configuration.md are generated from it ----------


def test_pulumi_yaml_is_generated_from_the_table():
    text = (ROOT / "Pulumi.yaml").read_text()
    assert text == configdoc.render(text), "Pulumi.yaml differs from the table: run .venv/bin/python -m tools.configdoc"
    declared = yaml.safe_load(text)["config"]
    assert list(declared) == [row.name for row in KEYS if row.name != "app"]
    for row in KEYS:
        if row.name in declared:
            assert declared[row.name]["default"] == row.default, row.name


def test_configuration_doc_is_generated_from_the_table():
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert text == configdoc.render_doc(text), (
        "docs/configuration.md differs from the table: run .venv/bin/python -m tools.configdoc"
    )


def doc_tables() -> list[list[tuple[str, str, str]]]:
    """docs/configuration.md's key tables: (key, default, meaning) for each row."""
    tables: list[list[tuple[str, str, str]]] = []
    current: list[tuple[str, str, str]] | None = None
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        if line == "| key | default | meaning |":
            current = []
            tables.append(current)
        elif current is not None and not line.startswith("|---"):
            row = re.fullmatch(r"\| `([^`]+)` \| `(.*?)` \| (.*) \|", line)
            if row is None:
                current = None
            else:
                current.append((row[1], row[2], row[3]))
    return tables


def as_in_doc(value: object) -> str:
    return value if isinstance(value, str) and value else json.dumps(value)


@pytest.mark.parametrize(("index", "table", "prefix"), [(0, KEYS, ""), (1, APP_KEYS, "app.")], ids=["keys", "app"])
def test_the_doc_has_each_keys_row_in_order_with_its_default_profile_and_secrecy(index, table, prefix):
    documented = doc_tables()[index]
    assert [name for name, _, _ in documented] == [prefix + row.name for row in table]
    for (name, default, meaning), row in zip(documented, table, strict=True):
        assert default == as_in_doc(row.default), f"{name}: docs/configuration.md says {default}"
        marked = meaning.split(":", 1)[0] if meaning.startswith(("single:", "scaled:")) else "both"
        assert marked == row.profile, f"{name}: read by {row.profile!r}, docs/configuration.md says {marked!r}"
        assert ("--secret" in meaning) == (row.secret != "no"), f"{name}: secret is {row.secret!r}"
        assert ("--secret" in row.doc) == (row.secret != "no"), f"{name}: its doc, and so Pulumi.yaml"


# --- the env contract (config/envcontract.py): one list of names, refused in app.env at validation ---------


@pytest.mark.parametrize("profile", ["single", "scaled"])
def test_app_env_may_not_take_a_name_the_deployer_writes(profile):
    for prefix in ("DJANGO_", "PLATZI_"):
        names = reserved_names(prefix, profile)
        app = {"envPrefix": prefix, "env": dict.fromkeys(names, "x")}
        with pytest.raises(ConfigError) as caught:
            load_settings({"profile": profile, "app": app}, project="p", stack="s")
        named = {problem.split()[0] for problem in caught.value.problems}
        assert named == {f"app.env.{name}" for name in names}, caught.value.problems


def env_names(text: str) -> set[str]:
    return {line.split("=", 1)[0] for line in text.splitlines()}


def test_reserved_names_are_exactly_what_the_deployer_writes():
    single, _ = read_configure_stdin(run_program({}).named("photofeed-configure").sent.rest)
    assert env_names(single) == reserved_names("DJANGO_", "single")
    scaled = run_program({"profile": "scaled"}).named("photofeed-env").inputs["value"]
    assert env_names(scaled) == reserved_names("DJANGO_", "scaled")


def test_a_scaled_only_name_is_the_apps_own_on_one_server():
    # The example app reads DJANGO_MEDIA_BUCKET to store uploads in S3: on one server that is the app's choice.
    settings = load_settings({"app": {"env": {"DJANGO_MEDIA_BUCKET": "my-media"}}}, project="p", stack="s")
    assert settings.app.env == {"DJANGO_MEDIA_BUCKET": "my-media"}


def test_the_environment_contract_lists_every_variable_the_deployer_writes():
    deploying = (ROOT / "docs" / "deploying.md").read_text()
    section = deploying.split("## The environment contract", 1)[1].split("\n## ", 1)[0]
    for name in sorted(reserved_names("", "scaled")):
        assert f"`{name}`" in section, f"docs/deploying.md's environment contract does not list {name}"
