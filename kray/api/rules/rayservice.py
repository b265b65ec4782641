"""RayService rules: KubeRay's ``ValidateRayServiceMetadata`` / ``ValidateRayServiceSpec`` with paths.

On Kubernetes these set the ``Ready`` condition to False with reason ``ValidationFailed``.
"""

from __future__ import annotations

import re

from kray.api.errors import FieldError, shorten
from kray.api.rules.gates import FeatureGates
from kray.api.rules.raycluster import check_cluster_spec, check_name
from kray.api.v1.enums import RayServiceUpgradeType
from kray.api.v1.rayservice import RayService

MAX_RAYSERVICE_NAME_LENGTH = 47
INITIALIZING_TIMEOUT_ANNOTATION = "ray.io/initializing-timeout"
RULE = "ValidateRayServiceSpec"
_NUMBER = r"([0-9]{1,18}(\.[0-9]{0,18})?|\.[0-9]{1,18})"
_GO_DURATION = re.compile(rf"^[-+]?({_NUMBER}(ns|us|µs|ms|s|m|h))+$")


def parse_go_duration_seconds(text: str) -> float | None:
    """Seconds in a Go duration such as ``1h30m`` or ``90s``; None if it is not one."""
    if text in {"0", "+0", "-0"}:
        return 0.0
    if not _GO_DURATION.match(text):
        return None
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = sum(float(n) * units[u] for n, _, u in re.findall(rf"{_NUMBER}(ns|us|µs|ms|s|m|h)", text))
    return -total if text.startswith("-") else total


def check_initializing_timeout(value: str) -> str | None:
    """KubeRay's check of ``ray.io/initializing-timeout``: a positive Go duration or integer seconds."""
    seconds = parse_go_duration_seconds(value)
    if seconds is None and re.fullmatch(r"[-+]?[0-9]{1,18}", value):
        seconds = float(int(value))
    if seconds is None:
        return f"invalid format {shorten(value)}: expected a Go duration (e.g. '5m', '1h') or positive integer seconds"
    if seconds <= 0:
        return f"must be positive, got {shorten(value)}"
    return None


def check_rayservice(service: RayService, *, gates: FeatureGates) -> list[FieldError]:
    meta = service.metadata
    annotations = meta.annotations or {}
    errors = check_name(
        kind="RayService", name=meta.name, limit=MAX_RAYSERVICE_NAME_LENGTH, rule="ValidateRayServiceMetadata"
    )
    timeout = annotations.get(INITIALIZING_TIMEOUT_ANNOTATION)
    if timeout:
        problem = check_initializing_timeout(timeout)
        if problem:
            errors.append(
                FieldError(
                    f"metadata.annotations[{INITIALIZING_TIMEOUT_ANNOTATION}]",
                    problem,
                    "ValidateRayServiceMetadata",
                )
            )
    spec = service.spec
    cluster = spec.ray_cluster_config
    if cluster.auth_options is not None and cluster.auth_options.enable_k8s_token_auth:
        errors.append(
            FieldError(
                "spec.rayClusterConfig.authOptions.enableK8sTokenAuth",
                "Kubernetes token auth is not supported for RayService",
                RULE,
            )
        )
    errors += check_cluster_spec(cluster, path="spec.rayClusterConfig", annotations=annotations, gates=gates)
    head_service = cluster.head_group_spec.head_service or {}
    if (head_service.get("metadata") or {}).get("name"):
        errors.append(
            FieldError(
                "spec.rayClusterConfig.headGroupSpec.headService.metadata.name",
                "must not be set for a RayService (it names <rayservice>-head-svc itself)",
                RULE,
            )
        )
    errors += _check_upgrade(service, gates=gates)
    delay = spec.ray_cluster_deletion_delay_seconds
    if delay is not None and delay < 0:
        errors.append(FieldError("spec.rayClusterDeletionDelaySeconds", f"must be non-negative, got {delay}", RULE))
    return errors


def _check_upgrade(service: RayService, *, gates: FeatureGates) -> list[FieldError]:
    strategy = service.spec.upgrade_strategy
    if strategy is None or strategy.type is None:
        return []
    valid = [t.value for t in RayServiceUpgradeType]
    if strategy.type not in valid:
        return [
            FieldError(
                "spec.upgradeStrategy.type",
                f"{shorten(strategy.type)} is invalid; expected one of {', '.join(valid)}",
                RULE,
            )
        ]
    if strategy.type != RayServiceUpgradeType.NEW_CLUSTER_WITH_INCREMENTAL_UPGRADE:
        return []
    here = "spec.upgradeStrategy.clusterUpgradeOptions"
    if not gates.RayServiceIncrementalUpgrade:
        return [
            FieldError(
                "spec.upgradeStrategy.type",
                "requires the RayServiceIncrementalUpgrade feature gate",
                "FeatureGate/RayServiceIncrementalUpgrade",
            )
        ]
    if not service.spec.ray_cluster_config.autoscaling_enabled():
        return [
            FieldError(
                "spec.rayClusterConfig.enableInTreeAutoscaling",
                "the Ray autoscaler is required for NewClusterWithIncrementalUpgrade",
                RULE,
            )
        ]
    options = strategy.cluster_upgrade_options
    if options is None:
        return [FieldError(here, "is required for NewClusterWithIncrementalUpgrade", RULE)]
    surge = 100 if options.max_surge_percent is None else options.max_surge_percent
    errors = []
    if not 0 <= surge <= 100:
        errors.append(FieldError(f"{here}.maxSurgePercent", "must be between 0 and 100", RULE))
    if not 0 <= options.step_size_percent <= 100:
        errors.append(FieldError(f"{here}.stepSizePercent", "must be between 0 and 100", RULE))
    elif options.step_size_percent > surge:
        errors.append(FieldError(f"{here}.stepSizePercent", "must be less than or equal to maxSurgePercent", RULE))
    if options.interval_seconds <= 0:
        errors.append(FieldError(f"{here}.intervalSeconds", "must be greater than 0", RULE))
    if not options.gateway_class_name:
        errors.append(FieldError(f"{here}.gatewayClassName", "is required for NewClusterWithIncrementalUpgrade", RULE))
    return errors
