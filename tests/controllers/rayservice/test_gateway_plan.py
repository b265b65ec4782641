"""The Gateway API objects the planner asks for on Kubernetes (``Settings.gateway_api``), and none locally.

Expected values from KubeRay v1.5.0's ``rayservice_controller.go``: ``createGateway`` (``<rs>-gateway``, the
``gatewayClassName`` of ``clusterUpgradeOptions``, one HTTP listener ``http`` on port 80), ``createHTTPRoute``
(``<rs>-httproute``, parent that Gateway in the RayService's namespace, ``PathPrefix /``, one backendRef per
existing cluster to ``<cluster>-serve-svc`` on its serve port, active first, weights from
``calculateTrafficRoutedPercent``; no route before the active cluster exists), ``reconcilePerClusterServeService``
(for the active and the pending cluster); ``IsGatewayReady``/``IsHTTPRouteReady`` for readiness (utils/util.go).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kray.controllers.rayservice.plan import (
    EnsureClusterServeService,
    EnsureGateway,
    EnsureHTTPRoute,
    Plan,
    Settings,
    plan,
)
from kray.controllers.rayservice.plan.gateway import gateway_ready, route_ready, spec_holds
from tests.controllers.rayservice.support import World
from tests.controllers.rayservice.test_incremental_wired import incremental, set_image

ON_KUBERNETES = Settings(gateway_api=True)
IMAGES = ("rayproject/ray:2.46.0", "rayproject/ray:2.47.0", "rayproject/ray:2.48.0")


def _of(p: Plan, kind: type[Any]) -> list[Any]:
    return [a for a in p.actions if isinstance(a, kind)]


def _backends(route: EnsureHTTPRoute) -> list[dict[str, Any]]:
    rules = route.body["spec"]["rules"]
    assert len(rules) == 1
    return list(rules[0]["backendRefs"])


def test_first_cluster_gets_the_gateway_then_a_route_with_all_traffic() -> None:
    world = World(manifest=incremental(), settings=ON_KUBERNETES)
    world.manifest["metadata"].update(name="svc", namespace="ns", uid="rs-uid")
    first = world.step()
    (gateway,) = _of(first, EnsureGateway)
    assert gateway.body == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": "svc-gateway",
            "namespace": "ns",
            "ownerReferences": [
                {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayService",
                    "name": "svc",
                    "uid": "rs-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]},
    }
    assert not _of(first, EnsureHTTPRoute), "no route while there is no active cluster"
    plans = world.run(8)
    assert world.active()
    route = _of(plans[-1], EnsureHTTPRoute)[-1]
    assert route.body["metadata"]["name"] == "svc-httproute"
    assert route.body["spec"]["parentRefs"] == [{"name": "svc-gateway", "namespace": "ns"}]
    assert route.body["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert _backends(route) == [{"name": f"{world.active()}-serve-svc", "namespace": "ns", "port": 8000, "weight": 100}]
    assert [a.cluster for a in _of(plans[-1], EnsureClusterServeService)] == [world.active()]
    assert world.status["activeServiceStatus"]["trafficRoutedPercent"] == 100


def test_locally_no_gateway_api_object_is_asked_for() -> None:
    world = World(manifest=incremental())  # Settings() as the local runtime has them
    plans = world.run(8)
    set_image(world, IMAGES[1])
    plans += world.run(30)
    asked = [a for p in plans for a in p.actions if isinstance(a, EnsureGateway | EnsureHTTPRoute)]
    assert not asked
    assert not [a for p in plans for a in p.actions if isinstance(a, EnsureClusterServeService)]


def test_capacity_waits_for_a_ready_gateway_and_route() -> None:
    """``checkIfNeedTargetCapacityUpdate``: no target_capacity step while the Gateway or route is not ready."""
    world = World(manifest=incremental(step=50, interval=1, surge=50), settings=ON_KUBERNETES)
    world.run(8)
    set_image(world, IMAGES[1])
    for _ in range(20):
        p = plan(dataclasses.replace(world.observe(), gateway_ready=False))
        world.apply(p)
        world.now += timedelta(seconds=2)
    assert world.pending()
    assert (world.status["pendingServiceStatus"].get("trafficRoutedPercent") or 0) == 0
    for _ in range(40):
        world.step()
        world.now += timedelta(seconds=2)
    assert not world.pending(), f"the upgrade finishes once both are ready: {world.status}"


ops = st.lists(
    st.one_of(
        st.tuples(st.just("reconcile"), st.sampled_from([1.0, 2.0, 5.0, 30.0])),
        st.tuples(st.just("image"), st.sampled_from(IMAGES)),
        st.tuples(st.just("apps"), st.sampled_from(["RUNNING", "DEPLOYING"])),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=ops, step=st.integers(1, 100), surge_extra=st.integers(0, 100), interval=st.integers(1, 40))
def test_route_weights_sum_to_100_and_traffic_moves_only_to_a_ready_cluster(
    history: list[tuple[Any, ...]], step: int, surge_extra: int, interval: int
) -> None:
    world = World(manifest=incremental(step=step, interval=interval, surge=min(100, step + surge_extra)))
    world.settings = ON_KUBERNETES
    world.run(8)
    last: dict[str, int] = {}
    for op in history:
        if op[0] == "image":
            set_image(world, op[1])
            continue
        if op[0] == "apps":
            world.app_state = op[1]
            continue
        observed = world.observe()
        p = plan(observed)
        world.apply(p)
        world.now += timedelta(seconds=op[1])
        for route in _of(p, EnsureHTTPRoute):
            backends = _backends(route)
            assert sum(b["weight"] for b in backends) == 100, backends
            assert {b["name"].removesuffix("-serve-svc") for b in backends} <= set(observed.clusters)
            for b in backends:
                cluster = b["name"].removesuffix("-serve-svc")
                apps = (observed.clusters[cluster].serve_details or {}).get("applications") or {}
                ready = bool(apps) and all(a["status"] == "RUNNING" for a in apps.values())
                if b["weight"] > last.get(cluster, 0) and b is not backends[0]:
                    assert ready, f"traffic moved to {cluster}, whose Serve is not ready: {apps}"
                last[cluster] = b["weight"]
    # A reconcile may halt (a just-created cluster has no head pod yet, as KubeRay's does), not three in a row.
    assert any(_of(p, EnsureHTTPRoute) for p in world.run(3)), "an active cluster has its route"


def test_readiness_is_read_from_the_status_as_kuberay_reads_it() -> None:
    gateway = {"metadata": {"name": "svc-gateway", "namespace": "ns"}, "status": {"conditions": []}}
    assert not gateway_ready(gateway)
    gateway["status"]["conditions"] = [{"type": "Accepted", "status": "True"}]
    assert not gateway_ready(gateway), "Accepted alone is not ready: Programmed too"
    gateway["status"]["conditions"].append({"type": "Programmed", "status": "True"})
    assert gateway_ready(gateway)
    both = [{"type": "Accepted", "status": "True"}, {"type": "ResolvedRefs", "status": "True"}]
    other = {"parentRef": {"name": "svc-gateway", "namespace": "elsewhere"}, "conditions": both}
    route: dict[str, Any] = {"status": {"parents": [other]}}
    assert not route_ready(gateway, route), "a parent entry for another namespace's Gateway does not count"
    route["status"]["parents"].append({"parentRef": {"name": "svc-gateway"}, "conditions": both[:1]})
    assert not route_ready(gateway, route), "ResolvedRefs is needed too"
    route["status"]["parents"].append({"parentRef": {"name": "svc-gateway"}, "conditions": both})
    assert route_ready(gateway, route)


def test_a_route_is_ready_only_once_the_gateway_reports_its_current_generation() -> None:
    """The weights of generation 3 are not in effect while the gateway's conditions speak of generation 2: the
    next capacity step (which relies on them) waits."""
    gateway = {"metadata": {"name": "svc-gateway", "namespace": "ns"}}

    def route(observed: int | None) -> dict[str, Any]:
        conditions = [{"type": t, "status": "True"} for t in ("Accepted", "ResolvedRefs")]
        if observed is not None:
            for condition in conditions:
                condition["observedGeneration"] = observed
        parent = {"parentRef": {"name": "svc-gateway"}, "conditions": conditions}
        return {"metadata": {"generation": 3}, "status": {"parents": [parent]}}

    assert not route_ready(gateway, route(2)), "conditions of the previous generation"
    assert route_ready(gateway, route(3))
    assert route_ready(gateway, route(None)), "a gateway that writes no observedGeneration: conditions alone"


def test_api_server_defaults_are_no_change_but_a_new_weight_is() -> None:
    wanted = {"rules": [{"backendRefs": [{"name": "a-serve-svc", "port": 8000, "weight": 90}]}]}
    defaulted = {"rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": "a-serve-svc", "port": 8000,
                                              "weight": 90}], "matches": []}]}  # fmt: skip
    assert spec_holds(defaulted, wanted)
    moved = {"rules": [{"backendRefs": [{"name": "a-serve-svc", "port": 8000, "weight": 80}]}]}
    assert not spec_holds(defaulted, moved)
    assert not spec_holds({"rules": []}, wanted)
