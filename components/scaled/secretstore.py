"""Where the app servers' secrets live: two SSM Parameter Store SecureStrings — the app's env file, whole,
and the Django superuser's password — under a KMS key of their own.

Why a key of their own: AmazonSSMManagedInstanceCore, which every Session Manager instance in the account
carries, allows ssm:GetParameter on every parameter; with the account's default aws/ssm key any of those
instances could also decrypt. This key's policy lets only the app servers' role decrypt (and only through
SSM); the account itself keeps administering it (which the deploying identity also needs to write).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class SecretStoreArgs:
    prefix: str  # parameter names start with it: /<project>/<stack>/<app>
    region: str
    account_id: str
    reader_role_arn: pulumi.Input[str]  # the app servers' role
    env_file: pulumi.Output[str]  # secret
    admin_password: pulumi.Output[str]  # secret
    tags: dict[str, str]
    deploy_key: pulumi.Output[str] | None = None  # secret: the deploy key's private half (ssh:// sources)


def parameter_names(prefix: str) -> tuple[str, str]:
    """(env file, superuser's password): known before anything exists, so the role's policy can name them.
    Not ".../admin-password": the boot names the parameter with its version in user-data, and "password:3"
    reads as a password assignment to the policy pack's user-data check."""
    return f"{prefix}/env", f"{prefix}/superuser"


def deploy_key_parameter_name(prefix: str) -> str:
    """The deploy key's private half (a private repository's ssh:// source), beside the other two."""
    return f"{prefix}/deploy-key"


def key_policy(account_id: str, region: str, reader_role_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministersTheKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "AppServersDecryptTheirParameters",
                    "Effect": "Allow",
                    "Principal": {"AWS": reader_role_arn},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"}},
                },
            ],
        },
        sort_keys=True,
    )


class SecretStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecretStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:SecretStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"{name}: the app servers' SecureString parameters",
            enable_key_rotation=True,
            deletion_window_in_days=7,
            policy=pulumi.Output.from_input(args.reader_role_arn).apply(
                lambda arn: key_policy(args.account_id, args.region, arn)
            ),
            tags=args.tags,
            opts=child,
        )
        env_name, admin_name = parameter_names(args.prefix)

        def parameter(label: str, parameter_name: str, value: pulumi.Input[str], what: str) -> aws.ssm.Parameter:
            return aws.ssm.Parameter(
                f"{name}-{label}",
                name=parameter_name,
                description=what,
                type="SecureString",
                key_id=self.key.arn,
                value=pulumi.Output.secret(value),
                # Standard (free) up to 4 KB; a long app.env moves it to Advanced by itself.
                tier="Intelligent-Tiering",
                tags=args.tags,
                opts=child,
            )

        self.env_file = parameter("env", env_name, args.env_file, f"{name}: the app's environment (/etc/<app>/env)")
        self.admin_password = parameter(
            "superuser", admin_name, args.admin_password, f"{name}: the Django superuser's password"
        )
        self.deploy_key: aws.ssm.Parameter | None = None
        self.deploy_key_selector: pulumi.Output[str] = pulumi.Output.from_input("")
        if args.deploy_key is not None:
            self.deploy_key = parameter(
                "deploy-key",
                deploy_key_parameter_name(args.prefix),
                args.deploy_key,
                f"{name}: the deploy key's private half (the app's private git repository)",
            )
            self.deploy_key_selector = pulumi.Output.concat(
                self.deploy_key.name, ":", self.deploy_key.version.apply(str)
            )
        # "name:version": the boot reads exactly the version its launch template names, and a new version (a
        # changed environment) is a new launch template version, which rolls the app servers.
        self.env_selector: pulumi.Output[str] = pulumi.Output.concat(
            self.env_file.name, ":", self.env_file.version.apply(str)
        )
        self.admin_selector: pulumi.Output[str] = pulumi.Output.concat(
            self.admin_password.name, ":", self.admin_password.version.apply(str)
        )
        self.register_outputs({"envParameter": self.env_file.name, "adminPasswordParameter": self.admin_password.name})
