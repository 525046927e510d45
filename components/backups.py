"""Off-server backups: a private, versioned, encrypted S3 bucket, and an instance role that may write
only there. The nightly dump itself runs on the server (a systemd timer, see cloud-init/backup/)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .buckets import PrivateBucket, PrivateBucketArgs
from .iam import EC2_ASSUME_ROLE_POLICY


@dataclass
class BackupBucketArgs:
    bucket_name: str
    retention_days: int  # noncurrent versions and old objects expire after this
    tags: dict[str, str]


class BackupBucket(pulumi.ComponentResource):
    def __init__(self, name: str, args: BackupBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:BackupBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Backups are kept on `pulumi destroy`: deleting them is a separate, deliberate act.
        storage = PrivateBucket(
            f"{name}-backups",
            PrivateBucketArgs(
                sse_algorithm="aws:kms",
                noncurrent_days=args.retention_days,
                keep_on_destroy=True,
                tags=args.tags,
                bucket_name=args.bucket_name,
                expire_days=args.retention_days,
            ),
            opts=child,
        )
        self.bucket = storage.bucket

        # The instance's identity: it may put and read backups in this bucket, nothing else.
        self.role = aws.iam.Role(
            f"{name}-instance-role",
            assume_role_policy=EC2_ASSUME_ROLE_POLICY,
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-backup-writer",
            role=self.role.id,
            policy=self.bucket.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": arn},
                            {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": f"{arn}/*"},
                        ],
                    }
                )
            ),
            opts=child,
        )
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-instance-profile", role=self.role.name, opts=child)
        self.register_outputs({"bucket": self.bucket.id})
