"""Private S3 buckets: public access blocked, owner-enforced, versioned, encrypted, old versions expiring.

The single server's backups use one; the scaled profile two: `assets` (static files and uploads, read by
CloudFront, written by the app servers) and `artifacts` (release archives, read by the app servers at boot).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class PrivateBucketArgs:
    # "AES256" (SSE-S3) where CloudFront reads through Origin Access Control: it cannot decrypt objects under
    # the AWS-managed aws/s3 KMS key. "aws:kms" elsewhere.
    sse_algorithm: str
    noncurrent_days: int  # old versions (overwritten or deleted objects) expire after this
    keep_on_destroy: bool  # data (uploads, backups): `pulumi destroy` leaves them, like the data volume
    tags: dict[str, str]
    bucket_name: str | None = None  # a fixed name (S3 names are global); None = Pulumi names it
    expire_days: int | None = None  # current objects expire too (backups); None = kept


class PrivateBucket(pulumi.ComponentResource):
    def __init__(self, name: str, args: PrivateBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:PrivateBucket", name, None, opts)
        # A bucket kept on destroy keeps its settings too: deleting the public-access block, versioning, encryption
        # or lifecycle rule would leave the kept data open to a public policy, unversioned, unencrypted for new
        # objects and never expiring.
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=args.keep_on_destroy)
        self.bucket = aws.s3.Bucket(
            name,
            bucket=args.bucket_name,
            force_destroy=not args.keep_on_destroy,
            tags=args.tags,
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-private",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm=args.sse_algorithm
                    ),
                    bucket_key_enabled=args.sse_algorithm == "aws:kms",
                )
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.expire_days)
                    if args.expire_days
                    else None,
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=1
                    ),
                )
            ],
            opts=child,
        )
        self.register_outputs({"bucket": self.bucket.id})
