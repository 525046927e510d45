"""The `move` verb without servers (tests/guests/test_scaled_move.py runs it on guests): what it runs where and in which
order, its refusals, the state file a second run resumes from, and its server scripts (shellchecked)."""

from __future__ import annotations

import argparse
import io
import json
import shlex
import tarfile
from pathlib import Path

import pytest
from rendered.helpers import check_shell

from djangoship import movescripts, remote
from djangoship.cli import main
from djangoship.move import (
    Move,
    MoveError,
    Refused,
    compare_media,
    compare_rows,
    parse_counts,
    target_data,
)
from djangoship.remote import Layout
from djangoship.stack import GroupStack, Stack

LAYOUT = Layout("photofeed")
SOURCE = Stack("prod", "203.0.113.10", "admin", "photofeed", "http://203.0.113.10", None, None)
TARGET = GroupStack(
    "prod-scaled",
    "photofeed",
    "https://d1.cloudfront.net",
    "photofeed-app-1",
    "us-east-1",
    "photofeed-db",
    "photofeed-alb.elb.amazonaws.com",
    media_bucket="photofeed-assets",
    artifacts_bucket="photofeed-artifacts",
)
SOURCE_TABLES = {"public.jobs_job": (2, 9), "public.auth_user": (1, 1), "public.django_migrations": (20, 20)}
FILES = {"uploads/a.png": b"png bytes", "uploads/b.txt": b"some text\n" * 10}
DIGEST = "ab" * 32


def counts_text(tables: dict[str, tuple[int, int]], media: tuple[int, int, str] | None = None) -> str:
    lines = [f"{name}\t{rows}\t{writes}" for name, (rows, writes) in tables.items()]
    if media:
        lines.append("media\t{}\t{}\t{}".format(*media))
    return "\n".join(lines) + "\n"


def media_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeAws:
    def __init__(self, world: World):
        self.world = world

    def call(self, *argv: str) -> dict:
        self.world.log.append(("aws", " ".join(argv)))
        operation = argv[1]
        if operation == "describe-load-balancers":
            return {"LoadBalancers": [{"DNSName": TARGET.load_balancer_dns, "LoadBalancerArn": "arn:alb"}]}
        if operation == "describe-listeners":
            return {"Listeners": [{"ListenerArn": "arn:listener"}]}
        if operation == "describe-rules":
            action = {"Type": "fixed-response"} if self.world.target_maintenance else {"Type": "forward"}
            rule = {"RuleArn": "arn:rule", "IsDefault": False, "Conditions": [{"Field": "http-header"}]}
            return {"Rules": [{**rule, "Actions": [action]}]}
        if operation == "modify-rule":
            self.world.target_maintenance = "fixed-response" in argv[-1]
            return {}
        if operation == "head-object":
            return {"ContentLength": 1234}
        if operation == "list-object-versions":
            prefix = argv[argv.index("--prefix") + 1]
            return {"Versions": [{"Key": f"{prefix}20261207T000000Z.dump", "VersionId": "v1"}]}
        if operation == "list-objects-v2":
            return {"Contents": [{"Key": f"media/{n}", "Size": len(d)} for n, d in self.world.bucket.items()]}
        return {}

    def argv(self, *argv: str) -> list[str]:
        return ["aws", *argv]


class FakeFleet:
    def __init__(self, world: World):
        self.aws, self.stack = FakeAws(world), TARGET

    def group(self) -> dict:
        return {"TargetGroupARNs": ["arn:tg"]}


class World:
    """What the servers and AWS hold, as the fakes answer them."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.source_tables = dict(SOURCE_TABLES)
        self.target_tables = {"public.django_migrations": (20, 20), "public.auth_user": (1, 1)}
        self.target_maintenance = False
        self.bucket: dict[str, bytes] = {}
        self.fail_restore = False
        self.queue_stays = False  # the source's worker never empties its queue


class FakeMove(Move):
    world: World

    def on_source(self, what: str, command: str) -> str:
        self.world.log.append(("source", what))
        if command == remote.maintenance(self.source_layout, None):
            return "off\n"
        if command == movescripts.source_state(self.source_layout):
            size = sum(len(d) for d in FILES.values())
            return counts_text(self.world.source_tables, (len(FILES), size, "listing-digest"))
        if command == movescripts.dump(self.source_layout):
            return f"dump\t1234\t{DIGEST}\t12\n"
        if command == movescripts.drain_queue(self.source_layout, 600) and self.world.queue_stays:
            raise MoveError(f"{what} failed on {self.source.host} (exit 4)")
        return ""

    def on_target(self, what: str, command: str, *, every: bool = False, timeout: int = 600) -> str:
        self.world.log.append(("target", what))
        if command == movescripts.target_counts(self.target_layout):
            return counts_text(self.world.target_tables)
        if "restore-moved" in command:
            if self.world.fail_restore:
                raise MoveError("restoring failed on i-0123")
            self.world.target_tables = dict(self.world.source_tables)
        return ""

    def download(self, command: str, target: Path, size: int | None, digest: str | None) -> None:
        self.world.log.append(("download", target.name))
        target.write_bytes(media_tar() if target.name == "media.tar.gz" else b"x" * 1234)

    def aws_transfer(self, *argv: str) -> None:
        self.world.log.append(("aws", " ".join(argv)))
        if argv[1] == "sync":
            self.world.bucket.update(FILES)


def run_move(world: World, folder: Path, **options) -> int:
    args = argparse.Namespace(
        replace_target_data=options.get("replace", False), drain_timeout=600, folder=folder, instance=None
    )
    move = FakeMove(args, SOURCE, None, TARGET, FakeFleet(world))  # type: ignore[arg-type]
    move.world = world
    return move.run()


def where(world: World, *whats: str) -> list[int]:
    return [next(i for i, (_, what) in enumerate(world.log) if what.startswith(w)) for w in whats]


def test_the_steps_in_order_each_recorded(tmp_path):
    world = World()
    assert run_move(world, tmp_path / "move") == 0
    state = json.loads((tmp_path / "move" / "state.json").read_text())
    assert state["done"] == ["dump", "upload", "restore", "media", "check", "serve"]
    assert state["source_tables"]["public.jobs_job"] == [2, 9] and state["dump"]["sha256"] == DIGEST
    # Writes stop on the source before anything is read for the dump; the target's before its restore.
    order = where(
        world,
        "maintenance on",
        "waiting for the worker",
        "stopping the processes",
        "pg_dump",
        "restoring the dump",
        "starting the processes",
    )
    assert order == sorted(order), world.log
    calls = [what for kind, what in world.log if kind == "aws"]
    upload = next(c for c in calls if c.startswith("s3 cp"))
    assert upload.endswith("s3://photofeed-artifacts/moves/prod-" + state["dump"]["stamp"] + ".dump")
    # Once restored, the dumps of this source's moves go from the bucket: each version under its prefix.
    assert "s3api list-object-versions --bucket photofeed-artifacts --prefix moves/prod-" in calls
    deleted = [c for c in calls if "delete-object" in c]
    key = "moves/prod-20261207T000000Z.dump"
    assert deleted == [f"s3api delete-object --bucket photofeed-artifacts --key {key} --version-id v1"]
    assert "s3 sync --no-progress" in " ".join(calls) and "s3://photofeed-assets/media/" in " ".join(calls)
    assert not world.target_maintenance, "the target takes writes at the end"
    assert (tmp_path / "move").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "move" / "state.json").stat().st_mode & 0o777 == 0o600


def test_a_target_with_data_is_refused_before_anything_changes(tmp_path):
    world = World()
    world.target_tables["public.jobs_heartbeat"] = (5, 5)
    with pytest.raises(Refused, match=r"public\.jobs_heartbeat \(5 rows\).*--replace-target-data"):
        run_move(world, tmp_path / "move")
    assert [kind for kind, _ in world.log] == ["target"], world.log
    assert not (tmp_path / "move" / "state.json").exists()
    # The operator's word: replaced, and kept for a resumed run.
    assert run_move(world, tmp_path / "move", replace=True) == 0
    assert json.loads((tmp_path / "move" / "state.json").read_text())["replace_target_data"] is True


def test_what_a_fresh_stack_writes_by_itself_is_not_data():
    rows = {
        "public.django_migrations": 20,
        "public.django_content_type": 7,
        "public.auth_permission": 28,
        "public.djangoship_release": 1,
        "public.djangoship_schedule": 4,
        "public.auth_user": 1,
        "public.jobs_job": 0,
    }
    assert target_data(rows) == {}
    assert target_data({**rows, "public.auth_user": 2}) == {"public.auth_user": 2}


def test_a_failure_puts_the_source_back_and_a_second_run_goes_on(tmp_path):
    world = World()
    world.fail_restore = True
    with pytest.raises(MoveError, match="restoring failed"):
        run_move(world, tmp_path / "move")
    state = json.loads((tmp_path / "move" / "state.json").read_text())
    assert state["done"] == ["dump", "upload"]
    after = [what for _, what in world.log[where(world, "restoring the dump")[0] :]]
    assert after[1:] == ["starting the processes again", "maintenance off"], after
    world.fail_restore, world.log = False, []
    assert run_move(world, tmp_path / "move") == 0
    assert not [w for _, w in world.log if w.startswith("pg_dump")], "resumed after the upload, no new dump"


def test_a_queue_the_worker_does_not_empty_in_time_stops_the_move_and_the_source_serves_again(tmp_path):
    world = World()
    world.queue_stays = True
    with pytest.raises(MoveError, match="exit 4"):
        run_move(world, tmp_path / "move")
    after = [what for _, what in world.log[where(world, "waiting for the worker")[0] :]]
    assert after[1:] == ["starting the processes again", "maintenance off"], after
    assert json.loads((tmp_path / "move" / "state.json").read_text())["done"] == []


def test_a_source_changed_since_the_dump_starts_again_from_the_dump(tmp_path):
    world = World()
    world.fail_restore = True
    with pytest.raises(MoveError):
        run_move(world, tmp_path / "move")
    world.source_tables["public.jobs_job"] = (3, 10)  # a write while the source served again
    world.fail_restore, world.log = False, []
    assert run_move(world, tmp_path / "move") == 0
    assert [w for _, w in world.log if w.startswith("pg_dump")], "a new dump"
    calls = [what for kind, what in world.log if kind == "aws"]
    assert any("delete-object" in c for c in calls[: calls.index(next(c for c in calls if c.startswith("s3 cp")))])
    state = json.loads((tmp_path / "move" / "state.json").read_text())
    assert state["source_tables"]["public.jobs_job"] == [3, 10]


def test_a_finished_move_does_nothing_again(tmp_path):
    world = World()
    assert run_move(world, tmp_path / "move") == 0
    world.log = []
    assert run_move(world, tmp_path / "move") == 0
    assert world.log == []


def test_rows_and_uploads_compared():
    assert (
        compare_rows({"public.a": 2, "public.django_migrations": 5}, {"public.a": 2, "public.django_migrations": 6})
        == []
    )
    assert compare_rows({"public.a": 2, "public.b": 1}, {"public.a": 3}) == [
        "public.a: 2 rows on the source, 3 on the target",
        "public.b: 1 rows on the source, no table on the target",
    ]
    assert compare_media({"x.png": 3, "y.png": 4}, {"x.png": 3, "z": 1}) == [
        "media/y.png: 4 bytes on the source, missing in the bucket"
    ]
    counted = parse_counts('public."odd name"\t3\t7\nmedia\t2\t10\tabc\n')
    assert counted.tables == {'public."odd name"': (3, 7)} and counted.media is not None and counted.media.files == 2


# --- the command line ---------------------------------------------------------------------------------------------


def outputs_file(folder: Path, name: str, outputs: dict) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(outputs))
    return path


SINGLE_OUTPUTS = {"publicIp": "203.0.113.10", "sshUser": "admin", "appName": "photofeed"}
SCALED_OUTPUTS = {
    "appServerGroup": "photofeed-app-1",
    "appName": "photofeed",
    "awsRegion": "us-east-1",
    "databaseEndpoint": "photofeed-db.x.us-east-1.rds.amazonaws.com:5432",
    "loadBalancerDns": "photofeed-alb.elb.amazonaws.com",
    "mediaBucket": "photofeed-assets",
    "artifactsBucket": "photofeed-artifacts",
}


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        (SCALED_OUTPUTS, SCALED_OUTPUTS, "is a scaled stack; it moves a single server's data"),
        (SINGLE_OUTPUTS, SINGLE_OUTPUTS, "is a single server; it moves into a scaled stack"),
        ({**SINGLE_OUTPUTS, "appName": "shop"}, SCALED_OUTPUTS, "the source's app is 'shop'"),
    ],
    ids=["source-scaled", "target-single", "other-app"],
)
def test_the_command_line_refuses_the_wrong_stacks(tmp_path, capsys, source, target, message):
    argv = ["--outputs-file", str(outputs_file(tmp_path, "a", source)), "move"]
    assert main([*argv, "--to-outputs-file", str(outputs_file(tmp_path, "b", target))]) == 2
    assert message in capsys.readouterr().err


def test_a_target_from_before_the_move_verb_is_told_to_pulumi_up(tmp_path, capsys):
    old = {k: v for k, v in SCALED_OUTPUTS.items() if k != "artifactsBucket"}
    argv = ["--outputs-file", str(outputs_file(tmp_path, "a", SINGLE_OUTPUTS)), "move"]
    assert main([*argv, "--to-outputs-file", str(outputs_file(tmp_path, "b", old)), "--folder", str(tmp_path)]) == 2
    assert "lacks the `artifactsBucket` output: run `pulumi up` on it once" in capsys.readouterr().err


# --- what runs on the servers --------------------------------------------------------------------------------------


def move_scripts() -> dict[str, str]:
    return {
        "drain-queue": movescripts.drain_queue(LAYOUT, 600),
        "stop-processes": movescripts.stop_processes(LAYOUT),
        "start-processes": movescripts.start_processes(LAYOUT),
        "source-state": movescripts.source_state(LAYOUT),
        "dump": movescripts.dump(LAYOUT),
        "target-counts": movescripts.target_counts(LAYOUT),
        "restore-moved": movescripts.restore(LAYOUT, "photofeed-artifacts", "moves/prod-x.dump", DIGEST),
    }


@pytest.mark.parametrize("name", move_scripts())
def test_the_move_scripts_are_clean_bash_run_as_root(name, tmp_path):
    argv = shlex.split(move_scripts()[name])
    assert argv[:4] == ["sudo", "-n", "bash", "-c"] and argv[5] == name
    check_shell("#!/bin/bash\n" + argv[4], tmp_path)


def test_no_password_on_a_command_line():
    """The app's database and Redis passwords reach psql and redis-cli in their environment, read on the server."""
    for name, command in move_scripts().items():
        script = shlex.split(command)[4]
        assert (
            "PGPASSWORD=${BASH_REMATCH" in script
            or "REDISCLI_AUTH=${BASH_REMATCH" in script
            or ("runuser -u postgres -- psql" in script and "redis-cli" not in script)  # peer: no password at all
            or ("psql" not in script and "redis-cli" not in script)
        ), name
    restore = shlex.split(move_scripts()["restore-moved"])
    assert restore[6:] == ["photofeed-artifacts", "moves/prod-x.dump", DIGEST]
