"""The database: RDS for PostgreSQL in the private subnets, encrypted, backed up, reachable only from the
app servers. The app connects as the master user to a database named after it, with the same env contract
as on a single server (only DB_HOST differs)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .firewalls import POSTGRES_PORT

ENGINE_VERSION = "16"  # the major; RDS picks its newest minor and applies later ones in the maintenance window


@dataclass
class DatabaseArgs:
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    instance_class: str
    storage_gb: int
    multi_az: bool
    backup_retention_days: int
    deletion_protection: bool
    db_name: str  # also the user: the app's name, as on a single server
    password: pulumi.Output[str]  # secret
    final_snapshot_identifier: str
    tags: dict[str, str]


class Database(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.subnet_group = aws.rds.SubnetGroup(
            f"{name}-db-subnets",
            subnet_ids=args.subnet_ids,
            description="private subnets: the database has no route from the internet",
            tags=args.tags,
            opts=child,
        )
        self.instance = aws.rds.Instance(
            f"{name}-db",
            engine="postgres",
            engine_version=ENGINE_VERSION,
            auto_minor_version_upgrade=True,
            instance_class=args.instance_class,
            storage_type="gp3",
            allocated_storage=args.storage_gb,
            storage_encrypted=True,
            multi_az=args.multi_az,
            db_name=args.db_name,
            username=args.db_name,
            password=args.password,
            port=POSTGRES_PORT,
            db_subnet_group_name=self.subnet_group.name,
            vpc_security_group_ids=[args.security_group_id],
            publicly_accessible=False,
            backup_retention_period=args.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            # `pulumi destroy` (once deletion protection is off) leaves a last snapshot behind. Its name is
            # fixed, so a second destroy of the same stack needs the first snapshot deleted or renamed.
            skip_final_snapshot=False,
            final_snapshot_identifier=args.final_snapshot_identifier,
            # Size changes restart the database: they wait for the weekly maintenance window.
            apply_immediately=False,
            tags=args.tags,
            opts=child,
        )
        self.address: pulumi.Output[str] = self.instance.address
        self.port: pulumi.Output[int] = self.instance.port
        self.register_outputs({"endpoint": self.instance.endpoint})
