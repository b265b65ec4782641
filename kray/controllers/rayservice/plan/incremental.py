"""``NewClusterWithIncrementalUpgrade`` stepping as pure functions (not yet wired into :func:`plan`).

KubeRay moves an upgrade forward in three phases (``checkIfNeedTargetCapacityUpdate``): raise the
pending cluster's Serve ``target_capacity`` by ``maxSurgePercent``; shift HTTPRoute weight to it by
``stepSizePercent`` every ``intervalSeconds``, never beyond its capacity (``calculateTrafficRoutedPercent``);
then lower the active cluster's capacity by ``maxSurgePercent`` (``reconcileServeTargetCapacity``).
Done when the active cluster is at 0 and the pending one at 100 with all the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Progress:
    """Both clusters' ``targetCapacity`` and ``trafficRoutedPercent`` (None: not set yet)."""

    active_capacity: int | None = None
    pending_capacity: int | None = None
    active_traffic: int | None = None
    pending_traffic: int | None = None


def needs_capacity_update(progress: Progress, *, gateway_ready: bool, route_ready: bool) -> tuple[bool, str]:
    """``checkIfNeedTargetCapacityUpdate`` once both clusters exist: (step on?, KubeRay's reason)."""
    if not gateway_ready:
        return False, "Gateway for RayService NewClusterWithIncrementalUpgrade is not ready."
    if not route_ready:
        return False, "HTTPRoute for RayService NewClusterWithIncrementalUpgrade is not ready."
    if progress.active_capacity is None or progress.active_traffic is None:
        return True, "Active RayServiceStatus missing TargetCapacity or TrafficRoutedPercent."
    if progress.pending_capacity is None or progress.pending_traffic is None:
        return True, "Pending RayServiceStatus missing TargetCapacity or TrafficRoutedPercent."
    if progress.active_capacity == 0 and progress.pending_capacity == 100:
        return (
            False,
            "All traffic has migrated to the upgraded cluster and NewClusterWithIncrementalUpgrade is complete.",
        )
    if progress.pending_capacity < 100 or progress.pending_traffic < 100:
        return True, "Pending RayCluster has not finished scaling up."
    return True, "Active RayCluster TargetCapacity has not finished scaling down."


def capacity_goal(progress: Progress, *, for_active: bool, max_surge: int = 100) -> int | None:
    """``reconcileServeTargetCapacity``: the new ``target_capacity`` for the active (``for_active``) or the
    pending cluster, or None when that cluster is not the one to change now."""
    active = 100 if progress.active_capacity is None else progress.active_capacity
    pending = 0 if progress.pending_capacity is None else progress.pending_capacity
    if pending != (progress.pending_traffic or 0):
        return None  # traffic has not caught up with the pending capacity yet
    if for_active:
        return max(0, active - max_surge) if active + pending > 100 else None
    return min(100, pending + max_surge) if active + pending <= 100 else None


def traffic_weights(
    progress: Progress,
    *,
    pending_ready: bool,
    step: int,
    interval: float,
    last_migrated: datetime | None,
    now: datetime,
) -> tuple[int, int]:
    """``calculateTrafficRoutedPercent``: the (active, pending) HTTPRoute weights."""
    active = 100 if progress.active_traffic is None else progress.active_traffic
    pending = progress.pending_traffic or 0
    if not pending_ready:
        return active, pending
    capacity = progress.pending_capacity or 0
    if pending == capacity:
        return active, pending
    if last_migrated is None or (now - last_migrated).total_seconds() >= interval:
        pending = min(100, pending + step, capacity)
        active = 100 - pending
    return active, pending


def complete(progress: Progress) -> bool:
    """The upgrade is over: the pending cluster has all the capacity and all the traffic."""
    return progress.active_capacity == 0 and progress.pending_capacity == 100 and progress.pending_traffic == 100
