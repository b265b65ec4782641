"""RayJob (``ray.io/v1``): spec and status, field for field as KubeRay v1.7 (reference §1.3)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kray.api.v1._base import Int32, Int64, KubeModel, ObjectMeta, PodTemplateSpec, Schema, Time
from kray.api.v1.enums import (
    DeletionJobDeploymentStatus,
    DeletionJobStatus,
    DeletionPolicyType,
    JobDeploymentStatus,
    JobFailedReason,
    JobStatus,
    JobSubmissionMode,
)
from kray.api.v1.raycluster import ManagedByField, ObjectMetaField, RayClusterSpec, RayClusterStatus

_DELETION_STRATEGY_RULES = {
    "x-kubernetes-validations": [
        {
            "message": "legacy policies (onSuccess/onFailure) and deletionRules cannot be used together "
            "within the same deletionStrategy",
            "rule": "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))",
        },
        {
            "message": "deletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules "
            "field (cannot be empty)",
            "rule": "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))",
        },
    ]
}
_DELETION_CONDITION_RULES = {
    "x-kubernetes-validations": [
        {
            "message": "JobStatus and JobDeploymentStatus cannot be used together within the same deletion condition.",
            "rule": "!(has(self.jobStatus) && has(self.jobDeploymentStatus))",
        },
        {
            "message": "the deletion condition requires either the JobStatus or the JobDeploymentStatus field.",
            "rule": "has(self.jobStatus) || has(self.jobDeploymentStatus)",
        },
    ]
}


class SubmitterConfig(KubeModel):
    backoff_limit: Int32 | None = None


class DeletionPolicy(KubeModel):
    policy: DeletionPolicyType | None = None


class DeletionCondition(KubeModel):
    job_status: DeletionJobStatus | None = None
    job_deployment_status: DeletionJobDeploymentStatus | None = None
    ttl_seconds: Annotated[Int32, Schema({"minimum": 0})] = 0


class DeletionRule(KubeModel):
    policy: DeletionPolicyType
    condition: Annotated[DeletionCondition, Schema(_DELETION_CONDITION_RULES)]


class DeletionStrategy(KubeModel):
    on_success: DeletionPolicy | None = None
    on_failure: DeletionPolicy | None = None
    deletion_rules: Annotated[
        list[DeletionRule] | None,
        Schema({"minItems": 1, "x-kubernetes-list-type": "atomic"}),
    ] = None


class RayJobSpec(KubeModel):
    active_deadline_seconds: Int32 | None = None
    pre_running_deadline_seconds: Annotated[Int32 | None, Schema({"minimum": 1})] = None
    backoff_limit: Int32 | None = 0
    ray_cluster_spec: RayClusterSpec | None = None
    submitter_pod_template: PodTemplateSpec | None = None
    metadata: dict[str, str] | None = None
    cluster_selector: dict[str, str] | None = None
    submitter_config: SubmitterConfig | None = None
    managed_by: ManagedByField | None = None
    deletion_strategy: Annotated[DeletionStrategy | None, Schema(_DELETION_STRATEGY_RULES)] = None
    entrypoint: str | None = None
    runtime_env_yaml: str | None = Field(default=None, alias="runtimeEnvYAML")
    job_id: str | None = None
    submission_mode: JobSubmissionMode = JobSubmissionMode.K8S_JOB
    entrypoint_resources: str | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    ttl_seconds_after_finished: Int32 = 0
    shutdown_after_job_finishes: bool | None = None
    suspend: bool | None = None


class RayJobInfo(KubeModel):
    start_time: Time | None = None
    end_time: Time | None = None


class RayJobStatus(KubeModel):
    ray_job_info: RayJobInfo | None = Field(default=None, alias="rayJobInfo")
    job_id: str | None = None
    ray_cluster_name: str | None = None
    dashboard_url: str | None = Field(default=None, alias="dashboardURL")
    job_status: JobStatus | None = None
    job_deployment_status: JobDeploymentStatus | None = None
    reason: JobFailedReason | None = None
    message: str | None = None
    start_time: Time | None = None
    end_time: Time | None = None
    job_status_check_failure_start_time: Time | None = None
    succeeded: Int32 | None = 0
    failed: Int32 | None = 0
    ray_cluster_status: RayClusterStatus | None = None
    observed_generation: Int64 | None = None


class RayJob(KubeModel):
    api_version: Literal["ray.io/v1"] = "ray.io/v1"
    kind: Literal["RayJob"] = "RayJob"
    metadata: ObjectMetaField = Field(default_factory=ObjectMeta)
    spec: RayJobSpec
    status: RayJobStatus | None = None
