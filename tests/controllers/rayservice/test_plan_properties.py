"""Properties of the planner over random histories (hypothesis): safe at every step, and stable.

Safety, every reconcile: the active and pending clusters (before and after the plan) are never deleted;
at most one cluster is created, and only the pending one the status names; every other cluster is on
the deletion schedule. Stability: once the world stops changing, re-planning after applying a plan's
effects settles within a few reconciles into plans with no action, and no action is asked twice on the
way (no repeated CreateCluster, no PutServeConfig for a config already cached and deployed).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kray.controllers.rayservice.plan import CreateCluster, DeleteCluster, Plan, Settings
from tests.controllers.rayservice.support import WORKER, World, cluster_spec, manifest, serve_yaml

IMAGES = ("rayproject/ray:2.46.0", "rayproject/ray:2.47.0", "rayproject/ray:2.48.0")

ops = st.one_of(
    st.tuples(st.just("reconcile")),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 30.0, 61.0])),
    st.tuples(st.just("serve"), st.sampled_from([("fruit",), ("fruit", "math"), ("math",)])),
    st.tuples(st.just("replicas"), st.integers(0, 4)),
    st.tuples(st.just("groups"), st.integers(1, 3)),
    st.tuples(st.just("image"), st.sampled_from(IMAGES)),
    st.tuples(st.just("apps"), st.sampled_from(["RUNNING", "DEPLOYING", "UNHEALTHY"])),
    st.tuples(st.just("heads"), st.booleans()),
)
strategies = st.sampled_from([None, "NewCluster", "None"])


def _names(status: dict[str, Any]) -> set[str]:
    names = {(status.get(k) or {}).get("rayClusterName") for k in ("activeServiceStatus", "pendingServiceStatus")}
    return {n for n in names if n}


def _checked_step(world: World) -> Plan:
    before = _names(world.status)
    old_pending = world.pending()
    clusters = set(world.clusters)
    p = world.step()
    after = _names(world.status)
    deleted = {a.name for a in p.actions if isinstance(a, DeleteCluster)}
    assert not deleted & (before | after), f"deleted {deleted} while active/pending were {before} -> {after}"
    created = [a.name for a in p.actions if isinstance(a, CreateCluster)]
    assert len(created) <= 1
    assert not created or created == [old_pending]
    assert clusters - before <= set(p.deletion_schedule), "a cluster in use by nobody is not scheduled"
    return p


def _apply(world: World, op: tuple[Any, ...]) -> None:
    spec = world.manifest["spec"]
    cluster = spec["rayClusterConfig"]
    match op:
        case ("reconcile",):
            _checked_step(world)
        case ("tick", seconds):
            world.now += timedelta(seconds=seconds)
        case ("serve", apps):
            spec["serveConfigV2"] = serve_yaml(*apps)
        case ("replicas", n):
            for group in cluster["workerGroupSpecs"]:
                group["replicas"] = n
                group["maxReplicas"] = max(n, group["maxReplicas"])
        case ("groups", n):
            groups = cluster["workerGroupSpecs"]
            cluster["workerGroupSpecs"] = [
                *groups,
                *({**WORKER, "groupName": f"g{len(groups) + i}"} for i in range(n)),
            ][:n]
        case ("image", image):
            head = copy.deepcopy(cluster["headGroupSpec"])
            head["template"]["spec"]["containers"][0]["image"] = image
            cluster["headGroupSpec"] = head
        case ("apps", state):
            world.app_state = state
        case ("heads", up):
            world.heads_up = up


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=st.lists(st.tuples(ops, st.integers(0, 4)), max_size=25),
    strategy=strategies,
    zero_downtime=st.booleans(),
)
def test_safe_at_every_step_and_stable_once_the_world_stops(
    history: list[tuple[tuple[Any, ...], int]], strategy: str | None, zero_downtime: bool
) -> None:
    extra = {"upgradeStrategy": {"type": strategy}} if strategy else {}
    world = World(manifest(cluster=cluster_spec(), **extra), settings=Settings(enable_zero_downtime=zero_downtime))
    for op, reconciles in history:
        _apply(world, op)
        for _ in range(reconciles):
            _checked_step(world)
    seen: list[Any] = []
    quiet = 0
    for _ in range(10):
        p = _checked_step(world)
        for action in p.actions:
            assert action not in seen, f"{action} asked again after its effect was applied"
            seen.append(action)
        quiet = quiet + 1 if not p.actions else 0
        if quiet == 2:
            break
    assert quiet == 2, f"still acting after 10 reconciles of an unchanging world: {seen}"
