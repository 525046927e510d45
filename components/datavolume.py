"""The data volume: PostgreSQL and the uploaded media on their own EBS volume, which outlives the server.

A replaced instance (new image, new AMI) finds the same database and files: the volume stays in one
availability zone, the instance is placed beside it, and the attachment moves to the new instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

DEVICE_NAME = "/dev/sdf"  # /dev/xvdf on Xen (t2), an NVMe disk on Nitro: the first boot finds it either way


@dataclass
class DataVolumeArgs:
    size_gb: int
    retain_on_delete: bool  # `pulumi destroy` leaves the volume (and its data) in the account
    tags: dict[str, str]


class DataVolume(pulumi.ComponentResource):
    def __init__(self, name: str, args: DataVolumeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("djangoship:index:DataVolume", name, None, opts)
        # The zone is looked up once; ignore_changes keeps a later lookup from moving (replacing) the volume.
        zone = aws.get_availability_zones(state="available").names[0]
        self.volume = aws.ebs.Volume(
            f"{name}-data",
            availability_zone=zone,
            size=args.size_gb,
            type="gp3",
            encrypted=True,
            tags=args.tags,
            opts=pulumi.ResourceOptions(
                parent=self, retain_on_delete=args.retain_on_delete, ignore_changes=["availabilityZone"]
            ),
        )
        self.availability_zone: pulumi.Output[str] = self.volume.availability_zone
        self.register_outputs({"volumeId": self.volume.id})

    def attach_to(self, name: str, instance_id: pulumi.Input[str]) -> aws.ec2.VolumeAttachment:
        """Attach to the instance. A volume attaches to one instance at a time: when the instance is
        replaced, the old attachment must go first (delete_before_replace), after a clean stop."""
        return aws.ec2.VolumeAttachment(
            f"{name}-data-attachment",
            device_name=DEVICE_NAME,
            volume_id=self.volume.id,
            instance_id=instance_id,
            stop_instance_before_detaching=True,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
