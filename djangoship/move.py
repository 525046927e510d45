"""`python3 -m djangoship --stack SINGLE move --to SCALED`: a single server's data into a scaled stack built beside it
(docs/scaling-out.md, "Moving a single-server site here"), in steps that each record their end in a state file,
so a second run resumes after the last one finished.

At every run, first: the target is checked for data of its own (refused unless `--replace-target-data`: the move
replaces its database), then the site's writes stop — the single server's maintenance page, its Celery queue
drained by its worker (bounded), its processes and schedules stopped; the scaled stack's maintenance answer and
its processes stopped likewise. Then the source is counted: if it changed since the recorded dump, the move starts
again from the dump. The steps:

  dump     pg_dump on the single server, checked there (`pg_restore --list`) and here (size, SHA-256), and its
           uploads as a tar.gz: both downloaded into the move's folder (0700), the server's copy removed
  upload   the dump to the target's artifacts bucket (moves/), where only its app servers may read it
  restore  on one app server (Run Command): fetched, checked, restored into RDS in one transaction, then the
           release's migrations; the dump's object deleted from the bucket
  media    the uploads synced to the media bucket (media/), then counted there: every file, its size
  check    rows per table in RDS against the source's, uploads against the source's
  serve    the scaled stack's processes started and its maintenance answer off: it takes writes

The single server is only read — apart from its maintenance page and its processes, which stay stopped after a
move: a write there would be lost once the name points at the scaled stack. If the move fails before `serve`, the
single server is put back as it was (serving, its processes running); the scaled stack stays in maintenance (no
visitor reaches it before its name is moved) and a second run goes on.

Celery's queue is not copied: it is emptied by the source's worker before the dump, so its jobs' results are in the
dump; ElastiCache starts empty (what else is in Redis, a cache and the jobs' results, is rebuilt or expires).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import groupverbs, movescripts, remote
from .fleet import Fleet, report_ended
from .remote import Layout
from .ssh import Session
from .stack import GroupStack, Stack, StackError

STEPS = ("dump", "upload", "restore", "media", "check", "serve")
# Tables a fresh scaled stack fills by itself before any visitor (migrations, their content types and permissions,
# the release and schedule records, sessions): rows there are not data a move would overwrite.
DEPLOY_TABLES = {
    "public.django_migrations",
    "public.django_content_type",
    "public.auth_permission",
    "public.django_session",
    "public.djangoship_release",
    "public.djangoship_schedule",
}
# The superuser each app server's boot ensures: one row in Django's own user table is the deploy's too.
SUPERUSER_TABLE = "public.auth_user"
# A newer release's migrations may add rows to these after the restore (the `restore` step migrates).
MIGRATION_TABLES = {"public.django_migrations", "public.django_content_type", "public.auth_permission"}


class MoveError(Exception):
    """A step cannot go on; the message says what to do."""


class Refused(MoveError):
    """The move would overwrite data, or cannot start: nothing was changed."""


def say(message: str) -> None:
    print(f"djangoship move: {message}", file=sys.stderr, flush=True)


# --- what the servers answered ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    files: int
    bytes: int
    digest: str = ""


@dataclass(frozen=True)
class Counted:
    """A database's tables (`schema.table` → rows, sum of their xmin), and the uploads when counted on the source."""

    tables: dict[str, tuple[int, int]]
    media: Media | None = None

    def rows(self) -> dict[str, int]:
        return {name: rows for name, (rows, _) in self.tables.items()}


def parse_counts(text: str) -> Counted:
    tables: dict[str, tuple[int, int]] = {}
    media = None
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == "media" and len(fields) == 4:
            media = Media(int(fields[1]), int(fields[2]), fields[3])
        elif len(fields) == 3:
            tables[fields[0]] = (int(fields[1]), int(fields[2] or 0))
        elif line.strip():
            raise MoveError(f"unexpected line from the server: {line!r}")
    return Counted(tables, media)


def target_data(rows: dict[str, int]) -> dict[str, int]:
    """The target's tables holding rows a deploy did not write by itself: what a restore would overwrite."""
    found = {name: count for name, count in rows.items() if count and name not in DEPLOY_TABLES}
    if found.get(SUPERUSER_TABLE) == 1:
        del found[SUPERUSER_TABLE]
    return found


def compare_rows(source: dict[str, int], target: dict[str, int]) -> list[str]:
    """Each source table whose rows the target does not have, as a line; [] when every one matches."""
    differences = []
    for name, rows in sorted(source.items()):
        have = target.get(name)
        if have == rows or (name in MIGRATION_TABLES and have is not None and have > rows):
            continue
        differences.append(f"{name}: {rows} rows on the source, {'no table' if have is None else have} on the target")
    return differences


def compare_media(local: dict[str, int], bucket: dict[str, int]) -> list[str]:
    """Each upload (relative name → bytes) missing from the bucket's media/ or of another size there."""
    return [
        f"media/{name}: {size} bytes on the source, {bucket.get(name, 'missing')} in the bucket"
        for name, size in sorted(local.items())
        if bucket.get(name) != size
    ]


# --- the state file ---------------------------------------------------------------------------------------------


@dataclass
class MoveState:
    source: str
    target: str
    done: list[str] = field(default_factory=list)
    replace_target_data: bool = False  # the operator's word, kept for a resumed run
    restored_once: bool = False  # the target's database is this move's: a new dump may replace it
    source_maintenance_before: str = ""  # "on" or "off": what a failed move puts back
    source_tables: dict[str, list[int]] = field(default_factory=dict)  # at the dump: rows, xmin sum
    source_media: dict[str, Any] = field(default_factory=dict)  # at the dump: files, bytes, digest
    dump: dict[str, Any] = field(default_factory=dict)  # bytes, sha256, entries, stamp
    upload: dict[str, str] = field(default_factory=dict)  # key: the dump's object, until the restore deletes it

    @classmethod
    def load(cls, path: Path, source: str, target: str) -> MoveState:
        if not path.exists():
            return cls(source, target)
        data = json.loads(path.read_text())
        if (data.get("source"), data.get("target")) != (source, target):
            raise MoveError(f"{path} is the state of a move from {data.get('source')} to {data.get('target')}")
        return cls(**data)

    def save(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            json.dump(asdict(self), stream, indent=2, sort_keys=True)
            stream.write("\n")
        partial.replace(path)

    def counted(self) -> Counted:
        media = Media(**self.source_media) if self.source_media else None
        return Counted({name: (rows, xmins) for name, (rows, xmins) in self.source_tables.items()}, media)

    def restart_from_dump(self) -> None:
        self.done = []
        self.source_tables, self.source_media, self.dump = {}, {}, {}


# --- the move ------------------------------------------------------------------------------------------------------


class Move:
    def __init__(self, args: argparse.Namespace, source: Stack, session: Session, target: GroupStack, fleet: Fleet):
        self.args, self.source, self.session, self.target, self.fleet = args, source, session, target, fleet
        self.source_layout, self.target_layout = Layout(source.app), Layout(target.app)
        self.folder: Path = args.folder or Path("moves") / f"{source.name}-to-{target.name}"
        self.state_file = self.folder / "state.json"
        self.state = MoveState(source.name, target.name)
        self.source_writes_stopped = False

    # --- the servers ---------------------------------------------------------------------------------------------

    def on_source(self, what: str, command: str) -> str:
        """`command` on the single server; its output (progress lines go to the terminal as they come)."""
        say(f"{what} on {self.source.destination} ({self.source.app})")
        result = self.session.capture(command)
        if result.returncode != 0:
            raise MoveError(f"{what} failed on {self.source.host} (exit {result.returncode})")
        return result.stdout

    def on_target(self, what: str, command: str, *, every: bool = False, timeout: int = 600) -> str:
        targets = self.fleet.targets() if every else [self.fleet.one()]
        say(f"{what} on {', '.join(targets)} ({self.target.app}, Run Command)")
        ended = self.fleet.run(targets, command, what, timeout)
        for invocation in ended.values():
            sys.stderr.write(invocation.stderr)
            report_ended(invocation, what)
        failed = [i.instance_id for i in ended.values() if i.exit_status != 0]
        if failed:
            raise MoveError(f"{what} failed on {', '.join(failed)}")
        return "".join(invocation.stdout for invocation in ended.values())

    def aws(self, *argv: str) -> Any:
        return self.fleet.aws.call(*argv)

    def aws_transfer(self, *argv: str) -> None:
        """An `aws s3` transfer, its progress on the terminal (stderr: stdout stays the verb's)."""
        command = self.fleet.aws.argv(*argv)
        say(" ".join(command))
        status = subprocess.run(command, stdout=sys.stderr, env={**os.environ, "AWS_PAGER": ""}).returncode
        if status != 0:
            raise MoveError(f"`aws {' '.join(argv[:2])}` failed (exit {status})")

    # --- the run -----------------------------------------------------------------------------------------------------

    def run(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder.chmod(0o700)  # it holds every row of the database
        self.state = MoveState.load(self.state_file, self.source.name, self.target.name)
        if self.args.replace_target_data:
            self.state.replace_target_data = True
        if "serve" in self.state.done:
            say(f"the move from {self.source.name} to {self.target.name} is done ({self.state_file}); nothing to do")
            return 0
        if self.state.done:
            say(f"resuming after `{self.state.done[-1]}` ({self.state_file})")
        self.refuse_a_target_with_data()
        try:
            self.stop_writes()
            self.check_source_unchanged()
            for step in STEPS:
                if step in self.state.done:
                    continue
                say(f"step {STEPS.index(step) + 1}/{len(STEPS)}: {step}")
                getattr(self, f"step_{step}")()
                self.state.done.append(step)
                self.state.save(self.state_file)
        except BaseException as error:
            self.after_failure(error)
            raise
        say(
            f"done: {self.target.name} serves the data of {self.source.name} ({self.target.url}). "
            f"{self.source.name} stays in maintenance, its processes stopped: a write there would not reach "
            f"{self.target.name}. Now point the site's name at {self.target.name}'s `cdnDomain`. To go back instead: "
            f"`maintenance off` on {self.source.name} and start its processes (the units in "
            f"/etc/{self.source.app}/units). The dump and uploads stay in {self.folder} (every row of the database: "
            "delete it when you no longer need it)."
        )
        return 0

    def after_failure(self, error: BaseException) -> None:
        why = "interrupted" if isinstance(error, KeyboardInterrupt) else f"stopped: {error}"
        if "serve" in self.state.done or not self.source_writes_stopped:
            say(f"{why}. Run the same command again to go on.")
            return
        # Nobody writes to the target before `serve`: the source is the site still, and serves again.
        try:
            self.on_source("starting the processes again", movescripts.start_processes(self.source_layout))
            if self.state.source_maintenance_before != "on":
                self.on_source("maintenance off", remote.maintenance(self.source_layout, "off"))
            back = "serves again"
        except (MoveError, OSError) as again:
            back = f"could not be put back ({again}): `maintenance off` on it and start its processes"
        say(
            f"{why}. {self.source.name} {back}; {self.target.name} stays in maintenance (no visitor reaches it before "
            f"its name is moved). Run the same command again to go on from `{self.next_step()}` "
            f"({self.state_file}); if {self.source.name} took writes meanwhile, it starts again from the dump."
        )

    def next_step(self) -> str:
        return next((step for step in STEPS if step not in self.state.done), "serve")

    # --- before the steps -----------------------------------------------------------------------------------------

    def refuse_a_target_with_data(self) -> None:
        for key, output in (
            (self.target.artifacts_bucket, "artifactsBucket"),
            (self.target.media_bucket, "mediaBucket"),
        ):
            if not key:
                raise StackError(f"stack {self.target.name!r} lacks the `{output}` output: run `pulumi up` on it once")
        if "restore" in self.state.done:
            return
        rows = parse_counts(self.on_target("counting the target's rows", movescripts.target_counts(self.target_layout)))
        found = target_data(rows.rows())
        if not found:
            return
        listed = ", ".join(f"{name} ({count} rows)" for name, count in sorted(found.items()))
        if self.state.restored_once:
            say(f"the target's tables hold this move's earlier restore ({listed}): replaced")
        elif self.state.replace_target_data:
            say(f"replacing the target's data, as --replace-target-data says: {listed}")
        else:
            raise Refused(
                f"{self.target.name}'s database holds data a deploy does not write by itself: {listed}. The move "
                "replaces the whole database; nothing was changed. If these rows may go (a fresh stack's own "
                "processes write some, e.g. a heartbeat), run again with --replace-target-data."
            )

    def stop_writes(self) -> None:
        flag = self.on_source("maintenance state", remote.maintenance(self.source_layout, None)).strip()
        if not self.state.source_maintenance_before:
            self.state.source_maintenance_before = flag
            self.state.save(self.state_file)
        self.source_writes_stopped = True
        self.on_source(
            "maintenance on (visitors get the maintenance page)", remote.maintenance(self.source_layout, "on")
        )
        self.on_source(
            f"waiting for the worker to empty the Celery queue (at most {self.args.drain_timeout} s)",
            movescripts.drain_queue(self.source_layout, self.args.drain_timeout),
        )
        sys.stderr.write(
            self.on_source("stopping the processes and schedules", movescripts.stop_processes(self.source_layout))
        )
        rule, on = groupverbs.serving_rule(self.fleet)
        if not on:
            say(f"{self.target.name}: maintenance on (its load balancer answers 503 until the move is done)")
            self.aws(*groupverbs.modify_rule(rule, groupverbs.maintenance_actions(self.target.app)))
        if "serve" not in self.state.done:
            self.on_target(
                "stopping the processes and schedules", movescripts.stop_processes(self.target_layout), every=True
            )

    def check_source_unchanged(self) -> None:
        if "dump" not in self.state.done:
            return
        now = parse_counts(self.on_source("counting the source", movescripts.source_state(self.source_layout)))
        recorded = self.state.counted()
        if now.tables == recorded.tables and now.media == recorded.media:
            say("the source is as it was at the dump")
            return
        changed = sorted(
            name for name in set(now.tables) | set(recorded.tables) if now.tables.get(name) != recorded.tables.get(name)
        )
        if now.media != recorded.media:
            changed.append("uploads")
        say(f"the source changed since the dump ({', '.join(changed)}): starting again from the dump")
        self.delete_uploaded_dumps()
        self.state.restart_from_dump()
        self.state.save(self.state_file)

    # --- the steps -------------------------------------------------------------------------------------------------

    def step_dump(self) -> None:
        counted = parse_counts(self.on_source("counting the source", movescripts.source_state(self.source_layout)))
        assert counted.media is not None
        say(
            f"source: {len(counted.tables)} tables, {sum(counted.rows().values())} rows; "
            f"{counted.media.files} uploads, {counted.media.bytes:,} bytes"
        )
        fields = self.on_source("pg_dump of the database", movescripts.dump(self.source_layout)).split()
        if len(fields) != 4 or fields[0] != "dump":
            raise MoveError(f"unexpected answer from the dump: {' '.join(fields)!r}")
        size, digest, entries = int(fields[1]), fields[2], int(fields[3])
        say(f"dump: {size:,} bytes, {entries} entries (pg_restore --list), sha256 {digest[:12]}…")
        self.download(movescripts.read_dump(self.source_layout), self.folder / "db.dump", size, digest)
        self.on_source("removing the server's copy of the dump", movescripts.remove_dump(self.source_layout))
        archive = self.folder / "media.tar.gz"
        self.download(movescripts.media_archive(self.source_layout), archive, None, None)
        local = self.unpack_media(archive)
        if (len(local), sum(local.values())) != (counted.media.files, counted.media.bytes):
            raise MoveError(
                f"the uploads' archive holds {len(local)} files, {sum(local.values()):,} bytes; the source has "
                f"{counted.media.files}, {counted.media.bytes:,}"
            )
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.state.source_tables = {name: list(value) for name, value in counted.tables.items()}
        self.state.source_media = asdict(counted.media)
        self.state.dump = {"bytes": size, "sha256": digest, "entries": entries, "stamp": stamp}

    def download(self, command: str, target: Path, size: int | None, digest: str | None) -> None:
        say(f"downloading to {target}" + (f" ({size:,} bytes)" if size is not None else ""))
        descriptor, partial_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=self.folder)
        partial = Path(partial_name)
        try:
            with os.fdopen(descriptor, "wb") as stream, Progress(partial, size):
                status = self.session.run(command, stdout=stream)
            if status != 0:
                raise MoveError(f"downloading {target.name} failed (exit {status})")
            if size is not None and partial.stat().st_size != size:
                raise MoveError(f"{target.name}: {partial.stat().st_size} bytes arrived, the server has {size}")
            if digest is not None and file_sha256(partial) != digest:
                raise MoveError(f"{target.name}: its SHA-256 differs from the server's")
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)

    def unpack_media(self, archive: Path) -> dict[str, int]:
        media = self.folder / "media"
        shutil.rmtree(media, ignore_errors=True)
        media.mkdir(mode=0o700)
        with tarfile.open(archive) as tar:
            tar.extractall(media, filter="data")  # no absolute names, no links out, no devices
        return local_media(media)

    def step_upload(self) -> None:
        key = f"moves/{self.source.name}-{self.state.dump['stamp']}.dump"
        self.state.upload = {"key": key}  # before it starts: an upload may finish after this run is gone
        self.state.save(self.state_file)
        # The CLI's own progress at a terminal; elsewhere (a log) it would be a line per chunk.
        quiet = [] if sys.stderr.isatty() else ["--only-show-errors"]
        self.aws_transfer(
            "s3", "cp", *quiet, str(self.folder / "db.dump"), f"s3://{self.target.artifacts_bucket}/{key}"
        )
        head = self.aws("s3api", "head-object", "--bucket", self.target.artifacts_bucket, "--key", key)
        if int(head.get("ContentLength", -1)) != self.state.dump["bytes"]:
            raise MoveError(f"s3://{self.target.artifacts_bucket}/{key} holds {head.get('ContentLength')} bytes")
        say(f"uploaded to s3://{self.target.artifacts_bucket}/{key}")

    def step_restore(self) -> None:
        command = movescripts.restore(
            self.target_layout, self.target.artifacts_bucket, self.state.upload["key"], self.state.dump["sha256"]
        )
        output = self.on_target("restoring the dump into the database (RDS)", command, timeout=3600)
        sys.stderr.write(output)
        self.state.restored_once = True
        self.state.save(self.state_file)
        self.delete_uploaded_dumps()

    def delete_uploaded_dumps(self) -> None:
        """Every dump this source's moves put in the bucket, every version (the bucket is versioned): also one an
        interrupted run's upload finished after that run was gone, before it could record it."""
        bucket, prefix = self.target.artifacts_bucket, f"moves/{self.source.name}-"
        listed = self.aws("s3api", "list-object-versions", "--bucket", bucket, "--prefix", prefix)
        for kind in ("Versions", "DeleteMarkers"):
            for version in listed.get(kind) or []:
                key = version["Key"]
                self.aws(
                    "s3api", "delete-object", "--bucket", bucket, "--key", key, "--version-id", version["VersionId"]
                )
                say(f"deleted s3://{bucket}/{key} (version {version['VersionId']})")
        self.state.upload = {}

    def step_media(self) -> None:
        media = self.folder / "media"
        self.aws_transfer("s3", "sync", "--no-progress", f"{media}/", f"s3://{self.target.media_bucket}/media/")
        self.check_media()

    def check_media(self) -> None:
        local = local_media(self.folder / "media")
        bucket = self.bucket_media()
        missing = compare_media(local, bucket)
        if missing:
            raise MoveError("uploads not in the bucket: " + "; ".join(missing[:10]))
        extra = len(set(bucket) - set(local))
        say(
            f"uploads: {len(local)} files, {sum(local.values()):,} bytes, each in s3://{self.target.media_bucket}/media/"
            + (f" ({extra} more there, not from the source)" if extra else "")
        )

    def bucket_media(self) -> dict[str, int]:
        listed = self.aws("s3api", "list-objects-v2", "--bucket", self.target.media_bucket, "--prefix", "media/")
        return {item["Key"].removeprefix("media/"): int(item["Size"]) for item in listed.get("Contents", [])}

    def step_check(self) -> None:
        source = self.state.counted()
        target = parse_counts(
            self.on_target("counting the target's rows", movescripts.target_counts(self.target_layout))
        )
        differences = compare_rows(source.rows(), target.rows())
        for name, rows in sorted(source.rows().items()):
            print(f"{name}\t{rows}\t{target.rows().get(name, '-')}", flush=True)
        if differences:
            raise MoveError("the target's rows differ from the source's: " + "; ".join(differences))
        say(f"rows: all {len(source.tables)} tables of the source have their {sum(source.rows().values())} rows")
        self.check_media()

    def step_serve(self) -> None:
        self.on_target(
            "starting the processes and schedules", movescripts.start_processes(self.target_layout), every=True
        )
        rule, on = groupverbs.serving_rule(self.fleet)
        if on:
            groups = self.fleet.group().get("TargetGroupARNs", [])
            if len(groups) != 1:
                raise MoveError(f"the group {self.target.group} has {len(groups)} target groups, expected one")
            self.aws(*groupverbs.modify_rule(rule, groupverbs.serving_actions(groups[0])))
        say(f"{self.target.name}: maintenance off, it takes writes")


class Progress:
    """While a download runs: how much has arrived, every 10 s (a dump of a few GB takes minutes)."""

    def __init__(self, partial: Path, size: int | None):
        self.partial, self.size = partial, size
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(10):
            arrived = self.partial.stat().st_size if self.partial.exists() else 0
            of = f" of {self.size:,}" if self.size else ""
            say(f"  {arrived:,}{of} bytes arrived")

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_media(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def move_verb(args: argparse.Namespace, source: Stack, session: Session, target: GroupStack, fleet: Fleet) -> int:
    try:
        return Move(args, source, session, target, fleet).run()
    except Refused as error:
        say(f"refused: {error}")
        return 2
    except MoveError as error:
        say(f"error: {error}")
        return 1
