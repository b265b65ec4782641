"""The local serve address of a RayService, on the real embedded store: one port per RayService that follows
its status to the right cluster's Serve proxy, survives a restart, goes with the RayService, and a history of
the Serve config PUTs.

Small stdlib HTTP servers on loopback port 0 play the clusters' Serve proxies (each answers its own name);
the RayClusters point at them through their ``kray.io/local-ports`` serve port, as the RayCluster
controller's local environment writes it. The RayService status is written as KubeRay's controller writes
it: ``activeServiceStatus.rayClusterName`` moves to the new cluster on promotion (``reconcileServices``
then serves from it), ``trafficRoutedPercent`` on both clusters are the HTTPRoute weights of an incremental
upgrade (``createHTTPRoute`` in rayservice_controller.go).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from kray.controllers import events
from kray.local.environment import PORTS_ANNOTATION
from kray.local.history import JobHistory
from kray.local.paths import LocalPaths
from kray.local.ports import PortAllocator, port_is_free
from kray.local.serve_routes import ServeRoutes, port_owner, serve_address, slim_event
from kray.local.store import EmbeddedStore
from kray.runtime.informer import Informer
from kray.store import EVENT, RAYCLUSTER, RAYSERVICE, Obj
from tests.local.serve_proxy.support import Upstream

NAMESPACE = "default"
SERVE_CONFIG = "applications:\n  - name: fruit_app\n    import_path: fruit.deployment_graph\n    route_prefix: /fruit\n"
WAIT = 10.0


def rayservice(name: str = "rs", serve_config: str = SERVE_CONFIG) -> Obj:
    template = {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serveConfigV2": serve_config,
            "rayClusterConfig": {"headGroupSpec": {"rayStartParams": {}, "template": template}},
        },
    }


def raycluster(name: str, *, owner: str, serve_port: int) -> Obj:
    template = {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"ray.io/originated-from-crd": "RayService", "ray.io/originated-from-cr-name": owner},
            "annotations": {PORTS_ANNOTATION: f"serve={serve_port}"},
        },
        "spec": {"headGroupSpec": {"rayStartParams": {}, "template": template}},
    }


async def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if value := await check() if asyncio.iscoroutinefunction(check) else check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {WAIT} s: {what}")


@dataclass
class Plane:
    """ServeRoutes fed by informers on the store, as :class:`~kray.local.runtime.LocalControlPlane` wires it."""

    store: EmbeddedStore
    home: Path
    routes: ServeRoutes | None = None
    history: JobHistory | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> ServeRoutes:
        self._stop = asyncio.Event()
        services, clusters = Informer(self.store, RAYSERVICE), Informer(self.store, RAYCLUSTER)
        events_ = Informer(self.store, EVENT, transform=slim_event)
        self.history = JobHistory(LocalPaths(self.home).ensure())
        self.routes = ServeRoutes(
            store=self.store,
            ports=PortAllocator(self.home),
            services=services,
            clusters=clusters,
            events=events_,
            history=self.history,
        )
        self._tasks = [asyncio.create_task(i.run(self._stop)) for i in (services, clusters, events_)]
        self._tasks.append(asyncio.create_task(self.routes.run(self._stop)))
        return self.routes

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), timeout=WAIT)

    async def address(self, name: str = "rs") -> str:
        async def annotated() -> str | None:
            return serve_address(await self.store.get(RAYSERVICE, name, namespace=NAMESPACE))

        found: str = await eventually(annotated, f"{name}'s serve address")
        assert self.routes is not None
        await eventually(lambda: self.routes and self.routes.address(NAMESPACE, name) == found, "the port open")
        return found

    async def set_status(self, name: str = "rs", **status: Any) -> None:
        current = await self.store.get(RAYSERVICE, name, namespace=NAMESPACE)
        await self.store.replace_status(RAYSERVICE, {**current, "status": status})


@pytest.fixture
def clusters() -> Iterator[tuple[Upstream, Upstream]]:
    """Two clusters' Serve proxies, each answering its name."""
    pair = Upstream("blue"), Upstream("green")
    yield pair
    for upstream in pair:
        upstream.stop()


@pytest.fixture
async def plane(store: EmbeddedStore, tmp_path: Path) -> AsyncIterator[Plane]:
    running = Plane(store=store, home=tmp_path / "home")
    await running.start()
    try:
        yield running
    finally:
        with contextlib.suppress(Exception):
            await running.stop()


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


async def answer(client: httpx2.AsyncClient, address: str, path: str = "/") -> str:
    return (await client.get(f"http://{address}{path}")).text


async def serving(plane: Plane, *upstreams: Upstream) -> str:
    """A RayCluster of RayService ``rs`` per upstream (named as it), then ``rs``; its serve address."""
    for upstream in upstreams:
        cluster = raycluster(upstream.name, owner="rs", serve_port=upstream.server_address[1])
        await plane.store.create(RAYCLUSTER, cluster)
    await plane.store.create(RAYSERVICE, rayservice())
    return await plane.address()


def active(name: str, **extra: Any) -> dict[str, Any]:
    return {"rayClusterName": name, **extra}


async def test_the_address_answers_503_until_a_cluster_is_active_then_follows_the_active_one(
    plane: Plane, store: EmbeddedStore, clusters: tuple[Upstream, Upstream]
) -> None:
    blue, green = clusters
    address = await serving(plane, blue, green)
    async with httpx2.AsyncClient(trust_env=False, timeout=5) as client:
        initializing = await client.get(f"http://{address}/")
        assert initializing.status_code == 503
        assert "rs" in initializing.text
        await plane.set_status(activeServiceStatus=active("blue"), pendingServiceStatus=active("green"))
        await eventually(
            lambda: plane.routes and plane.routes.proxy.table(port_owner(NAMESPACE, "rs")).backends, "a route"
        )
        # A pending cluster without trafficRoutedPercent (blue/green) gets nothing before promotion.
        assert {await answer(client, address) for _ in range(20)} == {"blue"}
        await plane.set_status(activeServiceStatus=active("green"), pendingServiceStatus={})

        async def green_answers() -> bool:
            return await answer(client, address) == "green"

        await eventually(green_answers, "green serving after promotion")
        assert {await answer(client, address) for _ in range(20)} == {"green"}


async def test_promotion_under_a_request_loop_loses_no_request_and_a_request_in_flight_ends_where_it_began(
    plane: Plane, store: EmbeddedStore, clusters: tuple[Upstream, Upstream]
) -> None:
    blue, green = clusters
    address = await serving(plane, blue, green)
    await plane.set_status(activeServiceStatus=active("blue"), pendingServiceStatus=active("green"))
    answers: list[str] = []
    failures: list[str] = []
    done = asyncio.Event()

    async def loop() -> None:
        async with httpx2.AsyncClient(trust_env=False, timeout=5) as client:
            while not done.is_set():
                try:
                    response = await client.get(f"http://{address}/")
                except httpx2.HTTPError as error:
                    failures.append(repr(error))
                    continue
                (answers if response.status_code == 200 else failures).append(response.text)

    async with httpx2.AsyncClient(trust_env=False, timeout=10) as slow_client:

        async def blue_answers() -> bool:
            return await answer(slow_client, address) == "blue"

        await eventually(blue_answers, "blue serving")
        loops = [asyncio.create_task(loop()) for _ in range(4)]
        slow = asyncio.create_task(slow_client.get(f"http://{address}/slow?s=1.5"))
        await eventually(blue.slow_started.is_set, "the slow request at blue")
        await asyncio.sleep(0.3)
        await plane.set_status(activeServiceStatus=active("green"), pendingServiceStatus={})
        await eventually(lambda: answers[-5:] == ["green"] * 5, "green answering the loop")
        await asyncio.sleep(0.3)
        done.set()
        await asyncio.gather(*loops)
        in_flight = await slow
    assert failures == []
    assert in_flight.status_code == 200
    assert in_flight.text == "blue"
    assert set(answers) == {"blue", "green"}
    assert set(answers[-20:]) == {"green"}, "nothing new goes to blue after the switch"


async def test_an_incremental_upgrade_splits_by_traffic_routed_percent(
    plane: Plane, store: EmbeddedStore, clusters: tuple[Upstream, Upstream]
) -> None:
    blue, green = clusters
    address = await serving(plane, blue, green)
    owner = port_owner(NAMESPACE, "rs")
    await plane.set_status(
        activeServiceStatus=active("blue", trafficRoutedPercent=70, targetCapacity=100),
        pendingServiceStatus=active("green", trafficRoutedPercent=30, targetCapacity=30),
    )
    await eventually(lambda: plane.routes and len(plane.routes.proxy.table(owner).backends) == 2, "two backends")
    table = {b.address: b.weight for b in plane.routes.proxy.table(owner).backends} if plane.routes else {}
    assert table == {backend_address(blue): 70, backend_address(green): 30}
    async with httpx2.AsyncClient(trust_env=False, timeout=5) as client:
        seen = [await answer(client, address) for _ in range(200)]
    assert 20 < seen.count("green") < 100
    assert seen.count("blue") + seen.count("green") == 200
    await plane.set_status(
        activeServiceStatus=active("blue", trafficRoutedPercent=0, targetCapacity=0),
        pendingServiceStatus=active("green", trafficRoutedPercent=100, targetCapacity=100),
    )
    await eventually(
        lambda: plane.routes and {b.weight for b in plane.routes.proxy.table(owner).backends} == {0, 100}, "all green"
    )
    async with httpx2.AsyncClient(trust_env=False, timeout=5) as client:
        assert {await answer(client, address) for _ in range(30)} == {"green"}


def backend_address(upstream: Upstream) -> str:
    return f"127.0.0.1:{upstream.server_address[1]}"


async def test_the_port_survives_a_restart_and_goes_with_the_rayservice(
    plane: Plane, store: EmbeddedStore, clusters: tuple[Upstream, Upstream]
) -> None:
    blue, _ = clusters
    address = await serving(plane, blue)
    await plane.set_status(activeServiceStatus=active("blue"))
    owner = port_owner(NAMESPACE, "rs")
    assert PortAllocator(plane.home).reservations()[port_of(address)] == owner
    await plane.stop()
    assert port_is_free(port_of(address)), "closed with the server"
    await plane.start()
    assert await plane.address() == address
    async with httpx2.AsyncClient(trust_env=False, timeout=5) as client:

        async def blue_answers() -> bool:
            return await answer(client, address) == "blue"

        await eventually(blue_answers, "blue serving after the restart")
    await store.delete(RAYSERVICE, "rs", namespace=NAMESPACE)
    await eventually(lambda: plane.routes and plane.routes.address(NAMESPACE, "rs") is None, "closed")
    await eventually(lambda: port_is_free(port_of(address)), "the port free")
    assert owner not in PortAllocator(plane.home).reservations().values()


async def test_each_serve_config_put_is_in_history_once_and_outlives_the_clusters(
    plane: Plane, store: EmbeddedStore, clusters: tuple[Upstream, Upstream]
) -> None:
    blue, _ = clusters
    await serving(plane, blue)
    service = await store.get(RAYSERVICE, "rs", namespace=NAMESPACE)
    message = f"Updated serve applications to the RayCluster {NAMESPACE}/blue"
    for _ in range(2):  # what the controller records after each PUT that succeeded
        await events.record(
            store=store,
            involved=service,
            type_="Normal",
            reason="UpdatedServeApplications",
            message=message,
            component="c",
        )
    await events.record(
        store=store, involved=service, type_="Normal", reason="CreatedRayCluster", message="x", component="c"
    )
    assert plane.history is not None
    history = plane.history

    changes = await eventually(
        lambda: (
            len(history.serve_changes(namespace=NAMESPACE, name="rs")) == 2
            and history.serve_changes(namespace=NAMESPACE, name="rs")
        ),
        "two PUTs",
    )
    assert {c.cluster for c in changes} == {"blue"}
    assert changes[0].config_hash == changes[1].config_hash
    assert len(changes[0].config_hash) == 12
    assert changes[0].summary == "fruit_app /fruit"
    await store.delete(RAYCLUSTER, "blue", namespace=NAMESPACE)
    await plane.stop()  # a restart relists every Event: nothing is recorded twice
    await plane.start()
    await plane.address()
    assert [c.event for c in history.serve_changes(namespace=NAMESPACE, name="rs")] == [c.event for c in changes]


async def test_a_stop_before_the_informers_synced_ends_it_at_once(store: EmbeddedStore, tmp_path: Path) -> None:
    """The local control plane may stop before its informers listed (a test's plane lives a second; a busy machine
    delays the first list): the routes must not wait for a sync that no stopped informer will bring (stop gave
    this task 60 s, and a 90 s test timed out)."""
    routes = ServeRoutes(
        store=store,
        ports=PortAllocator(tmp_path),
        services=Informer(store, RAYSERVICE),  # never run: never synced
        clusters=Informer(store, RAYCLUSTER),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(routes.run(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
