"""Buckets kept on `pulumi destroy` keep their settings (issue 16, item 5): a kept bucket whose public-access
block, versioning, encryption or lifecycle rule were deleted would hold the backups (or uploads) open to a public
policy, unversioned and never expiring."""

from __future__ import annotations

from harness.mockrun import ProgramRun, run_program

SETTINGS = {
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
}


def _bucket_and_settings(run: ProgramRun, bucket_name: str) -> dict[str, bool | None]:
    """{type: retain_on_delete} for a bucket and every settings resource of it (same parent component)."""
    (bucket,) = [r for r in run.of_type("aws:s3/bucket:Bucket") if r.name == bucket_name]
    kin = [r for r in run.resources.values() if r.parent == bucket.parent and r.type in SETTINGS]
    assert {r.type for r in kin} == SETTINGS, "every setting is there"
    return {r.type: r.retain_on_delete for r in [bucket, *kin]}


def test_the_backup_bucket_and_all_its_settings_are_kept_on_destroy():
    run = run_program({"backupBucket": "example-photofeed-backups"})
    kept = _bucket_and_settings(run, "photofeed-backups")
    assert kept == dict.fromkeys(kept, True)


def test_scaled_uploads_are_kept_with_their_settings_and_artifacts_go():
    run = run_program({"profile": "scaled"})
    assets = _bucket_and_settings(run, "photofeed-assets")
    assert assets == dict.fromkeys(assets, True)
    artifacts = _bucket_and_settings(run, "photofeed-artifacts")
    assert not any(artifacts.values())
