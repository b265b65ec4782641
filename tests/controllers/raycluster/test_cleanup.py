"""The GCS fault-tolerance Redis cleanup finalizer (reference §2.8) and the Recreate spec hash, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kray.controllers.raycluster.cleanup import CleanupFacts, CleanupStep, plan_cleanup
from kray.controllers.raycluster.upgrade import recreate_hash
from tests.controllers.raycluster.helpers import cluster

FINALIZER = "ray.io/gcs-ft-redis-cleanup-finalizer"
DELETED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FT = {"gcsFaultToleranceOptions": {"redisAddress": "redis:6379"}}


def facts(*, after: float = 1, heads: int = 0, live: int = 0, job: dict | None = None) -> CleanupFacts:  # type: ignore[type-arg]
    return CleanupFacts(now=DELETED + timedelta(seconds=after), head_pods=heads, live_pods=live, job=job)


def deleted(**spec: object) -> object:
    rc = cluster(groups=[], **{**FT, **spec})
    rc.metadata.deletion_timestamp = "2026-11-25T12:00:00Z"
    return rc


def test_a_live_ft_cluster_first_gets_the_finalizer_and_then_reconciles_normally() -> None:
    rc = cluster(groups=[], **FT)
    assert plan_cleanup(cluster=rc, finalizers=[], facts=facts()) is CleanupStep.ADD_FINALIZER
    assert plan_cleanup(cluster=rc, finalizers=[FINALIZER], facts=facts()) is CleanupStep.NONE


def test_clusters_without_redis_ft_are_left_alone() -> None:
    assert plan_cleanup(cluster=cluster(groups=[]), finalizers=[], facts=facts()) is CleanupStep.NONE
    rocksdb = cluster(groups=[], gcsFaultToleranceOptions={"backend": "rocksdb"})
    assert plan_cleanup(cluster=rocksdb, finalizers=[], facts=facts()) is CleanupStep.NONE
    legacy = cluster(groups=[])
    legacy.metadata.annotations = {"ray.io/ft-enabled": "true"}
    assert plan_cleanup(cluster=legacy, finalizers=[], facts=facts()) is CleanupStep.ADD_FINALIZER


@pytest.mark.parametrize(
    ("state", "step"),
    [
        ({"live": 2, "heads": 1}, CleanupStep.DELETE_PODS),
        ({"heads": 1}, CleanupStep.WAIT_FOR_HEAD),
        ({}, CleanupStep.CREATE_JOB),
        ({"job": {"status": {"active": 1}}}, CleanupStep.WAIT_FOR_JOB),
        ({"job": {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}}, CleanupStep.REMOVE_FINALIZER),
        ({"job": {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}}, CleanupStep.REMOVE_FINALIZER),
        ({"after": 301, "heads": 1}, CleanupStep.FORCE_REMOVE_FINALIZER),
    ],
)
def test_deletion_deletes_pods_waits_for_the_head_runs_the_job_then_drops_the_finalizer(
    state: dict,
    step: CleanupStep,  # type: ignore[type-arg]
) -> None:
    assert plan_cleanup(cluster=deleted(), finalizers=[FINALIZER], facts=facts(**state)) is step


def test_the_deletion_timeout_annotation_moves_the_forced_removal() -> None:
    rc = deleted()
    rc.metadata.annotations = {"ray.io/gcs-ft-deletion-timeout": "30"}  # type: ignore[attr-defined]
    assert plan_cleanup(cluster=rc, finalizers=[FINALIZER], facts=facts(after=31, heads=1)) is (
        CleanupStep.FORCE_REMOVE_FINALIZER
    )
    assert plan_cleanup(cluster=deleted(), finalizers=[], facts=facts()) is CleanupStep.NONE


def test_the_recreate_hash_ignores_scale_and_scheduling_fields() -> None:
    base = {
        "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray", "image": "ray:1"}]}}},
        "workerGroupSpecs": [{"groupName": "g", "replicas": 1, "template": {"spec": {"containers": []}}}],
    }
    scaled = {
        **base,
        "upgradeStrategy": {"type": "Recreate"},
        "workerGroupSpecs": [
            {
                "groupName": "g",
                "replicas": 5,
                "minReplicas": 2,
                "maxReplicas": 9,
                "scaleStrategy": {"workersToDelete": ["x"]},
                "template": {"spec": {"containers": [], "tolerations": [{"key": "k"}]}},
            }
        ],
    }
    assert recreate_hash(base) == recreate_hash(scaled)
    image = {**base, "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray", "image": "ray:2"}]}}}}
    assert recreate_hash(image) != recreate_hash(base)
    assert len(recreate_hash(base)) == 32
