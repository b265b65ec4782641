"""One RayService reconcile as a pure function: KubeRay v1.7's ``RayServiceReconciler.Reconcile``.

Order (reference §4.1): finalizer (deletion deletes every cluster, then releases it); validation
(Ready False/ValidationFailed, nothing else); suspend; clean-up schedule of clusters that are neither
active nor pending; the terminal initializing timeout; ``reconcileRayCluster`` (create the pending
cluster named in the status, or update the active/pending one in place); the head pods' serve label;
``reconcileServe`` (pending cluster if any, else active); the Services, switched to the pending cluster
once all its apps run; ``calculateStatus`` (promotion, a new pending name, conditions).

Where KubeRay returns an error mid-reconcile (no head pod yet, the dashboard unreachable, a serve config
that does not parse) the plan halts the same way: the actions so far, no status write, a requeue.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from kray.api.rules.rayservice import check_rayservice
from kray.api.v1 import API_VERSION
from kray.api.v1.conditions import ConditionStatus, RayServiceConditionReason
from kray.controllers.common._k8s import controller_reference
from kray.controllers.rayservice import status as st
from kray.controllers.rayservice.plan import gateway, stepping
from kray.controllers.rayservice.plan.clusters import (
    cluster_body,
    deletion_delay,
    incremental_enabled,
    schedule_cleanup,
    should_prepare_new,
    should_update,
)
from kray.controllers.rayservice.plan.model import (
    FINALIZER,
    REQUEUE,
    Action,
    AddFinalizer,
    ClusterView,
    CreateCluster,
    DeleteCluster,
    DeleteServices,
    EnsureHeadService,
    EnsureServeService,
    Observed,
    Plan,
    PutServeConfig,
    RemoveFinalizer,
    SetHeadServeLabel,
    UpdateClusterInPlace,
)
from kray.controllers.rayservice.plan.serve import (
    ServeConfigError,
    app_statuses,
    is_ready,
    needs_submit,
    serve_config_json,
)

_HEAD_POD_READY = "HeadPodReady"


class _Halt(Exception):
    """KubeRay returned an error here: stop, keep the actions taken, write no status."""

    def __init__(self, reason: str, event: tuple[str, str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


def head_ready(cluster: ClusterView) -> bool:
    """The cluster's ``HeadPodReady`` condition is True (KubeRay's gate RayClusterStatusConditions, on)."""
    return st.is_true(cluster.status, _HEAD_POD_READY)


def serve_targets(observed: Observed) -> tuple[str, ...]:
    """The clusters whose Serve applications the reconcile should GET before :func:`plan`: the active and
    pending clusters whose head is ready (the planner uses only those KubeRay would ask)."""
    status = _status(observed)
    names = (_name(status, "pendingServiceStatus"), _name(status, "activeServiceStatus"))
    return tuple(n for n in names if n and n in observed.clusters and head_ready(observed.clusters[n]))


def _status(observed: Observed) -> dict[str, Any]:
    service = observed.service
    return service.status.to_dict() if service.status else {}


def _name(status: dict[str, Any], key: str) -> str:
    return str((status.get(key) or {}).get("rayClusterName") or "")


def plan(observed: Observed) -> Plan:
    """The actions and the status for this RayService now."""
    service = observed.service
    if service.metadata.deletion_timestamp:
        return _deletion(observed)
    old = _status(observed)
    status = copy.deepcopy(old)
    actions: list[Action] = []
    if FINALIZER not in (service.metadata.finalizers or ()):
        actions.append(AddFinalizer())
    errors = check_rayservice(service, gates=observed.settings.gates)
    if errors:
        return _invalid(observed, status, actions, errors[0])
    if st.is_true(status, st.SUSPENDING) or (service.spec.suspend and not st.is_true(status, st.SUSPENDED)):
        return _suspend(observed, old, status, actions)
    if st.is_true(status, st.SUSPENDED):
        if service.spec.suspend:
            return Plan(status=None, actions=tuple(actions), requeue_after=None)
        st.resume(status, now=observed.now)
    keep = frozenset(n for n in (_name(status, "activeServiceStatus"), _name(status, "pendingServiceStatus")) if n)
    schedule, deletions = schedule_cleanup(
        clusters=observed.clusters,
        keep=keep,
        schedule=observed.deletion_schedule,
        now=observed.now,
        delay=deletion_delay(service),
    )
    actions.extend(DeleteCluster(name) for name in deletions)
    base = Plan(status=None, deletion_schedule=schedule, keep_serve_configs=keep)
    if st.timed_out(status):
        to_clean = any(name not in keep for name in observed.clusters)
        return dataclasses.replace(base, actions=tuple(actions), requeue_after=REQUEUE if to_clean else None)
    try:
        return _reconcile(observed, old, status, actions, base)
    except _Halt as halt:
        events = (halt.event,) if halt.event else ()
        return dataclasses.replace(base, actions=tuple(actions), halted=halt.reason, events=events)


def _deletion(observed: Observed) -> Plan:
    """The RayService is being deleted: every cluster goes now, then the finalizer."""
    if FINALIZER not in (observed.service.metadata.finalizers or ()):
        return Plan(status=None, requeue_after=None)
    if observed.clusters:
        deletes = tuple(DeleteCluster(c.name) for c in observed.clusters.values() if not c.deleting)
        return Plan(status=None, actions=deletes)
    return Plan(status=None, actions=(RemoveFinalizer(),), requeue_after=None)


def _invalid(observed: Observed, status: dict[str, Any], actions: list[Action], error: Any) -> Plan:
    meta = observed.service.metadata
    message = str(error)
    reason = "InvalidRayServiceMetadata" if error.rule == "ValidateRayServiceMetadata" else "InvalidRayServiceSpec"
    failed = RayServiceConditionReason.VALIDATION_FAILED.value
    st.set_condition(status, st.READY, ConditionStatus.FALSE, failed, message, now=observed.now)
    status["lastUpdateTime"] = st.rfc3339(observed.now)
    event = ("Warning", reason, f"{meta.namespace}/{meta.name}: {message}")
    return Plan(
        status=st.kuberay_json(status),
        actions=tuple(actions),
        deletion_schedule=observed.deletion_schedule,
        keep_serve_configs=frozenset(observed.clusters),
        requeue_after=None,
        events=(event,),
    )


def _suspend(observed: Observed, old: dict[str, Any], status: dict[str, Any], actions: list[Action]) -> Plan:
    """Atomic suspend: Suspending is persisted first; then everything owned is deleted; then Suspended."""
    status["observedGeneration"] = observed.service.metadata.generation or 0
    if not st.is_true(status, st.SUSPENDING):
        st.begin_suspend(status, now=observed.now)
    elif observed.clusters or observed.head_service_cluster or observed.serve_service_cluster:
        actions.extend(DeleteCluster(c.name) for c in observed.clusters.values() if not c.deleting)
        gateway_objects = observed.settings.gateway_api and incremental_enabled(observed.service, observed.settings)
        if observed.head_service_cluster or observed.serve_service_cluster or gateway_objects:
            actions.append(DeleteServices())
    else:
        st.complete_suspend(status, now=observed.now)
    return Plan(status=_written(old, status, observed), actions=tuple(actions))


def _written(old: dict[str, Any], status: dict[str, Any], observed: Observed) -> dict[str, Any] | None:
    new = st.kuberay_json(status)
    if not st.status_differs(st.kuberay_json(old), new) and old.get("observedGeneration") == new.get(
        "observedGeneration"
    ):
        return None
    new["lastUpdateTime"] = st.rfc3339(observed.now)
    return new


def _reconcile(
    observed: Observed, old: dict[str, Any], status: dict[str, Any], actions: list[Action], base: Plan
) -> Plan:
    service, settings = observed.service, observed.settings
    meta = service.metadata
    active_name = _name(status, "activeServiceStatus")
    pending_name = _name(status, "pendingServiceStatus")
    active = observed.clusters.get(active_name) if active_name else None
    pending = observed.clusters.get(pending_name) if pending_name else None
    upgrading = st.is_true(status, st.UPGRADE_IN_PROGRESS)
    incremental = incremental_enabled(service, settings)

    # reconcileRayCluster: at most one of create / update active / update pending.
    if pending_name and pending is None:
        fresh = incremental and bool(active_name)
        body = cluster_body(service, pending_name, settings=settings, without_replicas=fresh)
        actions.append(CreateCluster(pending_name, body))
        pending = ClusterView(name=pending_name, annotations=body["metadata"]["annotations"])
    elif should_update(service, active, active=True, upgrading=upgrading, settings=settings):
        assert active is not None
        active = _update(observed, active, actions)
    elif should_update(service, pending, active=False, upgrading=upgrading, settings=settings):
        assert pending is not None
        pending = _update(observed, pending, actions)

    # NewClusterWithIncrementalUpgrade: a spec that left the pending cluster's mid-upgrade rolls back.
    rollback = incremental and upgrading and stepping.rolling_back(service, active=active, pending=pending)
    if incremental and upgrading and rollback != st.is_true(status, stepping.ROLLBACK_IN_PROGRESS):
        stepping.mark_rollback(status, on=rollback, now=observed.now)

    # updateHeadPodServeLabel, active then pending.
    for cluster in (active, pending):
        if cluster is None:
            continue
        if cluster.head_pod is None:
            raise _Halt(f"found 0 head. cluster name {cluster.name}, namespace {meta.namespace}")
        healthy = cluster.head_pod.proxy_healthy and not service.spec.exclude_head_pod_from_serve_svc
        label = "true" if healthy else "false"
        if cluster.head_pod.serve_label != label:
            actions.append(SetHeadServeLabel(cluster.name, label))

    # reconcileServe: the pending cluster if any; the active one when there is nothing to upgrade to.
    step = _Step(upgrading=incremental and upgrading, rollback=rollback)
    pending_ready, pending_apps = _serve(observed, status, pending, actions, step) if pending else (False, None)
    active_ready, active_apps = False, None
    prepare_next = should_prepare_new(service, active=active, pending=None, pending_serving=False, settings=settings)
    if active is not None and ((pending is None and not prepare_next) or (pending is not None and incremental)):
        active_ready, active_apps = _serve(observed, status, active, actions, step)

    # reconcileHTTPRoute: the weights the route (the Gateway's, or locally kray's serve address) gets now.
    weights: tuple[int, int] | None = None
    if incremental and active is not None:
        weights = stepping.route_weights(
            service, status, pending_ready=pending_ready, active_ready=active_ready, rollback=rollback, now=observed.now
        )

    # Kubernetes: the Gateway API objects that carry those weights (locally kray's serve address does).
    route_has_pending = pending is not None
    if incremental and settings.gateway_api:
        meta_uid = {"name": meta.name or "", "uid": meta.uid or ""}
        owner = controller_reference(api_version=API_VERSION, kind="RayService", **meta_uid)
        gateway_steps, route_has_pending = gateway.gateway_actions(
            service, owner, active=active, pending=pending, existing=observed.clusters, weights=weights
        )
        actions.extend(gateway_steps)

    # reconcileServicesToReadyCluster.
    points_to: str | None = None
    if pending_ready or active_ready:
        target = pending if pending_ready and not (incremental and upgrading) else active
        if target is not None:
            points_to = target.name
            if observed.head_service_cluster != target.name:
                actions.append(EnsureHeadService(target.name))
            if observed.serve_service_cluster != target.name:
                actions.append(EnsureServeService(target.name))

    # calculateStatus.
    status["observedGeneration"] = meta.generation or 0
    active_status = status.setdefault("activeServiceStatus", {})
    pending_status = status.setdefault("pendingServiceStatus", {})
    active_status["rayClusterStatus"] = dict(active.status) if active else {}
    pending_status["rayClusterStatus"] = dict(pending.status) if pending else {}
    _put_apps(active_status, active_apps)
    _put_apps(pending_status, pending_apps)
    pending_serving = False
    rolled_back = False
    if points_to is not None:
        if weights is not None:
            stepping.record_weights(status, weights, with_pending=route_has_pending, now=observed.now)
        # Blue/green: the Services moved means the pending cluster is now the active one. Incremental: the
        # first cluster is promoted so; an upgrade once capacity and traffic are all the pending cluster's.
        blue_green = not incremental and active_name != points_to
        first = incremental and not active_name and bool(pending_name) and not upgrading
        finished = (
            incremental
            and upgrading
            and not rollback
            and stepping.upgrade_complete(status, pending_ready=pending_ready)
        )
        rolled_back = rollback and stepping.rollback_complete(status)
        if blue_green or first or finished:
            status["activeServiceStatus"] = status["pendingServiceStatus"]
            status["pendingServiceStatus"] = {}
        elif rolled_back:
            status["pendingServiceStatus"] = {}
            stepping.mark_rollback(status, on=False, now=observed.now)
        pending_serving = points_to == pending_name
    still_pending = None if rolled_back else pending
    if not (rollback and not rolled_back) and should_prepare_new(
        service, active=active, pending=still_pending, pending_serving=pending_serving, settings=settings
    ):
        new_pending: dict[str, Any] = {"rayClusterName": f"{meta.name}-{observed.random_suffix}"}
        if incremental:
            current_active = status.get("activeServiceStatus") or {}
            if not current_active.get("rayClusterName"):
                if current_active.get("targetCapacity") is None:
                    new_pending["targetCapacity"] = 100
            elif upgrading:
                new_pending["targetCapacity"] = 0
        status["pendingServiceStatus"] = new_pending
    status["numServeEndpoints"] = observed.num_serve_endpoints
    events = st.calculate_conditions(status, annotations=meta.annotations or {}, now=observed.now)
    return dataclasses.replace(base, status=_written(old, status, observed), actions=tuple(actions), events=events)


def _update(observed: Observed, cluster: ClusterView, actions: list[Action]) -> ClusterView:
    body = cluster_body(
        observed.service, cluster.name, settings=observed.settings, keep_suspend=cluster.suspend, updating=True
    )
    actions.append(UpdateClusterInPlace(cluster.name, body))
    return dataclasses.replace(cluster, annotations=body["metadata"]["annotations"])


def _put_apps(cluster_status: dict[str, Any], apps: dict[str, Any] | None) -> None:
    if apps:
        cluster_status["applicationStatuses"] = apps
    else:
        cluster_status.pop("applicationStatuses", None)


@dataclasses.dataclass(frozen=True, slots=True)
class _Step:
    upgrading: bool
    """An incremental upgrade is in progress (``UpgradeInProgress`` True as this reconcile began)."""
    rollback: bool


def _serve(
    observed: Observed, status: dict[str, Any], cluster: ClusterView, actions: list[Action], step: _Step
) -> tuple[bool, dict[str, Any] | None]:
    """``reconcileServe``: (ready to take traffic?, application statuses); may PUT the config, and during an
    incremental upgrade its ``target_capacity``."""
    if not head_ready(cluster):
        return False, None
    if cluster.serve_error is not None:
        raise _Halt(f"failed to get Serve application statuses from the dashboard: {cluster.serve_error}")
    if cluster.serve_details is None:
        return False, None
    service = observed.service
    incremental = incremental_enabled(service, observed.settings)
    is_active = cluster.name == _name(status, "activeServiceStatus")
    skip = is_active and incremental and st.is_true(status, st.UPGRADE_IN_PROGRESS)
    apps = app_statuses(cluster.serve_details)
    desired = service.spec.serve_config_v2 or ""
    need, _ = needs_submit(cached=cluster.cached_serve_config, desired=desired, apps=apps)
    if need and not skip:
        capacity = None
        if incremental:
            key = "activeServiceStatus" if is_active else "pendingServiceStatus"
            capacity = (status.get(key) or {}).get("targetCapacity")
        try:
            config = serve_config_json(desired, target_capacity=capacity)
        except ServeConfigError as error:
            event = ("Warning", "FailedToUpdateServeApplications", str(error))
            raise _Halt(str(error), event) from error
        actions.append(PutServeConfig(cluster.name, config, cache_as=desired or None))
        cluster = dataclasses.replace(cluster, cached_serve_config=desired or cluster.cached_serve_config)
    if step.upgrading:
        put = stepping.capacity_put(
            service,
            status,
            cluster,
            rollback=step.rollback,
            gateway_ready=observed.gateway_ready,
            route_ready=observed.route_ready,
            now=observed.now,
        )
        if put is not None:
            actions.append(put)
    return is_ready(apps), apps
