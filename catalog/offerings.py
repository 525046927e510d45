"""Facts about AWS offerings that the program needs before any API call: sizes, images, database classes, prices.

Prices are on-demand, Linux, us-east-1, as published on 2026-11-01 (USD). They drive the `monthlyCostUsd`
output, an estimate: other regions differ by up to ~30 %; data transfer and snapshots are not included.
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_MONTH = 730
PUBLIC_IPV4_PER_HOUR = 0.005  # every public IPv4 address, the Elastic IP included (since 2024-02)
GP3_PER_GB_MONTH = 0.08

# Never opened by the security group, whatever the config says: the database stays on localhost.
DATABASE_PORTS = frozenset({5432, 6432, 3306, 1433, 1521, 27017, 6379})


@dataclass(frozen=True)
class InstanceType:
    vcpus: int
    memory_mib: int
    usd_per_hour: float
    arch: str  # AMI architecture: x86_64 or arm64


# Families that run on CPU credits: the program asks for "standard" credits on them (see components/webserver.py).
BURSTABLE_FAMILIES = frozenset({"t2", "t3", "t3a", "t4g"})

INSTANCE_TYPES: dict[str, InstanceType] = {
    "t2.nano": InstanceType(1, 512, 0.0058, "x86_64"),
    "t2.micro": InstanceType(1, 1024, 0.0116, "x86_64"),
    "t2.small": InstanceType(1, 2048, 0.023, "x86_64"),
    "t2.medium": InstanceType(2, 4096, 0.0464, "x86_64"),
    "t3.nano": InstanceType(2, 512, 0.0052, "x86_64"),
    "t3.micro": InstanceType(2, 1024, 0.0104, "x86_64"),
    "t3.small": InstanceType(2, 2048, 0.0208, "x86_64"),
    "t3.medium": InstanceType(2, 4096, 0.0416, "x86_64"),
    "t3a.micro": InstanceType(2, 1024, 0.0094, "x86_64"),
    "t3a.small": InstanceType(2, 2048, 0.0188, "x86_64"),
    "t4g.nano": InstanceType(2, 512, 0.0042, "arm64"),
    "t4g.micro": InstanceType(2, 1024, 0.0084, "arm64"),
    "t4g.small": InstanceType(2, 2048, 0.0168, "arm64"),
    "t4g.medium": InstanceType(2, 4096, 0.0336, "arm64"),
    "m7i.large": InstanceType(2, 8192, 0.1008, "x86_64"),
}


@dataclass(frozen=True)
class Image:
    owner: str  # the publisher's AWS account: only its images are ever considered
    name_pattern: str  # {arch} is amd64 or arm64 in the publisher's naming
    ssh_user: str
    python: str  # the distribution's python3 (an app needing another gets a uv-managed CPython; config/apppython.py)
    # The AMIs' root device: a launch template's block device mapping must name it exactly, or the volume it
    # describes is added beside the root volume instead of replacing its settings.
    root_device: str
    architectures: tuple[str, ...] = ("x86_64", "arm64")

    def name_for(self, arch: str) -> str:
        return self.name_pattern.format(arch="amd64" if arch == "x86_64" else "arm64")


IMAGES: dict[str, Image] = {
    "ubuntu-24.04": Image(
        "099720109477", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*", "ubuntu", "3.12.3", "/dev/sda1"
    ),
    "debian-12": Image("136693071363", "debian-12-{arch}-*", "admin", "3.11.2", "/dev/xvda"),
    "debian-13": Image("136693071363", "debian-13-{arch}-*", "admin", "3.13.5", "/dev/xvda"),
}

# RDS for PostgreSQL, single-AZ, per hour; a Multi-AZ deployment (primary + standby) costs twice this.
# ElastiCache for Valkey node types (profile scaled, `redis: true`), USD per hour on demand, us-east-1, 2026-11-01:
# Valkey's nodes cost 20 % less than Redis OSS's.
CACHE_NODE_TYPES: dict[str, float] = {
    "cache.t4g.micro": 0.0128,
    "cache.t4g.small": 0.0256,
    "cache.t4g.medium": 0.052,
    "cache.m7g.large": 0.1264,
    "cache.r7g.large": 0.1752,
}

DB_INSTANCE_CLASSES: dict[str, float] = {
    "db.t4g.micro": 0.016,
    "db.t4g.small": 0.032,
    "db.t4g.medium": 0.065,
    "db.t4g.large": 0.129,
    "db.t3.micro": 0.018,
    "db.t3.small": 0.036,
    "db.t3.medium": 0.072,
    "db.t3.large": 0.145,
    "db.m7g.large": 0.168,
    "db.m6g.large": 0.159,
    "db.m5.large": 0.178,
    "db.r6g.large": 0.225,
}


def is_burstable(instance_type: str) -> bool:
    return instance_type.split(".")[0] in BURSTABLE_FAMILIES


def monthly_cost_usd(instance_type: str, volume_gb_total: int) -> float:
    """Instance + its public IPv4 + gp3 storage, per month, rounded to cents."""
    hourly = INSTANCE_TYPES[instance_type].usd_per_hour + PUBLIC_IPV4_PER_HOUR
    return round(hourly * HOURS_PER_MONTH + GP3_PER_GB_MONTH * volume_gb_total, 2)


def default_workers(instance_type: str) -> int:
    """Gunicorn's rule, 2 × vCPU + 1 (the seed's 3 on a one-vCPU t2), capped at one sync worker per
    200 MiB: on 512 MiB (t2/t3/t4g.nano) 2 workers leave the idle stack room, with no loss of throughput on
    one vCPU (measured: docs/performance.md, "Memory")."""
    size = INSTANCE_TYPES[instance_type]
    return max(2, min(2 * size.vcpus + 1, size.memory_mib // 200))


def max_workers(instance_type: str) -> int:
    """The most gunicorn workers an explicit gunicornWorkers may ask for: ~160 MiB for the rest of the idle stack
    and ~60 MiB per worker (45–55 MiB measured idle, more once it has served pages), at most 64."""
    size = INSTANCE_TYPES[instance_type]
    return max(default_workers(instance_type), min(64, (size.memory_mib - 160) // 60))


def swap_mib(instance_type: str) -> int:
    """Swap for small instances: pip and migrations are OOM-killed on 512 MiB without it."""
    return 1024 if INSTANCE_TYPES[instance_type].memory_mib <= 2048 else 0


# What each part of a single server takes, in MiB, for the memory budget at preview (config/memory.py): PSS (shared
# pages divided among their sharers, so the parts add up), measured on Debian 13 guests with the tests' `workers`
# project (tests/foreign_apps.py) after jobs, heartbeats and page views — `tests/guests/test_foreign_workers.py` prints
# them, `bench.memory --app workers` (t2.micro sizing) has the whole machine; 2026-12-02, figures in docs/deploying.md —
# rounded up for a request's or a job's peak:
MEMORY_MIB = {
    "system": 70,  # systemd, journald, sshd, cron, nginx, PgBouncer: the machine around the site (52 measured)
    "postgresql": 40,  # postmaster, helpers, backends beyond shared_buffers (counted whole); 46 measured in all
    "gunicorn_master": 25,
    "gunicorn_worker": 45,  # one sync worker of a small Django app after requests (docs/performance.md)
    "asgi_worker": 55,  # one uvicorn worker of the same app (master + 3 workers: 159 idle, 185 under load)
    "process": 70,  # one app.processes entry: a Celery worker (solo pool) 65 after jobs; `manage.py` command 47
    "redis": 10,  # redis-server nearly empty (7.7); its data is capped by maxmemory (redis_maxmemory_mib) on top
}


def redis_maxmemory_mib(instance_type: str) -> int:
    """Redis's cap: 1/16 of the memory (64 MiB on a t2.micro), enough for a broker's queues and a small cache
    beside PostgreSQL, which takes 1/8 for its shared buffers."""
    return max(32, INSTANCE_TYPES[instance_type].memory_mib // 16)
