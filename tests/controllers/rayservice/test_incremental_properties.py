"""Properties of incremental upgrades over random histories (hypothesis), reconcile after reconcile.

Random step/surge/interval options, random ticks, and the spec flipped between A (the active cluster's),
B and C mid-upgrade. Expected behaviour from KubeRay's ``calculateTrafficRoutedPercent`` and
``reconcileServeTargetCapacity`` (``rayservice_controller.go``): the two route weights always sum to 100;
the pending cluster never gets more traffic than its ``targetCapacity``; while no rollback is in progress
its traffic only grows and by at most ``stepSizePercent`` per ``intervalSeconds``; during a rollback it
only shrinks. Once the spec stops changing, the upgrade (or rollback) ends with one cluster holding all the
traffic at capacity 100, and re-planning then asks for nothing.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kray.controllers.rayservice.plan import PutServeConfig
from kray.controllers.rayservice.plan.stepping import TRAFFIC_SETTLE_SECONDS
from tests.controllers.rayservice.support import World
from tests.controllers.rayservice.test_incremental_wired import incremental, set_image

IMAGES = ("rayproject/ray:2.46.0", "rayproject/ray:2.47.0", "rayproject/ray:2.48.0")

ops = st.lists(
    st.one_of(
        st.tuples(st.just("reconcile"), st.sampled_from([1.0, 2.0, 5.0, 30.0])),
        st.tuples(st.just("image"), st.sampled_from(IMAGES)),
    ),
    min_size=1,
    max_size=60,
)


def _pointers(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    status = world.status
    return dict(status.get("activeServiceStatus") or {}), dict(status.get("pendingServiceStatus") or {})


def _rolling_back(world: World) -> bool:
    return any(
        c["type"] == "RollbackInProgress" and c["status"] == "True" for c in world.status.get("conditions") or ()
    )


def _check(world: World, before: tuple[dict[str, Any], dict[str, Any]], step: int) -> None:
    active, pending = _pointers(world)
    if active.get("trafficRoutedPercent") is not None and pending.get("trafficRoutedPercent") is not None:
        assert active["trafficRoutedPercent"] + pending["trafficRoutedPercent"] == 100
    if pending.get("trafficRoutedPercent") is not None:
        assert pending["trafficRoutedPercent"] <= (pending.get("targetCapacity") or 0)
    old_active, old_pending = before
    same_pair = old_pending.get("rayClusterName") == pending.get("rayClusterName") and pending.get("rayClusterName")
    if same_pair and old_active.get("rayClusterName") == active.get("rayClusterName"):
        was, now = old_pending.get("trafficRoutedPercent") or 0, pending.get("trafficRoutedPercent") or 0
        if _rolling_back(world):
            assert now <= was
        else:
            assert was <= now <= was + step
    # A cluster's Serve runs at the capacity its status says (the last PUT carried it).
    for entry in (active, pending):
        name, capacity = entry.get("rayClusterName"), entry.get("targetCapacity")
        if name in world.capacity and world.capacity[name] is not None and capacity is not None:
            assert world.capacity[name] == capacity


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=ops,
    step=st.integers(1, 100),
    surge_extra=st.integers(0, 100),
    interval=st.integers(1, 40),
)
def test_weights_and_capacities_stay_sound_then_settle(
    history: list[tuple[Any, ...]], step: int, surge_extra: int, interval: int
) -> None:
    surge = min(100, step + surge_extra)  # validation: step <= maxSurge
    world = World(manifest=incremental(step=step, interval=interval, surge=surge))
    world.run(8)
    for op in history:
        if op[0] == "image":
            set_image(world, op[1])
            continue
        before = _pointers(world)
        world.step()
        _check(world, before, step)
        world.now += timedelta(seconds=op[1])
    spec = copy.deepcopy(world.manifest["spec"]["rayClusterConfig"])
    # The longest path: a rollback, then a whole upgrade at 1% per 40 s; each tick also lets the traffic
    # settle before the active capacity falls.
    tick = max(interval, TRAFFIC_SETTLE_SECONDS)
    for _ in range(400):
        before = _pointers(world)
        world.step()
        _check(world, before, step)
        if not world.pending() and not _rolling_back(world):
            break
        world.now += timedelta(seconds=tick)
    assert world.manifest["spec"]["rayClusterConfig"] == spec
    active, pending = _pointers(world)
    assert not pending.get("rayClusterName"), f"still upgrading: {world.status}"
    assert active.get("trafficRoutedPercent") == 100
    assert active.get("targetCapacity") in (None, 100)
    quiet = [world.step() for _ in range(3)]
    assert not [a for a in quiet[-1].actions if isinstance(a, PutServeConfig)]
    assert quiet[-1].status is None or quiet[-1].status == world.status
