"""Building blocks of the RayJob planner tests: a RayJob manifest at a given status, at a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kray.api.v1.rayjob import RayJob
from kray.controllers.rayjob.plan import FINALIZER

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
HEAD = {"headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "h", "image": "x"}]}}}}


def job(
    status: dict[str, Any] | None = None, *, finalizers: bool = True, deleting: bool = False, **spec: Any
) -> RayJob:
    meta: dict[str, Any] = {"name": "demo", "namespace": "default"}
    if finalizers:
        meta["finalizers"] = [FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T12:00:00Z"
    body = {"entrypoint": "python x.py", "rayClusterSpec": HEAD, "submissionMode": "HTTPMode", **spec}
    manifest: dict[str, Any] = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta, "spec": body}
    if status is not None:
        manifest["status"] = status
    return RayJob.model_validate(manifest)


def running(**extra: Any) -> dict[str, Any]:
    return {
        "jobDeploymentStatus": "Running",
        "jobId": "demo-abcde",
        "rayClusterName": "demo-abcde",
        "startTime": "2026-11-25T12:00:00Z",
        "jobStatus": "",
        "succeeded": 0,
        "failed": 0,
        **extra,
    }


def initializing(**extra: Any) -> dict[str, Any]:
    return running(jobDeploymentStatus="Initializing", **extra)
