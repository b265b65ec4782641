"""RayCluster rules: KubeRay's ``ValidateRayClusterMetadata`` / ``ValidateRayClusterSpec``, with paths.

Every function takes the path of the cluster spec (``spec`` in a RayCluster, ``spec.rayClusterSpec``
in a RayJob, ...) so embedded cluster specs report where they sit in their own manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kray.api.errors import FieldError, shorten
from kray.api.rules._k8s import (
    containers,
    dns1035_label_problems,
    dns1123_label_problems,
    env_var,
    label_value_problems,
    parse_version,
    pod_spec,
    qualified_name_problems,
)
from kray.api.rules.gates import FeatureGates
from kray.api.v1.enums import AutoscalerVersion, GcsFaultToleranceBackend, NetworkPolicyMode
from kray.api.v1.raycluster import HeadGroupSpec, RayCluster, RayClusterSpec, WorkerGroupSpec

MAX_RAYCLUSTER_NAME_LENGTH = 53  # so that "<name>-serve-svc" stays a valid 63-character label
FT_ENABLED_ANNOTATION = "ray.io/ft-enabled"
EXTERNAL_STORAGE_NS_ANNOTATION = "ray.io/external-storage-namespace"
ORIGINATED_FROM_CRD_LABEL = "ray.io/originated-from-crd"
RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
TLS_ENV_VARS = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
TLS_VOLUME, TLS_MOUNT_PATH = "ray-tls", "/etc/ray/tls"
GCS_STORAGE_VOLUME, GCS_STORAGE_MOUNT_PATH = "gcs-storage", "/data/gcs"


def check_name(*, kind: str, name: str | None, limit: int, rule: str) -> list[FieldError]:
    """Name length and DNS-1035 syntax, as KubeRay's ``Validate<Kind>Metadata``."""
    if not name:
        return []  # generateName objects and nameless local manifests are named later
    errors = []
    if len(name) > limit:
        errors.append(FieldError("metadata.name", f"{kind} name should be no more than {limit} characters", rule))
    for problem in dns1035_label_problems(name):
        errors.append(FieldError("metadata.name", f"{kind} name should be a valid DNS-1035 label: {problem}", rule))
    return errors


def check_raycluster(cluster: RayCluster, *, gates: FeatureGates) -> list[FieldError]:
    meta = cluster.metadata
    errors = check_name(
        kind="RayCluster", name=meta.name, limit=MAX_RAYCLUSTER_NAME_LENGTH, rule="ValidateRayClusterMetadata"
    )
    errors += check_cluster_spec(cluster.spec, path="spec", annotations=meta.annotations or {}, gates=gates)
    errors += _check_upgrade_strategy(cluster)
    return errors


def _check_upgrade_strategy(cluster: RayCluster) -> list[FieldError]:
    strategy = cluster.spec.upgrade_strategy
    creator = (cluster.metadata.labels or {}).get(ORIGINATED_FROM_CRD_LABEL, "")
    if strategy is not None and strategy.type is not None and creator in {"RayJob", "RayService"}:
        return [
            FieldError(
                "spec.upgradeStrategy",
                f"upgradeStrategy cannot be set when RayCluster is created by {creator}",
                "ValidateRayClusterUpgradeOptions",
            )
        ]
    return []


def check_cluster_spec(
    spec: RayClusterSpec, *, path: str, annotations: Mapping[str, str], gates: FeatureGates
) -> list[FieldError]:
    """All of ``ValidateRayClusterSpec``; an empty list means KubeRay would accept the spec."""
    errors: list[FieldError] = []
    head = spec.head_group_spec
    head_path = f"{path}.headGroupSpec"
    head_containers = containers(head.template)
    if not head_containers:
        errors.append(
            FieldError(
                f"{head_path}.template.spec.containers",
                "headGroupSpec should have at least one container (the first one runs Ray)",
                "ValidateRayClusterSpec",
            )
        )
    errors += _check_group_params(head, path=head_path, group_name="Head")
    for index, group in enumerate(spec.worker_group_specs or ()):
        errors += _check_worker_group(spec, group, path=f"{path}.workerGroupSpecs[{index}]", gates=gates)
    if head_containers:
        errors += _check_fault_tolerance(spec, head_containers[0], path=path, annotations=annotations, gates=gates)
        errors += _check_autoscaler(spec, head_containers[0], path=path)
    errors += _check_history_server(spec, path=path, gates=gates)
    errors += _check_auth(spec, path=path)
    errors += _check_network_policy(spec, path=path, gates=gates)
    errors += _check_tls(spec, path=path, gates=gates)
    return errors


def _check_group_params(group: HeadGroupSpec | WorkerGroupSpec, *, path: str, group_name: str) -> list[FieldError]:
    """Resources declared twice, ``rayStartParams.labels``, and label syntax (both group kinds)."""
    rule = "ValidateRayClusterSpec"
    errors: list[FieldError] = []
    params = group.ray_start_params or {}
    set_params = [key for key in RESOURCE_PARAMS if params.get(key)]
    if set_params and group.resources:
        errors.append(
            FieldError(
                f"{path}.resources",
                f"resource fields should not be set in both rayStartParams ({', '.join(set_params)}) and "
                f"resources for {group_name} group; please use only one",
                rule,
            )
        )
    if "labels" in params:
        errors.append(
            FieldError(
                f"{path}.rayStartParams[labels]",
                f"rayStartParams['labels'] is not supported for {group_name} group; use the labels field instead",
                rule,
            )
        )
    for key, value in sorted((group.labels or {}).items()):
        for problem in qualified_name_problems(key):
            errors.append(FieldError(f"{path}.labels[{key}]", f"invalid label key: {problem}", rule))
        for problem in label_value_problems(value):
            errors.append(FieldError(f"{path}.labels[{key}]", f"invalid label value '{value}': {problem}", rule))
    return errors


def autoscaler_v2_enabled(spec: RayClusterSpec) -> bool:
    options = spec.autoscaler_options
    return spec.autoscaling_enabled() and options is not None and options.version is AutoscalerVersion.V2


def _v2_env_enabled(spec: RayClusterSpec) -> bool:
    head = containers(spec.head_group_spec.template)
    entry = env_var(head[0], "RAY_enable_autoscaler_v2") if head else None
    return entry is not None and entry.get("value") in {"1", "true"}


def _check_worker_group(
    spec: RayClusterSpec, group: WorkerGroupSpec, *, path: str, gates: FeatureGates
) -> list[FieldError]:
    rule = "ValidateRayClusterSpec"
    errors: list[FieldError] = []
    name = group.group_name
    if not containers(group.template):
        errors.append(
            FieldError(
                f"{path}.template.spec.containers",
                "workerGroupSpec should have at least one container (the first one runs Ray)",
                rule,
            )
        )
    low, high = group.min_replicas, group.max_replicas
    if not spec.autoscaling_enabled() and (low is None or high is None):
        missing = "minReplicas" if low is None else "maxReplicas"
        errors.append(
            FieldError(
                f"{path}.{missing}",
                f"worker group {name} must set both minReplicas and maxReplicas when autoscaling is disabled",
                rule,
            )
        )
    if low is not None and low < 0:
        errors.append(FieldError(f"{path}.minReplicas", f"{low} is negative; expected 0 or more", rule))
    if high is not None and high < 0:
        errors.append(FieldError(f"{path}.maxReplicas", f"{high} is negative; expected 0 or more", rule))
    if low is not None and high is not None and low > high:
        errors.append(FieldError(f"{path}.minReplicas", f"{low} is greater than maxReplicas {high}", rule))
    errors += _check_group_params(group, path=path, group_name=name)
    v2 = autoscaler_v2_enabled(spec) or _v2_env_enabled(spec)
    if group.idle_timeout_seconds is not None:
        if group.idle_timeout_seconds < 0:
            errors.append(FieldError(f"{path}.idleTimeoutSeconds", "must be non-negative", rule))
        elif not v2:
            errors.append(
                FieldError(
                    f"{path}.idleTimeoutSeconds",
                    "is set, but autoscaler v2 is not enabled; set spec.autoscalerOptions.version to 'v2'",
                    rule,
                )
            )
    if group.priority:
        errors += _check_priority(spec, path=f"{path}.priority", v2=v2)
    if group.suspend:
        if not gates.RayJobDeletionPolicy:
            errors.append(
                FieldError(
                    f"{path}.suspend",
                    "can be set only when the RayJobDeletionPolicy feature gate is enabled",
                    rule,
                )
            )
        if spec.autoscaling_enabled():
            errors.append(
                FieldError(f"{path}.suspend", "a worker group cannot be suspended with the autoscaler enabled", rule)
            )
    return errors


def _check_priority(spec: RayClusterSpec, *, path: str, v2: bool) -> list[FieldError]:
    rule = "ValidateRayClusterSpec"
    version = parse_version(spec.ray_version or "")
    if not spec.ray_version:
        return [FieldError(path, "priority is set, but rayVersion is not; Ray 2.56.0 or later is required", rule)]
    if version is None:
        return [FieldError(path, f"priority is set, but rayVersion {shorten(spec.ray_version)} is not a version", rule)]
    if version < (2, 56, 0):
        return [FieldError(path, f"priority needs Ray 2.56.0 or later, got rayVersion {spec.ray_version}", rule)]
    if not v2:
        return [FieldError(path, "priority is set, but autoscaler v2 is not enabled", rule)]
    return []


def _check_fault_tolerance(
    spec: RayClusterSpec,
    head: dict[str, Any],
    *,
    path: str,
    annotations: Mapping[str, str],
    gates: FeatureGates,
) -> list[FieldError]:
    rule = "ValidateRayClusterSpec"
    errors: list[FieldError] = []
    options = spec.gcs_fault_tolerance_options
    params = spec.head_group_spec.ray_start_params or {}
    env_path = f"{path}.headGroupSpec.template.spec.containers[0].env"
    if annotations.get(FT_ENABLED_ANNOTATION) and options is not None:
        errors.append(
            FieldError(
                f"{path}.gcsFaultToleranceOptions",
                f"the {FT_ENABLED_ANNOTATION} annotation and gcsFaultToleranceOptions are both set; "
                "use only gcsFaultToleranceOptions",
                rule,
            )
        )
    ft_enabled = options is not None or annotations.get(FT_ENABLED_ANNOTATION) == "true"
    if not ft_enabled and env_var(head, "RAY_REDIS_ADDRESS"):
        errors.append(
            FieldError(
                env_path,
                "RAY_REDIS_ADDRESS implicitly enables GCS fault tolerance, but gcsFaultToleranceOptions is not set",
                rule,
            )
        )
    if options is not None:
        if params.get("redis-password"):
            errors.append(
                FieldError(
                    f"{path}.headGroupSpec.rayStartParams[redis-password]",
                    "cannot be set with gcsFaultToleranceOptions; use gcsFaultToleranceOptions.redisPassword",
                    rule,
                )
            )
        for name, field in (("REDIS_PASSWORD", "redisPassword"), ("RAY_REDIS_ADDRESS", "redisAddress")):
            if env_var(head, name):
                errors.append(
                    FieldError(
                        env_path,
                        f"cannot set {name} with gcsFaultToleranceOptions; use gcsFaultToleranceOptions.{field}",
                        rule,
                    )
                )
        if annotations.get(EXTERNAL_STORAGE_NS_ANNOTATION):
            errors.append(
                FieldError(
                    f"metadata.annotations[{EXTERNAL_STORAGE_NS_ANNOTATION}]",
                    "cannot be set "
                    "with gcsFaultToleranceOptions; use "
                    "gcsFaultToleranceOptions.externalStorageNamespace",
                    rule,
                )
            )
        errors += _check_ft_backend(spec, head, path=f"{path}.gcsFaultToleranceOptions", gates=gates)
    if params.get("redis-username") or env_var(head, "REDIS_USERNAME"):
        errors.append(
            FieldError(
                f"{path}.headGroupSpec",
                "cannot set a redis username in rayStartParams or env; use gcsFaultToleranceOptions.redisUsername",
                rule,
            )
        )
    return errors


def _check_ft_backend(
    spec: RayClusterSpec, head: dict[str, Any], *, path: str, gates: FeatureGates
) -> list[FieldError]:
    rule = "ValidateRayClusterSpec"
    options = spec.gcs_fault_tolerance_options
    assert options is not None
    if options.backend is not GcsFaultToleranceBackend.ROCKSDB:
        if options.storage is not None:
            return [FieldError(f"{path}.storage", "applies only to the 'rocksdb' backend", rule)]
        return []
    errors: list[FieldError] = []
    if not gates.GCSFaultToleranceEmbeddedStorage:
        errors.append(
            FieldError(
                f"{path}.backend",
                "'rocksdb' requires the GCSFaultToleranceEmbeddedStorage feature gate",
                "FeatureGate/GCSFaultToleranceEmbeddedStorage",
            )
        )
    for field, value in (
        ("redisAddress", options.redis_address),
        ("redisUsername", options.redis_username),
        ("redisPassword", options.redis_password),
        ("externalStorageNamespace", options.external_storage_namespace),
    ):
        if value:
            errors.append(FieldError(f"{path}.{field}", "cannot be set when backend is 'rocksdb'", rule))
    storage = options.storage
    if (
        storage is not None
        and storage.claim_name
        and (storage.size or storage.storage_class_name or storage.access_modes)
    ):
        errors.append(
            FieldError(
                f"{path}.storage.claimName",
                "is mutually exclusive with size, storageClassName and accessModes",
                rule,
            )
        )
    if env_var(head, "RAY_gcs_storage") or env_var(head, "RAY_gcs_storage_path"):
        errors.append(
            FieldError(
                f"{path}",
                "RAY_gcs_storage and RAY_gcs_storage_path are managed by kray with "
                "the embedded backend; remove them from the head container",
                rule,
            )
        )
    mounts = [m for m in head.get("volumeMounts") or () if isinstance(m, dict)]
    volumes = [v for v in pod_spec(spec.head_group_spec.template).get("volumes") or () if isinstance(v, dict)]
    if any(m.get("name") == GCS_STORAGE_VOLUME or m.get("mountPath") == GCS_STORAGE_MOUNT_PATH for m in mounts) or any(
        v.get("name") == GCS_STORAGE_VOLUME for v in volumes
    ):
        errors.append(
            FieldError(
                f"{path}",
                f"the volume {GCS_STORAGE_VOLUME!r} at {GCS_STORAGE_MOUNT_PATH} is "
                "managed by kray with the embedded backend",
                rule,
            )
        )
    return errors


def _check_autoscaler(spec: RayClusterSpec, head: dict[str, Any], *, path: str) -> list[FieldError]:
    rule = "ValidateRayClusterSpec"
    errors: list[FieldError] = []
    v2_env = env_var(head, "RAY_enable_autoscaler_v2")
    env_path = f"{path}.headGroupSpec.template.spec.containers[0].env"
    if not spec.autoscaling_enabled():
        if v2_env is not None and v2_env.get("value") in {"1", "true"}:
            errors.append(
                FieldError(
                    env_path,
                    "RAY_enable_autoscaler_v2 cannot be enabled when enableInTreeAutoscaling is false",
                    rule,
                )
            )
    else:
        options = spec.autoscaler_options
        if options is not None and options.version is not None and v2_env is not None:
            errors.append(
                FieldError(
                    f"{path}.autoscalerOptions.version",
                    "both autoscalerOptions.version and "
                    "the head env var RAY_enable_autoscaler_v2 are set; use only the former",
                    rule,
                )
            )
        if autoscaler_v2_enabled(spec):
            errors += _check_v2_restart_policies(spec, path=path)
    options = spec.autoscaler_options
    if options is not None:
        if options.idle_timeout_seconds is not None and options.idle_timeout_seconds < 0:
            errors.append(FieldError(f"{path}.autoscalerOptions.idleTimeoutSeconds", "must be non-negative", rule))
        if any(isinstance(e, dict) and e.get("name") == "KUBERAY_GEN_AUTOSCALER_START_CMD" for e in options.env or ()):
            errors.append(
                FieldError(
                    f"{path}.autoscalerOptions.env",
                    "must not contain KUBERAY_GEN_AUTOSCALER_START_CMD: it is managed by the operator",
                    rule,
                )
            )
    return errors


def _check_v2_restart_policies(spec: RayClusterSpec, *, path: str) -> list[FieldError]:
    errors = []
    templates = [(f"{path}.headGroupSpec", spec.head_group_spec.template)] + [
        (f"{path}.workerGroupSpecs[{i}]", g.template) for i, g in enumerate(spec.worker_group_specs or ())
    ]
    for group_path, template in templates:
        policy = pod_spec(template).get("restartPolicy")
        if policy not in (None, "", "Never"):
            errors.append(
                FieldError(
                    f"{group_path}.template.spec.restartPolicy",
                    f"must be Never or unset with autoscaler v2, got {policy}",
                    "ValidateRayClusterSpec",
                )
            )
    return errors


def _check_history_server(spec: RayClusterSpec, *, path: str, gates: FeatureGates) -> list[FieldError]:
    options = spec.history_server_options
    if options is None:
        return []
    here = f"{path}.historyServerOptions"
    if not gates.RayClusterHistoryServer:
        return [
            FieldError(
                here,
                "requires the RayClusterHistoryServer feature gate",
                "FeatureGate/RayClusterHistoryServer",
            )
        ]
    collector = options.collector_options
    if collector is None:
        return [FieldError(f"{here}.collectorOptions", "must be set", "ValidateRayClusterSpec")]
    if not collector.image:
        return [FieldError(f"{here}.collectorOptions.image", "must be set", "ValidateRayClusterSpec")]
    return []


def _check_auth(spec: RayClusterSpec, *, path: str) -> list[FieldError]:
    rule = "ValidateRayClusterSpec"
    options = spec.auth_options
    k8s_auth = bool(options and options.enable_k8s_token_auth)
    if not spec.auth_enabled():
        if k8s_auth:
            return [FieldError(f"{path}.authOptions.enableK8sTokenAuth", "needs authOptions.mode 'token'", rule)]
        return []
    if not spec.ray_version:
        return [
            FieldError(
                f"{path}.rayVersion",
                "authOptions.mode is 'token' but rayVersion is not set; Ray 2.52.0 or later is required",
                rule,
            )
        ]
    version = parse_version(spec.ray_version)
    if version is None:
        return [FieldError(f"{path}.rayVersion", f"{shorten(spec.ray_version)} is not a valid version", rule)]
    if version < (2, 52, 0):
        return [
            FieldError(
                f"{path}.rayVersion",
                f"authOptions.mode 'token' needs Ray 2.52.0 or later, got {spec.ray_version}",
                rule,
            )
        ]
    errors = []
    if k8s_auth and version < (2, 55, 0):
        errors.append(
            FieldError(
                f"{path}.rayVersion",
                f"authOptions.enableK8sTokenAuth needs Ray 2.55.0 or later, got {spec.ray_version}",
                rule,
            )
        )
    if k8s_auth and options is not None and options.secret_name:
        errors.append(FieldError(f"{path}.authOptions.secretName", "cannot be set with enableK8sTokenAuth", rule))
    return errors


def _check_network_policy(spec: RayClusterSpec, *, path: str, gates: FeatureGates) -> list[FieldError]:
    policy = spec.network_policy
    if policy is None:
        return []
    here = f"{path}.networkPolicy"
    errors: list[FieldError] = []
    if not gates.RayClusterNetworkPolicy:
        errors.append(
            FieldError(
                here,
                "requires the RayClusterNetworkPolicy feature gate",
                "FeatureGate/RayClusterNetworkPolicy",
            )
        )
    rule = "ValidateRayClusterSpec"
    mode = policy.mode
    scopes: list[tuple[str, Any]] = [(f"{here}.head", policy.head), (f"{here}.worker", policy.worker)]
    scopes += [(f"{here}.workerGroups[{i}]", g) for i, g in enumerate(policy.worker_groups or ())]
    for scope_path, rules in scopes:
        if rules is None:
            continue
        if mode is NetworkPolicyMode.DENY_ALL_EGRESS and rules.ingress_rules:
            errors.append(
                FieldError(
                    f"{scope_path}.ingressRules",
                    f"cannot be set when mode is {mode} (ingress is not restricted)",
                    rule,
                )
            )
        if mode is NetworkPolicyMode.DENY_ALL_INGRESS and rules.egress_rules:
            errors.append(
                FieldError(
                    f"{scope_path}.egressRules",
                    f"cannot be set when mode is {mode} (egress is not restricted)",
                    rule,
                )
            )
    names = set()
    for index, group in enumerate(spec.worker_group_specs or ()):
        names.add(group.group_name)
        for problem in dns1123_label_problems(group.group_name):
            errors.append(
                FieldError(
                    f"{path}.workerGroupSpecs[{index}].groupName",
                    f"must be a DNS-1123 label when networkPolicy is set: {problem}",
                    rule,
                )
            )
    for index, group_policy in enumerate(policy.worker_groups or ()):
        if group_policy.group_name not in names:
            errors.append(
                FieldError(
                    f"{here}.workerGroups[{index}].groupName",
                    f"{group_policy.group_name!r} matches no group in workerGroupSpecs",
                    rule,
                )
            )
    return errors


def _check_tls(spec: RayClusterSpec, *, path: str, gates: FeatureGates) -> list[FieldError]:
    options = spec.tls_options
    if options is None:
        return []
    errors: list[FieldError] = []
    if not gates.RayClusterMTLS:
        errors.append(
            FieldError(f"{path}.tlsOptions", "requires the RayClusterMTLS feature gate", "FeatureGate/RayClusterMTLS")
        )
    if not options.enabled:
        return errors
    templates = [(f"{path}.headGroupSpec", spec.head_group_spec.template)] + [
        (f"{path}.workerGroupSpecs[{i}]", g.template) for i, g in enumerate(spec.worker_group_specs or ())
    ]
    for group_path, template in templates:
        ray = containers(template)
        if not ray:
            continue
        for name in TLS_ENV_VARS:
            if env_var(ray[0], name):
                errors.append(
                    FieldError(
                        f"{group_path}.template.spec.containers[0].env",
                        f"cannot set {name} when tlsOptions is set: the operator manages TLS",
                        "ValidateRayClusterSpec",
                    )
                )
        for mount in ray[0].get("volumeMounts") or ():
            if isinstance(mount, dict) and (
                mount.get("name") == TLS_VOLUME or mount.get("mountPath") == TLS_MOUNT_PATH
            ):
                errors.append(
                    FieldError(
                        f"{group_path}.template.spec.containers[0].volumeMounts",
                        f"conflicts with the operator-managed TLS mount {TLS_VOLUME} at {TLS_MOUNT_PATH}",
                        "ValidateRayClusterSpec",
                    )
                )
    return errors
