"""The ``ray.io/v1`` API as typed pydantic models: RayCluster, RayJob, RayService, RayCronJob."""

from kray.api.v1.conditions import Condition, ConditionStatus
from kray.api.v1.raycluster import (
    HeadGroupSpec,
    RayCluster,
    RayClusterSpec,
    RayClusterStatus,
    WorkerGroupSpec,
)
from kray.api.v1.raycronjob import RayCronJob, RayCronJobSpec, RayCronJobStatus
from kray.api.v1.rayjob import RayJob, RayJobSpec, RayJobStatus
from kray.api.v1.rayservice import RayService, RayServiceSpec, RayServiceStatuses

GROUP = "ray.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

RayObject = RayCluster | RayJob | RayService | RayCronJob
KINDS: dict[str, type[RayCluster] | type[RayJob] | type[RayService] | type[RayCronJob]] = {
    "RayCluster": RayCluster,
    "RayJob": RayJob,
    "RayService": RayService,
    "RayCronJob": RayCronJob,
}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "HeadGroupSpec",
    "RayCluster",
    "RayClusterSpec",
    "RayClusterStatus",
    "RayCronJob",
    "RayCronJobSpec",
    "RayCronJobStatus",
    "RayJob",
    "RayJobSpec",
    "RayJobStatus",
    "RayObject",
    "RayService",
    "RayServiceSpec",
    "RayServiceStatuses",
    "WorkerGroupSpec",
]
