"""``numServeEndpoints`` in both places: on Kubernetes the serve Service's EndpointSlices as KubeRay's
``calculateNumServeEndpointsFromSlices`` counts them (ready endpoints, unique pod UIDs: a dual-stack pod is
in two slices); locally, with no EndpointSlices, the ready pods the Service's selector matches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kray.controllers.environment import ENDPOINT_SLICE, KubernetesEnvironment
from kray.local.environment import LocalEnvironment
from kray.local.ports import PortAllocator
from kray.local.store import EmbeddedStore
from kray.store import POD, Obj
from tests.controllers.rayservice.reconcile_support import NAMESPACE

SERVE_SVC: Obj = {
    "metadata": {"name": "rs-serve-svc", "namespace": NAMESPACE},
    "spec": {"selector": {"ray.io/cluster": "rs-a", "ray.io/serve": "true"}},
}


def _slice(name: str, service: str, endpoints: list[dict[str, Any]]) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
    }


def _endpoint(uid: str | None, *, ready: bool) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"addresses": ["10.0.0.1"], "conditions": {"ready": ready}}
    if uid is not None:
        endpoint["targetRef"] = {"kind": "Pod", "name": uid, "uid": uid}
    return endpoint


async def test_kubernetes_counts_unique_ready_pods_of_the_services_slices(store: EmbeddedStore) -> None:
    await store.create(
        ENDPOINT_SLICE, _slice("v4", "rs-serve-svc", [_endpoint("a", ready=True), _endpoint("b", ready=False)])
    )
    await store.create(
        ENDPOINT_SLICE, _slice("v6", "rs-serve-svc", [_endpoint("a", ready=True), _endpoint(None, ready=True)])
    )
    await store.create(ENDPOINT_SLICE, _slice("other", "rs-head-svc", [_endpoint("c", ready=True)]))
    assert await KubernetesEnvironment().serve_endpoints(store=store, service=SERVE_SVC) == 1


async def _pod(store: EmbeddedStore, name: str, labels: dict[str, str], *, ready: bool) -> None:
    pod = await store.create(
        POD,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
            "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.60.0"}]},
        },
    )
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    await store.replace_status(POD, {**pod, "status": status})


async def test_local_counts_ready_pods_the_selector_matches(store: EmbeddedStore, tmp_path: Path) -> None:
    serving = {"ray.io/cluster": "rs-a", "ray.io/serve": "true"}
    await _pod(store, "head", serving, ready=True)
    await _pod(store, "worker-1", serving, ready=True)
    await _pod(store, "worker-2", serving, ready=False)
    await _pod(store, "worker-3", {**serving, "ray.io/serve": "false"}, ready=True)
    await _pod(store, "other", {**serving, "ray.io/cluster": "rs-b"}, ready=True)
    environment = LocalEnvironment(ports=PortAllocator(tmp_path / "ports"))
    assert await environment.serve_endpoints(store=store, service=SERVE_SVC) == 2
