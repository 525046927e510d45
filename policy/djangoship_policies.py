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
import ipaddress
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
    StackValidationArgs,
    StackValidationPolicy,
)

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME = "aws:ebs/volume:Volume"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"

# Duplicated from catalog/offerings.py on purpose: a policy pack is a separate program (it may be published and
# applied to other stacks), so it does not import the project. tests/fast/test_policy.py keeps the two lists equal.
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
# Stack names that mean production, as whole words of the name in any case: prod, Prod-EU, eu-prd, live, production.
PRODUCTION_WORDS = re.compile(r"(?:^|[^a-z0-9])(?:prod[a-z0-9]*|prd|live)(?:$|[^a-z0-9])")
# The public address space (what "the internet" means for an ingress rule): IPv4 but for the private, shared,
# loopback, link-local, multicast and reserved blocks; IPv6's global unicast block.
_NOT_PUBLIC_V4 = [
    ipaddress.IPv4Network(block)
    for block in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


def _public_v4() -> list[ipaddress.IPv4Network]:
    blocks = [ipaddress.IPv4Network("0.0.0.0/0")]
    for reserved in _NOT_PUBLIC_V4:
        blocks = [part for block in blocks for part in _without(block, reserved)]
    return sorted(blocks)


def _without(block: Any, reserved: Any) -> list[Any]:
    if not block.overlaps(reserved):
        return [block]
    if block.subnet_of(reserved):
        return []
    return list(block.address_exclude(reserved))


PUBLIC_V4 = _public_v4()
PUBLIC_V6 = [ipaddress.IPv6Network("2000::/3")]
# SSH open to more than this much of the public internet is "the world" on production, however it is written
# (0.0.0.0/0, or 0.0.0.0/1 + 128.0.0.0/1): no operator's own network is larger than a /8 (IPv4, the largest
# allocation ever made to one organisation) or a /32 (IPv6, a whole ISP's allocation).
MAX_SSH_ADDRESSES = {4: 2**24, 6: 2**96}
# Guards against a gzip bomb in user-data: EC2 takes 16 KiB, cloud-init never needs more than this unpacked.
MAX_USER_DATA_BYTES = 4 * 1024 * 1024

# Settings such as cloud-init's `lock_passwd: true` name a password without holding one.
NOT_SECRET_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", "~"})
# What a secret looks like in first-boot text. The messages name the pattern and the variable, never the value.
_SECRET_NAME = (
    r"\b[A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET_KEY|SECRET|API_KEY|ACCESS_KEY|PRIVATE_KEY|TOKEN)"
    r"|\b(?:[A-Za-z0-9]+_)*(?:PASS|PWD)\b"
)
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "a password or key assignment",
        # NAME=value or name: value with a literal value; `$VAR`, `${VAR}` and `$(cmd)` read it at run time.
        # PASS and PWD count as whole words only (DB_PASS, not BYPASS).
        re.compile(
            rf"(?P<name>{_SECRET_NAME})\s*[=:]\s*[\"']?(?![\s$\"'{{<])(?P<value>[^\s\"']+)",
            re.IGNORECASE,
        ),
    ),
    (
        "a password or key assignment",
        # JSON and dict literals: "password": "value" (a quoted name takes a quoted value; a bare word after it is
        # a variable, as in headers={"X-aws-ec2-metadata-token": ticket}).
        re.compile(
            rf"[\"'](?P<name>{_SECRET_NAME})[\"']\s*:\s*[\"'](?![\s$\"'{{<])(?P<value>[^\s\"']+)[\"']",
            re.IGNORECASE,
        ),
    ),
    # postgres://user:password@host/db, https://user:token@host/repo.git: a URL that carries its credentials.
    (
        "a URL with a password",
        re.compile(r"\b(?P<name>[a-z][a-z0-9+.-]*)://[^\s:/@\"']+:(?![$\s@])(?P<value>[^\s@/\"']+)@", re.IGNORECASE),
    ),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret access key", re.compile(r"aws_secret_access_key", re.IGNORECASE)),
)
# A base64 block inside the text (write_files' `encoding: b64` or `gz+b64`, a MIME part), maybe over several
# lines of a YAML block scalar: at least 16 characters, so that words and paths are not taken for one.
BASE64_BLOCK = re.compile(
    r"(?<![A-Za-z0-9+/=])(?:[A-Za-z0-9+/]{4}(?:[ \t]*\n[ \t]*)?){4,}"
    r"(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?(?![A-Za-z0-9+/=])"
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


def _unpacked(data: bytes) -> bytes | None:
    """One layer down: gzip unpacked, or base64 decoded; None when the data is neither."""
    if data[:2] == b"\x1f\x8b":
        try:
            return zlib.decompressobj(wbits=31).decompress(data, MAX_USER_DATA_BYTES)
        except zlib.error:
            return None
    compact = re.sub(rb"\s+", b"", data)
    if len(compact) < 8 or not re.fullmatch(rb"[A-Za-z0-9+/]+={0,2}", compact):
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def user_data_layers(value: str) -> list[str]:
    """The user-data as given and every layer beneath it: EC2 takes it base64-encoded (`userDataBase64`, launch
    templates) and cloud-init unpacks gzip, so a secret can hide under either, or both — and inside the document,
    in write_files with `encoding: b64` or `gz+b64` (`gzip+base64`), under the same two."""
    layers = [value]
    data = value.encode()
    for _ in range(3):
        unpacked = _unpacked(data)
        if unpacked is None:
            break
        data = unpacked
        layers.append(data.decode("utf-8", errors="replace"))
    return layers + [inner for layer in layers for inner in embedded_layers(layer)]


def embedded_layers(text: str, depth: int = 2) -> list[str]:
    """The text of every base64 block inside `text` (gzip unpacked), and of the blocks inside those."""
    found: list[str] = []
    for block in BASE64_BLOCK.finditer(text):
        data = _unpacked(block.group().encode())
        if data is None:
            continue
        if data[:2] == b"\x1f\x8b":
            data = _unpacked(data)
            if data is None:
                continue
        inner = data.decode("utf-8", errors="replace")
        found.append(inner)
        if depth > 1:
            found += embedded_layers(inner, depth - 1)
    return found


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


def is_production(stack: str) -> bool:
    """prod, Prod, prod-eu, production, eu-prd, live, shop-live: a word of the name, in any case."""
    return bool(PRODUCTION_WORDS.search(stack.lower()))


def public_addresses(networks: Sequence[str], version: int) -> int:
    """How many public addresses (PUBLIC_V4 / PUBLIC_V6) the networks reach together, overlaps counted once."""
    parsed = []
    for network in networks:
        try:
            parsed.append(ipaddress.ip_network(network, strict=False))
        except ValueError:
            continue  # a prefix list id or a security group: no addresses of its own here
    union: list[Any] = list(ipaddress.collapse_addresses(net for net in parsed if net.version == version))  # type: ignore[type-var]
    public = PUBLIC_V4 if version == 4 else PUBLIC_V6
    total = 0
    for net in union:
        for block in public:
            if net.subnet_of(block):
                total += net.num_addresses
            elif block.subnet_of(net):
                total += block.num_addresses
    return total


def no_world_ssh_in_production(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    stack = stack_of(args.urn)
    if not is_production(stack):
        return
    networks = [
        network
        for rule in ingress_rules(args.resource_type, args.props)
        if rule.covers(SSH_PORT)
        for network in rule.networks
    ]
    world = [network for network in networks if network in WORLD]
    if world:
        report_violation(
            f"{args.name}: SSH (port 22) is open to {', '.join(world)} on production stack {stack!r}; "
            "set sshAllowedCidrs to your own networks",
            None,
        )
        return
    for version, whole in ((4, sum(b.num_addresses for b in PUBLIC_V4)), (6, PUBLIC_V6[0].num_addresses)):
        reached = public_addresses(networks, version)
        if reached > MAX_SSH_ADDRESSES[version]:
            shown = (
                ", ".join(n for n in networks if ":" in n)
                if version == 6
                else ", ".join(n for n in networks if ":" not in n)
            )
            report_violation(
                f"{args.name}: SSH (port 22) is open to {shown}, {reached / whole:.0%} of the public IPv{version} "
                f"internet, on production stack {stack!r}; set sshAllowedCidrs to your own networks",
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


def database_not_public(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (RDS_INSTANCE, RDS_CLUSTER_INSTANCE):
        return
    if _is_true(args.props.get("publiclyAccessible")):
        report_violation(
            f"{args.name}: publiclyAccessible is true: the database gets a public address; set it to false and reach "
            "it from the app servers' security group only",
            None,
        )


def database_ports_closed(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """A database on a port of its own choosing (RDS `port: 6543`) is still a database: no security group in the
    stack may open that port to a network either."""
    ports: dict[int, str] = {}
    for resource in args.resources:
        if resource.resource_type in (RDS_INSTANCE, RDS_CLUSTER) and resource.props.get("port") is not None:
            ports[int(resource.props["port"])] = resource.name
    extra = {port: name for port, name in ports.items() if port not in DATABASE_PORTS}
    if not extra:
        return
    for resource in args.resources:
        for rule in ingress_rules(resource.resource_type, resource.props):
            opened = [port for port in sorted(extra) if rule.covers(port)]
            if opened and rule.networks:
                names = ", ".join(f"{port} ({extra[port]})" for port in opened)
                report_violation(
                    f"{resource.name}: ingress {rule.describe()} opens database port(s) {names}; a database is "
                    "reached from the app servers' security group only",
                    resource.urn,
                )


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
        "On production stacks (a word of the name, any case: prod…, prd, live), SSH is open to no more than a /8 "
        "of the public IPv4 internet (a /32 of IPv6), however the networks are split.",
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
        "User-data holds no password, secret key, private key, URL with a password or AWS key (checked through "
        "base64 and gzip, also inside the document's write_files).",
        no_secrets_in_user_data,
    ),
    _policy(
        "database-not-public",
        "RDS instances are not publicly accessible.",
        database_not_public,
    ),
]

STACK_POLICIES: list[StackValidationPolicy] = [
    StackValidationPolicy(
        name="database-ports-closed",
        description="A database's own port, when it is not a standard one, is opened to no network either.",
        validate=database_ports_closed,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
