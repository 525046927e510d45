"""The app servers' identity: an IAM role (through an instance profile) allowed exactly what a server does.

- Session Manager, the operators' way in instead of SSH (the AWS-managed AmazonSSMManagedInstanceCore).
- Read its two SecureString parameters — by name; their KMS key admits this role alone (secretstore.py).
- Read release archives; write static files (the first server of a release). Nothing else in S3.
- Complete the launch lifecycle hook of its own Auto Scaling group.
- Assume the media role: the app's own credentials, for its uploads only (read, write, delete under media/).
  The app never holds the instance role's credentials (the metadata service refuses every user but root): a
  root-run endpoint on each server hands it the media role's (scaled/media-credentials.py.j2).
The parameters' ARNs are computed from their names, so this role exists before them and their key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from catalog.iam import EC2_ASSUME_ROLE_POLICY

SSM_MANAGED_INSTANCE_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


@dataclass
class AppServerIdentityArgs:
    region: str
    account_id: str
    parameter_names: list[str]
    artifacts_bucket_arn: pulumi.Input[str]
    assets_bucket_arn: pulumi.Input[str]
    group_name_prefix: str  # the Auto Scaling group's name_prefix: its lifecycle hook is the only one allowed
    tags: dict[str, str]


def server_policy(
    region: str,
    account_id: str,
    parameter_names: list[str],
    artifacts_arn: str,
    assets_arn: str,
    group_name_prefix: str,
    media_role_arn: str,
) -> str:
    groups = f"arn:aws:autoscaling:{region}:{account_id}:autoScalingGroup:*:autoScalingGroupName"
    statements = [
        {
            "Sid": "ReadOwnParameters",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": [f"arn:aws:ssm:{region}:{account_id}:parameter{name}" for name in parameter_names],
        },
        {
            "Sid": "ReadReleases",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [f"{artifacts_arn}/releases/*", f"{artifacts_arn}/servers/*"],
        },
        {"Sid": "ListAssets", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": assets_arn},
        {"Sid": "WriteStatic", "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{assets_arn}/static/*"},
        {"Sid": "HandOutMediaCredentials", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": media_role_arn},
        {
            "Sid": "FindOwnGroup",
            "Effect": "Allow",
            "Action": "autoscaling:DescribeAutoScalingInstances",  # no resource-level permissions exist for it
            "Resource": "*",
        },
        {
            "Sid": "CompleteLaunchHook",
            "Effect": "Allow",
            "Action": "autoscaling:CompleteLifecycleAction",
            "Resource": f"{groups}/{group_name_prefix}*",
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def media_policy(assets_arn: str) -> str:
    """The app's uploads (django-storages): read, write and delete under media/, and list that prefix only (a
    missing file answers 404, not 403). Nothing else: no static files, no release archives, no parameters."""
    statements = [
        {
            "Sid": "ReadWriteUploads",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": f"{assets_arn}/media/*",
        },
        {
            "Sid": "ListUploads",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": assets_arn,
            "Condition": {"StringLike": {"s3:prefix": ["media/*"]}},
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def assumed_by(role_arn: str) -> str:
    """A trust policy: only the app servers' role may take this one."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": "sts:AssumeRole"}],
        },
        sort_keys=True,
    )


class AppServerIdentity(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppServerIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:AppServerIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(
            f"{name}-app-role",
            assume_role_policy=EC2_ASSUME_ROLE_POLICY,
            tags=args.tags,
            opts=child,
        )
        self.session_manager = aws.iam.RolePolicyAttachment(
            f"{name}-app-ssm", role=self.role.name, policy_arn=SSM_MANAGED_INSTANCE_CORE, opts=child
        )
        self.media_role = aws.iam.Role(
            f"{name}-media-role",
            assume_role_policy=self.role.arn.apply(assumed_by),
            max_session_duration=3600,
            tags=args.tags,
            opts=child,
        )
        self.media_policy = aws.iam.RolePolicy(
            f"{name}-media-policy",
            role=self.media_role.id,
            policy=pulumi.Output.from_input(args.assets_bucket_arn).apply(media_policy),
            opts=child,
        )
        self.policy = aws.iam.RolePolicy(
            f"{name}-app-policy",
            role=self.role.id,
            policy=pulumi.Output.all(args.artifacts_bucket_arn, args.assets_bucket_arn, self.media_role.arn).apply(
                lambda arns: server_policy(
                    args.region,
                    args.account_id,
                    args.parameter_names,
                    arns[0],
                    arns[1],
                    args.group_name_prefix,
                    arns[2],
                )
            ),
            opts=child,
        )
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-app-profile", role=self.role.name, opts=child)
        # What a booting server needs in place: its permissions, not just the profile.
        self.ready: list[pulumi.Resource] = [
            self.policy,
            self.session_manager,
            self.instance_profile,
            self.media_policy,
        ]
        self.register_outputs({"roleArn": self.role.arn, "mediaRoleArn": self.media_role.arn})
