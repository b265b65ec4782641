"""RayService (``ray.io/v1``): spec and status, field for field as KubeRay v1.7 (reference §1.4)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kray.api.v1._base import Int32, Int64, KubeModel, ObjectMeta, Schema, Service, Time
from kray.api.v1.raycluster import (
    Conditions,
    ManagedByField,
    ObjectMetaField,
    RayClusterSpec,
    RayClusterStatus,
)


class ClusterUpgradeOptions(KubeModel):
    max_surge_percent: Int32 | None = 100
    step_size_percent: Int32
    interval_seconds: Int32
    gateway_class_name: str


class RayServiceUpgradeStrategy(KubeModel):
    type: str | None = None
    """NewCluster | NewClusterWithIncrementalUpgrade | None; validated by the controller, as KubeRay."""
    cluster_upgrade_options: ClusterUpgradeOptions | None = None


class ServeDeploymentStatus(KubeModel):
    status: str | None = None
    message: str | None = None


class AppStatus(KubeModel):
    status: str | None = None
    message: str | None = None
    serve_deployment_statuses: dict[str, ServeDeploymentStatus] | None = None


class RayServiceStatus(KubeModel):
    """The status of one RayCluster behind a RayService (active or pending)."""

    application_statuses: dict[str, AppStatus] | None = None
    target_capacity: Int32 | None = None
    traffic_routed_percent: Int32 | None = None
    last_traffic_migrated_time: Time | None = None
    ray_cluster_name: str | None = None
    ray_cluster_status: RayClusterStatus | None = None


class RayServiceSpec(KubeModel):
    ray_cluster_deletion_delay_seconds: Annotated[Int32 | None, Schema({"minimum": 0})] = None
    service_unhealthy_second_threshold: Int32 | None = None
    deployment_unhealthy_second_threshold: Int32 | None = None
    serve_service: Service | None = None
    upgrade_strategy: RayServiceUpgradeStrategy | None = None
    serve_config_v2: str | None = Field(default=None, alias="serveConfigV2")
    ray_cluster_config: RayClusterSpec = Field(alias="rayClusterConfig")
    managed_by: ManagedByField | None = None
    exclude_head_pod_from_serve_svc: bool | None = None
    suspend: bool | None = None


class RayServiceStatuses(KubeModel):
    conditions: Conditions | None = None
    last_update_time: Time | None = None
    service_status: str | None = None
    active_service_status: RayServiceStatus | None = None
    pending_service_status: RayServiceStatus | None = None
    num_serve_endpoints: Int32 | None = None
    observed_generation: Int64 | None = None


class RayService(KubeModel):
    api_version: Literal["ray.io/v1"] = "ray.io/v1"
    kind: Literal["RayService"] = "RayService"
    metadata: ObjectMetaField = Field(default_factory=ObjectMeta)
    spec: RayServiceSpec
    status: RayServiceStatuses | None = None
