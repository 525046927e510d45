"""The policy pack (policy/) against what the real program declares under Pulumi's mocks.

Each policy's `validate` is called the way the analyzer calls it: on a resource's inputs as the engine sends them
(through a protobuf Struct, so numbers are floats, and wrapped in the SDK's unknown-checking proxy). Every policy
passes on the program as it is, and fails, with its message, on a mutated resource.
"""

from __future__ import annotations

import base64
import gzip
import runpy
from typing import Any

import pulumi_policy
import pytest
import yaml
from policy_helpers import (
    INSTANCE,
    POLICY,
    PRIVATE_KEY,
    ROOT,
    SG,
    all_violations,
    mutated,
    pack,
    synthetic,
    violations,
)

from catalog import offerings
from config.settings import APP_KEYS, KEYS
from harness.mockrun import ProgramRun, run_program
from server import release
from server.host import encode_user_data


@pytest.fixture(scope="module")
def default_run() -> ProgramRun:
    return run_program({})


@pytest.fixture(scope="module")
def prod_run() -> ProgramRun:
    return run_program({}, stack="prod")


# --- the pack itself ----------------------------------------------------------------------------------------------


def test_pack_serves_every_policy_mandatory(monkeypatch):
    """Run policy/__main__.py with PolicyPack recorded instead of served (the real one blocks on a gRPC server)."""
    created: dict[str, Any] = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: created.update(kwargs))
    runpy.run_path(str(ROOT / "policy"), run_name="__main__")
    assert created["name"] == "djangoship"
    assert created["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
    assert [policy.name for policy in created["policies"]] == [*POLICY, *(p.name for p in pack.STACK_POLICIES)]
    every = [*pack.POLICIES, *pack.STACK_POLICIES]
    assert all(policy.enforcement_level == pulumi_policy.EnforcementLevel.MANDATORY for policy in every)
    assert (len(POLICY), len(pack.STACK_POLICIES)) == (7, 1)


def test_pack_is_a_python_pack_in_the_project_venv():
    manifest = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    assert manifest["runtime"]["options"]["virtualenv"] == "../.venv"
    requirements = (ROOT / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy>=1.13,<2" in requirements


def test_duplicated_lists_match_the_catalog():
    assert sorted(pack.DEFAULT_INSTANCE_TYPES) == sorted(offerings.INSTANCE_TYPES)
    assert sorted(pack.DATABASE_PORTS) == sorted(offerings.DATABASE_PORTS)
    schema = POLICY["allowed-instance-types"].config_schema
    assert schema is not None and schema.properties["allowedTypes"]["default"] == list(pack.DEFAULT_INSTANCE_TYPES)


def test_stack_name_comes_from_the_urn(prod_run):
    assert pack.stack_of(prod_run.one(INSTANCE).urn) == "prod"
    assert pack.stack_of("urn:pulumi:prod-eu::djangoship::aws:ec2/instance:Instance::web") == "prod-eu"


# --- the program as it is -----------------------------------------------------------------------------------------


def test_default_program_passes_every_policy(default_run):
    # Not vacuous: the resources the policies are about are there.
    assert default_run.of_type(SG) and default_run.of_type(INSTANCE) and default_run.of_type(pack.EBS_VOLUME)
    assert all_violations(default_run) == {name: [] for name in POLICY}


def test_debian_https_program_passes_every_policy():
    run = run_program(
        {
            "image": "debian-12",
            "instanceType": "t4g.small",
            "domain": "shop.example.com",
            "tlsEmail": "ops@example.com",
            "sshAllowedCidrs": ["198.51.100.0/24"],
        },
        stack="production",
    )
    assert all_violations(run) == {name: [] for name in POLICY}


# --- no database ingress ------------------------------------------------------------------------------------------


def test_database_port_in_the_security_group_is_refused(default_run):
    group = default_run.one(SG)
    rule = {"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["10.0.0.0/8"]}
    found = violations("no-database-ingress", mutated(group, ingress=[*group.inputs["ingress"], rule]))
    assert found == [
        "photofeed-sg: ingress ports 5432 from 10.0.0.0/8 opens database port(s) 5432; the database "
        "listens on localhost only and is never reachable from outside"
    ]


@pytest.mark.parametrize(
    ("rule", "ports"),
    [
        ({"protocol": "tcp", "fromPort": 5000, "toPort": 6500, "cidrBlocks": ["0.0.0.0/0"]}, "5432, 6379, 6432"),
        ({"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}, "1433, 1521, 3306, 5432"),
        ({"protocol": "6", "fromPort": 27017, "toPort": 27017, "cidrBlocks": ["0.0.0.0/0"]}, "27017"),
    ],
)
def test_ranges_and_all_protocols_covering_a_database_port_are_refused(default_run, rule, ports):
    group = default_run.one(SG)
    found = violations("no-database-ingress", mutated(group, ingress=[rule]))
    assert len(found) == 1 and f"opens database port(s) {ports}" in found[0]


def test_icmp_and_egress_are_not_ingress_on_a_port(default_run):
    icmp = {"protocol": "icmp", "fromPort": 3, "toPort": 4, "cidrBlocks": ["0.0.0.0/0"]}
    assert violations("no-database-ingress", mutated(default_run.one(SG), ingress=[icmp])) == []
    egress = synthetic(
        pack.SECURITY_GROUP_RULE,
        "out",
        {"type": "egress", "protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["0.0.0.0/0"]},
    )
    assert violations("no-database-ingress", egress) == []


def test_separate_rule_resources_are_checked_too():
    rule = synthetic(
        pack.SECURITY_GROUP_RULE,
        "mysql",
        {"type": "ingress", "protocol": "tcp", "fromPort": 3306, "toPort": 3306, "cidrBlocks": ["203.0.113.0/24"]},
    )
    assert "opens database port(s) 3306" in violations("no-database-ingress", rule)[0]
    vpc_rule = synthetic(
        pack.INGRESS_RULE,
        "redis",
        {"ipProtocol": "tcp", "fromPort": 6379, "toPort": 6379, "cidrIpv6": "::/0", "securityGroupId": "sg-1"},
    )
    assert violations("no-database-ingress", vpc_rule) == [
        "redis: ingress ports 6379 from ::/0 opens database port(s) 6379; the database listens on localhost only "
        "and is never reachable from outside"
    ]


def test_database_port_from_another_security_group_only_is_allowed():
    """A managed database reached from the app servers' group opens no network; adding any address range does."""
    from_app = {"ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "referencedSecurityGroupId": "sg-app"}
    assert violations("no-database-ingress", synthetic(pack.INGRESS_RULE, "db-from-app", from_app)) == []
    inline = {"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "securityGroups": ["sg-app"]}
    assert violations("no-database-ingress", synthetic(SG, "db", {"ingress": [inline]})) == []
    mixed = {**inline, "cidrBlocks": ["10.0.0.0/16"]}
    assert (
        "from 10.0.0.0/16 opens database port(s) 5432"
        in violations("no-database-ingress", synthetic(SG, "db", {"ingress": [mixed]}))[0]
    )
    prefix_list = {**inline, "prefixListIds": ["pl-0123456789abcdef0"]}
    assert violations("no-database-ingress", synthetic(SG, "db", {"ingress": [prefix_list]}))


# --- SSH on production --------------------------------------------------------------------------------------------


def test_world_ssh_fails_on_prod_only(default_run, prod_run):
    # The default sshAllowedCidrs is 0.0.0.0/0: fine for a dev stack, refused on prod.
    assert violations("no-world-ssh-in-production", default_run.one(SG)) == []
    assert violations("no-world-ssh-in-production", prod_run.one(SG)) == [
        "photofeed-sg: SSH (port 22) is open to 0.0.0.0/0 on production stack 'prod'; set sshAllowedCidrs to your "
        "own networks"
    ]


def test_narrow_ssh_passes_on_prod_but_ipv6_world_or_all_ports_do_not():
    run = run_program({"sshAllowedCidrs": ["203.0.113.0/24"]}, stack="prod")
    group = run.one(SG)
    assert violations("no-world-ssh-in-production", group) == []
    ipv6 = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/0"]}
    assert "open to ::/0" in violations("no-world-ssh-in-production", mutated(group, ingress=[ipv6]))[0]
    every_port = {"protocol": "tcp", "fromPort": 1, "toPort": 1024, "cidrBlocks": ["0.0.0.0/0"]}
    assert violations("no-world-ssh-in-production", mutated(group, ingress=[every_port]))


# --- instance types -----------------------------------------------------------------------------------------------


def test_instance_type_outside_the_list_is_refused(default_run):
    instance = default_run.one(INSTANCE)
    found = violations("allowed-instance-types", mutated(instance, instanceType="p4d.24xlarge"))
    assert len(found) == 1
    assert found[0].startswith("photofeed-instance: instance type 'p4d.24xlarge' is not allowed; allowed: m7i.large,")


def test_allowed_types_come_from_the_policy_config(default_run):
    instance = default_run.one(INSTANCE)
    assert violations("allowed-instance-types", instance, {"allowedTypes": ["t2.micro"]}) == []
    assert violations("allowed-instance-types", instance, {"allowedTypes": ["t3.small"]}) == [
        "photofeed-instance: instance type 't2.micro' is not allowed; allowed: t3.small"
    ]


# --- IMDSv2 -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [None, {"httpEndpoint": "enabled"}, {"httpTokens": "optional"}])
def test_instance_without_imdsv2_is_refused(default_run, options):
    instance = mutated(default_run.one(INSTANCE), metadataOptions=options)
    found = violations("imdsv2-required", instance)
    tokens = repr((options or {}).get("httpTokens"))
    assert found == [
        f"photofeed-instance: metadataOptions.httpTokens is {tokens}, must be 'required' (IMDSv2 only), "
        "so that a request forged through the app (SSRF) cannot read the instance's credentials"
    ]


def test_launch_template_needs_imdsv2_too():
    template = synthetic(pack.LAUNCH_TEMPLATE, "web", {"instanceType": "t3.small"})
    assert "metadataOptions.httpTokens is None" in violations("imdsv2-required", template)[0]
    template.inputs["metadataOptions"] = {"httpTokens": "required"}
    assert violations("imdsv2-required", template) == []


# --- encryption ---------------------------------------------------------------------------------------------------


def test_unencrypted_root_device_is_refused(default_run):
    instance = default_run.one(INSTANCE)
    root = {**instance.inputs["rootBlockDevice"], "encrypted": False}
    assert violations("encrypted-volumes", mutated(instance, rootBlockDevice=root)) == [
        "photofeed-instance: rootBlockDevice is not encrypted; set encrypted: true"
    ]
    # No root device settings at all: the AMI's default, not known to be encrypted.
    assert violations("encrypted-volumes", mutated(instance, rootBlockDevice=None)) == [
        "photofeed-instance: rootBlockDevice is not encrypted; set encrypted: true"
    ]
    extra = [{"deviceName": "/dev/sdg", "volumeSize": 20}]
    assert violations("encrypted-volumes", mutated(instance, ebsBlockDevices=extra)) == [
        "photofeed-instance: ebsBlockDevices[/dev/sdg] is not encrypted; set encrypted: true"
    ]


def test_unencrypted_ebs_volume_is_refused(default_run):
    volume = default_run.one(pack.EBS_VOLUME)
    assert violations("encrypted-volumes", volume) == []
    assert violations("encrypted-volumes", mutated(volume, encrypted=False)) == [
        f"{volume.name}: the volume is not encrypted; set encrypted: true"
    ]


def test_unencrypted_rds_storage_is_refused():
    database = synthetic(pack.RDS_INSTANCE, "db", {"engine": "postgres", "instanceClass": "db.t4g.micro"})
    assert violations("encrypted-volumes", database) == [
        "db: the database storage is not encrypted; set storageEncrypted: true"
    ]
    database.inputs["storageEncrypted"] = True
    assert violations("encrypted-volumes", database) == []


def test_launch_template_block_devices_must_be_encrypted():
    # The launch template's EBS settings are strings in the AWS provider: "true" / "false".
    template = synthetic(
        pack.LAUNCH_TEMPLATE,
        "web",
        {
            "blockDeviceMappings": [
                {"deviceName": "/dev/xvda", "ebs": {"volumeSize": 10, "encrypted": "true"}},
                {"deviceName": "/dev/sdf", "ebs": {"volumeSize": 10, "encrypted": "false"}},
            ]
        },
    )
    assert violations("encrypted-volumes", template) == [
        "web: blockDeviceMappings[/dev/sdf] is not encrypted; set encrypted: true"
    ]


# --- secrets in user-data -----------------------------------------------------------------------------------------


def test_secret_assignment_in_user_data_is_refused_without_echoing_it(default_run):
    instance = default_run.one(INSTANCE)
    assert violations("no-secrets-in-user-data", instance) == []
    leaked = instance.inputs["userData"] + "\nwrite_files:\n  - path: /etc/app\n    content: DJANGO_SECRET_KEY=abc\n"
    found = violations("no-secrets-in-user-data", mutated(instance, userData=leaked))
    assert len(found) == 1
    assert found[0].startswith(
        "photofeed-instance: userData contains a password or key assignment (DJANGO_SECRET_KEY=…). User-data is"
    )
    assert "abc" not in found[0]


def test_gzip_base64_user_data_with_a_private_key_is_refused(default_run):
    instance = default_run.one(INSTANCE)
    packed = base64.b64encode(
        gzip.compress(b"#cloud-config\nwrite_files:\n  - content: |\n      " + PRIVATE_KEY.encode())
    ).decode()
    found = violations("no-secrets-in-user-data", mutated(instance, userData=None, userDataBase64=packed))
    assert len(found) == 1 and "userDataBase64 contains a private key." in found[0]


def test_the_programs_own_gzip_encoding_is_seen_through(default_run):
    """Past 16 KiB the program sends gzip+base64 (server.host.encode_user_data): the policy reads through it."""
    big = "#cloud-config\n" + "# padding\n" * 2000 + "runcmd:\n  - echo AKIAIOSFODNN7EXAMPLE\n"
    encoded, gzipped = encode_user_data(big)
    assert gzipped
    instance = mutated(default_run.one(INSTANCE), userData=None, userDataBase64=encoded)
    found = violations("no-secrets-in-user-data", instance)
    assert len(found) == 1 and "an AWS access key id" in found[0] and "AKIAIOSFODNN7EXAMPLE" not in found[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password: hunter2", ["a password or key assignment (password=…)"]),
        (
            "export AWS_SECRET_ACCESS_KEY=x",
            ["a password or key assignment (AWS_SECRET_ACCESS_KEY=…)", "an AWS secret access key"],
        ),
        ("DB_PASSWORD=$(cat /run/secrets/db)", []),  # read at run time: no secret in the text
        ('TOKEN="${API_TOKEN}"', []),
        ("ssh_pwauth: false\nusers:\n  - lock_passwd: true", []),  # settings about passwords, not passwords
    ],
)
def test_secret_patterns(text, expected):
    assert pack.secrets_in(text) == expected


# --- the production example ---------------------------------------------------------------------------------------


def prod_example_config() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    prefix = "djangoship:"
    return {key.removeprefix(prefix): value for key, value in document["config"].items() if key.startswith(prefix)}


def test_prod_example_uses_known_keys_only():
    config = prod_example_config()
    assert set(config) <= {row.name for row in KEYS}
    assert set(config["app"]) <= {row.name for row in APP_KEYS}
    assert config["ingressPorts"] == [22, 80] and config["sshAllowedCidrs"] == ["203.0.113.0/24"]
    assert config["app"]["source"].startswith("https://") and config["app"]["ref"]


def test_prod_example_passes_every_policy(monkeypatch):
    # The example's git source is not reachable from a test: resolve the tag to a fixed commit instead.
    commit = "0123456789abcdef0123456789abcdef01234567"

    def resolved(url: str, ref: str) -> release.Release:
        return release.Release(id=commit[:12], archive=None, git_url=url, git_ref=ref, git_commit=commit)

    monkeypatch.setattr(release, "git_release", resolved)
    run = run_program(prod_example_config(), stack="prod")
    assert all_violations(run) == {name: [] for name in POLICY}
    rules = {int(rule["fromPort"]): rule for rule in run.one(SG).inputs["ingress"]}
    assert sorted(rules) == [22, 80, 443]  # 443 from TLS, no 8000
    assert rules[22]["cidrBlocks"] == ["203.0.113.0/24"]
    assert run.outputs["url"] == "https://www.example.com"
    assert run.outputs["releaseId"] == commit[:12]  # the git path, not a local folder
