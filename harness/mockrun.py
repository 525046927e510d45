"""Run the real `__main__.py` under Pulumi's mocks and record what it declares, as the engine would see it.

The Pulumi CLI cannot run here, so this is how the program is exercised: the unit tests read the record
(resources, inputs, which inputs are secret, dependencies, resource options, stack outputs), and the local
first boot replays the recorded remote commands over real SSH (harness/replay.py).

`MockState` stands in for Pulumi's state file: generated values (passwords, keys, ids) keep their values
from one run to the next, as they would in a real stack, so that a second run can be compared to the first.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from server.rootstep import SentStep, read_sent_step

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = PROJECT_ROOT / "__main__.py"
PROJECT = "djangoship"
SECRET_SIG = rpc._special_sig_key  # the key that marks a serialized secret
SECRET_VALUE = rpc._special_secret_sig


@dataclass
class Registered:
    """One resource as registered with the engine."""

    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]  # plain values, secrets unwrapped
    secret_inputs: set[str]  # top-level input names that were marked secret
    dependencies: list[str]  # URNs
    ignore_changes: list[str]
    replacement_trigger: Any
    protect: bool | None
    retain_on_delete: bool | None
    custom_timeouts: dict[str, str]

    @property
    def sent(self) -> SentStep:
        """A remote command as the server receives it: its label, its script and what the script reads on stdin."""
        return read_sent_step(self.inputs["create"], self.inputs["stdin"])


# The resources that are remote steps: run over SSH, in dependency order (ProgramRun.steps).
STEP_TYPES = frozenset({"command:remote:Command", "command:remote:CopyToRemote"})


@dataclass
class ProgramRun:
    resources: dict[str, Registered]  # by URN, in registration order
    outputs: dict[str, Any]
    secret_outputs: set[str]
    invokes: list[tuple[str, dict[str, Any]]]
    error: BaseException | None = None  # with expect_error: what the program raised

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources.values() if r.type == type_]

    def one(self, type_: str) -> Registered:
        found = self.of_type(type_)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_}, found {[r.name for r in found]}")
        return found[0]

    def named(self, name: str) -> Registered:
        for resource in self.resources.values():
            if resource.name == name:
                return resource
        raise KeyError(name)

    def steps(self) -> list[Registered]:
        """The remote commands and uploads, in an order that respects their dependencies (Kahn's algorithm,
        ties broken by name: steps that Pulumi runs side by side register in no fixed order)."""
        pending = [r for r in self.resources.values() if r.type in STEP_TYPES]
        done: list[Registered] = []
        while pending:
            ready = self.ready_steps(pending, {r.urn for r in done})
            if not ready:
                raise AssertionError(f"dependency cycle among {[r.name for r in pending]}")
            done.append(ready[0])
            pending.remove(ready[0])
        return done

    def ready_steps(self, pending: list[Registered], done: set[str]) -> list[Registered]:
        """Those of `pending` whose every dependency that is a step is among the `done` URNs, by name. Pulumi's
        engine starts them all at once."""
        steps = {r.urn for r in self.resources.values() if r.type in STEP_TYPES}
        ready = (r for r in pending if all(d in done or d not in steps for d in r.dependencies))
        return sorted(ready, key=lambda r: r.name)

    def depends_on(self, resource: Registered, other: Registered) -> bool:
        return other.urn in resource.dependencies


@dataclass
class MockState:
    """Values a real stack would keep in its state between `pulumi up` runs."""

    public_ip: str = "203.0.113.10"
    instance_id: str = "i-0123456789abcdef0"
    ami_id: str = "ami-0123456789abcdef0"
    generated_key: tuple[str, str] | None = None  # (OpenSSH private key, public key line)
    passwords: dict[str, str] = field(default_factory=dict)
    # Deterministic passwords make failing tests reproducible; the local boot asks for real randomness.
    random_passwords: bool = False
    # Versioned resources (an SSM parameter's value, a launch template's inputs): key → (content digest, version).
    versions: dict[str, tuple[str, int]] = field(default_factory=dict)

    def version(self, key: str, content: Any) -> int:
        """The version the provider reports: 1 when created, one more each time the content changed."""
        text = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
        known, number = self.versions.get(key, ("", 0))
        if known != text:
            number += 1
            self.versions[key] = (text, number)
        return number

    def password(self, name: str, length: int, special: str) -> str:
        if name not in self.passwords:
            if self.random_passwords:
                alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + special
                self.passwords[name] = "".join(secrets.choice(alphabet) for _ in range(length))
            else:
                seed = hashlib.sha256(name.encode()).hexdigest()
                self.passwords[name] = ("S3cr3t" + seed)[:length]
        return self.passwords[name]


class ProgramMocks(pulumi.runtime.Mocks):
    """Provider stand-ins: each returns what the real provider would report after create."""

    def __init__(self, state: MockState):
        self.state = state
        self.invokes: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        typ = args.typ
        # --- profile "scaled" (components/scaled/): what those providers report after create -------------
        if typ == "aws:s3/bucket:Bucket" and args.name.endswith(("-assets", "-artifacts")):
            bucket = args.inputs.get("bucket", args.name)
            return bucket, outputs | {
                "arn": f"arn:aws:s3:::{bucket}",
                "bucketRegionalDomainName": f"{bucket}.s3.us-east-1.amazonaws.com",
            }
        if typ == "aws:ec2/vpc:Vpc":
            return "vpc-0123456789abcdef0", outputs | {
                "arn": "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-0123456789abcdef0"
            }
        if typ == "aws:ec2/subnet:Subnet":
            return f"subnet-{args.name}", outputs
        if typ == "aws:lb/loadBalancer:LoadBalancer":
            arn = f"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/{args.name}/50dc6c495c0c9188"
            return arn, outputs | {
                "arn": arn,
                "dnsName": f"{args.name}-1234567890.us-east-1.elb.amazonaws.com",
                "zoneId": "Z35SXDOTRQ7X7K",
            }
        if typ == "aws:lb/targetGroup:TargetGroup":
            arn = f"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{args.name}/73e2d6bc24d8a067"
            return arn, outputs | {"arn": arn}
        if typ == "aws:cloudfront/distribution:Distribution":
            return "E2QWRUHAPOMQZL", outputs | {
                "arn": "arn:aws:cloudfront::123456789012:distribution/E2QWRUHAPOMQZL",
                "domainName": "d111111abcdef8.cloudfront.net",
                "hostedZoneId": "Z2FDTNDATAQYW2",
            }
        if typ == "aws:rds/instance:Instance":
            address = f"{args.name}.c9akciq32.us-east-1.rds.amazonaws.com"
            return f"db-{args.name}", outputs | {
                "address": address,
                "port": 5432,
                "endpoint": f"{address}:5432",
                "arn": f"arn:aws:rds:us-east-1:123456789012:db:{args.name}",
            }
        if typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            return args.name, outputs | {
                "primaryEndpointAddress": f"master.{args.name}.abcdef.use1.cache.amazonaws.com",
                "arn": f"arn:aws:elasticache:us-east-1:123456789012:replicationgroup:{args.name}",
            }
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            return "lt-0123456789abcdef0", outputs | {
                "latestVersion": self.state.version(f"launch-template:{args.name}", args.inputs),
                "arn": "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-0123456789abcdef0",
            }
        if typ == "aws:ssm/parameter:Parameter":
            name = args.inputs.get("name", args.name)
            version = self.state.version(f"parameter:{name}", args.inputs.get("value"))
            return name, outputs | {"arn": f"arn:aws:ssm:us-east-1:123456789012:parameter{name}", "version": version}
        if typ == "aws:kms/key:Key":
            key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
            return key_id, outputs | {"keyId": key_id, "arn": f"arn:aws:kms:us-east-1:123456789012:key/{key_id}"}
        if typ == "aws:acm/certificate:Certificate":
            domain = args.inputs.get("domainName", "")
            region = args.inputs.get("region") or "us-east-1"
            arn = f"arn:aws:acm:{region}:123456789012:certificate/{args.name}"
            record = {
                "domainName": domain,
                "resourceRecordName": f"_3b2a1f0e9d8c7b6a.{domain}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": "_0f1e2d3c4b5a6978.mhbtsbpdnt.acm-validations.aws.",
            }
            return arn, outputs | {"arn": arn, "domainValidationOptions": [record], "status": "PENDING_VALIDATION"}
        if typ == "aws:cloudfront/originAccessControl:OriginAccessControl":
            return "E1OAC2EXAMPLE3", outputs
        if typ == "aws:autoscaling/group:Group":
            name = f"{args.inputs.get('namePrefix', args.name + '-')}20260101000000000000000001"
            return name, outputs | {
                "name": name,
                "arn": f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:uuid:autoScalingGroupName/{name}",
            }
        # --- end of profile "scaled" ------------------------------------------------------------------------
        if typ == "aws:ec2/instance:Instance":
            return self.state.instance_id, outputs | {
                "publicIp": "198.51.100.7",
                "arn": f"arn:aws:ec2:::instance/{self.state.instance_id}",
            }
        if typ == "aws:ec2/eip:Eip":
            return "eipalloc-0123456789", outputs | {
                "publicIp": self.state.public_ip,
                "allocationId": "eipalloc-0123456789",
            }
        if typ == "aws:ebs/volume:Volume":
            return "vol-0123456789abcdef0", outputs
        if typ == "aws:s3/bucket:Bucket":
            return args.inputs.get("bucket", args.name), outputs | {
                "arn": f"arn:aws:s3:::{args.inputs.get('bucket', args.name)}"
            }
        if typ == "aws:iam/role:Role":
            return args.name, outputs | {"name": args.name, "arn": f"arn:aws:iam::123456789012:role/{args.name}"}
        if typ == "aws:iam/instanceProfile:InstanceProfile":
            return args.name, outputs | {"name": args.name}
        if typ == "aws:ec2/keyPair:KeyPair":
            return f"{args.name}", outputs | {"keyName": args.name}
        if typ == "tls:index/privateKey:PrivateKey":
            private, public = self.state.generated_key or fixed_test_key()
            return f"{args.name}-id", outputs | {"privateKeyOpenssh": private, "publicKeyOpenssh": public + "\n"}
        if typ == "random:index/randomPassword:RandomPassword":
            special = args.inputs.get("overrideSpecial", "") if args.inputs.get("special") else ""
            value = self.state.password(args.name, int(args.inputs["length"]), special)
            return f"{args.name}-id", outputs | {"result": value}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.invokes.append((args.token, dict(args.args)))
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": ["us-east-1a", "us-east-1b", "us-east-1c"],
                "zoneIds": ["use1-az1", "use1-az2", "use1-az4"],
            }
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": "us-east-1", "region": "us-east-1", "id": "us-east-1"}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": self.state.ami_id, "name": "mock-image", "architecture": "x86_64"}
        # profile "scaled"
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "id": "123456789012",
                "accountId": "123456789012",
                "arn": "arn:aws:iam::123456789012:user/operator",
                "userId": "AIDAEXAMPLEOPERATOR",
            }
        return {}


def fixed_test_key() -> tuple[str, str]:
    """A stable key for unit tests (generated once per process): no network, no disk. Locked: the mocks create
    a program's keys (login, host) on threads of their own, and two first calls at once made two keys."""
    global _test_key
    with _test_key_lock:
        if _test_key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            key = Ed25519PrivateKey.generate()
            private = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ).decode()
            public = (
                key.public_key()
                .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                .decode()
            )
            _test_key = (private, public)
        return _test_key


_test_key: tuple[str, str] | None = None
_test_key_lock = threading.Lock()


def _unwrap(value: Any) -> tuple[Any, bool]:
    """Plain value and whether it (or anything inside) was a secret. A file asset becomes its path and
    content hash: the engine, too, compares assets by their hash."""
    if isinstance(value, pulumi.FileAsset):
        return {"path": value.path, "sha256": hashlib.sha256(Path(value.path).read_bytes()).hexdigest()}, False
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            inner, _ = _unwrap(value.get("value"))
            return inner, True
        pairs = {key: _unwrap(item) for key, item in value.items()}
        return {key: item for key, (item, _) in pairs.items()}, any(flag for _, flag in pairs.values())
    if isinstance(value, list):
        pairs_list = [_unwrap(item) for item in value]
        return [item for item, _ in pairs_list], any(flag for _, flag in pairs_list)
    return value, False


class RecordingMonitor(runtime_mocks.MockMonitor):
    """The mock engine, also keeping what the real engine would get: dependencies and options."""

    def __init__(self, mocks: ProgramMocks):
        super().__init__(mocks)
        self.recorded: dict[str, Registered] = {}

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = rpc.deserialize_properties(request.object, keep_internal=True)
        inputs: dict[str, Any] = {}
        secret_inputs: set[str] = set()
        for key, value in (raw or {}).items():
            plain, is_secret = _unwrap(value)
            inputs[key] = plain
            if is_secret:
                secret_inputs.add(key)
        timeouts = request.customTimeouts
        self.recorded[response.urn] = Registered(
            type=request.type,
            name=request.name,
            urn=response.urn,
            parent=request.parent,
            inputs=inputs,
            secret_inputs=secret_inputs,
            dependencies=list(request.dependencies),
            ignore_changes=list(request.ignoreChanges),
            replacement_trigger=json_format.MessageToDict(request.replacement_trigger)
            if request.HasField("replacement_trigger")
            else None,
            protect=request.protect if request.HasField("protect") else None,
            retain_on_delete=request.retainOnDelete if request.HasField("retainOnDelete") else None,
            custom_timeouts={"create": timeouts.create, "update": timeouts.update, "delete": timeouts.delete},
        )
        return response


def config_values(config: dict[str, Any]) -> dict[str, str]:
    """Stack config as the CLI hands it to a program: `project:key` → text (JSON for lists and maps)."""
    return {f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def run_program(
    config: dict[str, Any] | None = None,
    *,
    secret_keys: tuple[str, ...] = (),
    state: MockState | None = None,
    stack: str = "dev",
    expect_error: bool = False,
) -> ProgramRun:
    """Evaluate the program once, as `pulumi up` would (not preview: every output is known)."""
    state = state or MockState()
    mocks = ProgramMocks(state)
    monitor = RecordingMonitor(mocks)
    # A fresh stack for each run: set_mocks reuses an existing root resource, and with it its outputs.
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config_values(config or {}), secret_keys=[f"{PROJECT}:{key}" for key in secret_keys])
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(PROGRAM), run_name="__main__")))
    except Exception as error:  # noqa: BLE001 — handed to the caller that expects it
        if not expect_error:
            raise
        return ProgramRun(dict(monitor.recorded), {}, set(), mocks.invokes, error=error)
    if expect_error:
        raise AssertionError("the program was expected to fail, and did not")

    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()
    root = pulumi.runtime.get_root_resource()
    for key, value in getattr(root, "outputs", {}).items():
        output = pulumi.Output.from_input(value)
        outputs[key] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            secret_outputs.add(key)
    return ProgramRun(
        resources=dict(monitor.recorded), outputs=outputs, secret_outputs=secret_outputs, invokes=mocks.invokes
    )
