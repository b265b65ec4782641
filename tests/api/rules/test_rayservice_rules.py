"""KubeRay's RayService validation (reference §1.6), rule by rule, through kray's manifest pipeline.

Why: a RayService that breaks one of these rules sits at ``Ready=False/ValidationFailed`` on
Kubernetes; kray must refuse it with the field named, including the Go-duration parsing of the
``ray.io/initializing-timeout`` annotation and the incremental-upgrade option checks.
"""

from __future__ import annotations

from typing import Any

import pytest

from kray.api.rules import FeatureGates
from tests.api.rules.support import DELETE, assert_errors, cluster_spec, errors_of, with_changes

RULE = "ValidateRayServiceSpec"
META = "ValidateRayServiceMetadata"
TIMEOUT = "metadata.annotations[ray.io/initializing-timeout]"
OPTIONS = "spec.upgradeStrategy.clusterUpgradeOptions"


BASE: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayService",
    "metadata": {"name": "svc"},
    "spec": {
        "serveConfigV2": "applications:\n  - name: app\n    import_path: app:deployment\n",
        "rayClusterConfig": cluster_spec(),
    },
}


def test_base_manifest_is_valid() -> None:
    assert errors_of(BASE) == ()


def incremental(**options: Any) -> dict[str, Any]:
    """An incremental upgrade on an autoscaling cluster with valid options, overridden (DELETE drops one)."""
    upgrade: dict[str, Any] = {"gatewayClassName": "istio", "stepSizePercent": 10, "intervalSeconds": 30}
    upgrade.update(options)
    upgrade = {key: value for key, value in upgrade.items() if value is not DELETE}
    return {
        "spec.rayClusterConfig.enableInTreeAutoscaling": True,
        "spec.upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": upgrade},
    }


INVALID = [
    pytest.param(
        {"metadata.name": "s" * 48}, None, [("metadata.name", META, "no more than 47 characters")], id="name-48-chars"
    ),
    pytest.param(
        {"metadata.name": "svc_1"}, None, [("metadata.name", META, "valid DNS-1035 label")], id="name-not-dns1035"
    ),
    pytest.param({TIMEOUT: "abc"}, None, [(TIMEOUT, META, "invalid format 'abc'")], id="timeout-abc"),
    pytest.param({TIMEOUT: "5 minutes"}, None, [(TIMEOUT, META, "invalid format")], id="timeout-words"),
    pytest.param({TIMEOUT: "5x"}, None, [(TIMEOUT, META, "invalid format '5x'")], id="timeout-bad-unit"),
    pytest.param({TIMEOUT: "0"}, None, [(TIMEOUT, META, "must be positive, got '0'")], id="timeout-zero"),
    pytest.param({TIMEOUT: "0s"}, None, [(TIMEOUT, META, "must be positive, got '0s'")], id="timeout-zero-seconds"),
    pytest.param(
        {TIMEOUT: "-5m"}, None, [(TIMEOUT, META, "must be positive, got '-5m'")], id="timeout-negative-duration"
    ),
    pytest.param(
        {TIMEOUT: "-30"}, None, [(TIMEOUT, META, "must be positive, got '-30'")], id="timeout-negative-seconds"
    ),
    pytest.param(
        {"spec.rayClusterConfig.headGroupSpec.headService": {"metadata": {"name": "my-head"}}},
        None,
        [("spec.rayClusterConfig.headGroupSpec.headService.metadata.name", RULE, "must not be set for a RayService")],
        id="head-service-name",
    ),
    pytest.param(
        {"spec.upgradeStrategy": {"type": "Rolling"}},
        None,
        [("spec.upgradeStrategy.type", RULE, "'Rolling' is invalid; expected one of NewCluster")],
        id="upgrade-type-unknown",
    ),
    pytest.param(
        {"spec.upgradeStrategy": {"type": "newcluster"}},
        None,
        [("spec.upgradeStrategy.type", RULE, "'newcluster' is invalid")],
        id="upgrade-type-wrong-case",
    ),
    pytest.param(
        incremental(),
        FeatureGates.parse("RayServiceIncrementalUpgrade=false"),
        [("spec.upgradeStrategy.type", "FeatureGate/RayServiceIncrementalUpgrade", "RayServiceIncrementalUpgrade")],
        id="incremental-gate-off",
    ),
    pytest.param(
        {**incremental(), "spec.rayClusterConfig.enableInTreeAutoscaling": False},
        None,
        [("spec.rayClusterConfig.enableInTreeAutoscaling", RULE, "the Ray autoscaler is required")],
        id="incremental-without-autoscaling",
    ),
    pytest.param(
        {**incremental(), "spec.upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}},
        None,
        [(OPTIONS, RULE, "is required for NewClusterWithIncrementalUpgrade")],
        id="incremental-without-options",
    ),
    pytest.param(
        incremental(maxSurgePercent=150),
        None,
        [(f"{OPTIONS}.maxSurgePercent", RULE, "must be between 0 and 100")],
        id="incremental-surge-150",
    ),
    pytest.param(
        incremental(maxSurgePercent=-1, stepSizePercent=0),
        None,
        [
            (f"{OPTIONS}.maxSurgePercent", RULE, "must be between 0 and 100"),
            (f"{OPTIONS}.stepSizePercent", RULE, "must be less than or equal to maxSurgePercent"),
        ],
        id="incremental-surge-negative",
    ),
    pytest.param(
        incremental(stepSizePercent=120),
        None,
        [(f"{OPTIONS}.stepSizePercent", RULE, "must be between 0 and 100")],
        id="incremental-step-120",
    ),
    pytest.param(
        incremental(maxSurgePercent=20, stepSizePercent=50),
        None,
        [(f"{OPTIONS}.stepSizePercent", RULE, "must be less than or equal to maxSurgePercent")],
        id="incremental-step-above-surge",
    ),
    pytest.param(
        incremental(intervalSeconds=0),
        None,
        [(f"{OPTIONS}.intervalSeconds", RULE, "must be greater than 0")],
        id="incremental-interval-zero",
    ),
    pytest.param(
        incremental(gatewayClassName=""),
        None,
        [(f"{OPTIONS}.gatewayClassName", RULE, "is required for NewClusterWithIncrementalUpgrade")],
        id="incremental-empty-gateway-class",
    ),
    pytest.param(
        incremental(gatewayClassName=DELETE),
        None,
        [(f"{OPTIONS}.gatewayClassName", "schema", "required field is missing")],
        id="incremental-missing-gateway-class",
    ),
    pytest.param(
        {
            "spec.rayClusterConfig.rayVersion": "2.55.0",
            "spec.rayClusterConfig.authOptions": {"mode": "token", "enableK8sTokenAuth": True},
        },
        None,
        [("spec.rayClusterConfig.authOptions.enableK8sTokenAuth", RULE, "not supported for RayService")],
        id="k8s-token-auth",
    ),
    pytest.param(
        {"spec.rayClusterDeletionDelaySeconds": -1},
        None,
        [("spec.rayClusterDeletionDelaySeconds", "schema", "-1 is less than the minimum 0")],
        id="deletion-delay-negative",
    ),
    pytest.param(
        {"spec.rayClusterConfig.workerGroupSpecs[0].minReplicas": 4},
        None,
        [
            (
                "spec.rayClusterConfig.workerGroupSpecs[0].minReplicas",
                "ValidateRayClusterSpec",
                "4 is greater than maxReplicas 3",
            )
        ],
        id="embedded-min-greater-than-max",
    ),
    pytest.param(
        {"spec.rayClusterConfig.tlsOptions": {"enabled": True}},
        None,
        [("spec.rayClusterConfig.tlsOptions", "FeatureGate/RayClusterMTLS", "RayClusterMTLS feature gate")],
        id="embedded-tls-gate",
    ),
]


@pytest.mark.parametrize(("changes", "gates", "expected"), INVALID)
def test_invalid_rayservice(
    changes: dict[str, Any], gates: FeatureGates | None, expected: list[tuple[str, str, str]]
) -> None:
    assert_errors(errors_of(with_changes(BASE, changes), gates), expected)


VALID = [
    pytest.param({"metadata.name": "s" * 47}, id="name-47-chars"),
    pytest.param({TIMEOUT: "5m"}, id="timeout-5m"),
    pytest.param({TIMEOUT: "300"}, id="timeout-300"),
    pytest.param({TIMEOUT: "1h30m"}, id="timeout-1h30m"),
    pytest.param({TIMEOUT: "1.5h"}, id="timeout-1.5h"),
    pytest.param({TIMEOUT: "+90s"}, id="timeout-plus-90s"),
    pytest.param(
        {"spec.rayClusterConfig.headGroupSpec.headService": {"metadata": {"labels": {"a": "b"}}}}, id="head-service"
    ),
    pytest.param({"spec.upgradeStrategy": {"type": "NewCluster"}}, id="upgrade-new-cluster"),
    pytest.param({"spec.upgradeStrategy": {"type": "None"}}, id="upgrade-none"),
    pytest.param({"spec.upgradeStrategy": {}}, id="upgrade-empty"),
    pytest.param(incremental(), id="incremental-default-surge"),
    pytest.param(incremental(maxSurgePercent=10, stepSizePercent=10), id="incremental-step-equals-surge"),
    pytest.param(incremental(maxSurgePercent=0, stepSizePercent=0, intervalSeconds=1), id="incremental-zero-percent"),
    pytest.param(incremental(stepSizePercent=100), id="incremental-step-100-default-surge"),
    pytest.param({"spec.rayClusterDeletionDelaySeconds": 0}, id="deletion-delay-zero"),
]


@pytest.mark.parametrize("changes", VALID)
def test_valid_rayservice_neighbour(changes: dict[str, Any]) -> None:
    errors = errors_of(with_changes(BASE, changes))
    assert errors == (), [str(e) for e in errors]


def test_all_errors_are_reported_together() -> None:
    manifest = with_changes(
        BASE,
        {
            TIMEOUT: "soon",
            "spec.rayClusterConfig.headGroupSpec.headService": {"metadata": {"name": "x"}},
            "spec.upgradeStrategy": {"type": "BlueGreen"},
        },
    )
    assert_errors(
        errors_of(manifest),
        [
            (TIMEOUT, META, "invalid format 'soon'"),
            ("spec.rayClusterConfig.headGroupSpec.headService.metadata.name", RULE, "must not be set"),
            ("spec.upgradeStrategy.type", RULE, "'BlueGreen' is invalid"),
        ],
    )
