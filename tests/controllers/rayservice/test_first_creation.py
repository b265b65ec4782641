"""A new RayService: name a pending cluster, create it, deploy Serve, point the Services, promote.

Expected values from KubeRay's ``rayservice_controller.go``: ``shouldPrepareNewCluster`` (both clusters
nil ⇒ new pending name, written to the status first), ``reconcileRayCluster`` (create the named
cluster), ``constructRayClusterForRayService`` (labels, annotations, owner), ``updateHeadPodServeLabel``
(no head pod is an error: the reconcile stops), ``reconcilePromotionAndServingStatus``.
"""

from __future__ import annotations

from kray.controllers.common import labels as keys
from kray.controllers.rayservice.plan import (
    FINALIZER,
    AddFinalizer,
    CreateCluster,
    EnsureHeadService,
    EnsureServeService,
    Observed,
    PutServeConfig,
    SetHeadServeLabel,
    cluster_hash,
    plan,
)
from tests.controllers.rayservice.support import T0, World, condition, kinds, manifest, service


def test_first_reconcile_names_the_pending_cluster_and_initialises_conditions() -> None:
    p = plan(Observed(service=service(finalizers=False), now=T0, random_suffix="abcde"))
    assert p.actions == (AddFinalizer(),)
    assert p.status is not None
    assert p.status["pendingServiceStatus"]["rayClusterName"] == "demo-abcde"
    assert condition(p.status, "Ready") == {
        "status": "False",
        "reason": "Initializing",
        "message": "RayService is initializing",
    }
    assert condition(p.status, "UpgradeInProgress") == {
        "status": "False",
        "reason": "Initializing",
        "message": "RayService is initializing",
    }
    assert p.status["observedGeneration"] == 1
    assert "serviceStatus" not in p.status  # NotRunning is ""


def test_the_named_cluster_is_created_next_with_kuberay_labels_annotations_and_owner() -> None:
    svc = service(status={"pendingServiceStatus": {"rayClusterName": "demo-abcde"}})
    p = plan(Observed(service=svc, now=T0))
    assert kinds(p) == ["CreateCluster"]
    create = p.actions[0]
    assert isinstance(create, CreateCluster)
    assert create.name == "demo-abcde"
    meta = create.body["metadata"]
    assert meta["labels"] == {keys.ORIGINATED_FROM_CR_NAME: "demo", keys.ORIGINATED_FROM_CRD: "RayService"}
    assert meta["annotations"][keys.HASH_WITHOUT_REPLICAS] == cluster_hash(svc.spec.ray_cluster_config.to_dict())
    assert meta["annotations"][keys.NUM_WORKER_GROUPS] == "1"
    assert meta["annotations"][keys.KUBERAY_VERSION] == "v1.7.0"
    assert meta["ownerReferences"][0] | {} == {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "name": "demo",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert create.body["spec"] == svc.spec.ray_cluster_config.to_dict()
    # updateHeadPodServeLabel finds no head pod for the new cluster: KubeRay errors, no status write.
    assert p.status is None
    assert p.halted
    assert "found 0 head" in p.halted


def test_rayservice_labels_and_annotations_are_copied_to_the_cluster() -> None:
    body = manifest(status={"pendingServiceStatus": {"rayClusterName": "demo-abcde"}}, annotations={"team": "a"})
    body["metadata"]["labels"] = {"app": "fruit"}
    from kray.api.v1.rayservice import RayService

    p = plan(Observed(service=RayService.model_validate(body), now=T0))
    create = p.actions[0]
    assert isinstance(create, CreateCluster)
    assert create.body["metadata"]["labels"]["app"] == "fruit"
    assert create.body["metadata"]["annotations"]["team"] == "a"


def test_a_new_rayservice_becomes_ready_through_serve_config_services_and_promotion() -> None:
    world = World(manifest(finalizers=False))
    first = world.step()
    assert kinds(first) == ["AddFinalizer"]
    pending = world.pending()
    assert pending
    assert pending.startswith("demo-")
    assert kinds(world.step()) == ["CreateCluster"]
    # Head up: label the head, PUT the config (nothing cached), not ready yet (no app reported).
    third = world.step()
    assert third.actions[0] == SetHeadServeLabel(pending, "true")
    put = third.actions[1]
    assert isinstance(put, PutServeConfig)
    assert put.cluster == pending
    assert put.config == {"applications": [{"name": "fruit", "import_path": "fruit.app", "route_prefix": "/fruit"}]}
    # Apps RUNNING: both Services created for the pending cluster, which is promoted in the same reconcile.
    fourth = world.step()
    assert fourth.actions == (EnsureHeadService(pending), EnsureServeService(pending))
    assert world.active() == pending
    assert world.pending() is None
    assert world.status["activeServiceStatus"]["applicationStatuses"] == {"fruit": {"status": "RUNNING"}}
    assert condition(world.status, "UpgradeInProgress")["reason"] == "NoPendingCluster"
    # Endpoints appear: Ready.
    fifth = world.step()
    assert fifth.actions == ()
    assert condition(world.status, "Ready") == {
        "status": "True",
        "reason": "NonZeroServeEndpoints",
        "message": "Number of serve endpoints is greater than 0",
    }
    assert world.status["serviceStatus"] == "Running"
    assert world.status["numServeEndpoints"] == 1
    # Steady: nothing to do, nothing to write.
    steady = world.step()
    assert steady.actions == ()
    assert steady.status is None
    assert FINALIZER in world.manifest["metadata"]["finalizers"]


def test_excluded_head_pod_is_labelled_false_even_when_its_proxy_is_healthy() -> None:
    world = World(manifest(excludeHeadPodFromServeSvc=True))
    world.run(3)
    pending = world.pending()
    assert pending is not None
    head = world.clusters[pending].head_pod
    assert head is not None
    assert head.serve_label == "false"
