"""What this project's config values must be, beyond their type: the checks named in the table of
`settings.py`. Each takes the value read and a `Given` (the keys above it, where to report) and returns the
value, possibly normalised. A check that needs another key names it with `given.value_of`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
import urllib.parse
from pathlib import Path
from typing import Any

from catalog.offerings import DATABASE_PORTS, DB_INSTANCE_CLASSES, IMAGES, INSTANCE_TYPES, max_workers

from . import envcontract, procfile
from .appmodules import Undecided, decide, module_file
from .apppython import plan_python
from .memory import memory_budget
from .oncalendar import CalendarError, check_calendar
from .table import HIDDEN, Given

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PROFILES = ("single", "scaled")
GIT_URL = re.compile(r"^(https://|http://|git://|ssh://|git@[\w.-]+:)\S+$")
SSH_GIT_URL = re.compile(r"^(ssh://|git@[\w.-]+:)")  # fetched over SSH, with the stack's deploy key
# Written like a URL (a scheme in any case: `HTTPS://` is one, though git fetches only `https://`) or like git's
# user@host:path: never taken for a local folder, and never shown when it is not a git URL the deploy fetches.
URL_LIKE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://|^[^/@]*@[^/@:]+:")
KNOWN_HOSTS_LINE = r"[\w.:\[\],-]+ (ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,2}"
NAME = r"[a-z][a-z0-9_]{0,30}"  # a Unix user name that is also a PostgreSQL role and database name
PY_MODULE = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
DOMAIN = r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
OPENSSH_PUBLIC_KEY = r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?"
AMI_ID = r"ami-[0-9a-f]{8,17}"
# Names the server already uses: app.name becomes a Unix user and group, a PostgreSQL role and database, and
# /etc/<name>, /run/<name>, /srv/<name>. By line: users and groups of Debian's and Ubuntu's base systems, cloud
# images and the packages the first boot installs; PostgreSQL's maintenance database, templates and reserved role
# names (and its pg_ prefix, below); folders and files in /etc that /etc/<name> would collide with.
_SYSTEM_NAMES = """
root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats nobody nogroup
systemd-network systemd-resolve systemd-timesync messagebus sshd polkitd tss uuidd syslog lxd landscape
pollinate tcpdump dnsmasq chrony ntp postfix postgres pgbouncer nginx admin ubuntu debian ec2-user
adm tty disk kmem dialout fax voice cdrom floppy tape sudo audio dip src shadow utmp video sasl plugdev
staff users input kvm render netdev crontab ssh lpadmin sambashare
template0 template1 public none current_user current_role session_user user
apt cloud cron default dpkg init kernel letsencrypt logrotate network pam postgresql profile python3
security skel ssl sudoers systemd udev ufw alternatives passwd group gshadow hosts hostname fstab environment
issue motd timezone localtime
"""
SYSTEM_USERS = frozenset(_SYSTEM_NAMES.split())


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


def not_root(user: str, given: Given) -> str:
    """The first boot turns root login off (disable_root, PermitRootLogin no): the steps would never connect."""
    if user == "root":
        given.fail("not root: root login is off on the server; leave it empty for the image's own user", user)
    return user


def workers_fit_memory(workers: int, given: Given) -> int:
    """An explicit worker count the instance's memory can hold (0 = the default rule, which always fits)."""
    instance_type = given.value_of("instanceType")
    most = max_workers(instance_type)
    if workers > most:
        memory = INSTANCE_TYPES[instance_type].memory_mib
        given.fail(f"at most {most} on a {instance_type} ({memory} MiB): each worker takes ~60 MiB", workers)
    return workers


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


_DOTTED_CIDR = re.compile(r"\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?")


def ipv4_network(cidr: str, given: Given) -> str:
    """An IPv4 network written as a.b.c.d/len (a bare address is one host, /32). The other forms Python and AWS
    would also read — a netmask (/255.0.0.0), a bare integer — are refused: a reviewer must see the range."""
    try:
        if not _DOTTED_CIDR.fullmatch(cidr):
            raise ValueError(cidr)
        network = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        given.fail("an IPv4 network in CIDR form with no host bits, e.g. 203.0.113.0/24 (or one address)", cidr)
        return cidr
    return network.with_prefixlen


def reachable_over_ssh(cidrs: list[str], given: Given) -> list[str]:
    """At least one network on one server. Returned collapsed — overlaps and repeats merged, adjacent networks
    joined — so the security group says what is really open: ["0.0.0.0/1", "128.0.0.0/1"] is 0.0.0.0/0."""
    # One server is deployed over SSH; the scaled profile's app servers are not reached that way (SSM, S3).
    if given.value_of("profile") == "single" and not cidrs:
        given.fail("at least one CIDR: the remote commands deploy over SSH", cidrs)
    return [network.with_prefixlen for network in ipaddress.collapse_addresses(map(ipaddress.IPv4Network, cidrs))]


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


def s3_bucket_name(name: str, given: Given) -> str:
    """AWS's rules for general purpose bucket names (S3 User Guide, "Bucket naming rules")."""
    allowed = (
        "an S3 bucket name: 3–63 lower-case letters, digits, dots and hyphens, starting and ending with a letter "
        "or digit, no '..', not shaped like an IP address, not starting with xn--, sthree- or amzn-s3-demo-, not "
        "ending with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3"
    )
    if (
        not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name)
        or ".." in name
        or re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name)
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
    ):
        given.fail(allowed, name)
    return name


def priced_when_scaled(db_class: str, given: Given) -> str:
    """The scaled profile prices its database (monthlyCostUsd) from catalog/scaledcost.py."""
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
    """A git URL as given, or a local folder (relative to the project) made absolute. A URL that carries
    credentials is refused without showing it: it would be in the deploy step's text (the preview's diff, the
    state), in `ps` on the server during the fetch, and in the scaled profile's user-data."""
    without_credentials = (
        "a git URL without credentials (no user:token@ in it): for a private repository use an ssh:// or "
        "git@host: URL, and add the stack output deployKey to the repository as a read-only deploy key"
    )
    if GIT_URL.match(source):
        if carries_credentials(source):
            given.fail(without_credentials)
        return source
    url = URL_LIKE.match(source)
    if url:
        scheme = url.group(1)
        as_git_reads_it = source.replace(scheme, scheme.lower(), 1) if scheme else source
        scp_password = not scheme and ":" in source.split("@", 1)[0]
        if scp_password or carries_credentials(as_git_reads_it):
            given.fail(without_credentials)
        else:
            given.fail("a git URL as git reads it (https://, http://, git://, ssh:// in lower case, or git@host:path)")
        return source
    folder = (PROJECT_ROOT / source).resolve()
    if not folder.is_dir():
        given.fail("a git URL (https://, ssh://, git@host:) or a local folder with manage.py", source)
    return str(folder)  # manage.py is looked for in it by app.directory's check


def carries_credentials(url: str) -> bool:
    """https://user:token@…, https://token@…, git://user@…, ssh://user:password@…: a secret inside the URL. A user
    name alone is how SSH URLs say whom to log in as (ssh://git@host/…, git@host:…), not a credential."""
    if SSH_GIT_URL.match(url) and url.startswith("git@"):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return True  # not a URL Python can even read: do not guess, refuse
    if url.startswith("ssh://"):
        return password is not None
    return "@" in parts.netloc or bool(re.search(r"(?i)(token|password|secret|key)=", parts.query))


_FOLDER = re.compile(r"[\w.-]+(/[\w.-]+)*")
_LOOKED_DEEP = 3  # folders below the top searched for manage.py, to name app.directory's value in a problem


def project_folder(directory: str, given: Given) -> str:
    """The Django project's folder inside the source (Render's root directory, Dokku's build-dir): relative, no
    `..`, returned without `./` or a trailing `/`. A local folder's must hold manage.py, through no link leading
    out of the source: checked at preview. A git source's is checked by its deploy (the files are only there)."""
    parts = [part for part in directory.strip().split("/") if part not in ("", ".")]
    normalised = "/".join(parts)
    if directory.startswith("/") or ".." in parts or (normalised and not _FOLDER.fullmatch(normalised)):
        given.fail("a folder inside the source such as backend or src/shop (relative, without ..)", directory)
        return directory
    source = given.value_of("app.source")
    if GIT_URL.match(source):
        return normalised
    top = Path(source)
    folder = top / normalised
    if not (folder / "manage.py").is_file() or not (folder / "manage.py").resolve().is_relative_to(top.resolve()):
        found = _manage_folders(top)
        hint = (
            f"; manage.py is in {', '.join(found)}: pulumi config set --path app.directory {found[0]}" if found else ""
        )
        if normalised:
            given.fail(f"a folder of app.source holding manage.py{hint}", directory)
        else:
            allowed = "a git URL (https://, ssh://, git@host:) or a local folder with manage.py"
            given.fail(f"{allowed} (at its top, or in app.directory){hint}", source, key="app.source")
    return normalised


def project_and_top(source: str, directory: str) -> list[Path]:
    """Where a local source's dependency and Python files are looked for: the project's folder, then the top."""
    return [Path(source, directory), Path(source)] if directory else [Path(source)]


def _manage_folders(top: Path) -> list[str]:
    """The folders below `top` (a few levels deep, not in dependency or build folders) that hold a manage.py."""
    found = []
    for depth in range(1, _LOOKED_DEEP + 1):
        for path in sorted(top.glob("/".join(["*"] * depth) + "/manage.py")):
            relative = path.parent.relative_to(top)
            if not any(part.startswith(".") or part in ("node_modules", "venv") for part in relative.parts):
                found.append(relative.as_posix())
    return found


def only_with_ssh_source(host_key: str, given: Given) -> str:
    if host_key and not SSH_GIT_URL.match(given.value_of("app.source")):
        given.fail("only meaningful with an ssh:// or git@host: source (it pins that host's key)")
    return host_key


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
    if name in SYSTEM_USERS or name.startswith("pg_"):
        given.fail(
            "a name the server does not already use (not a system user or group, a PostgreSQL role or database "
            "such as template1 or pg_*, or a folder in /etc)",
            name,
        )
    return name


def path_inside_app(path: str, given: Given) -> str:
    if not re.fullmatch(r"[\w./-]+", path) or path.startswith("/") or ".." in path:
        given.fail("a path inside the app such as requirements/prod.txt", path)
    return path


def app_environment(env: dict[str, Any], given: Given) -> dict[str, str]:
    """Names the deployer does not write itself (for this profile), values the env file can hold. A value is
    never shown: set with `--secret --path`, it is a secret even in a problem."""
    reserved = envcontract.reserved_names(
        given.value_of("app.envPrefix"), given.value_of("profile"), redis=given.value_of("redis")
    )
    accepted: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if not envcontract.NAME.fullmatch(name) or name in reserved:
            given.fail("an upper-case variable name not set by the deployer itself", key=f"app.env.{name}")
            continue
        if envcontract.owned_by_the_system(name):
            given.fail(
                "a name that bash, the dynamic loader and Python leave alone (not PATH, UID, SHELLOPTS, IFS, "
                "LD_*, PYTHONHOME …): the manage wrapper and gunicorn read the env file",
                key=f"app.env.{name}",
            )
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


# What the deployer itself puts at a release's top (server/layout.py STATIC_LINK, the deploy): no app file goes there.
RELEASE_OWN_ENTRIES = frozenset({"venv", ".djangoship-static", ".complete", ".venv-key", "REVISION"})
_APP_FILE_PART = re.compile(r"[\w][\w.-]{0,99}|\.[\w][\w.-]{0,98}")  # no `.`/`..`, no leading `-`
APP_FILE_MAX_BYTES = 64 * 1024  # one file: a settings or secrets file, not data
APP_FILES_MAX_BYTES = 256 * 1024  # all of them: they travel on the configure step's stdin
# The scaled profile's app servers read the app's env from one SSM SecureString: 8 KiB at most (advanced tier),
# the env file included. A configuration.py such as NetBox's example is larger on its own: app.files is not
# carried there rather than carried for small files only.
APP_FILES_SCALED_REFUSAL = (
    "is not carried by profile scaled: its app servers get their secrets from one SSM SecureString parameter "
    "(8 KiB at most, the env file included), too small for configuration files; set the values through app.env "
    "(the settings can read os.environ) or use profile single"
)


def app_files(files: dict[str, Any], given: Given) -> dict[str, str]:
    """Each path relative to the project's folder (app.directory), inside it, not one of the deployer's own; each
    content a string of a sane size. A content is never shown, whether set with --secret or not."""
    if files and given.value_of("profile") == "scaled":
        given.problem(APP_FILES_SCALED_REFUSAL)
        return {}
    accepted: dict[str, str] = {}
    for path, content in sorted(files.items()):
        name = f'app.files["{path}"]' if len(path) <= 200 and path.isprintable() else "app.files (a path)"
        parts = path.split("/")
        if not all(_APP_FILE_PART.fullmatch(part) for part in parts) or len(parts) > 10:
            given.fail(
                "a relative path inside the project folder (app.directory), such as netbox/configuration.py: "
                "letters, digits, _ . - in at most 10 parts split by /, no part . or .., not absolute",
                key=name,
            )
        elif parts[0] in RELEASE_OWN_ENTRIES:
            given.fail(f"a path outside the deployer's own {', '.join(sorted(RELEASE_OWN_ENTRIES))}", key=name)
        elif not isinstance(content, str):
            given.fail(
                "the file's content as a string (pulumi config set --secret --path 'app.files[\"PATH\"]' < FILE)",
                key=name,
            )
        elif len(content.encode()) > APP_FILE_MAX_BYTES:
            given.fail(f"a file of at most {APP_FILE_MAX_BYTES // 1024} KiB", key=name)
        else:
            accepted[path] = content
    if sum(len(content.encode()) for content in accepted.values()) > APP_FILES_MAX_BYTES:
        given.fail(f"files of at most {APP_FILES_MAX_BYTES // 1024} KiB in all")
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
    """The Python the app needs (this key, else what the app's files say, in its folder or at the source's top) must
    be the image's or one that uv can install: decided at preview. A git source is read only on the server: there,
    only this key counts."""
    source, image = given.value_of("app.source"), given.value_of("image")
    folders = [] if GIT_URL.match(source) else project_and_top(source, given.value_of("app.directory"))
    try:
        plan_python(folders, python, image, IMAGES[image].python)
    except ValueError as error:
        given.fail(str(error), python or source, key="app.python" if python else "app.source")
    return python


def modules_found(app: Any, given: Given) -> Any:
    """Empty app.settingsModule or app.wsgiModule, with a local folder: its files (and its Procfile's web line, filled
    in above) must decide them at preview (appmodules.py), or the preview fails naming the key to set. A git source
    is read only on the server: its deploy decides, by the same rules, and fails naming the key."""
    if app.source_is_git or (app.settings_module and (app.wsgi_module or app.asgi_module)):
        return app
    try:
        decide(Path(app.source, app.directory), app.settings_module, app.wsgi_module, app.asgi_module)
    except Undecided as error:
        shown = app.settings_module if error.key.endswith("settingsModule") else app.wsgi_module
        given.fail(str(error), shown, key=error.key)
    return app


def gunicorn_settings(options: dict[str, Any], given: Given) -> dict[str, str]:
    """app.serverOptions: gunicorn settings the deploy lets an app choose (procfile.SERVER_OPTIONS), with their
    bounds; written into gunicorn's config as Python values."""
    accepted: dict[str, str] = {}
    for name, value in sorted(options.items()):
        key = f"app.serverOptions.{name}"
        if name not in procfile.SERVER_OPTIONS:
            given.fail(f"one of {', '.join(procfile.SERVER_OPTIONS)}", key=key)
            continue
        bounds = procfile.SERVER_OPTIONS[name]
        text = str(value).strip().lower()
        if bounds is None:
            if text not in ("true", "false"):
                given.fail("true or false", value, key=key)
                continue
            accepted[name] = text.capitalize()
        elif not re.fullmatch(r"\d{1,7}", text) or not bounds[0] <= int(text) <= bounds[1]:
            limits = {
                "timeout": ": nginx waits 60 s for an answer",
                "graceful_timeout": ": systemd gives gunicorn 30 s",
            }
            given.fail(f"a whole number from {bounds[0]} to {bounds[1]}{limits.get(name, '')}", value, key=key)
        else:
            accepted[name] = str(int(text))
    return accepted


def procfile_defaults(app: Any, given: Given) -> Any:
    """A local folder's Procfile (procfile.py), read as defaults under the keys: its web line's module, workers and
    options, its release line and its other lines fill in what the stack's config leaves unset, each with the
    line the preview prints to pin or change it (`procfile_notes`). A line the deploy cannot run as written fails
    the preview naming it. A git source is only fetched on the server: its Procfile is not read (docs/deploying.md)."""
    if app.source_is_git or not app.procfile:
        return app
    try:
        # Beside manage.py, else (a monorepo on Heroku) at the repository's top, pointing into the project's folder.
        found = procfile.read(Path(app.source, app.directory))
        if found is None and app.directory:
            found = procfile.read(Path(app.source), app.directory)
    except procfile.ProcfileError as error:
        given.fail(str(error), key="app.procfile")
        return app
    if found is None:
        return app
    notes: list[str] = []
    changes: dict[str, Any] = {}
    web, workers = found.web, 0
    used = [] if app.wsgi_module or app.asgi_module else ["web"]
    used += [] if app.release_commands else ["release"]
    used += [
        line.name
        for line, name, _ in found.refused
        if line.name not in ("web", "release") and name not in app.processes
    ]
    for name in used:
        if found.refusal(name):
            given.fail(found.refusal(name), key="app.procfile")
    if given.failed:
        return app
    if web is not None and not (app.wsgi_module or app.asgi_module):
        key = "app.asgiModule" if web.asgi else "app.wsgiModule"
        if module_file(Path(app.source, app.directory), web.module) is None:
            given.fail(f"{web.line.where()}: {web.module} is not a module of the app", key="app.procfile")
            return app
        changes["asgi_module" if web.asgi else "wsgi_module"] = web.module
        served = "ASGI, gunicorn with uvicorn's worker" if web.asgi else "WSGI, by the deployer's gunicorn"
        notes.append(
            f"{'ASGI' if web.asgi else 'WSGI'} module {web.module} ({served}; {web.line.where()}); to pin it, or "
            f"serve another: pulumi config set --path {key} {web.module}"
        )
        if web.workers and not given.value_of("gunicornWorkers"):
            instance_type = given.value_of("instanceType")
            most = max_workers(instance_type)
            if web.workers > most:
                given.fail(
                    f"{web.line.where()}: --workers {web.workers} is more than a {instance_type} holds (at most "
                    f"{most}, ~60 MiB each): set gunicornWorkers (pulumi config set gunicornWorkers {most}), which "
                    "wins over the Procfile",
                    key="app.procfile",
                )
                return app
            workers = web.workers
            notes.append(
                f"gunicorn workers {workers} (the Procfile's web line); to pin it, or change it: "
                f"pulumi config set gunicornWorkers {workers}"
            )
        options = {**web.options, **app.server_options}
        for name, value in sorted(web.options.items()):
            if name not in app.server_options:
                notes.append(
                    f"gunicorn {name} = {value} (the Procfile's web line); to pin it, or change it: "
                    f"pulumi config set --path app.serverOptions.{name} {value}"
                )
        changes["server_options"] = options
        if web.left_out:
            notes.append(
                f"left out of the Procfile's web line: {', '.join(web.left_out)} — where the site listens and logs is "
                "the deployer's (a socket behind nginx, the journal)"
            )
    elif web is not None or found.refusal("web"):
        set_key = "app.wsgiModule" if app.wsgi_module else "app.asgiModule"
        notes.append(f"the Procfile's web line is not used: {set_key} is set")
    elif found.web_unread:
        notes.append(
            f"the Procfile's web line is not used: {found.web_unread}; gunicorn serves the module found in the app's "
            "files (app.wsgiModule names another)"
        )
    if found.refusal("release") and app.release_commands:
        notes.append("the Procfile's release line is not run: app.releaseCommands is set")
    if found.release is not None:
        line, command = found.release
        if app.release_commands:
            notes.append(f"{line.where()} is not run: app.releaseCommands is set")
        elif not command:
            notes.append(f"{line.where()} is not run twice: the deploy runs it for every release itself")
        else:
            as_key = Given(f"app.releaseCommands (from {line.where()})", False, given.accepted, given.problems)
            checked = manage_command(command, as_key)
            given.failed |= as_key.failed
            if not given.failed:
                changes["release_commands"] = [checked]
                notes.append(
                    f"release command manage.py {checked} ({line.where()}), after collectstatic and before "
                    f"migrations; to pin it, or change it: pulumi config set --path 'app.releaseCommands[0]' {checked}"
                )
    processes = dict(app.processes)
    for line, name, _ in found.refused:
        if name in app.processes and line.name not in ("web", "release"):
            notes.append(f"the Procfile's {line.name} line is not used: app.processes.{name} is set")
    for line, name, command in found.processes:
        if name in app.processes:
            notes.append(f"{line.where()} is not used: app.processes.{name} is set")
            continue
        key = f"app.processes.{name} (from {line.where()})"
        if _unit_name(name, given, key):
            processes[name] = app_command(command, given, key)
            notes.append(
                f"process {name}: {processes[name]} ({line.where()}); to pin it, or change it: "
                f"pulumi config set --path app.processes.{name} {shlex.quote(processes[name])}"
            )
    if given.failed:
        return app
    changes["processes"] = processes
    return dataclasses.replace(app, **changes, procfile_workers=workers, procfile_notes=tuple(notes))


# --- beyond the web process: processes, schedules, Redis, ASGI (issue 14) ----------------------------------------

_UNIT_NAME = r"[a-z][a-z0-9-]{0,30}"  # the part after `<app>-` in a unit's name
# `<app>-<name>` units the deployer writes itself (or may): a process or schedule may not take their names.
RESERVED_UNIT_NAMES = frozenset({"backup", "restore", "activate", "manage", "deploy", "pg-upgrade", "web", "redis"})
_PROGRAM = re.compile(r"[A-Za-z0-9_][\w.+-]{0,60}")  # a program in the app's virtualenv's bin/
_ARGUMENT = re.compile(r"[\w=.,:/@+-]{1,200}")  # one word: no quotes, blanks, $, % or shell syntax


def on_calendar(expression: str, given: Given) -> str:
    """A systemd OnCalendar= expression, by systemd's own rules (oncalendar.py)."""
    try:
        return check_calendar(expression)
    except CalendarError as error:
        given.fail(
            f"a systemd OnCalendar expression such as '*-*-* 03:30:00', 'daily' or 'Mon..Fri 12:00' ({error})",
            expression,
        )
    return expression


def app_command(command: Any, given: Given, key: str) -> str:
    """A process's or a schedule's command: `manage.py COMMAND ARG…`, or `PROGRAM ARG…` where PROGRAM is in
    the app's virtualenv (celery, rq, …). Each word safe as one word of a systemd command line."""
    words = command.split() if isinstance(command, str) else []
    if words[:1] == ["manage.py"]:
        good = len(words) > 1 and _MANAGE_COMMAND.fullmatch(words[1]) and all(map(_ARGUMENT.fullmatch, words[2:]))
    else:
        good = bool(words) and _PROGRAM.fullmatch(words[0]) and all(map(_ARGUMENT.fullmatch, words[1:]))
    if not good:
        given.fail(
            "'manage.py COMMAND ARG…' or a program of the app's virtualenv with its arguments, such as "
            "'celery -A proj worker -l info' (letters, digits and -_=.,:/@+ only; no quotes, $ or %)",
            command if isinstance(command, str) else HIDDEN,
            key=key,
        )
        return ""
    return " ".join(words)


def _unit_name(name: str, given: Given, key: str) -> bool:
    if not re.fullmatch(_UNIT_NAME, name) or name in RESERVED_UNIT_NAMES:
        reserved = ", ".join(sorted(RESERVED_UNIT_NAMES))
        given.fail(
            f"a name of lower-case letters, digits and -, starting with a letter (≤ 31), not {reserved}", key=key
        )
        return False
    return True


def app_processes(processes: dict[str, Any], given: Given) -> dict[str, str]:
    accepted = {}
    for name, command in sorted(processes.items()):
        key = f"app.processes.{name}"
        if _unit_name(name, given, key):
            accepted[name] = app_command(command, given, key)
    return accepted


def app_schedules(schedules: dict[str, Any], given: Given) -> dict[str, dict[str, str]]:
    """name → {schedule, command}; a name is a unit's, so it may not be a process's too."""
    processes = given.value_of("app.processes")
    accepted = {}
    for name, job in sorted(schedules.items()):
        key = f"app.schedules.{name}"
        if not _unit_name(name, given, key):
            continue
        if name in processes:
            given.fail("a name not used by app.processes (both become the unit <app>-<name>)", key=key)
            continue
        if not isinstance(job, dict) or set(job) != {"schedule", "command"}:
            given.fail("an object with exactly the keys schedule and command", key=key)
            continue
        schedule = job["schedule"] if isinstance(job["schedule"], str) else ""
        try:
            check_calendar(schedule)
        except CalendarError as error:
            given.fail(
                f"a systemd OnCalendar expression such as 'daily' or '*-*-* 04:00:00' ({error})",
                schedule,
                key=f"{key}.schedule",
            )
            continue
        accepted[name] = {"schedule": schedule, "command": app_command(job["command"], given, f"{key}.command")}
    return accepted


def fits_in_memory(app: Any, given: Given) -> Any:
    """One server: its processes, Redis, gunicorn's workers and PostgreSQL must fit the instance's memory
    (memory.py, from measured figures). Beyond what swap can carry, the cheapest size that fits is named."""
    if given.value_of("profile") != "single":
        return app
    budget = memory_budget(
        given.value_of("instanceType"),
        workers=given.value_of("gunicornWorkers") or app.procfile_workers,
        processes=len(app.processes),
        redis=given.value_of("redis"),
        asgi=bool(app.asgi_module),
    )
    if budget.verdict == "over":
        given.fail(budget.explain(), given.value_of("instanceType"), key="instanceType")
    return app
