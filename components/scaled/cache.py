"""Redis for the app servers (`redis: true`): ElastiCache for Valkey — the open-source fork of Redis that
ElastiCache now leads with, 20 % cheaper per node, speaking Redis's protocol — in the private subnets, reachable
from the app servers' security group only, TLS in transit (an auth token needs it) and encryption at rest. One node:
a broker's queue or a cache, as on one server; its snapshot is kept for a day.

The app reads it as REDIS_URL (`rediss://:<token>@<primary endpoint>:6379/0?ssl_cert_reqs=required`, the same
contract as on one server, over TLS): Celery, RQ, django-redis and Channels read that form as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

REDIS_PORT = 6379
ENGINE_VERSION = "8.0"  # Valkey 8.0


@dataclass
class CacheArgs:
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    node_type: str
    auth_token: pulumi.Output[str]  # secret: letters and digits (it sits in REDIS_URL unescaped)
    tags: dict[str, str]


class Cache(pulumi.ComponentResource):
    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:Cache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.subnets = aws.elasticache.SubnetGroup(
            f"{name}-cache-subnets",
            description=f"{name}: the cache, in the private subnets",
            subnet_ids=args.subnet_ids,
            tags=args.tags,
            opts=child,
        )
        self.group = aws.elasticache.ReplicationGroup(
            f"{name}-cache",
            description=f"{name}: Redis protocol for the app (REDIS_URL)",
            engine="valkey",
            engine_version=ENGINE_VERSION,
            node_type=args.node_type,
            num_cache_clusters=1,
            port=REDIS_PORT,
            subnet_group_name=self.subnets.name,
            security_group_ids=[args.security_group_id],
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            auth_token=args.auth_token,  # secret already (components/secrets.py)
            snapshot_retention_limit=1,
            apply_immediately=True,
            tags=args.tags,
            opts=child,
        )
        self.host: pulumi.Output[str] = self.group.primary_endpoint_address
        self.register_outputs({"host": self.host})
