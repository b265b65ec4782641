"""Compute a RayCluster's status from what exists. Pure (the clock is an argument).

KubeRay's ``calculateStatus`` (reference §2.7): replica counters, desired resources, the sticky
``state``, endpoints, head info, and the conditions HeadPodReady, RayClusterProvisioned (frozen
after it first turns True), ReplicaFailure and the atomic Suspending → Suspended transition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from kray._ray.quantity import Quantity, QuantityError, format_quantity, parse_quantity
from kray.api.v1.conditions import (
    ConditionStatus,
    RayClusterConditionReason,
    RayClusterConditionType,
)
from kray.api.v1.raycluster import RayCluster
from kray.controllers.raycluster.plan import desired_workers
from kray.controllers.raycluster.podview import PodView

INT32_MAX = 2**31 - 1
PROVISIONED_MESSAGE = "All Ray Pods are ready for the first time"
PROVISIONING_MESSAGE = "RayCluster Pods are being provisioned for first time"
Status = dict[str, Any]


def _set_condition(
    conditions: list[dict[str, Any]], *, type_: str, status: str, reason: str, message: str, now: str
) -> None:
    """``meta.SetStatusCondition``: update in place (the transition time moves only with the status), else append."""
    for index, old in enumerate(conditions):
        if old.get("type") == type_:
            since = old.get("lastTransitionTime") if old.get("status") == status else now
            conditions[index] = {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": since or now,
            }
            return
    conditions.append(
        {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
    )


def _saturating_sum(values: Sequence[int]) -> int:
    return min(sum(values), INT32_MAX)


def compute_status(
    *,
    cluster: RayCluster,
    pods: Sequence[PodView],
    head_service: Mapping[str, Any] | None,
    reconcile_error: tuple[str, str] | None,
    now: str,
) -> Status:
    """The new ``status`` (as JSON) for this cluster.

    ``reconcile_error`` is (ReplicaFailure reason, message) when the pass failed; the reason is "" for
    failures that are not pod operations (KubeRay sets no ReplicaFailure for those).
    """
    spec = cluster.spec
    old: dict[str, Any] = cluster.status.to_dict() if cluster.status else {}
    previous_conditions: list[dict[str, Any]] = old.get("conditions") or []
    live = [p for p in pods if not p.deleting]
    workers = [p for p in live if not p.is_head]
    groups = [g for g in spec.worker_group_specs or () if not g.suspend]
    status: Status = dict(old)
    status["readyWorkerReplicas"] = sum(1 for p in workers if p.running_and_ready)
    status["availableWorkerReplicas"] = sum(1 for p in workers if p.phase == "Running")
    status["desiredWorkerReplicas"] = _saturating_sum([desired_workers(g) for g in groups])
    status["minWorkerReplicas"] = _saturating_sum([(g.min_replicas or 0) * g.num_of_hosts for g in groups])
    status["maxWorkerReplicas"] = _saturating_sum(
        [(g.max_replicas if g.max_replicas is not None else INT32_MAX) * g.num_of_hosts for g in groups]
    )
    status.update(desired_resources(cluster))
    head = next((p for p in live if p.is_head), None)
    # KubeRay counts every listed pod here, terminating ones included (``runtimePods``).
    all_ready = len(pods) == status["desiredWorkerReplicas"] + 1 and all_pods_running(pods)
    state = old.get("state") or ""
    if spec.suspend and not pods:
        state = "suspended"
    elif reconcile_error is None and all_ready:
        state = "ready"
    if state and state != old.get("state"):
        status["state"] = state
        status["stateTransitionTimes"] = {**(old.get("stateTransitionTimes") or {}), state: now}
    if state == "ready":
        status.pop("reason", None)
    status["endpoints"] = endpoints(head_service)
    status["head"] = head_info(head=head, service=head_service)
    status["conditions"] = _conditions(
        cluster=cluster, head=head, pods=pods, reconcile_error=reconcile_error, previous=previous_conditions, now=now
    )
    status["observedGeneration"] = cluster.metadata.generation or 0
    return kuberay_json(status)


_ALWAYS_WRITTEN: Status = {
    "desiredCPU": "0",
    "desiredMemory": "0",
    "desiredGPU": "0",
    "desiredTPU": "0",
    "head": {},
}
"""What KubeRay's ``RayClusterStatus`` serialises even when empty: the four Quantity fields (``"0"``)
and ``head`` (a struct, which Go's ``omitempty`` never omits)."""


def kuberay_json(status: Mapping[str, Any]) -> Status:
    """``status`` as KubeRay writes it: every field of ``RayClusterStatus`` but the always-written ones
    is ``omitempty``, so a 0, "", null, {} or [] is left out (the five worker counters and
    ``observedGeneration`` included). Also the form of a RayJob's empty ``status.rayClusterStatus``."""
    out: Status = {}
    for key, value in status.items():
        if key in _ALWAYS_WRITTEN:
            out[key] = value if value not in (None, "") else _ALWAYS_WRITTEN[key]
        elif value not in (None, "", 0, {}, []):
            out[key] = value
    for key, default in _ALWAYS_WRITTEN.items():
        out.setdefault(key, default)
    return out


def all_pods_running(pods: Sequence[PodView]) -> bool:
    """``CheckAllPodsRunning``: some pods, all Running, none with a PodReady condition other than True."""
    return bool(pods) and all(
        p.phase == "Running" and (p.ready_condition is None or p.ready_condition[0] == "True") for p in pods
    )


def head_pod_ready(head: PodView | None) -> tuple[str, str, str]:
    """HeadPodReady as (status, reason, message): the head's PodReady condition (``FindHeadPodReadyCondition``)."""
    reasons = RayClusterConditionReason
    if head is None:
        return ConditionStatus.FALSE.value, reasons.HEAD_POD_NOT_FOUND, "Head Pod not found"
    if head.ready_condition is None:
        return ConditionStatus.FALSE.value, reasons.UNKNOWN, ""
    status, reason, message = head.ready_condition
    if status == ConditionStatus.TRUE.value and not reason:
        reason = reasons.HEAD_POD_RUNNING_AND_READY
    return status, reason or reasons.UNKNOWN, message


def _conditions(
    *,
    cluster: RayCluster,
    head: PodView | None,
    pods: Sequence[PodView],
    reconcile_error: tuple[str, str] | None,
    previous: list[dict[str, Any]],
    now: str,
) -> list[dict[str, Any]]:
    """KubeRay's condition updates, in its order (new conditions are appended, existing ones keep their place)."""
    types = RayClusterConditionType
    reasons = RayClusterConditionReason
    true, false = ConditionStatus.TRUE.value, ConditionStatus.FALSE.value
    conditions = [dict(c) for c in previous]

    def put(type_: str, status: str, reason: str, message: str = "") -> None:
        _set_condition(conditions, type_=type_, status=status, reason=reason, message=message, now=now)

    if reconcile_error is not None:
        if reconcile_error[0]:  # only pod operations have a ReplicaFailure reason; others leave it as it was
            put(types.REPLICA_FAILURE, true, *reconcile_error)
    else:
        conditions = [c for c in conditions if c.get("type") != types.REPLICA_FAILURE]
    put(types.HEAD_POD_READY, *head_pod_ready(head))

    # Suspend is atomic: Suspending until every pod is gone, then Suspended until spec.suspend is false.
    suspend_status = next(
        (
            c.get("type")
            for c in conditions
            if c.get("type") in (types.SUSPENDING, types.SUSPENDED) and c.get("status") == true
        ),
        None,
    )
    if not _is_true(conditions, types.PROVISIONED) and suspend_status != types.SUSPENDED:
        # Frozen once True: it records the first time every pod was running and ready.
        if all_pods_running(pods):
            put(types.PROVISIONED, true, reasons.ALL_POD_RUNNING_AND_READY_FIRST_TIME, PROVISIONED_MESSAGE)
        else:
            put(types.PROVISIONED, false, reasons.PODS_PROVISIONING, PROVISIONING_MESSAGE)
    suspend = cluster.spec.suspend
    if suspend_status == types.SUSPENDING:
        if not pods:
            put(types.PROVISIONED, false, reasons.PODS_PROVISIONING, "RayCluster has been suspended")
            put(types.SUSPENDING, false, reasons.SUSPENDING)
            put(types.SUSPENDED, true, reasons.SUSPENDED)
    elif suspend_status == types.SUSPENDED:
        if suspend is False:  # KubeRay resumes only on an explicit false, not on a removed field
            put(types.SUSPENDED, false, reasons.SUSPENDED)
    else:
        put(types.SUSPENDED, false, reasons.SUSPENDED)
        put(types.SUSPENDING, true if suspend else false, reasons.SUSPENDING)
    return conditions


def _is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def endpoints(service: Mapping[str, Any] | None) -> dict[str, str]:
    """Each named port of the head Service: its nodePort if set, else its targetPort (KubeRay)."""
    out: dict[str, str] = {}
    for port in ((service or {}).get("spec") or {}).get("ports") or ():
        name = port.get("name")
        if not name:
            continue
        value = port.get("nodePort") or port.get("targetPort") or port.get("port")
        if value is not None:
            out[str(name)] = str(value)
    return out


def head_info(*, head: PodView | None, service: Mapping[str, Any] | None) -> dict[str, str]:
    info: dict[str, str] = {}
    if head is not None:
        if head.ip:
            info["podIP"] = head.ip
        info["podName"] = head.name
    if service is not None:
        spec = service.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        service_ip = (head.ip if head else "") if cluster_ip in (None, "", "None") else cluster_ip
        if service_ip:
            info["serviceIP"] = service_ip
        info["serviceName"] = str((service.get("metadata") or {}).get("name", ""))
    return info


def desired_resources(cluster: RayCluster) -> dict[str, str]:
    """desiredCPU/Memory/GPU/TPU: head + sum of group pod resources x replicas (raw) x numOfHosts."""
    totals: dict[str, Quantity] = {}
    _add_template(totals, cluster.spec.head_group_spec.template, 1)
    for group in cluster.spec.worker_group_specs or ():
        if group.suspend:
            continue
        count = (group.replicas if group.replicas is not None else (group.min_replicas or 0)) * group.num_of_hosts
        _add_template(totals, group.template, count)
    zero = Quantity(amount=Fraction(0))
    return {
        f"desired{name}": format_quantity(totals.get(key, zero))
        for name, key in (("CPU", "cpu"), ("Memory", "memory"), ("GPU", "gpu"), ("TPU", "tpu"))
    }


def _add_template(totals: dict[str, Quantity], template: Mapping[str, Any], count: int) -> None:
    """Add one pod's resources (every container; requests win over limits) ``count`` times."""
    for container in (template.get("spec") or {}).get("containers") or ():
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for key, value in merged.items():
            bucket = _bucket(key)
            if bucket is None:
                continue
            try:
                amount = parse_quantity(value)
            except QuantityError:
                continue
            previous = totals.get(bucket)
            fmt = previous.format if previous is not None and not previous.is_zero() else amount.format
            base = previous.amount if previous is not None else Fraction(0)
            totals[bucket] = Quantity(amount=base + amount.amount * count, format=fmt)


def _bucket(resource: str) -> str | None:
    if resource in {"cpu", "memory"}:
        return resource
    if resource == "google.com/tpu":
        return "tpu"
    if resource.endswith("gpu"):
        return "gpu"
    return None


def status_differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """KubeRay writes status only on meaningful change (ignores lastUpdateTime/observedGeneration/resources)."""
    ignored = {"lastUpdateTime", "observedGeneration", "desiredCPU", "desiredMemory", "desiredGPU", "desiredTPU"}

    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if k not in ignored}

    return strip(old) != strip(new) or old.get("observedGeneration") != new.get("observedGeneration")
