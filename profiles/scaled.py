"""Profile `scaled`: RDS for PostgreSQL, app servers behind a load balancer, static and media on S3 + CloudFront.

The tutorial's advice for a site that outgrows one server, as the same program: the database on its own
(managed) server, several app servers behind a load balancer, static files and uploads from a CDN. The app
servers run the single server's own host templates and release scripts (server/appserver.py). See
docs/scaling-out.md for when to switch, what it costs and how to move the data.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from catalog.offerings import INSTANCE_TYPES
from catalog.scaledcost import monthly_cost_breakdown, monthly_cost_usd
from catalog.tags import standard_tags
from components.buckets import PrivateBucket, PrivateBucketArgs
from components.deploykey import DeployKey, DeployKeyArgs
from components.scaled.appservers import AppServers, AppServersArgs
from components.scaled.artifacts import ReleaseArchive, ReleaseArchiveArgs, ServerFilesArchive, ServerFilesArchiveArgs
from components.scaled.cache import Cache, CacheArgs
from components.scaled.cdn import Cdn, CdnArgs
from components.scaled.certificate import SiteCertificate, SiteCertificateArgs
from components.scaled.database import Database, DatabaseArgs
from components.scaled.firewalls import Firewalls, FirewallsArgs
from components.scaled.identity import AppServerIdentity, AppServerIdentityArgs
from components.scaled.loadbalancer import LoadBalancer, LoadBalancerArgs
from components.scaled.network import Network, NetworkArgs
from components.scaled.secretstore import SecretStore, SecretStoreArgs, deploy_key_parameter_name, parameter_names
from components.secrets import AppSecrets
from config.settings import Settings
from server.appserver import (
    LIFECYCLE_HOOK,
    ORIGIN_HEADER,
    BootValues,
    ServerFiles,
    artifact_key,
    render_scaled_user_data,
    render_server_files,
    scaled_plan,
)
from server.envfile import app_server_env_file
from server.host import HEALTH_PATH, HostPlan, encode_user_data
from server.release import Release

VPC_CIDR = "10.20.0.0/16"
CLOUDFRONT_CERTIFICATE_REGION = "us-east-1"  # CloudFront takes certificates from this region only
CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"  # AWS-managed prefix list


def build(settings: Settings, release: Release) -> dict[str, Any]:
    """Declare the scaled-out site; returns the stack outputs."""
    # AWS names (load balancers, RDS, buckets) take hyphens, not underscores: photo_feed → photo-feed.
    name = settings.app.name.replace("_", "-")
    tags = standard_tags(settings.project, settings.stack, f"{settings.project}-{settings.stack}")
    region = aws.get_region().region
    account_id = aws.get_caller_identity().account_id
    plan = scaled_plan(settings)
    domain = settings.domain
    for process, command in settings.app.processes.items():
        if "beat" in command.split():  # every app server runs every process
            pulumi.log.warn(
                f"app.processes.{process}: runs on every app server (up to appMaxSize = {settings.app_max_size}), "
                "so a scheduler there sends each periodic task once per server; app.schedules runs a job once "
                "per due time across them"
            )

    # 1. The network and its doors: internet → load balancer → app servers → database, nothing else.
    network = Network(name, NetworkArgs(VPC_CIDR, tags))
    # CloudFront's origin-facing addresses (an AWS-managed prefix list, per region): all the load balancer admits.
    cloudfront = aws.ec2.get_managed_prefix_list_output(name=CLOUDFRONT_ORIGIN_FACING)
    doors = Firewalls(
        name,
        FirewallsArgs(
            network.vpc.id,
            VPC_CIDR,
            https=bool(domain),
            cloudfront_prefix_list_id=cloudfront.id,
            tags=tags,
            cache=settings.redis,
        ),
    )

    # 2. The data: the database, the cache, the uploads and static files, the release archive.
    secrets = AppSecrets(name, redis=settings.redis)
    database = Database(
        name,
        DatabaseArgs(
            subnet_ids=network.private_subnet_ids,
            security_group_id=doors.database.id,
            instance_class=settings.db_instance_class,
            storage_gb=settings.db_allocated_storage_gb,
            multi_az=settings.db_multi_az,
            backup_retention_days=settings.db_backup_retention_days,
            deletion_protection=settings.db_deletion_protection,
            db_name=plan.app.name,
            password=secrets.db_password_value,
            final_snapshot_identifier=f"{name}-{settings.stack}-final",
            tags=tags,
        ),
    )
    cache = (
        Cache(
            name,
            CacheArgs(
                subnet_ids=network.private_subnet_ids,
                security_group_id=doors.cache.id,
                node_type=settings.cache_node_type,
                auth_token=secrets.redis_password_value,
                tags=tags,
            ),
        )
        if doors.cache is not None and secrets.redis_password_value is not None
        else None
    )
    assets = PrivateBucket(f"{name}-assets", PrivateBucketArgs("AES256", 30, keep_on_destroy=True, tags=tags))
    artifacts = PrivateBucket(f"{name}-artifacts", PrivateBucketArgs("aws:kms", 7, keep_on_destroy=False, tags=tags))
    archive = (
        ReleaseArchive(name, ReleaseArchiveArgs(artifacts, release, artifact_key(release), tags))
        if release.archive is not None
        else None
    )

    # 3. The front door: a certificate for the domain, the load balancer, CloudFront before both.
    alb_certificate = cdn_certificate = None
    if domain:
        alb_certificate = SiteCertificate(f"{name}-cert", SiteCertificateArgs(domain, None, tags))
        cdn_certificate = (
            alb_certificate
            if region == CLOUDFRONT_CERTIFICATE_REGION
            else SiteCertificate(f"{name}-cdn-cert", SiteCertificateArgs(domain, CLOUDFRONT_CERTIFICATE_REGION, tags))
        )
    balancer = LoadBalancer(
        name,
        LoadBalancerArgs(
            vpc_id=network.vpc.id,
            subnet_ids=network.public_subnet_ids,
            security_group_id=doors.load_balancer.id,
            health_path=HEALTH_PATH,
            certificate_arn=alb_certificate.arn if alb_certificate else None,
            tags=tags,
        ),
    )
    cdn = Cdn(
        name,
        CdnArgs(
            load_balancer_dns=balancer.dns_name,
            bucket_id=assets.bucket.id,
            bucket_arn=assets.bucket.arn,
            bucket_domain=assets.bucket.bucket_regional_domain_name,
            bucket_ready=[assets.public_access_block],
            domain=domain,
            certificate_arn=cdn_certificate.arn if cdn_certificate else None,
            origin_header=ORIGIN_HEADER,
            origin_secret=balancer.origin_secret.result,
            tags=tags,
        ),
    )
    public_host: pulumi.Output[str] = pulumi.Output.from_input(domain) if domain else cdn.domain_name

    # 4. The app servers: their identity, their secrets (in SSM, never in user-data), then the servers.
    prefix = f"/{settings.project}/{settings.stack}/{plan.app.name}"
    # A private repository (ssh:// or git@host:) is read with a deploy key of this stack's own.
    deploy_key = DeployKey(name, DeployKeyArgs(f"djangoship-{settings.stack}-{name}")) if plan.app.git_ssh else None
    group_name_prefix = f"{name}-app-"
    identity = AppServerIdentity(
        name,
        AppServerIdentityArgs(
            region=region,
            account_id=account_id,
            parameter_names=[
                *parameter_names(prefix),
                *([deploy_key_parameter_name(prefix)] if plan.app.git_ssh else []),
            ],
            artifacts_bucket_arn=artifacts.bucket.arn,
            assets_bucket_arn=assets.bucket.arn,
            group_name_prefix=group_name_prefix,
            tags=tags,
        ),
    )
    env_file = app_environment(settings, plan, secrets, database, public_host, cdn, assets, region, cache)
    store = SecretStore(
        name,
        SecretStoreArgs(
            prefix=prefix,
            region=region,
            account_id=account_id,
            reader_role_arn=identity.role.arn,
            env_file=env_file,
            admin_password=secrets.admin_password_value,
            tags=tags,
            deploy_key=deploy_key.private_key if deploy_key else None,
        ),
    )
    boot = pulumi.Output.all(
        store.env_selector,
        store.admin_selector,
        artifacts.bucket.id,
        assets.bucket.id,
        identity.media_role.arn,
        store.deploy_key_selector,
    ).apply(lambda values: BootValues(region, *values))
    arch = INSTANCE_TYPES[settings.instance_type].arch
    server_files = boot.apply(
        lambda values: render_server_files(
            plan,
            release,
            values,
            arch=arch,
            vpc_cidr=VPC_CIDR,
            admin_user=settings.admin_user,
            admin_email=settings.admin_email,
        )
    )
    server_files_archive = ServerFilesArchive(
        name,
        ServerFilesArchiveArgs(
            artifacts, server_files.apply(lambda f: f.key), server_files.apply(lambda f: f.archive), tags
        ),
    )
    # The launch template waits for the archive its user-data names (the object's key carries the dependency).
    user_data = pulumi.Output.all(boot, server_files, server_files_archive.object.key).apply(
        lambda values: first_boot(settings, plan, release, values[0], values[1])
    )
    servers = AppServers(
        name,
        AppServersArgs(
            image=settings.image,
            ami_id=settings.ami_id,
            instance_type=settings.instance_type,
            root_volume_gb=settings.root_volume_gb,
            instance_profile_name=identity.instance_profile.name,
            security_group_id=doors.app_servers.id,
            subnet_ids=network.private_subnet_ids,
            target_group_arn=balancer.targets.arn,
            user_data_base64=user_data,
            min_size=settings.app_min_size,
            max_size=settings.app_max_size,
            desired_capacity=settings.app_desired_capacity,
            group_name_prefix=group_name_prefix,
            lifecycle_hook=LIFECYCLE_HOOK,
            release_id=release.id,
            ready=[
                database.instance,
                *([cache.group] if cache else []),
                store.env_file,
                store.admin_password,
                *([store.deploy_key] if store.deploy_key else []),
                *identity.ready,
                *network.egress_ready,
                *balancer.listeners,
                *([archive.object] if archive else []),
            ],
            tags=tags,
        ),
    )

    # 5. What the operator needs.
    url = pulumi.Output.concat("https://", public_host)
    outputs: dict[str, Any] = {
        "url": url,
        "adminUrl": pulumi.Output.concat(url, "/admin/"),
        "loadBalancerDns": balancer.dns_name,
        "cdnDomain": cdn.domain_name,
        "databaseEndpoint": database.instance.endpoint,
        "mediaBucket": assets.bucket.id,
        # Where the `move` verb hands a single server's database dump to an app server (moves/, deleted after).
        "artifactsBucket": artifacts.bucket.id,
        "appServerGroup": servers.group.name,
        # What the operator's verbs (python3 -m djangoship) need besides the group: <app>-manage, the region.
        "appName": plan.app.name,
        "awsRegion": region,
        "adminUser": settings.admin_user,
        "adminPassword": secrets.admin_password_value,
        "releaseId": release.id,
        "monthlyCostUsd": monthly_cost_usd(
            monthly_cost_breakdown(
                instance_type=settings.instance_type,
                app_servers=settings.app_desired_capacity,
                root_volume_gb=settings.root_volume_gb,
                db_instance_class=settings.db_instance_class,
                db_storage_gb=settings.db_allocated_storage_gb,
                db_multi_az=settings.db_multi_az,
                cache_node_type=settings.cache_node_type if settings.redis else None,
            )
        ),
    }
    if deploy_key:
        outputs["deployKey"] = deploy_key.public_key  # add to the repository as a read-only deploy key
    if alb_certificate and cdn_certificate:
        # The CNAME records the operator creates (per certificate; ACM usually asks for the same one twice).
        outputs["certificateValidationRecords"] = pulumi.Output.all(
            alb_certificate.validation_records, cdn_certificate.validation_records
        ).apply(lambda lists: sorted({tuple(sorted(r.items())): r for rs in lists for r in rs}.values(), key=str))
    return outputs


def app_environment(
    settings: Settings,
    plan: HostPlan,
    secrets: AppSecrets,
    database: Database,
    public_host: pulumi.Output[str],
    cdn: Cdn,
    assets: PrivateBucket,
    region: str,
    cache: Cache | None,
) -> pulumi.Output[str]:
    """The env file's text (secret): the single server's contract, pointing at RDS, plus the media bucket (and
    ElastiCache with `redis: true`)."""
    app_env = (
        pulumi.Output.secret(settings.app.env)
        if settings.app_env_is_secret
        else pulumi.Output.from_input(settings.app.env)
    )
    values = pulumi.Output.all(
        secrets.django_secret_key_value,
        secrets.db_password_value,
        database.address,
        database.port,
        public_host,
        cdn.domain_name,
        assets.bucket.id,
        app_env,
        cache.host if cache else "",
        secrets.redis_password_value or "",
    )
    return pulumi.Output.secret(
        values.apply(
            lambda v: app_server_env_file(
                plan,
                secret_key=v[0],
                db_password=v[1],
                db_host=v[2],
                db_port=v[3],
                public_host=v[4],
                cdn_domain=v[5],
                media_bucket=v[6],
                region=region,
                extra=v[7],
                redis_host=v[8],
                redis_password=v[9],
            )
        )
    )


def first_boot(settings: Settings, plan: HostPlan, release: Release, boot: BootValues, files: ServerFiles) -> str:
    """The app servers' user-data, base64 (gzip-compressed beyond EC2's 16 KiB, as on a single server)."""
    document = render_scaled_user_data(
        plan,
        release,
        boot,
        files,
        arch=INSTANCE_TYPES[settings.instance_type].arch,
        vpc_cidr=VPC_CIDR,
        admin_user=settings.admin_user,
        admin_email=settings.admin_email,
    )
    return encode_user_data(document)[0]
