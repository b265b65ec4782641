"""KubeRay's RayCluster validation (reference §1.6), rule by rule, through kray's manifest pipeline.

Why: these rules run inside KubeRay's reconciler, so a manifest that breaks one is accepted by the API
server and then silently never reconciled. kray must refuse exactly those manifests, name the field,
and accept their valid neighbours (min == max, a gate switched on, ...), or users cannot trust it.
Each case starts from one valid manifest and changes only what the rule is about.
"""

from __future__ import annotations

from typing import Any

import pytest

from kray.api.rules import FeatureGates
from tests.api.rules.support import DELETE, assert_errors, cluster_spec, container, errors_of, with_changes

SPEC = "ValidateRayClusterSpec"
META = "ValidateRayClusterMetadata"
HEAD_ENV = "spec.headGroupSpec.template.spec.containers[0].env"
FTO = "spec.gcsFaultToleranceOptions"
ALL = FeatureGates.all_enabled()


_LARGE = {
    "groupName": "large",
    "replicas": 0,
    "minReplicas": 0,
    "maxReplicas": 2,
    "rayStartParams": {},
    "template": {"spec": {"containers": [container("ray-worker")]}},
}
_SPEC = cluster_spec()
BASE: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "demo"},
    "spec": {**_SPEC, "workerGroupSpecs": [*_SPEC["workerGroupSpecs"], _LARGE]},
}
"""The support module's valid RayClusterSpec, with a second (scaled to zero) worker group."""


def test_base_manifest_is_valid() -> None:
    assert errors_of(BASE) == ()
    assert errors_of(BASE, ALL) == ()


AUTOSCALING_V2 = {"spec.enableInTreeAutoscaling": True, "spec.autoscalerOptions": {"version": "v2"}}
FT_OPTIONS = {"spec.gcsFaultToleranceOptions": {"redisAddress": "redis:6379"}}
ROCKSDB = {"spec.gcsFaultToleranceOptions": {"backend": "rocksdb"}}
TOKEN_AUTH = {"spec.authOptions": {"mode": "token"}}
K8S_AUTH = {"spec.authOptions": {"mode": "token", "enableK8sTokenAuth": True}, "spec.rayVersion": "2.55.0"}
TLS_ON = {"spec.tlsOptions": {"enabled": True}}

INVALID = [
    # ValidateRayClusterMetadata
    pytest.param(
        {"metadata.name": "a" * 54}, None, [("metadata.name", META, "no more than 53 characters")], id="name-54-chars"
    ),
    pytest.param(
        {"metadata.name": "Demo_1"},
        None,
        [("metadata.name", META, "valid DNS-1035 label")],
        id="name-uppercase-underscore",
    ),
    pytest.param(
        {"metadata.name": "1demo"},
        None,
        [("metadata.name", META, "start with an alphabetic character")],
        id="name-leading-digit",
    ),
    pytest.param(
        {"metadata.name": "demo-"}, None, [("metadata.name", META, "valid DNS-1035 label")], id="name-trailing-dash"
    ),
    # containers
    pytest.param(
        {"spec.headGroupSpec.template.spec.containers": []},
        None,
        [("spec.headGroupSpec.template.spec.containers", SPEC, "headGroupSpec should have at least one container")],
        id="head-no-containers",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[1].template.spec.containers": []},
        None,
        [
            (
                "spec.workerGroupSpecs[1].template.spec.containers",
                SPEC,
                "workerGroupSpec should have at least one container",
            )
        ],
        id="worker-no-containers",
    ),
    # replicas
    pytest.param(
        {"spec.workerGroupSpecs[0].minReplicas": None},
        None,
        [
            (
                "spec.workerGroupSpecs[0].minReplicas",
                SPEC,
                "worker group small must set both minReplicas and maxReplicas",
            )
        ],
        id="min-null-without-autoscaling",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[1].maxReplicas": None},
        None,
        [("spec.workerGroupSpecs[1].maxReplicas", SPEC, "worker group large must set both")],
        id="max-null-without-autoscaling",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[0].minReplicas": -1},
        None,
        [("spec.workerGroupSpecs[0].minReplicas", SPEC, "-1 is negative")],
        id="min-negative",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[1].maxReplicas": -1},
        None,
        [
            ("spec.workerGroupSpecs[1].maxReplicas", SPEC, "-1 is negative"),
            ("spec.workerGroupSpecs[1].minReplicas", SPEC, "0 is greater than maxReplicas -1"),
        ],
        id="max-negative",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[1].minReplicas": 5},
        None,
        [("spec.workerGroupSpecs[1].minReplicas", SPEC, "5 is greater than maxReplicas 2")],
        id="min-greater-than-max",
    ),
    # resources declared twice, rayStartParams.labels, label syntax
    pytest.param(
        {"spec.headGroupSpec.resources": {"CPU": "2"}, "spec.headGroupSpec.rayStartParams[num-cpus]": "2"},
        None,
        [("spec.headGroupSpec.resources", SPEC, "both rayStartParams (num-cpus) and resources for Head group")],
        id="head-resources-and-num-cpus",
    ),
    pytest.param(
        {
            "spec.workerGroupSpecs[0].resources": {"GPU": "1"},
            "spec.workerGroupSpecs[0].rayStartParams": {"num-gpus": "1", "memory": "1000"},
        },
        None,
        [("spec.workerGroupSpecs[0].resources", SPEC, "rayStartParams (num-gpus, memory) and resources for small")],
        id="worker-resources-and-num-gpus-memory",
    ),
    pytest.param(
        {"spec.headGroupSpec.rayStartParams[labels]": "zone=a"},
        None,
        [("spec.headGroupSpec.rayStartParams[labels]", SPEC, "rayStartParams['labels'] is not supported for Head")],
        id="head-rayStartParams-labels",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[1].rayStartParams[labels]": "zone=a"},
        None,
        [("spec.workerGroupSpecs[1].rayStartParams[labels]", SPEC, "use the labels field instead")],
        id="worker-rayStartParams-labels",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[0].labels": {"bad key": "v"}},
        None,
        [("spec.workerGroupSpecs[0].labels[bad key]", SPEC, "invalid label key: name part must consist of")],
        id="label-key-space",
    ),
    pytest.param(
        {"spec.headGroupSpec.labels": {"Example.COM/zone": "a"}},
        None,
        [("spec.headGroupSpec.labels[Example.COM/zone]", SPEC, "prefix part must be a lowercase RFC 1123 subdomain")],
        id="label-key-uppercase-prefix",
    ),
    pytest.param(
        {"spec.headGroupSpec.labels": {"zone": "-west-"}},
        None,
        [("spec.headGroupSpec.labels[zone]", SPEC, "invalid label value '-west-'")],
        id="label-value-dashes",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[1].labels": {"zone": "a" * 64}},
        None,
        [("spec.workerGroupSpecs[1].labels[zone]", SPEC, "must be no more than 63 characters")],
        id="label-value-64-chars",
    ),
    # GCS fault tolerance
    pytest.param(
        {"metadata.annotations[ray.io/ft-enabled]": "true", **FT_OPTIONS},
        None,
        [(FTO, SPEC, "ray.io/ft-enabled annotation and gcsFaultToleranceOptions are both set")],
        id="ft-annotation-and-options",
    ),
    pytest.param(
        {"spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_REDIS_ADDRESS", "value": "r:6379"}]},
        None,
        [(HEAD_ENV, SPEC, "RAY_REDIS_ADDRESS implicitly enables GCS fault tolerance")],
        id="redis-address-env-without-ft",
    ),
    pytest.param(
        {**FT_OPTIONS, "spec.headGroupSpec.rayStartParams[redis-password]": "secret"},
        None,
        [("spec.headGroupSpec.rayStartParams[redis-password]", SPEC, "use gcsFaultToleranceOptions.redisPassword")],
        id="ft-options-and-redis-password-param",
    ),
    pytest.param(
        {
            **FT_OPTIONS,
            "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "REDIS_PASSWORD", "value": "s"}],
        },
        None,
        [(HEAD_ENV, SPEC, "cannot set REDIS_PASSWORD with gcsFaultToleranceOptions")],
        id="ft-options-and-redis-password-env",
    ),
    pytest.param(
        {
            **FT_OPTIONS,
            "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_REDIS_ADDRESS", "value": "r"}],
        },
        None,
        [(HEAD_ENV, SPEC, "cannot set RAY_REDIS_ADDRESS with gcsFaultToleranceOptions")],
        id="ft-options-and-redis-address-env",
    ),
    pytest.param(
        {**FT_OPTIONS, "metadata.annotations[ray.io/external-storage-namespace]": "ns"},
        None,
        [("metadata.annotations[ray.io/external-storage-namespace]", SPEC, "gcsFaultToleranceOptions.externalStorage")],
        id="ft-options-and-external-storage-annotation",
    ),
    pytest.param(
        {"spec.headGroupSpec.rayStartParams[redis-username]": "user"},
        None,
        [("spec.headGroupSpec", SPEC, "cannot set a redis username")],
        id="redis-username-param",
    ),
    pytest.param(
        {
            **FT_OPTIONS,
            "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "REDIS_USERNAME", "value": "u"}],
        },
        None,
        [("spec.headGroupSpec", SPEC, "use gcsFaultToleranceOptions.redisUsername")],
        id="redis-username-env",
    ),
    pytest.param(
        ROCKSDB,
        None,
        [(f"{FTO}.backend", "FeatureGate/GCSFaultToleranceEmbeddedStorage", "requires the GCSFaultToleranceEmbedded")],
        id="rocksdb-default-gates",
    ),
    pytest.param(
        {"spec.gcsFaultToleranceOptions": {"redisAddress": "r:6379", "storage": {"size": "1Gi"}}},
        None,
        [(f"{FTO}.storage", SPEC, "applies only to the 'rocksdb' backend")],
        id="storage-with-redis-backend",
    ),
    pytest.param(
        {"spec.gcsFaultToleranceOptions": {"backend": "rocksdb", "redisAddress": "r:6379"}},
        ALL,
        [(f"{FTO}.redisAddress", SPEC, "cannot be set when backend is 'rocksdb'")],
        id="rocksdb-with-redis-address",
    ),
    pytest.param(
        {"spec.gcsFaultToleranceOptions": {"backend": "rocksdb", "storage": {"claimName": "pvc", "size": "1Gi"}}},
        ALL,
        [(f"{FTO}.storage.claimName", SPEC, "mutually exclusive with size")],
        id="rocksdb-claim-and-size",
    ),
    pytest.param(
        {**ROCKSDB, "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_gcs_storage", "value": "x"}]},
        ALL,
        [(FTO, SPEC, "RAY_gcs_storage and RAY_gcs_storage_path are managed")],
        id="rocksdb-gcs-storage-env",
    ),
    pytest.param(
        {
            **ROCKSDB,
            "spec.headGroupSpec.template.spec.containers[0].volumeMounts": [{"name": "data", "mountPath": "/data/gcs"}],
        },
        ALL,
        [(FTO, SPEC, "the volume 'gcs-storage' at /data/gcs")],
        id="rocksdb-gcs-storage-mount",
    ),
    # worker suspend
    pytest.param(
        {"spec.workerGroupSpecs[0].suspend": True},
        FeatureGates.parse("RayJobDeletionPolicy=false"),
        [("spec.workerGroupSpecs[0].suspend", SPEC, "RayJobDeletionPolicy feature gate")],
        id="worker-suspend-gate-off",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[0].suspend": True, "spec.enableInTreeAutoscaling": True},
        None,
        [("spec.workerGroupSpecs[0].suspend", SPEC, "cannot be suspended with the autoscaler enabled")],
        id="worker-suspend-with-autoscaling",
    ),
    # autoscaler
    pytest.param(
        {"spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_enable_autoscaler_v2", "value": "1"}]},
        None,
        [(HEAD_ENV, SPEC, "RAY_enable_autoscaler_v2 cannot be enabled when enableInTreeAutoscaling is false")],
        id="autoscaler-v2-env-without-autoscaling",
    ),
    pytest.param(
        {
            **AUTOSCALING_V2,
            "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_enable_autoscaler_v2", "value": "1"}],
        },
        None,
        [("spec.autoscalerOptions.version", SPEC, "use only the former")],
        id="autoscaler-version-and-v2-env",
    ),
    pytest.param(
        {**AUTOSCALING_V2, "spec.headGroupSpec.template.spec.restartPolicy": "Always"},
        None,
        [
            (
                "spec.headGroupSpec.template.spec.restartPolicy",
                SPEC,
                "must be Never or unset with autoscaler v2, got Always",
            )
        ],
        id="v2-head-restart-policy",
    ),
    pytest.param(
        {**AUTOSCALING_V2, "spec.workerGroupSpecs[1].template.spec.restartPolicy": "OnFailure"},
        None,
        [("spec.workerGroupSpecs[1].template.spec.restartPolicy", SPEC, "got OnFailure")],
        id="v2-worker-restart-policy",
    ),
    pytest.param(
        {"spec.autoscalerOptions": {"idleTimeoutSeconds": -1}},
        None,
        [("spec.autoscalerOptions.idleTimeoutSeconds", SPEC, "must be non-negative")],
        id="autoscaler-idle-timeout-negative",
    ),
    pytest.param(
        {"spec.autoscalerOptions": {"env": [{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "x"}]}},
        None,
        [("spec.autoscalerOptions.env", SPEC, "must not contain KUBERAY_GEN_AUTOSCALER_START_CMD")],
        id="autoscaler-env-start-cmd",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[0].idleTimeoutSeconds": 60},
        None,
        [("spec.workerGroupSpecs[0].idleTimeoutSeconds", SPEC, "autoscaler v2 is not enabled")],
        id="idle-timeout-without-v2",
    ),
    pytest.param(
        {**AUTOSCALING_V2, "spec.workerGroupSpecs[0].idleTimeoutSeconds": -5},
        None,
        [("spec.workerGroupSpecs[0].idleTimeoutSeconds", SPEC, "must be non-negative")],
        id="idle-timeout-negative",
    ),
    # priority
    pytest.param(
        {**AUTOSCALING_V2, "spec.rayVersion": DELETE, "spec.workerGroupSpecs[0].priority": 1},
        None,
        [("spec.workerGroupSpecs[0].priority", SPEC, "rayVersion is not; Ray 2.56.0 or later is required")],
        id="priority-without-ray-version",
    ),
    pytest.param(
        {**AUTOSCALING_V2, "spec.rayVersion": "latest", "spec.workerGroupSpecs[0].priority": 1},
        None,
        [("spec.workerGroupSpecs[0].priority", SPEC, "rayVersion 'latest' is not a version")],
        id="priority-bad-ray-version",
    ),
    pytest.param(
        {**AUTOSCALING_V2, "spec.rayVersion": "2.55.0", "spec.workerGroupSpecs[1].priority": 3},
        None,
        [("spec.workerGroupSpecs[1].priority", SPEC, "priority needs Ray 2.56.0 or later, got rayVersion 2.55.0")],
        id="priority-old-ray",
    ),
    pytest.param(
        {"spec.rayVersion": "2.56.0", "spec.workerGroupSpecs[0].priority": 1},
        None,
        [("spec.workerGroupSpecs[0].priority", SPEC, "priority is set, but autoscaler v2 is not enabled")],
        id="priority-without-v2",
    ),
    # auth
    pytest.param(
        {**TOKEN_AUTH, "spec.rayVersion": "2.51.0"},
        None,
        [("spec.rayVersion", SPEC, "authOptions.mode 'token' needs Ray 2.52.0 or later, got 2.51.0")],
        id="auth-token-old-ray",
    ),
    pytest.param(
        {**TOKEN_AUTH, "spec.rayVersion": DELETE},
        None,
        [("spec.rayVersion", SPEC, "rayVersion is not set; Ray 2.52.0 or later is required")],
        id="auth-token-without-ray-version",
    ),
    pytest.param(
        {**TOKEN_AUTH, "spec.rayVersion": "nightly"},
        None,
        [("spec.rayVersion", SPEC, "'nightly' is not a valid version")],
        id="auth-token-bad-ray-version",
    ),
    pytest.param(
        {"spec.authOptions": {"enableK8sTokenAuth": True}, "spec.rayVersion": "2.55.0"},
        None,
        [("spec.authOptions.enableK8sTokenAuth", SPEC, "needs authOptions.mode 'token'")],
        id="k8s-auth-without-token-mode",
    ),
    pytest.param(
        {**K8S_AUTH, "spec.rayVersion": "2.54.0"},
        None,
        [("spec.rayVersion", SPEC, "enableK8sTokenAuth needs Ray 2.55.0 or later, got 2.54.0")],
        id="k8s-auth-old-ray",
    ),
    pytest.param(
        {**K8S_AUTH, "spec.authOptions.secretName": "token"},
        None,
        [("spec.authOptions.secretName", SPEC, "cannot be set with enableK8sTokenAuth")],
        id="k8s-auth-with-secret-name",
    ),
    # network policy
    pytest.param(
        {"spec.networkPolicy": {"mode": "DenyAllEgress", "head": {"ingressRules": [{}]}}},
        ALL,
        [("spec.networkPolicy.head.ingressRules", SPEC, "cannot be set when mode is DenyAllEgress")],
        id="network-policy-deny-egress-with-ingress-rules",
    ),
    pytest.param(
        {"spec.networkPolicy": {"mode": "DenyAllIngress", "worker": {"egressRules": [{}]}}},
        ALL,
        [("spec.networkPolicy.worker.egressRules", SPEC, "cannot be set when mode is DenyAllIngress")],
        id="network-policy-deny-ingress-with-egress-rules",
    ),
    pytest.param(
        {"spec.networkPolicy": {}, "spec.workerGroupSpecs[0].groupName": "Small_Group"},
        ALL,
        [("spec.workerGroupSpecs[0].groupName", SPEC, "must be a DNS-1123 label when networkPolicy is set")],
        id="network-policy-group-name-not-dns1123",
    ),
    pytest.param(
        {"spec.networkPolicy": {"workerGroups": [{"groupName": "medium"}]}},
        ALL,
        [("spec.networkPolicy.workerGroups[0].groupName", SPEC, "'medium' matches no group in workerGroupSpecs")],
        id="network-policy-unknown-group",
    ),
    # TLS
    pytest.param(
        {**TLS_ON, "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_USE_TLS", "value": "1"}]},
        ALL,
        [(HEAD_ENV, SPEC, "cannot set RAY_USE_TLS when tlsOptions is set")],
        id="tls-with-ray-use-tls-env",
    ),
    pytest.param(
        {
            **TLS_ON,
            "spec.workerGroupSpecs[1].template.spec.containers[0].volumeMounts": [
                {"name": "certs", "mountPath": "/etc/ray/tls"}
            ],
        },
        ALL,
        [
            (
                "spec.workerGroupSpecs[1].template.spec.containers[0].volumeMounts",
                SPEC,
                "conflicts with the operator-managed TLS mount",
            )
        ],
        id="tls-with-conflicting-mount",
    ),
    # history server
    pytest.param(
        {"spec.historyServerOptions": {}},
        ALL,
        [("spec.historyServerOptions.collectorOptions", SPEC, "must be set")],
        id="history-server-without-collector",
    ),
    pytest.param(
        {"spec.historyServerOptions": {"collectorOptions": {}}},
        ALL,
        [("spec.historyServerOptions.collectorOptions.image", SPEC, "must be set")],
        id="history-server-without-image",
    ),
    # upgrade strategy
    pytest.param(
        {"metadata.labels[ray.io/originated-from-crd]": "RayJob", "spec.upgradeStrategy": {"type": "Recreate"}},
        None,
        [
            (
                "spec.upgradeStrategy",
                "ValidateRayClusterUpgradeOptions",
                "cannot be set when RayCluster is created by RayJob",
            )
        ],
        id="upgrade-strategy-from-rayjob",
    ),
    pytest.param(
        {"metadata.labels[ray.io/originated-from-crd]": "RayService", "spec.upgradeStrategy": {"type": "None"}},
        None,
        [("spec.upgradeStrategy", "ValidateRayClusterUpgradeOptions", "created by RayService")],
        id="upgrade-strategy-from-rayservice",
    ),
    pytest.param(
        {"spec.upgradeStrategy": {"type": "Rolling"}},
        None,
        [("spec.upgradeStrategy.type", "schema", '"Rolling" is not one of "Recreate", "None"')],
        id="upgrade-strategy-bad-type",
    ),
]


@pytest.mark.parametrize(("changes", "gates", "expected"), INVALID)
def test_invalid_raycluster(
    changes: dict[str, Any], gates: FeatureGates | None, expected: list[tuple[str, str, str]]
) -> None:
    assert_errors(errors_of(with_changes(BASE, changes), gates), expected)


VALID = [
    pytest.param({"metadata.name": "a" * 53}, None, id="name-53-chars"),
    pytest.param({"metadata.name": "a-1"}, None, id="name-short-dns1035"),
    pytest.param({"metadata.name": DELETE, "metadata.generateName": "demo-"}, None, id="generate-name"),
    pytest.param({"spec.workerGroupSpecs[1].minReplicas": 2}, None, id="min-equals-max"),
    pytest.param({"spec.workerGroupSpecs[1].maxReplicas": 0}, None, id="min-max-zero"),
    pytest.param(
        {"spec.enableInTreeAutoscaling": True, "spec.workerGroupSpecs[0].maxReplicas": None},
        None,
        id="max-null-with-autoscaling",
    ),
    pytest.param({"spec.headGroupSpec.resources": {"CPU": "2", "GPU": "0"}}, None, id="resources-only"),
    pytest.param({"spec.headGroupSpec.rayStartParams[num-cpus]": "2"}, None, id="num-cpus-only"),
    pytest.param(
        {"spec.headGroupSpec.resources": {"CPU": "2"}, "spec.headGroupSpec.rayStartParams[num-cpus]": ""},
        None,
        id="resources-and-empty-num-cpus",
    ),
    pytest.param(
        {"spec.workerGroupSpecs[0].labels": {"example.com/zone": "us-west1_a", "tier": ""}}, None, id="good-labels"
    ),
    pytest.param(
        {
            "metadata.annotations[ray.io/ft-enabled]": "true",
            "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_REDIS_ADDRESS", "value": "r:6379"}],
        },
        None,
        id="ft-annotation-with-redis-address-env",
    ),
    pytest.param(FT_OPTIONS, None, id="ft-options-alone"),
    pytest.param({**ROCKSDB, "spec.gcsFaultToleranceOptions.storage": {"size": "2Gi"}}, ALL, id="rocksdb-with-gate"),
    pytest.param({"spec.workerGroupSpecs[0].suspend": True}, None, id="worker-suspend-default-gates"),
    pytest.param(
        {"spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_enable_autoscaler_v2", "value": "0"}]},
        None,
        id="v2-env-off-without-autoscaling",
    ),
    pytest.param({**AUTOSCALING_V2, "spec.headGroupSpec.template.spec.restartPolicy": "Never"}, None, id="v2-never"),
    pytest.param({**AUTOSCALING_V2, "spec.workerGroupSpecs[0].idleTimeoutSeconds": 60}, None, id="idle-timeout-v2"),
    pytest.param(
        {
            "spec.enableInTreeAutoscaling": True,
            "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_enable_autoscaler_v2", "value": "1"}],
            "spec.workerGroupSpecs[0].idleTimeoutSeconds": 0,
        },
        None,
        id="idle-timeout-v2-env",
    ),
    pytest.param(
        {**AUTOSCALING_V2, "spec.rayVersion": "2.56.0", "spec.workerGroupSpecs[0].priority": 5},
        None,
        id="priority-ray-2.56-v2",
    ),
    pytest.param({"spec.rayVersion": "2.40.0", "spec.workerGroupSpecs[0].priority": 0}, None, id="priority-zero"),
    pytest.param({**TOKEN_AUTH, "spec.rayVersion": "2.52.0"}, None, id="auth-token-2.52.0"),
    pytest.param({**TOKEN_AUTH, "spec.rayVersion": "v2.53"}, None, id="auth-token-v2.53"),
    pytest.param({"spec.authOptions": {"mode": "disabled"}, "spec.rayVersion": "2.0.0"}, None, id="auth-disabled-old"),
    pytest.param(K8S_AUTH, None, id="k8s-auth-2.55.0"),
    pytest.param({"spec.networkPolicy": {"mode": "DenyAll", "head": {"ingressRules": [{}]}}}, ALL, id="network-policy"),
    pytest.param({**TLS_ON}, ALL, id="tls"),
    pytest.param(
        {
            "spec.tlsOptions": {"enabled": False},
            "spec.headGroupSpec.template.spec.containers[0].env": [{"name": "RAY_USE_TLS", "value": "1"}],
        },
        ALL,
        id="tls-disabled-with-env",
    ),
    pytest.param({"spec.historyServerOptions": {"collectorOptions": {"image": "collector:1"}}}, ALL, id="history"),
    pytest.param({"spec.upgradeStrategy": {"type": "Recreate"}}, None, id="upgrade-strategy-user-cluster"),
    pytest.param(
        {"metadata.labels[ray.io/originated-from-crd]": "RayJob", "spec.upgradeStrategy": {}},
        None,
        id="upgrade-strategy-empty-from-rayjob",
    ),
]


@pytest.mark.parametrize(("changes", "gates"), VALID)
def test_valid_raycluster_neighbour(changes: dict[str, Any], gates: FeatureGates | None) -> None:
    errors = errors_of(with_changes(BASE, changes), gates)
    assert errors == (), [str(e) for e in errors]


def test_min_greater_than_max_message_is_exact() -> None:
    manifest = with_changes(BASE, {"spec.workerGroupSpecs[1].minReplicas": 5})
    assert [str(e) for e in errors_of(manifest)] == [
        "spec.workerGroupSpecs[1].minReplicas: 5 is greater than maxReplicas 2"
    ]


GATED = [
    pytest.param(
        {"spec.networkPolicy": {"mode": "DenyAll"}},
        "RayClusterNetworkPolicy",
        "spec.networkPolicy",
        id="network-policy",
    ),
    pytest.param(TLS_ON, "RayClusterMTLS", "spec.tlsOptions", id="tls-options"),
    pytest.param(
        {"spec.historyServerOptions": {"collectorOptions": {"image": "collector:1"}}},
        "RayClusterHistoryServer",
        "spec.historyServerOptions",
        id="history-server-options",
    ),
    pytest.param(ROCKSDB, "GCSFaultToleranceEmbeddedStorage", f"{FTO}.backend", id="rocksdb"),
]


@pytest.mark.parametrize(("changes", "gate", "path"), GATED)
def test_gated_field_needs_its_gate(changes: dict[str, Any], gate: str, path: str) -> None:
    manifest = with_changes(BASE, changes)
    assert_errors(errors_of(manifest, FeatureGates()), [(path, f"FeatureGate/{gate}", f"{gate} feature gate")])
    assert errors_of(manifest, FeatureGates.parse(f"{gate}=true")) == ()


def test_all_errors_are_reported_together() -> None:
    manifest = with_changes(
        BASE,
        {
            "metadata.name": "x" * 60,
            "spec.workerGroupSpecs[1].minReplicas": 5,
            "spec.headGroupSpec.labels": {"zone": "-bad-"},
        },
    )
    assert_errors(
        errors_of(manifest),
        [
            ("metadata.name", META, "no more than 53 characters"),
            ("spec.workerGroupSpecs[1].minReplicas", SPEC, "5 is greater than maxReplicas 2"),
            ("spec.headGroupSpec.labels[zone]", SPEC, "invalid label value '-bad-'"),
        ],
    )


def test_schema_errors_come_before_rules() -> None:
    """A wrong type is reported as a schema error, and the rules (which need a typed object) do not run."""
    manifest = with_changes(BASE, {"metadata.name": "x" * 60, "spec.workerGroupSpecs[0].minReplicas": "one"})
    assert_errors(
        errors_of(manifest), [("spec.workerGroupSpecs[0].minReplicas", "schema", 'expected integer, got string "one"')]
    )
