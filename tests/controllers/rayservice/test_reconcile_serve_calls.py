"""How the RayService reconcile talks to a head: Serve API calls spaced per cluster, a failed PUT stopping
the pass with KubeRay's Warning Event, and ``excludeHeadPodFromServeSvc`` (no proxy probe, label "false").
KubeRay's ``reconcileServe``/``updateServeDeployment``/``updateHeadPodServeLabel`` (``rayservice_controller.go``).
"""

from __future__ import annotations

from pathlib import Path

from kray.local.store import EmbeddedStore
from kray.runtime.informer import ObjectKey
from kray.store import EVENT, POD, RAYSERVICE
from tests.controllers.rayservice.reconcile_support import (
    NAMESPACE,
    Clock,
    FakeHead,
    bring_up,
    rayservice,
    reconciler,
)

KEY = ObjectKey((NAMESPACE, "rs"))
CLUSTER = "rs-x0000"


async def test_serve_calls_are_spaced_to_one_per_cluster_per_interval(
    store: EmbeddedStore, head: FakeHead, tmp_path: Path
) -> None:
    clock = Clock()
    reconcile = reconciler(store, tmp_path, clock)
    await store.create(RAYSERVICE, rayservice())
    await reconcile(KEY)
    await reconcile(KEY)
    await bring_up(store, CLUSTER, port=head.port)
    await reconcile(KEY)  # GET (nothing deployed), PUT; the PUT makes that answer stale
    await reconcile(KEY)  # GET again: the applications the PUT deployed
    assert (head.gets, len(head.puts), head.healthz) == (2, 1, 1)
    for _ in range(10):  # a burst of watch events within one interval asks nothing more
        clock.advance(0.1)
        await reconcile(KEY)
    assert (head.gets, head.healthz) == (2, 1)
    clock.advance(2)
    for _ in range(5):
        await reconcile(KEY)
    assert (head.gets, head.healthz) == (3, 2)
    assert len(head.puts) == 1


async def test_a_failed_put_records_a_warning_and_is_tried_again(
    store: EmbeddedStore, head: FakeHead, tmp_path: Path
) -> None:
    clock = Clock()
    reconcile = reconciler(store, tmp_path, clock)
    await store.create(RAYSERVICE, rayservice())
    await reconcile(KEY)
    await reconcile(KEY)
    await bring_up(store, CLUSTER, port=head.port)
    head.put_status = 500
    result = await reconcile(KEY)
    assert result.requeue_after == 2.0
    warnings = [e for e in (await store.list(EVENT, namespace=NAMESPACE)).items if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["FailedToUpdateServeApplications"]
    assert warnings[0]["message"].startswith(f"Failed to update serve applications to the RayCluster default/{CLUSTER}")
    assert "RuntimeError: boom" in warnings[0]["message"]
    head.put_status = 200
    clock.advance(2)
    await reconcile(KEY)  # nothing was cached for the cluster: PUT again
    assert len(head.puts) == 1


async def test_exclude_head_pod_never_probes_and_keeps_the_head_out(
    store: EmbeddedStore, head: FakeHead, tmp_path: Path
) -> None:
    clock = Clock()
    reconcile = reconciler(store, tmp_path, clock)
    await store.create(RAYSERVICE, rayservice(excludeHeadPodFromServeSvc=True))
    await reconcile(KEY)
    await reconcile(KEY)
    await bring_up(store, CLUSTER, port=head.port)
    for _ in range(4):
        clock.advance(2)
        await reconcile(KEY)
    assert head.healthz == 0
    pod = await store.get(POD, f"{CLUSTER}-head", namespace=NAMESPACE)
    assert pod["metadata"]["labels"]["ray.io/serve"] == "false"
    rs = await store.get(RAYSERVICE, "rs", namespace=NAMESPACE)
    # Serve runs, the Services exist, but no pod of the cluster is labelled to serve: zero endpoints.
    assert rs["status"]["activeServiceStatus"]["rayClusterName"] == CLUSTER
    assert "numServeEndpoints" not in rs["status"]  # 0, omitted as KubeRay's omitempty
    ready = next(c for c in rs["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Initializing")
