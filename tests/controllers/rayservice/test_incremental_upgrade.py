"""Incremental upgrade stepping (pure functions; expected values from KubeRay's
``checkIfNeedTargetCapacityUpdate``, ``reconcileServeTargetCapacity`` and ``calculateTrafficRoutedPercent``)."""

from __future__ import annotations

from datetime import timedelta

from kray.controllers.rayservice.plan.incremental import (
    Progress,
    capacity_goal,
    complete,
    needs_capacity_update,
    traffic_weights,
)
from tests.controllers.rayservice.support import T0


def test_phases_in_order() -> None:
    start = Progress(active_capacity=100, pending_capacity=0, active_traffic=100, pending_traffic=0)
    assert needs_capacity_update(start, gateway_ready=True, route_ready=True) == (
        True,
        "Pending RayCluster has not finished scaling up.",
    )
    done = Progress(active_capacity=0, pending_capacity=100, active_traffic=0, pending_traffic=100)
    assert needs_capacity_update(done, gateway_ready=True, route_ready=True)[0] is False
    assert complete(done)
    assert needs_capacity_update(start, gateway_ready=False, route_ready=True)[0] is False


def test_pending_capacity_rises_by_max_surge_then_active_falls() -> None:
    start = Progress(active_capacity=100, pending_capacity=0, pending_traffic=0)
    assert capacity_goal(start, for_active=False, max_surge=20) == 20
    assert capacity_goal(start, for_active=True, max_surge=20) is None
    surged = Progress(active_capacity=100, pending_capacity=20, pending_traffic=20)
    assert capacity_goal(surged, for_active=True, max_surge=20) == 80
    assert capacity_goal(surged, for_active=False, max_surge=20) is None
    waiting = Progress(active_capacity=100, pending_capacity=20, pending_traffic=10)
    assert capacity_goal(waiting, for_active=False, max_surge=20) is None


def test_traffic_moves_by_step_every_interval_up_to_the_pending_capacity() -> None:
    progress = Progress(pending_capacity=30, active_traffic=100, pending_traffic=0)
    step = {"pending_ready": True, "step": 20, "interval": 10.0}
    assert traffic_weights(progress, last_migrated=None, now=T0, **step) == (80, 20)
    moved = Progress(pending_capacity=30, active_traffic=80, pending_traffic=20)
    assert traffic_weights(moved, last_migrated=T0, now=T0 + timedelta(seconds=5), **step) == (80, 20)
    assert traffic_weights(moved, last_migrated=T0, now=T0 + timedelta(seconds=10), **step) == (70, 30)
    assert traffic_weights(moved, last_migrated=None, now=T0, pending_ready=False, step=20, interval=10.0) == (80, 20)
