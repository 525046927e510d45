"""Off-server backups: a private, versioned, encrypted S3 bucket, and an instance role that may only add new
backups there. The nightly dump itself runs on the server (a systemd timer, see cloud-init/backup/).

Anything on the server that reaches the instance role must not be able to change a backup the restore would
later trust. So the role may list, read and create objects, never delete; and the bucket's policy refuses it any
request that would create an object without making it conditional on the key being new (`If-None-Match: *`): an
existing backup cannot be overwritten, not even by a new version. The requests that create an object are
PutObject, CopyObject and a multipart upload's completion (`s3:ObjectCreationOperation` true); the upload's other
requests (CreateMultipartUpload, UploadPart, UploadPartCopy) cannot carry the header, create nothing, and are
exempt, as AWS's "Enforce conditional writes" says — else every backup of 8 MiB or more, which boto3 uploads in
parts, is refused. Old backups go by the lifecycle rule (`backupRetentionDays`), never by the server. Why not S3
Object Lock: it protects versions from deletion, which the role cannot do anyway, not a key from a newer version;
and it cannot be undone on a bucket. Proven against the uploader's real requests by
tests/fast/test_backup_bucket_policy.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from catalog.iam import EC2_ASSUME_ROLE_POLICY

from .buckets import PrivateBucket, PrivateBucketArgs


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
                            # AbortMultipartUpload: an upload S3 refused (the key exists) leaves no parts behind.
                            {
                                "Effect": "Allow",
                                "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                                "Resource": f"{arn}/*",
                            },
                            # Said explicitly, so that no broader grant added to the role later allows it.
                            {
                                "Effect": "Deny",
                                "Action": [
                                    "s3:DeleteObject",
                                    "s3:DeleteObjectVersion",
                                    "s3:PutLifecycleConfiguration",
                                    "s3:PutBucketPolicy",
                                    "s3:DeleteBucketPolicy",
                                    "s3:PutBucketVersioning",
                                ],
                                "Resource": [arn, f"{arn}/*"],
                            },
                        ],
                    }
                )
            ),
            opts=child,
        )
        # Written once: the role's requests that create an object must ask S3 to refuse an existing key (the
        # uploader always does); the parts of a multipart upload cannot, and create nothing.
        aws.s3.BucketPolicy(
            f"{name}-backups-write-once",
            bucket=self.bucket.id,
            policy=pulumi.Output.all(self.bucket.arn, self.role.arn).apply(
                lambda values: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "BackupsAreWrittenOnce",
                                "Effect": "Deny",
                                "Principal": {"AWS": values[1]},
                                "Action": "s3:PutObject",
                                "Resource": f"{values[0]}/*",
                                "Condition": {
                                    "Null": {"s3:if-none-match": "true"},
                                    "Bool": {"s3:ObjectCreationOperation": "true"},
                                },
                            }
                        ],
                    }
                )
            ),
            # S3 refuses bucket policies while the public access block is being put in place.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[storage.public_access_block]),
        )
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-instance-profile", role=self.role.name, opts=child)
        self.register_outputs({"bucket": self.bucket.id})
