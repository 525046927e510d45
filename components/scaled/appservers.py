"""The app servers: a launch template (the first-boot document, IMDSv2 only, an encrypted root volume, no
public address) and an Auto Scaling group across the private subnets, registered with the load balancer.

A release rolls through the group by itself: its id is in the first-boot document, so a new release is a
new launch template version, and the group's instance refresh replaces the servers a few at a time —
launching before terminating, each new server joining only after its boot finished (the launch lifecycle
hook, completed by the boot script) and the load balancer's health check passes. A release whose servers
never get healthy takes no traffic: the old servers are terminated only after their replacements pass, the
refresh stops, and the fix (or the previous code) is the next `pulumi up`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from catalog.offerings import IMAGES, is_burstable
from components.webserver import find_ami

LAUNCH_HOOK_TIMEOUT_SECONDS = 1800  # packages, pip, migrations on a small instance; then the launch is abandoned


@dataclass
class AppServersArgs:
    image: str
    ami_id: str  # pinned AMI; empty = the publisher's newest, looked up when the launch template is created
    instance_type: str
    root_volume_gb: int
    instance_profile_name: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    target_group_arn: pulumi.Input[str]
    user_data_base64: pulumi.Output[str]
    min_size: int
    max_size: int
    desired_capacity: int
    group_name_prefix: str
    lifecycle_hook: str
    release_id: str
    ready: list[pulumi.Resource]  # the database, the parameters, the release, egress: booting needs them
    tags: dict[str, str]


class AppServers(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppServersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:scaled:AppServers", name, None, opts)
        ami = args.ami_id or find_ami(args.image, args.instance_type)
        burstable = is_burstable(args.instance_type)
        instance_tags = args.tags | {"Release": args.release_id}
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-app-lt",
            description=f"{name} app server",
            image_id=ami,
            instance_type=args.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(name=args.instance_profile_name),
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    associate_public_ip_address="false",  # private subnets; egress through the NAT gateway
                    security_groups=[args.security_group_id],
                    delete_on_termination="true",
                )
            ],
            # IMDSv2 only: a forged request through the app (SSRF) cannot read the role's credentials.
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=IMAGES[args.image].root_device,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_type="gp3",
                        volume_size=args.root_volume_gb,
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            # t3/t4g default to "unlimited" CPU credits, which can bill more than the instance itself.
            credit_specification=aws.ec2.LaunchTemplateCreditSpecificationArgs(cpu_credits="standard")
            if burstable
            else None,
            user_data=args.user_data_base64,
            update_default_version=True,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=instance_tags)
                for kind in ("instance", "volume")
            ],
            tags=args.tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # As on a single server: a newer AMI upstream never rolls the servers; choosing another image
                # (or pinning an AMI) on purpose replaces the template, which rolls them.
                ignore_changes=["imageId"],
                replacement_trigger=f"{args.image}|{args.ami_id}",
            ),
        )
        self.group = aws.autoscaling.Group(
            f"{name}-app",
            name_prefix=args.group_name_prefix,
            vpc_zone_identifiers=args.subnet_ids,
            min_size=args.min_size,
            max_size=args.max_size,
            desired_capacity=args.desired_capacity,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=self.launch_template.id, version=self.launch_template.latest_version.apply(str)
            ),
            target_group_arns=[args.target_group_arn],
            # A server the load balancer finds unhealthy is replaced, not only one whose hardware fails.
            health_check_type="ELB",
            health_check_grace_period=120,  # after the hook: the app already answered locally
            initial_lifecycle_hooks=[
                aws.autoscaling.GroupInitialLifecycleHookArgs(
                    name=args.lifecycle_hook,
                    lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
                    heartbeat_timeout=LAUNCH_HOOK_TIMEOUT_SECONDS,
                    default_result="ABANDON",
                )
            ],
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    # Launch before terminating: all desired servers stay in service during a release. Every
                    # replacement at once (up to twice the servers for the roll's length): a roll takes one boot's
                    # time, not one per server, and each old server serves until its replacement is healthy.
                    min_healthy_percentage=100,
                    max_healthy_percentage=200,
                    instance_warmup="60",
                    skip_matching=True,
                    # Not auto_rollback: the provider moves the group to the new version before it starts the
                    # refresh, so a "rollback" would return to the broken version, again and again
                    # (hashicorp/terraform-provider-aws#34189). Launch-before-terminate already keeps the old
                    # servers serving until new ones are healthy.
                    auto_rollback=False,
                ),
                triggers=["tag"],
            ),
            # The first `pulumi up` waits until the servers pass the load balancer's health check.
            min_elb_capacity=args.min_size,
            wait_for_capacity_timeout="40m",
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in sorted(instance_tags.items())
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.ready),
        )
        self.register_outputs({"groupName": self.group.name, "launchTemplateId": self.launch_template.id})
