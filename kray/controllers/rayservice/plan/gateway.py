"""The Gateway API objects of a ``NewClusterWithIncrementalUpgrade`` on Kubernetes, built and read. Pure.

KubeRay v1.5's ``rayservice_controller.go`` routes an incremental upgrade through the Gateway API: one
Gateway ``<rs>-gateway`` (``createGateway``: the ``gatewayClassName`` of ``clusterUpgradeOptions``, one
HTTP listener ``http`` on port 80), one HTTPRoute ``<rs>-httproute`` (``createHTTPRoute``: parent that
Gateway, ``PathPrefix /``, one weighted ``backendRef`` per cluster to its own serve Service, active
first), both owned by the RayService; and per cluster a serve Service ``<cluster>-serve-svc``
(``reconcilePerClusterServeService``: ``BuildServeService`` named after the cluster, owned by it). Their
readiness comes from their status: ``IsGatewayReady`` (Accepted and Programmed) and ``IsHTTPRouteReady``
(the parent entry for that Gateway Accepted and ResolvedRefs). Locally kray's serve address plays the
Gateway's part and none of these objects exist (``Settings.gateway_api`` is off).

Invariants: the route's weights are the planner's traffic split (they sum to 100); a cluster that does not
exist has no backend; the route exists only once the active cluster does (KubeRay skips it before).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kray.api.v1.rayservice import RayService
from kray.controllers.common.names import serve_service_name
from kray.controllers.rayservice.plan.model import (
    Action,
    ClusterView,
    EnsureClusterServeService,
    EnsureGateway,
    EnsureHTTPRoute,
)

API_VERSION = "gateway.networking.k8s.io/v1"
LISTENER_NAME = "http"
"""``utils.GatewayListenerPortName``."""
LISTENER_PORT = 80
"""``utils.DefaultGatewayListenerPort``."""
DEFAULT_SERVE_PORT = 8000
"""``utils.DefaultServingPort``: ``GetServePort`` when the head container names no ``serve`` port."""


def gateway_name(service: RayService) -> str:
    return f"{service.metadata.name}-gateway"


def route_name(service: RayService) -> str:
    return f"{service.metadata.name}-httproute"


def cluster_serve_service_name(cluster: str) -> str:
    """``GenerateServeServiceName(<cluster>)``: the per-cluster serve Service a backendRef names."""
    return serve_service_name(cluster)


@dataclass(frozen=True, slots=True)
class Backend:
    cluster: str
    port: int
    weight: int


def build_gateway(service: RayService, owner: Mapping[str, Any]) -> dict[str, Any]:
    """``createGateway``; ``owner`` is the RayService's controller ownerReference."""
    strategy = service.spec.upgrade_strategy
    options = strategy.cluster_upgrade_options if strategy is not None else None
    class_name = (options.gateway_class_name if options is not None else None) or ""
    return {
        "apiVersion": API_VERSION,
        "kind": "Gateway",
        "metadata": {
            "name": gateway_name(service),
            "namespace": service.metadata.namespace or "default",
            "ownerReferences": [dict(owner)],
        },
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": LISTENER_NAME, "protocol": "HTTP", "port": LISTENER_PORT}],
        },
    }


def build_route(service: RayService, owner: Mapping[str, Any], backends: Sequence[Backend]) -> dict[str, Any]:
    """``createHTTPRoute``: the backends in order (active first), each to ``<cluster>-serve-svc``."""
    namespace = service.metadata.namespace or "default"
    refs = [
        {"name": cluster_serve_service_name(b.cluster), "namespace": namespace, "port": b.port, "weight": b.weight}
        for b in backends
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": route_name(service), "namespace": namespace, "ownerReferences": [dict(owner)]},
        "spec": {
            "parentRefs": [{"name": gateway_name(service), "namespace": namespace}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": refs}],
        },
    }


def _true(conditions: Any, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions or ())


def gateway_ready(gateway: Mapping[str, Any] | None) -> bool:
    """``IsGatewayReady``: conditions Accepted and Programmed both True."""
    if gateway is None:
        return False
    conditions = (gateway.get("status") or {}).get("conditions")
    return _true(conditions, "Accepted") and _true(conditions, "Programmed")


def _current(conditions: Any, type_: str, generation: Any) -> bool:
    """Condition ``type_`` is True and, when both generations are known, written for ``generation``."""
    for condition in conditions or ():
        if condition.get("type") != type_ or condition.get("status") != "True":
            continue
        observed = condition.get("observedGeneration")
        if observed is None or generation is None or observed >= generation:
            return True
    return False


def route_ready(gateway: Mapping[str, Any] | None, route: Mapping[str, Any] | None) -> bool:
    """``IsHTTPRouteReady``: the route's status entry for this Gateway (by name, and namespace when given)
    has Accepted and ResolvedRefs True -- and, unlike KubeRay, written for the route's current generation.

    Why the generation (a deliberate difference, docs/compatibility.md): the step after the last weight change
    lowers the old cluster's ``target_capacity``. KubeRay takes that step on the next reconcile, while the
    gateway may still route by the previous weights (its Accepted condition is still True, for the previous
    generation), so requests reach replicas that Serve is removing. Waiting for the gateway to report the
    current generation means it has taken in the weights the capacity step relies on."""
    if gateway is None or route is None:
        return False
    meta = gateway.get("metadata") or {}
    generation = (route.get("metadata") or {}).get("generation")
    for parent in (route.get("status") or {}).get("parents") or ():
        ref = parent.get("parentRef") or {}
        if ref.get("name") != meta.get("name"):
            continue
        if ref.get("namespace") is not None and ref.get("namespace") != meta.get("namespace"):
            continue
        conditions = parent.get("conditions")
        if _current(conditions, "Accepted", generation) and _current(conditions, "ResolvedRefs", generation):
            return True
    return False


def spec_holds(current: Any, wanted: Any) -> bool:
    """Everything ``wanted`` sets is in ``current`` (lists item by item, same length): what the API server
    adds by its CRD defaults (a listener's ``allowedRoutes``, a backendRef's ``group``/``kind``) is no change."""
    if isinstance(wanted, Mapping):
        return isinstance(current, Mapping) and all(spec_holds(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(current) == len(wanted)
            and all(spec_holds(c, w) for c, w in zip(current, wanted, strict=True))
        )
    return bool(current == wanted)


def gateway_actions(
    service: RayService,
    owner: Mapping[str, Any],
    *,
    active: ClusterView | None,
    pending: ClusterView | None,
    existing: Mapping[str, ClusterView],
    weights: tuple[int, int] | None,
) -> tuple[list[Action], bool]:
    """KubeRay's order: per-cluster serve Services (active, pending), the Gateway, then the HTTPRoute once the
    active cluster exists. Returns the actions and whether the route has a backend for the pending cluster (only
    a pending cluster that exists gets one, as ``createHTTPRoute`` looks it up)."""
    actions: list[Action] = [EnsureClusterServeService(c.name) for c in (active, pending) if c is not None]
    actions.append(EnsureGateway(build_gateway(service, owner)))
    with_pending = False
    if active is not None and weights is not None:
        backends = [Backend(active.name, active.serve_port, weights[0])]
        if pending is not None and pending.name in existing:
            backends.append(Backend(pending.name, pending.serve_port, weights[1]))
            with_pending = True
        actions.append(EnsureHTTPRoute(build_route(service, owner, backends)))
    return actions, with_pending
