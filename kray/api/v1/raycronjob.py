"""RayCronJob (``ray.io/v1``, alpha in KubeRay): a RayJob template run on a cron schedule (§1.5)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kray.api.v1._base import KubeModel, ObjectMeta, Schema, Time
from kray.api.v1.raycluster import ObjectMetaField
from kray.api.v1.rayjob import RayJobSpec


class RayCronJobSpec(KubeModel):
    job_template: RayJobSpec
    schedule: str
    time_zone: Annotated[str | None, Schema({"minLength": 1})] = None
    suspend: bool | None = None


class RayCronJobStatus(KubeModel):
    last_schedule_time: Time | None = None


class RayCronJob(KubeModel):
    api_version: Literal["ray.io/v1"] = "ray.io/v1"
    kind: Literal["RayCronJob"] = "RayCronJob"
    metadata: ObjectMetaField = Field(default_factory=ObjectMeta)
    spec: RayCronJobSpec
    status: RayCronJobStatus | None = None
