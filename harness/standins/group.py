"""The Auto Scaling group, played from its declared settings by a small driver (AWS's own is not here):

- launching: a guest boots from the launch template version's user-data, byte for byte, and waits in the launch
  lifecycle hook (Pending:Wait) until its boot completes the action — CONTINUE puts it in service and registers it
  with the load balancer; ABANDON, or the hook's heartbeat timeout with its default result ABANDON, terminates it;
- health: with the ELB health check type, an in-service instance that the load balancer finds unhealthy after the
  grace period is terminated and replaced;
- the instance refresh (a new launch template version): launch before terminate within min/max healthy
  percentages — each replacement in service, healthy and past its warmup before an old instance is drained from
  the load balancer (its deregistration delay) and terminated; the refresh stops at the first replacement that
  does not get there, and says why; the old instances keep serving.
The two Auto Scaling calls an app server makes (DescribeAutoScalingInstances, CompleteLifecycleAction) are
answered here, through `harness.standins.awsapi`.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from localboot import Guest

from .balancer import LoadBalancer
from .imds import Identity, MetadataService


@dataclass(frozen=True)
class GroupSettings:
    name: str
    min_size: int
    max_size: int
    desired: int
    health_check_type: str
    grace_period: float
    hook_name: str
    hook_timeout: float
    hook_default: str
    min_healthy_percentage: int
    max_healthy_percentage: int
    warmup: float
    launch_template_id: str

    @classmethod
    def declared(cls, inputs: dict[str, Any], name: str) -> GroupSettings:
        """From the group's inputs as the program declares them (harness/mockrun.py records them)."""
        hook = inputs["initialLifecycleHooks"][0]
        preferences = inputs["instanceRefresh"]["preferences"]
        return cls(
            name=name,
            min_size=int(inputs["minSize"]),
            max_size=int(inputs["maxSize"]),
            desired=int(inputs["desiredCapacity"]),
            health_check_type=inputs["healthCheckType"],
            grace_period=float(inputs["healthCheckGracePeriod"]),
            hook_name=hook["name"],
            hook_timeout=float(hook["heartbeatTimeout"]),
            hook_default=hook["defaultResult"],
            min_healthy_percentage=int(preferences["minHealthyPercentage"]),
            max_healthy_percentage=int(preferences["maxHealthyPercentage"]),
            warmup=float(preferences["instanceWarmup"]),
            launch_template_id=inputs["launchTemplate"]["id"],
        )


@dataclass
class Instance:
    instance_id: str
    name: str
    version: int
    guest: Guest
    zone: str
    state: str = "Pending:Wait"  # → InService | Terminated
    hook_result: str = ""
    reason: str = ""
    launched_at: float = field(default_factory=time.monotonic)
    in_service_at: float = 0.0

    @property
    def address(self) -> str:
        return self.guest.ip


@dataclass
class RefreshResult:
    status: str  # Successful | Failed
    reason: str
    launched: list[Instance]
    terminated: list[str]  # instance ids


class Group:
    def __init__(
        self,
        settings: GroupSettings,
        balancer: LoadBalancer,
        metadata: MetadataService,
        boot: Callable[[str, str, bytes], Guest],  # (guest name, instance id, user-data) → a started guest
        user_data: Callable[[int], bytes],  # launch template version → its user-data, byte for byte
        role: str,
        zones: tuple[str, ...] = ("us-east-1a", "us-east-1b"),
        log: Callable[[str], None] = print,
    ) -> None:
        self.settings, self.balancer, self.metadata = settings, balancer, metadata
        self.boot, self.user_data, self.role, self.zones, self.log = boot, user_data, role, zones, log
        self.instances: dict[str, Instance] = {}
        self.history: list[Instance] = []
        self.lock = threading.Condition()
        self.launches = 0
        self.version = 1
        # Each instance refresh as DescribeInstanceRefreshes tells it: id, status, started, ended, percent, reason.
        self.refreshes: list[dict[str, Any]] = []
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- what an app server asks (awsapi.AutoScaling) ----------------------------------------------------------

    def describe_instance(self, instance_id: str) -> dict[str, str] | None:
        with self.lock:
            instance = self.instances.get(instance_id)
            if instance is None:
                return None
            return {
                "InstanceId": instance.instance_id,
                "AutoScalingGroupName": self.settings.name,
                "AvailabilityZone": instance.zone,
                "LifecycleState": instance.state,
                "HealthStatus": "HEALTHY",
                "ProtectedFromScaleIn": "false",
            }

    def complete_lifecycle_action(self, group: str, hook: str, instance_id: str, result: str) -> str | None:
        with self.lock:
            instance = self.instances.get(instance_id)
            if group != self.settings.name or hook != self.settings.hook_name:
                return f"No active Lifecycle Action found with hook {hook} in group {group}"
            if instance is None or instance.state != "Pending:Wait" or instance.hook_result:
                return f"No active Lifecycle Action found with instance ID {instance_id}"
            if result not in ("CONTINUE", "ABANDON"):
                return f"Invalid LifecycleActionResult {result}"
            instance.hook_result = result
            self.lock.notify_all()
        return None

    # --- launching and terminating ------------------------------------------------------------------------------

    def launch(self, version: int) -> Instance:
        """Boot one instance of launch template `version`; returns once it is in service or terminated."""
        with self.lock:
            self.launches += 1
            number = self.launches
        instance_id = "i-0" + secrets.token_hex(8)
        zone = self.zones[(number - 1) % len(self.zones)]
        name = f"app{number}"
        self.log(f"[group] launching {instance_id} ({name}, launch template version {version}, {zone})")
        guest = self.boot(name, instance_id, self.user_data(version))
        instance = Instance(instance_id, name, version, guest, zone)
        self.metadata.register(guest.ip, Identity(instance_id, self.role, zone))
        with self.lock:
            self.instances[instance_id] = instance
            self.history.append(instance)
            deadline = time.monotonic() + self.settings.hook_timeout
            while not instance.hook_result and time.monotonic() < deadline and guest.running():
                self.lock.wait(timeout=1)
            result = instance.hook_result or self.settings.hook_default
            if not instance.hook_result:
                instance.reason = "the lifecycle hook timed out" if guest.running() else "the instance stopped"
        if result != "CONTINUE":
            instance.reason = instance.reason or f"its boot completed the lifecycle hook with {result}"
            self.log(f"[group] {instance_id} abandoned: {instance.reason}")
            self.terminate(instance, drain=False)
            return instance
        with self.lock:
            instance.state = "InService"
            instance.in_service_at = time.monotonic()
        self.balancer.register(guest.ip)
        self.log(f"[group] {instance_id} in service after {time.monotonic() - instance.launched_at:.0f} s")
        return instance

    def terminate(self, instance: Instance, drain: bool = True) -> None:
        if drain:
            drained = self.balancer.deregister(instance.address)
            self.log(f"[group] {instance.instance_id} drained in {drained:.1f} s")
        else:
            self.balancer.deregister(instance.address)
        instance.guest.stop()
        self.metadata.forget(instance.address)
        with self.lock:
            instance.state = "Terminated"
            self.instances.pop(instance.instance_id, None)
            self.lock.notify_all()
        self.log(f"[group] {instance.instance_id} terminated")

    def in_service(self) -> list[Instance]:
        with self.lock:
            return [i for i in self.instances.values() if i.state == "InService"]

    def healthy(self, instance: Instance, timeout: float) -> bool:
        return self.balancer.wait_healthy(instance.address, timeout)

    def fill(self, attempts: int = 4) -> list[Instance]:
        """Launch until `desired` instances are in service (side by side), as the group does after it is created."""
        launched: list[Instance] = []
        for _ in range(attempts):
            missing = self.settings.desired - len(self.in_service())
            if missing <= 0:
                break
            launched += self.launch_many(missing, self.version)
        return launched

    def launch_many(self, count: int, version: int) -> list[Instance]:
        """`count` launches side by side, as the group starts them."""
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(lambda _: self.launch(version), range(count)))

    # --- the instance refresh ---------------------------------------------------------------------------------

    def refresh(self, version: int) -> RefreshResult:
        """Replace every instance not on `version` (skip matching), launch before terminate; kept in `refreshes`."""
        record: dict[str, Any] = {
            "id": secrets.token_hex(16),
            "status": "InProgress",
            "started": time.time(),
            "percent": 0,
        }
        self.refreshes.append(record)
        old = len([i for i in self.in_service() if i.version != version])
        result = self._refresh(version)
        record.update(
            status=result.status,
            ended=time.time(),
            reason=result.reason,
            percent=100 * len(result.terminated) // old if old else 100,
        )
        return result

    def _refresh(self, version: int) -> RefreshResult:
        self.version = version
        old = sorted((i for i in self.in_service() if i.version != version), key=lambda i: i.launched_at)
        desired = self.settings.desired
        # At most max% of desired may run at once, at least min% must be healthy: replacements per batch.
        batch = max(1, math.floor(desired * self.settings.max_healthy_percentage / 100) - desired)
        batch = min(batch, desired - math.ceil(desired * self.settings.min_healthy_percentage / 100) + batch)
        launched: list[Instance] = []
        terminated: list[str] = []
        while old:
            group = old[:batch]
            results = self.launch_many(len(group), version)
            launched += results
            for instance in results:
                if instance.state != "InService":
                    return RefreshResult("Failed", f"{instance.instance_id}: {instance.reason}", launched, terminated)
                window = self.settings.grace_period + self.settings.warmup
                if not self.healthy(instance, window):
                    reason = (
                        f"{instance.instance_id} did not pass the load balancer's health check within {window:.0f} s"
                    )
                    self.terminate(instance)
                    return RefreshResult("Failed", reason, launched, terminated)
            # The warmup, counted from in service: a replacement counts only after it.
            for instance in results:
                remaining = instance.in_service_at + self.settings.warmup - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
            for previous in group:
                self.terminate(previous)
                terminated.append(previous.instance_id)
            old = old[len(group) :]
        return RefreshResult("Successful", "", launched, terminated)

    # --- health replacement ----------------------------------------------------------------------------------

    def watch(self) -> None:
        """Start replacing unhealthy in-service instances (ELB health check type), in the background."""
        if self.settings.health_check_type != "ELB" or self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="group-health")
        self._watcher.start()

    def stop_watching(self) -> None:
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=60)

    def _watch(self) -> None:
        while not self._watching.wait(2):
            for instance in self.in_service():
                past_grace = time.monotonic() - instance.in_service_at > self.settings.grace_period
                if past_grace and self.balancer.state(instance.address) == "unhealthy":
                    self.log(f"[group] {instance.instance_id} is unhealthy: replacing it")
                    self.terminate(instance)
                    self.launch(self.version)

    def stop_all(self) -> None:
        """The group deleted: every instance at once (each guest's power-off and clean-up is its own wait)."""
        self.stop_watching()
        instances = list(self.instances.values())
        if instances:
            with ThreadPoolExecutor(len(instances)) as pool:
                list(pool.map(lambda instance: self.terminate(instance, drain=False), instances))
