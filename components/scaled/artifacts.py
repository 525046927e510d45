"""What the app servers fetch from the private artifacts bucket when they boot: the release (the app folder's
reproducible archive, server/release.py; a git release needs none: the servers fetch the commit themselves)
and the server files beyond their user-data (server/appserver.py's ServerFiles). Both are kept when newer
ones replace them: an instance refresh that rolls back, or a server launched later from an older launch template
version, still finds what its user-data names."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.buckets import PrivateBucket
from server.release import Release


@dataclass
class ReleaseArchiveArgs:
    bucket: PrivateBucket
    release: Release
    key: str
    tags: dict[str, str]


class ReleaseArchive(pulumi.ComponentResource):
    """The app folder's reproducible archive (server/release.py) as an object the app servers fetch.

    Kept when a newer release replaces it (retain_on_delete): an instance refresh that rolls back, or a
    server launched later from an older launch template version, still finds its archive. Old archives stay
    in the bucket (tens of kB each) until `pulumi destroy` empties it."""

    def __init__(self, name: str, args: ReleaseArchiveArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:ReleaseArchive", name, None, opts)
        if args.release.archive is None:
            raise ValueError("a git release has no archive: the app servers fetch the commit")
        self.object = aws.s3.BucketObjectv2(
            f"{name}-release",
            bucket=args.bucket.bucket.id,
            key=args.key,
            source=pulumi.FileAsset(str(args.release.archive)),
            content_type="application/gzip",
            tags=args.tags | {"Release": args.release.id},
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.register_outputs({"key": self.object.key})


@dataclass
class ServerFilesArchiveArgs:
    bucket: PrivateBucket
    key: pulumi.Input[str]  # servers/<sha256>.tar.gz: a changed file is a new object, never an overwrite
    archive: pulumi.Input[bytes]
    tags: dict[str, str]


class ServerFilesArchive(pulumi.ComponentResource):
    """The app servers' files beyond their user-data, one .tar.gz named by its SHA-256 (ServerFiles)."""

    def __init__(self, name: str, args: ServerFilesArchiveArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:ServerFilesArchive", name, None, opts)
        self.object = aws.s3.BucketObjectv2(
            f"{name}-server-files",
            bucket=args.bucket.bucket.id,
            key=args.key,
            content_base64=pulumi.Output.from_input(args.archive).apply(lambda data: base64.b64encode(data).decode()),
            content_type="application/gzip",
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.register_outputs({"key": self.object.key})
