"""Replica indices, atomic multi-host replicas (KubeRay's RayMultiHostIndexing, on in v1.7), Recreate upgrades."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from kray.controllers.raycluster.plan import (
    Action,
    CreateHead,
    CreateReplica,
    CreateWorker,
    DeleteAllPods,
    DeletePod,
    PlanOptions,
    RefreshHeadVersion,
    desired_workers,
    lowest_free,
    plan_pods,
)
from kray.controllers.raycluster.podview import PodView
from tests.controllers.raycluster.helpers import cluster, pod

HEAD = pod("c-head-x", head=True)


def multihost(replicas: int = 2, hosts: int = 2, **extra: object) -> dict[str, object]:
    return {"replicas": replicas, "minReplicas": 0, "maxReplicas": 8, "numOfHosts": hosts, **extra}


def host(name: str, replica: str, index: int, **kwargs: object) -> PodView:
    return pod(name, replica_name=replica, replica_index=index, **kwargs)  # type: ignore[arg-type]


def test_lowest_free_fills_gaps_first() -> None:
    assert lowest_free({0, 2, 3}, 3) == [1, 4, 5]
    assert lowest_free(set(), 2) == [0, 1]


def test_single_host_workers_take_the_lowest_free_replica_index() -> None:
    spec = cluster(groups=[{"replicas": 4, "minReplicas": 0, "maxReplicas": 5}])
    pods = [HEAD, pod("w-a", replica_index=0), pod("w-b", replica_index=2)]
    assert plan_pods(cluster=spec, pods=pods).actions == (CreateWorker("g", 1), CreateWorker("g", 3))


def test_a_multi_host_group_is_created_a_whole_replica_at_a_time() -> None:
    plan = plan_pods(cluster=cluster(groups=[multihost()]), pods=[HEAD])
    assert plan.actions == (CreateReplica("g", 0, 2), CreateReplica("g", 1, 2))


def test_without_the_gate_multi_host_pods_are_counted_one_by_one() -> None:
    plan = plan_pods(cluster=cluster(groups=[multihost()]), pods=[HEAD], options=PlanOptions(multi_host_indexing=False))
    assert plan.actions == tuple(CreateWorker("g", i) for i in range(4))


def test_an_incomplete_replica_is_deleted_and_nothing_is_created_in_that_pass() -> None:
    pods = [HEAD, host("a0", "g-aaaaa", 0), host("a1", "g-aaaaa", 0), host("b0", "g-bbbbb", 1)]
    plan = plan_pods(cluster=cluster(groups=[multihost()]), pods=pods)
    assert plan.actions == (DeletePod("b0", "incomplete multi-host replica"),)
    assert plan.skipped_creations


def test_a_terminating_host_makes_its_replica_incomplete() -> None:
    pods = [HEAD, host("a0", "g-aaaaa", 0), host("a1", "g-aaaaa", 0, deleting=True)]
    plan = plan_pods(cluster=cluster(groups=[multihost(replicas=1)]), pods=pods)
    assert plan.actions == (DeletePod("a0", "incomplete multi-host replica"),)


def test_one_failed_host_takes_its_whole_replica_down() -> None:
    pods = [HEAD, host("a0", "g-aaaaa", 0), host("a1", "g-aaaaa", 0, phase="Failed"), host("b0", "g-bbbbb", 1)]
    pods.append(host("b1", "g-bbbbb", 1))
    plan = plan_pods(cluster=cluster(groups=[multihost()]), pods=pods)
    reason = "a host of the multi-host replica ended"
    assert plan.actions == (DeletePod("a0", reason), DeletePod("a1", reason))
    assert plan.skipped_creations


def test_workers_to_delete_removes_the_whole_replica_and_it_is_replaced_at_its_index() -> None:
    group = multihost(scaleStrategy={"workersToDelete": ["a1"]})
    pods = [
        HEAD,
        host("a0", "g-aaaaa", 0),
        host("a1", "g-aaaaa", 0),
        host("b0", "g-bbbbb", 1),
        host("b1", "g-bbbbb", 1),
    ]
    plan = plan_pods(cluster=cluster(groups=[group]), pods=pods)
    reason = "listed in scaleStrategy.workersToDelete"
    assert plan.actions == (DeletePod("a0", reason), DeletePod("a1", reason), CreateReplica("g", 0, 2))


def test_scaling_down_removes_whole_replicas_newest_index_first_and_never_with_autoscaling() -> None:
    pods = [
        HEAD,
        host("a0", "g-aaaaa", 0),
        host("a1", "g-aaaaa", 0),
        host("b0", "g-bbbbb", 1),
        host("b1", "g-bbbbb", 1),
    ]
    plan = plan_pods(cluster=cluster(groups=[multihost(replicas=1)]), pods=pods)
    assert plan.actions == (DeletePod("b0", "scale down"), DeletePod("b1", "scale down"))
    autoscaled = cluster(groups=[multihost(replicas=1)], enableInTreeAutoscaling=True)
    assert plan_pods(cluster=autoscaled, pods=pods).actions == ()


def test_recreate_deletes_every_pod_when_the_spec_hash_changed() -> None:
    spec = cluster(upgradeStrategy={"type": "Recreate"})
    head = pod("h", head=True, recreate_hash="OLD", kuberay_version="v1.7.0")
    options = PlanOptions(recreate_hash="NEW", kuberay_version="v1.7.0")
    assert plan_pods(cluster=spec, pods=[head], options=options).actions == (
        DeleteAllPods("upgradeStrategy Recreate: the RayCluster spec changed"),
    )
    same = replace(head, recreate_hash="NEW")
    assert plan_pods(cluster=spec, pods=[same], options=options).actions == (CreateWorker("g", 0), CreateWorker("g", 1))


def test_a_head_from_another_kuberay_version_is_refreshed_not_recreated() -> None:
    spec = cluster(upgradeStrategy={"type": "Recreate"})
    head = pod("h", head=True, recreate_hash="OLD", kuberay_version="v1.5.0")
    options = PlanOptions(recreate_hash="NEW", kuberay_version="v1.7.0")
    assert plan_pods(cluster=spec, pods=[head], options=options).actions == (RefreshHeadVersion("h"),)


def test_without_recreate_a_changed_hash_is_ignored() -> None:
    spec = cluster(groups=[])
    head = pod("h", head=True, recreate_hash="OLD", kuberay_version="v1.7.0")
    options = PlanOptions(recreate_hash="NEW", kuberay_version="v1.7.0")
    assert plan_pods(cluster=spec, pods=[head], options=options).actions == ()


def apply(pods: Sequence[PodView], actions: Sequence[Action], names: itertools.count[int]) -> list[PodView]:
    """What the reconciler's actions do to the pods (deletions are immediate)."""
    out = list(pods)
    for action in actions:
        if isinstance(action, CreateHead):
            out.append(pod(f"head-{next(names)}", head=True))
        elif isinstance(action, CreateWorker):
            out.append(pod(f"w-{next(names)}", replica_index=action.replica_index))
        elif isinstance(action, CreateReplica):
            replica = f"g-{next(names)}"
            out.extend(host(f"{replica}-{i}", replica, action.replica_index) for i in range(action.hosts))
        elif isinstance(action, DeletePod):
            out = [p for p in out if p.name != action.name]
        elif isinstance(action, DeleteAllPods):
            out = []
    return out


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(0, 5),
    hosts=st.integers(1, 4),
    existing=st.lists(st.tuples(st.integers(0, 6), st.integers(1, 4), st.booleans()), max_size=5),
    doomed=st.lists(st.integers(0, 30), max_size=3),
    autoscaling=st.booleans(),
    gate=st.booleans(),
)
def test_replica_plans_are_bounded_converge_and_are_then_a_no_op(
    replicas: int,
    hosts: int,
    existing: list[tuple[int, int, bool]],
    doomed: list[int],
    autoscaling: bool,
    gate: bool,
) -> None:
    group = {"replicas": replicas, "minReplicas": 0, "maxReplicas": 5, "numOfHosts": hosts}
    group["scaleStrategy"] = {"workersToDelete": [f"p{i}" for i in doomed]}
    spec = cluster(groups=[group], enableInTreeAutoscaling=autoscaling)
    pods: list[PodView] = [HEAD]
    number = 0
    for entry, (index, size, failed) in enumerate(
        existing
    ):  # replicas, some incomplete (never oversized: nothing makes those)
        for _ in range(min(size, hosts)):
            name = f"p{number}"
            number += 1
            view = host(name, f"g-r{entry}", index) if hosts > 1 else pod(name, replica_index=index)
            pods.append(replace(view, phase="Failed") if failed and number % 3 == 0 else view)
    options = PlanOptions(multi_host_indexing=gate)
    names = itertools.count()
    target = desired_workers(spec.spec.worker_group_specs[0])  # type: ignore[index]
    for _ in range(4):
        plan = plan_pods(cluster=spec, pods=pods, options=options)
        existing_names = {p.name for p in pods}
        deleted = [a.name for a in plan.actions if isinstance(a, DeletePod)]
        assert set(deleted) <= existing_names, "bounded: only real pods"
        assert len(deleted) == len(set(deleted)), "bounded: each pod once"
        created = sum(
            a.hosts if isinstance(a, CreateReplica) else 1 for a in plan.actions if not isinstance(a, DeletePod)
        )
        assert created <= target, "bounded: never more pods than the group wants"
        if plan.skipped_creations:
            assert created == 0
        if not plan.actions:
            break
        pods = apply(pods, plan.actions, names)
        # The autoscaler clears workersToDelete once the pods are gone; what it named stays gone.
    final = plan_pods(cluster=spec, pods=pods, options=options)
    assert final.actions == (), "idempotent: the applied plan needs nothing more"
    workers = [p for p in pods if not p.is_head]
    if not autoscaling:
        assert len(workers) == target
    if gate and hosts > 1:
        by_replica: dict[str, int] = {}
        for p in workers:
            by_replica[p.replica_name] = by_replica.get(p.replica_name, 0) + 1
        assert all(count == hosts for count in by_replica.values()), "every replica is whole"
    if gate:
        units = {(p.replica_name or p.name, p.replica_index) for p in workers}
        created = {unit for unit in units if not unit[0].startswith(("p", "g-r"))}
        for unit in created:
            others = {index for other, index in units if other != unit[0]}
            assert unit[1] not in others, "a new replica never reuses an index in use"
