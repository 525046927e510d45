"""Off-server backups: a private, versioned, encrypted S3 bucket, and an instance role that may write
only there. The nightly dump itself runs on the server (a systemd timer, see cloud-init/backup/)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


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
        self.bucket = aws.s3.Bucket(
            f"{name}-backups",
            bucket=args.bucket_name,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-backups-private",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-backups-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-backups-encryption",
            bucket=self.bucket.id,
            rules=[
                {"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-backups-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-old-backups",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": args.retention_days},
                    "noncurrent_version_expiration": {"noncurrent_days": args.retention_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            opts=child,
        )

        # The instance's identity: it may put and read backups in this bucket, nothing else.
        self.role = aws.iam.Role(
            f"{name}-instance-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
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
