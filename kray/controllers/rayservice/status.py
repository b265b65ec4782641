"""A RayService's conditions and status, as KubeRay v1.7 computes and serialises them. Pure.

``calculateConditions`` (Ready from the serve endpoints, UpgradeInProgress from which clusters exist),
``markFailedOnInitializingTimeout`` (the ``ray.io/initializing-timeout`` annotation), the suspend
conditions, ``serviceStatus`` (``Running`` iff Ready), ``InconsistentRayServiceStatuses`` (write only on a
meaningful change) and the JSON form (``activeServiceStatus``/``pendingServiceStatus`` are structs, so
always written). The status is a dict in KubeRay's camelCase JSON throughout; the clock is an argument.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableSequence
from datetime import UTC, datetime
from typing import Any

from kray.api.rules.rayservice import INITIALIZING_TIMEOUT_ANNOTATION, parse_go_duration_seconds
from kray.api.v1.conditions import ConditionStatus, RayServiceConditionReason, RayServiceConditionType
from kray.controllers.raycluster.status import kuberay_json as cluster_status_json

Status = dict[str, Any]
READY = RayServiceConditionType.READY.value
UPGRADE_IN_PROGRESS = RayServiceConditionType.UPGRADE_IN_PROGRESS.value
SUSPENDING = RayServiceConditionType.SUSPENDING.value
SUSPENDED = RayServiceConditionType.SUSPENDED.value
RUNNING = "Running"
"""``serviceStatus`` while Ready (``NotRunning`` is ``""``, left out)."""

INITIALIZING_MESSAGE = "RayService is initializing"
NON_ZERO_MESSAGE = "Number of serve endpoints is greater than 0"
ZERO_MESSAGE = "Number of serve endpoints dropped to 0"
BOTH_MESSAGE = "Both active and pending Ray clusters exist"
NO_PENDING_MESSAGE = "Active Ray cluster exists and no pending Ray cluster"
NO_ACTIVE_MESSAGE = (
    "No active Ray cluster exists, and the RayService is not initializing. "
    "Please open a GitHub issue in the KubeRay repository."
)
SUSPEND_REQUESTED = "SuspendRequested"
SUSPEND_IN_PROGRESS = "SuspendInProgress"
SUSPEND_COMPLETE = "SuspendComplete"
RESUMED = "RayServiceResumed"
SUSPEND_COMPLETE_MESSAGE = "All owned resources have been deleted."
SUSPENDED_READY_MESSAGE = "RayService is suspended."
SUSPEND_REQUESTED_MESSAGE = "Suspend requested; deleting owned resources"  # kray's words
RESUMED_MESSAGE = "RayService resumed"  # kray's words
INITIALIZING_TIMEOUT_EVENT = "RayServiceInitializingTimeout"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def find(conditions: Any, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition  # type: ignore[no-any-return]
    return None


def is_true(status: Mapping[str, Any], type_: str) -> bool:
    condition = find(status.get("conditions"), type_)
    return condition is not None and condition.get("status") == ConditionStatus.TRUE.value


def set_condition(
    status: Status, type_: str, value: ConditionStatus, reason: str, message: str, *, now: datetime
) -> None:
    """KubeRay's ``setCondition`` (``meta.SetStatusCondition``): the transition time moves only with the status;
    ``observedGeneration`` is the status's."""
    conditions: MutableSequence[dict[str, Any]] = status.setdefault("conditions", [])
    new: dict[str, Any] = {"type": type_, "status": value.value, "reason": reason, "message": message}
    generation = status.get("observedGeneration")
    if generation:
        new["observedGeneration"] = generation
    for index, old in enumerate(conditions):
        if old.get("type") == type_:
            same = old.get("status") == value.value and old.get("lastTransitionTime")
            new["lastTransitionTime"] = old["lastTransitionTime"] if same else rfc3339(now)
            conditions[index] = new
            return
    new["lastTransitionTime"] = rfc3339(now)
    conditions.append(new)


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String`` (``1h2m3.5s``, ``30m0s``, ``1.5ms``)."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    left = abs(nanoseconds)
    if left < 10**9:
        if left < 10**3:
            return f"{sign}{left}ns"
        return sign + (_fraction(left, 10**3) + "µs" if left < 10**6 else _fraction(left, 10**6) + "ms")
    hours, left = divmod(left, 3600 * 10**9)
    minutes, left = divmod(left, 60 * 10**9)
    seconds = _fraction(left, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(rest).zfill(digits).rstrip('0')}"


def initializing_timeout(annotations: Mapping[str, str]) -> int | None:
    """``getInitializingTimeout``: the annotation as nanoseconds (Go duration, else integer seconds); None if unset."""
    text = annotations.get(INITIALIZING_TIMEOUT_ANNOTATION)
    if not text:
        return None
    seconds = parse_go_duration_seconds(text)
    if seconds is None:
        try:
            seconds = float(int(text))
        except ValueError:
            return None
    return round(seconds * 10**9)


def timed_out(status: Mapping[str, Any]) -> bool:
    """``isInitializingTimeout``: Ready is False with reason InitializingTimeout (terminal)."""
    ready = find(status.get("conditions"), READY)
    return (
        ready is not None
        and ready.get("status") == ConditionStatus.FALSE.value
        and ready.get("reason") == RayServiceConditionReason.INITIALIZING_TIMEOUT.value
    )


def calculate_conditions(
    status: Status, *, annotations: Mapping[str, str], now: datetime
) -> tuple[tuple[str, str, str], ...]:
    """``calculateConditions`` on ``status`` (``numServeEndpoints`` and cluster names already set); returns events."""
    events: tuple[tuple[str, str, str], ...] = ()
    if not status.get("conditions"):
        initializing = RayServiceConditionReason.INITIALIZING.value
        set_condition(status, READY, ConditionStatus.FALSE, initializing, INITIALIZING_MESSAGE, now=now)
        set_condition(status, UPGRADE_IN_PROGRESS, ConditionStatus.FALSE, initializing, INITIALIZING_MESSAGE, now=now)
    if int(status.get("numServeEndpoints") or 0) > 0:
        reason = RayServiceConditionReason.NON_ZERO_SERVE_ENDPOINTS.value
        set_condition(status, READY, ConditionStatus.TRUE, reason, NON_ZERO_MESSAGE, now=now)
    elif is_true(status, READY):
        reason = RayServiceConditionReason.ZERO_SERVE_ENDPOINTS.value
        set_condition(status, READY, ConditionStatus.FALSE, reason, ZERO_MESSAGE, now=now)
    else:
        events = _mark_failed_on_timeout(status, annotations=annotations, now=now)
    active = (status.get("activeServiceStatus") or {}).get("rayClusterName")
    pending = (status.get("pendingServiceStatus") or {}).get("rayClusterName")
    reasons = RayServiceConditionReason
    if active and pending:
        set_condition(
            status, UPGRADE_IN_PROGRESS, ConditionStatus.TRUE, reasons.BOTH_ACTIVE_PENDING_CLUSTERS_EXIST.value,
            BOTH_MESSAGE, now=now,
        )  # fmt: skip
    elif active:
        set_condition(
            status, UPGRADE_IN_PROGRESS, ConditionStatus.FALSE, reasons.NO_PENDING_CLUSTER.value,
            NO_PENDING_MESSAGE, now=now,
        )  # fmt: skip
    else:
        current = find(status.get("conditions"), UPGRADE_IN_PROGRESS)
        keep = {reasons.INITIALIZING.value, reasons.INITIALIZING_TIMEOUT.value}
        if current is None or current.get("reason") not in keep:
            set_condition(
                status, UPGRADE_IN_PROGRESS, ConditionStatus.UNKNOWN, reasons.NO_ACTIVE_CLUSTER.value,
                NO_ACTIVE_MESSAGE, now=now,
            )  # fmt: skip
    status.pop("serviceStatus", None)
    if is_true(status, READY):
        status["serviceStatus"] = RUNNING
    return events


def _mark_failed_on_timeout(
    status: Status, *, annotations: Mapping[str, str], now: datetime
) -> tuple[tuple[str, str, str], ...]:
    """``markFailedOnInitializingTimeout``: Ready False/Initializing for longer than the annotation says ⇒
    Ready False/InitializingTimeout, both cluster names cleared (their clusters are then cleaned up)."""
    timeout = initializing_timeout(annotations)
    ready = find(status.get("conditions"), READY)
    if timeout is None or ready is None:
        return ()
    if ready.get("status") != ConditionStatus.FALSE.value or ready.get("reason") != "Initializing":
        return ()
    since = parse_time(ready.get("lastTransitionTime"))
    if since is None:
        return ()
    spent = round((now - since).total_seconds() * 10**9)
    if spent < timeout:
        return ()
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        status.setdefault(key, {}).pop("rayClusterName", None)
    message = (
        f"RayService failed to become ready within the configured timeout of {go_duration(timeout)}. "
        f"Time spent initializing: {go_duration(spent)}"
    )
    reason = RayServiceConditionReason.INITIALIZING_TIMEOUT.value
    set_condition(status, READY, ConditionStatus.FALSE, reason, message, now=now)
    event = (
        f"RayService initializing timeout exceeded after {go_duration(spent)} "
        f"(configured timeout: {go_duration(timeout)})"
    )
    return (("Warning", INITIALIZING_TIMEOUT_EVENT, event),)


def begin_suspend(status: Status, *, now: datetime) -> None:
    """``spec.suspend`` seen: Suspending True is the commit point (persisted before anything is deleted)."""
    set_condition(status, SUSPENDING, ConditionStatus.TRUE, SUSPEND_REQUESTED, SUSPEND_REQUESTED_MESSAGE, now=now)


def complete_suspend(status: Status, *, now: datetime) -> None:
    """Every owned resource is gone: Suspended, not Ready, no cluster."""
    set_condition(status, SUSPENDING, ConditionStatus.FALSE, SUSPEND_COMPLETE, SUSPEND_COMPLETE_MESSAGE, now=now)
    set_condition(status, SUSPENDED, ConditionStatus.TRUE, SUSPEND_COMPLETE, SUSPEND_COMPLETE_MESSAGE, now=now)
    set_condition(status, READY, ConditionStatus.FALSE, SUSPEND_COMPLETE, SUSPENDED_READY_MESSAGE, now=now)
    status["activeServiceStatus"] = {}
    status["pendingServiceStatus"] = {}
    status.pop("numServeEndpoints", None)
    status.pop("serviceStatus", None)


def resume(status: Status, *, now: datetime) -> None:
    """``suspend`` back to false once Suspended: Ready and UpgradeInProgress start over from Initializing,
    so the initializing timeout counts again (KubeRay PR 4894)."""
    set_condition(status, SUSPENDED, ConditionStatus.FALSE, RESUMED, RESUMED_MESSAGE, now=now)
    initializing = RayServiceConditionReason.INITIALIZING.value
    set_condition(status, READY, ConditionStatus.FALSE, initializing, INITIALIZING_MESSAGE, now=now)
    set_condition(status, UPGRADE_IN_PROGRESS, ConditionStatus.FALSE, initializing, INITIALIZING_MESSAGE, now=now)


_CLUSTER_POINTERS = ("targetCapacity", "trafficRoutedPercent", "lastTrafficMigratedTime")


def _one_cluster_json(value: Mapping[str, Any] | None) -> Status:
    value = value or {}
    out: Status = {}
    if value.get("applicationStatuses"):
        out["applicationStatuses"] = value["applicationStatuses"]
    for key in _CLUSTER_POINTERS:
        if value.get(key) is not None:
            out[key] = value[key]
    if value.get("rayClusterName"):
        out["rayClusterName"] = value["rayClusterName"]
    out["rayClusterStatus"] = cluster_status_json(value.get("rayClusterStatus") or {})
    return out


def kuberay_json(status: Mapping[str, Any]) -> Status:
    """``status`` as KubeRay serialises ``RayServiceStatuses`` (idempotent)."""
    out: Status = {}
    for key, value in status.items():
        if key in ("activeServiceStatus", "pendingServiceStatus"):
            continue
        if value not in (None, "", 0, [], {}):
            out[key] = value
    out["activeServiceStatus"] = _one_cluster_json(status.get("activeServiceStatus"))
    out["pendingServiceStatus"] = _one_cluster_json(status.get("pendingServiceStatus"))
    return out


def _cluster_differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    if any((old.get(key) or None) != (new.get(key) or None) for key in ("rayClusterName", "applicationStatuses")):
        return True
    return any(old.get(key) != new.get(key) for key in _CLUSTER_POINTERS)  # 0 is a value here (0% traffic)


def status_differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """``InconsistentRayServiceStatuses``: the cluster statuses copied in are for show and never cause a write."""
    for key in ("serviceStatus", "numServeEndpoints", "conditions"):
        if (old.get(key) or None) != (new.get(key) or None):
            return True
    return any(
        _cluster_differs(old.get(key) or {}, new.get(key) or {})
        for key in ("activeServiceStatus", "pendingServiceStatus")
    )
