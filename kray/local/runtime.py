"""The local control plane: the embedded store, the shared controllers and the pod runner, wired.

This is the one place that decides how local mode is assembled; the server process hosts it, and
tests host it in-process. The controllers are the very ones the operator runs against Kubernetes;
only the :class:`~kray.local.environment.LocalEnvironment` differs.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from kray.api.rules import FeatureGates
from kray.controllers.raycluster.reconcile import RayClusterReconciler
from kray.controllers.rayjob.plan import Settings
from kray.controllers.rayjob.reconcile import RayJobReconciler
from kray.controllers.rayservice.plan import Settings as ServiceSettings
from kray.controllers.rayservice.reconcile import RayServiceReconciler
from kray.local.claims import ClaimsController
from kray.local.config import LOCAL_JOB_SETTINGS
from kray.local.environment import KubeApiEndpoint, LocalEnvironment
from kray.local.history import JobHistory
from kray.local.paths import LocalPaths
from kray.local.podrunner import PodRunner, RunnerSettings
from kray.local.ports import PortAllocator
from kray.local.serve_routes import ServeRoutes, slim_event
from kray.local.store import EmbeddedStore, open_embedded_store
from kray.runtime.controller import Controller
from kray.runtime.informer import Informer
from kray.store import EVENT, POD, RAYCLUSTER, RAYJOB, RAYSERVICE

log = structlog.get_logger(__name__)


@dataclass
class LocalControlPlane:
    paths: LocalPaths
    gates: FeatureGates = field(default_factory=FeatureGates)
    job_settings: Settings = LOCAL_JOB_SETTINGS
    runner_settings: RunnerSettings | None = None
    store: EmbeddedStore | None = None
    history: JobHistory | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    runner: PodRunner | None = None
    serve_routes: ServeRoutes | None = None
    """The RayServices' local serve addresses (:mod:`kray.local.serve_routes`)."""
    _runner_task: asyncio.Task[None] | None = None
    kube_api: KubeApiEndpoint | None = None
    """The local Kubernetes API autoscalers talk to (the server's); None: head pods run without autoscaler."""

    async def start(self) -> None:
        self.paths.ensure()
        self.store = await open_embedded_store(self.paths.store)
        self.history = JobHistory(self.paths)
        ports = PortAllocator(self.paths.home)
        environment = LocalEnvironment(ports=ports, kube_api=self.kube_api)
        store = self.store

        clusters = Informer(store, RAYCLUSTER)
        jobs = Informer(store, RAYJOB)
        services = Informer(store, RAYSERVICE)
        pods = Informer(store, POD, label_selector="ray.io/is-ray-node=yes")
        events = Informer(store, EVENT, transform=slim_event)

        cluster_controller = Controller(
            "raycluster",
            RayClusterReconciler(
                store=store,
                environment=environment,
                gates=self.gates,
                requeue_idle=30.0,
                # No Job runs locally (a Redis cleanup Job would wait out its 300 s timeout), and
                # Ingresses and the autoscaler's RBAC mean nothing on one machine.
                redis_cleanup=False,
                kubernetes_only_objects=False,
            ),
        )
        cluster_controller.watches(clusters)
        cluster_controller.owns(pods, owner_kind="RayCluster")

        job_controller = Controller(
            "rayjob",
            RayJobReconciler(
                store=store,
                environment=environment,
                gates=self.gates,
                settings=self.job_settings,
                observer=self.history,
            ),
        )
        job_controller.watches(jobs)
        job_controller.owns(clusters, owner_kind="RayJob")

        service_controller = Controller(
            "rayservice",
            RayServiceReconciler(store=store, environment=environment, settings=ServiceSettings(gates=self.gates)),
        )
        service_controller.watches(services)
        service_controller.owns(clusters, owner_kind="RayService")

        self.serve_routes = ServeRoutes(
            store=store, ports=ports, services=services, clusters=clusters, events=events, history=self.history
        )

        settings = self.runner_settings or RunnerSettings(state_dir=self.paths.home)
        self.runner = PodRunner(store=store, settings=settings, ports=ports)
        stop = self._stop
        self._tasks = [
            asyncio.create_task(clusters.run(stop), name="informer-rayclusters"),
            asyncio.create_task(jobs.run(stop), name="informer-rayjobs"),
            asyncio.create_task(services.run(stop), name="informer-rayservices"),
            asyncio.create_task(pods.run(stop), name="informer-pods"),
            asyncio.create_task(events.run(stop), name="informer-events"),
            asyncio.create_task(self.serve_routes.run(stop), name="serve-routes"),
            asyncio.create_task(cluster_controller.run(stop), name="controller-raycluster"),
            asyncio.create_task(job_controller.run(stop), name="controller-rayjob"),
            asyncio.create_task(service_controller.run(stop), name="controller-rayservice"),
        ]
        claims = ClaimsController(store=store, state_dir=settings.state_dir)
        self._tasks.append(asyncio.create_task(claims.run(stop), name="claims"))
        self._runner_task = asyncio.create_task(self.runner.run(stop), name="pod-runner")
        log.info("local.started", home=str(self.paths.home))

    async def stop(self, *, kill_pods: bool = True) -> None:
        """Stop everything; with ``kill_pods`` no Ray process is left behind."""
        if self.runner is not None:
            self.runner.kill_on_exit = kill_pods
        self._stop.set()
        tasks = [*self._tasks, *([self._runner_task] if self._runner_task else [])]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=60)
        if self.store is not None:
            await self.store.close()
        log.info("local.stopped")
