"""KubeRay's RayJob validation (reference §1.6), rule by rule, through kray's manifest pipeline.

Why: on Kubernetes a RayJob that breaks one of these rules ends in ``ValidationFailed`` only after it
was accepted; kray must refuse it up front, at the right field, and accept its valid neighbours.
The embedded cluster spec is validated with the RayCluster rules and reported under
``spec.rayClusterSpec``, so users can find the field in their own file.
"""

from __future__ import annotations

from typing import Any

import pytest

from kray.api.rules import FeatureGates
from tests.api.rules.support import DELETE, assert_errors, cluster_spec, container, errors_of, with_changes

RULE = "ValidateRayJobSpec"
META = "ValidateRayJobMetadata"
DS = "spec.deletionStrategy"


BASE: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"name": "job"},
    "spec": {
        "entrypoint": "python -c 'print(1)'",
        "rayClusterSpec": cluster_spec(),
    },
}


def test_base_manifest_is_valid() -> None:
    assert errors_of(BASE) == ()
    assert errors_of(BASE, FeatureGates.all_enabled()) == ()


SELECTOR = {"spec.rayClusterSpec": DELETE, "spec.clusterSelector": {"ray.io/cluster": "shared"}}
SHUTDOWN = {"spec.shutdownAfterJobFinishes": True}
SIDECAR = {"spec.submissionMode": "SidecarMode"}
AUTOSCALING = {"spec.rayClusterSpec.enableInTreeAutoscaling": True}


def rule(policy: str, ttl: int = 0, status: str = "SUCCEEDED") -> dict[str, Any]:
    return {"policy": policy, "condition": {"jobStatus": status, "ttlSeconds": ttl}}


def rules(*items: dict[str, Any]) -> dict[str, Any]:
    return {DS: {"deletionRules": list(items)}}


def legacy(on_success: str | None, on_failure: str | None) -> dict[str, Any]:
    strategy = {}
    if on_success is not None:
        strategy["onSuccess"] = {"policy": on_success}
    if on_failure is not None:
        strategy["onFailure"] = {"policy": on_failure}
    return {DS: strategy}


INVALID = [
    pytest.param(
        {"metadata.name": "j" * 48}, None, [("metadata.name", META, "no more than 47 characters")], id="name-48-chars"
    ),
    pytest.param(
        {"metadata.name": "My.Job"}, None, [("metadata.name", META, "valid DNS-1035 label")], id="name-not-dns1035"
    ),
    pytest.param(
        {"spec.suspend": True},
        None,
        [("spec.suspend", RULE, "shutdownAfterJobFinishes false cannot be suspended")],
        id="suspend-without-shutdown",
    ),
    pytest.param(
        {"spec.ttlSecondsAfterFinished": 60},
        None,
        [("spec.ttlSecondsAfterFinished", RULE, "needs shutdownAfterJobFinishes: true")],
        id="ttl-without-shutdown",
    ),
    pytest.param(
        {**SHUTDOWN, "spec.ttlSecondsAfterFinished": -1},
        None,
        [("spec.ttlSecondsAfterFinished", RULE, "must be a non-negative integer")],
        id="ttl-negative",
    ),
    pytest.param(
        {"spec.rayClusterSpec": DELETE},
        None,
        [("spec.rayClusterSpec", RULE, "one of rayClusterSpec or clusterSelector must be set")],
        id="neither-cluster-spec-nor-selector",
    ),
    pytest.param(
        {"spec.rayClusterSpec": DELETE, "spec.clusterSelector": {}},
        None,
        [("spec.rayClusterSpec", RULE, "one of rayClusterSpec or clusterSelector must be set")],
        id="empty-cluster-selector",
    ),
    pytest.param(
        {**SELECTOR, "spec.clusterSelector": {"app": "shared"}},
        None,
        [("spec.clusterSelector[ray.io/cluster]", RULE, "must name the cluster to run on")],
        id="selector-without-ray-io-cluster",
    ),
    pytest.param(
        {**SELECTOR, "spec.clusterSelector[ray.io/cluster]": ""},
        None,
        [("spec.clusterSelector[ray.io/cluster]", RULE, "must name the cluster to run on")],
        id="selector-empty-ray-io-cluster",
    ),
    pytest.param(
        {**SELECTOR, **SHUTDOWN, "spec.suspend": True},
        None,
        [("spec.suspend", RULE, "clusterSelector mode does not support suspend")],
        id="selector-with-suspend",
    ),
    pytest.param(
        {**SELECTOR, **SIDECAR},
        None,
        [("spec.clusterSelector", RULE, "is not supported in SidecarMode")],
        id="selector-with-sidecar-mode",
    ),
    pytest.param(
        {**SELECTOR, "spec.backoffLimit": 2},
        None,
        [("spec.backoffLimit", RULE, "is incompatible with clusterSelector mode")],
        id="selector-with-backoff-limit",
    ),
    pytest.param(
        {"spec.submissionMode": "InteractiveMode", "spec.backoffLimit": 1},
        None,
        [("spec.backoffLimit", RULE, "is incompatible with InteractiveMode")],
        id="interactive-with-backoff-limit",
    ),
    pytest.param(
        {"spec.backoffLimit": -1}, None, [("spec.backoffLimit", RULE, "must be 0 or more")], id="backoff-negative"
    ),
    pytest.param(
        {**SIDECAR, "spec.submitterPodTemplate": {"spec": {"containers": [container("submitter")]}}},
        None,
        [("spec.submitterPodTemplate", RULE, "is not supported in SidecarMode")],
        id="sidecar-with-submitter-pod-template",
    ),
    pytest.param(
        {**SIDECAR, "spec.submitterConfig": {"backoffLimit": 1}},
        None,
        [("spec.submitterConfig", RULE, "is not supported in SidecarMode")],
        id="sidecar-with-submitter-config",
    ),
    pytest.param(
        {**SIDECAR, "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy": "Always"},
        None,
        [
            (
                "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
                RULE,
                "must be Never or unset in SidecarMode, got Always",
            )
        ],
        id="sidecar-with-head-restart-policy",
    ),
    pytest.param(
        {"spec.runtimeEnvYAML": "pip: [requests\nworking_dir: /tmp\n"},
        None,
        [("spec.runtimeEnvYAML", RULE, "is not valid YAML (line")],
        id="runtime-env-invalid-yaml",
    ),
    pytest.param(
        {"spec.runtimeEnvYAML": "- requests\n- numpy\n"},
        None,
        [("spec.runtimeEnvYAML", RULE, "must be a YAML mapping")],
        id="runtime-env-list",
    ),
    pytest.param(
        {"spec.activeDeadlineSeconds": 0},
        None,
        [("spec.activeDeadlineSeconds", RULE, "must be a positive integer")],
        id="active-deadline-zero",
    ),
    pytest.param(
        {"spec.activeDeadlineSeconds": -10},
        None,
        [("spec.activeDeadlineSeconds", RULE, "must be a positive integer")],
        id="active-deadline-negative",
    ),
    pytest.param(
        {"spec.preRunningDeadlineSeconds": 0},
        None,
        [("spec.preRunningDeadlineSeconds", "schema", "0 is less than the minimum 1")],
        id="pre-running-deadline-zero",
    ),
    pytest.param(
        {
            "spec.rayClusterSpec.rayVersion": "2.55.0",
            "spec.rayClusterSpec.authOptions": {"mode": "token", "enableK8sTokenAuth": True},
        },
        None,
        [("spec.rayClusterSpec.authOptions.enableK8sTokenAuth", RULE, "not supported for RayJob")],
        id="k8s-token-auth",
    ),
    # deletionStrategy
    pytest.param(
        rules(rule("DeleteCluster")),
        FeatureGates.parse("RayJobDeletionPolicy=false"),
        [(DS, "FeatureGate/RayJobDeletionPolicy", "requires the RayJobDeletionPolicy feature gate")],
        id="deletion-gate-off",
    ),
    pytest.param(
        {
            DS: {
                "onSuccess": {"policy": "DeleteCluster"},
                "onFailure": {"policy": "DeleteNone"},
                "deletionRules": [rule("DeleteSelf")],
            }
        },
        None,
        [(DS, RULE, "cannot use both the legacy onSuccess/onFailure fields and deletionRules")],
        id="deletion-legacy-and-rules",
    ),
    pytest.param(
        {**SHUTDOWN, **rules(rule("DeleteCluster"))},
        None,
        [(f"{DS}.deletionRules", RULE, "shutdownAfterJobFinishes and deletionRules are mutually exclusive")],
        id="deletion-rules-and-shutdown",
    ),
    pytest.param(
        legacy("DeleteCluster", None),
        None,
        [(f"{DS}.onFailure", RULE, "both onSuccess and onFailure must be set")],
        id="deletion-legacy-missing-on-failure",
    ),
    pytest.param(
        legacy(None, "DeleteCluster"),
        None,
        [(f"{DS}.onSuccess", RULE, "both onSuccess and onFailure must be set")],
        id="deletion-legacy-missing-on-success",
    ),
    pytest.param(
        {DS: {}},
        None,
        [(DS, RULE, "requires either both onSuccess and onFailure, or deletionRules")],
        id="deletion-empty",
    ),
    pytest.param(
        {DS: {"onSuccess": {}, "onFailure": {"policy": "DeleteCluster"}}},
        None,
        [(f"{DS}.onSuccess.policy", RULE, "required field is missing")],
        id="deletion-legacy-policy-missing",
    ),
    pytest.param(
        {**SHUTDOWN, **legacy("DeleteNone", "DeleteCluster")},
        None,
        [(DS, RULE, "shutdownAfterJobFinishes is true while a deletion policy is DeleteNone")],
        id="deletion-delete-none-and-shutdown",
    ),
    pytest.param(
        {**AUTOSCALING, **legacy("DeleteWorkers", "DeleteCluster")},
        None,
        [(DS, RULE, "DeleteWorkers does not support a RayCluster with autoscaling enabled")],
        id="deletion-legacy-delete-workers-autoscaling",
    ),
    pytest.param(
        {**SELECTOR, **legacy("DeleteCluster", "DeleteSelf")},
        None,
        [(f"{DS}.onSuccess.policy", RULE, "clusterSelector mode does not support DeleteCluster")],
        id="deletion-legacy-selector-delete-cluster",
    ),
    pytest.param(
        rules(rule("DeleteCluster", 10), rule("DeleteCluster", 20)),
        None,
        [(f"{DS}.deletionRules[1]", RULE, "duplicate rule for policy DeleteCluster and JobStatus SUCCEEDED")],
        id="deletion-duplicate-rule",
    ),
    pytest.param(
        rules(rule("DeleteWorkers", 100), rule("DeleteCluster", 10)),
        None,
        [
            (
                f"{DS}.deletionRules",
                RULE,
                "for JobStatus SUCCEEDED: DeleteCluster TTL (10) must be >= DeleteWorkers TTL (100)",
            )
        ],
        id="deletion-ttl-cluster-before-workers",
    ),
    pytest.param(
        rules(rule("DeleteSelf", 5, "FAILED"), rule("DeleteCluster", 50, "FAILED")),
        None,
        [(f"{DS}.deletionRules", RULE, "DeleteSelf TTL (5) must be >= DeleteCluster TTL (50)")],
        id="deletion-ttl-self-before-cluster",
    ),
    pytest.param(
        {**AUTOSCALING, **rules(rule("DeleteWorkers", 10))},
        None,
        [(f"{DS}.deletionRules[0].policy", RULE, "DeleteWorkers is not supported with autoscaling enabled")],
        id="deletion-rule-delete-workers-autoscaling",
    ),
    pytest.param(
        {**SELECTOR, **rules(rule("DeleteSelf"), rule("DeleteCluster", 0, "FAILED"))},
        None,
        [(f"{DS}.deletionRules[1].policy", RULE, "DeleteCluster is not supported with clusterSelector")],
        id="deletion-rule-selector-delete-cluster",
    ),
    pytest.param(
        rules({"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}}),
        None,
        [(f"{DS}.deletionRules[0].condition", RULE, "cannot set both jobStatus and jobDeploymentStatus")],
        id="deletion-rule-both-conditions",
    ),
    pytest.param(
        rules({"policy": "DeleteCluster", "condition": {"ttlSeconds": 5}}),
        None,
        [(f"{DS}.deletionRules[0].condition", RULE, "exactly one of jobStatus and jobDeploymentStatus")],
        id="deletion-rule-no-condition",
    ),
    pytest.param(
        {DS: {"deletionRules": []}},
        None,
        [(f"{DS}.deletionRules", "schema", "must have at least 1 item(s)")],
        id="deletion-rules-empty-list",
    ),
    pytest.param(
        rules(rule("DeleteCluster", -1)),
        None,
        [(f"{DS}.deletionRules[0].condition.ttlSeconds", "schema", "-1 is less than the minimum 0")],
        id="deletion-rule-negative-ttl",
    ),
    # the embedded cluster spec, reported where it sits in the RayJob
    pytest.param(
        {
            "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas": 5,
            "spec.rayClusterSpec.workerGroupSpecs[0].maxReplicas": 2,
        },
        None,
        [
            (
                "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas",
                "ValidateRayClusterSpec",
                "5 is greater than maxReplicas 2",
            )
        ],
        id="embedded-min-greater-than-max",
    ),
    pytest.param(
        {"spec.rayClusterSpec.headGroupSpec.template.spec.containers": []},
        None,
        [
            (
                "spec.rayClusterSpec.headGroupSpec.template.spec.containers",
                "ValidateRayClusterSpec",
                "at least one container",
            )
        ],
        id="embedded-head-no-containers",
    ),
    pytest.param(
        {
            "metadata.annotations[ray.io/ft-enabled]": "true",
            "spec.rayClusterSpec.gcsFaultToleranceOptions": {"redisAddress": "redis:6379"},
        },
        None,
        [("spec.rayClusterSpec.gcsFaultToleranceOptions", "ValidateRayClusterSpec", "both set")],
        id="embedded-ft-annotation-from-rayjob-metadata",
    ),
    pytest.param(
        {"spec.rayClusterSpec.networkPolicy": {}},
        None,
        [("spec.rayClusterSpec.networkPolicy", "FeatureGate/RayClusterNetworkPolicy", "feature gate")],
        id="embedded-network-policy-gate",
    ),
]


@pytest.mark.parametrize(("changes", "gates", "expected"), INVALID)
def test_invalid_rayjob(
    changes: dict[str, Any], gates: FeatureGates | None, expected: list[tuple[str, str, str]]
) -> None:
    assert_errors(errors_of(with_changes(BASE, changes), gates), expected)


VALID = [
    pytest.param({"metadata.name": "j" * 47}, id="name-47-chars"),
    pytest.param({**SHUTDOWN, "spec.suspend": True}, id="suspend-with-shutdown"),
    pytest.param({**SHUTDOWN, "spec.ttlSecondsAfterFinished": 60}, id="ttl-with-shutdown"),
    pytest.param({"spec.ttlSecondsAfterFinished": 0}, id="ttl-zero-without-shutdown"),
    pytest.param(SELECTOR, id="cluster-selector"),
    pytest.param({**SELECTOR, "spec.backoffLimit": 0}, id="cluster-selector-backoff-zero"),
    pytest.param({"spec.backoffLimit": 3}, id="backoff-in-k8s-job-mode"),
    pytest.param({"spec.submissionMode": "InteractiveMode"}, id="interactive-mode"),
    pytest.param(
        {**SIDECAR, "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy": "Never"}, id="sidecar-never"
    ),
    pytest.param(
        {"spec.submitterPodTemplate": {"spec": {"containers": [container("submitter")]}}, "spec.submitterConfig": {}},
        id="k8s-job-mode-with-submitter",
    ),
    pytest.param({"spec.runtimeEnvYAML": "pip:\n  - requests\nenv_vars:\n  A: b\n"}, id="runtime-env-mapping"),
    pytest.param({"spec.runtimeEnvYAML": "# nothing yet\n"}, id="runtime-env-comment-only"),
    pytest.param({"spec.activeDeadlineSeconds": 1, "spec.preRunningDeadlineSeconds": 1}, id="deadlines-one"),
    pytest.param(legacy("DeleteCluster", "DeleteNone"), id="deletion-legacy"),
    pytest.param({**SELECTOR, **legacy("DeleteSelf", "DeleteNone")}, id="deletion-legacy-selector"),
    pytest.param(
        rules(rule("DeleteWorkers", 10), rule("DeleteCluster", 10), rule("DeleteSelf", 60)),
        id="deletion-rules-ordered-equal-ttl",
    ),
    pytest.param(
        rules(rule("DeleteCluster", 100), rule("DeleteWorkers", 10, "FAILED")),
        id="deletion-rules-different-conditions",
    ),
    pytest.param(
        rules(
            rule("DeleteCluster", 0),
            {"policy": "DeleteCluster", "condition": {"jobDeploymentStatus": "Failed", "ttlSeconds": 0}},
        ),
        id="deletion-rules-same-policy-different-condition-kind",
    ),
    pytest.param({**SELECTOR, **rules(rule("DeleteSelf", 30), rule("DeleteNone"))}, id="deletion-rules-selector"),
    pytest.param(
        {"spec.rayClusterSpec.rayVersion": "2.52.0", "spec.rayClusterSpec.authOptions": {"mode": "token"}},
        id="token-auth",
    ),
]


@pytest.mark.parametrize("changes", VALID)
def test_valid_rayjob_neighbour(changes: dict[str, Any]) -> None:
    errors = errors_of(with_changes(BASE, changes))
    assert errors == (), [str(e) for e in errors]


def test_all_errors_are_reported_together() -> None:
    manifest = with_changes(
        BASE,
        {
            "spec.suspend": True,
            "spec.activeDeadlineSeconds": 0,
            "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas": 9,
        },
    )
    assert_errors(
        errors_of(manifest),
        [
            ("spec.suspend", RULE, "cannot be suspended"),
            ("spec.activeDeadlineSeconds", RULE, "must be a positive integer"),
            ("spec.rayClusterSpec.workerGroupSpecs[0].minReplicas", "ValidateRayClusterSpec", "9 is greater than"),
        ],
    )
