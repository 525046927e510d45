"""The verbs on the scaled profile: the same verbs as on one server (verbs.py), through AWS Systems Manager
instead of SSH — Run Command for what runs and ends (`AWS-RunShellScript`, as root), a Session Manager session for
what needs a terminal or a stream — and the AWS APIs where the thing itself is AWS's: the group (`status`), the
load balancer (`maintenance`), RDS (`backup`). The server commands are remote.py's and report.py's, unchanged.

Progress and errors go to stderr; stdout is the servers' output (each line prefixed with its server when several
answer), so it pipes. The exit status is the server command's (the first that failed, when several ran).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections.abc import Callable

from . import aws, remote, report
from .aws import AwsError
from .fleet import Fleet, Invocation, report_ended, say
from .remote import Layout
from .stack import GroupStack

GROUP_VERBS: dict[str, Callable[[argparse.Namespace, GroupStack, Fleet], int]] = {}
# What a visitor gets while the site is in maintenance: the load balancer's own answer (at most 1,024 bytes),
# the single server's page.
MAINTENANCE_PAGE = (
    "<!doctype html><title>{app}: down for maintenance</title><h1>Down for maintenance</h1>"
    "<p>Back shortly. Please try again in a few minutes.</p>\n"
)


def verb(name: str) -> Callable[[Callable[[argparse.Namespace, GroupStack, Fleet], int]], Callable[..., int]]:
    def register(function: Callable[[argparse.Namespace, GroupStack, Fleet], int]) -> Callable[..., int]:
        GROUP_VERBS[name] = function
        return function

    return register


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_on_one(fleet: Fleet, what: str, command: str, timeout: int = 3600) -> int:
    """`command` on one server (`--instance`, or one in service) through Run Command; its output as it is."""
    instance_id = fleet.one()
    say(f"{what} on {instance_id} ({fleet.stack.app}, Run Command)")
    ended = fleet.run([instance_id], command, what, timeout)[instance_id]
    sys.stdout.write(ended.stdout)
    sys.stdout.flush()
    sys.stderr.write(ended.stderr)
    report_ended(ended, what)
    return ended.exit_status


def run_on_all(fleet: Fleet, what: str, command: str, timeout: int = 600) -> dict[str, Invocation]:
    """`command` on every server in service (or `--instance`); each line of output prefixed with its server."""
    targets = fleet.targets()
    say(f"{what} on {len(targets)} server{'s' if len(targets) > 1 else ''} ({', '.join(targets)}; Run Command)")
    ended = fleet.run(targets, command, what, timeout)
    for instance_id, invocation in ended.items():
        for stream, text in ((sys.stdout, invocation.stdout), (sys.stderr, invocation.stderr)):
            stream.writelines(f"{instance_id}  {line}\n" for line in text.splitlines())
        sys.stdout.flush()
        report_ended(invocation, what)
    return ended


def first_failure(ended: dict[str, Invocation]) -> int:
    return next((item.exit_status for item in ended.values() if item.exit_status != 0), 0)


def session(fleet: Fleet, what: str, command: str | None) -> int:
    instance_id = fleet.one()
    say(f"{what} on {instance_id} ({fleet.stack.app}, Session Manager)")
    return fleet.aws.interactive(aws.start_session(fleet.aws, instance_id, command))


# --- the verbs ---------------------------------------------------------------------------------------------


@verb("ssh")
def ssh_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    if not args.command:
        return session(fleet, "a shell (as ssm-user, who may sudo)", None)
    command = " ".join(args.command)
    if interactive():
        return session(fleet, f"`{command}`", command)
    return run_on_one(fleet, f"`{command}`", command)


@verb("logs")
def logs_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    if args.follow:
        # Run Command is not a stream: following is a session's, on one server.
        command = remote.logs(args.source, follow=True, lines=args.lines)
        return session(fleet, f"{args.source} logs (following; Ctrl-C stops)", command)
    command = remote.logs(args.source, follow=False, lines=args.lines)
    return first_failure(run_on_all(fleet, f"{args.source} logs", command))


@verb("manage")
def manage_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    command = remote.manage(Layout(stack.app), args.args)
    what = f"manage.py {' '.join(args.args)}"
    if interactive():
        return session(fleet, what, command)
    return run_on_one(fleet, what, command)


@verb("status")
def status_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    group = fleet.group()
    servers = fleet.servers()
    serving = [server for server in servers if server.state == "InService"]
    template = group.get("LaunchTemplate") or (group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get(
        "LaunchTemplateSpecification", {}
    )
    print(f"site:         {stack.url}")
    print(
        f"group:        {stack.group}: {len(serving)} in service (desired {group.get('DesiredCapacity')}, "
        f"min {group.get('MinSize')}, max {group.get('MaxSize')}), launch template version "
        f"{template.get('Version', '?')}"
    )
    try:
        maintenance = "ON (visitors get 503)" if serving_rule(fleet)[1] else "off"
    except AwsError as error:  # e.g. credentials without elasticloadbalancing:Describe*: the rest still helps
        maintenance = f"unknown ({error})"
    print(f"maintenance:  {maintenance}")
    print(f"last roll:    {describe_refresh(fleet)}")
    print("servers:")
    for server in servers:
        print(
            f"  {server.instance_id}  {server.zone}  {server.state}  {server.health}  "
            f"launch template version {server.launch_template_version}"
        )
    sys.stdout.flush()
    if not serving:
        return 0
    ended = fleet.run([s.instance_id for s in serving], report.app_server_status(Layout(stack.app)), "status")
    for instance_id, invocation in ended.items():
        print(f"{instance_id}:")
        sys.stdout.writelines(f"  {line}\n" for line in invocation.stdout.splitlines())
        sys.stdout.flush()
        sys.stderr.write(invocation.stderr)
        report_ended(invocation, "status")
    return first_failure(ended)


def describe_refresh(fleet: Fleet) -> str:
    """The group's last instance refresh (a release or a config change rolling), and why it stopped if it did."""
    found = fleet.aws.call(*aws.last_refresh(fleet.stack.group)).get("InstanceRefreshes", [])
    if not found:
        return "none yet"
    last = found[0]
    times = " → ".join(_utc(last[key]) for key in ("StartTime", "EndTime") if last.get(key))
    line = f"{last.get('Status', '?')}, {times}" if times else str(last.get("Status", "?"))
    if last.get("PercentageComplete") is not None and last.get("Status") != "Successful":
        line += f" ({last['PercentageComplete']} % done)"
    if last.get("StatusReason"):
        line += f": {last['StatusReason']}"
    return line


def _utc(value: str) -> str:
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


@verb("releases")
def releases_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    return run_on_one(
        fleet, "the group's releases (newest first, * this server's)", report.recorded_releases(Layout(stack.app))
    )


@verb("rollback")
def rollback_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    say(
        "rollback on the scaled profile is a new roll, not a switch on a server: each app server holds only the "
        "release it booted with, and one switched by hand would differ from the rest and from every server the "
        "group launches later. Put the previous code (or app.ref) back and `pulumi up`: a new launch template "
        "version with that release rolls the group, the old servers serving until the new ones are healthy (its "
        "archive is kept in the artifacts bucket, its migrations are recorded: none run again; `releases` lists "
        "the ids). Migrations are not reversed, as on one server."
    )
    return 2


# --- backups: RDS snapshots ------------------------------------------------------------------------------


def snapshot_id(app: str, stamp: str) -> str:
    """An RDS snapshot identifier: letters, digits and single hyphens, starting with a letter (lower case)."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", app.lower())).strip("-") or "site"
    return f"{name}-{stamp.lower()}"


def create_snapshot(database: str, snapshot: str) -> tuple[str, ...]:
    return ("rds", "create-db-snapshot", "--db-instance-identifier", database, "--db-snapshot-identifier", snapshot)


def describe_snapshot(snapshot: str) -> tuple[str, ...]:
    return ("rds", "describe-db-snapshots", "--db-snapshot-identifier", snapshot)


@verb("backup")
def backup_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    snapshot = snapshot_id(stack.app, stamp)
    say(f"snapshot {snapshot} of the database {stack.database} (RDS; uploads are kept by the bucket's versions)")
    fleet.aws.call(*create_snapshot(stack.database, snapshot))
    shown = ""
    while True:
        found = fleet.aws.call(*describe_snapshot(snapshot)).get("DBSnapshots", [])
        state = found[0] if found else {}
        status = state.get("Status", "creating")
        progress = f"{status}, {state.get('PercentProgress', 0)} %"
        if progress != shown:
            say(progress)
            shown = progress
        if status == "available":
            print(snapshot)
            return 0
        if status not in ("creating", "pending", "backing-up"):
            say(f"the snapshot {snapshot} ended {status}")
            return 1
        time.sleep(fleet.poll * 10)


@verb("restore")
def restore_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    say(
        f"restore is not a verb on the scaled profile: RDS restores a snapshot (from `backup` or its automated "
        f"ones: `aws rds describe-db-snapshots --db-instance-identifier {stack.database}`) or a point in time only "
        "into a new instance. docs/scaling-out.md, 'Restoring the database', gives the steps: the new instance's "
        "data restored into the live database through an app server, the stack's instance kept."
    )
    return 2


@verb("download-backup")
def download_backup_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    say(
        "an RDS snapshot cannot be downloaded: a copy of the data on this machine is a `pg_dump` through a Session "
        "Manager tunnel to the database (docs/scaling-out.md, 'Restoring the database'), or `aws rds "
        "start-export-task` (Parquet files in S3)"
    )
    return 2


# --- maintenance: the load balancer answers for the app --------------------------------------------------


def describe_load_balancers() -> tuple[str, ...]:
    return ("elbv2", "describe-load-balancers")


def describe_listeners(load_balancer_arn: str) -> tuple[str, ...]:
    return ("elbv2", "describe-listeners", "--load-balancer-arn", load_balancer_arn)


def describe_rules(listener_arn: str) -> tuple[str, ...]:
    return ("elbv2", "describe-rules", "--listener-arn", listener_arn)


def modify_rule(rule_arn: str, actions: list[dict]) -> tuple[str, ...]:
    return ("elbv2", "modify-rule", "--rule-arn", rule_arn, "--actions", json.dumps(actions))


def maintenance_actions(app: str) -> list[dict]:
    page = MAINTENANCE_PAGE.format(app=app)
    return [
        {
            "Type": "fixed-response",
            "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/html", "MessageBody": page},
        }
    ]


def serving_actions(target_group_arn: str) -> list[dict]:
    return [{"Type": "forward", "TargetGroupArn": target_group_arn}]


def serving_rule(fleet: Fleet) -> tuple[str, bool]:
    """(ARN, in maintenance) of the listener rule that sends CloudFront's requests (its origin header) to the app
    servers: the program's one rule that is not a listener's default."""
    stack = fleet.stack
    balancers = fleet.aws.call(*describe_load_balancers()).get("LoadBalancers", [])
    found = [lb for lb in balancers if str(lb.get("DNSName", "")).lower() == stack.load_balancer_dns.lower()]
    if not found:
        raise AwsError(f"no load balancer named {stack.load_balancer_dns} in {fleet.aws.region}")
    rules = []
    for listener in fleet.aws.call(*describe_listeners(found[0]["LoadBalancerArn"])).get("Listeners", []):
        for rule in fleet.aws.call(*describe_rules(listener["ListenerArn"])).get("Rules", []):
            if not rule.get("IsDefault") and any(c.get("Field") == "http-header" for c in rule.get("Conditions", [])):
                rules.append(rule)
    if len(rules) != 1:
        raise AwsError(
            f"expected one rule for CloudFront's origin header on {stack.load_balancer_dns}, found {len(rules)}"
        )
    actions = rules[0].get("Actions", [])
    in_maintenance = any(a.get("Type") == "fixed-response" for a in actions)
    return rules[0]["RuleArn"], in_maintenance


@verb("maintenance")
def maintenance_verb(args: argparse.Namespace, stack: GroupStack, fleet: Fleet) -> int:
    rule, on = serving_rule(fleet)
    if args.state == "on" and not on:
        say(f"turning maintenance on: the load balancer {stack.load_balancer_dns} answers 503 for the app")
        fleet.aws.call(*modify_rule(rule, maintenance_actions(stack.app)))
    elif args.state == "off" and on:
        groups = fleet.group().get("TargetGroupARNs", [])
        if len(groups) != 1:
            raise AwsError(f"the group {stack.group} has {len(groups)} target groups, expected one")
        say(f"turning maintenance off: the load balancer {stack.load_balancer_dns} forwards to the app servers again")
        fleet.aws.call(*modify_rule(rule, serving_actions(groups[0])))
    print("on" if serving_rule(fleet)[1] else "off")
    return 0
