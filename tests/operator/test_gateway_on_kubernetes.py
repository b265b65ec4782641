"""The RayService reconcile writes KubeRay's Gateway API objects to a real kube-apiserver with the Gateway CRDs.

``ray-service.incremental-upgrade.yaml`` (``NewClusterWithIncrementalUpgrade``, gatewayClassName ``istio``) is
reconciled by kray's RayService reconciler as the operator wires it (``Settings(gateway_api=True)``, the
Kubernetes environment) against the test apiserver, with the CRDs of ``sigs.k8s.io/gateway-api`` v1.4.0
installed. No Ray runs here: the Serve API and proxy of the heads are a fake on loopback (the environment's
dashboard and proxy addresses point there), and what the RayCluster controller and a Gateway controller would
write (head pod, ``HeadPodReady``, the Gateway's and route's conditions) the test writes. Expected objects are
KubeRay v1.5.0's (``createGateway``, ``createHTTPRoute``, ``reconcilePerClusterServeService`` + ``BuildServeService``
in rayservice_controller.go and common/service.go), and the weights those of ``calculateTrafficRoutedPercent``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray._kube.store import KubeStore
from kray.controllers.environment import KubernetesEnvironment
from kray.controllers.rayservice.plan import Settings
from kray.controllers.rayservice.reconcile import RayServiceReconciler
from kray.store import GATEWAY, HTTPROUTE, POD, RAYCLUSTER, RAYSERVICE, SERVICE, Obj, Resource
from kray.store.errors import Conflict, KindNotServed, NotFound
from tests.controllers.rayservice.reconcile_support import Clock, FakeHead, serve_fake

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]
SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "kuberay-samples" / "ray-service.incremental-upgrade.yaml"
NAME = "rayservice-incremental-upgrade"


class FakeHeadEnvironment(KubernetesEnvironment):
    """KubeRay's environment, but every head's dashboard and Serve proxy is the fake on loopback."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def dashboard_address(self, *, cluster: Any, head_service: Mapping[str, Any] | None) -> str | None:
        return f"127.0.0.1:{self.port}"

    def serve_proxy_address(self, *, cluster: Any, head_pod: Mapping[str, Any]) -> str | None:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def head() -> AsyncIterator[FakeHead]:
    async for h in serve_fake(FakeHead()):
        yield h


async def _get(store: KubeStore, resource: Resource, name: str, namespace: str) -> Obj | None:
    try:
        return await store.get(resource, name, namespace=namespace)
    except NotFound:
        return None


async def _head_up(store: KubeStore, namespace: str, cluster: str) -> None:
    """What the RayCluster controller (and kubelet) would have done for ``cluster``: a Ready head pod and the
    cluster's HeadPodReady condition."""
    if await _get(store, POD, f"{cluster}-head", namespace) is None:
        labels = {"ray.io/cluster": cluster, "ray.io/node-type": "head"}
        container = {"name": "ray-head", "image": "rayproject/ray:2.51.0"}
        pod = {"metadata": {"name": f"{cluster}-head", "namespace": namespace, "labels": labels}}
        pod = await store.create(POD, {"apiVersion": "v1", "kind": "Pod", **pod, "spec": {"containers": [container]}})
        ready = [{"type": "Ready", "status": "True"}]
        status = {"phase": "Running", "conditions": ready, "podIP": "10.0.0.9"}
        for _ in range(10):  # the scheduler writes the pod's PodScheduled condition meanwhile
            with contextlib.suppress(Conflict):
                await store.patch(POD, pod["metadata"]["name"], namespace=namespace, patch={"status": status},
                                  subresource="status")  # fmt: skip
                break
            await asyncio.sleep(0.2)
    raw = await store.get(RAYCLUSTER, cluster, namespace=namespace)
    condition = {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady", "message": ""}
    condition["lastTransitionTime"] = "2026-11-25T12:00:00Z"
    await store.replace_status(RAYCLUSTER, {**raw, "status": {"state": "ready", "conditions": [condition]}})


def _status(raw: Obj) -> dict[str, Any]:
    return dict(raw.get("status") or {})


async def test_incremental_sample_gets_kuberays_gateway_route_and_per_cluster_services(
    k8s_control_plane: Any, ray_crds: Any, gateway_crds: Any, k8s_namespace: str, head: FakeHead
) -> None:
    ns = k8s_namespace
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    clock = Clock()
    reconcile = RayServiceReconciler(
        store=store,
        environment=FakeHeadEnvironment(head.port),
        settings=Settings(gateway_api=True),
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
    )
    try:
        manifest = yaml.safe_load(SAMPLE.read_text())
        manifest["metadata"]["namespace"] = ns
        rs = await store.create(RAYSERVICE, manifest)

        async def step(times: int = 1) -> Obj:
            for _ in range(times):
                await reconcile((ns, NAME))
                clock.advance(2)
            return await store.get(RAYSERVICE, NAME, namespace=ns)

        rs = await step(3)
        gateway = await store.get(GATEWAY, f"{NAME}-gateway", namespace=ns)
        owner = gateway["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o.get("controller")) for o in owner] == [
            ("RayService", NAME, rs["metadata"]["uid"], True)
        ]
        assert gateway["spec"]["gatewayClassName"] == "istio"
        assert [(x["name"], x["protocol"], x["port"]) for x in gateway["spec"]["listeners"]] == [("http", "HTTP", 80)]
        first = _status(rs)["pendingServiceStatus"]["rayClusterName"]
        assert _status(rs)["pendingServiceStatus"]["targetCapacity"] == 100, "no active cluster: full capacity"
        assert await _get(store, HTTPROUTE, f"{NAME}-httproute", ns) is None, "no route before an active cluster"

        await _head_up(store, ns, first)
        rs = await step(1)  # halted before, as KubeRay's updateHeadPodServeLabel: "found 0 head"
        svc = await store.get(SERVICE, f"{first}-serve-svc", namespace=ns)
        cluster = await store.get(RAYCLUSTER, first, namespace=ns)
        assert svc["metadata"]["labels"] == {
            "ray.io/originated-from-cr-name": first,
            "ray.io/originated-from-crd": "RayService",
            "ray.io/serve": f"{first}-serve",
        }
        assert svc["spec"]["selector"] == {"ray.io/cluster": first, "ray.io/serve": "true"}
        assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("serve", 8000)]
        assert [(o["kind"], o["uid"]) for o in svc["metadata"]["ownerReferences"]] == [
            ("RayCluster", cluster["metadata"]["uid"])
        ]

        rs = await step(6)
        assert _status(rs)["activeServiceStatus"]["rayClusterName"] == first, _status(rs)
        route = await store.get(HTTPROUTE, f"{NAME}-httproute", namespace=ns)
        assert [o["kind"] for o in route["metadata"]["ownerReferences"]] == ["RayService"]
        assert [(p["name"], p.get("namespace")) for p in route["spec"]["parentRefs"]] == [(f"{NAME}-gateway", ns)]
        (rule,) = route["spec"]["rules"]
        assert [m["path"] for m in rule["matches"]] == [{"type": "PathPrefix", "value": "/"}]
        assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [(f"{first}-serve-svc", 8000, 100)]
        assert _status(rs)["activeServiceStatus"]["trafficRoutedPercent"] == 100
        assert await _get(store, SERVICE, f"{NAME}-serve-svc", ns) is None, "incremental: no <rs>-serve-svc"
        assert await _get(store, SERVICE, f"{NAME}-head-svc", ns) is not None

        # An upgrade: the route gets the new cluster at weight 0; nothing moves while the Gateway is not ready.
        before = len(head.puts)
        spec = dict(rs["spec"])
        spec["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = (
            "rayproject/ray:2.52.0"
        )
        await store.replace(RAYSERVICE, {**rs, "spec": spec})
        rs = await step(2)
        second = _status(rs)["pendingServiceStatus"]["rayClusterName"]
        await _head_up(store, ns, second)
        rs = await step(4)
        route = await store.get(HTTPROUTE, f"{NAME}-httproute", namespace=ns)
        weights = [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]
        assert weights == [(f"{first}-serve-svc", 100), (f"{second}-serve-svc", 0)]
        assert not _status(rs)["pendingServiceStatus"].get("targetCapacity"), "capacity waits for a ready Gateway"
        assert not [put for put in head.puts[before:] if put.get("target_capacity")], head.puts[before:]

        # A Gateway controller accepts both: capacity rises by maxSurgePercent, then traffic by stepSizePercent.
        gateway = await store.get(GATEWAY, f"{NAME}-gateway", namespace=ns)
        accepted = [
            {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": "2026-11-25T12:00:00Z"}
            for t in ("Accepted", "Programmed")
        ]
        await store.replace_status(GATEWAY, {**gateway, "status": {"conditions": accepted}})
        route = await store.get(HTTPROUTE, f"{NAME}-httproute", namespace=ns)
        resolved = [{**accepted[0]}, {**accepted[0], "type": "ResolvedRefs", "reason": "ResolvedRefs"}]
        parent = {"parentRef": {"name": f"{NAME}-gateway"}, "controllerName": "example.com/gw", "conditions": resolved}
        await store.replace_status(HTTPROUTE, {**route, "status": {"parents": [parent]}})
        rs = await step(2)
        assert _status(rs)["pendingServiceStatus"].get("targetCapacity") == 10, "maxSurgePercent 10"
        clock.advance(30)  # intervalSeconds since the weights last moved
        rs = await step(2)
        route = await store.get(HTTPROUTE, f"{NAME}-httproute", namespace=ns)
        weights = [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]
        assert weights == [(f"{first}-serve-svc", 90), (f"{second}-serve-svc", 10)], _status(rs)
        assert _status(rs)["pendingServiceStatus"]["trafficRoutedPercent"] == 10
        assert any(put.get("target_capacity") == 10 for put in head.puts)
    finally:
        await store.close()


async def test_a_kind_the_server_does_not_serve_is_told_apart_from_a_missing_object(
    k8s_control_plane: Any, k8s_namespace: str
) -> None:
    """Without the Gateway API CRDs the apiserver serves no ``gateways``: a KindNotServed, which the RayService
    reconcile turns into a halt before any status write (as KubeRay's reconcileGateway error)."""
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    try:
        missing = Resource("nothing.kray.dev/v1", "Nothing", "nothings")
        with pytest.raises(KindNotServed):
            await store.get(missing, "x", namespace=k8s_namespace)
        with pytest.raises(KindNotServed):
            await store.create(missing, {"apiVersion": "nothing.kray.dev/v1", "kind": "Nothing",
                                         "metadata": {"name": "x", "namespace": k8s_namespace}})  # fmt: skip
        with pytest.raises(NotFound) as plain:
            await store.get(SERVICE, "absent", namespace=k8s_namespace)
        assert not isinstance(plain.value, KindNotServed)
    finally:
        await store.close()
