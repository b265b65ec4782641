"""The Gateway API objects of an incremental upgrade on Kubernetes: read back, created, updated.

The planner (:mod:`.plan.gateway`) says what the Gateway, the HTTPRoute and the per-cluster serve Services
should be; this module is their I/O, as KubeRay's ``reconcileGateway``, ``reconcileHTTPRoute`` and
``reconcilePerClusterServeService`` do it, with their Events. Readiness is read from the objects' status
(``IsGatewayReady``/``IsHTTPRouteReady``); nothing here sets a status: a Gateway controller does.

Without the Gateway API CRDs the API server serves no ``gateways`` at all: KubeRay's ``reconcileGateway`` then
fails its Get ("no matches for kind Gateway") and returns that error before any status write, on every
reconcile, with no Event; :class:`GatewayAPIMissing` makes kray's reconcile stop at the same point, and
its message says which CRDs to install.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kray.api.manifest import parse_object
from kray.api.v1.raycluster import RayCluster
from kray.api.v1.rayservice import RayService
from kray.controllers.common.service import NoServePortError
from kray.controllers.environment import ClusterEnvironment
from kray.controllers.rayservice import objects
from kray.controllers.rayservice.plan import EnsureClusterServeService, EnsureGateway, EnsureHTTPRoute
from kray.controllers.rayservice.plan import gateway as plan
from kray.store import GATEWAY, HTTPROUTE, RAYCLUSTER, SERVICE, Obj, Resource, Store
from kray.store.errors import KindNotServed, NotFound, StoreError

Record = Callable[[Obj, str, str, str], Awaitable[None]]
"""Record an Event on the RayService (its object): type, reason, message."""
Step = EnsureClusterServeService | EnsureGateway | EnsureHTTPRoute
STEPS = (EnsureClusterServeService, EnsureGateway, EnsureHTTPRoute)

MISSING_MESSAGE = (
    "the API server serves no gateway.networking.k8s.io/v1 {kind}: install the Gateway API CRDs (standard "
    "channel, with a Gateway controller for gatewayClassName) to use NewClusterWithIncrementalUpgrade"
)
_WORDS = {
    "Gateway": ("Gateway for RayService", "the Gateway"),
    "HTTPRoute": ("HTTPRoute for RayService", "the HTTPRoute"),
}
"""KubeRay's Event wording: (create, update) object phrases; a failed create says "the" before HTTPRoute only."""


class GatewayAPIMissing(Exception):
    """The Gateway API CRDs are not installed."""


class Halted(Exception):
    """A step failed (its Event, if KubeRay records one, is recorded): requeue."""


async def _get(store: Store, resource: Resource, name: str, namespace: str) -> Obj | None:
    try:
        return await store.get(resource, name, namespace=namespace)
    except NotFound:  # KindNotServed too: no CRDs, no objects, nothing ready
        return None


async def observe(
    store: Store,
    environment: ClusterEnvironment,
    service: RayService,
    *,
    status: Mapping[str, Any],
    clusters: frozenset[str],
) -> tuple[int, bool, bool]:
    """numServeEndpoints and the readiness of the Gateway and HTTPRoute. Readiness is read only mid-upgrade (both
    clusters exist), the one time ``checkIfNeedTargetCapacityUpdate`` asks."""
    names = [
        str((status.get(k) or {}).get("rayClusterName") or "") for k in ("activeServiceStatus", "pendingServiceStatus")
    ]
    active, pending = (name if name in clusters else None for name in names)
    endpoints = await serve_endpoints(store, environment, service, active=active, pending=pending)
    if active and pending:
        return endpoints, *await readiness(store, service)
    return endpoints, True, True


async def readiness(store: Store, service: RayService) -> tuple[bool, bool]:
    """(``IsGatewayReady``, ``IsHTTPRouteReady``) of the RayService's Gateway and HTTPRoute as they are now."""
    namespace = service.metadata.namespace or "default"
    gateway = await _get(store, GATEWAY, plan.gateway_name(service), namespace)
    route = await _get(store, HTTPROUTE, plan.route_name(service), namespace)
    return plan.gateway_ready(gateway), plan.route_ready(gateway, route)


async def serve_endpoints(
    store: Store, environment: ClusterEnvironment, service: RayService, *, active: str | None, pending: str | None
) -> int:
    """``calculateStatus`` during an incremental upgrade: the ready endpoints of the active cluster's own serve
    Service (the RayService's serve Service while there is no active cluster) plus the pending cluster's."""
    namespace = service.metadata.namespace or "default"
    names = [plan.cluster_serve_service_name(active) if active else objects.serve_service_name(service)]
    if pending:
        names.append(plan.cluster_serve_service_name(pending))
    total = 0
    for name in names:
        total += await environment.serve_endpoints(
            store=store, service={"metadata": {"name": name, "namespace": namespace}}
        )
    return total


async def execute(
    action: Step,
    *,
    store: Store,
    raw: Obj,
    clusters: Mapping[str, RayCluster],
    env: ClusterEnvironment,
    record: Record,
) -> None:
    """Carry out one Gateway API step for the RayService ``raw``. Raises :class:`GatewayAPIMissing` or
    :class:`Halted`. A cluster created earlier in this reconcile is read from the store."""
    service = parse_object(raw)
    assert isinstance(service, RayService)

    async def event(type_: str, reason: str, message: str) -> None:
        await record(raw, type_, reason, message)

    try:
        if isinstance(action, EnsureClusterServeService):
            model = clusters.get(action.cluster) or await _cluster(store, action.cluster, raw["metadata"]["namespace"])
            if model is None:
                return  # not created yet: the next reconcile
            wanted = objects.build_cluster_serve_service(service, model, env)
            if await _get(store, SERVICE, wanted["metadata"]["name"], wanted["metadata"]["namespace"]) is None:
                await store.create(SERVICE, wanted)  # KubeRay records no Event for these
            return
        resource = GATEWAY if isinstance(action, EnsureGateway) else HTTPROUTE
        await _ensure(store, resource, action.body, event)
    except KindNotServed as error:
        kind = type(action).__name__.removeprefix("Ensure")
        raise GatewayAPIMissing(MISSING_MESSAGE.format(kind=kind)) from error
    except (StoreError, NoServePortError) as error:
        raise Halted(str(error)) from error


async def _cluster(store: Store, name: str, namespace: str) -> RayCluster | None:
    found = await _get(store, RAYCLUSTER, name, namespace)
    model = parse_object(found) if found is not None else None
    return model if isinstance(model, RayCluster) else None


async def _ensure(
    store: Store, resource: Resource, wanted: Mapping[str, Any], record: Callable[[str, str, str], Awaitable[None]]
) -> None:
    meta = wanted["metadata"]
    where = f"{meta['namespace']}/{meta['name']}"
    created, updated = _WORDS[resource.kind]
    current = None
    try:
        current = await store.get(resource, meta["name"], namespace=meta["namespace"])
    except KindNotServed:
        raise
    except NotFound:
        pass
    if current is None:
        try:
            await store.create(resource, dict(wanted))
        except KindNotServed:
            raise
        except StoreError as error:
            failed = created if resource.kind == "Gateway" else f"the {created}"
            await record("Warning", f"FailedToCreate{resource.kind}", f"Failed to create {failed} {where}: {error}")
            raise
        await record("Normal", f"Created{resource.kind}", f"Created {created} {where}")
        return
    if plan.spec_holds(current.get("spec"), wanted["spec"]):
        return
    try:
        await store.replace(resource, {**current, "spec": dict(wanted["spec"])})
    except StoreError as error:
        await record("Warning", f"FailedToUpdate{resource.kind}", f"Failed to update {updated} {where}: {error}")
        raise
    await record("Normal", f"Updated{resource.kind}", f"Updated {updated} {where}")


async def delete(store: Store, service: RayService) -> None:
    """Suspend: the HTTPRoute and the Gateway go with the Services (absent ones, or absent CRDs, are no error)."""
    namespace = service.metadata.namespace or "default"
    for resource, name in ((HTTPROUTE, plan.route_name(service)), (GATEWAY, plan.gateway_name(service))):
        try:
            await store.delete(resource, name, namespace=namespace)
        except NotFound:
            continue
