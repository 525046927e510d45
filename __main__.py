"""A production Django site on one EC2 instance: `pulumi up` creates it, `pulumi destroy` removes it."""

from pathlib import Path

import pulumi

from components.backups import BackupBucket, BackupBucketArgs
from components.catalog import monthly_cost_usd
from components.data import DataVolume, DataVolumeArgs
from components.host import encode_user_data, plan_host, render_user_data
from components.keys import SshKey, SshKeyArgs
from components.network import WebSecurityGroup, WebSecurityGroupArgs
from components.provisioning import SiteProvisioner, SiteProvisionerArgs
from components.release import git_release, local_release
from components.secrets import AppSecrets
from components.server import WebServer, WebServerArgs
from components.settings import ConfigError, read_stack_config
from components.tagging import standard_tags

# 1. Settings: every key validated before anything is declared.
try:
    settings = read_stack_config()
    if settings.app.source_is_git:
        release = git_release(settings.app.source, settings.app.ref)
    else:
        release = local_release(Path(settings.app.source))
except (ConfigError, ValueError, OSError) as error:
    raise pulumi.RunError(str(error)) from None

name = settings.app.name
tags = standard_tags(settings.project, settings.stack, f"{settings.project}-{settings.stack}")
plan = plan_host(settings)

# 2. The data (it outlives any server), the doors, the key and the server.
data = DataVolume(name, DataVolumeArgs(settings.data_volume_gb, settings.retain_data_volume, tags))
backups = (
    BackupBucket(name, BackupBucketArgs(settings.backup_bucket, settings.backup_retention_days, tags))
    if settings.backup_bucket
    else None
)
firewall = WebSecurityGroup(name, WebSecurityGroupArgs(settings.open_ports, settings.ssh_allowed_cidrs, tags))
ssh_key = SshKey(name, SshKeyArgs(settings.ssh_public_key, settings.ssh_private_key or None, tags))
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

# 3. Secrets, then the site itself over SSH.
secrets = AppSecrets(name)
app_env = pulumi.Output.secret(settings.app.env) if settings.app.env_is_secret else pulumi.Output.from_input(settings.app.env)
site = SiteProvisioner(
    name,
    SiteProvisionerArgs(
        settings=settings,
        plan=plan,
        release=release,
        public_ip=server.public_ip,
        instance_id=server.instance.id,
        private_key=ssh_key.private_key,
        secret_key=secrets.django_secret_key_value,
        db_password=secrets.db_password_value,
        admin_password=secrets.admin_password_value,
        app_env=app_env,
        server_ready=[server.eip_association, data_attachment],
    ),
)

# 4. What the operator needs.
base_url = f"https://{settings.domain}" if settings.tls else (
    f"http://{settings.domain}" if settings.domain else server.public_ip.apply(lambda ip: f"http://{ip}")
)
pulumi.export("url", base_url)
pulumi.export("adminUrl", pulumi.Output.concat(base_url, "/admin/"))
pulumi.export("publicIp", server.public_ip)
pulumi.export("sshCommand", server.public_ip.apply(lambda ip: f"ssh -i {name}-key.pem {settings.ssh_user}@{ip}"))
pulumi.export("adminUser", settings.admin_user)
pulumi.export("adminPassword", secrets.admin_password_value)
if ssh_key.generated is not None:
    pulumi.export("sshPrivateKey", ssh_key.private_key)
pulumi.export("releaseId", release.id)
pulumi.export("dataVolumeId", data.volume.id)
if backups:
    pulumi.export("backupBucket", backups.bucket.id)
pulumi.export("monthlyCostUsd", monthly_cost_usd(settings.instance_type, settings.root_volume_gb + settings.data_volume_gb))
