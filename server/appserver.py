"""What an app server of the scaled profile receives, rendered by pure functions (no Pulumi here), like
`server/host.py` for the single server — whose templates the app servers reuse unchanged.

The first-boot document (`cloud-init/scaled/user-data.yaml.j2`) carries what fetches the rest: the boot script
(server files and environment from SSM, release from S3, deploy), a small boto3 helper, the single server's
first-boot script and units. The rest — the single server's manage wrapper, deploy, activate and superuser code at
the same paths (server/layout.py), the once-per-release gate for migrations, a thin manage wrapper that routes
the deploy's `migrate` through that gate, the app's processes and schedules — is the server files' archive
(ServerFiles), named with its SHA-256 in the document. Both come from server/files.py's list.
Everything is byte-for-byte reproducible: the document is a launch template input, and a changed byte is a
new launch template version, which rolls every app server.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from functools import cached_property

from config.envcontract import PG_SSLMODE
from config.settings import Settings

from .files import AFTER_BOOT, FIRST_BOOT, enabled, rendered, server_files
from .host import HostPlan, digest, plan_host, render
from .release import Release

LIFECYCLE_HOOK = "release-installed"  # the Auto Scaling launch hook that the boot script completes
GATE_ENV = "DJANGOSHIP_RELEASE_ID"  # set by the boot script for the deploy; named literally in the templates
RELEASE_TABLE = "djangoship_release"  # where the gate records migrated releases, in the app's database
ORIGIN_HEADER = "X-Origin-Verify"  # CloudFront → load balancer; the app servers' nginx drops it before Django
LOCK_WAIT_SECONDS = 1500  # a server waits this long for another's migrations (the hook allows 1800 s)


@dataclass(frozen=True)
class BootValues:
    """What the boot needs that exists only once AWS has created it (bucket names, parameter versions)."""

    region: str
    env_parameter: str  # "name:version": exactly the environment this launch template was rendered with
    admin_parameter: str
    artifacts_bucket: str
    media_bucket: str
    media_role_arn: str  # the app's credentials for its uploads (scaled/media-credentials.py.j2)
    deploy_key_parameter: str = ""  # "name:version" of the deploy key (ssh:// sources); "" = none


def scaled_plan(settings: Settings) -> HostPlan:
    """The single server's plan, minus what an app server behind a load balancer does not do itself:
    TLS (the load balancer and CloudFront terminate it), backups (RDS and S3 versioning keep them) and
    PgBouncer (a pool per app server would multiply, not bound, the database's connections)."""
    plan = plan_host(settings)
    return dataclasses.replace(
        plan,
        tls_email="",
        backup_bucket="",
        db=dataclasses.replace(plan.db, pooler=False),
        deploy_key_from_stdin=False,
        data_on_server=False,
    )


def artifact_key(release: Release) -> str:
    """The archive's key in the artifacts bucket; empty for a git release (the servers fetch the commit)."""
    return f"releases/{release.id}.tar.gz" if release.archive is not None else ""


def release_lock_key(app: str) -> int:
    """The PostgreSQL advisory lock of the release gate: a stable positive bigint per app."""
    return int(digest("djangoship-release", app)[:15], 16)


def deb_arch(arch: str) -> str:
    return "arm64" if arch == "arm64" else "amd64"


@dataclass(frozen=True)
class ServerFiles:
    """An app server's files beyond its user-data (server/files.py, AFTER_BOOT), packed as one reproducible
    .tar.gz in the artifacts bucket, named by its SHA-256: the user-data names the archive and its digest, so the
    launch template version still pins every byte, and EC2's 16 KiB bounds only what fetches it."""

    files: dict[str, tuple[int, str]]  # path → (mode, content)

    @cached_property
    def archive(self) -> bytes:
        buffer = io.BytesIO()
        # gzip and tar without times, owners or order of their own: the same files give the same bytes.
        with (
            gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as stream,
            tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(self.files):
                mode, content = self.files[path]
                data = content.encode()
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode, info.mtime = len(data), mode, 0
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()

    @property
    def key(self) -> str:
        return f"servers/{self.sha256}.tar.gz"


def render_server_files(
    plan: HostPlan,
    release: Release,
    boot: BootValues,
    *,
    arch: str,
    vpc_cidr: str,
    admin_user: str,
    admin_email: str,
) -> ServerFiles:
    """What the boot script fetches first: the plan's files after the first boot (server/files.py)."""
    context = release_context(plan, release, boot, arch=arch, vpc_cidr=vpc_cidr)
    found = rendered(plan, AFTER_BOOT, **context, admin_user=admin_user, admin_email=admin_email)
    # Each file's text ends in exactly one line break, as a literal block of cloud-init's write_files carries it.
    return ServerFiles({file.path: (int(file.mode, 8), file.text.rstrip("\n") + "\n") for file in found})


def render_scaled_user_data(
    plan: HostPlan,
    release: Release,
    boot: BootValues,
    server_files: ServerFiles,
    *,
    arch: str,
    vpc_cidr: str,
    admin_user: str,
    admin_email: str,
) -> str:
    """The app servers' first-boot document, `#cloud-config`. Holds no secret at all."""
    context = release_context(plan, release, boot, arch=arch, vpc_cidr=vpc_cidr) | {
        "server_files_key": server_files.key,
        "server_files_sha256": server_files.sha256,
        "admin_user": admin_user,
        "admin_email": admin_email,
    }
    return render("scaled/user-data.yaml.j2", plan, **context, boot_files=rendered(plan, FIRST_BOOT, **context))


def release_context(
    plan: HostPlan,
    release: Release,
    boot: BootValues,
    *,
    arch: str,
    vpc_cidr: str,
) -> dict[str, object]:
    """The template values beyond the host plan (also what tests render single scripts with)."""
    return {
        # the single server's deploy and activate scripts
        "release_id": release.id,  # each app server builds once, at boot: a new build is a new launch template
        "archive_id": release.id,
        "source_kind": "archive" if release.archive is not None else "git",
        "git_url": release.git_url,
        "git_ref": release.git_ref,
        "git_commit": release.git_commit,
        # The app answers the health path for any Host; "localhost" reaches nginx's default server.
        "health_host": "localhost",
        # the scaled profile's own
        "region": boot.region,
        "env_parameter": boot.env_parameter,
        "admin_parameter": boot.admin_parameter,
        "deploy_key_parameter": boot.deploy_key_parameter,
        "artifacts_bucket": boot.artifacts_bucket,
        "artifact_key": artifact_key(release),
        "media_bucket": boot.media_bucket,
        "media_role_arn": boot.media_role_arn,
        "lifecycle_hook": LIFECYCLE_HOOK,
        "lock_key": release_lock_key(plan.app.name),
        "lock_wait_seconds": LOCK_WAIT_SECONDS,
        "pg_sslmode": PG_SSLMODE,
        "deb_arch": deb_arch(arch),
        "origin_header": ORIGIN_HEADER,
        "vpc_cidr": vpc_cidr,
        "enabled_at_boot": enabled(server_files(plan)),  # linked by the boot script
    }
