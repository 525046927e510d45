"""Config validation: every bad value fails before anything is declared, naming the key; defaults work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from components.envcontract import reserved_names
from components.settings import APP_DEFAULTS, DEFAULTS, ConfigError, load_settings
from tools.mockrun import run_program

ROOT = Path(__file__).resolve().parent.parent

# (config, the key the message must name, a fragment of what is allowed)
BAD_CONFIGS = [
    ({"instanceType": "t2.mega"}, "instanceType", "one of"),
    ({"image": "windows-2022"}, "image", "ubuntu-24.04"),
    ({"amiId": "ubuntu"}, "amiId", "AMI ID"),
    ({"instanceType": "t4g.micro", "image": "ubuntu-24.04", "sshUser": "Root!"}, "sshUser", "Unix user"),
    ({"sshAllowedCidrs": ["10.0.0.1/8"]}, "sshAllowedCidrs", "no host bits"),
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
    ({"app": {"wsgiModule": "my site.wsgi"}}, "app.wsgiModule", "dotted"),
    ({"app": {"settingsModule": ""}}, "app.settingsModule", "dotted"),
    ({"app": {"requirements": "../../etc/passwd"}}, "app.requirements", "inside the app"),
    ({"app": {"envPrefix": "django"}}, "app.envPrefix", "upper case"),
    ({"app": {"env": {"DJANGO_DB_PASSWORD": "x"}}}, "app.env.DJANGO_DB_PASSWORD", "not set by the deployer"),
    ({"app": {"env": {"lower": "x"}}}, "app.env.lower", "upper-case"),
    ({"app": {"env": {"GREETING": "it's"}}}, "app.env.GREETING", "without quotes"),
    ({"app": {"srouce": "x"}}, "app.srouce", "unknown key"),
]


@pytest.mark.parametrize("config,key,allowed", BAD_CONFIGS, ids=[case[1] + ":" + case[2] for case in BAD_CONFIGS])
def test_bad_config_is_rejected_before_any_resource(config, key, allowed):
    run = run_program(config, expect_error=True)
    message = str(run.error)
    assert re.search(rf"(^|\s|-\s){re.escape(key)}\b", message), message
    assert allowed in message, message
    assert run.resources == {}, "nothing may be declared when the config is invalid"


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
    assert settings.instance_type == "t2.micro" and settings.image == "ubuntu-24.04"
    assert settings.ssh_user == "ubuntu" and settings.generate_key
    assert settings.open_ports == [22, 80, 8000]
    assert settings.app.name == "photofeed" and Path(settings.app.source, "manage.py").is_file()
    assert settings.app.env_prefix == "DJANGO_" and settings.gunicorn_workers == 0


def test_values_from_the_cli_arrive_as_text():
    settings = load_settings(
        {"ingressPorts": "[22, 80]", "rootVolumeGb": "12", "app": '{"envPrefix": "PLATZI_"}'}, project="p", stack="s"
    )
    assert settings.ingress_ports == [22, 80] and settings.root_volume_gb == 12
    assert settings.app.env_prefix == "PLATZI_"


def test_pulumi_yaml_declares_every_key_with_the_same_default():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    declared = project["config"]
    assert set(declared) == set(DEFAULTS) - {"app"}, "every scalar/array key is declared in Pulumi.yaml"
    for key, spec in declared.items():
        assert spec["default"] == DEFAULTS[key], key
        assert spec.get("description"), key


def test_readme_documents_every_key_with_its_default():
    readme = (ROOT / "README.md").read_text()
    for key in DEFAULTS:
        assert f"`{key}`" in readme, f"README does not document {key}"
    for key in APP_DEFAULTS:
        assert f"`app.{key}`" in readme, f"README does not document app.{key}"


# --- the env contract (components/envcontract.py): one list of names, refused in app.env at validation ---------


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
    single = run_program({}).named("photofeed-configure").inputs["stdin"]
    assert env_names(single) == reserved_names("DJANGO_", "single")
    scaled = run_program({"profile": "scaled"}).named("photofeed-env").inputs["value"]
    assert env_names(scaled) == reserved_names("DJANGO_", "scaled")


def test_a_scaled_only_name_is_the_apps_own_on_one_server():
    # The example app reads DJANGO_MEDIA_BUCKET to store uploads in S3: on one server that is the app's choice.
    settings = load_settings({"app": {"env": {"DJANGO_MEDIA_BUCKET": "my-media"}}}, project="p", stack="s")
    assert settings.app.env == {"DJANGO_MEDIA_BUCKET": "my-media"}
