"""``NewClusterWithIncrementalUpgrade`` through :func:`plan`, reconcile after reconcile (no processes).

Expected values from KubeRay's ``rayservice_controller.go``: the pending cluster's ``target_capacity``
rises by ``maxSurgePercent`` (``reconcileServeTargetCapacity``), traffic follows by ``stepSizePercent`` per
``intervalSeconds`` never beyond that capacity (``calculateTrafficRoutedPercent``), then the active
cluster's capacity falls; promotion once the active cluster is at 0 and the pending one at 100 with all the
traffic (``reconcilePromotionAndServingStatus``). The Services stay on the active cluster throughout
(``reconcileServicesToReadyCluster`` skips the switch during an incremental upgrade). Rollback as KubeRay
v1.7's user guide describes it (A -> B -> A: capacity back to 100, traffic back, pending cluster dropped).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from kray.controllers.rayservice.plan import DeleteCluster, PutServeConfig
from tests.controllers.rayservice.support import World, cluster_spec, condition, manifest

NEW_IMAGE = "rayproject/ray:2.47.0"


def incremental(*, step: int = 25, interval: int = 10, surge: int = 50) -> dict[str, Any]:
    spec = cluster_spec(enableInTreeAutoscaling=True)
    return manifest(
        cluster=spec,
        rayClusterDeletionDelaySeconds=5,
        upgradeStrategy={
            "type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {
                "gatewayClassName": "istio",
                "stepSizePercent": step,
                "intervalSeconds": interval,
                "maxSurgePercent": surge,
            },
        },
    )


def settled(**kwargs: int) -> World:
    world = World(manifest=incremental(**kwargs))
    world.run(8)
    assert world.active()
    assert not world.pending()
    return world


def set_image(world: World, image: str) -> None:
    for container in world.manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"]:
        container["image"] = image


def weights(world: World) -> tuple[int | None, int | None]:
    status = world.status
    return (
        (status.get("activeServiceStatus") or {}).get("trafficRoutedPercent"),
        (status.get("pendingServiceStatus") or {}).get("trafficRoutedPercent"),
    )


def test_first_cluster_is_promoted_at_full_capacity_with_all_traffic() -> None:
    world = settled()
    active = world.status["activeServiceStatus"]
    assert active["targetCapacity"] == 100
    assert active["trafficRoutedPercent"] == 100
    assert world.serve_service == world.active()


def test_upgrade_steps_capacity_then_traffic_then_promotes() -> None:
    world = settled(step=25, interval=10, surge=50)
    old = world.active()
    set_image(world, NEW_IMAGE)
    seen: list[tuple[int | None, int | None, int | None, int | None]] = []
    for _ in range(80):
        world.step()
        status = world.status
        act, pend = status.get("activeServiceStatus") or {}, status.get("pendingServiceStatus") or {}
        if pend.get("rayClusterName"):
            assert world.serve_service == old, "the Services stay on the active cluster during the upgrade"
            seen.append((act.get("targetCapacity"), pend.get("targetCapacity"), *weights(world)))
        if world.active() != old and not world.pending():
            break
        world.now += timedelta(seconds=2)
    assert world.active() != old
    assert world.pending() is None
    final = world.status["activeServiceStatus"]
    assert (final["targetCapacity"], final["trafficRoutedPercent"]) == (100, 100)
    # KubeRay's phases with maxSurge 50, step 25: pending capacity 50; traffic 25, 50 (capped by capacity);
    # active capacity 50; pending 100; traffic 75, 100; active 0; promotion.
    pending_traffic = [p for _, _, _, p in seen if p is not None]
    assert pending_traffic == sorted(pending_traffic), "traffic to the new cluster only grows"
    assert {25, 50, 75, 100} <= set(pending_traffic)
    capacities = [(a, p) for a, p, _, _ in seen if a is not None and p is not None]
    assert (100, 50) in capacities
    assert (50, 50) in capacities
    assert (50, 100) in capacities
    for _act_cap, pend_cap, act_w, pend_w in seen:
        if act_w is not None and pend_w is not None:
            assert act_w + pend_w == 100
        if pend_w is not None and pend_cap is not None:
            assert pend_w <= pend_cap, "no traffic beyond the pending cluster's capacity"
    assert world.capacity[world.active() or ""] == 100
    world.run(10, tick=2.0)
    assert old not in world.clusters, "the old cluster goes after rayClusterDeletionDelaySeconds"


def test_the_active_capacity_falls_only_once_the_traffic_has_settled() -> None:
    """kray, not KubeRay: the gateway (locally, kray's serve address) takes in new weights a moment after the
    route or status says them; the active cluster keeps its capacity for TRAFFIC_SETTLE_SECONDS after each move."""
    world = settled(step=50, interval=1, surge=50)
    old = world.active() or ""
    set_image(world, NEW_IMAGE)
    moved_at = None
    drops: list[float] = []
    last_weights = weights(world)
    last_capacity: int | None = 100
    for _ in range(120):
        world.step()
        now_weights = weights(world)
        if now_weights != last_weights and world.pending():
            moved_at, last_weights = world.now, now_weights
        capacity = world.capacity.get(old)  # what the old cluster's Serve was last told
        if capacity is not None and last_capacity is not None and capacity < last_capacity:
            assert moved_at is not None
            drops.append((world.now - moved_at).total_seconds())
        last_capacity = capacity
        if capacity == 0:
            break
        world.now += timedelta(seconds=1)
    assert len(drops) == 2, f"100 -> 50 -> 0 expected; drops {drops}, status {world.status}"
    assert all(5.0 <= waited <= 7.0 for waited in drops), drops


def _run_until(world: World, done: Any, *, limit: int = 120) -> None:
    for _ in range(limit):
        world.step()
        if done(world):
            return
        world.now += timedelta(seconds=2)
    raise AssertionError(f"not reached in {limit} reconciles; status {world.status}")


def test_reverting_the_spec_midway_rolls_back_to_the_active_cluster() -> None:
    world = settled(step=25, interval=10, surge=50)
    old = world.active()
    original = copy.deepcopy(world.manifest["spec"]["rayClusterConfig"])
    set_image(world, NEW_IMAGE)
    _run_until(world, lambda w: (weights(w)[1] or 0) >= 25)
    new = world.pending()
    world.manifest["spec"]["rayClusterConfig"] = original
    world.step()
    assert condition(world.status, "RollbackInProgress") == {
        "status": "True",
        "reason": "DesiredClusterSpecChanged",
        "message": condition(world.status, "RollbackInProgress")["message"],
    }
    assert world.capacity[old or ""] == 100, "the active cluster is scaled back to 100 at once"
    history: list[int] = []

    def back(w: World) -> bool:
        history.append(weights(w)[1] or 0)
        return w.pending() is None

    _run_until(world, back)
    assert world.active() == old
    assert weights(world)[0] == 100
    assert history == sorted(history, reverse=True), "traffic only moves back during a rollback"
    assert not [c for c in world.status["conditions"] if c["type"] == "RollbackInProgress"]
    assert condition(world.status, "UpgradeInProgress")["reason"] == "NoPendingCluster"
    plans = world.run(10)
    assert new not in world.clusters
    assert any(isinstance(a, DeleteCluster) and a.name == new for p in plans for a in p.actions)
    assert world.active() == old
    assert world.pending() is None, "no new upgrade after rolling back to the same spec"


def test_returning_to_the_upgraded_spec_cancels_the_rollback() -> None:
    world = settled(step=25, interval=10, surge=50)
    original = copy.deepcopy(world.manifest["spec"]["rayClusterConfig"])
    set_image(world, NEW_IMAGE)
    upgraded = copy.deepcopy(world.manifest["spec"]["rayClusterConfig"])
    _run_until(world, lambda w: (weights(w)[1] or 0) >= 25)
    pending = world.pending()
    world.manifest["spec"]["rayClusterConfig"] = original
    world.step()
    assert condition(world.status, "RollbackInProgress")["status"] == "True"
    world.manifest["spec"]["rayClusterConfig"] = upgraded
    world.step()
    assert not [c for c in world.status["conditions"] if c["type"] == "RollbackInProgress"]
    _run_until(world, lambda w: w.pending() is None)
    assert world.active() == pending


def test_a_third_spec_rolls_back_then_upgrades_to_it() -> None:
    world = settled(step=50, interval=4, surge=100)
    old = world.active()
    set_image(world, NEW_IMAGE)
    _run_until(world, lambda w: (weights(w)[1] or 0) >= 50)
    second = world.pending()
    set_image(world, "rayproject/ray:2.48.0")
    world.step()
    assert condition(world.status, "RollbackInProgress")["status"] == "True"
    _run_until(world, lambda w: w.pending() not in (None, second))
    assert world.active() == old
    _run_until(world, lambda w: w.pending() is None)
    assert world.active() not in (old, second)


def test_capacity_puts_carry_the_cached_config_of_each_cluster() -> None:
    world = settled(surge=50)
    set_image(world, NEW_IMAGE)
    puts: list[PutServeConfig] = []
    for _ in range(40):
        puts += [a for a in world.step().actions if isinstance(a, PutServeConfig)]
        world.now += timedelta(seconds=2)
    with_capacity = [p for p in puts if "target_capacity" in p.config]
    assert with_capacity
    assert all(p.cache_as is None for p in with_capacity)
    assert all(p.config["applications"] for p in with_capacity)
