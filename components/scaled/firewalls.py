"""The three security groups, each admitting only the one before it:

    CloudFront ──80 or 443──▶ load balancer ──80──▶ app servers ──5432──▶ database
                                                              └──6379──▶ cache (with `redis: true`)

The load balancer admits CloudFront's origin-facing addresses only (AWS's managed prefix list), on the one port
CloudFront uses: 443 with a domain (HTTPS to the load balancer), 80 without. Those addresses serve every
CloudFront distribution, not only ours: the load balancer's listener also requires the secret header that only
our distribution sends (loadbalancer.py). One rule, one port: the prefix list counts as ~55 rules of the group's
quota of 60.

Nothing else is reachable: no SSH anywhere (operators use SSM Session Manager, which needs no inbound
port), the app servers have no public address, the database admits only the app servers' group.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

POSTGRES_PORT = 5432
REDIS_PORT = 6379


@dataclass
class FirewallsArgs:
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    https: bool  # 443 on the load balancer (a domain with its certificate)
    cloudfront_prefix_list_id: pulumi.Input[str]  # com.amazonaws.global.cloudfront.origin-facing
    tags: dict[str, str]
    cache: bool = False  # `redis: true`: the cache's own group


class Firewalls(pulumi.ComponentResource):
    def __init__(self, name: str, args: FirewallsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:Firewalls", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        port = 443 if args.https else 80
        self.load_balancer = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=args.vpc_id,
            description="Load balancer: HTTP(S) from CloudFront only",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="CloudFront's origin-facing servers",
                    protocol="tcp",
                    from_port=port,
                    to_port=port,
                    prefix_list_ids=[args.cloudfront_prefix_list_id],
                )
            ],
            # To the app servers only. Written as the VPC's range rather than their group, which names this
            # one: two groups naming each other inline cannot be created.
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="app servers (nginx)",
                    protocol="tcp",
                    from_port=80,
                    to_port=80,
                    cidr_blocks=[args.vpc_cidr],
                )
            ],
            tags=args.tags | {"Name": f"{name}-alb"},
            opts=child,
        )
        self.app_servers = aws.ec2.SecurityGroup(
            f"{name}-app-sg",
            vpc_id=args.vpc_id,
            description="App servers: HTTP from the load balancer only",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="the load balancer",
                    protocol="tcp",
                    from_port=80,
                    to_port=80,
                    security_groups=[self.load_balancer.id],
                )
            ],
            # Out: packages, PyPI and git through the NAT gateway, S3 through its endpoint, the database.
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="packages, PyPI, git, AWS APIs, the database",
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=["0.0.0.0/0"],
                )
            ],
            tags=args.tags | {"Name": f"{name}-app"},
            opts=child,
        )
        self.database = aws.ec2.SecurityGroup(
            f"{name}-db-sg",
            vpc_id=args.vpc_id,
            description="Database: PostgreSQL from the app servers only",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="the app servers",
                    protocol="tcp",
                    from_port=POSTGRES_PORT,
                    to_port=POSTGRES_PORT,
                    security_groups=[self.app_servers.id],
                )
            ],
            egress=[],  # RDS answers; it never opens a connection of its own
            tags=args.tags | {"Name": f"{name}-db"},
            opts=child,
        )
        self.cache: aws.ec2.SecurityGroup | None = None
        if args.cache:
            self.cache = aws.ec2.SecurityGroup(
                f"{name}-cache-sg",
                vpc_id=args.vpc_id,
                description="Cache: Redis protocol (TLS) from the app servers only",
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        description="the app servers",
                        protocol="tcp",
                        from_port=REDIS_PORT,
                        to_port=REDIS_PORT,
                        security_groups=[self.app_servers.id],
                    )
                ],
                egress=[],
                tags=args.tags | {"Name": f"{name}-cache"},
                opts=child,
            )
        self.register_outputs(
            {
                "loadBalancerGroupId": self.load_balancer.id,
                "appServerGroupId": self.app_servers.id,
                "databaseGroupId": self.database.id,
            }
        )
