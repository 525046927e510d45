"""The AWS calls an operator's CLI makes on the scaled profile that moto cannot answer for the stand-ins, answered
from them: the group stand-in's servers and last instance refresh (Auto Scaling), the load balancer stand-in's
rule, which the maintenance verb switches (Elastic Load Balancing v2), and snapshots of the RDS stand-in — each a
real copy of the database, made by pg_dump and pg_restore on the stand-in's PostgreSQL (RDS).

Answered for the operator on loopback only (any credentials); a guest's calls to these services go their usual way.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from .awsapi import ACCOUNT, REGION
from .balancer import LoadBalancer
from .database import DatabaseServer
from .group import Group
from .runcommand import Answer, read_body, request_service

NAMESPACES = {
    "autoscaling": "http://autoscaling.amazonaws.com/doc/2011-01-01/",
    "elasticloadbalancing": "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
    "rds": "http://rds.amazonaws.com/doc/2014-10-31/",
}
ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}"


def to_xml(value: Any, member: str = "member") -> str:
    """A botocore-readable XML body: dicts as elements, lists as repeated `member` elements."""
    if isinstance(value, dict):
        return "".join(f"<{key}>{to_xml(item, member)}</{key}>" for key, item in value.items())
    if isinstance(value, list):
        return "".join(f"<{member}>{to_xml(item, member)}</{member}>" for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def answer(service: str, action: str, result: Any, member: str = "member") -> Answer:
    body = (
        f'<{action}Response xmlns="{NAMESPACES[service]}"><{action}Result>{to_xml(result, member)}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
    )
    return "200 OK", "text/xml", body.encode()


def error(service: str, code: str, message: str, status: str = "400 Bad Request") -> Answer:
    body = (
        f'<ErrorResponse xmlns="{NAMESPACES[service]}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, "text/xml", body.encode()


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


@dataclass
class Snapshot:
    identifier: str
    instance: str
    database: str  # the copy's name on the stand-in's PostgreSQL
    created: float = field(default_factory=time.time)
    status: str = "creating"
    progress: int = 0


class OperatorApi:
    def __init__(
        self,
        group: Group,
        balancer: LoadBalancer,
        database: DatabaseServer,
        database_instance: str,  # the RDS instance's identifier (the first label of its endpoint)
        database_name: str,
        load_balancer_dns: str,
        target_group_arn: str,
    ) -> None:
        self.group, self.balancer, self.database = group, balancer, database
        self.database_instance, self.database_name = database_instance, database_name
        self.load_balancer_dns, self.target_group_arn = load_balancer_dns, target_group_arn
        self.snapshots: dict[str, Snapshot] = {}
        self.lock = threading.Lock()

    def handle(self, environ: dict[str, Any]) -> Answer | None:
        if environ.get("REMOTE_ADDR") != "127.0.0.1":
            return None
        _, service = request_service(environ)
        if service not in NAMESPACES:
            return None
        form = {k: v[0] for k, v in urllib.parse.parse_qs(read_body(environ).decode(), True).items()}
        handler = getattr(self, f"{service}_{form.get('Action', '')}", None)
        return handler(form) if handler is not None else None

    # --- Auto Scaling ---------------------------------------------------------------------------------------

    def autoscaling_DescribeAutoScalingGroups(self, form: dict[str, str]) -> Answer:  # noqa: N802
        settings = self.group.settings
        names = [value for key, value in form.items() if key.startswith("AutoScalingGroupNames.member.")]
        if names and settings.name not in names:
            return answer("autoscaling", "DescribeAutoScalingGroups", {"AutoScalingGroups": []})
        with self.group.lock:
            instances = list(self.group.instances.values())
            version = self.group.version
        members = [
            {
                "InstanceId": i.instance_id,
                "AvailabilityZone": i.zone,
                "LifecycleState": i.state,
                "HealthStatus": "Unhealthy" if self.balancer.state(i.address) == "unhealthy" else "Healthy",
                "LaunchTemplate": {"LaunchTemplateId": settings.launch_template_id, "Version": str(i.version)},
                "ProtectedFromScaleIn": False,
            }
            for i in instances
        ]
        group = {
            "AutoScalingGroupName": settings.name,
            "LaunchTemplate": {"LaunchTemplateId": settings.launch_template_id, "Version": str(version)},
            "MinSize": settings.min_size,
            "MaxSize": settings.max_size,
            "DesiredCapacity": settings.desired,
            "TargetGroupARNs": [self.target_group_arn],
            "HealthCheckType": settings.health_check_type,
            "Instances": members,
        }
        return answer("autoscaling", "DescribeAutoScalingGroups", {"AutoScalingGroups": [group]})

    def autoscaling_DescribeInstanceRefreshes(self, form: dict[str, str]) -> Answer:  # noqa: N802
        refreshes = []
        for refresh in reversed(self.group.refreshes):
            item = {
                "InstanceRefreshId": refresh["id"],
                "AutoScalingGroupName": self.group.settings.name,
                "Status": refresh["status"],
                "StartTime": iso(refresh["started"]),
                "PercentageComplete": refresh["percent"],
            }
            if refresh.get("ended"):
                item["EndTime"] = iso(refresh["ended"])
            if refresh.get("reason"):
                item["StatusReason"] = refresh["reason"]
            refreshes.append(item)
        limit = int(form.get("MaxRecords", "50"))
        return answer("autoscaling", "DescribeInstanceRefreshes", {"InstanceRefreshes": refreshes[:limit]})

    # --- Elastic Load Balancing v2 ---------------------------------------------------------------------------

    @property
    def load_balancer_arn(self) -> str:
        return f"{ARN}:loadbalancer/app/{self.load_balancer_dns.split('-')[0]}-alb/standin"

    @property
    def listener_arn(self) -> str:
        return f"{ARN}:listener/app/standin/1/80"

    @property
    def rule_arn(self) -> str:
        return f"{ARN}:listener-rule/app/standin/1/80/origin"

    def elasticloadbalancing_DescribeLoadBalancers(self, form: dict[str, str]) -> Answer:  # noqa: N802
        balancer = {"LoadBalancerArn": self.load_balancer_arn, "DNSName": self.load_balancer_dns, "Type": "application"}
        return answer("elasticloadbalancing", "DescribeLoadBalancers", {"LoadBalancers": [balancer]})

    def elasticloadbalancing_DescribeListeners(self, form: dict[str, str]) -> Answer:  # noqa: N802
        if form.get("LoadBalancerArn") != self.load_balancer_arn:
            return error("elasticloadbalancing", "LoadBalancerNotFound", "no such load balancer")
        listener = {"ListenerArn": self.listener_arn, "LoadBalancerArn": self.load_balancer_arn, "Port": 80}
        return answer("elasticloadbalancing", "DescribeListeners", {"Listeners": [listener]})

    def elasticloadbalancing_DescribeRules(self, form: dict[str, str]) -> Answer:  # noqa: N802
        if form.get("ListenerArn") != self.listener_arn:
            return error("elasticloadbalancing", "ListenerNotFound", "no such listener")
        rules = self.balancer.rules
        fixed = self.balancer.fixed_response
        action: dict[str, Any] = (
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": str(fixed[0]), "ContentType": fixed[1], "MessageBody": fixed[2]},
            }
            if fixed
            else {"Type": "forward", "TargetGroupArn": self.target_group_arn}
        )
        default = {
            "RuleArn": f"{self.rule_arn}-default",
            "Priority": "default",
            "IsDefault": True,
            "Conditions": [],
            "Actions": [
                {
                    "Type": "fixed-response",
                    "FixedResponseConfig": {"StatusCode": str(rules.default_status), "MessageBody": rules.default_body},
                }
            ],
        }
        # The header's secret value stays out of the answer, as it stays out of the verb.
        origin = {
            "RuleArn": self.rule_arn,
            "Priority": "1",
            "IsDefault": False,
            "Conditions": [{"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": rules.header}}],
            "Actions": [action],
        }
        return answer("elasticloadbalancing", "DescribeRules", {"Rules": [origin, default]})

    def elasticloadbalancing_ModifyRule(self, form: dict[str, str]) -> Answer:  # noqa: N802
        if form.get("RuleArn") != self.rule_arn:
            return error("elasticloadbalancing", "RuleNotFound", "no such rule")
        kind = form.get("Actions.member.1.Type")
        if kind == "fixed-response":
            prefix = "Actions.member.1.FixedResponseConfig."
            self.balancer.fixed_response = (
                int(form[prefix + "StatusCode"]),
                form.get(prefix + "ContentType", "text/plain"),
                form.get(prefix + "MessageBody", ""),
            )
        elif kind == "forward" and form.get("Actions.member.1.TargetGroupArn") == self.target_group_arn:
            self.balancer.fixed_response = None
        else:
            return error("elasticloadbalancing", "ValidationError", f"the stand-in takes no action {kind!r} here")
        return answer("elasticloadbalancing", "ModifyRule", {"Rules": []})

    # --- RDS: snapshots, each a copy of the database ----------------------------------------------------------

    def rds_CreateDBSnapshot(self, form: dict[str, str]) -> Answer:  # noqa: N802
        instance, identifier = form.get("DBInstanceIdentifier", ""), form.get("DBSnapshotIdentifier", "")
        if instance != self.database_instance:
            return error("rds", "DBInstanceNotFound", f"DBInstance {instance} not found.", "404 Not Found")
        with self.lock:
            if identifier in self.snapshots:
                return error(
                    "rds",
                    "DBSnapshotAlreadyExists",
                    f"Cannot create the snapshot because a snapshot with the identifier {identifier} already exists.",
                )
            snapshot = Snapshot(identifier, instance, "snapshot_" + identifier.replace("-", "_"))
            self.snapshots[identifier] = snapshot
        threading.Thread(target=self._copy, args=(snapshot,), daemon=True).start()
        return answer("rds", "CreateDBSnapshot", {"DBSnapshot": self._described(snapshot)})

    def rds_DescribeDBSnapshots(self, form: dict[str, str]) -> Answer:  # noqa: N802
        identifier = form.get("DBSnapshotIdentifier")
        with self.lock:
            found = [s for s in self.snapshots.values() if identifier in (None, s.identifier)]
            if identifier and not found:
                return error("rds", "DBSnapshotNotFound", f"DBSnapshot {identifier} not found.", "404 Not Found")
            described = [self._described(s) for s in found]
        return answer("rds", "DescribeDBSnapshots", {"DBSnapshots": described}, member="DBSnapshot")

    def _described(self, snapshot: Snapshot) -> dict[str, Any]:
        return {
            "DBSnapshotIdentifier": snapshot.identifier,
            "DBInstanceIdentifier": snapshot.instance,
            "SnapshotCreateTime": iso(snapshot.created),
            "Engine": "postgres",
            "Status": snapshot.status,
            "PercentProgress": snapshot.progress,
            "SnapshotType": "manual",
        }

    def _copy(self, snapshot: Snapshot) -> None:
        """The snapshot's data: the live database as it is now, copied into a database of its own."""
        database, socket = self.database, str(self.database.folder)
        try:
            database.psql(f'CREATE DATABASE "{snapshot.database}"')
            with self.lock:
                snapshot.progress = 50
            dump = subprocess.Popen(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(database.bin / "pg_dump"),
                    "-h",
                    socket,
                    "-p",
                    str(database.port),
                    "--format=custom",
                    self.database_name,
                ],
                stdout=subprocess.PIPE,
            )
            restored = subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(database.bin / "pg_restore"),
                    "-h",
                    socket,
                    "-p",
                    str(database.port),
                    "--no-owner",
                    "--exit-on-error",
                    "-d",
                    snapshot.database,
                ],
                stdin=dump.stdout,
                capture_output=True,
                timeout=600,
            )
            ok = dump.wait(timeout=600) == 0 and restored.returncode == 0
        except (OSError, RuntimeError, subprocess.SubprocessError):
            ok = False
        with self.lock:
            snapshot.status, snapshot.progress = ("available", 100) if ok else ("failed", snapshot.progress)


def for_site(api: Any, run: Any, group: Group, balancer: LoadBalancer, database: DatabaseServer) -> OperatorApi:
    """The operator's calls answered from the stand-ins, behind the front `api` (awsapi.AwsApi)."""
    rds = run.one("aws:rds/instance:Instance").inputs
    target_group = run.one("aws:lb/targetGroup:TargetGroup").name
    operator = OperatorApi(
        group,
        balancer,
        database,
        database_instance=run.outputs["databaseEndpoint"].split(".")[0],
        database_name=rds["dbName"],
        load_balancer_dns=run.outputs["loadBalancerDns"],
        target_group_arn=f"{ARN}:targetgroup/{target_group}/standin",
    )
    api.answerers.append(operator.handle)
    return operator
