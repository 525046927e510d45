"""What each verb runs on the server, as one command line for ssh. Pure functions of the app's layout and the
verb's arguments: tests read them (and shellcheck them) without a server.

Everything runs through `sudo -n` (the SSH user may sudo without a password, as the deploy steps do) and calls the
server's own commands (`<app>-manage`, `<app>-activate`, `<app>-backup`, `<app>-restore`) rather than repeating
what they do.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from server.layout import ServerPaths

RELEASE_ID = re.compile(r"^[0-9a-f]{12}$")  # as <app>-activate checks
# A backup's stamp (`date -u +%Y%m%dT%H%M%SZ` in <app>-backup), in a pattern Python and bash read alike: checked
# here before a stamp is sent, and again by the script that receives it (as <app>-restore checks its own).
STAMP = "[0-9]{8}T[0-9]{6}Z"
BACKUP_STAMP = re.compile(STAMP)  # fullmatch: `$` would let a trailing newline through
UNIT_NAME = re.compile(r"^[A-Za-z0-9@_.:-]+$")


@dataclass(frozen=True)
class Layout:
    """Where things are on the server of the app `app`: server/layout.py's paths, as the templates use them."""

    app: str

    @property
    def paths(self) -> ServerPaths:
        return ServerPaths.for_app(self.app)


def root_script(script: str, label: str, *args: str) -> str:
    """`script` run by bash as root; `label` is its $0 (named in its errors), `args` its $1…"""
    return shlex.join(["sudo", "-n", "bash", "-c", script, label, *args])


# --- logs -------------------------------------------------------------------------------------------------

# Named sources; any other name is taken as a systemd unit (e.g. `photofeed-backup`, `ssh`, `cloud-init`).
JOURNAL_SOURCES = {"web": ("gunicorn.service", "gunicorn.socket"), "pgbouncer": ("pgbouncer.service",), "all": ()}
# nginx and PostgreSQL (Debian's pg_ctlcluster) write files, not the journal.
FILE_SOURCES = {
    "nginx": "/var/log/nginx/access.log /var/log/nginx/error.log",
    "postgres": "/var/log/postgresql/postgresql-*.log",
}
LOG_SOURCES = (*JOURNAL_SOURCES, *FILE_SOURCES)


def logs(source: str, *, follow: bool, lines: int) -> str:
    if source in FILE_SOURCES:
        # A root shell expands the glob: /var/log/postgresql is not listable by the SSH user.
        tail = f"tail -n {lines:d}{' -F' if follow else ''} {FILE_SOURCES[source]}"
        return shlex.join(["sudo", "-n", "sh", "-c", tail])
    units = JOURNAL_SOURCES.get(source)
    if units is None:
        if not UNIT_NAME.match(source):
            raise ValueError(f"{source!r} is neither a log source ({', '.join(LOG_SOURCES)}) nor a systemd unit name")
        units = (source,)
    command = ["sudo", "-n", "journalctl", "--no-pager", "-n", str(lines), *(["-f"] if follow else [])]
    for unit in units:
        command += ["-u", unit]
    return shlex.join(command)


# --- the app's own commands -------------------------------------------------------------------------------


def manage(layout: Layout, args: list[str]) -> str:
    return shlex.join(["sudo", "-n", f"{layout.app}-manage", *args])


def rollback(layout: Layout, release: str | None) -> str:
    if release is not None and not RELEASE_ID.fullmatch(release):
        raise ValueError(f"{release!r} is not a release id (12 hex digits; see the `releases` verb)")
    return shlex.join(["sudo", "-n", f"{layout.app}-activate", release or "--previous"])


# The program's project (Pulumi.yaml's `name`) and the deploy step's type and name (components/provisioning.py).
PROJECT = "djangoship"
DEPLOY_STEP = "djangoship:index:SiteProvisioner$command:remote:Command::{app}-deploy"


def redeploy(layout: Layout, stack: str | None) -> str:
    """The command, for this machine, that runs the deploy step again with the same release: `pulumi up --replace` of
    that step (an unchanged `pulumi up` runs nothing). It checks what the last deploy left on the server and builds
    again what was deleted by hand (cloud-init/scripts/deploy/earlier-run.sh.j2)."""
    name = (stack or "STACK").rsplit("/", 1)[-1]  # a URN names the stack without its organisation
    urn = f"urn:pulumi:{name}::{PROJECT}::{DEPLOY_STEP.format(app=layout.app)}"
    return shlex.join(["pulumi", "up", *(["--stack", stack] if stack else []), "--replace", urn])


def backup(layout: Layout) -> str:
    return shlex.join(["sudo", "-n", f"{layout.app}-backup"])


def check_stamp(stamp: str | None) -> None:
    """Every verb that takes a stamp (`restore`, `download-backup`) checks it here: anything else (`../../x`,
    `--help`) never reaches a root script."""
    if stamp is not None and not BACKUP_STAMP.fullmatch(stamp):
        raise ValueError(f"{stamp!r} is not a backup stamp like 20261128T033000Z (see the `status` verb)")


def restore(layout: Layout, stamp: str | None) -> str:
    check_stamp(stamp)
    return shlex.join(["sudo", "-n", f"{layout.app}-restore", *([stamp] if stamp else [])])


# --- maintenance ------------------------------------------------------------------------------------------


def maintenance(layout: Layout, state: str | None) -> str:
    """The flag file nginx's site checks on every request (cloud-init/nginx/site.conf.j2): no reload needed, and a
    `pulumi up` that re-renders the site leaves it alone. Prints the resulting state: on or off."""
    flag = shlex.quote(layout.paths.maintenance_flag)
    change = {"on": f"touch {flag}", "off": f"rm -f {flag}", None: "true"}[state]
    return root_script(f"set -e; {change}; if [ -e {flag} ]; then echo on; else echo off; fi", "maintenance")
