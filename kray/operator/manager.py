"""The operator's assembly: one API client, informers scoped as KubeRay's cache, the shared controllers.

Order of a run, as controller-runtime's manager: the probe and metrics servers start; informers
list and watch (also on a standby, so a takeover starts with a warm cache and a full queue);
``/readyz`` turns ok once every informer has synced; the controllers' workers run only while this
process holds the leader Lease. SIGTERM (``stop``) stops taking new work, lets in-flight reconciles
finish (bounded by ``drain_timeout``), releases the Lease so a standby takes over at once, and
closes the client. Losing the Lease ends the run with exit code 1, as controller-runtime does:
a process that may have missed writes must not keep acting.

Cache scope is KubeRay's (``internal/managercache``): Pods only with ``ray.io/node-type`` in
head/worker/redis-cleanup, batch Jobs only with ``app.kubernetes.io/created-by=kuberay-operator``, all
within ``--watch-namespace`` (one informer per namespace and kind, or cluster-wide when empty).
Reconcilers read through these caches (:class:`~kray.runtime.cached_store.CachedStore`); their workers
start only once every cache has synced (controller-runtime's WaitForCacheSync), so a reconcile never
reads the API server for a kind the operator caches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kray._kube.store import KubeStore
from kray.controllers.environment import ENDPOINT_SLICE, KubernetesEnvironment
from kray.controllers.raycluster.podview import CLUSTER_LABEL
from kray.controllers.raycluster.reconcile import RayClusterReconciler
from kray.controllers.rayjob.plan import Settings, StartupPolicy
from kray.controllers.rayjob.reconcile import RayJobReconciler
from kray.controllers.rayservice.plan import Settings as ServiceSettings
from kray.controllers.rayservice.reconcile import RayServiceReconciler
from kray.operator.config import OperatorConfig
from kray.operator.http import HttpServer, Response, checks_route
from kray.operator.kuberay_metrics import KubeRayMetrics
from kray.runtime.cached_store import CachedStore
from kray.runtime.controller import Controller, spec_or_metadata_changed
from kray.runtime.informer import Informer
from kray.runtime.leader import LeaderElectionConfig, LeaderElector, LeadershipLost
from kray.runtime.metrics import RuntimeMetrics
from kray.store import JOB, POD, RAYCLUSTER, RAYJOB, RAYSERVICE, SERVICE, Obj, Resource, Store

log = structlog.get_logger(__name__)

POD_SELECTOR = "ray.io/node-type in (head,worker,redis-cleanup)"
CREATED_BY_SELECTOR = "app.kubernetes.io/created-by=kuberay-operator"

# A standby takes over within 15 s of the leader's death: it waits LEASE_DURATION after the last
# renewal it saw, and sees renewals at most RETRY_PERIOD (+10% jitter) late: 12 + 2.2 < 15.
# controller-runtime's defaults (15/10/2) allow up to ~17 s.
LEASE_DURATION = 12
RENEW_DEADLINE = 9.0
RETRY_PERIOD = 2.0

EXIT_OK = 0


def slim(obj: Obj) -> Obj:
    """The cached projection: without ``managedFields`` (half of a pod's size; nothing reads them)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


EXIT_LOST_LEADERSHIP = 1


@dataclass
class _Informers:
    """Every informer of one kind across the watched namespaces, read as one cache."""

    resource: Resource
    members: list[Informer] = field(default_factory=list)

    def objects(self) -> list[Obj]:
        return [obj for informer in self.members for obj in informer.list()]

    def add_handler(self, handler: Callable[[Obj | None, Obj | None], None]) -> None:
        for informer in self.members:
            informer.add_handler(handler)

    @property
    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.members)


def job_settings(config: OperatorConfig) -> Settings:
    startup = StartupPolicy() if config.startup_policy == "fail-fast" else None
    return Settings(
        transition_grace_period=config.env.transition_grace_period,
        status_check_timeout=config.env.status_check_timeout,
        delete_rayjob_after_finish=config.env.delete_rayjob_after_finish,
        deletion_rules_enabled=config.gates.RayJobDeletionPolicy,
        startup=startup,
    )


class Operator:
    """One operator process. Build with a config (and, in tests, a store); :meth:`run` until stopped."""

    def __init__(
        self, config: OperatorConfig, *, store: Store | None = None, registry: CollectorRegistry | None = None
    ):
        self.config = config
        self.store: Store = (
            store if store is not None else KubeStore.from_kubeconfig(config.kubeconfig, context=config.context)
        )
        self.registry = registry if registry is not None else CollectorRegistry()
        self.runtime_metrics = RuntimeMetrics(self.registry)
        self._namespaces: tuple[str | None, ...] = config.watch_namespaces or (None,)
        self.clusters = self._informers(RAYCLUSTER)
        self.jobs = self._informers(RAYJOB)
        self.pods = self._informers(POD, label_selector=POD_SELECTOR, index_label=CLUSTER_LABEL)
        self.services = self._informers(SERVICE)  # all of them, as KubeRay: <rayjob>-head-svc has no created-by
        self.batch_jobs = self._informers(JOB, label_selector=CREATED_BY_SELECTOR)
        self.rayservices = self._informers(RAYSERVICE)
        self.endpoint_slices = self._informers(ENDPOINT_SLICE)  # numServeEndpoints, read from the cache as KubeRay
        # Reconcilers read through the informers' caches and write to the API server.
        self.cached = CachedStore(
            self.store,
            {group.resource: group.members for group in self._groups},
        )
        environment = KubernetesEnvironment()
        workers = config.reconcile_concurrency
        self.cluster_controller = Controller(
            "raycluster",
            RayClusterReconciler(
                store=self.cached,
                environment=environment,
                gates=config.gates,
                requeue_idle=config.env.raycluster_requeue_seconds,
            ),
            workers=workers,
            drain_timeout=config.drain_timeout,
            metrics=self.runtime_metrics,
        )
        self.job_controller = Controller(
            "rayjob",
            RayJobReconciler(
                store=self.cached, environment=environment, gates=config.gates, settings=job_settings(config)
            ),
            workers=workers,
            drain_timeout=config.drain_timeout,
            metrics=self.runtime_metrics,
        )
        self.service_controller = Controller(
            "rayservice",
            RayServiceReconciler(
                store=self.cached,
                environment=environment,
                settings=ServiceSettings(gates=config.gates, gateway_api=True),
            ),
            workers=workers,
            drain_timeout=config.drain_timeout,
            metrics=self.runtime_metrics,
        )
        self._wire()
        self.kuberay_metrics = KubeRayMetrics(
            registry=self.registry,
            clusters=self.clusters.objects,
            jobs=self.jobs.objects,
            clock=lambda: datetime.now(UTC),
        )
        self.clusters.add_handler(self.kuberay_metrics.on_cluster)
        self.jobs.add_handler(self.kuberay_metrics.on_job)
        self.leading = False
        self._servers: list[HttpServer] = []

    def _informers(
        self, resource: Resource, *, label_selector: str | None = None, index_label: str | None = None
    ) -> _Informers:
        group = _Informers(resource)
        for namespace in self._namespaces:
            informer = Informer(
                self.store,
                resource,
                namespace=namespace,
                label_selector=label_selector,
                index_label=index_label,
                transform=slim,
            )
            group.members.append(informer)
        return group

    def _wire(self) -> None:
        for informer in self.clusters.members:
            self.cluster_controller.watches(informer, predicate=spec_or_metadata_changed)
            self.job_controller.owns(informer, owner_kind="RayJob")
        for informer in self.pods.members:
            self.cluster_controller.owns(informer, owner_kind="RayCluster")
        for informer in self.services.members:
            self.cluster_controller.owns(informer, owner_kind="RayCluster")
            self.job_controller.owns(informer, owner_kind="RayJob")
        for informer in self.jobs.members:
            self.job_controller.watches(informer)
        for informer in self.batch_jobs.members:
            self.job_controller.owns(informer, owner_kind="RayJob")
        for informer in self.rayservices.members:
            self.service_controller.watches(informer)
        for informer in (*self.clusters.members, *self.services.members):
            self.service_controller.owns(informer, owner_kind="RayService")

    @property
    def _groups(self) -> tuple[_Informers, ...]:
        return (
            self.clusters,
            self.jobs,
            self.pods,
            self.services,
            self.batch_jobs,
            self.rayservices,
            self.endpoint_slices,
        )

    @property
    def all_informers(self) -> Iterable[Informer]:
        for group in self._groups:
            yield from group.members

    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.all_informers)

    # ---- servers ------------------------------------------------------------------------------------
    def _metrics(self) -> Response:
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    async def _start_servers(self) -> None:
        health = {
            "/healthz": checks_route({"ping": lambda: True}),
            "/readyz": checks_route({"informers-synced": self.synced}),
        }
        metrics = {"/metrics": self._metrics}
        cfg = self.config
        if cfg.health.enabled and cfg.metrics.enabled and cfg.health == cfg.metrics:
            self._servers.append(HttpServer(address=cfg.health, routes={**health, **metrics}))
        else:
            if cfg.health.enabled:
                self._servers.append(HttpServer(address=cfg.health, routes=health))
            if cfg.metrics.enabled:
                self._servers.append(HttpServer(address=cfg.metrics, routes=metrics))
        for server in self._servers:
            await server.start()

    # ---- run ----------------------------------------------------------------------------------------
    async def _caches_synced(self, stop: asyncio.Event) -> bool:
        """Wait until every informer has synced (False: stopped first); workers never read a cold cache."""
        while not self.synced():
            if stop.is_set():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)
        return True

    async def lead(self, stop: asyncio.Event) -> None:
        """Run the controllers' workers until ``stop`` (then drain)."""
        self.leading = True
        log.info("operator.leading", namespaces=list(self.config.watch_namespaces) or "all")
        if not await self._caches_synced(stop):
            self.leading = False
            return
        try:
            await asyncio.gather(
                self.cluster_controller.run(stop), self.job_controller.run(stop), self.service_controller.run(stop)
            )
        finally:
            self.leading = False

    def elector(self) -> LeaderElector | None:
        """The Lease elector of this config (None with ``--enable-leader-election=false``)."""
        if not self.config.leader_election:
            return None
        election = LeaderElectionConfig(
            namespace=self.config.leader_election_namespace or "default",
            name=self.config.lease_name,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
        )
        return LeaderElector(self.store, election, metrics=self.runtime_metrics)

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop``; returns the process exit code."""
        await self._start_servers()
        informer_stop = asyncio.Event()
        informers = [
            asyncio.create_task(i.run(informer_stop), name=f"informer-{i.resource.plural}") for i in self.all_informers
        ]
        code = EXIT_OK
        try:
            elector = self.elector()
            if elector is None:
                await self.lead(stop)
            else:
                log.info("operator.electing", lease=f"{elector.config.namespace}/{elector.config.name}",
                         identity=elector.identity)  # fmt: skip
                await elector.run(stop, self.lead)
        except LeadershipLost as error:
            log.error("operator.leadership_lost", error=str(error))
            code = EXIT_LOST_LEADERSHIP
        finally:
            informer_stop.set()
            for task in informers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=10)
            for server in self._servers:
                await server.close()
            await self.cached.close()  # sends the events still queued, then closes the client
        log.info("operator.stopped", code=code)
        return code
