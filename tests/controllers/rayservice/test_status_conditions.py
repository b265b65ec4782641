"""Conditions and status fields as KubeRay writes them.

Expected values from KubeRay's ``rayservice_controller.go``: ``calculateConditions`` (Ready from the
serve endpoints, UpgradeInProgress from the cluster names, with their messages), ``calculateStatus``
(``serviceStatus`` is ``Running`` iff Ready), ``markFailedOnInitializingTimeout`` (message built from Go
``time.Duration`` strings; names cleared; Warning event), ``isInitializingTimeout`` (terminal),
``validateRayService`` (Ready False/ValidationFailed, event ``InvalidRayServiceSpec``) and
``utils.InconsistentRayServiceStatuses`` (no write without a meaningful change).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from kray.api.v1.conditions import ConditionStatus
from kray.controllers.rayservice.plan import DeleteCluster, Observed, plan
from kray.controllers.rayservice.status import go_duration, set_condition
from tests.controllers.rayservice.support import T0, World, cluster_for, condition, manifest, service


def test_endpoints_dropping_to_zero_clear_ready_and_running() -> None:
    world = World(manifest())
    world.run(6)
    assert world.status["serviceStatus"] == "Running"
    world.app_state = "UNHEALTHY"
    world.step()
    assert condition(world.status, "Ready") == {
        "status": "False",
        "reason": "ZeroServeEndpoints",
        "message": "Number of serve endpoints dropped to 0",
    }
    assert "serviceStatus" not in world.status
    assert "numServeEndpoints" not in world.status  # 0 is omitempty


def test_no_active_cluster_after_initialising_is_unknown() -> None:
    since = {"message": "", "lastTransitionTime": "2026-11-25T11:00:00Z"}
    status = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ZeroServeEndpoints", **since},
            {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster", **since},
        ],
        "pendingServiceStatus": {"rayClusterName": "demo-ppppp"},
    }
    svc = service(status=status)
    p = plan(Observed(service=svc, now=T0, clusters={"demo-ppppp": cluster_for(svc, "demo-ppppp", status={})}))
    assert condition(p.status, "UpgradeInProgress") == {
        "status": "Unknown",
        "reason": "NoActiveCluster",
        "message": "No active Ray cluster exists, and the RayService is not initializing. "
        "Please open a GitHub issue in the KubeRay repository.",
    }


def test_invalid_spec_sets_ready_false_validation_failed_and_stops() -> None:
    p = plan(Observed(service=service(rayClusterDeletionDelaySeconds=-1), now=T0))
    ready = condition(p.status, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ValidationFailed"
    assert "spec.rayClusterDeletionDelaySeconds" in ready["message"]
    assert p.events[0][:2] == ("Warning", "InvalidRayServiceSpec")
    assert p.events[0][2].startswith("default/demo: ")
    assert p.requeue_after is None
    assert p.actions == ()


def test_initializing_timeout_fails_the_rayservice_for_good_and_cleans_its_clusters() -> None:
    world = World(manifest(annotations={"ray.io/initializing-timeout": "10"}), heads_up=False)
    world.run(3, tick=4.0)  # 0 s: name; 4 s: create; 8 s: no head (halt)
    pending = world.pending()
    assert pending is not None
    world.heads_up = True
    world.clusters[pending] = cluster_for(world.observe().service, pending, status={})  # head up, not ready
    p = world.step()  # 12 s after Initializing began
    assert condition(world.status, "Ready") == {
        "status": "False",
        "reason": "InitializingTimeout",
        "message": "RayService failed to become ready within the configured timeout of 10s. "
        "Time spent initializing: 12s",
    }
    message = "RayService initializing timeout exceeded after 12s (configured timeout: 10s)"
    assert p.events == (("Warning", "RayServiceInitializingTimeout", message),)
    assert world.pending() is None
    # Terminal: nothing but clean-up from now on; the cluster goes after the deletion delay.
    world.step()
    world.now += timedelta(seconds=61)
    last = world.step()
    assert last.actions == (DeleteCluster(pending),)
    assert last.status is None
    assert world.step().requeue_after is None  # nothing left to clean


def test_ready_is_not_timed_out_once_endpoints_appear() -> None:
    world = World(manifest(annotations={"ray.io/initializing-timeout": "1h"}))
    world.run(6, tick=1000.0)
    assert condition(world.status, "Ready")["status"] == "True"


def test_unchanged_status_is_not_written() -> None:
    world = World(manifest())
    world.run(6)
    assert world.step().status is None


def test_status_serialisation_has_both_cluster_structs() -> None:
    p = plan(Observed(service=service(), now=T0, random_suffix="abcde"))
    assert p.status is not None
    assert p.status["activeServiceStatus"]["rayClusterStatus"]["head"] == {}
    assert p.status["lastUpdateTime"] == "2026-11-25T12:00:00Z"


def test_set_condition_moves_transition_time_only_with_the_status() -> None:
    status: dict[str, object] = {"observedGeneration": 3}
    set_condition(status, "Ready", ConditionStatus.FALSE, "A", "a", now=T0)
    set_condition(status, "Ready", ConditionStatus.FALSE, "B", "b", now=T0 + timedelta(seconds=5))
    first = {"type": "Ready", "status": "False", "reason": "B", "message": "b", "observedGeneration": 3}
    assert status["conditions"] == [{**first, "lastTransitionTime": "2026-11-25T12:00:00Z"}]
    set_condition(status, "Ready", ConditionStatus.TRUE, "C", "c", now=T0 + timedelta(seconds=9))
    assert status["conditions"][0]["lastTransitionTime"] == "2026-11-25T12:00:09Z"  # type: ignore[index]


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (10 * 10**9, "10s"),
        (30 * 60 * 10**9, "30m0s"),
        (3600 * 10**9, "1h0m0s"),
        (1_500_000, "1.5ms"),
        (2_000, "2µs"),
        (999, "999ns"),
        # Go's documentation example for Duration.String.
        ((3600 + 15 * 60 + 30) * 10**9 + 918_273_645, "1h15m30.918273645s"),
    ],
)
def test_go_duration_strings(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text
