"""RayCluster status (KubeRay's calculateStatus, reference §2.7 / conformance item 11)."""

from __future__ import annotations

from typing import Any

from kray.controllers.raycluster.status import (
    compute_status,
    desired_resources,
    endpoints,
    kuberay_json,
    status_differs,
)
from tests.controllers.raycluster.helpers import cluster, condition, pod

NOW = "2026-11-25T12:00:00Z"
LATER = "2026-11-25T12:05:00Z"
HEADLESS = {
    "metadata": {"name": "c-head-svc"},
    "spec": {
        "clusterIP": "None",
        "ports": [{"name": "dashboard", "port": 8265, "targetPort": 8265}, {"name": "gcs-server", "port": 6379}],
    },
}


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_fresh_cluster_is_provisioning_without_a_head() -> None:
    status = compute_status(cluster=cluster(), pods=[], head_service=None, reconcile_error=None, now=NOW)
    assert status["desiredWorkerReplicas"] == 2
    assert "readyWorkerReplicas" not in status, "0 is omitted, as Go's omitempty does"
    assert "state" not in status
    assert conditions(status)["HeadPodReady"] == ("False", "HeadPodNotFound")
    assert conditions(status)["RayClusterProvisioned"] == ("False", "RayClusterPodsProvisioning")


def test_all_pods_ready_makes_it_ready_and_provisioned_and_sets_head_info() -> None:
    pods = [pod("c-head-x", head=True, ip="10.0.0.9"), pod("w1"), pod("w2")]
    status = compute_status(cluster=cluster(), pods=pods, head_service=HEADLESS, reconcile_error=None, now=NOW)
    assert status["state"] == "ready"
    assert status["stateTransitionTimes"] == {"ready": NOW}
    assert conditions(status)["RayClusterProvisioned"] == ("True", "AllPodRunningAndReadyFirstTime")
    assert conditions(status)["HeadPodReady"] == ("True", "HeadPodRunningAndReady")
    assert status["head"] == {
        "podIP": "10.0.0.9",
        "podName": "c-head-x",
        "serviceIP": "10.0.0.9",
        "serviceName": "c-head-svc",
    }
    assert status["endpoints"] == {"dashboard": "8265", "gcs-server": "6379"}
    assert status["observedGeneration"] == 3


def test_state_is_sticky_and_provisioned_stays_true_after_a_worker_dies() -> None:
    ready = compute_status(
        cluster=cluster(),
        pods=[pod("h", head=True), pod("w1"), pod("w2")],
        head_service=None,
        reconcile_error=None,
        now=NOW,
    )
    later = compute_status(
        cluster=cluster(status=ready),
        pods=[pod("h", head=True), pod("w1")],
        head_service=None,
        reconcile_error=None,
        now=LATER,
    )
    assert later["state"] == "ready"
    assert later["readyWorkerReplicas"] == 1
    provisioned = next(c for c in later["conditions"] if c["type"] == "RayClusterProvisioned")
    assert provisioned["status"] == "True"
    assert provisioned["lastTransitionTime"] == NOW, "unchanged conditions keep their transition time"


def test_a_failed_pod_operation_sets_replica_failure() -> None:
    status = compute_status(
        cluster=cluster(), pods=[], head_service=None, reconcile_error=("FailedCreateHeadPod", "port taken"), now=NOW
    )
    assert conditions(status)["ReplicaFailure"] == ("True", "FailedCreateHeadPod")


def test_suspend_goes_suspending_then_suspended_then_back() -> None:
    suspending = compute_status(
        cluster=cluster(suspend=True), pods=[pod("h", head=True)], head_service=None, reconcile_error=None, now=NOW
    )
    assert conditions(suspending)["RayClusterSuspending"][0] == "True"
    assert conditions(suspending)["RayClusterSuspended"][0] == "False"
    suspended = compute_status(
        cluster=cluster(suspend=True, status=suspending), pods=[], head_service=None, reconcile_error=None, now=LATER
    )
    assert conditions(suspended)["RayClusterSuspending"][0] == "False"
    assert conditions(suspended)["RayClusterSuspended"][0] == "True"
    assert suspended["state"] == "suspended"
    assert conditions(suspended)["RayClusterProvisioned"][0] == "False"
    resumed = compute_status(
        cluster=cluster(suspend=False, status=suspended), pods=[], head_service=None, reconcile_error=None, now=LATER
    )
    assert conditions(resumed)["RayClusterSuspended"][0] == "False"


def test_desired_resources_sum_head_and_raw_replicas_with_requests_over_limits() -> None:
    spec = cluster(
        groups=[
            {
                "replicas": 3,
                "minReplicas": 0,
                "maxReplicas": 2,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "w",
                                "image": "x",
                                "resources": {
                                    "limits": {"cpu": "2", "nvidia.com/gpu": "1"},
                                    "requests": {"cpu": "500m", "memory": "1Gi"},
                                },
                            }
                        ]
                    }
                },
            }
        ]
    )
    assert desired_resources(spec) == {
        "desiredCPU": "2500m",
        "desiredMemory": "4Gi",
        "desiredGPU": "3",
        "desiredTPU": "0",
    }


def test_endpoints_prefer_node_ports() -> None:
    svc = {"spec": {"ports": [{"name": "dashboard", "port": 8265, "nodePort": 30001}, {"port": 1}]}}
    assert endpoints(svc) == {"dashboard": "30001"}


def test_status_differs_ignores_resources_and_update_time() -> None:
    base = {"state": "ready", "desiredCPU": "1", "lastUpdateTime": NOW, "observedGeneration": 1}
    assert not status_differs(base, {**base, "desiredCPU": "2", "lastUpdateTime": LATER})
    assert status_differs(base, {**base, "state": "suspended"})
    assert status_differs(base, {**base, "conditions": [condition("HeadPodReady")]})


def test_head_pod_ready_mirrors_the_pods_ready_condition() -> None:
    reason = ("False", "ContainersNotReady", "containers with unready status: [ray-head]")
    head = pod("h", head=True, phase="Running", ready=False, ready_condition=reason)
    status = compute_status(cluster=cluster(groups=[]), pods=[head], head_service=None, reconcile_error=None, now=NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "HeadPodReady")
    assert (ready["status"], ready["reason"], ready["message"]) == reason
    silent = pod("h", head=True, phase="Pending", ready=False, ready_condition=None)
    status = compute_status(cluster=cluster(groups=[]), pods=[silent], head_service=None, reconcile_error=None, now=NOW)
    assert conditions(status)["HeadPodReady"] == ("False", "Unknown")


def test_condition_messages_are_kuberays() -> None:
    fresh = compute_status(cluster=cluster(), pods=[], head_service=None, reconcile_error=None, now=NOW)
    messages = {c["type"]: c["message"] for c in fresh["conditions"]}
    assert messages["HeadPodReady"] == "Head Pod not found"
    assert messages["RayClusterProvisioned"] == "RayCluster Pods are being provisioned for first time"
    assert [c["type"] for c in fresh["conditions"]] == [
        "HeadPodReady",
        "RayClusterProvisioned",
        "RayClusterSuspended",
        "RayClusterSuspending",
    ], "KubeRay's order of first appearance"
    ready = compute_status(
        cluster=cluster(),
        pods=[pod("h", head=True), pod("a"), pod("b")],
        head_service=None,
        reconcile_error=None,
        now=NOW,
    )
    provisioned = next(c for c in ready["conditions"] if c["type"] == "RayClusterProvisioned")
    assert provisioned["message"] == "All Ray Pods are ready for the first time"


def test_an_error_that_is_not_a_pod_operation_sets_no_replica_failure_and_blocks_ready() -> None:
    pods = [pod("h", head=True), pod("a"), pod("b")]
    status = compute_status(cluster=cluster(), pods=pods, head_service=None, reconcile_error=("", "no SA"), now=NOW)
    assert "ReplicaFailure" not in conditions(status)
    assert "state" not in status


def test_zero_counters_and_empty_fields_are_omitted_as_kuberay_serialises_them() -> None:
    """Every int32/string/map/slice field of KubeRay's RayClusterStatus is ``omitempty``; the four
    desired* Quantities and ``head`` (a struct) are always written."""
    suspended = cluster(groups=[{"replicas": 0, "minReplicas": 0, "maxReplicas": 0}])
    status = compute_status(cluster=suspended, pods=[], head_service=None, reconcile_error=None, now=NOW)
    for counter in (
        "readyWorkerReplicas",
        "availableWorkerReplicas",
        "desiredWorkerReplicas",
        "minWorkerReplicas",
        "maxWorkerReplicas",
    ):
        assert counter not in status, counter
    assert "endpoints" not in status
    assert "state" not in status
    assert status["head"] == {}
    assert status["desiredGPU"] == status["desiredTPU"] == "0"
    assert status["desiredCPU"] == "1"


def test_a_counter_that_drops_to_zero_leaves_the_status() -> None:
    ready = compute_status(
        cluster=cluster(),
        pods=[pod("h", head=True), pod("w1"), pod("w2")],
        head_service=None,
        reconcile_error=None,
        now=NOW,
    )
    assert ready["readyWorkerReplicas"] == ready["availableWorkerReplicas"] == 2
    workers_pending = [
        pod("h", head=True),
        pod("w1", phase="Pending", ready=False),
        pod("w2", phase="Pending", ready=False),
    ]
    later = compute_status(
        cluster=cluster(status=ready), pods=workers_pending, head_service=None, reconcile_error=None, now=LATER
    )
    assert "readyWorkerReplicas" not in later
    assert "availableWorkerReplicas" not in later
    assert later["desiredWorkerReplicas"] == 2
    assert "minWorkerReplicas" not in later
    assert later["maxWorkerReplicas"] == 5


def test_kuberay_json_of_an_empty_status_is_gos_zero_struct() -> None:
    assert kuberay_json({}) == {
        "desiredCPU": "0",
        "desiredMemory": "0",
        "desiredGPU": "0",
        "desiredTPU": "0",
        "head": {},
    }
    assert kuberay_json({"state": "", "reason": "", "observedGeneration": 0, "head": {"podName": "h"}}) == {
        **kuberay_json({}),
        "head": {"podName": "h"},
    }
