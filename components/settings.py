"""Stack configuration: every key read once, here, with its default — and validated before any resource exists.

`load_settings` is pure (a mapping in, a frozen `Settings` out) so tests can feed it bad values directly;
`read_stack_config` is the only place that talks to Pulumi's config. A bad value raises `ConfigError`, which
lists every problem at once, each naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import envcontract
from .catalog import DATABASE_PORTS, IMAGES, INSTANCE_TYPES
from .scaled.prices import DB_INSTANCE_CLASSES

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Key → default. The same defaults are declared in Pulumi.yaml (a test keeps the two in step); the CLI
# fills them in there, but the code must not rely on it (mocks, older CLIs), so they live here too.
DEFAULTS: dict[str, Any] = {
    "profile": "single",  # "single": one server; "scaled": RDS + load-balanced app servers + S3/CloudFront
    "instanceType": "t2.micro",  # the seed tutorial's size; t2.nano works too (swap is added)
    "image": "ubuntu-24.04",  # current Ubuntu LTS; "debian-12" / "debian-13" are the alternatives
    "amiId": "",  # pin an exact AMI instead of looking one up
    "sshUser": "",  # login user of the image: ubuntu on Ubuntu, admin on Debian
    "sshPublicKey": "",  # bring your own key pair; empty = generate one (ed25519)
    "sshPrivateKey": "",  # secret; required with sshPublicKey so the remote commands can log in
    "sshAllowedCidrs": ["0.0.0.0/0"],  # who may reach port 22 (key auth only, root login off)
    "ingressPorts": [22, 80, 8000],  # the seed's security group; 443 is added when TLS is on
    "domain": "",  # a DNS name pointing at the Elastic IP; empty = plain HTTP on the IP
    "tlsEmail": "",  # with domain: Let's Encrypt account e-mail, turns HTTPS on
    "rootVolumeGb": 10,
    "gunicornWorkers": 0,  # 0 = 2 × vCPU + 1 (the seed's 3 on one vCPU)
    "dbPooler": True,  # PgBouncer (session pooling) between the app and PostgreSQL; docs/performance.md
    "dataVolumeGb": 8,  # PostgreSQL and media on their own encrypted gp3 volume, kept across servers
    "retainDataVolume": True,  # `pulumi destroy` leaves the data volume in the account (delete it by hand)
    "keepReleases": 5,  # releases kept on the server for instant rollback
    "backupBucket": "",  # S3 bucket to create for off-server backups; empty = local backups only
    "backupRetentionDays": 7,  # days of nightly backups kept (locally and in S3)
    "backupSchedule": "*-*-* 03:30:00",  # systemd OnCalendar for the nightly backup (server time, UTC)
    "dbInstanceClass": "db.t4g.micro",  # scaled: RDS for PostgreSQL instance class
    "dbAllocatedStorageGb": 20,  # scaled: RDS storage (gp3, encrypted)
    "dbMultiAz": False,  # scaled: a standby in a second zone (doubles the DB cost)
    "dbBackupRetentionDays": 7,  # scaled: RDS automated backups
    "dbDeletionProtection": True,  # scaled: RDS refuses deletion until this is turned off
    "appMinSize": 2,  # scaled: app servers in the Auto Scaling group
    "appMaxSize": 4,
    "appDesiredCapacity": 2,
    "adminUser": "admin",
    "adminEmail": "admin@example.com",
    "app": {},  # object; its keys and defaults are APP_DEFAULTS
}

APP_DEFAULTS: dict[str, Any] = {
    "name": "",  # system user, /srv/<name>, /etc/<name>; empty = derived from the source
    "source": "examples/photofeed",  # a local folder (relative to the project) or a git URL
    "ref": "",  # git: branch, tag or commit (empty = the remote's HEAD); local folder: unused
    "wsgiModule": "photofeed.wsgi",
    "settingsModule": "photofeed.settings",
    "requirements": "requirements/prod.txt",
    "envPrefix": "DJANGO_",
    "env": {},  # extra environment for the app; secret values via `config set --secret --path`
}

PROFILES = ("single", "scaled")
GIT_URL = re.compile(r"^(https://|http://|git://|ssh://|git@[\w.-]+:)\S+$")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
PY_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
BUCKET = re.compile(r"^(?!xn--)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(Exception):
    """Every invalid key at once, each line naming the key, the bad value and what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class AppSettings:
    name: str
    source: str  # absolute folder path or git URL
    source_is_git: bool
    ref: str
    wsgi_module: str
    settings_module: str
    requirements: str
    env_prefix: str
    env: dict[str, str] = field(default_factory=dict)
    env_is_secret: bool = False


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    instance_type: str
    image: str
    ami_id: str
    ssh_user: str
    ssh_public_key: str
    ssh_private_key: str
    ssh_allowed_cidrs: list[str]
    ingress_ports: list[int]
    domain: str
    tls_email: str
    root_volume_gb: int
    gunicorn_workers: int
    data_volume_gb: int
    retain_data_volume: bool
    keep_releases: int
    backup_bucket: str
    backup_retention_days: int
    backup_schedule: str
    profile: str
    db_instance_class: str
    db_allocated_storage_gb: int
    db_multi_az: bool
    db_backup_retention_days: int
    db_deletion_protection: bool
    app_min_size: int
    app_max_size: int
    app_desired_capacity: int
    admin_user: str
    admin_email: str
    app: AppSettings
    db_pooler: bool = True

    @property
    def tls(self) -> bool:
        return bool(self.domain and self.tls_email)

    @property
    def open_ports(self) -> list[int]:
        """Ports the security group opens: the configured ones, plus 443 when HTTPS is on."""
        return sorted(set(self.ingress_ports) | ({443} if self.tls else set()))

    @property
    def generate_key(self) -> bool:
        return not self.ssh_public_key


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


class _Checker:
    """Collects problems instead of stopping at the first, so one preview shows everything to fix."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{key} = {_show(value)} is invalid: {allowed}")

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(key, value, "expected a string")
            return ""
        return value.strip()

    def integer(self, key: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, value, f"expected a whole number from {low} to {high}")
            return low
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            self.fail(key, value, "expected true or false")
            return False
        return value

    def json_value(self, key: str, value: Any, kind: type) -> Any:
        """Arrays and objects arrive from the CLI as JSON text; accept both forms."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                self.fail(key, value, f"not valid JSON ({error.msg})")
                return kind()
        if not isinstance(value, kind):
            self.fail(key, value, f"expected a {'list' if kind is list else 'map'}")
            return kind()
        return value


def load_settings(
    raw: Mapping[str, Any],
    *,
    project: str,
    stack: str,
    secret_keys: frozenset[str] = frozenset(),
) -> Settings:
    """Validate raw config values (already without the `project:` namespace) into Settings."""
    check = _Checker()
    for key in sorted(set(raw) - set(DEFAULTS)):
        check.fail(key, raw[key], f"unknown key; known keys are {', '.join(sorted(DEFAULTS))}")
    value = {key: raw.get(key, default) for key, default in DEFAULTS.items()}

    profile = check.string("profile", value["profile"])
    if profile not in PROFILES:
        check.fail("profile", profile, f"one of {', '.join(PROFILES)}")
    # One server is reached over SSH and serves on 80 itself; the scaled profile has neither (SSM, ALB).
    single = profile == "single"

    instance_type = check.string("instanceType", value["instanceType"])
    if instance_type not in INSTANCE_TYPES:
        check.fail("instanceType", instance_type, f"one of {', '.join(INSTANCE_TYPES)}")

    image = check.string("image", value["image"])
    if image not in IMAGES:
        check.fail("image", image, f"one of {', '.join(IMAGES)}")
    ami_id = check.string("amiId", value["amiId"])
    if ami_id and not re.fullmatch(r"ami-[0-9a-f]{8,17}", ami_id):
        check.fail("amiId", ami_id, "an AMI ID such as ami-0123456789abcdef0, or empty to look one up")
    if image in IMAGES and instance_type in INSTANCE_TYPES:
        arch = INSTANCE_TYPES[instance_type].arch
        if arch not in IMAGES[image].architectures:
            check.fail("instanceType", instance_type, f"{arch} instances have no {image} image here")

    ssh_user = check.string("sshUser", value["sshUser"]) or (IMAGES[image].ssh_user if image in IMAGES else "")
    if ssh_user and not NAME.match(ssh_user):
        check.fail("sshUser", ssh_user, "a Unix user name (lower case letters, digits, _)")

    public_key = check.string("sshPublicKey", value["sshPublicKey"])
    private_key = value["sshPrivateKey"] if isinstance(value["sshPrivateKey"], str) else ""
    if public_key and not re.match(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?$", public_key):
        check.fail("sshPublicKey", public_key, "an OpenSSH public key line (ssh-ed25519 AAAA… comment)")
    if public_key and not private_key:
        check.problems.append(
            "sshPrivateKey is missing: with sshPublicKey set, the remote commands need the matching private key "
            "(pulumi config set --secret sshPrivateKey < key)"
        )
    if private_key and "sshPrivateKey" not in secret_keys:
        check.problems.append("sshPrivateKey must be set with --secret, or it is stored in plain text")
    if private_key and not public_key:
        check.problems.append("sshPrivateKey is set without sshPublicKey: set both, or neither to generate a key")

    cidrs = check.json_value("sshAllowedCidrs", value["sshAllowedCidrs"], list)
    if single and not cidrs and isinstance(value["sshAllowedCidrs"], (list, str)):
        check.fail("sshAllowedCidrs", cidrs, "at least one CIDR: the remote commands deploy over SSH")
    for cidr in cidrs:
        try:
            ipaddress.IPv4Network(cidr, strict=True)
        except (ValueError, TypeError):
            check.fail("sshAllowedCidrs", cidr, "an IPv4 network in CIDR form with no host bits, e.g. 203.0.113.0/24")

    ports_raw = check.json_value("ingressPorts", value["ingressPorts"], list)
    ports = [check.integer("ingressPorts", port, 1, 65535) for port in ports_raw]
    refused = ", ".join(map(str, sorted(DATABASE_PORTS)))
    for port in ports:
        if port in DATABASE_PORTS:
            check.fail("ingressPorts", port, f"database ports ({refused}) are never opened to the internet")
    if single and 22 not in ports:
        check.fail("ingressPorts", ports_raw, "must include 22: the remote commands deploy over SSH")
    if single and 80 not in ports:
        check.fail("ingressPorts", ports_raw, "must include 80: nginx serves the site (and the TLS challenge) there")

    domain = check.string("domain", value["domain"]).lower()
    if domain and not DOMAIN.match(domain):
        check.fail("domain", domain, "a DNS name such as www.example.com, or empty")
    tls_email = check.string("tlsEmail", value["tlsEmail"])
    if tls_email and not EMAIL.match(tls_email):
        check.fail("tlsEmail", tls_email, "an e-mail address for the Let's Encrypt account, or empty")
    if tls_email and not domain:
        check.fail("tlsEmail", tls_email, "HTTPS needs a domain: set domain too, or leave tlsEmail empty")

    root_volume_gb = check.integer("rootVolumeGb", value["rootVolumeGb"], 8, 1024)
    workers = check.integer("gunicornWorkers", value["gunicornWorkers"], 0, 64)
    db_pooler = check.boolean("dbPooler", value["dbPooler"])

    data_volume_gb = check.integer("dataVolumeGb", value["dataVolumeGb"], 1, 16384)
    retain_data_volume = check.boolean("retainDataVolume", value["retainDataVolume"])
    keep_releases = check.integer("keepReleases", value["keepReleases"], 2, 50)
    backup_bucket = check.string("backupBucket", value["backupBucket"])
    if backup_bucket and not BUCKET.match(backup_bucket):
        check.fail(
            "backupBucket", backup_bucket, "an S3 bucket name: 3–63 lower-case letters, digits, dots and hyphens"
        )
    backup_days = check.integer("backupRetentionDays", value["backupRetentionDays"], 1, 3650)
    backup_schedule = check.string("backupSchedule", value["backupSchedule"])
    if not re.fullmatch(r"[\w*:,./ ~-]{1,60}", backup_schedule):
        check.fail("backupSchedule", backup_schedule, "a systemd OnCalendar expression such as *-*-* 03:30:00 or daily")

    db_instance_class = check.string("dbInstanceClass", value["dbInstanceClass"])
    if not re.fullmatch(r"db\.[a-z0-9]+\.[a-z0-9]+", db_instance_class):
        check.fail("dbInstanceClass", db_instance_class, "an RDS instance class such as db.t4g.micro")
    elif profile == "scaled" and db_instance_class not in DB_INSTANCE_CLASSES:
        check.fail("dbInstanceClass", db_instance_class, f"one of {', '.join(DB_INSTANCE_CLASSES)}")
    db_storage = check.integer("dbAllocatedStorageGb", value["dbAllocatedStorageGb"], 20, 65536)
    db_multi_az = check.boolean("dbMultiAz", value["dbMultiAz"])
    db_backup_days = check.integer("dbBackupRetentionDays", value["dbBackupRetentionDays"], 1, 35)
    db_deletion_protection = check.boolean("dbDeletionProtection", value["dbDeletionProtection"])
    app_min = check.integer("appMinSize", value["appMinSize"], 1, 100)
    app_max = check.integer("appMaxSize", value["appMaxSize"], 1, 100)
    app_desired = check.integer("appDesiredCapacity", value["appDesiredCapacity"], 1, 100)
    if not app_min <= app_desired <= app_max:
        check.fail("appDesiredCapacity", app_desired, f"between appMinSize ({app_min}) and appMaxSize ({app_max})")

    admin_user = check.string("adminUser", value["adminUser"])
    if not re.fullmatch(r"[\w.@+-]{1,150}", admin_user):
        check.fail("adminUser", admin_user, "a Django user name: letters, digits and @.+-_ (1–150)")
    admin_email = check.string("adminEmail", value["adminEmail"])
    if not EMAIL.match(admin_email):
        check.fail("adminEmail", admin_email, "an e-mail address")

    app = _load_app(check, value["app"], profile, env_is_secret="app" in secret_keys)

    if check.problems:
        raise ConfigError(check.problems)
    return Settings(
        project=project,
        stack=stack,
        instance_type=instance_type,
        image=image,
        ami_id=ami_id,
        ssh_user=ssh_user,
        ssh_public_key=public_key,
        ssh_private_key=private_key,
        ssh_allowed_cidrs=list(cidrs),
        ingress_ports=sorted(set(ports)),
        domain=domain,
        tls_email=tls_email,
        root_volume_gb=root_volume_gb,
        gunicorn_workers=workers,
        data_volume_gb=data_volume_gb,
        retain_data_volume=retain_data_volume,
        keep_releases=keep_releases,
        backup_bucket=backup_bucket,
        backup_retention_days=backup_days,
        backup_schedule=backup_schedule,
        profile=profile,
        db_instance_class=db_instance_class,
        db_allocated_storage_gb=db_storage,
        db_multi_az=db_multi_az,
        db_backup_retention_days=db_backup_days,
        db_deletion_protection=db_deletion_protection,
        app_min_size=app_min,
        app_max_size=app_max,
        app_desired_capacity=app_desired,
        admin_user=admin_user,
        admin_email=admin_email,
        app=app,
        db_pooler=db_pooler,
    )


def _load_app(check: _Checker, raw: Any, profile: str, env_is_secret: bool) -> AppSettings:
    given = check.json_value("app", raw, dict)
    for key in sorted(set(given) - set(APP_DEFAULTS)):
        check.fail(f"app.{key}", given[key], f"unknown key; known keys are {', '.join(sorted(APP_DEFAULTS))}")
    value = {key: given.get(key, default) for key, default in APP_DEFAULTS.items()}

    source = check.string("app.source", value["source"])
    source_is_git = bool(GIT_URL.match(source))
    if not source_is_git:
        folder = (PROJECT_ROOT / source).resolve()
        if not (folder / "manage.py").is_file():
            check.fail("app.source", source, "a git URL (https://, ssh://, git@host:) or a local folder with manage.py")
        source = str(folder)
    ref = check.string("app.ref", value["ref"])
    if ref and not re.fullmatch(r"[\w./-]{1,200}", ref):
        check.fail("app.ref", ref, "a branch, tag or commit")
    if ref and not source_is_git:
        check.fail("app.ref", ref, "only meaningful with a git source; a local folder deploys what is on disk")

    name = check.string("app.name", value["name"]) or _derive_name(source)
    if not NAME.match(name):
        check.fail("app.name", name, "lower case letters, digits and _, starting with a letter (≤ 31)")
    if name in {"root", "postgres", "www-data", "nginx", "admin", "ubuntu"}:
        check.fail("app.name", name, "must not be an existing system user")

    wsgi = check.string("app.wsgiModule", value["wsgiModule"])
    if not PY_MODULE.match(wsgi):
        check.fail("app.wsgiModule", wsgi, "a dotted Python module such as mysite.wsgi")
    settings_module = check.string("app.settingsModule", value["settingsModule"])
    if not PY_MODULE.match(settings_module):
        check.fail("app.settingsModule", settings_module, "a dotted Python module such as mysite.settings")
    requirements = check.string("app.requirements", value["requirements"])
    if not re.fullmatch(r"[\w./-]+", requirements) or requirements.startswith("/") or ".." in requirements:
        check.fail("app.requirements", requirements, "a path inside the app such as requirements/prod.txt")

    prefix = check.string("app.envPrefix", value["envPrefix"])
    if not re.fullmatch(r"([A-Z][A-Z0-9]*_)?", prefix):
        check.fail("app.envPrefix", prefix, "upper case letters and digits ending in _, such as DJANGO_ or PLATZI_")

    env_raw = check.json_value("app.env", value["env"], dict)
    env: dict[str, str] = {}
    reserved = envcontract.reserved_names(prefix, profile)
    for key, item in sorted(env_raw.items()):
        if not envcontract.NAME.match(key) or key in reserved:
            check.fail(f"app.env.{key}", "…", "an upper-case variable name not set by the deployer itself")
            continue
        if isinstance(item, bool):
            item = "true" if item else "false"
        if isinstance(item, (int, float)):
            item = str(item)
        if not isinstance(item, str) or not envcontract.writable(item):
            # Never echo the value: it may be a secret.
            check.fail(f"app.env.{key}", "…", "a single-line string without quotes (') or backslashes")
            continue
        env[key] = item
    return AppSettings(
        name=name,
        source=source,
        source_is_git=source_is_git,
        ref=ref,
        wsgi_module=wsgi,
        settings_module=settings_module,
        requirements=requirements,
        env_prefix=prefix,
        env=env,
        env_is_secret=env_is_secret,
    )


def _derive_name(source: str) -> str:
    """photofeed from examples/photofeed or https://host/org/photo-feed.git → photo_feed."""
    last = source.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    name = re.sub(r"[^a-z0-9]+", "_", last.lower()).strip("_")
    if name and not name[0].isalpha():
        name = "app_" + name
    return name[:31] or "app"


def read_stack_config() -> Settings:
    """Read this stack's config through Pulumi's runtime (the only Pulumi-aware function here)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    project, stack = pulumi.get_project(), pulumi.get_stack()
    prefix = f"{project}:"
    # Every key given for this project, from the explicit config and the CLI's environment alike, so that
    # a misspelt key is reported rather than silently ignored.
    names = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    raw = {name[len(prefix) :]: runtime_config.get_config(name) for name in names if name.startswith(prefix)}
    secrets = frozenset(key for key in raw if runtime_config.is_config_secret(prefix + key))
    return load_settings(raw, project=project, stack=stack, secret_keys=secrets)
