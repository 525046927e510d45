"""A live scaled-profile site on local guests: the program under Pulumi's mocks with `profile: scaled`, the AWS
stand-ins (harness/standins/) seeded with what it declares, and app servers booted by the group stand-in from the
launch template's user-data, byte for byte.

`scaled_site(...)` is to the scaled profile what `harness.localsite.local_site` is to one server: the tests and
benches stand on it. `ScaledSite.up(config)` is `pulumi up` again: the program runs with the same state, the
stand-ins take what changed (parameters, the release archive, the load balancer's settings), and a new launch
template version rolls the group (its instance refresh).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.localsite import IMAGES, NoRedirect
from harness.mockrun import MockState, ProgramRun, Registered, run_program
from harness.standins import operatorapi, runcommand
from harness.standins.access import AccessControl
from harness.standins.agent import agent_location, agent_package
from harness.standins.awsapi import ACCOUNT, REGION, AwsApi
from harness.standins.balancer import HealthCheck, ListenerRules, LoadBalancer
from harness.standins.cache import CacheServer
from harness.standins.cdn import Behavior, Distribution
from harness.standins.database import DatabaseServer
from harness.standins.dns import Resolver
from harness.standins.group import Group, GroupSettings, RefreshResult
from harness.standins.imds import Identity, MetadataService
from harness.standins.tls import Authority
from localboot import DEFAULT_RELEASE, Guest, ensure_rootfs
from localboot.network import BridgeNetwork

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def launch_template_user_data(run: ProgramRun) -> bytes:
    """The launch template's user-data as EC2 hands it to cloud-init: base64-decoded, gzip left to cloud-init."""
    return base64.b64decode(run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"])


def env_values(run: ProgramRun) -> dict[str, str]:
    """The app servers' environment as the program wrote it into its SSM parameter (KEY='value' lines)."""
    parameter = next(p for p in run.of_type("aws:ssm/parameter:Parameter") if p.name.endswith("-env"))
    pairs = (line.split("=", 1) for line in parameter.inputs["value"].splitlines() if "=" in line)
    return {key: value.strip("'") for key, value in pairs}


def _bucket_name(resource: Registered) -> str:
    return resource.inputs.get("bucket") or resource.name


@dataclass
class ScaledSite:
    network: BridgeNetwork
    config: dict[str, Any]
    state: MockState
    run: ProgramRun
    api: AwsApi
    metadata: MetadataService
    database: DatabaseServer
    balancer: LoadBalancer
    cdn: Distribution
    group: Group
    user_data: dict[int, bytes] = field(default_factory=dict)  # launch template version → user-data
    last_refresh: RefreshResult | None = None
    run_command: runcommand.RunCommand | None = None  # Run Command for the operator's verbs
    operator: operatorapi.OperatorApi | None = None  # the operator's other calls (group, load balancer, RDS)

    @property
    def url(self) -> str:
        return self.cdn.url

    @property
    def launch_template_version(self) -> int:
        return self.state.versions[f"launch-template:{self.run.one('aws:ec2/launchTemplate:LaunchTemplate').name}"][1]

    def opener(self, *handlers: Any) -> urllib.request.OpenerDirector:
        return urllib.request.build_opener(self.cdn.handler(), *handlers)

    def http_get(self, url: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """A visitor's GET of `url` (on the site's address) through CloudFront's stand-in, no redirects followed."""
        try:
            with self.opener(NoRedirect).open(url, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get(self, path: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        return self.http_get(self.url + path, timeout)

    # --- pulumi up --------------------------------------------------------------------------------------------

    def apply(self) -> None:
        """What AWS would hold after `pulumi up` of `self.run`: buckets, the release, the parameters."""
        s3 = self.api.client("s3")
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        for bucket in self.run.of_type("aws:s3/bucket:Bucket"):
            if _bucket_name(bucket) not in existing:
                s3.create_bucket(Bucket=_bucket_name(bucket))
                s3.put_bucket_versioning(Bucket=_bucket_name(bucket), VersioningConfiguration={"Status": "Enabled"})
        buckets = {bucket.urn: _bucket_name(bucket) for bucket in self.run.of_type("aws:s3/bucket:Bucket")}
        by_name = {bucket.name: _bucket_name(bucket) for bucket in self.run.of_type("aws:s3/bucket:Bucket")}
        for obj in self.run.of_type("aws:s3/bucketObjectv2:BucketObjectv2"):
            bucket = obj.inputs["bucket"]
            bucket = buckets.get(bucket, by_name.get(bucket, bucket))
            s3.put_object(
                Bucket=bucket,
                Key=obj.inputs["key"],
                Body=(
                    base64.b64decode(obj.inputs["contentBase64"])
                    if "contentBase64" in obj.inputs
                    else Path(obj.inputs["source"]["path"]).read_bytes()
                ),
                ContentType=obj.inputs.get("contentType", "binary/octet-stream"),
            )
        ssm = self.api.client("ssm")
        for parameter in self.run.of_type("aws:ssm/parameter:Parameter"):
            name, value = parameter.inputs["name"], parameter.inputs["value"]
            want = self.state.versions[f"parameter:{name}"][1]
            try:
                have = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
            except ssm.exceptions.ParameterNotFound:
                have = None
            if have is None or have["Value"] != value:
                ssm.put_parameter(
                    Name=name,
                    Value=value,
                    Type=parameter.inputs["type"],
                    KeyId=parameter.inputs.get("keyId"),
                    Overwrite=have is not None,
                )
            version = ssm.get_parameter(Name=name)["Parameter"]["Version"]
            assert version == want, f"{name}: moto holds version {version}, the program's state says {want}"
        self.user_data[self.launch_template_version] = launch_template_user_data(self.run)

    def up(self, config: dict[str, Any] | None = None) -> RefreshResult | None:
        """`pulumi up` again with the same state; a new launch template version rolls the group."""
        if config is not None:
            self.config = {**config, "profile": "scaled", "image": self.config["image"]}
        before = self.launch_template_version
        self.run = run_program(self.config, state=self.state)
        self.api.access.update(self.run)
        self.apply()
        if self.launch_template_version == before:
            return None
        self.last_refresh = self.group.refresh(self.launch_template_version)
        return self.last_refresh


def guest_files(release: str, authority: Authority, nameserver: str) -> dict[str, tuple[bytes, int]]:
    """What the image brings that a guest here lacks: trust in AWS's endpoints (the stand-in CA, in the system
    store as `update-ca-certificates` would write it) and the VPC's resolver."""
    bundle = (ensure_rootfs(release) / CA_BUNDLE.lstrip("/")).read_bytes()
    return {
        "/usr/local/share/ca-certificates/djangoship-standin.crt": (authority.pem, 0o644),
        CA_BUNDLE: (bundle + authority.pem, 0o644),
        "/etc/resolv.conf": (f"nameserver {nameserver}\n".encode(), 0o644),
    }


def _balancer(run: ProgramRun) -> LoadBalancer:
    group = run.one("aws:lb/targetGroup:TargetGroup").inputs
    check = group["healthCheck"]
    rule = run.one("aws:lb/listenerRule:ListenerRule").inputs
    header = rule["conditions"][0]["httpHeader"]
    listener = next(
        r.inputs
        for r in run.of_type("aws:lb/listener:Listener")
        if r.inputs["defaultActions"][0]["type"] == "fixed-response"
    )
    fixed = listener["defaultActions"][0]["fixedResponse"]
    return LoadBalancer(
        ListenerRules(
            header["httpHeaderName"], tuple(header["values"]), int(fixed["statusCode"]), fixed["messageBody"]
        ),
        HealthCheck(
            path=check["path"],
            interval=float(check["interval"]),
            timeout=float(check["timeout"]),
            healthy_threshold=int(check["healthyThreshold"]),
            unhealthy_threshold=int(check["unhealthyThreshold"]),
            matcher=check["matcher"],
        ),
        deregistration_delay=float(group["deregistrationDelay"]),
        idle_timeout=float(run.one("aws:lb/loadBalancer:LoadBalancer").inputs["idleTimeout"]),
    )


def _distribution(
    run: ProgramRun, address: str, authority: Authority, api: AwsApi, balancer: LoadBalancer
) -> Distribution:
    inputs = run.one("aws:cloudfront/distribution:Distribution").inputs
    origins = {origin["originId"]: origin for origin in inputs["origins"]}
    policies = {
        policy.urn: policy.inputs
        for policy in run.of_type("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy")
    }

    def kind(origin_id: str) -> str:
        return "balancer" if "customOriginConfig" in origins[origin_id] else "s3"

    def headers(policy_id: str | None) -> tuple[tuple[str, str], ...]:
        if not policy_id:
            return ()
        config = next(iter(policies.values()))["securityHeadersConfig"]  # the one policy the program declares
        found = []
        if config.get("contentTypeOptions", {}).get("override"):
            found.append(("X-Content-Type-Options", "nosniff"))
        if "contentSecurityPolicy" in config:
            found.append(("Content-Security-Policy", config["contentSecurityPolicy"]["contentSecurityPolicy"]))
        return tuple(found)

    behaviors = [
        Behavior(b["pathPattern"], kind(b["targetOriginId"]), headers(b.get("responseHeadersPolicyId")))
        for b in inputs.get("orderedCacheBehaviors", [])
    ]
    behaviors.append(Behavior("", kind(inputs["defaultCacheBehavior"]["targetOriginId"])))
    balancer_origin = next(o for o in inputs["origins"] if "customOriginConfig" in o)
    s3_origin = next(o for o in inputs["origins"] if "customOriginConfig" not in o)
    bucket = s3_origin["domainName"].split(".s3.")[0]
    return Distribution(
        domain=run.outputs["cdnDomain"],
        address=address,
        authority=authority,
        behaviors=behaviors,
        bucket=bucket,
        s3=api.client("s3"),
        balancer_url=balancer.url,
        origin_headers={h["name"]: h["value"] for h in balancer_origin.get("customHeaders", [])},
    )


@contextlib.contextmanager
def scaled_site(
    network: BridgeNetwork,
    config: dict[str, Any],
    workdir: Path,
    *,
    release: str = DEFAULT_RELEASE,
    fill: bool = True,
    log: Any = print,
) -> Iterator[ScaledSite]:
    """The stand-ins up, seeded from the program's declarations; then the group's app servers, until in service."""
    config = {**config, "profile": "scaled", "image": IMAGES[release]}
    state = MockState(random_passwords=True)
    run = run_program(config, state=state)
    gateway = network.gateway
    subnet = str(ipaddress.ip_interface(f"{gateway}/{network.prefixlen}").network)
    # A loopback address of this run's own for CloudFront's stand-in (port 443, as visitors use it).
    cdn_address = "127." + ".".join(gateway.split(".")[1:])
    authority = Authority()
    database_host = run.outputs["databaseEndpoint"].split(":")[0]
    rds = run.one("aws:rds/instance:Instance").inputs
    with contextlib.ExitStack() as stack:
        stack.enter_context(Resolver(gateway, workdir / "dns.log"))
        access = AccessControl(run)
        api = stack.enter_context(AwsApi(gateway, authority, access=access))

        def instance_credentials(identity: Identity) -> None:
            access.grant(identity.access_key, f"arn:aws:iam::{ACCOUNT}:role/{identity.role}")

        metadata = stack.enter_context(MetadataService(network.name, gateway, REGION, instance_credentials))
        database = stack.enter_context(DatabaseServer(gateway, subnet, authority, database_host))
        database.create_master(rds["username"], rds["password"], rds["dbName"])
        redis_url = env_values(run).get("REDIS_URL")
        if redis_url:  # `redis: true`: ElastiCache
            stack.enter_context(CacheServer(gateway, authority, redis_url))
        balancer = stack.enter_context(_balancer(run))
        cdn = stack.enter_context(_distribution(run, cdn_address, authority, api, balancer))
        s3 = api.client("s3")
        arch = "amd64"
        bucket, key = agent_location(REGION, arch)
        s3.create_bucket(Bucket=bucket)
        # AWS publishes the agent to everyone: the boot's curl asks without credentials.
        s3.put_object(Bucket=bucket, Key=key, Body=agent_package(arch), ACL="public-read")
        files = guest_files(release, authority, gateway)

        def boot(name: str, instance_id: str, user_data: bytes) -> Guest:
            guest = Guest(
                network,
                name,
                user_data,
                {"instance-id": instance_id, "local-hostname": name},
                release=release,
                files=files,
                resolv_conf="off",
            )
            guest.start()
            return guest

        site_holder: dict[str, ScaledSite] = {}
        group_inputs = run.one("aws:autoscaling/group:Group").inputs
        group = Group(
            GroupSettings.declared(group_inputs, run.outputs["appServerGroup"]),
            balancer,
            metadata,
            boot,
            lambda version: site_holder["site"].user_data[version],
            role=run.one("aws:iam/instanceProfile:InstanceProfile").inputs["role"],
            log=log,
        )
        api.autoscaling = group
        site = ScaledSite(network, config, state, run, api, metadata, database, balancer, cdn, group)
        site_holder["site"] = site
        site.run_command = runcommand.for_site(api, access, metadata)
        site.operator = operatorapi.for_site(api, run, group, balancer, database)
        site.apply()
        stack.callback(group.stop_all)
        if fill:
            started = time.monotonic()
            group.fill()
            log(f"[scaled] {len(group.in_service())} app servers in service after {time.monotonic() - started:.0f} s")
            group.watch()
        yield site


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
