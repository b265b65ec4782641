"""Cluster spec changes: in place, blue/green (``NewCluster``), or not at all (``None``).

Expected values from KubeRay's ``rayservice_controller.go``: ``shouldUpdateCluster`` /
``isClusterSpecHashEqual`` (equal hash ⇒ nothing; equal hash of the spec cut to the cluster's
``num-worker-groups`` ⇒ in place; a different ``ray.io/kuberay-version`` on the active cluster ⇒ in
place), ``generateHashWithoutReplicasAndWorkersToDelete`` (replicas, min/max and workersToDelete are not
in the hash, so a replicas-only change leaves the cluster alone), ``shouldPrepareNewCluster`` and
``isZeroDowntimeUpgradeEnabled`` (``upgradeStrategy.type`` wins over ``ENABLE_ZERO_DOWNTIME``),
``reconcilePromotionAndServingStatus`` and ``cleanUpRayClusterInstance`` (delete after
``rayClusterDeletionDelaySeconds``, default 60).
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta

import pytest

from kray.controllers.common import labels as keys
from kray.controllers.rayservice.plan import (
    DeleteCluster,
    EnsureHeadService,
    EnsureServeService,
    Settings,
    UpdateClusterInPlace,
)
from tests.controllers.rayservice.support import WORKER, World, cluster_spec, condition, kinds, manifest


def ready_world(**spec: object) -> World:
    """A RayService whose first cluster is active, Ready and steady."""
    world = World(manifest(**spec))
    world.run(6)
    assert world.active() is not None
    assert world.pending() is None
    return world


def change_cluster(world: World, **changes: object) -> None:
    world.manifest["spec"]["rayClusterConfig"] = cluster_spec(**changes)
    world.manifest["metadata"]["generation"] += 1


def new_image() -> dict[str, object]:
    head = copy.deepcopy(cluster_spec()["headGroupSpec"])
    head["template"]["spec"]["containers"][0]["image"] = "rayproject/ray:2.47.0"
    return {"headGroupSpec": head}


def test_replicas_only_change_leaves_the_cluster_alone() -> None:
    world = ready_world()
    change_cluster(world, workerGroupSpecs=[{**WORKER, "replicas": 3, "minReplicas": 0, "maxReplicas": 9}])
    p = world.step()
    assert p.actions == ()
    assert world.pending() is None


def test_appended_worker_group_updates_the_active_cluster_in_place() -> None:
    world = ready_world()
    active = world.active()
    assert active is not None
    change_cluster(world, workerGroupSpecs=[dict(WORKER), {**WORKER, "groupName": "large"}])
    p = world.step()
    (update,) = [a for a in p.actions if isinstance(a, UpdateClusterInPlace)]
    assert update.name == active
    assert update.body["metadata"]["annotations"][keys.NUM_WORKER_GROUPS] == "2"
    assert [g["groupName"] for g in update.body["spec"]["workerGroupSpecs"]] == ["small", "large"]
    assert world.pending() is None
    assert world.step().actions == ()


def test_in_place_update_keeps_the_clusters_own_suspend() -> None:
    world = ready_world()
    active = world.active()
    assert active is not None
    world.clusters[active] = dataclasses.replace(world.clusters[active], suspend=True)
    change_cluster(world, workerGroupSpecs=[dict(WORKER), {**WORKER, "groupName": "large"}], suspend=False)
    (update,) = [a for a in world.step().actions if isinstance(a, UpdateClusterInPlace)]
    assert update.body["spec"]["suspend"] is True


def test_another_kuberay_version_on_the_active_cluster_is_updated_in_place() -> None:
    world = ready_world()
    world.settings = Settings(kuberay_version="v1.7.1")
    (update,) = [a for a in world.step().actions if isinstance(a, UpdateClusterInPlace)]
    assert update.body["metadata"]["annotations"][keys.KUBERAY_VERSION] == "v1.7.1"


def test_new_cluster_upgrade_switches_services_promotes_and_deletes_the_old_cluster_after_the_delay() -> None:
    world = ready_world()
    old = world.active()
    change_cluster(world, **new_image())
    world.step()
    new = world.pending()
    assert new is not None
    assert new != old
    assert condition(world.status, "UpgradeInProgress") == {
        "status": "True",
        "reason": "BothActivePendingClustersExist",
        "message": "Both active and pending Ray clusters exist",
    }
    assert kinds(world.step()) == ["CreateCluster"]
    # The old cluster keeps serving while the new one deploys.
    assert world.serve_service == old
    world.step()  # label + PUT on the new cluster
    switch = world.step()
    assert [a for a in switch.actions if isinstance(a, (EnsureHeadService, EnsureServeService))] == [
        EnsureHeadService(new),
        EnsureServeService(new),
    ]
    assert world.active() == new
    assert world.pending() is None
    # Next reconcile schedules the old cluster 60 s out; it is deleted only after that.
    scheduled_at = world.now
    world.step()
    assert world.schedule == {old: scheduled_at + timedelta(seconds=60)}
    world.now = scheduled_at + timedelta(seconds=60)
    assert not any(isinstance(a, DeleteCluster) for a in world.step().actions)
    world.now += timedelta(seconds=1)
    assert DeleteCluster(old) in world.step().actions  # type: ignore[arg-type]
    assert set(world.clusters) == {new}


def test_deletion_delay_is_configurable() -> None:
    world = ready_world(rayClusterDeletionDelaySeconds=5)
    old = world.active()
    change_cluster(world, **new_image())
    world.run(5, tick=0.0)
    assert world.active() != old
    world.step()
    world.now += timedelta(seconds=6)
    assert DeleteCluster(old) in world.step().actions  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("strategy", "zero_downtime_env", "new_cluster"),
    [
        (None, True, True),
        (None, False, False),
        ("None", True, False),
        ("NewCluster", False, True),
    ],
)
def test_zero_downtime_strategy(strategy: str | None, zero_downtime_env: bool, new_cluster: bool) -> None:
    spec = {"upgradeStrategy": {"type": strategy}} if strategy else {}
    world = ready_world(**spec)
    world.settings = Settings(enable_zero_downtime=zero_downtime_env)
    change_cluster(world, **new_image())
    p = world.step()
    assert (world.pending() is not None) is new_cluster
    assert not any(isinstance(a, UpdateClusterInPlace) for a in p.actions)


def test_with_upgrades_off_serve_config_changes_still_reach_the_active_cluster() -> None:
    world = ready_world(upgradeStrategy={"type": "None"})
    change_cluster(world, **new_image())
    world.manifest["spec"]["serveConfigV2"] = "applications:\n  - name: other\n    import_path: o.app\n"
    assert kinds(world.step()) == ["PutServeConfig"]
