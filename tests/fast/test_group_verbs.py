"""The operator's verbs on the scaled profile without AWS: which transport a stack's outputs choose, and the exact
AWS CLI command lines (argument vectors) each verb runs, recorded by an `aws` on PATH that answers as AWS would.
tests/guests/test_scaled_servers.py runs the non-interactive ones for real against booted app servers."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from djangoship import groupverbs, remote, report
from djangoship.cli import main
from djangoship.groupverbs import GROUP_VERBS
from djangoship.remote import Layout
from djangoship.stack import GroupStack, Stack, StackError, from_outputs
from djangoship.verbs import VERBS
from harness.mockrun import run_program

LAYOUT = Layout("photofeed")
SERVERS = ["i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"]
TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/photofeed-tg/1"
RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/photofeed-alb/1/2/3"
REGION = ["aws", "--region", "us-east-1", "--output", "json"]


@pytest.fixture(scope="module")
def outputs() -> dict:
    return run_program({"profile": "scaled"}).outputs


# An `aws` that records its argv (one JSON line each) and answers each operation from ANSWERS (a JSON file).
FAKE_AWS = """\
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_AWS_CALLS"], "a") as calls:
    calls.write(json.dumps(["aws", *argv]) + "\\n")
words = [a for a in argv if not a.startswith("-")]
answers = json.load(open(os.environ["FAKE_AWS_ANSWERS"]))
operation = argv[argv.index("--output") + 3] if "--output" in argv else argv[argv.index("ssm") + 1]
answer = answers.get(operation, {})
if isinstance(answer, dict) and "exit" in answer:
    sys.stderr.write(answer["stderr"])
    sys.exit(answer["exit"])
print(json.dumps(answer))
"""


def answers(outputs: dict, *, maintenance: bool = False) -> dict:
    group = outputs["appServerGroup"]
    action = (
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}
        if maintenance
        else {"Type": "forward", "TargetGroupArn": TARGET_GROUP}
    )
    return {
        "describe-auto-scaling-groups": {
            "AutoScalingGroups": [
                {
                    "AutoScalingGroupName": group,
                    "MinSize": 2,
                    "MaxSize": 4,
                    "DesiredCapacity": 2,
                    "LaunchTemplate": {"LaunchTemplateId": "lt-1", "Version": "3"},
                    "TargetGroupARNs": [TARGET_GROUP],
                    "Instances": [
                        {
                            "InstanceId": instance,
                            "AvailabilityZone": zone,
                            "LifecycleState": "InService",
                            "HealthStatus": "Healthy",
                            "LaunchTemplate": {"Version": "3"},
                        }
                        for instance, zone in zip(SERVERS, ["us-east-1a", "us-east-1b"], strict=True)
                    ],
                }
            ]
        },
        "describe-instance-refreshes": {
            "InstanceRefreshes": [
                {
                    "Status": "Failed",
                    "StatusReason": "i-0ccc: its boot completed the lifecycle hook with ABANDON",
                    "PercentageComplete": 0,
                    "StartTime": "2026-12-01T10:00:00Z",
                    "EndTime": "2026-12-01T10:09:00Z",
                }
            ]
        },
        "send-command": {"Command": {"CommandId": "c0ffee00-0000-4000-8000-000000000001"}},
        "list-command-invocations": {
            "CommandInvocations": [{"InstanceId": instance, "Status": "Success"} for instance in SERVERS]
        },
        "get-command-invocation": {
            "Status": "Success",
            "ResponseCode": 0,
            "StandardOutputContent": "line one\nline two\n",
            "StandardErrorContent": "",
        },
        "describe-load-balancers": {
            "LoadBalancers": [
                {"DNSName": "other.elb.amazonaws.com", "LoadBalancerArn": "arn:other"},
                {"DNSName": outputs["loadBalancerDns"], "LoadBalancerArn": "arn:alb"},
            ]
        },
        "describe-listeners": {"Listeners": [{"ListenerArn": "arn:listener"}]},
        "describe-rules": {
            "Rules": [
                {"RuleArn": "arn:default", "IsDefault": True, "Conditions": [], "Actions": []},
                {
                    "RuleArn": RULE,
                    "IsDefault": False,
                    "Conditions": [{"Field": "http-header"}],
                    "Actions": [action],
                },
            ]
        },
        "modify-rule": {},
        "create-db-snapshot": {},
        "describe-db-snapshots": {"DBSnapshots": [{"Status": "available", "PercentProgress": 100}]},
    }


@pytest.fixture
def aws_cli(tmp_path, monkeypatch, outputs):
    """Put the recording `aws` on PATH; returns (outputs file, calls(), set_answers())."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "aws"
    script.write_text(f"#!{sys.executable}\n{FAKE_AWS}")
    script.chmod(0o755)
    plugin = bin_dir / "session-manager-plugin"
    plugin.write_text("#!/bin/sh\nexit 0\n")
    plugin.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    calls_file, answers_file = tmp_path / "calls", tmp_path / "answers.json"
    monkeypatch.setenv("FAKE_AWS_CALLS", str(calls_file))
    monkeypatch.setenv("FAKE_AWS_ANSWERS", str(answers_file))
    answers_file.write_text(json.dumps(answers(outputs)))
    outputs_file = tmp_path / "prod.json"
    outputs_file.write_text(json.dumps(outputs))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []

    def set_answers(**changes) -> None:
        answers_file.write_text(json.dumps({**answers(outputs, **changes)}))

    return outputs_file, calls, set_answers


def verb(outputs_file: Path, *argv: str) -> int:
    return main(["--outputs-file", str(outputs_file), *argv])


def sent_command(call: list[str]) -> str:
    """The one command line a send-command call carries."""
    parameters = json.loads(call[call.index("--parameters") + 1])
    assert set(parameters) == {"commands", "executionTimeout"} and len(parameters["commands"]) == 1
    return parameters["commands"][0]


# --- which transport -------------------------------------------------------------------------------------


def test_a_scaled_stack_goes_through_systems_manager_and_one_server_through_ssh(outputs):
    stack = from_outputs("prod", outputs)
    assert stack == GroupStack(
        name="prod",
        app="photofeed",
        url="https://d111111abcdef8.cloudfront.net",
        group=outputs["appServerGroup"],
        region="us-east-1",
        database="photofeed-db",
        load_balancer_dns="photofeed-alb-1234567890.us-east-1.elb.amazonaws.com",
        media_bucket="photofeed-assets",
        artifacts_bucket="photofeed-artifacts",
    )
    assert isinstance(from_outputs("dev", run_program({}).outputs), Stack)
    # The same verbs on both.
    assert set(GROUP_VERBS) == set(VERBS)


def test_a_scaled_stack_without_the_verbs_outputs_says_run_pulumi_up(outputs):
    older = {key: value for key, value in outputs.items() if key not in ("appName", "awsRegion")}
    with pytest.raises(StackError, match=r"lacks the `appName`, `awsRegion` outputs: run `pulumi up` once"):
        from_outputs("prod", older)


def test_instance_is_checked_and_only_for_the_scaled_profile(aws_cli, tmp_path, capsys):
    outputs_file, calls, _ = aws_cli
    assert verb(outputs_file, "--instance", "i-0aaa; reboot", "status") == 2
    assert "is not an instance id" in capsys.readouterr().err
    single = tmp_path / "dev.json"
    single.write_text(json.dumps(run_program({}).outputs))
    assert verb(single, "--instance", SERVERS[0], "status") == 2
    assert "--instance is for the scaled profile" in capsys.readouterr().err
    assert calls() == []


# --- the command lines -----------------------------------------------------------------------------------


def test_logs_run_on_every_server_and_prefix_each_line(aws_cli, outputs, capsys):
    outputs_file, calls, _ = aws_cli
    assert verb(outputs_file, "logs", "-n", "50", "nginx") == 0
    made = calls()
    assert made[0] == [
        *REGION,
        "autoscaling",
        "describe-auto-scaling-groups",
        "--auto-scaling-group-names",
        outputs["appServerGroup"],
    ]
    send = made[1]
    assert send[:14] == [
        *REGION,
        "ssm",
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--instance-ids",
        *SERVERS,
        "--comment",
        "djangoship nginx logs",
    ]
    assert sent_command(send) == remote.logs("nginx", follow=False, lines=50)
    assert json.loads(send[-1])["executionTimeout"] == ["600"]
    assert made[2] == [
        *REGION,
        "ssm",
        "list-command-invocations",
        "--command-id",
        "c0ffee00-0000-4000-8000-000000000001",
    ]
    assert made[3:] == [
        [
            *REGION,
            "ssm",
            "get-command-invocation",
            "--command-id",
            "c0ffee00-0000-4000-8000-000000000001",
            "--instance-id",
            i,
        ]
        for i in SERVERS
    ]
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{i}  line {n}" for i in SERVERS for n in ("one", "two")]


def test_manage_without_a_terminal_is_run_command_on_one_server_said_which(aws_cli, capsys):
    outputs_file, calls, _ = aws_cli
    hostile = ["shell", "-c", "print('a b'); import os", "; reboot"]
    assert verb(outputs_file, "manage", *hostile) == 0
    send = calls()[1]
    assert send[send.index("--instance-ids") + 1 : send.index("--comment")] == [SERVERS[0]]
    # Every argument reaches <app>-manage as one argument: the command line is remote.py's, shell-quoted.
    assert sent_command(send) == remote.manage(LAYOUT, hostile)
    assert shlex.split(sent_command(send)) == ["sudo", "-n", "photofeed-manage", *hostile]
    err = capsys.readouterr().err
    assert f"on {SERVERS[0]} (us-east-1a, one of 2 in service; --instance ID picks another)" in err


def test_a_failing_command_passes_its_exit_status_and_says_why(aws_cli, outputs, capsys, tmp_path):
    outputs_file, calls, _ = aws_cli
    failing = answers(outputs)
    failing["get-command-invocation"] = {
        "Status": "Failed",
        "StatusDetails": "Failed",
        "ResponseCode": 3,
        "StandardOutputContent": "x" * 24000,
        "StandardErrorContent": "CommandError: no\n",
    }
    Path(os.environ["FAKE_AWS_ANSWERS"]).write_text(json.dumps(failing))
    assert verb(outputs_file, "--instance", SERVERS[1], "manage", "check") == 3
    err = capsys.readouterr().err
    assert "CommandError: no" in err and f"manage.py check failed on {SERVERS[1]}: Failed (exit 3)" in err
    assert "24,000 characters of output; the rest was cut" in err


def test_sessions_for_a_terminal(aws_cli, monkeypatch):
    """`ssh`, `manage shell` and `logs -f` at a terminal are Session Manager sessions (run here by the recording
    `aws`; a real one needs the session-manager-plugin)."""
    outputs_file, calls, _ = aws_cli
    monkeypatch.setattr(groupverbs, "interactive", lambda: True)
    assert verb(outputs_file, "ssh") == 0
    assert verb(outputs_file, "--instance", SERVERS[1], "manage", "shell") == 0
    assert verb(outputs_file, "logs", "-f", "web") == 0
    sessions = [call for call in calls() if "start-session" in call]

    def interactive_command(instance: str, command: str) -> list[str]:
        return [
            *["aws", "--region", "us-east-1", "ssm", "start-session", "--target", instance],
            *["--document-name", "AWS-StartInteractiveCommand", "--parameters", json.dumps({"command": [command]})],
        ]

    assert sessions == [
        ["aws", "--region", "us-east-1", "ssm", "start-session", "--target", SERVERS[0]],
        interactive_command(SERVERS[1], "sudo -n photofeed-manage shell"),
        interactive_command(SERVERS[0], remote.logs("web", follow=True, lines=100)),
    ]


def test_a_session_without_the_plugin_says_what_to_install(aws_cli, monkeypatch, capsys):
    outputs_file, _, _ = aws_cli
    monkeypatch.setattr(groupverbs, "interactive", lambda: True)
    monkeypatch.setattr("djangoship.aws.shutil.which", lambda name: None if name == "session-manager-plugin" else name)
    assert verb(outputs_file, "ssh") == 2
    assert "sessions need AWS's session-manager-plugin" in capsys.readouterr().err


def test_status_shows_the_group_the_last_roll_and_each_server(aws_cli, outputs, capsys):
    outputs_file, calls, _ = aws_cli
    assert verb(outputs_file, "status") == 0
    made = calls()
    operations = [call[6] for call in made]
    assert operations == [
        "describe-auto-scaling-groups",
        "describe-load-balancers",
        "describe-listeners",
        "describe-rules",
        "describe-instance-refreshes",
        "send-command",
        "list-command-invocations",
        "get-command-invocation",
        "get-command-invocation",
    ]
    assert made[4][5:] == [
        "autoscaling",
        "describe-instance-refreshes",
        "--auto-scaling-group-name",
        outputs["appServerGroup"],
        "--max-records",
        "1",
    ]
    assert sent_command(made[5]) == report.app_server_status(LAYOUT)
    out = capsys.readouterr().out
    assert f"group:        {outputs['appServerGroup']}: 2 in service (desired 2, min 2, max 4)" in out
    assert "maintenance:  off" in out
    assert (
        "last roll:    Failed, 2026-12-01 10:00 UTC → 2026-12-01 10:09 UTC (0 % done): "
        "i-0ccc: its boot completed the lifecycle hook with ABANDON"
    ) in out
    assert f"  {SERVERS[1]}  us-east-1b  InService  Healthy  launch template version 3" in out
    assert f"{SERVERS[0]}:\n  line one\n  line two\n" in out


def test_maintenance_switches_the_load_balancers_rule(aws_cli, outputs, capsys):
    outputs_file, calls, set_answers = aws_cli
    assert verb(outputs_file, "maintenance", "on") == 0
    modify = [call for call in calls() if "modify-rule" in call]
    assert len(modify) == 1 and modify[0][5:9] == ["elbv2", "modify-rule", "--rule-arn", RULE]
    action = json.loads(modify[0][-1])
    assert action == groupverbs.maintenance_actions("photofeed")
    page = action[0]["FixedResponseConfig"]["MessageBody"]
    assert action[0]["FixedResponseConfig"]["StatusCode"] == "503" and len(page.encode()) <= 1024
    set_answers(maintenance=True)
    assert verb(outputs_file, "maintenance", "off") == 0
    modify = [call for call in calls() if "modify-rule" in call]
    assert json.loads(modify[1][-1]) == [{"Type": "forward", "TargetGroupArn": TARGET_GROUP}]
    # Already in the state asked for, or no state: nothing changes.
    assert verb(outputs_file, "maintenance", "on") == 0
    assert verb(outputs_file, "maintenance") == 0
    assert len([call for call in calls() if "modify-rule" in call]) == 2
    assert capsys.readouterr().out.splitlines()[-1] == "on"


def test_backup_is_an_rds_snapshot_waited_for(aws_cli, capsys):
    outputs_file, calls, _ = aws_cli
    assert verb(outputs_file, "backup") == 0
    made = calls()
    snapshot = capsys.readouterr().out.strip()
    assert snapshot.startswith("photofeed-") and snapshot == snapshot.lower()
    assert made[0][5:] == [
        "rds",
        "create-db-snapshot",
        "--db-instance-identifier",
        "photofeed-db",
        "--db-snapshot-identifier",
        snapshot,
    ]
    assert made[1][5:] == ["rds", "describe-db-snapshots", "--db-snapshot-identifier", snapshot]
    assert groupverbs.snapshot_id("Photo__Feed-", "20261128T033000Z") == "photo-feed-20261128t033000z"


@pytest.mark.parametrize("name", ["rollback", "restore", "download-backup"])
def test_what_the_scaled_profile_does_otherwise_is_refused_with_the_way(aws_cli, name, capsys):
    outputs_file, calls, _ = aws_cli
    assert verb(outputs_file, name) == 2
    err = capsys.readouterr().err
    assert {"rollback": "pulumi up", "restore": "docs/scaling-out.md", "download-backup": "pg_dump"}[name] in err
    assert calls() == []


def test_releases_read_the_groups_record_through_a_server(aws_cli):
    outputs_file, calls, _ = aws_cli
    assert verb(outputs_file, "releases") == 0
    assert sent_command(calls()[1]) == report.recorded_releases(LAYOUT)


def test_an_aws_error_is_the_clis_own_message_and_exit_2(aws_cli, outputs, capsys):
    outputs_file, _, _ = aws_cli
    denied = answers(outputs)
    denied["describe-auto-scaling-groups"] = {"exit": 254, "stderr": "An error occurred (AccessDenied): no\n"}
    Path(os.environ["FAKE_AWS_ANSWERS"]).write_text(json.dumps(denied))
    assert verb(outputs_file, "status") == 2
    assert "`aws autoscaling describe-auto-scaling-groups` failed: An error occurred (AccessDenied): no" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("name", ["app_server_status", "recorded_releases"])
def test_the_app_server_scripts_are_clean_bash_run_as_root(name, tmp_path):
    from rendered.helpers import check_shell

    argv = shlex.split(getattr(report, name)(LAYOUT))
    assert argv[:4] == ["sudo", "-n", "bash", "-c"]
    check_shell("#!/bin/bash\n" + argv[4], tmp_path)


def test_a_server_whose_agent_never_answers_is_given_up_past_the_timeout(aws_cli, outputs):
    from djangoship.aws import Aws
    from djangoship.fleet import Fleet

    stuck = answers(outputs)
    stuck["list-command-invocations"] = {"CommandInvocations": [{"InstanceId": SERVERS[0], "Status": "Pending"}]}
    Path(os.environ["FAKE_AWS_ANSWERS"]).write_text(json.dumps(stuck))
    stack = from_outputs("prod", outputs)
    assert isinstance(stack, GroupStack)
    ended = Fleet(stack, Aws(stack.region), poll=0.01).run([SERVERS[0]], "true", "check", timeout=-120)
    assert ended[SERVERS[0]].status == "NoAnswer" and ended[SERVERS[0]].exit_status == 1
