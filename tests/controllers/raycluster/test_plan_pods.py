"""The RayCluster pod planner (KubeRay's reconcilePods, reference §2.6 / conformance item 9)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kray.controllers.raycluster.plan import (
    CreateHead,
    CreateWorker,
    DeleteAllPods,
    DeletePod,
    desired_workers,
    plan_pods,
)
from tests.controllers.raycluster.helpers import cluster, condition, pod

HEAD = pod("c-head-x", head=True)


def test_an_empty_cluster_creates_its_head_and_workers() -> None:
    plan = plan_pods(cluster=cluster(), pods=[])
    assert plan.actions == (CreateHead(), CreateWorker("g", 0), CreateWorker("g", 1))


def test_a_complete_cluster_needs_nothing() -> None:
    assert plan_pods(cluster=cluster(), pods=[HEAD, pod("w1"), pod("w2")]).actions == ()


def test_two_heads_are_an_error_and_nothing_is_done() -> None:
    plan = plan_pods(cluster=cluster(), pods=[HEAD, pod("c-head-y", head=True)])
    assert plan.error is not None
    assert plan.actions == ()


@pytest.mark.parametrize(
    ("phase", "terminated", "policy", "deleted"),
    [
        ("Failed", False, "Always", True),
        ("Succeeded", False, "Always", True),
        ("Running", True, "Never", True),
        ("Running", True, "Always", False),
        ("Running", False, "Never", False),
        ("Pending", False, "Never", False),
    ],
)
def test_finished_pods_are_deleted_and_nothing_is_created_in_that_pass(
    phase: str, terminated: bool, policy: str, deleted: bool
) -> None:
    worker = pod("w1", phase=phase, terminated=terminated, restart_policy=policy, replica_index=0)
    plan = plan_pods(cluster=cluster(), pods=[HEAD, worker])
    if deleted:
        assert plan.actions == (DeletePod("w1", "worker pod ended"),)
        assert plan.skipped_creations
    else:
        assert plan.actions == (CreateWorker("g", 1),)


def test_a_finished_head_is_deleted() -> None:
    plan = plan_pods(cluster=cluster(groups=[]), pods=[pod("c-head-x", head=True, phase="Failed")])
    assert plan.actions == (DeletePod("c-head-x", "head pod ended"),)


def test_workers_to_delete_are_deleted_and_replaced_up_to_replicas() -> None:
    spec = cluster(
        groups=[
            {"replicas": 2, "minReplicas": 0, "maxReplicas": 5, "scaleStrategy": {"workersToDelete": ["w1", "gone"]}}
        ]
    )
    plan = plan_pods(cluster=spec, pods=[HEAD, pod("w1", replica_index=0), pod("w2", replica_index=1)])
    assert plan.actions == (DeletePod("w1", "listed in scaleStrategy.workersToDelete"), CreateWorker("g", 0))


def test_scale_down_deletes_surplus_only_without_autoscaling() -> None:
    one = cluster(groups=[{"replicas": 1, "minReplicas": 0, "maxReplicas": 5}])
    assert plan_pods(cluster=one, pods=[HEAD, pod("w1"), pod("w2")]).actions == (DeletePod("w1", "scale down"),)
    autoscaled = cluster(groups=[{"replicas": 1, "minReplicas": 0, "maxReplicas": 5}], enableInTreeAutoscaling=True)
    assert plan_pods(cluster=autoscaled, pods=[HEAD, pod("w1"), pod("w2")]).actions == ()


def test_suspending_deletes_everything_and_suspended_does_nothing() -> None:
    suspending = cluster(suspend=True, status={"conditions": [condition("RayClusterSuspending")]})
    assert plan_pods(cluster=suspending, pods=[HEAD]).actions == (DeleteAllPods("suspending"),)
    suspended = cluster(suspend=True, status={"conditions": [condition("RayClusterSuspended")]})
    assert plan_pods(cluster=suspended, pods=[]).actions == ()


def test_a_suspended_group_loses_its_pods() -> None:
    spec = cluster(groups=[{"replicas": 2, "minReplicas": 0, "maxReplicas": 5, "suspend": True}])
    plan = plan_pods(cluster=spec, pods=[HEAD, pod("w1")])
    assert plan.actions == (DeletePod("w1", "worker group suspended"),)


def test_provisioned_sidecar_clusters_do_not_restart_their_head() -> None:
    spec = cluster(groups=[], status={"conditions": [condition("RayClusterProvisioned")]})
    spec.metadata.annotations = {"ray.io/disable-provisioned-head-restart": "true"}
    assert plan_pods(cluster=spec, pods=[]).actions == ()


@pytest.mark.parametrize(
    ("replicas", "low", "high", "hosts", "desired"),
    [(2, 0, 5, 1, 2), (9, 0, 5, 1, 5), (0, 1, 5, 1, 1), (None, 3, 5, 1, 3), (2, 0, 5, 4, 8)],
)
def test_desired_workers_clamps_and_multiplies_hosts(
    replicas: int | None, low: int, high: int, hosts: int, desired: int
) -> None:
    group = cluster(groups=[{"replicas": replicas, "minReplicas": low, "maxReplicas": high, "numOfHosts": hosts}])
    assert desired_workers(group.spec.worker_group_specs[0]) == desired  # type: ignore[index]


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(0, 12),
    low=st.integers(0, 6),
    high=st.integers(0, 12),
    existing=st.integers(0, 12),
    autoscaling=st.booleans(),
    doomed=st.lists(st.integers(0, 14), max_size=4),
)
def test_applying_the_plan_reaches_the_bounds_and_is_then_a_no_op(
    replicas: int, low: int, high: int, existing: int, autoscaling: bool, doomed: list[int]
) -> None:
    high = max(low, high)
    to_delete = [f"w{i:02d}" for i in doomed]
    spec = cluster(
        groups=[
            {
                "replicas": replicas,
                "minReplicas": low,
                "maxReplicas": high,
                "scaleStrategy": {"workersToDelete": to_delete},
            }
        ],
        enableInTreeAutoscaling=autoscaling,
    )
    pods = [HEAD, *(pod(f"w{i:02d}") for i in range(existing))]
    plan = plan_pods(cluster=spec, pods=pods)
    deleted = {a.name for a in plan.actions if isinstance(a, DeletePod)}
    created = sum(isinstance(a, CreateWorker) for a in plan.actions)
    assert deleted >= {p.name for p in pods if p.name in to_delete}, "workersToDelete are always honoured"
    after = existing - len(deleted) + created
    target = max(low, min(replicas, high))
    if autoscaling:
        assert after >= min(target, existing - len(deleted))
        assert created == max(0, target - (existing - len(deleted)))
    else:
        assert after == target
    survivors = [pod(f"n{i:02d}") for i in range(after)]
    assert plan_pods(cluster=spec, pods=[HEAD, *survivors]).actions == () or autoscaling
