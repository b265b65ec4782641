"""A Pod as created: ``status.phase`` Pending and ``status.qosClass``, before any kubelet writes a status.

Ray's autoscaler reads ``status`` of every pod of its cluster (``KubeRayNodeProvider``: ``pod["status"]``), so a
pod the runner has not started yet must already carry one, as on the apiserver (pod strategy
``PrepareForCreate``). The QoS classes expected are ``ComputePodQOS``'s (``pkg/apis/core/helper/qos/qos.go``)
on the defaulted pod (a missing request of a limited resource is the limit: ``SetDefaults_Pod``).
"""

from __future__ import annotations

from typing import Any

import pytest

from kray.store import POD, Obj, Store
from tests.store.support import IMAGE

pytestmark = pytest.mark.asyncio


def _container(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> Obj:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": name, "image": IMAGE, "resources": resources}


def _pod(name: str, namespace: str, *containers: Obj, init: tuple[Obj, ...] = (), **extra: Any) -> Obj:
    spec: dict[str, Any] = {"containers": list(containers), **extra}
    if init:
        spec["initContainers"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


BOTH = {"cpu": "1", "memory": "1Gi"}

CASES: list[tuple[str, tuple[Obj, ...], tuple[Obj, ...], str]] = [
    ("none", (_container("a"),), (), "BestEffort"),
    ("zero-requests", (_container("a", requests={"cpu": "0", "memory": "0"}),), (), "BestEffort"),
    ("requests-only", (_container("a", requests=BOTH),), (), "Burstable"),
    ("limits-only-both", (_container("a", limits=BOTH),), (), "Guaranteed"),
    ("equal", (_container("a", requests={"cpu": "1000m", "memory": "1Gi"}, limits=BOTH),), (), "Guaranteed"),
    (
        "limit-above-request",
        (_container("a", requests={"cpu": "500m", "memory": "1Gi"}, limits=BOTH),),
        (),
        "Burstable",
    ),
    ("cpu-limit-only", (_container("a", limits={"cpu": "1"}),), (), "Burstable"),
    ("one-of-two-unlimited", (_container("a", limits=BOTH), _container("b")), (), "Burstable"),
    (
        "two-guaranteed",
        (_container("a", limits=BOTH), _container("b", limits={"cpu": "2", "memory": "1G"})),
        (),
        "Guaranteed",
    ),
    ("init-unlimited", (_container("a", limits=BOTH),), (_container("i"),), "Burstable"),
    ("init-guaranteed", (_container("a", limits=BOTH),), (_container("i", limits=BOTH),), "Guaranteed"),
    ("other-resources-only", (_container("a", limits={"ephemeral-storage": "1Gi"}),), (), "BestEffort"),
]


@pytest.mark.parametrize(("name", "containers", "init", "qos"), CASES, ids=[case[0] for case in CASES])
async def test_created_pod_is_pending_with_its_qos_class(
    store: Store, ns: str, name: str, containers: tuple[Obj, ...], init: tuple[Obj, ...], qos: str
) -> None:
    created = await store.create(POD, _pod(name, ns, *containers, init=init))
    assert created["status"]["phase"] == "Pending"
    assert created["status"]["qosClass"] == qos
    assert (await store.get(POD, name, namespace=ns))["status"]["qosClass"] == qos


async def test_status_in_a_create_request_is_replaced(store: Store, ns: str) -> None:
    request = {**_pod("p", ns, _container("a")), "status": {"phase": "Running", "qosClass": "Guaranteed"}}
    created = await store.create(POD, request)
    assert (created["status"]["phase"], created["status"]["qosClass"]) == ("Pending", "BestEffort")


async def test_status_update_keeps_the_qos_class(store: Store, ns: str) -> None:
    created = await store.create(POD, _pod("p", ns, _container("a", limits=BOTH)))
    patched = await store.patch(POD, "p", namespace=ns, patch={"status": {"podIP": "10.0.0.1"}}, subresource="status")
    assert (patched["status"]["qosClass"], patched["status"]["podIP"]) == ("Guaranteed", "10.0.0.1")
    assert created["status"]["qosClass"] == "Guaranteed"
