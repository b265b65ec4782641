"""RayCluster (``ray.io/v1``): spec and status, field for field as KubeRay v1.7 (reference §1.2)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kray.api.v1._base import (
    EnvFromSource,
    EnvVar,
    EnvVarSource,
    IngressTLS,
    Int32,
    Int64,
    KubeModel,
    NetworkPolicyEgressRule,
    NetworkPolicyIngressRule,
    ObjectMeta,
    PodTemplateSpec,
    Quantity,
    ResourceRequirements,
    Schema,
    SecurityContext,
    Service,
    Time,
    VolumeMount,
)
from kray.api.v1.conditions import Condition
from kray.api.v1.enums import (
    AuthMode,
    AutoscalerVersion,
    GcsFaultToleranceBackend,
    GcsStorageDeletionPolicy,
    IngressPathType,
    NetworkPolicyMode,
    RayClusterUpgradeType,
    UpscalingMode,
)

_MANAGED_BY_RULES = {
    "x-kubernetes-validations": [
        {"message": "the managedBy field is immutable", "rule": "self == oldSelf"},
        {
            "message": "the managedBy field value must be either 'ray.io/kuberay-operator' or "
            "'kueue.x-k8s.io/multikueue'",
            "rule": "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']",
        },
    ]
}
ManagedByField = Annotated[str, Schema(_MANAGED_BY_RULES)]
Conditions = Annotated[
    list[Condition],
    Schema({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
]
MAX_INT32 = 2**31 - 1
ObjectMetaField = Annotated[ObjectMeta, Schema({"type": "object"}, opaque=True)]
"""The API server owns metadata's schema; a CRD only says it is an object."""


class IngressOptions(KubeModel):
    host: str | None = None
    path: str | None = None
    path_type: IngressPathType | None = None
    tls: list[IngressTLS] | None = None


class HeadGroupSpec(KubeModel):
    template: PodTemplateSpec
    head_service: Service | None = None
    enable_ingress: bool | None = None
    ingress_options: IngressOptions | None = None
    resources: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    ray_start_params: dict[str, str] | None = None
    service_type: str | None = None


class ScaleStrategy(KubeModel):
    workers_to_delete: list[str] | None = None


class WorkerGroupSpec(KubeModel):
    group_name: str
    replicas: Int32 | None = 0
    min_replicas: Annotated[Int32 | None, Schema(required=True)] = 0
    max_replicas: Annotated[Int32 | None, Schema(required=True)] = MAX_INT32
    num_of_hosts: Int32 = 1
    idle_timeout_seconds: Int32 | None = None
    priority: Int32 | None = 0
    suspend: bool | None = None
    resources: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    ray_start_params: dict[str, str] | None = None
    template: PodTemplateSpec
    scale_strategy: ScaleStrategy | None = None


class AutoscalerOptions(KubeModel):
    resources: ResourceRequirements | None = None
    image: str | None = None
    image_pull_policy: str | None = None
    security_context: SecurityContext | None = None
    idle_timeout_seconds: Int32 | None = None
    upscaling_mode: UpscalingMode | None = None
    version: AutoscalerVersion | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    volume_mounts: list[VolumeMount] | None = None
    command: list[str] | None = None
    args: list[str] | None = None


class RedisCredential(KubeModel):
    value: str | None = None
    value_from: EnvVarSource | None = None


class GcsStorage(KubeModel):
    """Embedded (rocksdb) GCS storage: an existing claim, or a PVC KubeRay creates."""

    claim_name: str | None = None
    size: Quantity | None = None
    storage_class_name: str | None = None
    access_modes: list[str] | None = None
    sub_path: str | None = None
    deletion_policy: GcsStorageDeletionPolicy | None = None


class GcsFaultToleranceOptions(KubeModel):
    backend: Annotated[
        GcsFaultToleranceBackend | None,
        Schema(
            {
                "x-kubernetes-validations": [
                    {"message": "gcsFaultToleranceOptions.backend is immutable", "rule": "self == oldSelf"}
                ]
            }
        ),
    ] = None
    redis_username: RedisCredential | None = None
    redis_password: RedisCredential | None = None
    external_storage_namespace: str | None = None
    redis_address: str | None = None
    storage: GcsStorage | None = None


class AuthOptions(KubeModel):
    mode: AuthMode | None = None
    secret_name: str | None = None
    enable_k8s_token_auth: bool | None = Field(default=None, alias="enableK8sTokenAuth")


class RayClusterUpgradeStrategy(KubeModel):
    type: RayClusterUpgradeType | None = None


class NetworkPolicyRules(KubeModel):
    ingress_rules: list[NetworkPolicyIngressRule] | None = None
    egress_rules: list[NetworkPolicyEgressRule] | None = None


class WorkerGroupNetworkPolicy(NetworkPolicyRules):
    group_name: str


class NetworkPolicyConfig(KubeModel):
    mode: NetworkPolicyMode = NetworkPolicyMode.DENY_ALL
    head: NetworkPolicyRules | None = None
    worker: NetworkPolicyRules | None = None
    worker_groups: Annotated[
        list[WorkerGroupNetworkPolicy] | None,
        Schema({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["groupName"]}),
    ] = None


class TLSOptions(KubeModel):
    enabled: bool | None = None


class CollectorOptions(KubeModel):
    image: str | None = None
    image_pull_policy: str | None = None
    resources: ResourceRequirements | None = None
    env: list[EnvVar] | None = None


class HistoryServerOptions(KubeModel):
    collector_options: CollectorOptions | None = None


class RayClusterSpec(KubeModel):
    head_group_spec: HeadGroupSpec
    worker_group_specs: list[WorkerGroupSpec] | None = None
    ray_version: str | None = None
    enable_in_tree_autoscaling: bool | None = None
    autoscaler_options: AutoscalerOptions | None = None
    head_service_annotations: dict[str, str] | None = None
    suspend: bool | None = None
    managed_by: ManagedByField | None = None
    gcs_fault_tolerance_options: GcsFaultToleranceOptions | None = None
    auth_options: AuthOptions | None = None
    upgrade_strategy: RayClusterUpgradeStrategy | None = None
    network_policy: NetworkPolicyConfig | None = None
    tls_options: TLSOptions | None = Field(default=None, alias="tlsOptions")
    history_server_options: HistoryServerOptions | None = None

    def autoscaling_enabled(self) -> bool:
        return bool(self.enable_in_tree_autoscaling)

    def auth_enabled(self) -> bool:
        """Token auth is on only when ``mode`` is exactly ``token`` (KubeRay's ``IsAuthEnabled``)."""
        return self.auth_options is not None and self.auth_options.mode is AuthMode.TOKEN


class HeadInfo(KubeModel):
    pod_ip: str | None = Field(default=None, alias="podIP")
    service_ip: str | None = Field(default=None, alias="serviceIP")
    pod_name: str | None = None
    service_name: str | None = None


class RayClusterStatus(KubeModel):
    state: str | None = None
    desired_cpu: Quantity | None = Field(default=None, alias="desiredCPU")
    desired_memory: Quantity | None = None
    desired_gpu: Quantity | None = Field(default=None, alias="desiredGPU")
    desired_tpu: Quantity | None = Field(default=None, alias="desiredTPU")
    last_update_time: Annotated[Time | None, Schema({"nullable": True})] = None
    state_transition_times: dict[str, Time] | None = None
    endpoints: dict[str, str] | None = None
    head: HeadInfo | None = None
    reason: str | None = None
    conditions: Conditions | None = None
    ready_worker_replicas: Int32 | None = None
    available_worker_replicas: Int32 | None = None
    desired_worker_replicas: Int32 | None = None
    min_worker_replicas: Int32 | None = None
    max_worker_replicas: Int32 | None = None
    observed_generation: Int64 | None = None


class RayCluster(KubeModel):
    api_version: Literal["ray.io/v1"] = "ray.io/v1"
    kind: Literal["RayCluster"] = "RayCluster"
    metadata: ObjectMetaField = Field(default_factory=ObjectMeta)
    spec: RayClusterSpec
    status: RayClusterStatus | None = None
