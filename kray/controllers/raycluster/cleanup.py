"""A Redis fault-tolerant RayCluster: guard it with a finalizer, clean Redis when it is deleted. Pure.

KubeRay's flow (reference §2.8): a live cluster first gets ``ray.io/gcs-ft-redis-cleanup-finalizer``
(and nothing else happens in that pass). A deleted one loses its pods, waits until its head pod is
gone (GCS may still write to Redis until then), runs the ``<cluster>-redis-cleanup`` Job once, and
drops the finalizer when the Job finished, successfully or not. A cluster stuck in deletion longer
than ``ray.io/gcs-ft-deletion-timeout`` seconds (default 300) loses the finalizer anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kray.api.v1.enums import GcsFaultToleranceBackend
from kray.api.v1.raycluster import RayCluster
from kray.controllers.common import labels as keys
from kray.controllers.common.pod_env import ft_enabled

DEFAULT_DELETION_TIMEOUT = 300
REQUEUE_HEAD_TERMINATING = 10.0


class CleanupStep(StrEnum):
    NONE = "none"
    """Not a Redis fault-tolerant cluster, or nothing left to do: reconcile normally (or stop if deleted)."""
    ADD_FINALIZER = "add-finalizer"
    DELETE_PODS = "delete-pods"
    """Delete the head and worker pods that are not yet terminating."""
    WAIT_FOR_HEAD = "wait-for-head"
    CREATE_JOB = "create-job"
    WAIT_FOR_JOB = "wait-for-job"
    REMOVE_FINALIZER = "remove-finalizer"
    FORCE_REMOVE_FINALIZER = "force-remove-finalizer"


@dataclass(frozen=True, slots=True)
class CleanupFacts:
    """What the planner needs to know about the world besides the cluster."""

    now: datetime
    head_pods: int
    """Head pods that still exist (terminating or not)."""
    live_pods: int
    """Head and worker pods not yet marked for deletion."""
    job: Mapping[str, Any] | None
    """The existing Redis cleanup Job, if any."""


def redis_cleanup_applies(cluster: RayCluster) -> bool:
    """GCS fault tolerance on Redis (options or the legacy annotation); not the embedded rocksdb backend."""
    options = cluster.spec.gcs_fault_tolerance_options
    if options is not None and options.backend is GcsFaultToleranceBackend.ROCKSDB:
        return False
    return ft_enabled(cluster)


def deletion_timeout(cluster: RayCluster) -> int:
    text = (cluster.metadata.annotations or {}).get(keys.GCS_FT_DELETION_TIMEOUT, "")
    try:
        value = int(text)
    except ValueError:
        return DEFAULT_DELETION_TIMEOUT
    return value if value > 0 else DEFAULT_DELETION_TIMEOUT


def job_finished(job: Mapping[str, Any]) -> bool:
    """``IsJobFinished``: a Complete or Failed condition that is True."""
    conditions: Sequence[Mapping[str, Any]] = (job.get("status") or {}).get("conditions") or ()
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def plan_cleanup(*, cluster: RayCluster, finalizers: Sequence[str], facts: CleanupFacts) -> CleanupStep:
    if not redis_cleanup_applies(cluster):
        return CleanupStep.NONE
    deleted_at = cluster.metadata.deletion_timestamp
    if deleted_at is None:
        if keys.GCS_FT_REDIS_CLEANUP_FINALIZER in finalizers:
            return CleanupStep.NONE
        return CleanupStep.ADD_FINALIZER
    if keys.GCS_FT_REDIS_CLEANUP_FINALIZER not in finalizers:
        return CleanupStep.NONE
    since = _parse_time(str(deleted_at))
    if since is not None and (facts.now - since).total_seconds() > deletion_timeout(cluster):
        return CleanupStep.FORCE_REMOVE_FINALIZER
    if facts.live_pods:
        return CleanupStep.DELETE_PODS
    if facts.head_pods:
        return CleanupStep.WAIT_FOR_HEAD
    if facts.job is None:
        return CleanupStep.CREATE_JOB
    return CleanupStep.REMOVE_FINALIZER if job_finished(facts.job) else CleanupStep.WAIT_FOR_JOB


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
