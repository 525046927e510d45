"""Profile `single`: the whole site on one EC2 instance — PostgreSQL, gunicorn and nginx side by side."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pulumi_aws as aws

from catalog.offerings import monthly_cost_usd
from catalog.tags import standard_tags
from components.backups import BackupBucket, BackupBucketArgs
from components.datavolume import DataVolume, DataVolumeArgs
from components.deploykey import DeployKey, DeployKeyArgs
from components.keys import HostKey, SshKey, SshKeyArgs
from components.provisioning import SiteProvisioner, SiteProvisionerArgs
from components.secrets import AppSecrets
from components.securitygroup import WebSecurityGroup, WebSecurityGroupArgs
from components.webserver import WebServer, WebServerArgs
from config.memory import memory_budget
from config.settings import Settings
from server.files import render_user_data
from server.host import encode_user_data, plan_host
from server.release import Release


def build(settings: Settings, release: Release) -> dict[str, Any]:
    """Declare the single-server site; returns the stack outputs."""
    name = settings.app.name
    tags = standard_tags(settings.project, settings.stack, f"{settings.project}-{settings.stack}")
    plan = plan_host(settings)
    if settings.backup_bucket:
        # The bucket is created in the stack's region; the server's backup script must address it there.
        plan = dataclasses.replace(plan, backup_region=aws.get_region().region)

    # 1. The data (it outlives any server), the doors, the key and the server.
    data = DataVolume(name, DataVolumeArgs(settings.data_volume_gb, settings.retain_data_volume, tags))
    backups = (
        BackupBucket(name, BackupBucketArgs(settings.backup_bucket, settings.backup_retention_days, tags))
        if settings.backup_bucket
        else None
    )
    firewall = WebSecurityGroup(name, WebSecurityGroupArgs(settings.open_ports, settings.ssh_allowed_cidrs, tags))
    ssh_key = SshKey(name, SshKeyArgs(settings.ssh_public_key, settings.ssh_private_key, tags))
    host_key = HostKey(name)
    user_data = render_user_data(plan)
    encoded, gzipped = encode_user_data(user_data)
    server = WebServer(
        name,
        WebServerArgs(
            instance_type=settings.instance_type,
            image=settings.image,
            ami_id=settings.ami_id,
            user_data=user_data,
            user_data_gzip_base64=encoded if gzipped else None,
            key_name=ssh_key.key_pair.key_name,
            security_group_id=firewall.group.id,
            root_volume_gb=settings.root_volume_gb,
            availability_zone=data.availability_zone,
            instance_profile=backups.instance_profile.name if backups else None,
            tags=tags,
        ),
    )
    data_attachment = data.attach_to(name, server.instance.id)

    # 2. Secrets, then the site itself over SSH.
    secrets = AppSecrets(name, redis=settings.redis)
    # A private repository (ssh:// or git@host:) is read with a deploy key of this stack's own.
    deploy_key = DeployKey(name, DeployKeyArgs(f"djangoship-{settings.stack}-{name}")) if plan.app.git_ssh else None
    app_env = (
        pulumi.Output.secret(settings.app.env)
        if settings.app_env_is_secret
        else pulumi.Output.from_input(settings.app.env)
    )
    SiteProvisioner(
        name,
        SiteProvisionerArgs(
            settings=settings,
            plan=plan,
            release=release,
            public_ip=server.public_ip,
            instance_id=server.instance.id,
            private_key=ssh_key.private_key,
            host_key=host_key,
            secret_key=secrets.django_secret_key_value,
            db_password=secrets.db_password_value,
            admin_password=secrets.admin_password_value,
            redis_password=secrets.redis_password_value,
            app_env=app_env,
            # Configuration files hold passwords more often than not: secret whether set with --secret or not.
            app_files=pulumi.Output.secret(settings.app.files),
            server_ready=[server.eip_association, data_attachment],
            deploy_key=deploy_key.private_key if deploy_key else None,
        ),
    )

    budget = memory_budget(
        settings.instance_type,
        workers=settings.gunicorn_workers,
        processes=len(settings.app.processes),
        redis=settings.redis,
        asgi=bool(settings.app.asgi_module),
    )
    if budget.verdict == "swap":  # "over" already failed at validation
        pulumi.log.warn(
            f"instanceType: {budget.explain()}; it runs with the swap file, slower when idle pages are needed"
        )

    # 3. What the operator needs.
    if settings.domain:
        base_url: pulumi.Input[str] = f"{'https' if settings.tls else 'http'}://{settings.domain}"
    else:
        base_url = server.public_ip.apply(lambda ip: f"http://{ip}")
    outputs: dict[str, Any] = {
        "url": base_url,
        "adminUrl": pulumi.Output.concat(base_url, "/admin/"),
        "publicIp": server.public_ip,
        "sshCommand": server.public_ip.apply(lambda ip: f"ssh -i {name}-key.pem {settings.ssh_user}@{ip}"),
        # What the operator's verbs (`python3 -m djangoship`) read besides publicIp and sshPrivateKey; they pin
        # the server's host key `sshHostKey` ("ssh-ed25519 AAAA…", a public key: not secret).
        "sshHostKey": host_key.public_key,
        "sshUser": settings.ssh_user,
        "appName": settings.app.name,
        "adminUser": settings.admin_user,
        "adminPassword": secrets.admin_password_value,
        "releaseId": release.id,
        "dataVolumeId": data.volume.id,
        "monthlyCostUsd": monthly_cost_usd(settings.instance_type, settings.root_volume_gb + settings.data_volume_gb),
    }
    if ssh_key.generated is not None:
        outputs["sshPrivateKey"] = ssh_key.private_key
    if backups:
        outputs["backupBucket"] = backups.bucket.id
    if deploy_key:
        outputs["deployKey"] = deploy_key.public_key  # add to the repository as a read-only deploy key
    return outputs
