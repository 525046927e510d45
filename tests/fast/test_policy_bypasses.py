"""The policy pack against the ways around it an outside audit found (issue 16, item 9): the internet split in
two halves, production stacks not named `prod…`, secrets inside write_files' base64 and gzip encodings, in a URL
or JSON, a database on a port of its own, and a publicly accessible RDS instance."""

from __future__ import annotations

import base64
import gzip

import pulumi_policy
import pytest
from google.protobuf import json_format, struct_pb2
from policy_helpers import INSTANCE, SG, mutated, pack, synthetic, violations
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResourceOptions
from pulumi_policy.proxy import unknown_checking_proxy

from harness.mockrun import ProgramRun, Registered, run_program


@pytest.fixture(scope="module")
def default_run() -> ProgramRun:
    return run_program({})


# --- SSH on production, however it is written and whatever the stack is called ----------------------------------


@pytest.mark.parametrize("stack", ["prod", "Prod", "PROD-eu", "production", "prd", "eu-prd", "live", "shop-live"])
def test_production_stacks_are_recognised_in_any_case(stack):
    assert pack.is_production(stack)


@pytest.mark.parametrize("stack", ["dev", "staging", "delivery", "olive", "reproduce", "qa-1"])
def test_other_stacks_are_not_production(stack):
    assert not pack.is_production(stack)


@pytest.mark.parametrize("stack", ["Prod", "prd", "live"])
def test_world_ssh_is_refused_on_every_production_name(stack):
    group = run_program({}, stack=stack).one(SG)
    assert f"on production stack {stack!r}" in violations("no-world-ssh-in-production", group)[0]


@pytest.mark.parametrize(
    ("networks", "share"),
    [
        (["0.0.0.0/1", "128.0.0.0/1"], "100%"),
        (["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2"], "100%"),
        (["0.0.0.0/1"], "57%"),
        (["4.0.0.0/6"], "2%"),
    ],
)
def test_the_internet_split_into_parts_is_still_the_internet(networks, share):
    """Coverage is computed, not compared as text: halves, quarters, or one huge block all open SSH to the world."""
    base = synthetic(SG, "web-sg", {}, stack="prod")
    rule = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": networks}
    found = violations("no-world-ssh-in-production", mutated(base, ingress=[rule]))
    assert len(found) == 1 and f"{share} of the public IPv4 internet" in found[0], found


def test_the_split_over_two_rules_is_added_up():
    base = synthetic(SG, "web-sg", {}, stack="prod")
    halves = [
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/1"]},
        {"protocol": "tcp", "fromPort": 20, "toPort": 30, "cidrBlocks": ["128.0.0.0/1"]},
    ]
    assert (
        "100% of the public IPv4 internet" in violations("no-world-ssh-in-production", mutated(base, ingress=halves))[0]
    )


def test_ipv6_halves_are_the_ipv6_internet():
    base = synthetic(SG, "web-sg", {}, stack="prod")
    rule = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/1", "8000::/1"]}
    assert "of the public IPv6 internet" in violations("no-world-ssh-in-production", mutated(base, ingress=[rule]))[0]


@pytest.mark.parametrize(
    "networks", [["203.0.113.0/24"], ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], ["11.0.0.0/8"]]
)
def test_an_organisations_own_networks_pass_on_production(networks):
    base = synthetic(SG, "web-sg", {}, stack="prod")
    rule = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": networks}
    assert violations("no-world-ssh-in-production", mutated(base, ingress=[rule])) == []


def test_the_program_declares_split_halves_as_the_world_and_the_policy_says_so():
    group = run_program({"sshAllowedCidrs": ["0.0.0.0/1", "128.0.0.0/1"]}, stack="prod").one(SG)
    assert violations("no-world-ssh-in-production", group) == [
        "photofeed-sg: SSH (port 22) is open to 0.0.0.0/0 on production stack 'prod'; set sshAllowedCidrs to your "
        "own networks"
    ]


# --- secrets however they are written ---------------------------------------------------------------------------


def _with_write_file(instance: Registered, entry: str) -> Registered:
    return mutated(instance, userData=instance.inputs["userData"] + "\nwrite_files:\n" + entry)


@pytest.mark.parametrize("encoding", ["b64", "base64"])
def test_secret_in_a_base64_write_file_is_found(default_run, encoding):
    content = base64.b64encode(b"DJANGO_SECRET_KEY=s3cr3t-value-here\n").decode()
    entry = f"  - path: /etc/app/env\n    encoding: {encoding}\n    content: {content}\n"
    found = violations("no-secrets-in-user-data", _with_write_file(default_run.one(INSTANCE), entry))
    assert len(found) == 1 and "(DJANGO_SECRET_KEY=…)" in found[0] and "s3cr3t" not in found[0]


@pytest.mark.parametrize("encoding", ["gz+b64", "gzip+base64", "gz+base64"])
def test_secret_in_a_gzip_base64_write_file_is_found_also_over_several_lines(default_run, encoding):
    packed = base64.encodebytes(gzip.compress(b"#!/bin/sh\nexport DB_PASS=hunter2hunter2\n" + b"x" * 200)).decode()
    block = "".join(f"      {line}\n" for line in packed.splitlines())
    entry = f"  - path: /etc/app/start\n    encoding: {encoding}\n    content: |\n{block}"
    assert len(packed.splitlines()) > 1
    found = violations("no-secrets-in-user-data", _with_write_file(default_run.one(INSTANCE), entry))
    assert len(found) == 1 and "(DB_PASS=…)" in found[0] and "hunter2" not in found[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DATABASE_URL=postgres://u:pw1234@db.internal:5432/app", ["a URL with a password (postgres=…)"]),
        ("git clone https://deploy:ghp_abcdef123456@github.com/o/r.git", ["a URL with a password (https=…)"]),
        ("DB_PASS=hunter2", ["a password or key assignment (DB_PASS=…)"]),
        ("PGPASS: hunter2", []),  # a name that only ends in PASS is not one (PGPASS is a file's name)
        ("BYPASS=1", []),
        ('{"user": "app", "password": "hunter2"}', ["a password or key assignment (password=…)"]),
        ('{"password": "${DB_PASSWORD}"}', []),
        ('headers={"X-aws-ec2-metadata-token": ticket}', []),  # a quoted name with a variable after it
        ("DATABASE_URL=postgres://u:$DB_PASSWORD@db:5432/app", []),  # read at run time
        ("https://github.com/o/r.git", []),
        ("ssh://git@github.com/o/r.git", []),
    ],
)
def test_secret_patterns_beyond_assignments(text, expected):
    assert pack.secrets_in(text) == expected


def test_the_programs_own_user_data_still_passes(default_run):
    assert violations("no-secrets-in-user-data", default_run.one(INSTANCE)) == []


# --- databases ----------------------------------------------------------------------------------------------------


def test_publicly_accessible_rds_is_refused():
    database = synthetic(pack.RDS_INSTANCE, "db", {"engine": "postgres", "publiclyAccessible": True})
    assert violations("database-not-public", database) == [
        "db: publiclyAccessible is true: the database gets a public address; set it to false and reach it from the "
        "app servers' security group only"
    ]
    database.inputs["publiclyAccessible"] = False
    assert violations("database-not-public", database) == []


def test_the_scaled_programs_database_is_not_public():
    run = run_program({"profile": "scaled"})
    (database,) = run.of_type(pack.RDS_INSTANCE)
    assert violations("database-not-public", database) == []
    assert stack_violations(run.resources.values()) == []


def _policy_resource(resource: Registered) -> pulumi_policy.PolicyResource:
    struct = struct_pb2.Struct()
    struct.update(resource.inputs)
    props = unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    return pulumi_policy.PolicyResource(resource.type, props, resource.urn, resource.name, opts, None, None, [], {})


def stack_violations(resources) -> list[str]:
    found: list[str] = []
    args = pulumi_policy.StackValidationArgs([_policy_resource(r) for r in resources], {})
    for policy in pack.STACK_POLICIES:
        policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def test_a_database_on_a_port_of_its_own_is_a_database_port():
    database = synthetic(pack.RDS_INSTANCE, "db", {"engine": "postgres", "port": 6543.0})
    open_to_office = synthetic(
        pack.INGRESS_RULE,
        "db-in",
        {"ipProtocol": "tcp", "fromPort": 6543, "toPort": 6543, "cidrIpv4": "203.0.113.0/24"},
    )
    from_app = synthetic(
        pack.INGRESS_RULE,
        "db-from-app",
        {"ipProtocol": "tcp", "fromPort": 6543, "toPort": 6543, "referencedSecurityGroupId": "sg-app"},
    )
    # The resource policy knows only the standard ports: this is what it let through.
    assert violations("no-database-ingress", open_to_office) == []
    assert stack_violations([database, open_to_office, from_app]) == [
        "db-in: ingress ports 6543 from 203.0.113.0/24 opens database port(s) 6543 (db); a database is reached from "
        "the app servers' security group only"
    ]
