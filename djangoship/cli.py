"""`python3 -m djangoship [--stack NAME | --outputs-file FILE] [--instance ID] VERB …`: the arguments, and a verb
run with the stack's outputs: over SSH on one server (verbs.py), through AWS Systems Manager on the scaled
profile's app servers (groupverbs.py), as the outputs say (stack.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import remote
from .aws import Aws, AwsError
from .fleet import Fleet
from .groupverbs import GROUP_VERBS
from .move import move_verb
from .ssh import Session
from .stack import GroupStack, Stack, StackError, read_outputs_file, read_pulumi_stack
from .verbs import VERBS, say


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python3 -m djangoship",
        description=(
            "The operator's verbs for the stack's servers: over SSH with the stack's key on one server; through "
            "AWS Systems Manager (the AWS CLI) on the scaled profile's app servers."
        ),
        epilog="Run from the project folder. `python3 -m djangoship VERB --help` for each verb.",
    )
    source = top.add_mutually_exclusive_group()
    source.add_argument("--stack", "-s", help="the Pulumi stack (default: the current one, as `pulumi` picks it)")
    source.add_argument(
        "--outputs-file", type=Path, help="read the outputs from this JSON file (the local try-out's `--outputs`)"
    )
    top.add_argument(
        "--instance",
        metavar="ID",
        help="scaled profile: the app server to run on (default: one in service, said which; `logs`, `status` "
        "and `maintenance` cover them all)",
    )
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    shell = verbs.add_parser(
        "ssh", help="a shell on the server, or run one command there (scaled: a session, or Run Command)"
    )
    shell.add_argument("command", nargs=argparse.REMAINDER, help="a command to run instead of a login shell")

    logs = verbs.add_parser(
        "logs",
        help="the last lines of a log, or follow it (-f) (scaled: from every server, each line prefixed; -f: one)",
    )
    logs.add_argument(
        "source",
        nargs="?",
        default="web",
        help=f"{', '.join(remote.LOG_SOURCES)}, or any systemd unit (e.g. APP-backup); default web (gunicorn)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("-n", "--lines", type=int, default=100, help="how many lines back (default 100)")

    manage = verbs.add_parser(
        "manage", help="a manage.py command as the app's user, with its env (interactive in a terminal)"
    )
    manage.add_argument("args", nargs=argparse.REMAINDER, help="e.g. shell, createsuperuser, migrate --plan")

    verbs.add_parser(
        "status",
        help="live release, kept releases, damage made by hand and the command that repairs it, services, disk, "
        "memory, backups, certificate (scaled: the group, each server's release, health and services, the last roll)",
    )
    verbs.add_parser(
        "releases", help="the releases kept on the server, newest first (* = live) (scaled: those the group ran)"
    )

    rollback = verbs.add_parser(
        "rollback", help="make an earlier kept release live again, without a rebuild (scaled: says how)"
    )
    rollback.add_argument("release", nargs="?", help="a release id from `releases` (default: the one before)")

    verbs.add_parser(
        "backup",
        help="back up the database and media now (to /data/backups, and S3 if configured) (scaled: an RDS snapshot)",
    )

    restore = verbs.add_parser(
        "restore", help="replace the database and media with a backup (asks first) (scaled: says how)"
    )
    restore.add_argument("stamp", nargs="?", help="e.g. 20261128T033000Z (default: the newest on the server)")
    restore.add_argument("--yes", "-y", action="store_true", help="do not ask (needed when not in a terminal)")

    download = verbs.add_parser(
        "download-backup", help="copy a backup's files to this machine (mode 0600) (scaled: says how)"
    )
    download.add_argument(
        "stamp", nargs="?", help="e.g. 20261128T033000Z (default: the newest; S3 if not on the server)"
    )
    download.add_argument("--to", type=Path, help="the folder to write to (default backups/STACK)")

    maintenance = verbs.add_parser(
        "maintenance",
        help="visitors get a 503 maintenance page (app and database keep running); no state: show it (scaled: "
        "the load balancer answers it)",
    )
    maintenance.add_argument("state", nargs="?", choices=["on", "off"])

    move = verbs.add_parser(
        "move",
        help="single server only: its data (database, uploads) into a scaled stack built beside it; resumable",
        description=(
            "Stops the site's writes (maintenance page, Celery queue drained, processes stopped), dumps the "
            "database, restores it into the scaled stack's RDS through one of its app servers, syncs the uploads "
            "to its media bucket, counts both sides, and turns the scaled stack's maintenance off. Each step is "
            "recorded in FOLDER/state.json: run again to go on after the last finished one. docs/scaling-out.md"
        ),
    )
    to = move.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="STACK", help="the scaled stack (Pulumi) to move into")
    to.add_argument("--to-outputs-file", type=Path, metavar="FILE", help="the scaled stack's outputs as JSON")
    move.add_argument(
        "--replace-target-data",
        action="store_true",
        help="restore even if the scaled stack's database holds rows a deploy does not write by itself",
    )
    move.add_argument(
        "--drain-timeout",
        type=int,
        default=600,
        metavar="SECONDS",
        help="how long the worker may take to empty the Celery queue before the move gives up (default 600)",
    )
    move.add_argument(
        "--folder", type=Path, help="where the state file, the dump and the uploads go (default moves/SOURCE-to-TARGET)"
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        stack = read_outputs_file(args.outputs_file) if args.outputs_file else read_pulumi_stack(args.stack)
        if args.verb == "move":
            return move(args, stack)
        if isinstance(stack, GroupStack):
            fleet = Fleet(stack, Aws(stack.region), args.instance)
            return GROUP_VERBS[args.verb](args, stack, fleet)
        if args.instance is not None:
            raise StackError(f"--instance is for the scaled profile; stack {stack.name!r} is one server")
        with Session(stack) as session:
            return VERBS[args.verb](args, stack, session)
    except (StackError, ValueError, AwsError) as error:
        say(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        return 130


def move(args: argparse.Namespace, source: Stack | GroupStack) -> int:
    """The one verb with two stacks: the single server (the usual --stack) and the scaled one (--to)."""
    target = read_outputs_file(args.to_outputs_file) if args.to_outputs_file else read_pulumi_stack(args.to)
    if not isinstance(source, Stack):
        raise StackError(f"move: the source {source.name!r} is a scaled stack; it moves a single server's data")
    if not isinstance(target, GroupStack):
        raise StackError(f"move: the target {target.name!r} is a single server; it moves into a scaled stack")
    if target.app != source.app:
        raise StackError(f"move: the source's app is {source.app!r}, the target's {target.app!r}: the same app?")
    fleet = Fleet(target, Aws(target.region), args.instance)
    with Session(source) as session:
        return move_verb(args, source, session, target, fleet)
