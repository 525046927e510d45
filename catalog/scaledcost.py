"""What the scaled profile costs per month, before traffic: the `monthlyCostUsd` output.

Prices are on-demand, us-east-1, as published on 2026-11-01 (USD), like `catalog/offerings.py` (whose
EC2, gp3 and RDS class prices it uses). Not included: data transfer, CloudFront requests and bytes (the
first 1 TB and 10 million requests a month are free), S3 storage and requests, RDS backup storage beyond
the database's size (free up to it), load balancer capacity beyond one LCU.
"""

from __future__ import annotations

from .offerings import (
    CACHE_NODE_TYPES,
    DB_INSTANCE_CLASSES,
    GP3_PER_GB_MONTH,
    HOURS_PER_MONTH,
    INSTANCE_TYPES,
    PUBLIC_IPV4_PER_HOUR,
)

PRICES_DATE = "2026-11-01"
PRICES_REGION = "us-east-1"

ALB_PER_HOUR = 0.0225
ALB_LCU_PER_HOUR = 0.008  # one load balancer capacity unit: a small site's traffic
ALB_PUBLIC_IPV4 = 2  # an internet-facing ALB holds a public address in each of its two zones
NAT_GATEWAY_PER_HOUR = 0.045  # plus its Elastic IP (public IPv4) and $0.045 per GB it forwards
KMS_KEY_PER_MONTH = 1.00  # the key of the app servers' SecureString parameters ($1 more per yearly rotation, ≤ $3)
CLOUDFRONT_BASE_PER_MONTH = 0.00  # pay-as-you-go has no fixed fee
RDS_GP3_PER_GB_MONTH = 0.115  # single-AZ; a Multi-AZ standby doubles it


def monthly_cost_breakdown(
    *,
    instance_type: str,
    app_servers: int,
    root_volume_gb: int,
    db_instance_class: str,
    db_storage_gb: int,
    db_multi_az: bool,
    nat_gateways: int = 1,
    cache_node_type: str | None = None,
) -> dict[str, float]:
    """USD per month by item, unrounded (`cache_node_type`: with `redis: true`)."""
    copies = 2 if db_multi_az else 1
    cache = {"cache": CACHE_NODE_TYPES[cache_node_type] * HOURS_PER_MONTH} if cache_node_type else {}
    return cache | {
        "load balancer": (ALB_PER_HOUR + ALB_LCU_PER_HOUR + ALB_PUBLIC_IPV4 * PUBLIC_IPV4_PER_HOUR) * HOURS_PER_MONTH,
        "NAT gateway": nat_gateways * (NAT_GATEWAY_PER_HOUR + PUBLIC_IPV4_PER_HOUR) * HOURS_PER_MONTH,
        "app servers": app_servers
        * (INSTANCE_TYPES[instance_type].usd_per_hour * HOURS_PER_MONTH + root_volume_gb * GP3_PER_GB_MONTH),
        "database": copies
        * (DB_INSTANCE_CLASSES[db_instance_class] * HOURS_PER_MONTH + db_storage_gb * RDS_GP3_PER_GB_MONTH),
        "KMS key": KMS_KEY_PER_MONTH,
        "CloudFront": CLOUDFRONT_BASE_PER_MONTH,
    }


def monthly_cost_usd(breakdown: dict[str, float]) -> float:
    """The total of a `monthly_cost_breakdown`, rounded to cents."""
    return round(sum(breakdown.values()), 2)
