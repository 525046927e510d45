"""The djangoship policies: checks that `pulumi preview` and `pulumi up` run on every resource (`--policy-pack
policy`), so that a mistake in the program, a hand-edited stack or a new component cannot open the database to the
internet, leak a secret into user-data or start an unencrypted, IMDSv1 server.

This module only defines the policies; `__main__.py` serves them as a PolicyPack (creating one starts a gRPC server
and blocks, so tests import this module instead). Each check reads a resource's inputs as the engine sends them:
camelCase names, numbers as floats, read-only mappings and sequences (and an unknown value during preview raises,
which the SDK reports as "can't run policy during preview" rather than as a violation).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME = "aws:ebs/volume:Volume"
RDS_INSTANCE = "aws:rds/instance:Instance"

# Duplicated from components/catalog.py on purpose: a policy pack is a separate program (it may be published and
# applied to other stacks), so it does not import the project. tests/test_policy.py keeps the two lists equal.
DATABASE_PORTS = (1433, 1521, 3306, 5432, 6379, 6432, 27017)
DEFAULT_INSTANCE_TYPES = (
    "m7i.large",
    "t2.medium",
    "t2.micro",
    "t2.nano",
    "t2.small",
    "t3.medium",
    "t3.micro",
    "t3.nano",
    "t3.small",
    "t3a.micro",
    "t3a.small",
    "t4g.medium",
    "t4g.micro",
    "t4g.nano",
    "t4g.small",
)
WORLD = ("0.0.0.0/0", "::/0")
SSH_PORT = 22
# Guards against a gzip bomb in user-data: EC2 takes 16 KiB, cloud-init never needs more than this unpacked.
MAX_USER_DATA_BYTES = 4 * 1024 * 1024

# Settings such as cloud-init's `lock_passwd: true` name a password without holding one.
NOT_SECRET_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", "~"})
# What a secret looks like in first-boot text. The messages name the pattern and the variable, never the value.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "a password or key assignment",
        # NAME=value or name: value with a literal value; `$VAR`, `${VAR}` and `$(cmd)` read it at run time.
        re.compile(
            r"(?P<name>\b[A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET_KEY|SECRET|API_KEY|ACCESS_KEY|PRIVATE_KEY|TOKEN))\s*[=:]\s*[\"']?"
            r"(?![\s$\"'{<])(?P<value>[^\s\"']+)",
            re.IGNORECASE,
        ),
    ),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret access key", re.compile(r"aws_secret_access_key", re.IGNORECASE)),
)


# --- reading the engine's values ----------------------------------------------------------------------------------


def _items(value: Any) -> list[Any]:
    """A list input as a list; absent (None) as empty. Strings are sequences too, and never a list here."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_true(value: Any) -> bool:
    """Booleans arrive as bools, but some AWS inputs (launch template EBS settings) are the strings "true"/"false"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def stack_of(urn: str) -> str:
    """The stack name from a URN, `urn:pulumi:<stack>::<project>::<type>::<name>`. The CLI also sets PULUMI_STACK
    for the pack (so `pulumi.get_stack()` works there), but the URN travels with every resource: no global state."""
    return urn.removeprefix("urn:pulumi:").split("::", 1)[0] if urn.startswith("urn:pulumi:") else ""


class Ingress(NamedTuple):
    """One ingress permission, whatever resource type declared it."""

    from_port: int
    to_port: int
    networks: tuple[str, ...]  # CIDRs and prefix lists; sources that are security groups are not networks

    def covers(self, port: int) -> bool:
        return self.from_port <= port <= self.to_port

    def describe(self) -> str:
        ports = str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"
        return f"ports {ports} from {', '.join(self.networks)}"


def _ingress(protocol: Any, from_port: Any, to_port: Any, networks: list[Any]) -> Ingress | None:
    protocol = str(protocol).lower()
    if protocol in {"icmp", "1", "icmpv6", "58"}:
        return None  # ICMP "ports" are message types
    sources = tuple(str(network) for network in networks if network)
    if protocol in {"-1", "all"} or from_port is None:
        return Ingress(0, 65535, sources)  # every protocol means every port, whatever fromPort says
    return Ingress(int(from_port), int(to_port if to_port is not None else from_port), sources)


def ingress_rules(resource_type: str, props: Mapping[str, Any]) -> Iterator[Ingress]:
    """The ingress a security group resource grants: inline rules, a SecurityGroupRule of type "ingress", or a
    VPC SecurityGroupIngressRule."""
    found: Ingress | None = None
    if resource_type == SECURITY_GROUP:
        for rule in map(_map, _items(props.get("ingress"))):
            networks = [*_items(rule.get("cidrBlocks")), *_items(rule.get("ipv6CidrBlocks"))]
            networks += _items(rule.get("prefixListIds"))
            found = _ingress(rule.get("protocol", "tcp"), rule.get("fromPort"), rule.get("toPort"), networks)
            if found:
                yield found
        return
    if resource_type == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        networks = [*_items(props.get("cidrBlocks")), *_items(props.get("ipv6CidrBlocks"))]
        networks += _items(props.get("prefixListIds"))
        found = _ingress(props.get("protocol", "tcp"), props.get("fromPort"), props.get("toPort"), networks)
    elif resource_type == INGRESS_RULE:
        networks = [props.get("cidrIpv4"), props.get("cidrIpv6"), props.get("prefixListId")]
        found = _ingress(props.get("ipProtocol", "tcp"), props.get("fromPort"), props.get("toPort"), networks)
    if found:
        yield found


def user_data_layers(value: str) -> list[str]:
    """The user-data as given and every layer beneath it: EC2 takes it base64-encoded (`userDataBase64`, launch
    templates) and cloud-init unpacks gzip, so a secret can hide under either, or both."""
    layers = [value]
    data = value.encode()
    for _ in range(3):
        if data[:2] == b"\x1f\x8b":
            try:
                data = zlib.decompressobj(wbits=31).decompress(data, MAX_USER_DATA_BYTES)
            except zlib.error:
                break
        else:
            compact = re.sub(rb"\s+", b"", data)
            if len(compact) < 8 or not re.fullmatch(rb"[A-Za-z0-9+/]+={0,2}", compact):
                break
            try:
                data = base64.b64decode(compact, validate=True)
            except (binascii.Error, ValueError):
                break
        layers.append(data.decode("utf-8", errors="replace"))
    return layers


def secrets_in(text: str) -> list[str]:
    """What in the text looks like a secret, described without the secret itself."""
    found = []
    for label, pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            name, value = match.groupdict().get("name"), match.groupdict().get("value")
            if value and value.lower() in NOT_SECRET_VALUES:
                continue
            found.append(f"{label} ({name}=…)" if name else label)
    return sorted(set(found))


# --- the checks ---------------------------------------------------------------------------------------------------


def no_database_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for rule in ingress_rules(args.resource_type, args.props):
        opened = [port for port in DATABASE_PORTS if rule.covers(port)]
        # From another security group only (a managed database reached from the app servers' group) no network
        # is opened; any address range is refused, the internet's or a "private" one.
        if opened and rule.networks:
            report_violation(
                f"{args.name}: ingress {rule.describe()} opens database port(s) {', '.join(map(str, opened))}; "
                "the database listens on localhost only and is never reachable from outside",
                None,
            )


def no_world_ssh_in_production(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    stack = stack_of(args.urn)
    if not stack.startswith("prod"):
        return
    for rule in ingress_rules(args.resource_type, args.props):
        world = [network for network in rule.networks if network in WORLD]
        if rule.covers(SSH_PORT) and world:
            report_violation(
                f"{args.name}: SSH (port 22) is open to {', '.join(world)} on production stack {stack!r}; "
                "set sshAllowedCidrs to your own networks",
                None,
            )


def allowed_instance_type(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return
    allowed = list(args.get_config().get("allowedTypes") or DEFAULT_INSTANCE_TYPES)
    chosen = args.props.get("instanceType")
    if chosen is None and args.resource_type == LAUNCH_TEMPLATE:
        return  # the instance that uses the template names the type
    if chosen not in allowed:
        report_violation(
            f"{args.name}: instance type {chosen!r} is not allowed; allowed: {', '.join(sorted(allowed))}", None
        )


def imdsv2_required(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return
    tokens = _map(args.props.get("metadataOptions")).get("httpTokens")
    if tokens != "required":
        report_violation(
            f"{args.name}: metadataOptions.httpTokens is {tokens!r}, must be 'required' (IMDSv2 only), so that a "
            "request forged through the app (SSRF) cannot read the instance's credentials",
            None,
        )


def encrypted_volumes(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    unencrypted: list[tuple[str, str]] = []  # (what, the setting that fixes it)
    if args.resource_type == INSTANCE:
        # No rootBlockDevice means the AMI's default, unencrypted unless the account encrypts by default.
        if not _is_true(_map(props.get("rootBlockDevice")).get("encrypted")):
            unencrypted.append(("rootBlockDevice", "encrypted"))
        for device in map(_map, _items(props.get("ebsBlockDevices"))):
            if not _is_true(device.get("encrypted")):
                unencrypted.append((f"ebsBlockDevices[{device.get('deviceName', '?')}]", "encrypted"))
    elif args.resource_type == EBS_VOLUME:
        if not _is_true(props.get("encrypted")):
            unencrypted.append(("the volume", "encrypted"))
    elif args.resource_type == RDS_INSTANCE:
        if not _is_true(props.get("storageEncrypted")):
            unencrypted.append(("the database storage", "storageEncrypted"))
    elif args.resource_type == LAUNCH_TEMPLATE:
        for mapping in map(_map, _items(props.get("blockDeviceMappings"))):
            ebs = _map(mapping.get("ebs"))
            if ebs and not _is_true(ebs.get("encrypted")):
                unencrypted.append((f"blockDeviceMappings[{mapping.get('deviceName', '?')}]", "encrypted"))
    for what, setting in unencrypted:
        report_violation(f"{args.name}: {what} is not encrypted; set {setting}: true", None)


def no_secrets_in_user_data(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return
    for key in ("userData", "userDataBase64"):
        value = args.props.get(key)
        if not isinstance(value, str) or not value:
            continue
        found = sorted({item for layer in user_data_layers(value) for item in secrets_in(layer)})
        if found:
            report_violation(
                f"{args.name}: {key} contains {'; '.join(found)}. User-data is readable by anyone who can describe "
                "the instance and from inside it: deliver secrets over SSH or from a secret store instead",
                None,
            )


def _policy(name: str, description: str, validate: Any, **extra: Any) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        **extra,
    )


POLICIES: list[ResourceValidationPolicy] = [
    _policy(
        "no-database-ingress",
        "Security groups never open a database port (PostgreSQL, MySQL, Redis, …) to any network, not even a narrow "
        "one; only other security groups may reach one.",
        no_database_ingress,
    ),
    _policy(
        "no-world-ssh-in-production",
        "On stacks whose name starts with 'prod', SSH is not open to 0.0.0.0/0 or ::/0.",
        no_world_ssh_in_production,
    ),
    _policy(
        "allowed-instance-types",
        "EC2 instances and launch templates use an instance type from the allowed list.",
        allowed_instance_type,
        config_schema=PolicyConfigSchema(
            properties={
                "allowedTypes": {
                    "type": "array",
                    "items": {"type": "string"},
                    "default": list(DEFAULT_INSTANCE_TYPES),
                }
            }
        ),
    ),
    _policy(
        "imdsv2-required",
        "EC2 instances and launch templates require IMDSv2 session tokens (metadataOptions.httpTokens: required).",
        imdsv2_required,
    ),
    _policy(
        "encrypted-volumes",
        "EBS volumes, instance and launch template block devices, and RDS storage are encrypted.",
        encrypted_volumes,
    ),
    _policy(
        "no-secrets-in-user-data",
        "User-data holds no password, secret key, private key or AWS key (checked through base64 and gzip).",
        no_secrets_in_user_data,
    ),
]
