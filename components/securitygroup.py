"""The security group: the only doors into the server."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from catalog.offerings import DATABASE_PORTS


@dataclass
class WebSecurityGroupArgs:
    ports: list[int]  # ingress ports; 22 is limited to ssh_cidrs, the others are open to the world
    ssh_cidrs: list[str]
    tags: dict[str, str]


class WebSecurityGroup(pulumi.ComponentResource):
    """Ingress for the configured ports (SSH only from the allowed networks), all egress; in the default
    VPC. Database ports are refused here too, as a second line behind config validation."""

    def __init__(self, name: str, args: WebSecurityGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:WebSecurityGroup", name, None, opts)
        refused = sorted(set(args.ports) & DATABASE_PORTS)
        if refused:
            raise ValueError(f"ingressPorts: database ports {refused} are never opened")
        ingress = [
            aws.ec2.SecurityGroupIngressArgs(
                description="SSH for the operator and the deploy commands" if port == 22 else f"port {port}",
                protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_blocks=args.ssh_cidrs if port == 22 else ["0.0.0.0/0"],
                ipv6_cidr_blocks=None if port == 22 else ["::/0"],
            )
            for port in sorted(args.ports)
        ]
        self.group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="Django web server: SSH, HTTP(S)",
            ingress=ingress,
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="packages, PyPI, git, Let's Encrypt",
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=["0.0.0.0/0"],
                    ipv6_cidr_blocks=["::/0"],
                )
            ],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"securityGroupId": self.group.id})
