"""The EC2 instance and its Elastic IP — the fixed public address of the site and of every SSH connection."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from catalog.offerings import IMAGES, INSTANCE_TYPES, is_burstable


@dataclass
class WebServerArgs:
    instance_type: str
    image: str  # a key of catalog.IMAGES
    ami_id: str  # pinned AMI; empty = newest of the image's publisher, looked up once
    user_data: str  # the rendered first-boot document (no secrets)
    user_data_gzip_base64: str | None  # set instead when the document is over EC2's 16 KiB limit
    key_name: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    root_volume_gb: int
    availability_zone: pulumi.Input[str]  # the data volume's zone: the instance must sit beside it
    instance_profile: pulumi.Input[str] | None  # IAM instance profile name (backups to S3), or none
    tags: dict[str, str]


def find_ami(image: str, instance_type: str) -> str:
    """The newest AMI of the image's own publisher for the instance's architecture."""
    spec = IMAGES[image]
    arch = INSTANCE_TYPES[instance_type].arch
    found = aws.ec2.get_ami(
        most_recent=True,
        owners=[spec.owner],
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[spec.name_for(arch)]),
            aws.ec2.GetAmiFilterArgs(name="architecture", values=[arch]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            aws.ec2.GetAmiFilterArgs(name="root-device-type", values=["ebs"]),
        ],
    )
    return found.id


class WebServer(pulumi.ComponentResource):
    def __init__(self, name: str, args: WebServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:WebServer", name, None, opts)
        ami = args.ami_id or find_ami(args.image, args.instance_type)
        burstable = is_burstable(args.instance_type)
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami,
            instance_type=args.instance_type,
            key_name=args.key_name,
            vpc_security_group_ids=[args.security_group_id],
            availability_zone=args.availability_zone,
            iam_instance_profile=args.instance_profile,
            user_data=None if args.user_data_gzip_base64 else args.user_data,
            user_data_base64=args.user_data_gzip_base64,
            user_data_replace_on_change=False,
            # IMDSv2 only: a stolen-request (SSRF) bug in the app cannot read the instance's credentials.
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=args.root_volume_gb, encrypted=True, delete_on_termination=True
            ),
            # t3/t4g default to "unlimited" CPU credits, which can bill more than the instance itself.
            credit_specification=aws.ec2.InstanceCreditSpecificationArgs(cpu_credits="standard") if burstable else None,
            volume_tags=args.tags,
            tags=args.tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The AMI lookup finds a newer image whenever the publisher releases one; that must never
                # replace a running server. The first-boot document only matters at first boot. Both are
                # ignored after creation; choosing another image or AMI on purpose replaces the server
                # through replacement_trigger below.
                ignore_changes=["ami", "userData", "userDataBase64"],
                replacement_trigger=f"{args.image}|{args.ami_id}",
            ),
        )
        self.eip = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags=args.tags, opts=pulumi.ResourceOptions(parent=self))
        # A separate association: a replaced instance gets the same address.
        self.eip_association = aws.ec2.EipAssociation(
            f"{name}-eip-association",
            instance_id=self.instance.id,
            allocation_id=self.eip.allocation_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.public_ip: pulumi.Output[str] = self.eip.public_ip
        self.register_outputs({"instanceId": self.instance.id, "publicIp": self.public_ip})
