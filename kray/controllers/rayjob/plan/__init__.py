"""The RayJob planner (pure): observed snapshot in, status and actions out. See :mod:`.machine`.

A package so that the purity contract on ``kray.controllers.rayjob.plan`` (import-linter) covers
every part of it: the state machine, the Running checks, the outcome bookkeeping and the cleanup.
"""

from kray.controllers.rayjob.plan.machine import plan
from kray.controllers.rayjob.plan.model import (
    CLUSTER_SELECTOR_KEY,
    FINALIZER,
    REQUEUE,
    SUBMITTER_FINISHED_TIMEOUT,
    Action,
    AddFinalizer,
    CreateCluster,
    CreateSubmitter,
    DeleteCluster,
    DeleteSelf,
    DeleteSubmitter,
    EnsureJobService,
    JobPlan,
    Observed,
    RayJobInfo,
    RemoveFinalizer,
    Settings,
    StartupPolicy,
    StopJob,
    SubmitJob,
    SubmitterState,
    SuspendWorkers,
    parse_time,
    rfc3339,
)
from kray.controllers.rayjob.plan.wire import kuberay_json

__all__ = [
    "CLUSTER_SELECTOR_KEY",
    "FINALIZER",
    "REQUEUE",
    "SUBMITTER_FINISHED_TIMEOUT",
    "Action",
    "AddFinalizer",
    "CreateCluster",
    "CreateSubmitter",
    "DeleteCluster",
    "DeleteSelf",
    "DeleteSubmitter",
    "EnsureJobService",
    "JobPlan",
    "Observed",
    "RayJobInfo",
    "RemoveFinalizer",
    "Settings",
    "StartupPolicy",
    "StopJob",
    "SubmitJob",
    "SubmitterState",
    "SuspendWorkers",
    "kuberay_json",
    "parse_time",
    "plan",
    "rfc3339",
]
