"""The planner's vocabulary: what the reconcile observed, the actions it may take, the plan it gets back.

Kept apart from the transition logic so every part of the planner (and its tests) shares one set of
frozen values; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kray.api.v1.enums import JobStatus, JobSubmissionMode
from kray.api.v1.rayjob import RayJob
from kray.controllers.common.diagnosis import PodTrouble

FINALIZER = "ray.io/rayjob-finalizer"
CLUSTER_SELECTOR_KEY = "ray.io/cluster"
REQUEUE = 3.0
SUBMITTER_FINISHED_TIMEOUT = 30.0
"""KubeRay's ``DefaultSubmitterFinishedTimeout``: how long a finished submitter waits for a terminal Ray job."""


@dataclass(frozen=True, slots=True)
class StartupPolicy:
    """kray's fail-fast for clusters that cannot start (not in KubeRay, which waits without end).

    A RayJob still ``Initializing`` fails with ``RayClusterStartupFailed`` when a pod of its cluster
    reached phase Failed or its Ray container restarted ``crash_loop_restarts`` times, or when the
    cluster is not ready ``timeout`` seconds after the job started and the manifest sets no
    ``preRunningDeadlineSeconds`` of its own. The message names the pod and quotes its last log lines.
    """

    crash_loop_restarts: int = 3
    timeout: float | None = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    """KubeRay's timing knobs (operator env vars), with its defaults, and kray's startup policy."""

    transition_grace_period: float = 300.0  # RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS
    status_check_timeout: float = 300.0  # RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS
    delete_rayjob_after_finish: bool = False  # DELETE_RAYJOB_CR_AFTER_JOB_FINISHES
    deletion_rules_enabled: bool = True  # feature gate RayJobDeletionPolicy
    startup: StartupPolicy | None = None
    """None: KubeRay's behaviour (an Initializing job waits for its cluster until a deadline)."""


@dataclass(frozen=True, slots=True)
class RayJobInfo:
    """What the dashboard says of the Ray job (``GET /api/jobs/<id>``)."""

    status: JobStatus
    message: str = ""
    start_time_ms: int | None = None
    end_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SubmitterState:
    """The submitter as the reconcile saw it: K8sJobMode's batch Job, or SidecarMode's head-pod container.

    K8sJobMode: ``failed`` is the Job's ``Failed`` condition (``reason``/``message`` its own), and
    ``finished_at`` the ``lastTransitionTime`` of its ``Complete`` or ``Failed`` condition.
    SidecarMode: ``head_pod_found`` is False once the cluster has no head pod; ``failed`` means the
    ``ray-job-submitter`` container terminated with a non-zero ``exit_code`` (``reason`` the kubelet's),
    and ``finished_at`` is when it terminated, whatever its exit code.
    """

    failed: bool = False
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    container: str = "ray-job-submitter"
    finished_at: datetime | None = None
    head_pod_found: bool = True


@dataclass(frozen=True, slots=True)
class Observed:
    job: RayJob
    now: datetime
    cluster_exists: bool = False
    cluster_ready: bool = False
    cluster_status: dict[str, Any] | None = None
    cluster_troubles: tuple[PodTrouble, ...] = ()
    """The cluster's pods that are not Running and Ready (gathered while Initializing)."""
    dashboard_url: str | None = None
    ray_job: RayJobInfo | None = None
    ray_job_missing: bool = False
    """The dashboard answered 404 for status.jobId."""
    dashboard_error: str | None = None
    """The dashboard could not be asked (unreachable, 5xx)."""
    random_suffix: str = "xxxxx"
    """Five lowercase alphanumerics for generated names, drawn by the caller."""
    settings: Settings = field(default_factory=Settings)
    submits_over_http: bool = False
    """The place's knob (``ClusterEnvironment.submits_over_http``): every mode submits as HTTPMode."""
    manages_job_service: bool = True
    """The place's knob: keep ``<rayjob>-head-svc`` pointed at the job's cluster (KubeRay does)."""
    job_service_target: str | None = None
    """The ``ray.io/cluster`` selector of ``<rayjob>-head-svc``; None while that Service does not exist."""
    submitter_job_exists: bool = False
    """K8sJobMode: the batch Job ``<rayjob>`` exists (and is not being deleted)."""
    submitter: SubmitterState | None = None
    """What the submitter looks like (Running, K8sJobMode/SidecarMode); None: not found / not asked."""
    workers_suspended: bool = False
    """Every worker group of the cluster has ``suspend: true`` (DeleteWorkers already done)."""

    def mode(self) -> JobSubmissionMode:
        """The submission mode as this place runs it: locally K8sJobMode and SidecarMode are HTTPMode."""
        mode = self.job.spec.submission_mode
        if self.submits_over_http and mode in (JobSubmissionMode.K8S_JOB, JobSubmissionMode.SIDECAR):
            return JobSubmissionMode.HTTP
        return mode


@dataclass(frozen=True, slots=True)
class CreateCluster:
    name: str


@dataclass(frozen=True, slots=True)
class DeleteCluster:
    name: str


@dataclass(frozen=True, slots=True)
class SuspendWorkers:
    name: str


@dataclass(frozen=True, slots=True)
class SubmitJob:
    submission_id: str


@dataclass(frozen=True, slots=True)
class StopJob:
    submission_id: str


@dataclass(frozen=True, slots=True)
class CreateSubmitter:
    """K8sJobMode: create the batch Job ``<rayjob>`` that runs ``ray job submit`` against ``dashboard_url``."""

    job_id: str
    dashboard_url: str


@dataclass(frozen=True, slots=True)
class DeleteSubmitter:
    """Delete the batch Job ``<rayjob>`` (propagation Background, as KubeRay)."""


@dataclass(frozen=True, slots=True)
class EnsureJobService:
    """Create ``<rayjob>-head-svc`` for ``cluster``'s head, or re-point it there (``update``)."""

    cluster: str
    update: bool


@dataclass(frozen=True, slots=True)
class DeleteSelf:
    pass


@dataclass(frozen=True, slots=True)
class AddFinalizer:
    pass


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    pass


Action = (
    CreateCluster
    | DeleteCluster
    | SuspendWorkers
    | SubmitJob
    | StopJob
    | CreateSubmitter
    | DeleteSubmitter
    | EnsureJobService
    | DeleteSelf
    | AddFinalizer
    | RemoveFinalizer
)


@dataclass(frozen=True, slots=True)
class JobPlan:
    status: dict[str, Any]
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = REQUEUE
    events: tuple[tuple[str, str, str], ...] = field(default=())
    """(type, reason, message) events to record."""


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def go_datetime(moment: datetime) -> str:
    """Go's ``time.DateTime`` layout (``2006-01-02 15:04:05``), in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
