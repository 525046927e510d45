"""What this project's config values must be, beyond their type: the checks named in the table of
`settings.py`. Each takes the value read and a `Given` (the keys above it, where to report) and returns the
value, possibly normalised. A check that needs another key names it with `given.value_of`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from . import envcontract
from .appshape import plan_python
from .catalog import DATABASE_PORTS, DB_INSTANCE_CLASSES, IMAGES, INSTANCE_TYPES
from .configtable import Given

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PROFILES = ("single", "scaled")
GIT_URL = re.compile(r"^(https://|http://|git://|ssh://|git@[\w.-]+:)\S+$")
NAME = r"[a-z][a-z0-9_]{0,30}"  # a Unix user name that is also a PostgreSQL role and database name
PY_MODULE = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
DOMAIN = r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
BUCKET = r"(?!xn--)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
OPENSSH_PUBLIC_KEY = r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?"
AMI_ID = r"ami-[0-9a-f]{8,17}"
SYSTEM_USERS = {"root", "postgres", "www-data", "nginx", "admin", "ubuntu"}


# --- the server and its image ---------------------------------------------------------------------------------


def image_fits_instance_type(image: str, given: Given) -> str:
    instance_type = given.value_of("instanceType")
    arch = INSTANCE_TYPES[instance_type].arch
    if arch not in IMAGES[image].architectures:
        given.fail(f"{arch} instances have no {image} image here", instance_type, key="instanceType")
    return image


def or_image_user(user: str, given: Given) -> str:
    """Empty: the image's own login user (ubuntu on Ubuntu, admin on Debian)."""
    return user or IMAGES[given.value_of("image")].ssh_user


def pairs_with_public_key(private_key: str, given: Given) -> str:
    """Both halves of the operator's key, or neither (one is generated): the remote commands log in with it."""
    public_key = given.value_of("sshPublicKey")
    if public_key and not private_key:
        given.problem(
            "is missing: with sshPublicKey set, the remote commands need the matching private key "
            "(pulumi config set --secret sshPrivateKey < key)"
        )
    if private_key and not public_key:
        given.problem("is set without sshPublicKey: set both, or neither to generate a key")
    return private_key


# --- the doors ------------------------------------------------------------------------------------------------


def ipv4_network(cidr: str, given: Given) -> str:
    try:
        ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        given.fail("an IPv4 network in CIDR form with no host bits, e.g. 203.0.113.0/24", cidr)
    return cidr


def reachable_over_ssh(cidrs: list[str], given: Given) -> list[str]:
    # One server is deployed over SSH; the scaled profile's app servers are not reached that way (SSM, S3).
    if given.value_of("profile") == "single" and not cidrs:
        given.fail("at least one CIDR: the remote commands deploy over SSH", cidrs)
    return cidrs


def not_a_database_port(port: int, given: Given) -> int:
    if port in DATABASE_PORTS:
        refused = ", ".join(map(str, sorted(DATABASE_PORTS)))
        given.fail(f"database ports ({refused}) are never opened to the internet", port)
    return port


def deployable_and_served(ports: list[int], given: Given) -> list[int]:
    """One server needs 22 (the remote commands) and 80 (nginx, and the TLS challenge); the scaled profile's
    doors are the load balancer's. Returned sorted, without repeats."""
    if given.value_of("profile") == "single":
        if 22 not in ports:
            given.fail("must include 22: the remote commands deploy over SSH", ports)
        if 80 not in ports:
            given.fail("must include 80: nginx serves the site (and the TLS challenge) there", ports)
    return sorted(set(ports))


def needs_domain(email: str, given: Given) -> str:
    if email and not given.value_of("domain"):
        given.fail("HTTPS needs a domain: set domain too, or leave tlsEmail empty", email)
    return email


# --- the scaled profile ---------------------------------------------------------------------------------------


def priced_when_scaled(db_class: str, given: Given) -> str:
    """The scaled profile prices its database (monthlyCostUsd) from components/scaled/prices.py."""
    if given.value_of("profile") == "scaled" and db_class not in DB_INSTANCE_CLASSES:
        given.fail(f"one of {', '.join(DB_INSTANCE_CLASSES)}", db_class)
    return db_class


def within_group_size(desired: int, given: Given) -> int:
    low, high = given.value_of("appMinSize"), given.value_of("appMaxSize")
    if not low <= desired <= high:
        given.fail(f"between appMinSize ({low}) and appMaxSize ({high})", desired)
    return desired


# --- the app --------------------------------------------------------------------------------------------------


def git_url_or_local_folder(source: str, given: Given) -> str:
    """A git URL as given, or a local folder (relative to the project) made absolute."""
    if GIT_URL.match(source):
        return source
    folder = (PROJECT_ROOT / source).resolve()
    if not (folder / "manage.py").is_file():
        given.fail("a git URL (https://, ssh://, git@host:) or a local folder with manage.py", source)
    return str(folder)


def only_with_git_source(ref: str, given: Given) -> str:
    if ref and not GIT_URL.match(given.value_of("app.source")):
        given.fail("only meaningful with a git source; a local folder deploys what is on disk", ref)
    return ref


def or_name_from_source(name: str, given: Given) -> str:
    """Empty: from the source's folder or repository name, photo-feed.git → photo_feed."""
    if name:
        return name
    last = given.value_of("app.source").rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    derived = re.sub(r"[^a-z0-9]+", "_", last.lower()).strip("_")
    if derived and not derived[0].isalpha():
        derived = "app_" + derived
    return derived[:31] or "app"


def not_a_system_user(name: str, given: Given) -> str:
    if name in SYSTEM_USERS:
        given.fail("must not be an existing system user", name)
    return name


def path_inside_app(path: str, given: Given) -> str:
    if not re.fullmatch(r"[\w./-]+", path) or path.startswith("/") or ".." in path:
        given.fail("a path inside the app such as requirements/prod.txt", path)
    return path


def app_environment(env: dict[str, Any], given: Given) -> dict[str, str]:
    """Names the deployer does not write itself (for this profile), values the env file can hold. A value is
    never shown: set with `--secret --path`, it is a secret even in a problem."""
    reserved = envcontract.reserved_names(given.value_of("app.envPrefix"), given.value_of("profile"))
    accepted: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if not envcontract.NAME.match(name) or name in reserved:
            given.fail("an upper-case variable name not set by the deployer itself", key=f"app.env.{name}")
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str) or not envcontract.writable(value):
            given.fail("a single-line string without quotes (') or backslashes", key=f"app.env.{name}")
            continue
        accepted[name] = value
    return accepted


APT_PACKAGE = r"[a-z0-9][a-z0-9+.-]{1,62}"  # Debian policy's package names
_MANAGE_COMMAND = re.compile(r"[a-z_][a-z0-9_]{0,60}")
_MANAGE_ARGUMENT = re.compile(r"[\w=.,:/@-]{1,200}")  # no quotes, spaces or shell syntax


def manage_command(command: str, given: Given) -> str:
    """A manage.py command and its arguments, each word safe to pass as one shell word."""
    words = command.split()
    if not words or not _MANAGE_COMMAND.fullmatch(words[0]) or not all(map(_MANAGE_ARGUMENT.fullmatch, words[1:])):
        given.fail(
            "a manage.py command and its arguments, such as compress or 'compilemessages --ignore=venv' "
            "(letters, digits and -_=.,:/@ only)",
            command,
        )
    return " ".join(words)


def python_available(python: str, given: Given) -> str:
    """The Python the app needs (this key, else what the app's files say) must be the image's or one that uv
    can install: decided at preview. A git source is read only on the server: there, only this key counts."""
    source, image = given.value_of("app.source"), given.value_of("image")
    folder = None if GIT_URL.match(source) else Path(source)
    try:
        plan_python(folder, python, image, IMAGES[image].python)
    except ValueError as error:
        given.fail(str(error), python or source, key="app.python" if python else "app.source")
    return python
