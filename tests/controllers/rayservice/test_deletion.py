"""The finalizer and the deletion of clusters no longer in use.

Expected values from the reference (§4.1: ``ray.io/rayservice-finalizer``, every cluster deleted at once
on delete, then the finalizer removed) and KubeRay's ``cleanUpRayClusterInstance`` (a cluster neither
active nor pending is deleted ``rayClusterDeletionDelaySeconds`` after it is first seen so).
"""

from __future__ import annotations

from datetime import timedelta

from kray.controllers.rayservice.plan import (
    AddFinalizer,
    ClusterView,
    DeleteCluster,
    Observed,
    RemoveFinalizer,
    plan,
)
from tests.controllers.rayservice.support import T0, World, manifest, service


def test_first_reconcile_adds_the_finalizer() -> None:
    assert plan(Observed(service=service(finalizers=False), now=T0)).actions[0] == AddFinalizer()


def test_deleting_removes_every_cluster_first_then_the_finalizer() -> None:
    svc = service(deleting=True, status={"activeServiceStatus": {"rayClusterName": "demo-a"}})
    clusters = {n: ClusterView(name=n) for n in ("demo-a", "demo-b")}
    p = plan(Observed(service=svc, now=T0, clusters=clusters))
    assert p.actions == (DeleteCluster("demo-a"), DeleteCluster("demo-b"))
    assert p.status is None
    going = {n: ClusterView(name=n, deleting=True) for n in clusters}
    assert plan(Observed(service=svc, now=T0, clusters=going)).actions == ()
    done = plan(Observed(service=svc, now=T0))
    assert done.actions == (RemoveFinalizer(),)
    assert done.requeue_after is None


def test_a_whole_rayservice_goes_away() -> None:
    world = World(manifest())
    world.run(6)
    world.manifest["metadata"]["deletionTimestamp"] = "2026-11-25T12:01:00Z"
    world.run(2)
    assert world.clusters == {}
    assert world.gone


def test_a_stray_cluster_is_scheduled_then_deleted_after_sixty_seconds() -> None:
    svc = service(status={"activeServiceStatus": {"rayClusterName": "demo-a"}})
    stray = {"demo-old": ClusterView(name="demo-old")}
    first = plan(Observed(service=svc, now=T0, clusters=stray))
    assert first.deletion_schedule == {"demo-old": T0 + timedelta(seconds=60)}
    assert DeleteCluster("demo-old") not in first.actions
    at_deadline = Observed(
        service=svc, now=T0 + timedelta(seconds=60), clusters=stray, deletion_schedule=first.deletion_schedule
    )
    assert DeleteCluster("demo-old") not in plan(at_deadline).actions
    after = Observed(
        service=svc, now=T0 + timedelta(seconds=61), clusters=stray, deletion_schedule=first.deletion_schedule
    )
    assert plan(after).actions[0] == DeleteCluster("demo-old")
    assert plan(after).keep_serve_configs == frozenset({"demo-a"})
