"""String enums of the ray.io/v1 API, with KubeRay's exact values and the predicates controllers need.

Status enums mirror Ray's and KubeRay's strings byte for byte (reference §1.2-1.4); ``""`` is the
"new" state that KubeRay writes before the first transition.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """The Ray job's own status, as the dashboard reports it (``status.jobStatus``)."""

    NEW = ""
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        return self in {JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED}


class JobDeploymentStatus(StrEnum):
    """The RayJob controller's state machine (``status.jobDeploymentStatus``)."""

    NEW = ""
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    VALIDATION_FAILED = "ValidationFailed"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    RETRYING = "Retrying"
    WAITING = "Waiting"

    def is_terminal(self) -> bool:
        return self in {JobDeploymentStatus.COMPLETE, JobDeploymentStatus.FAILED}

    def can_suspend(self) -> bool:
        """Only Initializing and Running may move to Suspending (KubeRay's rule)."""
        return self in {JobDeploymentStatus.INITIALIZING, JobDeploymentStatus.RUNNING}


class JobFailedReason(StrEnum):
    SUBMISSION_FAILED = "SubmissionFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    PRE_RUNNING_DEADLINE_EXCEEDED = "PreRunningDeadlineExceeded"
    APP_FAILED = "AppFailed"
    JOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_EXCEEDED = "JobDeploymentStatusTransitionGracePeriodExceeded"
    JOB_STATUS_CHECK_TIMEOUT_EXCEEDED = "JobStatusCheckTimeoutExceeded"
    VALIDATION_FAILED = "ValidationFailed"
    RAY_CLUSTER_STARTUP_FAILED = "RayClusterStartupFailed"
    """kray's: the cluster crash-looped or failed while the job waited for it (StartupPolicy)."""

    def allows_retry(self) -> bool:
        """Deadline and status-check timeouts end a RayJob for good; other failures may retry."""
        return self not in {
            JobFailedReason.DEADLINE_EXCEEDED,
            JobFailedReason.JOB_STATUS_CHECK_TIMEOUT_EXCEEDED,
        }


class JobSubmissionMode(StrEnum):
    K8S_JOB = "K8sJobMode"
    HTTP = "HTTPMode"
    INTERACTIVE = "InteractiveMode"
    SIDECAR = "SidecarMode"

    def has_submitter(self) -> bool:
        """Modes whose completion also waits for a submitter container to finish."""
        return self in {JobSubmissionMode.K8S_JOB, JobSubmissionMode.SIDECAR}


class DeletionPolicyType(StrEnum):
    DELETE_CLUSTER = "DeleteCluster"
    DELETE_WORKERS = "DeleteWorkers"
    DELETE_SELF = "DeleteSelf"
    DELETE_NONE = "DeleteNone"

    def impact(self) -> int:
        """Higher is more destructive; overdue rules run the most impactful first."""
        return {
            DeletionPolicyType.DELETE_NONE: 0,
            DeletionPolicyType.DELETE_WORKERS: 1,
            DeletionPolicyType.DELETE_CLUSTER: 2,
            DeletionPolicyType.DELETE_SELF: 3,
        }[self]


class DeletionJobStatus(StrEnum):
    """The job statuses a deletion rule may name."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class DeletionJobDeploymentStatus(StrEnum):
    FAILED = "Failed"


class ClusterState(StrEnum):
    """``status.state`` of a RayCluster (deprecated by KubeRay but still written, and sticky)."""

    NEW = ""
    READY = "ready"
    SUSPENDED = "suspended"
    FAILED = "failed"  # kept for compatibility; KubeRay never sets it


class AuthMode(StrEnum):
    DISABLED = "disabled"
    TOKEN = "token"


class UpscalingMode(StrEnum):
    DEFAULT = "Default"
    AGGRESSIVE = "Aggressive"
    CONSERVATIVE = "Conservative"


class AutoscalerVersion(StrEnum):
    V1 = "v1"
    V2 = "v2"


class GcsFaultToleranceBackend(StrEnum):
    REDIS = "redis"
    ROCKSDB = "rocksdb"


class GcsStorageDeletionPolicy(StrEnum):
    DELETE_WITH_CLUSTER = "DeleteWithCluster"
    RETAIN = "Retain"


class IngressPathType(StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"
    IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"


class NetworkPolicyMode(StrEnum):
    DENY_ALL = "DenyAll"
    DENY_ALL_INGRESS = "DenyAllIngress"
    DENY_ALL_EGRESS = "DenyAllEgress"


class RayClusterUpgradeType(StrEnum):
    RECREATE = "Recreate"
    NONE = "None"


class RayServiceUpgradeType(StrEnum):
    """Not a CRD enum in KubeRay: the controller validates it, so the model keeps a plain string."""

    NEW_CLUSTER = "NewCluster"
    NEW_CLUSTER_WITH_INCREMENTAL_UPGRADE = "NewClusterWithIncrementalUpgrade"
    NONE = "None"


class ManagedBy(StrEnum):
    KUBERAY_OPERATOR = "ray.io/kuberay-operator"
    MULTIKUEUE = "kueue.x-k8s.io/multikueue"


class ApplicationStatus(StrEnum):
    """Ray Serve application status values."""

    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    DELETING = "DELETING"
    UNHEALTHY = "UNHEALTHY"


class DeploymentStatus(StrEnum):
    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"


class NodeType(StrEnum):
    HEAD = "head"
    WORKER = "worker"
    REDIS_CLEANUP = "redis-cleanup"
