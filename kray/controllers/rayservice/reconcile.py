"""The RayService reconcile: observe (store, dashboard, Serve proxy), plan (:mod:`.plan`), act. Thin.

Per call: read the RayService and every RayCluster labelled as its own, the head pods of its active and
pending clusters (and whether each head's Serve proxy answers ``/-/healthz``), its two Services and the
ready serve endpoints; ask the Serve API of the clusters :func:`~.plan.serve_targets` names; plan; then
carry out the plan's actions in order, stopping at the first failure (KubeRay returns its error there and
requeues), each with its Event. The status goes through the status subresource, and only when the plan
says it changed. The only memory is :mod:`.memory`: KubeRay's deletion schedule and Serve config cache,
and the last Serve/proxy answers that space those calls to one per cluster per interval.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx2
import structlog

from kray._ray.dashboard import AsyncDashboardClient
from kray._ray.errors import DashboardError
from kray._tls import trusted_context
from kray.api.errors import ManifestError
from kray.api.manifest import parse_object
from kray.api.v1.enums import ManagedBy
from kray.api.v1.raycluster import RayCluster
from kray.api.v1.rayservice import RayService
from kray.controllers import events
from kray.controllers.common import labels as keys
from kray.controllers.common.names import RANDOM_SUFFIX_ALPHABET
from kray.controllers.common.service import NoServePortError
from kray.controllers.environment import ClusterEnvironment, cluster_head_service_name
from kray.controllers.rayservice import gateway, objects
from kray.controllers.rayservice.memory import Memories, ServeAnswer, ServiceMemory, fresh
from kray.controllers.rayservice.plan import (
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
    HeadPod,
    Observed,
    Plan,
    PutServeConfig,
    RemoveFinalizer,
    SetHeadServeLabel,
    Settings,
    UpdateClusterInPlace,
    incremental_enabled,
    plan,
    serve_targets,
)
from kray.runtime.controller import Result
from kray.runtime.informer import ObjectKey
from kray.store import POD, RAYCLUSTER, RAYSERVICE, SERVICE, Obj, Store
from kray.store.errors import AlreadyExists, Conflict, NotFound, StoreError

log = structlog.get_logger(__name__)
COMPONENT = "rayservice-controller"
PROXY_TIMEOUT = 2.0
"""KubeRay's Serve proxy health client gives ``/-/healthz`` two seconds."""
OWN_ANNOTATIONS = "kray.io/"
"""Annotations kray's environment keeps on a RayCluster (its local ports): an in-place update keeps them."""

_IN_USE = ("activeServiceStatus", "pendingServiceStatus")

DashboardFactory = Callable[[str, str | None], AsyncDashboardClient]
ProxyProbe = Callable[[str], Awaitable[bool]]


def default_dashboards(address: str, token: str | None) -> AsyncDashboardClient:
    return AsyncDashboardClient(f"http://{address}", token=token, timeout=5.0)


async def probe_proxy(address: str) -> bool:
    """``CheckProxyActorHealth``: ``GET http://<address>/-/healthz`` answers 200.

    The client shares kray's one TLS context (:mod:`kray._tls`): httpx's default loads the CA bundle per client,
    which in a busy local server blocked its event loop -- and the serve addresses it proxies -- for tens to
    hundreds of ms at every probe (py-spy: half the server's CPU under a 100 requests/s load).
    """
    try:
        verify = trusted_context(trust_env=False)
        async with httpx2.AsyncClient(timeout=PROXY_TIMEOUT, trust_env=False, verify=verify) as client:
            response = await client.get(f"http://{address}/-/healthz")
    except httpx2.HTTPError:
        return False
    return response.status_code == 200


def random_suffix() -> str:
    return "".join(secrets.choice(RANDOM_SUFFIX_ALPHABET) for _ in range(5))


class _Failed(Exception):
    """An action failed (its Warning Event is recorded): stop here and requeue."""


@dataclass(frozen=True, slots=True)
class _Cluster:
    raw: Obj
    model: RayCluster
    head: Obj | None


@dataclass
class RayServiceReconciler:
    store: Store
    environment: ClusterEnvironment
    settings: Settings = field(default_factory=Settings)
    dashboards: DashboardFactory = default_dashboards
    proxy_probe: ProxyProbe = probe_proxy
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    suffix: Callable[[], str] = random_suffix
    interval: float = REQUEUE
    """At most one Serve API call and one proxy probe per cluster per this many seconds."""
    memories: Memories = field(default_factory=Memories)

    async def __call__(self, key: ObjectKey) -> Result:
        namespace, name = key
        try:
            raw = await self.store.get(RAYSERVICE, name, namespace=namespace)
        except NotFound:
            self.memories.forget(key)
            return Result.done()
        spec = raw.get("spec")
        managed_by = spec.get("managedBy") if isinstance(spec, dict) else None
        if isinstance(managed_by, str) and managed_by != ManagedBy.KUBERAY_OPERATOR.value:
            return Result.done()  # another controller's
        try:
            service = parse_object(raw)
        except ManifestError as error:
            await self._event(raw, "Warning", "InvalidRayServiceSpec", "; ".join(str(e) for e in error.errors))
            return Result.done()
        assert isinstance(service, RayService)
        memory = self.memories.of(key)
        clusters, observed = await self._observe(service, memory)
        result = plan(observed)
        if result.halted:
            log.info("rayservice.halted", namespace=namespace, name=name, reason=result.halted)
        return await self._act(key, raw, result, clusters, memory)

    # ---- observe ------------------------------------------------------------------------------------
    async def _observe(self, service: RayService, memory: ServiceMemory) -> tuple[dict[str, _Cluster], Observed]:
        meta = service.metadata
        namespace = meta.namespace or "default"
        status = service.status.to_dict() if service.status else {}
        in_use = {
            str((status.get(k) or {}).get("rayClusterName") or "")
            for k in ("activeServiceStatus", "pendingServiceStatus")
        } - {""}
        selector = f"{keys.ORIGINATED_FROM_CRD}=RayService,{keys.ORIGINATED_FROM_CR_NAME}={meta.name}"
        listed = (await self.store.list(RAYCLUSTER, namespace=namespace, label_selector=selector)).items
        clusters: dict[str, _Cluster] = {}
        views: dict[str, ClusterView] = {}
        for raw in listed:
            try:
                model = parse_object(raw)
            except ManifestError:
                continue
            assert isinstance(model, RayCluster)
            name = model.metadata.name or ""
            head = await objects.head_pod(self.store, namespace, name) if name in in_use else None
            clusters[name] = _Cluster(raw=raw, model=model, head=head)
            views[name] = ClusterView(
                name=name,
                annotations=dict(model.metadata.annotations or {}),
                status=raw.get("status") or {},
                suspend=model.spec.suspend,
                deleting=bool(model.metadata.deletion_timestamp),
                head_pod=await self._head_view(service, clusters[name], memory) if head is not None else None,
                cached_serve_config=memory.serve_configs.get(name),
                serve_port=objects.serve_port(model),
            )
        memory.keep_clusters(frozenset(clusters))
        head_svc = await objects.get_or_none(self.store, SERVICE, objects.head_service_name(service), namespace)
        serve_svc = await objects.get_or_none(self.store, SERVICE, objects.serve_service_name(service), namespace)
        endpoints, gateway_ready, route_ready = 0, True, True
        if self.settings.gateway_api and incremental_enabled(service, self.settings):
            endpoints, gateway_ready, route_ready = await gateway.observe(
                self.store, self.environment, service, status=status, clusters=frozenset(clusters)
            )
        elif serve_svc is not None:
            endpoints = await self.environment.serve_endpoints(store=self.store, service=serve_svc)
        observed = Observed(
            service=service,
            now=self.clock(),
            clusters=views,
            head_service_cluster=objects.selected_cluster(head_svc),
            serve_service_cluster=objects.selected_cluster(serve_svc),
            num_serve_endpoints=endpoints,
            gateway_ready=gateway_ready,
            route_ready=route_ready,
            deletion_schedule=memory.deletion_schedule,
            random_suffix=self.suffix(),
            settings=self.settings,
        )
        for name in serve_targets(observed):
            answer = await self._serve_answer(clusters[name], memory)
            views[name] = dataclasses.replace(views[name], serve_details=answer.details, serve_error=answer.error)
        return clusters, dataclasses.replace(observed, clusters=views)

    async def _head_view(self, service: RayService, cluster: _Cluster, memory: ServiceMemory) -> HeadPod:
        head = cluster.head or {}
        label = ((head.get("metadata") or {}).get("labels") or {}).get(keys.SERVE)
        if service.spec.exclude_head_pod_from_serve_svc:
            return HeadPod(serve_label=label)  # KubeRay does not probe: the label is "false" whatever it says
        name, now = cluster.model.metadata.name or "", self.monotonic()
        last = memory.proxy_answers.get(name)
        if last is not None and fresh(last[0], now=now, interval=self.interval):
            return HeadPod(serve_label=label, proxy_healthy=last[1])
        address = self.environment.serve_proxy_address(cluster=cluster.model, head_pod=head)
        healthy = address is not None and await self.proxy_probe(address)
        memory.proxy_answers[name] = (now, healthy)
        return HeadPod(serve_label=label, proxy_healthy=healthy)

    async def _serve_answer(self, cluster: _Cluster, memory: ServiceMemory) -> ServeAnswer:
        name, now = cluster.model.metadata.name or "", self.monotonic()
        last = memory.serve_answers.get(name)
        if last is not None and fresh(last.at, now=now, interval=self.interval):
            return last
        answer: ServeAnswer
        try:
            async with await self._dashboard(cluster) as dashboard:
                answer = ServeAnswer(at=now, details=await dashboard.serve_applications())
        except (DashboardError, _NoDashboard) as error:
            answer = ServeAnswer(at=now, error=str(error))
        memory.serve_answers[name] = answer
        return answer

    async def _dashboard(self, cluster: _Cluster) -> AsyncDashboardClient:
        model = cluster.model
        namespace = model.metadata.namespace or "default"
        head_service = await objects.get_or_none(self.store, SERVICE, cluster_head_service_name(model), namespace)
        address = self.environment.dashboard_address(cluster=model, head_service=head_service)
        if address is None:
            raise _NoDashboard(f"no dashboard address for RayCluster {namespace}/{model.metadata.name} yet")
        return self.dashboards(address, await objects.token(self.store, self.environment, model))

    # ---- act ----------------------------------------------------------------------------------------
    async def _act(
        self, key: ObjectKey, raw: Obj, result: Plan, clusters: dict[str, _Cluster], memory: ServiceMemory
    ) -> Result:
        memory.deletion_schedule = dict(result.deletion_schedule)
        memory.keep_serve_configs(result.keep_serve_configs)
        for action in result.actions:
            try:
                after = await self._execute(action, raw=raw, clusters=clusters, memory=memory)
            except Conflict:
                return Result.after(0)
            except _Failed:
                return Result.after(REQUEUE)
            if after is None:
                self.memories.forget(key)
                return Result.done()
            raw = after
        if result.status is not None:
            try:
                raw = await self.store.replace_status(RAYSERVICE, {**raw, "status": dict(result.status)})
            except (Conflict, NotFound):
                return Result.after(0)
        for type_, reason, message in result.events:
            await self._event(raw, type_, reason, message)
        return Result() if result.requeue_after is None else Result.after(result.requeue_after)

    async def _execute(
        self, action: Action, *, raw: Obj, clusters: dict[str, _Cluster], memory: ServiceMemory
    ) -> Obj | None:
        """Carry out one action; the RayService as it now is, or None once it is gone."""
        namespace = raw["metadata"]["namespace"]
        meta = raw["metadata"]
        if isinstance(action, AddFinalizer):
            finalizers = [*(meta.get("finalizers") or []), FINALIZER]
            return await self.store.replace(RAYSERVICE, {**raw, "metadata": {**meta, "finalizers": finalizers}})
        if isinstance(action, RemoveFinalizer):
            remaining = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            with contextlib.suppress(NotFound):
                await self.store.replace(RAYSERVICE, {**raw, "metadata": {**meta, "finalizers": remaining}})
            return None
        where = f"{namespace}/{getattr(action, 'name', getattr(action, 'cluster', ''))}"
        if isinstance(action, CreateCluster):
            async with self._step(raw, "FailedToCreateRayCluster", f"Failed to create RayCluster {where}"):
                with contextlib.suppress(AlreadyExists):
                    await self.store.create(RAYCLUSTER, dict(action.body))
                    await self._event(raw, "Normal", "CreatedRayCluster", f"Created RayCluster {where}")
        elif isinstance(action, UpdateClusterInPlace):
            async with self._step(raw, "FailedToUpdateRayCluster", f"Failed to update RayCluster {where}"):
                await self._update_cluster(namespace, action)
                await self._event(raw, "Normal", "UpdatedRayCluster", f"Updated RayCluster {where}")
        elif isinstance(action, DeleteCluster):
            async with self._step(raw, "FailedToDeleteRayCluster", f"Failed to delete RayCluster {where}"):
                with contextlib.suppress(NotFound):
                    await self.store.delete(RAYCLUSTER, action.name, namespace=namespace, propagation="Background")
                    await self._event(raw, "Normal", "DeletedRayCluster", f"Deleted RayCluster {where}")
        elif isinstance(action, SetHeadServeLabel):
            await self._label_head(raw, clusters.get(action.cluster), action.value)
        elif isinstance(action, PutServeConfig):
            await self._put_serve_config(raw, clusters.get(action.cluster), action, memory)
        elif isinstance(action, EnsureHeadService | EnsureServeService):
            await self._ensure_service(raw, clusters.get(action.cluster), head=isinstance(action, EnsureHeadService))
        elif isinstance(action, gateway.STEPS):
            await self._gateway_step(raw, action, clusters)
        elif isinstance(action, DeleteServices):
            service = parse_object(raw)
            assert isinstance(service, RayService)
            if self.settings.gateway_api:
                async with self._step(raw, "FailedToDeleteService", "Failed to delete the Gateway API objects"):
                    await gateway.delete(self.store, service)
            for name in (objects.head_service_name(service), objects.serve_service_name(service)):
                async with self._step(raw, "FailedToDeleteService", f"Failed to delete the service {namespace}/{name}"):
                    with contextlib.suppress(NotFound):
                        await self.store.delete(SERVICE, name, namespace=namespace)
                        await self._event(raw, "Normal", "DeletedService", f"Deleted the service {namespace}/{name}")
        return raw

    async def _gateway_step(self, raw: Obj, action: gateway.Step, clusters: dict[str, _Cluster]) -> None:
        models = {name: c.model for name, c in clusters.items()}
        try:
            await gateway.execute(
                action, store=self.store, raw=raw, clusters=models, env=self.environment, record=self._event
            )
        except gateway.GatewayAPIMissing as missing:
            meta = raw["metadata"]
            log.error(
                "rayservice.gateway_api_missing", namespace=meta["namespace"], name=meta["name"], why=str(missing)
            )
            raise _Failed from missing
        except gateway.Halted as halted:
            raise _Failed from halted

    async def _update_cluster(self, namespace: str, action: UpdateClusterInPlace) -> None:
        current = await self.store.get(RAYCLUSTER, action.name, namespace=namespace)
        body_meta = action.body.get("metadata") or {}
        kept = {
            k: v for k, v in (current["metadata"].get("annotations") or {}).items() if k.startswith(OWN_ANNOTATIONS)
        }
        metadata = {
            **current["metadata"],
            "labels": dict(body_meta.get("labels") or {}),
            "annotations": {**kept, **(body_meta.get("annotations") or {})},
        }
        await self.store.replace(RAYCLUSTER, {**current, "metadata": metadata, "spec": action.body["spec"]})

    async def _label_head(self, raw: Obj, cluster: _Cluster | None, value: str) -> None:
        head = cluster.head if cluster is not None else None
        if head is None:
            return
        pod = f"{head['metadata']['namespace']}/{head['metadata']['name']}"
        message = f'the serve label to "{value}" for the Head Pod {pod}'
        async with self._step(raw, "FailedToUpdateHeadPodServeLabel", f"Failed to update {message}"):
            await self.store.patch(
                POD,
                head["metadata"]["name"],
                namespace=head["metadata"]["namespace"],
                patch={"metadata": {"labels": {keys.SERVE: value}}},
            )
            await self._event(raw, "Normal", "UpdatedHeadPodServeLabel", f"Updated {message}")

    async def _put_serve_config(
        self, raw: Obj, cluster: _Cluster | None, action: PutServeConfig, memory: ServiceMemory
    ) -> None:
        if cluster is None:
            return
        where = f"the RayCluster {raw['metadata']['namespace']}/{action.cluster}"
        config = self.environment.serve_config(cluster=cluster.model, config=action.config)
        async with self._step(
            raw, "FailedToUpdateServeApplications", f"Failed to update serve applications to {where}"
        ):
            async with await self._dashboard(cluster) as dashboard:
                await dashboard.put_serve_applications(config)
            memory.put(action.cluster, action.cache_as)
            await self._event(raw, "Normal", "UpdatedServeApplications", f"Updated serve applications to {where}")

    async def _ensure_service(self, raw: Obj, cluster: _Cluster | None, *, head: bool) -> None:
        if cluster is None:
            return
        service = parse_object(raw)
        assert isinstance(service, RayService)
        namespace = raw["metadata"]["namespace"]
        name = objects.head_service_name(service) if head else objects.serve_service_name(service)
        build = objects.build_head_service if head else objects.build_serve_service
        if not head and self.settings.gateway_api and incremental_enabled(service, self.settings):
            # BuildServeService names it after the cluster then: the per-cluster one the HTTPRoute uses.
            name, build = f"{cluster.model.metadata.name}-serve-svc", objects.build_cluster_serve_service
        async with self._step(raw, "FailedToCreateService", f"Failed to create the service {namespace}/{name}"):
            reason = await objects.ensure_service(self.store, build(service, cluster.model, self.environment))
            if reason is not None:
                verb = "Created" if reason == "CreatedService" else "Updated"
                await self._event(raw, "Normal", reason, f"{verb} the service {namespace}/{name}")

    @contextlib.asynccontextmanager
    async def _step(self, raw: Obj, reason: str, message: str) -> AsyncIterator[None]:
        """Run one step; on failure record KubeRay's Warning Event and stop the pass (a Conflict retries now)."""
        try:
            yield
        except Conflict:
            raise
        except (StoreError, DashboardError, NoServePortError, _NoDashboard) as error:
            await self._event(raw, "Warning", reason, f"{message}: {error}")
            raise _Failed from error

    async def _event(self, raw: Obj, type_: str, reason: str, message: str) -> None:
        await events.record(
            store=self.store, involved=raw, type_=type_, reason=reason, message=message, component=COMPONENT
        )


class _NoDashboard(Exception):
    """The cluster's dashboard address is not known yet (its head Service or ports are not there)."""
