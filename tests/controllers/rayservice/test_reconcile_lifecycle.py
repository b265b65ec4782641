"""The RayService reconcile against the real embedded store and a fake head: from ``kubectl apply`` to Ready,
steady, and deleted. Expected objects and events follow KubeRay v1.7's ``rayservice_controller.go``
(``Reconcile``, ``reconcileRayCluster``, ``updateHeadPodServeLabel``, ``reconcileServe``,
``reconcileServices``, ``calculateStatus``) and ``common/service.go`` (``BuildServeService``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kray.local.store import EmbeddedStore
from kray.runtime.informer import ObjectKey
from kray.store import POD, RAYCLUSTER, RAYSERVICE, SERVICE
from kray.store.errors import NotFound
from tests.controllers.rayservice.reconcile_support import (
    NAMESPACE,
    Clock,
    FakeHead,
    bring_up,
    rayservice,
    reasons,
    reconciler,
)

KEY = ObjectKey((NAMESPACE, "rs"))


def _condition(obj: dict, type_: str) -> tuple[str, str]:
    found = next(c for c in obj["status"]["conditions"] if c["type"] == type_)
    return found["status"], found["reason"]


async def test_from_apply_to_ready_then_steady_then_deleted(
    store: EmbeddedStore, head: FakeHead, tmp_path: Path
) -> None:
    clock = Clock()
    reconcile = reconciler(store, tmp_path, clock)
    await store.create(RAYSERVICE, rayservice())

    # First pass: the finalizer, and the pending cluster's name chosen (status first, as KubeRay).
    await reconcile(KEY)
    rs = await store.get(RAYSERVICE, "rs", namespace=NAMESPACE)
    assert rs["metadata"]["finalizers"] == ["ray.io/rayservice-finalizer"]
    assert rs["status"]["pendingServiceStatus"]["rayClusterName"] == "rs-x0000"
    assert _condition(rs, "Ready") == ("False", "Initializing")

    # Second pass: the cluster named there, labelled and owned as KubeRay's.
    await reconcile(KEY)
    cluster = await store.get(RAYCLUSTER, "rs-x0000", namespace=NAMESPACE)
    labels = cluster["metadata"]["labels"]
    assert labels["ray.io/originated-from-crd"] == "RayService"
    assert labels["ray.io/originated-from-cr-name"] == "rs"
    assert cluster["metadata"]["ownerReferences"][0]["kind"] == "RayService"
    assert await reasons(store) == ["CreatedRayCluster"]

    # The cluster comes up: the head's proxy answers, so its serve label turns "true"; Serve has no
    # application, so the config is PUT (YAML as JSON, the proxies on the cluster's local serve port).
    await bring_up(store, "rs-x0000", port=head.port)
    clock.advance(2)
    await reconcile(KEY)
    pod = await store.get(POD, "rs-x0000-head", namespace=NAMESPACE)
    assert pod["metadata"]["labels"]["ray.io/serve"] == "true"
    assert [app["name"] for app in head.puts[0]["applications"]] == ["fruit_app", "math_app"]
    assert head.puts[0]["http_options"] == {"host": "127.0.0.1", "port": head.port}
    assert await reasons(store) == ["CreatedRayCluster", "UpdatedHeadPodServeLabel", "UpdatedServeApplications"]

    # Every application RUNNING: the Services point at the cluster and it is promoted to active.
    clock.advance(2)
    await reconcile(KEY)
    serve_svc = await store.get(SERVICE, "rs-serve-svc", namespace=NAMESPACE)
    assert serve_svc["spec"]["selector"] == {"ray.io/cluster": "rs-x0000", "ray.io/serve": "true"}
    assert serve_svc["metadata"]["labels"]["ray.io/serve"] == "rs-serve"
    assert [p["name"] for p in serve_svc["spec"]["ports"]] == ["serve"]
    head_svc = await store.get(SERVICE, "rs-head-svc", namespace=NAMESPACE)
    assert head_svc["spec"]["selector"]["ray.io/cluster"] == "rs-x0000"
    assert head_svc["metadata"]["ownerReferences"][0]["kind"] == "RayService"
    rs = await store.get(RAYSERVICE, "rs", namespace=NAMESPACE)
    assert rs["status"]["activeServiceStatus"]["rayClusterName"] == "rs-x0000"
    apps = rs["status"]["activeServiceStatus"]["applicationStatuses"]
    assert {name: app["status"] for name, app in apps.items()} == {"fruit_app": "RUNNING", "math_app": "RUNNING"}

    # Next pass counts the ready pod behind the serve Service: Ready, NonZeroServeEndpoints.
    clock.advance(2)
    await reconcile(KEY)
    rs = await store.get(RAYSERVICE, "rs", namespace=NAMESPACE)
    assert rs["status"]["numServeEndpoints"] == 1
    assert _condition(rs, "Ready") == ("True", "NonZeroServeEndpoints")
    assert _condition(rs, "UpgradeInProgress") == ("False", "NoPendingCluster")

    # Steady: nothing to write, nothing PUT again.
    version = rs["metadata"]["resourceVersion"]
    for _ in range(3):
        clock.advance(2)
        await reconcile(KEY)
    assert (await store.get(RAYSERVICE, "rs", namespace=NAMESPACE))["metadata"]["resourceVersion"] == version
    assert len(head.puts) == 1

    # Deleted: every cluster goes at once; once none is left, the finalizer.
    await store.delete(RAYSERVICE, "rs", namespace=NAMESPACE)
    await reconcile(KEY)
    with pytest.raises(NotFound):
        await store.get(RAYCLUSTER, "rs-x0000", namespace=NAMESPACE)
    assert (await store.get(RAYSERVICE, "rs", namespace=NAMESPACE))["metadata"]["finalizers"]
    result = await reconcile(KEY)
    assert result.requeue_after is None
    with pytest.raises(NotFound):
        await store.get(RAYSERVICE, "rs", namespace=NAMESPACE)
    assert "DeletedRayCluster" in await reasons(store)
    assert KEY not in reconcile.memories.by_service


async def test_a_config_change_is_put_again_in_place(store: EmbeddedStore, head: FakeHead, tmp_path: Path) -> None:
    """``checkIfNeedSubmitServeApplications``: a serveConfigV2 differing from the cached one is PUT to the
    active cluster, with no new cluster (only the Serve config changed)."""
    clock = Clock()
    reconcile = reconciler(store, tmp_path, clock)
    await store.create(RAYSERVICE, rayservice())
    await reconcile(KEY)
    await reconcile(KEY)
    await bring_up(store, "rs-x0000", port=head.port)
    for _ in range(3):
        clock.advance(2)
        await reconcile(KEY)
    assert len(head.puts) == 1
    rs = await store.get(RAYSERVICE, "rs", namespace=NAMESPACE)
    changed = rs["spec"]["serveConfigV2"].replace("/calc", "/math")
    await store.replace(RAYSERVICE, {**rs, "spec": {**rs["spec"], "serveConfigV2": changed}})
    clock.advance(2)
    await reconcile(KEY)
    assert len(head.puts) == 2
    assert head.puts[1]["applications"][1]["route_prefix"] == "/math"
    names = [c["metadata"]["name"] for c in (await store.list(RAYCLUSTER, namespace=NAMESPACE)).items]
    assert names == ["rs-x0000"]
