"""The world a RayService reconcile runs in, for its component tests: the real embedded store, the real
:class:`~kray.local.environment.LocalEnvironment`, and one small HTTP server on a port chosen by the kernel
that plays a Ray head's dashboard Serve API (``/api/serve/applications/``) and its Serve proxy
(``/-/healthz``), counting every call. What the RayCluster controller and the pod runner would do for a
new cluster (reserve ports, start a ready head pod) is :func:`bring_up`, which points the cluster's
dashboard and serve ports at that server.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from kray.controllers.rayservice.plan import Settings
from kray.controllers.rayservice.reconcile import RayServiceReconciler
from kray.local.environment import PORTS_ANNOTATION, LocalEnvironment
from kray.local.ports import PortAllocator
from kray.local.store import EmbeddedSettings, EmbeddedStore, open_embedded_store
from kray.store import EVENT, POD, RAYCLUSTER, Obj

NAMESPACE = "default"
SERVE_CONFIG = (
    "applications:\n"
    "  - name: fruit_app\n"
    "    import_path: fruit.deployment_graph\n"
    "    route_prefix: /fruit\n"
    "  - name: math_app\n"
    "    import_path: conditional_dag.serve_dag\n"
    "    route_prefix: /calc\n"
)
CONTAINER = {"name": "ray-head", "image": "rayproject/ray:2.60.0"}


def rayservice(name: str = "rs", *, serve_config: str = SERVE_CONFIG, **spec: Any) -> Obj:
    """A RayService as ``kubectl apply`` would send it (no status, no finalizer)."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serveConfigV2": serve_config,
            "rayClusterConfig": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [dict(CONTAINER)]}}},
            },
            **spec,
        },
    }


@dataclass
class FakeHead:
    """Serve as a head answers it: no application until a config is PUT, then its applications ``after_put``."""

    after_put: str = "RUNNING"
    put_status: int = 200
    proxy_status: int = 200
    gets: int = 0
    healthz: int = 0
    puts: list[dict[str, Any]] = field(default_factory=list)
    apps: dict[str, Any] = field(default_factory=dict)
    port: int = 0

    async def _get(self, request: web.Request) -> web.Response:
        self.gets += 1
        assert request.query.get("api_type") == "declarative"
        return web.json_response({"applications": self.apps})

    async def _put(self, request: web.Request) -> web.Response:
        if self.put_status != 200:
            return web.Response(status=self.put_status, text="Traceback (most recent call last):\nRuntimeError: boom")
        body = await request.json()
        self.puts.append(body)
        self.apps = {
            app["name"]: {"status": self.after_put, "message": "", "deployments": {}}
            for app in body.get("applications") or ()
        }
        return web.Response(status=200)

    async def _healthz(self, request: web.Request) -> web.Response:
        self.healthz += 1
        return web.Response(status=self.proxy_status, text="success")

    def set_status(self, status: str) -> None:
        for app in self.apps.values():
            app["status"] = status


async def serve_fake(head: FakeHead) -> AsyncIterator[FakeHead]:
    app = web.Application()
    app.router.add_get("/api/serve/applications/", head._get)
    app.router.add_put("/api/serve/applications/", head._put)
    app.router.add_get("/-/healthz", head._healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    head.port = runner.addresses[0][1]
    try:
        yield head
    finally:
        await runner.cleanup()


async def open_store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with await open_embedded_store(tmp_path / "store.db", settings=EmbeddedSettings(poll_interval=0.05)) as s:
        yield s


@dataclass
class Clock:
    """Wall clock and monotonic clock, moved by the test only."""

    now: datetime = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def reconciler(store: EmbeddedStore, tmp_path: Path, clock: Clock) -> RayServiceReconciler:
    names = (f"x{i:04d}" for i in itertools.count())
    return RayServiceReconciler(
        store=store,
        environment=LocalEnvironment(ports=PortAllocator(tmp_path / "ports")),
        settings=Settings(),
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
        suffix=lambda: next(names),
    )


async def bring_up(store: EmbeddedStore, cluster: str, *, port: int) -> Obj:
    """What the RayCluster controller and the pod runner do for a new cluster: its ports (dashboard and serve
    at the fake head), a head pod Running and Ready, and the cluster's ``HeadPodReady`` condition."""
    raw = await store.get(RAYCLUSTER, cluster, namespace=NAMESPACE)
    others = "dashboard_metrics=3,autoscaler_metrics=4,head_agent=5,head_metrics=6"
    ports = f"gcs=1,dashboard={port},client=2,serve={port},{others}"
    meta = raw["metadata"]
    raw = await store.replace(
        RAYCLUSTER,
        {**raw, "metadata": {**meta, "annotations": {**meta.get("annotations", {}), PORTS_ANNOTATION: ports}}},
    )
    ready = {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady", "message": ""}
    ready["lastTransitionTime"] = "2026-11-25T12:00:00Z"
    raw = await store.replace_status(RAYCLUSTER, {**raw, "status": {"state": "ready", "conditions": [ready]}})
    pod = await store.create(
        POD,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{cluster}-head",
                "namespace": NAMESPACE,
                "labels": {"ray.io/cluster": cluster, "ray.io/node-type": "head", "ray.io/serve": "false"},
            },
            "spec": {"containers": [dict(CONTAINER)]},
        },
    )
    await store.replace_status(
        POD, {**pod, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    )
    return raw


async def reasons(store: EmbeddedStore) -> list[str]:
    """The reasons of the Events recorded so far, oldest first."""
    found = (await store.list(EVENT, namespace=NAMESPACE)).items
    return [e["reason"] for e in sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))]
