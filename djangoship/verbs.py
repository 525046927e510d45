"""What each verb does: one server command (or two, for a download) over the verb's SSH session.

Progress and errors go to stderr (what runs, on which host); stdout is the server command's own, so it can be
piped. The exit status is the server command's (255: ssh could not connect; 130: interrupted).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import remote, report
from .remote import Layout
from .ssh import Session
from .stack import Stack

BACKUP_FILE = re.compile(rf"^(db-{remote.STAMP}\.dump|media-{remote.STAMP}\.tar\.gz)$")
VERBS: dict[str, Callable[[argparse.Namespace, Stack, Session], int]] = {}


def verb(name: str) -> Callable[[Callable[[argparse.Namespace, Stack, Session], int]], Callable[..., int]]:
    def register(function: Callable[[argparse.Namespace, Stack, Session], int]) -> Callable[..., int]:
        VERBS[name] = function
        return function

    return register


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def say(message: str) -> None:
    print(f"djangoship: {message}", file=sys.stderr, flush=True)


def run(session: Session, what: str, command: str | None, *, tty: bool = False) -> int:
    say(f"{what} on {session.stack.destination} ({session.stack.app})")
    status = session.run(command, tty=tty)
    if status not in (0, 130, 255):  # 130: interrupted; 255: ssh explained it
        say(f"{what} failed on the server (exit {status})")
    return status


@verb("ssh")
def ssh_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    command = " ".join(args.command) if args.command else None
    return run(session, "a shell" if command is None else f"`{command}`", command, tty=command is None or interactive())


@verb("logs")
def logs_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    command = remote.logs(args.source, follow=args.follow, lines=args.lines)
    return run(
        session,
        f"{args.source} logs{' (following; Ctrl-C stops)' if args.follow else ''}",
        command,
        tty=args.follow and interactive(),
    )


@verb("manage")
def manage_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    return run(
        session, f"manage.py {' '.join(args.args)}", remote.manage(Layout(stack.app), args.args), tty=interactive()
    )


@verb("status")
def status_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    print(f"site:         {stack.url}", flush=True)
    return run(session, "status", report.status(Layout(stack.app), stack.name))


@verb("releases")
def releases_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    return run(session, "kept releases (newest first, * live)", report.releases(Layout(stack.app)))


@verb("rollback")
def rollback_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    what = f"activating release {args.release}" if args.release else "rolling back to the previous release"
    return run(session, what, remote.rollback(Layout(stack.app), args.release))


@verb("backup")
def backup_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    return run(session, "backing up the database and media", remote.backup(Layout(stack.app)))


@verb("restore")
def restore_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    command = remote.restore(Layout(stack.app), args.stamp)
    which = args.stamp or "the newest backup"
    if not args.yes:
        if not interactive():
            say("restore replaces the database and media: pass --yes to confirm")
            return 2
        answer = input(f"Replace {stack.app}'s database and media on {stack.host} with {which}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            say("not restored")
            return 1
    return run(session, f"restoring {which} (the site stops serving meanwhile)", command)


@verb("download-backup")
def download_backup_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    layout = Layout(stack.app)
    say(f"finding backup {args.stamp or '(newest)'} on {stack.destination}")
    found = session.capture(report.find_backup(layout, args.stamp))
    if found.returncode != 0:
        return found.returncode
    folder = args.to or Path("backups") / stack.name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for line in found.stdout.split("\n"):
        if not line.strip():
            continue
        name, size = line.split()
        if not BACKUP_FILE.match(name):
            say(f"unexpected file name from the server: {name!r}")
            return 1
        target = folder / name
        say(f"downloading {name} ({int(size):,} bytes) to {target}")
        # 0600 (a backup holds every row of the database), in a file this run creates: mkstemp opens a new name
        # with O_EXCL | O_NOFOLLOW, so nothing planted in a shared folder (a file others can read, a link to
        # elsewhere) is written into or keeps its mode.
        descriptor, partial_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
        partial = Path(partial_name)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                status = session.run(report.read_backup_file(layout, name), stdout=stream)
            if status != 0 or partial.stat().st_size != int(size):
                say(f"downloading {name} failed (exit {status})")
                return status or 1
            try:
                partial.rename(target)  # replaces a link at that name, never writes through it
            except OSError as error:
                say(f"cannot put {name} at {target}: {error}")
                return 1
        finally:
            partial.unlink(missing_ok=True)
    return 0


@verb("maintenance")
def maintenance_verb(args: argparse.Namespace, stack: Stack, session: Session) -> int:
    what = {"on": "turning maintenance on", "off": "turning maintenance off", None: "maintenance state"}[args.state]
    return run(session, what, remote.maintenance(Layout(stack.app), args.state))
