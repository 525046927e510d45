"""Profile `scaled` (profiles/scaled.py) under Pulumi's mocks: the graph an operator cares about.

1. Exposure: nothing public but the load balancer and CloudFront; each security group admits only the one before.
2. Data at rest: every store encrypted; the launch template IMDSv2-only.
3. Secrets: never in user-data, only in the SSM SecureStrings (marked secret), readable by the app servers alone.
4. The two profiles do not leak into each other; bad settings fail before anything is declared.
5. Releases: a new one rolls the group (launch template version, instance refresh); migrations run once per
   release, shown in the rendered scripts (for real, servers racing on a local PostgreSQL: test_scaled_gates.py).
6. (What an app server receives, through the validators: test_scaled_server_files.py.)
7. Cost at the defaults, outputs, the policy pack.
8. Redis: ElastiCache over TLS, reachable from the app servers only.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import skip_or_fail

from catalog.scaledcost import monthly_cost_breakdown
from components.scaled.cdn import ALL_VIEWER_AND_CLOUDFRONT_HEADERS, CACHING_DISABLED, CACHING_OPTIMIZED
from harness.mockrun import MockState, ProgramRun, Registered, run_program
from harness.serverfiles import BUCKET_OBJECT, app_server_files, server_files_archive, written_files
from server.appfiles import read_configure_stdin
from server.appserver import (
    GATE_ENV,
    RELEASE_TABLE,
    release_lock_key,
)

ROOT = Path(__file__).resolve().parent.parent.parent
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
    single, _ = read_configure_stdin(run_program({}, state=MockState()).named("photofeed-configure").sent.rest)
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
