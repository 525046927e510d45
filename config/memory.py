"""The memory budget of one server, checked at preview: what the site will run (PostgreSQL, gunicorn's
workers, an activation's release check, the app's processes, Redis) summed from the measured figures in
catalog.MEMORY_MIB against the instance's memory.

Three verdicts: `fits`; `swap` — over the memory but within half of the swap file (the machines with ≤ 2 GiB
get 1 GiB): it runs, idle pages of the app's processes go to swap, and a request that touches them waits for
the disk, so the preview warns; `over` — beyond that the OOM killer decides what dies, so the preview fails and
names the cheapest size (of the same architecture) that fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from catalog.offerings import INSTANCE_TYPES, MEMORY_MIB, default_workers, redis_maxmemory_mib, swap_mib


def postgres_shared_buffers_mib(memory_mib: int) -> int:
    """host.postgres_memory's shared_buffers (~1/8 of the memory)."""
    return max(32, min(memory_mib // 8, 1024))


@dataclass(frozen=True)
class Budget:
    instance_type: str
    parts: dict[str, int]  # what takes memory, MiB
    memory_mib: int
    swap_mib: int
    cheapest_fit: str  # "" when none of the catalog's sizes (of this architecture) fits

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def verdict(self) -> Literal["fits", "swap", "over"]:
        if self.total <= self.memory_mib:
            return "fits"
        return "swap" if self.total <= self.memory_mib + self.swap_mib // 2 else "over"

    def explain(self) -> str:
        parts = ", ".join(f"{name} {mib}" for name, mib in self.parts.items() if mib)
        text = f"the site needs ~{self.total} MiB ({parts}) and {self.instance_type} has {self.memory_mib} MiB"
        if self.swap_mib:
            text += f" (+{self.swap_mib} MiB swap)"
        if self.cheapest_fit:
            size = INSTANCE_TYPES[self.cheapest_fit]
            text += (
                f": the cheapest size that fits is {self.cheapest_fit} ({size.memory_mib} MiB, ${size.usd_per_hour}/h)"
            )
        else:
            text += ": no size in the catalog fits; run fewer processes or gunicornWorkers"
        return text


def _parts(instance_type: str, workers: int, processes: int, redis: bool, asgi: bool) -> dict[str, int]:
    memory = INSTANCE_TYPES[instance_type].memory_mib
    workers = workers or default_workers(instance_type)
    worker = MEMORY_MIB["asgi_worker" if asgi else "gunicorn_worker"]
    return {
        "system": MEMORY_MIB["system"],
        "postgresql": MEMORY_MIB["postgresql"] + postgres_shared_buffers_mib(memory),
        "gunicorn": MEMORY_MIB["gunicorn_master"] + workers * worker,
        # During an activation: the new release on its own socket, one worker, beside the live ones.
        "release check": MEMORY_MIB["gunicorn_master"] + worker,
        "processes": processes * MEMORY_MIB["process"],
        "redis": MEMORY_MIB["redis"] + redis_maxmemory_mib(instance_type) if redis else 0,
    }


def memory_budget(
    instance_type: str, *, workers: int = 0, processes: int = 0, redis: bool = False, asgi: bool = False
) -> Budget:
    """`workers`: gunicornWorkers (0 = the size's default)."""

    def fits(size: str) -> bool:
        return sum(_parts(size, workers, processes, redis, asgi).values()) <= INSTANCE_TYPES[size].memory_mib

    arch = INSTANCE_TYPES[instance_type].arch
    candidates = sorted((t.usd_per_hour, name) for name, t in INSTANCE_TYPES.items() if t.arch == arch and fits(name))
    return Budget(
        instance_type=instance_type,
        parts=_parts(instance_type, workers, processes, redis, asgi),
        memory_mib=INSTANCE_TYPES[instance_type].memory_mib,
        swap_mib=swap_mib(instance_type),
        cheapest_fit=candidates[0][1] if candidates else "",
    )
