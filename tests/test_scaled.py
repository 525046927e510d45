"""Profile `scaled` (profiles/scaled.py) under Pulumi's mocks: the graph an operator cares about, and what the
app servers receive, through the validators their own tools would apply.

1. Exposure: nothing public but the load balancer and CloudFront; each security group admits only the one before.
2. Data at rest: every store encrypted; the launch template IMDSv2-only.
3. Secrets: never in user-data, only in the SSM SecureStrings (marked secret), readable by the app servers alone.
4. The two profiles do not leak into each other; bad settings fail before anything is declared.
5. Releases: a new one rolls the group (launch template version, instance refresh); migrations run once per
   release — shown in the rendered scripts, and for real against a local PostgreSQL with two servers racing.
6. The first-boot document and its scripts through `cloud-init schema`, `shellcheck`, `nginx -t`, `compile()`.
7. Cost at the defaults, outputs, the policy pack.

Host tools (skipped with the reason, failed with CI=true): cloud-init, shellcheck, nginx, PostgreSQL's
initdb/pg_ctl/psql (the release gate test; run as root it starts the server as the `postgres` user).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import skip_or_fail
from rendered.helpers import free_port, need, systemd_verify
from rendered.helpers import run as run_tool

from catalog.scaledcost import monthly_cost_breakdown
from components.scaled.cdn import ALL_VIEWER_AND_CLOUDFRONT_HEADERS, CACHING_DISABLED, CACHING_OPTIMIZED
from config.settings import load_settings
from harness.mockrun import MockState, ProgramRun, Registered, run_program
from harness.serverfiles import BUCKET_OBJECT, app_server_files, server_files_archive, written_files
from server.appserver import (
    GATE_ENV,
    RELEASE_TABLE,
    BootValues,
    release_context,
    release_lock_key,
    scaled_plan,
)
from server.host import render, without_comment_lines
from server.layout import ServerPaths
from server.release import Release

ROOT = Path(__file__).resolve().parent.parent
SCALED: dict[str, Any] = {"profile": "scaled"}
DOMAIN = "shop.example.com"

SG = "aws:ec2/securityGroup:SecurityGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GROUP = "aws:autoscaling/group:Group"
RDS = "aws:rds/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"
PARAMETER = "aws:ssm/parameter:Parameter"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
LISTENER = "aws:lb/listener:Listener"
SUBNET = "aws:ec2/subnet:Subnet"
# What the single-server profile declares and this one must not (and the reverse).
SINGLE_ONLY = (
    "aws:ec2/instance:Instance",
    "aws:ec2/eipAssociation:EipAssociation",
    "aws:ebs/volume:Volume",
    "aws:ec2/volumeAttachment:VolumeAttachment",
    "aws:ec2/keyPair:KeyPair",
    "tls:index/privateKey:PrivateKey",
    "command:remote:Command",
    "command:remote:CopyToRemote",
)
SCALED_ONLY = (
    "aws:ec2/vpc:Vpc",
    "aws:ec2/natGateway:NatGateway",
    "aws:lb/loadBalancer:LoadBalancer",
    RDS,
    LAUNCH_TEMPLATE,
    GROUP,
    DISTRIBUTION,
    PARAMETER,
    "aws:kms/key:Key",
)


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state() -> MockState:
    return MockState()


@pytest.fixture(scope="module")
def scaled(state: MockState) -> ProgramRun:
    return run_program(SCALED, state=state)


@pytest.fixture(scope="module")
def with_domain() -> ProgramRun:
    return run_program(SCALED | {"domain": DOMAIN})


def decode_user_data(encoded: str) -> str:
    raw = base64.b64decode(encoded)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def user_data(run: ProgramRun) -> str:
    return decode_user_data(run.one(LAUNCH_TEMPLATE).inputs["userData"])


def by_name(run: ProgramRun, name: str, type_: str | None = None) -> Registered:
    """The resource of that name (of that type: a component and its main child may share a name)."""
    found = [r for r in run.resources.values() if r.name == name and (type_ is None or r.type == type_)]
    assert len(found) == 1, f"{name}: {[r.type for r in found]}"
    return found[0]


def group_id(run: ProgramRun, name: str) -> str:
    """A security group's id as the mocks report it (the logical name + "-id")."""
    by_name(run, name)  # it exists
    return f"{name}-id"


def secrets_of(state: MockState) -> list[str]:
    values = list(state.passwords.values())
    assert len(values) == 4, "expected the database password, the Django key, the admin password, the origin secret"
    return values


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run_tool(argv, timeout=120, **kwargs)  # a PostgreSQL cluster's start and stop among them


# --------------------------------------------------------------------------------------------------------
# 1. Exposure
# --------------------------------------------------------------------------------------------------------


def test_nothing_public_but_the_load_balancer_and_cloudfront(scaled: ProgramRun) -> None:
    template = scaled.one(LAUNCH_TEMPLATE).inputs
    for interface in template["networkInterfaces"]:
        assert interface.get("associatePublicIpAddress") in (None, "false"), interface
    assert all(not subnet.inputs.get("mapPublicIpOnLaunch") for subnet in scaled.of_type(SUBNET))
    balancer = scaled.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert balancer["internal"] is False and balancer["subnets"] == [
        "subnet-photofeed-public-1",
        "subnet-photofeed-public-2",
    ]
    database = scaled.one(RDS).inputs
    assert database["publiclyAccessible"] is False
    private = ["subnet-photofeed-private-1", "subnet-photofeed-private-2"]
    assert scaled.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == private
    assert scaled.one(GROUP).inputs["vpcZoneIdentifiers"] == private
    # No server of its own, no address of its own: the only Elastic IP is the NAT gateway's.
    (address,) = scaled.of_type("aws:ec2/eip:Eip")
    assert scaled.one("aws:ec2/natGateway:NatGateway").inputs["allocationId"] == "eipalloc-0123456789"
    assert address.name == "photofeed-nat-eip"


def test_app_servers_admit_http_from_the_load_balancer_only_and_nobody_has_ssh(scaled: ProgramRun) -> None:
    alb_sg = group_id(scaled, "photofeed-alb-sg")
    (rule,) = by_name(scaled, "photofeed-app-sg").inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["protocol"]) == (80, 80, "tcp")
    assert rule["securityGroups"] == [alb_sg] and not rule.get("cidrBlocks") and not rule.get("ipv6CidrBlocks")
    alb_rules = by_name(scaled, "photofeed-alb-sg").inputs["ingress"]
    assert sorted(r["fromPort"] for r in alb_rules) == [80], "443 only with a domain"
    for group in scaled.of_type(SG):
        for rule in group.inputs.get("ingress") or []:
            assert not rule["fromPort"] <= 22 <= rule["toPort"], f"{group.name} opens SSH"
    assert not scaled.of_type("aws:ec2/keyPair:KeyPair")


def test_database_admits_postgres_from_the_app_servers_only(scaled: ProgramRun) -> None:
    (rule,) = by_name(scaled, "photofeed-db-sg").inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["protocol"]) == (5432, 5432, "tcp")
    assert rule["securityGroups"] == [group_id(scaled, "photofeed-app-sg")]
    assert not rule.get("cidrBlocks") and not rule.get("ipv6CidrBlocks")
    assert scaled.one(RDS).inputs["vpcSecurityGroupIds"] == [group_id(scaled, "photofeed-db-sg")]
    # 5432 appears in no other group.
    for group in scaled.of_type(SG):
        if group.name != "photofeed-db-sg":
            assert all(not r["fromPort"] <= 5432 <= r["toPort"] for r in group.inputs.get("ingress") or [])


def test_one_nat_gateway_and_a_free_s3_endpoint(scaled: ProgramRun) -> None:
    nat = scaled.one("aws:ec2/natGateway:NatGateway")
    assert nat.inputs["subnetId"] == "subnet-photofeed-public-1"
    routes = {r.name: r.inputs for r in scaled.of_type("aws:ec2/route:Route")}
    assert routes["photofeed-private-default"]["natGatewayId"] == "photofeed-nat-id"
    assert routes["photofeed-public-default"]["gatewayId"] == "photofeed-igw-id"
    endpoint = scaled.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs
    assert endpoint["serviceName"] == "com.amazonaws.us-east-1.s3" and endpoint["vpcEndpointType"] == "Gateway"
    assert endpoint["routeTableIds"] == ["photofeed-private-rt-id"]
    zones = sorted({s.inputs["availabilityZone"] for s in scaled.of_type(SUBNET)})
    assert zones == ["us-east-1a", "us-east-1b"]


# --------------------------------------------------------------------------------------------------------
# 2. Data at rest, IMDSv2
# --------------------------------------------------------------------------------------------------------


def test_every_store_is_encrypted(scaled: ProgramRun) -> None:
    database = scaled.one(RDS).inputs
    assert database["storageEncrypted"] is True and database["storageType"] == "gp3"
    buckets = {b.name for b in scaled.of_type(BUCKET)}
    assert buckets == {"photofeed-assets", "photofeed-artifacts"}
    encryption = scaled.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    algorithms = {
        e.inputs["bucket"]: e.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
        for e in encryption
    }
    # SSE-S3 where CloudFront reads (OAC cannot use the aws/s3 KMS key), KMS elsewhere.
    assert algorithms == {"photofeed-assets": "AES256", "photofeed-artifacts": "aws:kms"}
    for block in scaled.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"):
        assert all(
            block.inputs[k]
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
    versioning = {
        v.inputs["bucket"]: v.inputs["versioningConfiguration"]["status"]
        for v in scaled.of_type("aws:s3/bucketVersioning:BucketVersioning")
    }
    assert versioning == {"photofeed-assets": "Enabled", "photofeed-artifacts": "Enabled"}
    devices = scaled.one(LAUNCH_TEMPLATE).inputs["blockDeviceMappings"]
    assert devices and all(d["ebs"]["encrypted"] == "true" and d["ebs"]["volumeType"] == "gp3" for d in devices)
    assert devices[0]["deviceName"] == "/dev/xvda"  # Debian's root device: the settings apply to the root volume
    for parameter in scaled.of_type(PARAMETER):
        assert parameter.inputs["type"] == "SecureString"
        assert (
            parameter.inputs["keyId"] == "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        )
    assert scaled.one("aws:kms/key:Key").inputs["enableKeyRotation"] is True


def test_uploads_outlive_the_stack_and_the_database_keeps_a_final_snapshot(scaled: ProgramRun) -> None:
    assert by_name(scaled, "photofeed-assets", BUCKET).retain_on_delete is True
    assert by_name(scaled, "photofeed-assets", BUCKET).inputs["forceDestroy"] is False
    assert by_name(scaled, "photofeed-artifacts", BUCKET).inputs["forceDestroy"] is True
    database = scaled.one(RDS).inputs
    assert database["skipFinalSnapshot"] is False and database["finalSnapshotIdentifier"] == "photofeed-dev-final"
    assert database["deletionProtection"] is True and database["backupRetentionPeriod"] == 7
    assert database["engine"] == "postgres" and database["engineVersion"] == "16"
    assert (database["instanceClass"], database["allocatedStorage"], database["multiAz"]) == ("db.t4g.micro", 20, False)
    custom = (
        run_program(
            SCALED
            | {
                "dbMultiAz": True,
                "dbBackupRetentionDays": 14,
                "dbDeletionProtection": False,
                "dbAllocatedStorageGb": 50,
            }
        )
        .one(RDS)
        .inputs
    )
    assert (
        custom["multiAz"],
        custom["backupRetentionPeriod"],
        custom["deletionProtection"],
        custom["allocatedStorage"],
    ) == (True, 14, False, 50)


def test_launch_template_requires_imdsv2(scaled: ProgramRun) -> None:
    options = scaled.one(LAUNCH_TEMPLATE).inputs["metadataOptions"]
    assert options["httpTokens"] == "required" and options["httpPutResponseHopLimit"] == 1


# --------------------------------------------------------------------------------------------------------
# 3. Secrets
# --------------------------------------------------------------------------------------------------------


def test_secrets_are_only_in_the_ssm_parameters_and_marked_secret(scaled: ProgramRun, state: MockState) -> None:
    secrets = secrets_of(state)
    document = user_data(scaled)
    template = json.dumps(scaled.one(LAUNCH_TEMPLATE).inputs)
    for secret in secrets:
        assert secret not in document and secret not in template
    assert "PASSWORD='" not in document and "SECRET_KEY='" not in document
    env = by_name(scaled, "photofeed-env")
    admin = by_name(scaled, "photofeed-superuser")
    assert "value" in env.secret_inputs and "value" in admin.secret_inputs
    assert state.passwords["photofeed-db-password"] in env.inputs["value"]
    assert state.passwords["photofeed-django-secret-key"] in env.inputs["value"]
    assert admin.inputs["value"] == state.passwords["photofeed-admin-password"]
    assert "password" in scaled.one(RDS).secret_inputs
    assert "adminPassword" in scaled.secret_outputs
    # Nowhere else: no other resource input carries a secret value.
    holders = {
        r.name
        for r in scaled.resources.values()
        for secret in secrets
        if secret in json.dumps(r.inputs) and r.type != "random:index/randomPassword:RandomPassword"
    }
    assert holders == {
        "photofeed-env",
        "photofeed-superuser",
        "photofeed-db",
        "photofeed-cdn",
        "photofeed-from-cloudfront",
    }
    # CloudFront's origin secret: in the distribution (its header) and the listener rule (its condition), secret.
    origin = state.passwords["photofeed-origin-secret"]
    assert "origins" in by_name(scaled, "photofeed-cdn").secret_inputs
    assert "conditions" in by_name(scaled, "photofeed-from-cloudfront").secret_inputs
    assert {r.name for r in scaled.resources.values() if origin in json.dumps(r.inputs)} == {
        "photofeed-cdn",
        "photofeed-from-cloudfront",
    }
    # The boot reads exactly the parameter versions its launch template was rendered with.
    assert "/usr/local/sbin/photofeed-aws get-parameter /djangoship/dev/photofeed/env:1 >" in document


def test_only_the_app_servers_role_can_decrypt_the_parameters(scaled: ProgramRun) -> None:
    key_policy = json.loads(scaled.one("aws:kms/key:Key").inputs["policy"])
    decrypters = [s for s in key_policy["Statement"] if "kms:Decrypt" in json.dumps(s["Action"])]
    assert [s["Principal"]["AWS"] for s in decrypters] == ["arn:aws:iam::123456789012:role/photofeed-app-role"]
    assert decrypters[0]["Condition"]["StringEquals"]["kms:ViaService"] == "ssm.us-east-1.amazonaws.com"
    role_policy = json.loads(by_name(scaled, "photofeed-app-policy").inputs["policy"])
    statements = {s["Sid"]: s for s in role_policy["Statement"]}
    assert statements["ReadOwnParameters"]["Resource"] == [
        "arn:aws:ssm:us-east-1:123456789012:parameter/djangoship/dev/photofeed/env",
        "arn:aws:ssm:us-east-1:123456789012:parameter/djangoship/dev/photofeed/superuser",
    ]
    assert statements["ReadReleases"]["Resource"] == [
        "arn:aws:s3:::photofeed-artifacts/releases/*",
        "arn:aws:s3:::photofeed-artifacts/servers/*",
    ]
    assert statements["ReadMoveDumps"]["Resource"] == "arn:aws:s3:::photofeed-artifacts/moves/*"
    assert statements["CompleteLaunchHook"]["Resource"].endswith(":autoScalingGroupName/photofeed-app-*")
    actions = [
        a for s in role_policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert not [a for a in actions if a.endswith("*")], "no wildcard actions"
    attachment = scaled.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment").inputs
    assert attachment["policyArn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    assert scaled.one(LAUNCH_TEMPLATE).inputs["iamInstanceProfile"]["name"] == "photofeed-app-profile"


def test_env_contract_points_at_rds_in_the_same_form(scaled: ProgramRun, state: MockState) -> None:
    text = by_name(scaled, "photofeed-env").inputs["value"]
    env = dict(re.fullmatch(r"([A-Z_][A-Z0-9_]*)='([^']*)'", line).groups() for line in text.splitlines())  # type: ignore[union-attr]
    single = run_program({}, state=MockState()).named("photofeed-configure").sent.rest
    single_keys = {line.split("=", 1)[0] for line in single.splitlines()}
    assert single_keys <= set(env), "every variable of the single server's contract"
    host = "photofeed-db.c9akciq32.us-east-1.rds.amazonaws.com"
    password = state.passwords["photofeed-db-password"]
    assert env["DATABASE_URL"] == f"postgres://photofeed:{password}@{host}:5432/photofeed?sslmode=require"
    assert (env["DJANGO_DB_HOST"], env["DJANGO_DB_PORT"], env["DJANGO_DB_NAME"], env["DJANGO_DB_USER"]) == (
        host,
        "5432",
        "photofeed",
        "photofeed",
    )
    # Not the load balancer's own name: it serves only what CloudFront sends.
    assert env["DJANGO_ALLOWED_HOSTS"] == "d111111abcdef8.cloudfront.net"
    assert env["DJANGO_CSRF_TRUSTED_ORIGINS"] == "https://d111111abcdef8.cloudfront.net"
    assert env["DJANGO_MEDIA_BUCKET"] == "photofeed-assets"
    assert env["DJANGO_MEDIA_DOMAIN"] == "d111111abcdef8.cloudfront.net"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    # The deployer's settings overlay, which imports photofeed.settings (as on a single server).
    assert (env["DJANGO_SETTINGS_MODULE"], env["PYTHONPATH"]) == (
        "djangoship_settings",
        "/usr/local/lib/photofeed/python",
    )
    rds = scaled.one(RDS).inputs
    assert (rds["dbName"], rds["username"]) == ("photofeed", "photofeed")


def test_seed_prefix_and_extra_env_reach_the_parameter() -> None:
    run = run_program(
        SCALED | {"app": {"name": "platzi", "envPrefix": "PLATZI_", "env": {"PLATZI_CONN_MAX_AGE": "60"}}}
    )
    text = run.named("platzi-env").inputs["value"]
    assert "PLATZI_DB_HOST='platzi-db." in text and "PLATZI_MEDIA_BUCKET='platzi-assets'" in text
    assert text.endswith("PLATZI_CONN_MAX_AGE='60'\n")


# --------------------------------------------------------------------------------------------------------
# 4. Profiles apart, bad settings
# --------------------------------------------------------------------------------------------------------


def test_single_server_resources_are_absent_here_and_scaled_ones_there(scaled: ProgramRun) -> None:
    for type_ in SINGLE_ONLY:
        assert not scaled.of_type(type_), type_
    single = run_program({})
    for type_ in SCALED_ONLY:
        assert not single.of_type(type_), type_
    assert not [r for r in single.resources.values() if r.type.startswith("djangoship:scaled:")]
    assert not {"publicIp", "sshCommand", "sshPrivateKey", "dataVolumeId"} & set(scaled.outputs)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"appDesiredCapacity": 5}, "appDesiredCapacity = 5 is invalid", id="desired-above-max"),
        pytest.param(
            {"appMinSize": 3, "appDesiredCapacity": 2}, "appDesiredCapacity = 2 is invalid", id="desired-below-min"
        ),
        pytest.param(
            {"dbInstanceClass": "postgres-large"}, "dbInstanceClass = 'postgres-large' is invalid", id="class-form"
        ),
        pytest.param(
            {"dbInstanceClass": "db.x9.mega"},
            "dbInstanceClass = 'db.x9.mega' is invalid: one of db.t4g.micro",
            id="class-unknown",
        ),
        pytest.param(
            {"dbAllocatedStorageGb": 10}, "dbAllocatedStorageGb = 10 is invalid", id="storage-below-rds-minimum"
        ),
        pytest.param({"ingressPorts": [22, 80, 5432]}, "ingressPorts = 5432 is invalid", id="postgres-port"),
        pytest.param({"app": {"env": {"DJANGO_MEDIA_BUCKET": "x"}}}, "app.env.DJANGO_MEDIA_BUCKET", id="reserved-env"),
    ],
)
def test_bad_settings_fail_before_anything_is_declared(config: dict[str, Any], message: str) -> None:
    result = run_program(SCALED | config, expect_error=True)
    assert message in str(result.error)
    assert not [r for r in result.resources.values() if r.type.startswith("aws:")], "declared before the check"


# --------------------------------------------------------------------------------------------------------
# 5. Releases: the roll, migrations once
# --------------------------------------------------------------------------------------------------------


def test_group_rolls_new_launch_template_versions_gated_by_health(scaled: ProgramRun) -> None:
    group = scaled.one(GROUP).inputs
    assert group["launchTemplate"] == {"id": "lt-0123456789abcdef0", "version": "1"}
    assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (2, 4, 2)
    assert group["healthCheckType"] == "ELB"
    assert group["targetGroupArns"] == [
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/photofeed-tg/73e2d6bc24d8a067"
    ]
    refresh = group["instanceRefresh"]
    assert refresh["strategy"] == "Rolling" and refresh["triggers"] == ["tag"]
    assert refresh["preferences"]["minHealthyPercentage"] == 100, "launch before terminating"
    assert refresh["preferences"]["maxHealthyPercentage"] > 100
    (hook,) = group["initialLifecycleHooks"]
    assert hook["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING" and hook["defaultResult"] == "ABANDON"
    assert {t["key"]: t["value"] for t in group["tags"]}["Release"] == scaled.outputs["releaseId"]
    health = scaled.one("aws:lb/targetGroup:TargetGroup").inputs["healthCheck"]
    assert health["path"] == "/healthz" and health["matcher"] == "200"
    # The group waits for the database, the parameters, the release and egress before any server boots.
    depends = set(scaled.one(GROUP).dependencies)
    for name, type_ in [
        ("photofeed-db", RDS),
        ("photofeed-env", PARAMETER),
        ("photofeed-superuser", PARAMETER),
        ("photofeed-release", "aws:s3/bucketObjectv2:BucketObjectv2"),
        ("photofeed-private-default", "aws:ec2/route:Route"),
    ]:
        assert by_name(scaled, name, type_).urn in depends, name


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    target = tmp_path / "photofeed"
    shutil.copytree(
        ROOT / "examples" / "photofeed",
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "media", "staticfiles"),
    )
    return target


def test_a_new_release_is_a_new_launch_template_version_and_nothing_else_changes(app_copy: Path) -> None:
    state = MockState()
    config = SCALED | {"app": {"source": str(app_copy)}}
    before = run_program(config, state=state)
    again = run_program(config, state=state)
    assert user_data(before) == user_data(again), "nothing changed: the same launch template"
    assert by_name(before, "photofeed-env").inputs == by_name(again, "photofeed-env").inputs
    (app_copy / "feed" / "views.py").write_text((app_copy / "feed" / "views.py").read_text() + "\n# v2\n")
    after = run_program(config, state=state)
    release = after.outputs["releaseId"]
    assert release != before.outputs["releaseId"]
    assert user_data(after) != user_data(before) and f"DJANGOSHIP_RELEASE_ID={release} " in user_data(after)
    assert by_name(after, "photofeed-release").inputs["key"] == f"releases/{release}.tar.gz"
    assert by_name(after, "photofeed-release").retain_on_delete is True, "a rollback still finds the old archive"
    assert by_name(after, "photofeed-env").inputs == by_name(before, "photofeed-env").inputs
    changed = sorted(
        r.name
        for urn, r in after.resources.items()
        if r.type.startswith("aws:") and before.resources[urn].inputs != r.inputs
    )
    # The server files' archive is a new object only if a file changed (its deploy names the release's archive).
    assert changed in (
        ["photofeed-app", "photofeed-app-lt", "photofeed-release"],
        ["photofeed-app", "photofeed-app-lt", "photofeed-release", "photofeed-server-files"],
    ), changed
    assert by_name(after, "photofeed-server-files").retain_on_delete is True, "older launch templates still find theirs"


def test_git_release_has_no_archive_and_the_servers_fetch_the_commit() -> None:
    commit = "0123456789abcdef" * 2 + "01234567"
    run = run_program(SCALED | {"app": {"source": "https://github.com/example/photofeed.git", "ref": commit}})
    assert [o.inputs["key"] for o in run.of_type(BUCKET_OBJECT)] == [server_files_archive(run).inputs["key"]]
    files = app_server_files(run)
    assert "releases/" not in files["/usr/local/sbin/photofeed-boot"]
    assert (
        "photofeed-aws fetch photofeed-artifacts releases/"
        in written_files(user_data(run_program(SCALED)))["/usr/local/sbin/photofeed-boot"]
    )
    assert commit in files["/usr/local/sbin/photofeed-deploy"]


def test_migrations_once_per_release_in_the_rendered_scripts(scaled: ProgramRun) -> None:
    files = app_server_files(scaled)
    boot = files["/usr/local/sbin/photofeed-boot"]
    release = scaled.outputs["releaseId"]
    # The boot installs the release through the single server's deploy, marking it as a release install…
    assert f"{GATE_ENV}={release} /usr/local/sbin/photofeed-deploy" in boot
    assert "photofeed-manage migrate --noinput" in files["/usr/local/sbin/photofeed-deploy"]
    # …whose `migrate` the manage wrapper routes through the gate, and only then…
    wrapper = files["/usr/local/bin/photofeed-manage"]
    assert 'if [ "${1:-}" = migrate ] && [ -n "${DJANGOSHIP_RELEASE_ID:-}" ]; then' in wrapper
    assert "exec /usr/local/sbin/photofeed-release-once" in wrapper
    assert wrapper.rstrip().endswith('exec /usr/local/lib/photofeed/manage "$@"')
    # …which migrates (and uploads static files) only if no server recorded the release, under one lock.
    gate = files["/usr/local/sbin/photofeed-release-once"]
    lock = release_lock_key("photofeed")
    assert f"pg_advisory_lock({lock})" in gate and f"pg_advisory_unlock({lock})" in gate
    assert f"CREATE TABLE IF NOT EXISTS {RELEASE_TABLE}" in gate and f"INSERT INTO {RELEASE_TABLE}" in gate
    assert (
        gate.index("pg_advisory_lock") < gate.index("sync-static") < gate.index('/usr/local/lib/photofeed/manage "$@"')
    )
    assert gate.index('/usr/local/lib/photofeed/manage "$@"') < gate.index("INSERT INTO")
    assert 'sync-static "$release_dir/.djangoship-static" photofeed-assets static' in gate
    # The boot completes the launch hook only at the end, and abandons the launch on any failure.
    assert boot.rstrip().splitlines()[-2] == "/usr/local/sbin/photofeed-aws complete-lifecycle CONTINUE"
    assert "complete-lifecycle ABANDON" in boot and "trap finish EXIT" in boot


# --- the gate, for real: two app servers of the same release racing on a local PostgreSQL ----------------


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None
    )
    if not found:
        skip_or_fail(f"PostgreSQL's `{name}` is not installed (Debian: postgresql)")
    return str(found)


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL on 127.0.0.1 (password auth, like RDS): the PG* settings to reach it."""
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    _postgres_binary("psql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        if run(["id", "postgres"]).returncode != 0:
            skip_or_fail("running as root and there is no `postgres` user to run the server")
    work = Path(tempfile.mkdtemp(prefix="djangoship-pg-", dir="/tmp"))
    try:
        (work / "pw").write_text("gate-test-password\n")
        if as_user:
            shutil.chown(work, "postgres")
            shutil.chown(work / "pw", "postgres")
        port = str(free_port())
        result = run(
            [
                *as_user,
                initdb,
                "-D",
                str(work / "data"),
                "-A",
                "scram-sha-256",
                "-U",
                "photofeed",
                f"--pwfile={work / 'pw'}",
                "--no-sync",
            ]
        )
        assert result.returncode == 0, result.stdout + result.stderr
        options = f"-k {work} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = run(
            [*as_user, pg_ctl, "-D", str(work / "data"), "-o", options, "-l", str(work / "log"), "-w", "start"]
        )
        assert result.returncode == 0, result.stdout + result.stderr + (work / "log").read_text()
        yield {
            "host": "127.0.0.1",
            "port": port,
            "user": "photofeed",
            "password": "gate-test-password",
            "db": "postgres",
        }
        run([*as_user, pg_ctl, "-D", str(work / "data"), "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fake(path: Path, body: str) -> str:
    path.write_text("#!/bin/bash\nset -euo pipefail\n" + body)
    path.chmod(0o755)
    return str(path)


def render_gate(tmp: Path, postgres: dict[str, str], release_id: str, migrate_fails: bool = False) -> Path:
    """The gate as an app server gets it, with its helpers replaced by recorders and the env file pointing at
    the local PostgreSQL (plain TCP: the test server has no TLS)."""
    plan = dataclasses.replace(
        scaled_plan(load_settings(SCALED, project="djangoship", stack="dev")), env_file=str(tmp / "env")
    )
    (tmp / "env").write_text(
        "".join(
            f"DJANGO_DB_{k}='{v}'\n"
            for k, v in {
                "HOST": postgres["host"],
                "PORT": postgres["port"],
                "NAME": postgres["db"],
                "USER": postgres["user"],
                "PASSWORD": postgres["password"],
            }.items()
        )
    )
    log = tmp / "calls.log"
    (tmp / "admin-password").write_text("admin-secret\n")
    fail = "exit 3\n" if migrate_fails else ""
    paths = dataclasses.replace(
        ServerPaths.for_app(plan.app),
        aws=_fake(tmp / "aws", f'echo "aws $*" >> {log}\n'),
        django_manage=_fake(tmp / "manage", f'echo "manage $* in $RELEASE_DIR" >> {log}\nsleep 1\n{fail}'),
        superuser=_fake(tmp / "superuser", f'echo "superuser $(cat)" >> {log}\n'),
        admin_password=str(tmp / "admin-password"),
    )
    release = Release(id=release_id, archive=Path("/nonexistent.tar.gz"))
    boot = BootValues(
        "us-east-1", "/p/env:1", "/p/admin-password:1", "artifacts", "assets", "arn:aws:iam::123456789012:role/media"
    )
    # The gate's programs are stand-ins in the test's folder: the paths the template is given are theirs.
    context = release_context(plan, release, boot, arch="x86_64", vpc_cidr="10.20.0.0/16")
    context["paths"] = dataclasses.asdict(paths)
    script = tmp / f"release-once-{release_id}"
    script.write_text(render("scaled/release-once.sh.j2", plan, **(context | {"pg_sslmode": "disable"})))
    script.chmod(0o755)
    return script


def gate(script: Path, release_id: str, **env: str) -> subprocess.Popen[str]:
    environment = os.environ | {GATE_ENV: release_id, "RELEASE_DIR": f"/srv/photofeed/releases/{release_id}"} | env
    return subprocess.Popen(
        [str(script), "migrate", "--noinput"],
        env=environment,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=60)
    return process.returncode, output


def psql(postgres: dict[str, str], sql: str) -> str:
    env = os.environ | {
        "PGHOST": postgres["host"],
        "PGPORT": postgres["port"],
        "PGUSER": postgres["user"],
        "PGPASSWORD": postgres["password"],
        "PGDATABASE": postgres["db"],
    }
    result = run([_postgres_binary("psql"), "-qAt", "-c", sql], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_release_gate_migrates_once_when_servers_race(postgres: dict[str, str], tmp_path: Path) -> None:
    release_id = "aaaaaaaaaaa1"
    script = render_gate(tmp_path, postgres, release_id)
    log = tmp_path / "calls.log"
    # Three servers of one release at once: one migrates (1 s), the others wait for its lock and skip.
    racers = [gate(script, release_id) for _ in range(3)]
    results = [finish(process) for process in racers]
    assert all(code == 0 for code, _ in results), results
    calls = log.read_text().splitlines()
    assert calls.count(f"aws sync-static /srv/photofeed/releases/{release_id}/.djangoship-static assets static") == 1, (
        calls
    )
    assert calls.count(f"manage migrate --noinput in /srv/photofeed/releases/{release_id}") == 1, calls
    assert calls.count("superuser admin-secret") == 3, "every server ensures the superuser, one at a time"
    # The static upload and the migrations came before any other server went on.
    assert calls.index(f"manage migrate --noinput in /srv/photofeed/releases/{release_id}") < calls.index(
        "superuser admin-secret"
    )
    skipped = [output for _, output in results if "already migrated by" in output]
    assert len(skipped) == 2, results
    assert psql(postgres, f"SELECT count(*) FROM {RELEASE_TABLE} WHERE release_id = '{release_id}'") == "1"
    # A later server of the same release (scale-out) skips too; the next release migrates again.
    assert finish(gate(script, release_id))[0] == 0
    next_id = "bbbbbbbbbbb2"
    assert finish(gate(render_gate(tmp_path, postgres, next_id), next_id))[0] == 0
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("manage migrate")] == [
        f"manage migrate --noinput in /srv/photofeed/releases/{release_id}",
        f"manage migrate --noinput in /srv/photofeed/releases/{next_id}",
    ]
    assert psql(postgres, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0", "every lock released"


def test_release_gate_failed_migration_is_retried_by_the_next_server(postgres: dict[str, str], tmp_path: Path) -> None:
    release_id = "ccccccccccc3"
    code, output = finish(gate(render_gate(tmp_path, postgres, release_id, migrate_fails=True), release_id))
    assert code != 0, output
    assert psql(postgres, f"SELECT count(*) FROM {RELEASE_TABLE} WHERE release_id = '{release_id}'") == "0"
    assert psql(postgres, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0", "the lock died with it"
    code, output = finish(gate(render_gate(tmp_path, postgres, release_id), release_id))
    assert code == 0, output
    assert "first app server on this release" in output


def test_release_gate_refuses_to_run_outside_a_release_install(postgres: dict[str, str], tmp_path: Path) -> None:
    script = render_gate(tmp_path, postgres, "ddddddddddd4")
    code, output = finish(gate(script, "ddddddddddd4", **{GATE_ENV: "000000000000"}))
    assert code != 0 and "only the install of release ddddddddddd4" in output
    assert not (tmp_path / "calls.log").exists()


# `systemd-analyze calendar` lists a calendar's elapses as "Iter. #2: …" in systemd 252 (Debian 12, this host) and
# "Iteration #2: …" in 257 (Debian 13): the gate must read both. Each test runs with each, whatever the host's.
CALENDAR_FORMATS = {
    "systemd-252": "s/^\\( *\\)Iteration #/\\1Iter. #/",
    "systemd-257": "s/^\\( *\\)Iter\\. #/\\1Iteration #/",
}


@pytest.fixture(params=sorted(CALENDAR_FORMATS))
def calendar_format(request, tmp_path: Path) -> dict[str, str]:
    """PATH with a systemd-analyze that prints that version's listing (the host's own, its lines renamed), and a
    `date` whose `date +%s` says FIRED_AT when set (the moment a server's timer fired: the gate reads its clock as
    it starts)."""
    real = shutil.which("systemd-analyze")
    clock = shutil.which("date")
    if real is None or clock is None:
        skip_or_fail("systemd-analyze is not installed")
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "systemd-analyze"
    wrapper.write_text(f"#!/bin/bash\nset -o pipefail\n{real} \"$@\" | sed '{CALENDAR_FORMATS[request.param]}'\n")
    wrapper.chmod(0o755)
    fired = folder / "date"
    fired.write_text(
        f'#!/bin/bash\nif [ "$*" = +%s ] && [ -n "${{FIRED_AT:-}}" ]; then echo "$FIRED_AT"\n'
        f'else exec {clock} "$@"; fi\n'
    )
    fired.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def render_schedule_once(tmp: Path, postgres: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The scheduled jobs' gate as an app server gets it, and the app's environment (its unit's EnvironmentFile)
    pointing at the local PostgreSQL (plain TCP: the test server has no TLS). The jobs' record starts empty."""
    psql(postgres, "DROP TABLE IF EXISTS djangoship_schedule")
    plan = scaled_plan(load_settings(SCALED, project="djangoship", stack="dev"))
    boot = BootValues(
        "us-east-1", "/p/env:1", "/p/admin-password:1", "artifacts", "assets", "arn:aws:iam::123456789012:role/media"
    )
    release = Release(id="eeeeeeeeeee5", archive=Path("/nonexistent.tar.gz"))
    context = release_context(plan, release, boot, arch="x86_64", vpc_cidr="10.20.0.0/16") | {"pg_sslmode": "disable"}
    script = tmp / "schedule-once"
    script.write_text(render("scaled/schedule-once.sh.j2", plan, **context))
    script.chmod(0o755)
    env = {
        f"DJANGO_DB_{key}": postgres[value]
        for key, value in {"HOST": "host", "PORT": "port", "NAME": "db", "USER": "user", "PASSWORD": "password"}.items()
    }
    return script, env


def schedule_run(
    script: Path,
    env: dict[str, str],
    job: str,
    *args: str,
    due: float | None = None,
    log: Path,
    calendar: str = "hourly",
) -> subprocess.Popen[str]:
    """One server's run of JOB (its timer's, fired at DUE; --catch-up: its boot's, now): the job appends a line to
    LOG."""
    timer = {"FIRED_AT": str(int(due))} if due is not None else {}
    command = ["bash", "-c", f'echo "$$" >> {log}; sleep 1']
    return subprocess.Popen(
        [str(script), job, calendar, *args, "--", *command],
        env=os.environ | env | timer,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def runs_of(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def test_a_schedule_runs_once_per_due_time_across_the_servers(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    due = int(time.time()) // 3600 * 3600
    # Three servers' timers fire for the same due time, each within systemd's accuracy of it (up to 1.8 s apart,
    # across a second's boundary): one runs the job, the others find it done.
    runs = [schedule_run(script, env, "digest", due=due + 0.9 * server, log=log) for server in range(3)]
    results = [finish(p) for p in runs]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert runs_of(log) == 1, results
    assert sum("already ran on another server" in output for _, output in results) == 2, results
    # The next due time runs again, once; a late timer of the first finds it done.
    finish(schedule_run(script, env, "digest", due=due + 3600, log=log))
    code, output = finish(schedule_run(script, env, "digest", due=due, log=log))
    assert code == 0 and "already ran" in output and runs_of(log) == 2, output
    assert psql(postgres, "SELECT count(*) FROM djangoship_schedule WHERE job = 'digest'") == "2"
    assert psql(postgres, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0", "every lock released"


def test_a_minutely_job_runs_once_a_minute_as_the_servers_fire(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """Every minute, two servers' timers a moment apart: one run a minute, recorded as that minute."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    minute = int(time.time()) // 60 * 60 - 300
    for k in range(3):
        for server in range(2):
            finish(schedule_run(script, env, "tick", due=minute + 60 * k + 0.3 + server, log=log, calendar="*:*:00"))
    assert runs_of(log) == 3
    recorded = psql(postgres, "SELECT extract(epoch FROM due)::bigint FROM djangoship_schedule ORDER BY due").split()
    assert [int(due) for due in recorded] == [minute, minute + 60, minute + 120]


def test_a_run_started_late_in_its_minute_still_runs_after_the_next_minute_ran(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """One server's run starts at the end of its minute and reaches the lock after another server's run of the
    next minute: each minute still runs once, none is taken for done because a later one is."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    minute = int(time.time()) // 60 * 60 - 600
    finish(schedule_run(script, env, "tick", due=minute + 0.2, log=log, calendar="*:*:00"))
    finish(schedule_run(script, env, "tick", due=minute + 120.3, log=log, calendar="*:*:00"))
    code, output = finish(schedule_run(script, env, "tick", due=minute + 119.6, log=log, calendar="*:*:00"))
    assert code == 0 and runs_of(log) == 3, output
    recorded = psql(postgres, "SELECT extract(epoch FROM due)::bigint FROM djangoship_schedule ORDER BY due").split()
    assert [int(due) for due in recorded] == [minute, minute + 60, minute + 120]
    # Its twin on another server, as late, finds it done.
    code, output = finish(schedule_run(script, env, "tick", due=minute + 119.9, log=log, calendar="*:*:00"))
    assert code == 0 and "already ran on another server" in output and runs_of(log) == 3, output


def test_the_database_a_moment_away_is_tried_again_and_the_jobs_own_failure_is_not(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """The gate's failure before the job starts exits 75, which the unit restarts (RestartForceExitStatus); the
    job's own failure is recorded and final, so a restart can never run a job twice."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        away = env | {"DJANGO_DB_PORT": str(unused.getsockname()[1])}
        code, output = finish(schedule_run(script, away, "digest", due=time.time(), log=log))
    assert code == 75 and runs_of(log) == 0 and "ERROR" in output, output
    due = int(time.time()) // 3600 * 3600
    failing = subprocess.run(
        [str(script), "digest", "hourly", "--", "bash", "-c", f'echo "$$" >> {log}; exit 3'],
        env=os.environ | env | {"FIRED_AT": str(due + 1)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failing.returncode == 1 and "the job exited with status 3" in failing.stderr and runs_of(log) == 1, failing
    assert psql(postgres, "SELECT status FROM djangoship_schedule WHERE job = 'digest'") == "3"


def test_a_dead_servers_session_is_dropped_by_keepalive_not_after_hours(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    """A server powered off mid-run never closes its connection: the database probes it after 30 s idle and drops
    it after three missed probes 10 s apart, freeing its lock (the kernel's default: two hours). Read from the
    gate's own session while it holds the lock."""
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    holder = subprocess.Popen(
        [str(script), "hold", "hourly", "--", "bash", "-c", f'echo "$$" >> {log}; sleep 30'],
        env=os.environ | env | {"FIRED_AT": str(int(time.time()) // 3600 * 3600)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while runs_of(log) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runs_of(log) == 1, "the job started"
        session = psql(
            postgres,
            "SELECT pid, client_port FROM pg_stat_activity WHERE application_name LIKE '%schedule-hold'",
        )
        assert session, "the gate's session is in pg_stat_activity"
        backend, client_port = session.split("|")
        # Both ends of that connection, with their keepalive timers: the backend's socket and psql's.
        sockets = subprocess.run(
            ["ss", "-tnopH", f"( sport = :{client_port} or dport = :{client_port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=30)
    ends = {("postgres" if f"pid={backend}," in line else "psql"): line for line in sockets}
    assert set(ends) == {"postgres", "psql"}, sockets
    for end, line in ends.items():
        timer = re.search(r"timer:\(keepalive,(?:(\d+)min)?(\d+)?(?:\.\d+)?(m?s)ec", line)
        assert timer and not timer[1] and timer[3] == "s" and int(timer[2]) <= 30, f"{end}: {line}"


def test_a_server_dying_mid_run_leaves_the_due_time_to_the_next(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    due = int(time.time()) // 3600 * 3600 - 7200
    dying = schedule_run(script, env, "reports", due=due, log=log)
    deadline = time.monotonic() + 30
    while runs_of(log) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(dying.pid, signal.SIGKILL)  # the server is gone: its session, and the lock, with it
    dying.communicate(timeout=30)
    code, output = finish(schedule_run(script, env, "reports", due=due, log=log))
    assert code == 0 and runs_of(log) == 2, output
    assert psql(postgres, "SELECT count(*) FROM djangoship_schedule WHERE job = 'reports'") == "1"


def test_a_run_missed_while_no_server_ran_it_happens_once_at_boot(
    postgres: dict[str, str], tmp_path: Path, calendar_format: dict[str, str]
) -> None:
    script, env = render_schedule_once(tmp_path, postgres)
    env |= calendar_format
    log = tmp_path / "ran"
    # Never recorded: a new job's first run is its next due time, as a timer's is.
    code, output = finish(schedule_run(script, env, "cleanup", "--catch-up", log=log))
    assert code == 0 and runs_of(log) == 0, output
    # Last run three hours ago, then no server for two due times: the booting servers run it once.
    last = int(time.time()) // 3600 * 3600 - 3 * 3600
    finish(schedule_run(script, env, "cleanup", due=last, log=log))
    results = [finish(p) for p in [schedule_run(script, env, "cleanup", "--catch-up", log=log) for _ in range(2)]]
    assert runs_of(log) == 2, results
    assert any("a run was missed while no server ran it" in output for _, output in results), results
    newest = psql(
        postgres, "SELECT extract(epoch FROM max(due))::bigint FROM djangoship_schedule WHERE job = 'cleanup'"
    )
    assert int(newest) == int(time.time()) // 3600 * 3600, "recorded as the latest due time that passed"
    # Caught up: the next boot finds nothing missed.
    finish(schedule_run(script, env, "cleanup", "--catch-up", log=log))
    assert runs_of(log) == 2


# --------------------------------------------------------------------------------------------------------
# 6. The first-boot document and its scripts, through the validators
# --------------------------------------------------------------------------------------------------------


@cache
def rendered(config_json: str) -> ProgramRun:
    return run_program(json.loads(config_json))


DOCUMENTS = {
    "ubuntu-archive": SCALED | {"image": "ubuntu-24.04"},
    "debian-12-arm-git": SCALED
    | {
        "image": "debian-12",
        "instanceType": "t4g.small",
        "app": {"source": "https://github.com/example/photofeed.git", "ref": "0123456789abcdef" * 2 + "01234567"},
    },
    "domain-platzi": SCALED | {"domain": DOMAIN, "app": {"name": "platzi", "envPrefix": "PLATZI_"}},
    # A private repository: the deploy's SSH fetch and the deploy key's parameter make the largest document.
    "ssh-source": SCALED
    | {"app": {"source": "ssh://git@git.example.com/acme/shop.git", "ref": "0123456789abcdef" * 2 + "01234567"}},
    # The workers shape (issue 31) on top of that: ASGI, two processes, two schedules, ElastiCache.
    "ssh-workers": SCALED
    | {
        "redis": True,
        "app": {
            "source": "ssh://git@git.example.com/acme/shop.git",
            "ref": "0123456789abcdef" * 2 + "01234567",
            "asgiModule": "shop.asgi",
            "processes": {"worker": "celery -A shop worker -l info", "alerts": "manage.py send_alerts --loop"},
            "schedules": {
                "sessions": {"schedule": "daily", "command": "manage.py clearsessions"},
                "digest": {"schedule": "*:0/15", "command": "manage.py send_digest"},
            },
        },
    },
}


def document(config_id: str) -> str:
    return user_data(rendered(json.dumps(DOCUMENTS[config_id], sort_keys=True)))


def all_files(config_id: str) -> dict[str, str]:
    return app_server_files(rendered(json.dumps(DOCUMENTS[config_id], sort_keys=True)))


@pytest.mark.parametrize("config_id", DOCUMENTS)
def test_app_server_units_pass_systemd_verify(config_id: str, tmp_path: Path) -> None:
    """Every unit an app server gets (the user-data's and the server-files archive's), through systemd's own
    check; with schedules, each has its timer's unit and the boot's catch-up unit, which passes --catch-up."""
    files = all_files(config_id)
    folder = "/etc/systemd/system/"
    units = {
        path.removeprefix(folder): text for path, text in files.items() if path.startswith(folder) and "@" not in path
    }
    app_config = DOCUMENTS[config_id].get("app", {})
    for name in app_config.get("schedules", {}):
        (catch_up,) = [unit for unit in units if unit.endswith(f"-{name}-catch-up.service")]
        timer = catch_up.replace("-catch-up.service", ".timer")
        assert " --catch-up -- " in units[catch_up] and timer in units
        assert " --catch-up " not in units[timer.replace(".timer", ".service")]
        # The gate's exit 75 (it failed before the job started) is restarted, its 1 (the job failed) and 2 are not.
        for unit in (catch_up, timer.replace(".timer", ".service")):
            assert "\nRestart=on-failure\nRestartPreventExitStatus=1 2\n" in units[unit], units[unit]
    result = systemd_verify(units, tmp_path / "root")
    # The processes' restart back-off needs systemd 254; Debian 13's app servers have 257, this host may have less.
    version = int(run_tool(["systemctl", "--version"]).stdout.split()[1])
    newer = re.compile(r"Unknown key '(RestartSteps|RestartMaxDelaySec)'")
    problems = [line for line in result.stderr.splitlines() if not (version < 254 and newer.search(line))]
    assert result.returncode == 0 and not problems and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("config_id", DOCUMENTS)
def test_user_data_passes_cloud_init_schema_and_fits(config_id: str, tmp_path: Path) -> None:
    text = document(config_id)
    assert text.startswith("#cloud-config\n")
    path = tmp_path / "user-data"
    path.write_text(text)
    result = run([need("cloud-init"), "schema", "--config-file", str(path)])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Valid cloud-config" in result.stdout, output
    assert "deprecat" not in output.lower(), output
    packages = yaml.safe_load(text)["packages"]
    assert "postgresql-client" in packages and "postgresql" not in packages
    # EC2 takes at most 16 KiB of user-data (before base64): gzip must keep it well inside.
    compressed = len(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    assert compressed < 16384, f"{compressed} bytes gzipped"


def test_cloud_init_schema_catches_a_broken_document(tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(document("ubuntu-archive").replace("package_upgrade: false", 'package_upgrade: "often"'))
    result = run([need("cloud-init"), "schema", "--config-file", str(path)])
    assert result.returncode != 0 or "Valid cloud-config" not in result.stdout


def scripts_of(config_id: str, language: str) -> dict[str, str]:
    shebang = {"bash": "#!/bin/bash", "python": "#!/usr/bin/python3"}[language]
    return {path: text for path, text in all_files(config_id).items() if text.startswith(shebang)}


SHELL_SCRIPTS = [(config_id, path) for config_id in DOCUMENTS for path in scripts_of(config_id, "bash")]


@pytest.mark.parametrize(("config_id", "path"), SHELL_SCRIPTS, ids=[f"{c}:{Path(p).name}" for c, p in SHELL_SCRIPTS])
def test_shell_scripts_pass_shellcheck(config_id: str, path: str, tmp_path: Path) -> None:
    script = tmp_path / Path(path).name
    script.write_text(scripts_of(config_id, "bash")[path])
    result = run([need("shellcheck"), "--norc", "-s", "bash", "-f", "gcc", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr
    syntax = run(["bash", "-n", str(script)])
    assert syntax.returncode == 0, syntax.stderr


def test_every_scaled_script_is_checked() -> None:
    names = {Path(path).name for _, path in SHELL_SCRIPTS}
    assert {
        "photofeed-boot",
        "photofeed-release-once",
        "photofeed-manage",
        "photofeed-deploy",
        "photofeed-activate",
        "photofeed-firstboot",
    } <= names


def test_shellcheck_catches_a_broken_script(tmp_path: Path) -> None:
    script = tmp_path / "broken"
    script.write_text(
        scripts_of("ubuntu-archive", "bash")["/usr/local/sbin/photofeed-boot"] + "rm -rf $undefined_dir/*\n"
    )
    assert run([need("shellcheck"), "--norc", "-s", "bash", "-f", "gcc", str(script)]).returncode != 0


@pytest.mark.parametrize("config_id", DOCUMENTS)
def test_python_programs_compile(config_id: str) -> None:
    programs = scripts_of(config_id, "python")
    assert {Path(path).name.split("-")[-1] for path in programs} == {"aws", "credentials.py"}
    for path, text in programs.items():
        compile(text, path, "exec")


FAKE_BOTO3 = """
import json, os
LOG = os.environ["FAKE_BOTO_LOG"]

def _log(*args):
    with open(LOG, "a") as f:
        f.write(json.dumps(args) + "\\n")

class _Paginator:
    def paginate(self, **kwargs):
        _log("list", kwargs)
        return [{"Contents": [{"Key": "static/site.0123456789ab.css", "Size": 5}]}]

class _Client:
    def __init__(self, service):
        self.service = service
    def get_parameter(self, Name, WithDecryption):
        _log("get_parameter", Name, WithDecryption)
        return {"Parameter": {"Value": "A='1'\\nB='2'"}}
    def get_paginator(self, name):
        return _Paginator()
    def upload_file(self, path, bucket, key, ExtraArgs):
        _log("upload", bucket, key, ExtraArgs)
    def download_file(self, bucket, key, path):
        _log("download", bucket, key)
        with open(path, "w") as f:
            f.write("archive")

def client(service, region_name=None):
    _log("client", service, region_name)
    return _Client(service)
"""


def test_aws_helper_reads_parameters_and_uploads_static_files_once(tmp_path: Path) -> None:
    helper_text = next(text for path, text in scripts_of("ubuntu-archive", "python").items() if path.endswith("-aws"))
    helper = tmp_path / "photofeed-aws"
    helper.write_text(helper_text)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "boto3.py").write_text(FAKE_BOTO3)
    log = tmp_path / "boto.log"
    env = os.environ | {"PYTHONPATH": str(fake), "FAKE_BOTO_LOG": str(log)}

    result = run([sys.executable, str(helper), "get-parameter", "/djangoship/dev/photofeed/env:3"], env=env)
    assert result.returncode == 0 and result.stdout == "A='1'\nB='2'\n", result.stderr
    static = tmp_path / "static"
    (static / "admin").mkdir(parents=True)
    (static / "site.0123456789ab.css").write_text("body{}")  # 6 bytes: differs from the listed 5, uploaded
    (static / "logo.0123456789ab.svg").write_text("<svg/>")
    (static / "logo.0123456789ab.svg.gz").write_bytes(b"gz")  # the deploy's gzip_static copy: stays behind
    (static / "admin" / "base.css").write_text("a{}")
    (static / "archive.tar.gz").write_bytes(b"gz")  # an app's own .gz file (no sibling): uploaded
    result = run([sys.executable, str(helper), "sync-static", str(static), "photofeed-assets", "static"], env=env)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert ["get_parameter", "/djangoship/dev/photofeed/env:3", True] in calls
    assert ["client", "ssm", "us-east-1"] in calls
    uploads = {call[2]: call[3] for call in calls if call[0] == "upload"}
    assert sorted(uploads) == [
        "static/admin/base.css",
        "static/archive.tar.gz",
        "static/logo.0123456789ab.svg",
        "static/site.0123456789ab.css",
    ]
    assert uploads["static/logo.0123456789ab.svg"] == {
        "ContentType": "image/svg+xml",
        "CacheControl": "public, max-age=31536000, immutable",
    }
    assert uploads["static/admin/base.css"] == {"ContentType": "text/css", "CacheControl": "public, max-age=3600"}
    result = run(
        [sys.executable, str(helper), "fetch", "photofeed-artifacts", "releases/x.tar.gz", str(tmp_path / "x.tar.gz")],
        env=env,
    )
    assert result.returncode == 0 and (tmp_path / "x.tar.gz").read_text() == "archive", result.stderr
    assert not list(tmp_path.glob(".fetch-*"))
    assert run([sys.executable, str(helper), "bogus"], env=env).returncode != 0


def test_nginx_accepts_the_app_server_site(tmp_path: Path) -> None:
    nginx = need("nginx")
    if not Path("/etc/nginx/mime.types").exists():
        skip_or_fail("/etc/nginx/mime.types is missing (the distribution's nginx package provides it)")
    site = all_files("ubuntu-archive")["/etc/photofeed/nginx-site.conf"]
    (tmp_path / "site.conf").write_text(site)
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        f"    include /etc/nginx/mime.types;\n    access_log {tmp_path}/access.log;\n{temp_paths}"
        f"    include {tmp_path}/site.conf;\n}}\n"
    )
    result = run([nginx, "-t", "-c", str(tmp_path / "nginx.conf")])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "[warn]" not in output, output
    assert "listen 80 default_server;" in site and "server_name _;" in site, "answers the ALB's health checks by IP"


def test_app_servers_reuse_the_single_servers_templates() -> None:
    plan = scaled_plan(load_settings(SCALED, project="djangoship", stack="dev"))
    files = all_files("ubuntu-archive")
    # In the user-data without their comment lines: the document must stay within EC2's 16 KiB.
    for path, template in (
        ("/etc/systemd/system/gunicorn.service", "systemd/gunicorn.service.j2"),
        ("/etc/systemd/system/gunicorn.socket", "systemd/gunicorn.socket.j2"),
        ("/usr/local/sbin/photofeed-firstboot", "scripts/firstboot.sh.j2"),
    ):
        assert files[path] == without_comment_lines(render(template, plan)), path
    # In the server files' archive as they are, comments and all.
    for path, template in (
        ("/usr/local/lib/photofeed/manage", "scripts/manage.sh.j2"),
        ("/etc/photofeed/gunicorn.conf.py", "gunicorn/gunicorn.conf.py.j2"),
        ("/etc/systemd/system/photofeed-release-check@.service", "systemd/release-check.service.j2"),
    ):
        assert files[path] == render(template, plan), path
    assert files["/etc/photofeed/metadata-block.nft"] == without_comment_lines(
        render("nftables/metadata-block.nft.j2", plan)
    )
    # nftables.service's flush of the ruleset is followed by the block there too.
    assert files["/etc/systemd/system/nftables.service.d/photofeed-metadata-block.conf"] == without_comment_lines(
        render("systemd/nftables-metadata-block.conf.j2", plan)
    )


# --------------------------------------------------------------------------------------------------------
# 7. Front door, outputs, cost, policies
# --------------------------------------------------------------------------------------------------------


def test_cloudfront_serves_static_and_media_from_s3_and_the_rest_from_the_load_balancer(scaled: ProgramRun) -> None:
    cdn = scaled.one(DISTRIBUTION).inputs
    origins = {o["originId"]: o for o in cdn["origins"]}
    assert origins["load-balancer"]["domainName"] == "photofeed-alb-1234567890.us-east-1.elb.amazonaws.com"
    assert origins["load-balancer"]["customOriginConfig"]["originProtocolPolicy"] == "http-only"
    assert origins["assets"]["domainName"] == "photofeed-assets.s3.us-east-1.amazonaws.com"
    assert origins["assets"]["originAccessControlId"] == "E1OAC2EXAMPLE3"
    default = cdn["defaultCacheBehavior"]
    assert default["targetOriginId"] == "load-balancer" and default["cachePolicyId"] == CACHING_DISABLED
    assert default["originRequestPolicyId"] == ALL_VIEWER_AND_CLOUDFRONT_HEADERS
    assert "POST" in default["allowedMethods"] and default["viewerProtocolPolicy"] == "redirect-to-https"
    behaviors = {b["pathPattern"]: b for b in cdn["orderedCacheBehaviors"]}
    assert sorted(behaviors) == ["/media/*", "/static/*"]
    for behavior in behaviors.values():
        assert behavior["targetOriginId"] == "assets" and behavior["cachePolicyId"] == CACHING_OPTIMIZED
        assert behavior["viewerProtocolPolicy"] == "redirect-to-https"
    assert behaviors["/media/*"]["responseHeadersPolicyId"] == "photofeed-uploads-headers-id"
    assert cdn["viewerCertificate"]["cloudfrontDefaultCertificate"] is True
    policy = json.loads(scaled.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    (allow,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"} and allow["Action"] == "s3:GetObject"
    assert allow["Resource"] == ["arn:aws:s3:::photofeed-assets/static/*", "arn:aws:s3:::photofeed-assets/media/*"]
    assert allow["Condition"] == {
        "StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::123456789012:distribution/E2QWRUHAPOMQZL"}
    }
    (listener,) = scaled.of_type(LISTENER)
    assert listener.inputs["port"] == 80 and listener.inputs["defaultActions"][0]["type"] == "fixed-response"
    (rule,) = scaled.of_type("aws:lb/listenerRule:ListenerRule")
    assert rule.inputs["actions"][0]["type"] == "forward"


def test_domain_brings_certificates_https_and_the_records_to_create(with_domain: ProgramRun) -> None:
    (certificate,) = with_domain.of_type("aws:acm/certificate:Certificate")  # us-east-1: one serves both
    assert certificate.inputs["domainName"] == DOMAIN and certificate.inputs["validationMethod"] == "DNS"
    listeners = {item.inputs["port"]: item.inputs for item in with_domain.of_type(LISTENER)}
    assert listeners[80]["defaultActions"][0]["type"] == "redirect"
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["defaultActions"][0]["type"] == "fixed-response"
    assert listeners[443]["certificateArn"] == "arn:aws:acm:us-east-1:123456789012:certificate/photofeed-cert"
    cdn = with_domain.one(DISTRIBUTION).inputs
    assert cdn["aliases"] == [DOMAIN]
    assert cdn["viewerCertificate"]["acmCertificateArn"] == listeners[443]["certificateArn"]
    origin = {o["originId"]: o for o in cdn["origins"]}["load-balancer"]
    assert origin["customOriginConfig"]["originProtocolPolicy"] == "https-only"
    assert [r["fromPort"] for r in with_domain.named("photofeed-alb-sg").inputs["ingress"]] == [443]  # CloudFront's
    assert with_domain.outputs["url"] == f"https://{DOMAIN}"
    assert with_domain.outputs["certificateValidationRecords"] == [
        {
            "name": f"_3b2a1f0e9d8c7b6a.{DOMAIN}.",
            "type": "CNAME",
            "value": "_0f1e2d3c4b5a6978.mhbtsbpdnt.acm-validations.aws.",
        }
    ]
    env = with_domain.named("photofeed-env").inputs["value"]
    assert f"DJANGO_CSRF_TRUSTED_ORIGINS='https://{DOMAIN},https://d111111abcdef8.cloudfront.net'" in env
    assert f"DJANGO_MEDIA_DOMAIN='{DOMAIN}'" in env


def test_outside_us_east_1_cloudfront_gets_its_own_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import mockrun

    answer = mockrun.ProgramMocks.call

    def in_ireland(self: mockrun.ProgramMocks, args: Any) -> dict[str, Any]:
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": "eu-west-1", "region": "eu-west-1", "name": "eu-west-1"}
        return answer(self, args)

    monkeypatch.setattr(mockrun.ProgramMocks, "call", in_ireland)
    run = run_program(SCALED | {"domain": DOMAIN})
    certificates = {c.name: c.inputs.get("region") for c in run.of_type("aws:acm/certificate:Certificate")}
    assert certificates == {"photofeed-cert": None, "photofeed-cdn-cert": "us-east-1"}
    cdn = run.one(DISTRIBUTION).inputs["viewerCertificate"]["acmCertificateArn"]
    assert cdn == "arn:aws:acm:us-east-1:123456789012:certificate/photofeed-cdn-cert"
    https = [item for item in run.of_type(LISTENER) if item.inputs["port"] == 443][0]
    assert https.inputs["certificateArn"] == "arn:aws:acm:us-east-1:123456789012:certificate/photofeed-cert"
    assert len(run.outputs["certificateValidationRecords"]) == 1, "the same record validates both"
    assert run.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs["serviceName"] == "com.amazonaws.eu-west-1.s3"
    assert "AWS_DEFAULT_REGION='eu-west-1'" in run.named("photofeed-env").inputs["value"]


def test_outputs(scaled: ProgramRun) -> None:
    outputs = scaled.outputs
    assert outputs["url"] == "https://d111111abcdef8.cloudfront.net"
    assert outputs["adminUrl"] == "https://d111111abcdef8.cloudfront.net/admin/"
    assert outputs["loadBalancerDns"] == "photofeed-alb-1234567890.us-east-1.elb.amazonaws.com"
    assert outputs["cdnDomain"] == "d111111abcdef8.cloudfront.net"
    assert outputs["databaseEndpoint"] == "photofeed-db.c9akciq32.us-east-1.rds.amazonaws.com:5432"
    assert outputs["mediaBucket"] == "photofeed-assets" and outputs["adminUser"] == "admin"
    assert outputs["artifactsBucket"] == "photofeed-artifacts"
    assert outputs["appServerGroup"].startswith("photofeed-app-")
    assert re.fullmatch(r"[0-9a-f]{12}", outputs["releaseId"])
    assert scaled.secret_outputs == {"adminPassword"}
    assert "certificateValidationRecords" not in outputs


def test_monthly_cost_at_the_defaults(scaled: ProgramRun) -> None:
    # ALB $0.0225/h + 1 LCU $0.008/h + 2 public IPv4 $0.005/h; NAT $0.045/h + its IPv4; 2 × t2.micro $0.0116/h
    # + 10 GB gp3 $0.08; db.t4g.micro $0.016/h + 20 GB gp3 $0.115; KMS key $1; CloudFront $0 base; 730 h.
    expected = (0.0225 + 0.008 + 0.01) * 730 + (0.045 + 0.005) * 730 + 2 * (0.0116 * 730 + 0.8) + 0.016 * 730 + 2.3 + 1
    assert scaled.outputs["monthlyCostUsd"] == pytest.approx(expected, abs=0.01) == 99.58
    multi_az = run_program(SCALED | {"dbMultiAz": True, "appDesiredCapacity": 3})
    extra = 0.016 * 730 + 2.3 + 0.0116 * 730 + 0.8
    assert multi_az.outputs["monthlyCostUsd"] == pytest.approx(99.58 + extra, abs=0.01)
    breakdown = monthly_cost_breakdown(
        instance_type="t2.micro",
        app_servers=2,
        root_volume_gb=10,
        db_instance_class="db.t4g.micro",
        db_storage_gb=20,
        db_multi_az=False,
    )
    assert round(breakdown["NAT gateway"], 2) == 36.50 and breakdown["CloudFront"] == 0


def test_every_aws_resource_is_tagged(with_domain: ProgramRun) -> None:
    untaggable = {
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:cloudfront/originAccessControl:OriginAccessControl",
        "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy",
        "aws:acm/certificateValidation:CertificateValidation",
        "aws:lb/listener:Listener",
        GROUP,  # the group's tags are a list (checked above)
    }
    for resource in with_domain.resources.values():
        if resource.type.startswith("aws:") and resource.type not in untaggable:
            tags = resource.inputs.get("tags") or {}
            assert tags.get("Project") == "djangoship" and tags.get("Stack") == "dev", resource.name


# --- the policy pack (policy/), on this profile's graph ---------------------------------------------------


def policy_violations(resource: Registered, policy_name: str) -> list[str]:
    sys.path.insert(0, str(ROOT / "policy"))
    try:
        import pulumi_policy
        from google.protobuf import json_format, struct_pb2
        from pulumi_policy.deserialize import deserialize_properties
        from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResourceOptions
        from pulumi_policy.proxy import unknown_checking_proxy

        import djangoship_policies as pack  # the pack's folder is not a package
    except ImportError as error:
        skip_or_fail(f"the policy pack cannot be loaded: {error}")
    finally:
        sys.path.remove(str(ROOT / "policy"))
    (policy,) = [p for p in pack.POLICIES if p.name == policy_name]
    struct = struct_pb2.Struct()
    struct.update(resource.inputs)
    props = unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))
    opts = PolicyResourceOptions(False, resource.ignore_changes, None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    args = pulumi_policy.ResourceValidationArgs(resource.type, props, resource.urn, resource.name, opts, None, {}, {})
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


@pytest.mark.parametrize(
    "policy_name",
    [
        "imdsv2-required",
        "encrypted-volumes",
        "no-secrets-in-user-data",
        "allowed-instance-types",
        "no-world-ssh-in-production",
    ],
)
def test_scaled_graph_passes_the_policy_pack(policy_name: str, with_domain: ProgramRun) -> None:
    for resource in with_domain.resources.values():
        assert policy_violations(resource, policy_name) == [], resource.name


def test_database_group_passes_the_no_database_ingress_policy_and_a_network_would_not(scaled: ProgramRun) -> None:
    for group in scaled.of_type(SG):
        assert policy_violations(group, "no-database-ingress") == [], group.name
    # 5432 from the group only; the same port from the VPC's range is refused.
    database = by_name(scaled, "photofeed-db-sg")
    opened = Registered(
        **(
            vars(database)
            | {
                "inputs": database.inputs
                | {"ingress": [database.inputs["ingress"][0] | {"securityGroups": [], "cidrBlocks": ["10.20.0.0/16"]}]}
            }
        )
    )
    assert policy_violations(opened, "no-database-ingress")


# --------------------------------------------------------------------------------------------------------
# 8. `redis: true`: ElastiCache for Valkey
# --------------------------------------------------------------------------------------------------------


def test_redis_is_elasticache_over_tls_reachable_from_the_app_servers_only() -> None:
    run = run_program(SCALED | {"redis": True, "cacheNodeType": "cache.t4g.small"})
    group = run.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert group.inputs["engine"] == "valkey" and group.inputs["nodeType"] == "cache.t4g.small"
    assert group.inputs["transitEncryptionEnabled"] and group.inputs["atRestEncryptionEnabled"]
    assert "authToken" in group.secret_inputs
    subnets = run.one("aws:elasticache/subnetGroup:SubnetGroup").inputs["subnetIds"]
    assert subnets and all("private" in subnet for subnet in subnets), subnets
    cache_sg = by_name(run, "photofeed-cache-sg", SG).inputs
    (rule,) = cache_sg["ingress"]
    assert (rule["fromPort"], rule["toPort"]) == (6379, 6379) and rule["securityGroups"] and not rule.get("cidrBlocks")
    assert cache_sg["egress"] == []
    # The app reads it as on one server, over TLS with the certificate checked; never in user-data.
    env = by_name(run, "photofeed-env", "aws:ssm/parameter:Parameter").inputs["value"]
    password = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs["authToken"]
    url = f"rediss://:{password}@master.photofeed-cache.abcdef.use1.cache.amazonaws.com:6379/0?ssl_cert_reqs=required"
    assert f"REDIS_URL='{url}'" in env and f"DJANGO_REDIS_URL='{url}'" in env
    assert password not in user_data(run)
    # The servers boot after it exists; its price is in the total.
    group_urn = run.one("aws:elasticache/replicationGroup:ReplicationGroup").urn
    assert group_urn in run.one(GROUP).dependencies
    without = run_program(SCALED).outputs["monthlyCostUsd"]
    assert round(run.outputs["monthlyCostUsd"] - without, 2) == round(0.0256 * 730, 2)


def test_without_redis_no_cache_is_declared(scaled: ProgramRun) -> None:
    assert not scaled.of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    assert "REDIS_URL" not in by_name(scaled, "photofeed-env", "aws:ssm/parameter:Parameter").inputs["value"]
