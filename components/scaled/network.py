"""The network: a VPC across two availability zones, public subnets for the load balancer (and the NAT
gateway), private subnets for the app servers and the database.

Egress for the app servers (apt, PyPI, git) goes through ONE NAT gateway, in the first zone: about $36.50
a month with its address ($0.045/h + $0.005/h public IPv4), plus $0.045 per GB it forwards. Considered:
- a NAT gateway per zone (~$73/month): survives a zone outage for egress, but egress is only needed while an
  app server boots; the servers in the other zone keep serving without it;
- a NAT *instance* (~$3/month on a t4g.nano): one more server to patch and a single point that nobody
  monitors — the opposite of what this profile is for;
- no NAT, with VPC endpoints: S3 is free (gateway endpoint, below), but SSM needs three interface endpoints
  per zone (~$44/month, more than the NAT), and PyPI, the package mirrors and git hosts have no endpoint;
- IPv6-only egress (free egress-only gateway): github.com and some mirrors still have no IPv6;
- public addresses on the app servers: $3.65 each a month, and they would no longer be private.
S3 traffic (release archives, static files, uploads) bypasses the NAT through the free gateway endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ZONES = 2


@dataclass
class NetworkArgs:
    cidr: str  # a /16; subnets are /24s carved from it
    tags: dict[str, str]


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Looked up once; ignore_changes keeps a later lookup (a zone added or retired) from moving subnets.
        zones = aws.get_availability_zones(state="available").names[:ZONES]
        prefix = args.cidr.split(".")[:2]

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_support=True,  # RDS endpoints and the S3 endpoint resolve through the VPC's DNS
            enable_dns_hostnames=True,
            tags=args.tags | {"Name": f"{name}-vpc"},
            opts=child,
        )
        # The VPC's default security group admits its own members; nothing here uses it: empty it.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, tags=args.tags, opts=child)

        def subnet(kind: str, index: int, third_octet: int) -> aws.ec2.Subnet:
            return aws.ec2.Subnet(
                f"{name}-{kind}-{index + 1}",
                vpc_id=self.vpc.id,
                cidr_block=".".join([*prefix, str(third_octet), "0"]) + "/24",
                availability_zone=zones[index],
                # Nothing gets a public address by being launched here: the load balancer and the NAT
                # gateway bring their own.
                map_public_ip_on_launch=False,
                tags=args.tags | {"Name": f"{name}-{kind}-{zones[index]}", "Tier": kind},
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["availabilityZone"]),
            )

        self.public_subnets = [subnet("public", index, index) for index in range(ZONES)]
        self.private_subnets = [subnet("private", index, 10 + index) for index in range(ZONES)]
        self.public_subnet_ids: list[pulumi.Output[str]] = [s.id for s in self.public_subnets]
        self.private_subnet_ids: list[pulumi.Output[str]] = [s.id for s in self.private_subnets]

        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=args.tags, opts=child)
        public_routes = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=self.vpc.id, tags=args.tags, opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child,
        )
        for index, public in enumerate(self.public_subnets):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-rt-{index + 1}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )

        self.nat_address = aws.ec2.Eip(f"{name}-nat-eip", domain="vpc", tags=args.tags, opts=child)
        self.nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=self.nat_address.allocation_id,
            subnet_id=self.public_subnets[0].id,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )
        private_routes = aws.ec2.RouteTable(f"{name}-private-rt", vpc_id=self.vpc.id, tags=args.tags, opts=child)
        self.private_egress = aws.ec2.Route(
            f"{name}-private-default",
            route_table_id=private_routes.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=self.nat.id,
            opts=child,
        )
        self.private_associations = [
            aws.ec2.RouteTableAssociation(
                f"{name}-private-rt-{index + 1}", subnet_id=private.id, route_table_id=private_routes.id, opts=child
            )
            for index, private in enumerate(self.private_subnets)
        ]
        region = aws.get_region().region
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[private_routes.id],
            tags=args.tags,
            opts=child,
        )
        # What an app server needs before it boots: a way out (packages) and to S3 (its release).
        self.egress_ready: list[pulumi.Resource] = [self.private_egress, *self.private_associations, self.s3_endpoint]
        self.register_outputs(
            {
                "vpcId": self.vpc.id,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
            }
        )
