"""``NewClusterWithIncrementalUpgrade`` inside one reconcile: capacity PUTs, route weights, promotion, rollback.

The arithmetic is :mod:`.incremental`'s; this module applies it to the RayService status the way KubeRay's
``reconcileServe`` (``checkIfNeedTargetCapacityUpdate`` + ``reconcileServeTargetCapacity`` per cluster,
pending first), ``reconcileHTTPRoute`` (``calculateTrafficRoutedPercent``) and ``calculateStatus``
(``trafficRoutedPercent`` read back from the route, ``lastTrafficMigratedTime`` when it moved, promotion
once ``IsIncrementalUpgradeComplete``) do, in ``rayservice_controller.go``.

Rollback (KubeRay v1.7, PRs 4109/4601/4989; the Go of that version was not available to read, so this
follows its user guide): while an upgrade is in progress, a ``rayClusterConfig`` that no longer matches the
pending cluster sets ``RollbackInProgress`` (reason ``DesiredClusterSpecChanged``); the active cluster's
``target_capacity`` goes back to 100, then traffic moves back to it by ``stepSizePercent`` every
``intervalSeconds`` once it is ready; with all traffic back, the pending cluster is dropped from the status
(and deleted after the deletion delay). Matching the pending cluster again cancels the rollback. A third
spec rolls back first; the next reconcile then prepares a new pending cluster for it.

Invariants: the two weights always sum to 100; traffic never goes to the pending cluster beyond its
capacity nor before it is ready; a capacity is lowered only once traffic matches the pending capacity, and
(kray, not KubeRay) the active cluster's only :data:`TRAFFIC_SETTLE_SECONDS` after the weights last moved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kray.api.v1.conditions import ConditionStatus, RayServiceConditionReason, RayServiceConditionType
from kray.api.v1.rayservice import ClusterUpgradeOptions, RayService
from kray.controllers.rayservice import status as st
from kray.controllers.rayservice.plan.clusters import spec_hash_equal
from kray.controllers.rayservice.plan.incremental import Progress, capacity_goal, needs_capacity_update, traffic_weights
from kray.controllers.rayservice.plan.model import ClusterView, PutServeConfig
from kray.controllers.rayservice.plan.serve import serve_config_json

ROLLBACK_IN_PROGRESS = RayServiceConditionType.ROLLBACK_IN_PROGRESS.value
ROLLBACK_MESSAGE = (  # kray's words: KubeRay's message was not available to read
    "The desired RayCluster spec no longer matches the pending RayCluster: rolling back to the active RayCluster"
)
_ACTIVE, _PENDING = "activeServiceStatus", "pendingServiceStatus"
TRAFFIC_SETTLE_SECONDS = 5.0
"""How long after the route's weights last moved the active cluster's capacity may fall (a deliberate
difference, docs/compatibility.md). A gateway reports a route's new generation when it has read it, and routes
by it once its data plane has taken it in: Traefik applies configuration up to its provider throttle later (2 s
by default). Locally, kray's serve address switches when it sees the status, not before the write. Lowering
capacity in that window sends requests to replicas Serve is removing."""


def options(service: RayService) -> ClusterUpgradeOptions | None:
    strategy = service.spec.upgrade_strategy
    return strategy.cluster_upgrade_options if strategy is not None else None


def progress(status: dict[str, Any]) -> Progress:
    active, pending = status.get(_ACTIVE) or {}, status.get(_PENDING) or {}
    return Progress(
        active_capacity=active.get("targetCapacity"),
        pending_capacity=pending.get("targetCapacity"),
        active_traffic=active.get("trafficRoutedPercent"),
        pending_traffic=pending.get("trafficRoutedPercent"),
    )


def rolling_back(service: RayService, *, active: ClusterView | None, pending: ClusterView | None) -> bool:
    """The spec moved away from the pending cluster's mid-upgrade (neither equal nor groups appended)."""
    if active is None or pending is None:
        return False
    return not (spec_hash_equal(service, pending, partial=False) or spec_hash_equal(service, pending, partial=True))


def mark_rollback(status: dict[str, Any], *, on: bool, now: datetime) -> None:
    """Set ``RollbackInProgress`` True, or remove it (KubeRay removes the condition, it does not set False)."""
    if on:
        reason = RayServiceConditionReason.DESIRED_CLUSTER_SPEC_CHANGED.value
        st.set_condition(status, ROLLBACK_IN_PROGRESS, ConditionStatus.TRUE, reason, ROLLBACK_MESSAGE, now=now)
    else:
        status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != ROLLBACK_IN_PROGRESS]


def capacity_put(
    service: RayService,
    status: dict[str, Any],
    cluster: ClusterView,
    *,
    rollback: bool,
    gateway_ready: bool,
    route_ready: bool,
    now: datetime,
) -> PutServeConfig | None:
    """``checkIfNeedTargetCapacityUpdate`` then ``reconcileServeTargetCapacity`` for ``cluster``: the PUT of
    its (cached) Serve config with a new ``target_capacity``, the status updated to it; None: no change."""
    active_name = (status.get(_ACTIVE) or {}).get("rayClusterName")
    pending_name = (status.get(_PENDING) or {}).get("rayClusterName")
    if not active_name or not pending_name:
        return None
    is_active = cluster.name == active_name
    if rollback:
        current = (status.get(_ACTIVE) or {}).get("targetCapacity")
        goal = 100 if is_active and current != 100 else None
    else:
        need, _ = needs_capacity_update(progress(status), gateway_ready=gateway_ready, route_ready=route_ready)
        if not need:
            return None
        status.setdefault(_ACTIVE, {}).setdefault("targetCapacity", 100)
        if status[_ACTIVE]["targetCapacity"] is None:
            status[_ACTIVE]["targetCapacity"] = 100
        if status.setdefault(_PENDING, {}).get("targetCapacity") is None:
            status[_PENDING]["targetCapacity"] = 0
        opts = options(service)
        surge = 100 if opts is None or opts.max_surge_percent is None else int(opts.max_surge_percent)
        goal = capacity_goal(progress(status), for_active=is_active, max_surge=surge)
        if goal is not None and is_active and not traffic_settled(status, now=now):
            return None  # the next reconcile (requeued every few seconds mid-upgrade) takes the step
    if goal is None:
        return None
    config = serve_config_json(cluster.cached_serve_config or service.spec.serve_config_v2 or "", target_capacity=goal)
    status[_ACTIVE if is_active else _PENDING]["targetCapacity"] = goal
    return PutServeConfig(cluster.name, config, cache_as=None)


def last_migrated(status: dict[str, Any]) -> datetime | None:
    """When the route's weights last moved (the pending cluster's ``lastTrafficMigratedTime``)."""
    return st.parse_time((status.get(_PENDING) or {}).get("lastTrafficMigratedTime"))


def traffic_settled(status: dict[str, Any], *, now: datetime) -> bool:
    """:data:`TRAFFIC_SETTLE_SECONDS` have passed since the weights last moved (or they never did)."""
    last = last_migrated(status)
    return last is None or (now - last).total_seconds() >= TRAFFIC_SETTLE_SECONDS


def route_weights(
    service: RayService,
    status: dict[str, Any],
    *,
    pending_ready: bool,
    active_ready: bool,
    rollback: bool,
    now: datetime,
) -> tuple[int, int]:
    """``calculateTrafficRoutedPercent``: the (active, pending) weights of the route now. Rolling back,
    traffic steps back to the active cluster instead, and only while it is ready."""
    opts = options(service)
    step = int(opts.step_size_percent) if opts is not None else 100
    interval = float(opts.interval_seconds) if opts is not None else 0.0
    now_progress = progress(status)
    last = last_migrated(status)
    if not rollback:
        return traffic_weights(
            now_progress, pending_ready=pending_ready, step=step, interval=interval, last_migrated=last, now=now
        )
    active = 100 if now_progress.active_traffic is None else now_progress.active_traffic
    pending = now_progress.pending_traffic or 0
    if active_ready and pending > 0 and (last is None or (now - last).total_seconds() >= interval):
        pending = max(0, pending - step)
        active = 100 - pending
    return active, pending


def record_weights(status: dict[str, Any], weights: tuple[int, int], *, with_pending: bool, now: datetime) -> None:
    """``calculateStatus``: ``trafficRoutedPercent`` from the route; ``lastTrafficMigratedTime`` when it moved."""
    for key, weight in ((_ACTIVE, weights[0]), (_PENDING, weights[1])):
        if key == _PENDING and not with_pending:
            continue
        entry = status.setdefault(key, {})
        if entry.get("trafficRoutedPercent") != weight:
            entry["lastTrafficMigratedTime"] = st.rfc3339(now)
        entry["trafficRoutedPercent"] = weight


def upgrade_complete(status: dict[str, Any], *, pending_ready: bool) -> bool:
    """``IsIncrementalUpgradeComplete``: active capacity 0, pending capacity 100 with all the traffic."""
    now_progress = progress(status)
    return (
        pending_ready
        and now_progress.active_capacity == 0
        and now_progress.pending_capacity == 100
        and now_progress.pending_traffic == 100
    )


def rollback_complete(status: dict[str, Any]) -> bool:
    """All traffic is back on the active cluster, at full capacity."""
    now_progress = progress(status)
    return (
        (now_progress.active_traffic in (None, 100))
        and not now_progress.pending_traffic
        and now_progress.active_capacity in (None, 100)
    )
