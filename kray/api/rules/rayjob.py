"""RayJob rules: KubeRay's ``ValidateRayJobMetadata`` / ``ValidateRayJobSpec`` with field paths.

On Kubernetes these end a RayJob in ``jobDeploymentStatus: ValidationFailed``; kray refuses such a
manifest before anything starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import yaml

from kray.api.errors import FieldError
from kray.api.rules._k8s import pod_spec
from kray.api.rules.gates import FeatureGates
from kray.api.rules.raycluster import check_cluster_spec, check_name
from kray.api.v1.enums import DeletionPolicyType, JobSubmissionMode
from kray.api.v1.rayjob import RayJob, RayJobSpec

MAX_RAYJOB_NAME_LENGTH = 47  # "<name>-<5 random>" names the RayCluster, which allows 53
CLUSTER_SELECTOR_KEY = "ray.io/cluster"
RULE = "ValidateRayJobSpec"


def check_rayjob(job: RayJob, *, gates: FeatureGates) -> list[FieldError]:
    errors = check_name(
        kind="RayJob", name=job.metadata.name, limit=MAX_RAYJOB_NAME_LENGTH, rule="ValidateRayJobMetadata"
    )
    return errors + check_job_spec(job.spec, path="spec", annotations=job.metadata.annotations or {}, gates=gates)


def check_job_spec(
    spec: RayJobSpec, *, path: str, annotations: Mapping[str, str], gates: FeatureGates
) -> list[FieldError]:
    errors: list[FieldError] = []
    shutdown = bool(spec.shutdown_after_job_finishes)
    if spec.suspend and not shutdown:
        errors.append(
            FieldError(f"{path}.suspend", "a RayJob with shutdownAfterJobFinishes false cannot be suspended", RULE)
        )
    if spec.ttl_seconds_after_finished < 0:
        errors.append(FieldError(f"{path}.ttlSecondsAfterFinished", "must be a non-negative integer", RULE))
    if not shutdown and spec.ttl_seconds_after_finished > 0:
        errors.append(FieldError(f"{path}.ttlSecondsAfterFinished", "needs shutdownAfterJobFinishes: true", RULE))
    errors += _check_deletion_strategy(spec, path=path, gates=gates)
    errors += _check_cluster_source(spec, path=path)
    mode = spec.submission_mode
    retries = spec.backoff_limit or 0
    if mode is JobSubmissionMode.INTERACTIVE and retries > 0:
        errors.append(FieldError(f"{path}.backoffLimit", "is incompatible with InteractiveMode", RULE))
    if mode is JobSubmissionMode.SIDECAR:
        errors += _check_sidecar(spec, path=path)
    cluster = spec.ray_cluster_spec
    if cluster is not None:
        if cluster.auth_options is not None and cluster.auth_options.enable_k8s_token_auth:
            errors.append(
                FieldError(
                    f"{path}.rayClusterSpec.authOptions.enableK8sTokenAuth",
                    "Kubernetes token auth is not supported for RayJob",
                    RULE,
                )
            )
        errors += check_cluster_spec(cluster, path=f"{path}.rayClusterSpec", annotations=annotations, gates=gates)
    errors += _check_runtime_env(spec, path=path)
    if spec.active_deadline_seconds is not None and spec.active_deadline_seconds <= 0:
        errors.append(FieldError(f"{path}.activeDeadlineSeconds", "must be a positive integer", RULE))
    if spec.pre_running_deadline_seconds is not None and spec.pre_running_deadline_seconds <= 0:
        errors.append(FieldError(f"{path}.preRunningDeadlineSeconds", "must be a positive integer", RULE))
    if retries < 0:
        errors.append(FieldError(f"{path}.backoffLimit", "must be 0 or more", RULE))
    return errors


def _check_cluster_source(spec: RayJobSpec, *, path: str) -> list[FieldError]:
    selector = spec.cluster_selector or {}
    if not selector:
        if spec.ray_cluster_spec is None:
            return [FieldError(f"{path}.rayClusterSpec", "one of rayClusterSpec or clusterSelector must be set", RULE)]
        return []
    errors = []
    if spec.suspend:
        errors.append(FieldError(f"{path}.suspend", "clusterSelector mode does not support suspend", RULE))
    if not selector.get(CLUSTER_SELECTOR_KEY):
        errors.append(
            FieldError(f"{path}.clusterSelector[{CLUSTER_SELECTOR_KEY}]", "must name the cluster to run on", RULE)
        )
    if spec.submission_mode is JobSubmissionMode.SIDECAR:
        errors.append(FieldError(f"{path}.clusterSelector", "is not supported in SidecarMode", RULE))
    if (spec.backoff_limit or 0) > 0:
        errors.append(FieldError(f"{path}.backoffLimit", "is incompatible with clusterSelector mode", RULE))
    return errors


def _check_sidecar(spec: RayJobSpec, *, path: str) -> list[FieldError]:
    errors = []
    if spec.submitter_pod_template is not None:
        errors.append(FieldError(f"{path}.submitterPodTemplate", "is not supported in SidecarMode", RULE))
    if spec.submitter_config is not None:
        errors.append(FieldError(f"{path}.submitterConfig", "is not supported in SidecarMode", RULE))
    if spec.ray_cluster_spec is not None:
        policy = pod_spec(spec.ray_cluster_spec.head_group_spec.template).get("restartPolicy")
        if policy not in (None, "", "Never"):
            errors.append(
                FieldError(
                    f"{path}.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
                    f"must be Never or unset in SidecarMode, got {policy}",
                    RULE,
                )
            )
    return errors


def _check_runtime_env(spec: RayJobSpec, *, path: str) -> list[FieldError]:
    if not spec.runtime_env_yaml:
        return []
    try:
        parsed = yaml.safe_load(spec.runtime_env_yaml)
    except RecursionError:
        return [FieldError(f"{path}.runtimeEnvYAML", "is not valid YAML: nesting is too deep", RULE)]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return [
            FieldError(
                f"{path}.runtimeEnvYAML",
                f"is not valid YAML{where}: {getattr(error, 'problem', error)}",
                RULE,
            )
        ]
    if parsed is not None and not isinstance(parsed, dict):
        return [FieldError(f"{path}.runtimeEnvYAML", "must be a YAML mapping (a Ray runtime_env)", RULE)]
    return []


def _check_deletion_strategy(spec: RayJobSpec, *, path: str, gates: FeatureGates) -> list[FieldError]:
    strategy = spec.deletion_strategy
    if strategy is None:
        return []
    here = f"{path}.deletionStrategy"
    if not gates.RayJobDeletionPolicy:
        return [FieldError(here, "requires the RayJobDeletionPolicy feature gate", "FeatureGate/RayJobDeletionPolicy")]
    legacy = strategy.on_success is not None or strategy.on_failure is not None
    rules = bool(strategy.deletion_rules)
    if rules and spec.shutdown_after_job_finishes:
        return [
            FieldError(
                f"{here}.deletionRules",
                "shutdownAfterJobFinishes and deletionRules are mutually exclusive",
                RULE,
            )
        ]
    if rules and legacy:
        return [FieldError(here, "cannot use both the legacy onSuccess/onFailure fields and deletionRules", RULE)]
    if legacy:
        return _check_legacy_policies(spec, path=here)
    if rules:
        return _check_deletion_rules(spec, path=here)
    return [FieldError(here, "requires either both onSuccess and onFailure, or deletionRules", RULE)]


def _check_legacy_policies(spec: RayJobSpec, *, path: str) -> list[FieldError]:
    strategy = spec.deletion_strategy
    assert strategy is not None
    if strategy.on_success is None or strategy.on_failure is None:
        missing = "onSuccess" if strategy.on_success is None else "onFailure"
        return [
            FieldError(
                f"{path}.{missing}",
                "both onSuccess and onFailure must be set with the legacy deletion policy fields",
                RULE,
            )
        ]
    errors: list[FieldError] = []
    policies = {"onSuccess": strategy.on_success.policy, "onFailure": strategy.on_failure.policy}
    for name, policy in policies.items():
        if policy is None:
            errors.append(FieldError(f"{path}.{name}.policy", "required field is missing", RULE))
        elif spec.cluster_selector and policy in {
            DeletionPolicyType.DELETE_CLUSTER,
            DeletionPolicyType.DELETE_WORKERS,
        }:
            errors.append(FieldError(f"{path}.{name}.policy", f"clusterSelector mode does not support {policy}", RULE))
    set_policies = {p for p in policies.values() if p is not None}
    cluster = spec.ray_cluster_spec
    if DeletionPolicyType.DELETE_WORKERS in set_policies and cluster is not None and cluster.autoscaling_enabled():
        errors.append(FieldError(path, "DeleteWorkers does not support a RayCluster with autoscaling enabled", RULE))
    if spec.shutdown_after_job_finishes and DeletionPolicyType.DELETE_NONE in set_policies:
        errors.append(FieldError(path, "shutdownAfterJobFinishes is true while a deletion policy is DeleteNone", RULE))
    return errors


_DELETION_ORDER = (
    DeletionPolicyType.DELETE_WORKERS,
    DeletionPolicyType.DELETE_CLUSTER,
    DeletionPolicyType.DELETE_SELF,
)


def _check_deletion_rules(spec: RayJobSpec, *, path: str) -> list[FieldError]:
    strategy = spec.deletion_strategy
    assert strategy is not None
    assert strategy.deletion_rules
    errors: list[FieldError] = []
    ttls: dict[tuple[str, str], dict[DeletionPolicyType, int]] = {}
    cluster = spec.ray_cluster_spec
    for index, rule in enumerate(strategy.deletion_rules):
        here = f"{path}.deletionRules[{index}]"
        condition = rule.condition
        if condition.job_status is not None and condition.job_deployment_status is not None:
            errors.append(FieldError(f"{here}.condition", "cannot set both jobStatus and jobDeploymentStatus", RULE))
            continue
        if condition.job_status is None and condition.job_deployment_status is None:
            errors.append(
                FieldError(f"{here}.condition", "exactly one of jobStatus and jobDeploymentStatus must be set", RULE)
            )
            continue
        if condition.ttl_seconds < 0:
            errors.append(FieldError(f"{here}.condition.ttlSeconds", "must be non-negative", RULE))
            continue
        policy = rule.policy
        if spec.cluster_selector and policy in {
            DeletionPolicyType.DELETE_CLUSTER,
            DeletionPolicyType.DELETE_WORKERS,
        }:
            errors.append(FieldError(f"{here}.policy", f"{policy} is not supported with clusterSelector", RULE))
            continue
        if policy is DeletionPolicyType.DELETE_WORKERS and cluster is not None and cluster.autoscaling_enabled():
            errors.append(FieldError(f"{here}.policy", "DeleteWorkers is not supported with autoscaling enabled", RULE))
            continue
        key = (
            ("JobStatus", str(condition.job_status))
            if condition.job_status is not None
            else ("JobDeploymentStatus", str(condition.job_deployment_status))
        )
        seen = ttls.setdefault(key, {})
        if policy in seen:
            errors.append(FieldError(here, f"duplicate rule for policy {policy} and {key[0]} {key[1]}", RULE))
            continue
        seen[policy] = condition.ttl_seconds
    for (kind, value), by_policy in ttls.items():
        ordered = [(p, by_policy[p]) for p in _DELETION_ORDER if p in by_policy]
        for (before, before_ttl), (after, after_ttl) in itertools.pairwise(ordered):
            if after_ttl < before_ttl:
                errors.append(
                    FieldError(
                        f"{path}.deletionRules",
                        f"for {kind} {value}: {after} TTL ({after_ttl}) must be >= {before} TTL ({before_ttl})",
                        RULE,
                    )
                )
    return errors
