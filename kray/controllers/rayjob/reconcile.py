"""The RayJob reconcile: observe (store + dashboard), plan (:mod:`.plan`), act. Thin.

The dashboard is asked about the Ray job only when the plan needs it (Running, or stopping a job
on deletion). HTTPMode submissions (every mode where the environment ``submits_over_http``, as in
local mode) go through the dashboard REST API with the submission id fixed in ``status.jobId``
beforehand, so a retry after a crash never submits twice: the plan submits only after the dashboard
said the id does not exist, and a concurrent duplicate is refused by Ray itself (``JobAlreadyExists``),
which counts as success. On Kubernetes K8sJobMode and SidecarMode run KubeRay's submitters instead
(:mod:`.kube`), and the reconcile reads them back for the plan.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from kray._ray.dashboard import AsyncDashboardClient
from kray._ray.dashboard_protocol import JobSubmission
from kray._ray.errors import DashboardError, JobAlreadyExists, JobNotFound
from kray.api.errors import ManifestError
from kray.api.manifest import parse_object
from kray.api.rules import FeatureGates, check_rayjob
from kray.api.v1.enums import JobDeploymentStatus, JobSubmissionMode, ManagedBy
from kray.api.v1.raycluster import RayCluster
from kray.api.v1.rayjob import RayJob
from kray.controllers import events
from kray.controllers.common.diagnosis import PodTrouble, troubles
from kray.controllers.common.labels import RAY_CLUSTER
from kray.controllers.common.names import RANDOM_SUFFIX_ALPHABET, auth_secret_name
from kray.controllers.common.submitter import build_http_submit_request, build_rayjob_cluster
from kray.controllers.environment import ClusterEnvironment, cluster_head_service_name
from kray.controllers.rayjob import kube
from kray.controllers.rayjob.plan import (
    FINALIZER,
    AddFinalizer,
    CreateCluster,
    CreateSubmitter,
    DeleteCluster,
    DeleteSelf,
    DeleteSubmitter,
    EnsureJobService,
    Observed,
    RayJobInfo,
    RemoveFinalizer,
    Settings,
    StopJob,
    SubmitJob,
    SuspendWorkers,
    kuberay_json,
    plan,
)
from kray.runtime.controller import Result
from kray.runtime.informer import ObjectKey
from kray.store import POD, RAYCLUSTER, RAYJOB, SECRET, SERVICE, Obj, Store
from kray.store.errors import AlreadyExists, Conflict, NotFound, StoreError

log = structlog.get_logger(__name__)
COMPONENT = "rayjob-controller"

DashboardFactory = Callable[[str, str | None], AsyncDashboardClient]


_SUBMITTER_STATES = {
    JobDeploymentStatus.INITIALIZING.value,
    JobDeploymentStatus.RUNNING.value,
    JobDeploymentStatus.SUSPENDING.value,
    JobDeploymentStatus.RETRYING.value,
}
"""Where K8sJobMode's plan needs to know about the submitter Job (create it, follow it, delete it)."""


def default_dashboards(address: str, token: str | None) -> AsyncDashboardClient:
    return AsyncDashboardClient(f"http://{address}", token=token, timeout=5.0)


class JobObserver(Protocol):
    """Told about every status a RayJob takes (local mode keeps job history and driver logs)."""

    async def observe(self, *, job: Obj, status: dict[str, Any], dashboard: AsyncDashboardClient | None) -> None: ...

    async def deleted(self, *, job: Obj, status: dict[str, Any], dashboard: AsyncDashboardClient | None) -> None:
        """The RayJob is about to go (its Ray job already asked to stop): the last word on it."""
        ...


def random_suffix() -> str:
    return "".join(secrets.choice(RANDOM_SUFFIX_ALPHABET) for _ in range(5))


@dataclass(frozen=True, slots=True)
class _Seen:
    """One reconcile's observation: the plan's input and what the actions need beside it."""

    observed: Observed
    dashboard: AsyncDashboardClient | None = None
    cluster: RayCluster | None = None
    submitter_job: Obj | None = None


@dataclass
class RayJobReconciler:
    store: Store
    environment: ClusterEnvironment
    gates: FeatureGates = field(default_factory=FeatureGates)
    settings: Settings = field(default_factory=Settings)
    dashboards: DashboardFactory = default_dashboards
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    suffix: Callable[[], str] = random_suffix
    observer: JobObserver | None = None

    async def __call__(self, key: ObjectKey) -> Result:
        namespace, name = key
        try:
            raw = await self.store.get(RAYJOB, name, namespace=namespace)
        except NotFound:
            return Result.done()
        spec = raw.get("spec")  # any JSON at all under a CRD with validation off
        managed_by = spec.get("managedBy") if isinstance(spec, dict) else None
        if isinstance(managed_by, str) and managed_by != ManagedBy.KUBERAY_OPERATOR.value:
            return Result.done()  # another controller's; a managedBy of the wrong type is reported below
        job = await self._validated(raw)
        if job is None:
            return Result.done()
        seen = await self._observe(raw, job)
        try:
            return await self._act(raw, job, seen)
        finally:
            if seen.dashboard is not None:
                await seen.dashboard.aclose()

    async def _validated(self, raw: Obj) -> RayJob | None:
        current: dict[str, Any] = raw["status"] if isinstance(raw.get("status"), dict) else {}
        status = current.get("jobDeploymentStatus")
        try:
            job = parse_object(raw)
            assert isinstance(job, RayJob)
            problems = [str(e) for e in check_rayjob(job, gates=self.gates)]
        except ManifestError as error:
            job, problems = None, [str(e) for e in error.errors]
        if not problems:
            return job
        if status != JobDeploymentStatus.VALIDATION_FAILED.value and not raw["metadata"].get("deletionTimestamp"):
            message = "; ".join(problems)
            new = {
                **current,
                "jobDeploymentStatus": "ValidationFailed",
                "reason": "ValidationFailed",
                "message": message,
            }
            try:
                await self._write_status(raw, kuberay_json(new))
            except (Conflict, NotFound):
                return None  # changed or gone since read: the informer brings the new version to judge afresh
            await events.record(
                store=self.store,
                involved=raw,
                type_="Warning",
                reason="InvalidRayJobSpec",
                message=message,
                component=COMPONENT,
            )
        if raw["metadata"].get("deletionTimestamp"):
            await self._remove_finalizer(raw)
        return None

    async def _observe(self, raw: Obj, job: RayJob) -> _Seen:
        status = raw.get("status") or {}
        namespace = job.metadata.namespace or "default"
        cluster_name = status.get("rayClusterName")
        deployment = status.get("jobDeploymentStatus")
        env = self.environment
        cluster_raw = await kube.get_or_none(self.store, RAYCLUSTER, cluster_name, namespace) if cluster_name else None
        observed = Observed(
            job=job,
            now=self.clock(),
            random_suffix=self.suffix(),
            settings=self.settings,
            cluster_exists=cluster_raw is not None,
            submits_over_http=env.submits_over_http,
            manages_job_service=env.rayjob_head_service,
        )
        mode = observed.mode()
        values: dict[str, Any] = {}
        submitter_job: Obj | None = None
        if mode is JobSubmissionMode.K8S_JOB and deployment in _SUBMITTER_STATES:
            submitter_job = await kube.read_submitter_job(self.store, job)
            values["submitter_job_exists"] = submitter_job is not None
            if submitter_job is not None and deployment == JobDeploymentStatus.RUNNING.value:
                values["submitter"] = kube.submitter_job_state(submitter_job)
        running = deployment == JobDeploymentStatus.RUNNING.value
        if running and env.rayjob_head_service and not job.spec.cluster_selector:
            values["job_service_target"] = await kube.read_job_service_target(self.store, job)
        if cluster_raw is None:
            return _Seen(dataclasses.replace(observed, **values), submitter_job=submitter_job)
        cluster_status = cluster_raw.get("status") or {}
        cluster = parse_object(cluster_raw)
        assert isinstance(cluster, RayCluster)
        head_service = await kube.get_or_none(
            self.store, SERVICE, cluster_head_service_name(cluster), cluster.metadata.namespace or namespace
        )
        address = env.dashboard_address(cluster=cluster, head_service=head_service)
        groups = (cluster_raw.get("spec") or {}).get("workerGroupSpecs") or []
        values.update(
            cluster_ready=cluster_status.get("state") == "ready",
            cluster_status=cluster_status or None,
            dashboard_url=address,
            workers_suspended=all(g.get("suspend") is True for g in groups),
        )
        if mode is JobSubmissionMode.SIDECAR and running:
            values["submitter"] = await kube.read_sidecar(self.store, namespace, cluster_name or "")
        deleting = bool(job.metadata.deletion_timestamp)
        if deployment == JobDeploymentStatus.INITIALIZING.value and not values["cluster_ready"]:
            values["cluster_troubles"] = await self._troubles(namespace, cluster_name or "")
        job_id = status.get("jobId")
        dashboard: AsyncDashboardClient | None = None
        wants_dashboard = running or deleting or self.observer is not None
        if job_id and address is not None and wants_dashboard:
            dashboard = self.dashboards(address, await self._token(cluster))
        if job_id and dashboard is not None and (running or deleting):
            try:
                info = await dashboard.get_job(job_id)
                values["ray_job"] = RayJobInfo(info.status, info.message or "", info.start_time, info.end_time)
            except JobNotFound:
                values["ray_job_missing"] = True
            except DashboardError as error:
                values["dashboard_error"] = str(error)
        return _Seen(dataclasses.replace(observed, **values), dashboard, cluster, submitter_job)

    async def _troubles(self, namespace: str, cluster_name: str) -> tuple[PodTrouble, ...]:
        pods = await self.store.list(POD, namespace=namespace, label_selector=f"{RAY_CLUSTER}={cluster_name}")
        return tuple(troubles(pods.items))

    async def _token(self, cluster: RayCluster) -> str | None:
        options = cluster.spec.auth_options
        if not (cluster.spec.auth_enabled() or self.environment.force_token_auth):
            return None
        name = auth_secret_name(cluster.metadata.name or "", override=options.secret_name if options else None)
        try:
            secret = await self.store.get(SECRET, name, namespace=cluster.metadata.namespace)
        except NotFound:
            return None
        data = (secret.get("data") or {}).get("auth_token")
        return base64.b64decode(data).decode() if data else None

    async def _act(self, raw: Obj, job: RayJob, seen: _Seen) -> Result:
        dashboard = seen.dashboard
        result = plan(seen.observed)
        for type_, reason, message in result.events:
            await events.record(
                store=self.store, involved=raw, type_=type_, reason=reason, message=message, component=COMPONENT
            )
        for action in result.actions:
            if isinstance(action, RemoveFinalizer) and self.observer is not None:
                await self.observer.deleted(job=raw, status=result.status, dashboard=dashboard)
            try:
                after = await self._execute(action, raw=raw, job=job, seen=seen)
            except Conflict:
                return Result.after(0)
            if after is None:  # the RayJob is gone (finalizer removed, or DeleteSelf)
                return Result.done()
            raw = after
        if result.status != (raw.get("status") or {}):
            try:
                raw = await self._write_status(raw, result.status)
            except (Conflict, NotFound):
                return Result.after(0)
        # Once deleting, ``observer.deleted`` was the last word: a later reconcile (a foreground deletion
        # keeps the RayJob until its cluster is gone) must not record it as still running.
        if self.observer is not None and not job.metadata.deletion_timestamp:
            await self.observer.observe(job=raw, status=result.status, dashboard=dashboard)
        return Result() if result.requeue_after is None else Result.after(result.requeue_after)

    async def _execute(self, action: Any, *, raw: Obj, job: RayJob, seen: _Seen) -> Obj | None:
        """Carry out one action; returns the RayJob as it now is, or None once it is gone."""
        namespace = job.metadata.namespace or "default"
        dashboard = seen.dashboard
        if isinstance(action, AddFinalizer):
            meta = raw["metadata"]
            return await self.store.replace(
                RAYJOB, {**raw, "metadata": {**meta, "finalizers": [*(meta.get("finalizers") or []), FINALIZER]}}
            )
        if isinstance(action, RemoveFinalizer):
            await self._remove_finalizer(raw)
            return None
        if isinstance(action, CreateCluster):
            await self._create_cluster(raw, job, action.name)
        elif isinstance(action, CreateSubmitter) and seen.cluster is not None:
            await kube.create_submitter_job(
                store=self.store,
                raw=raw,
                job=job,
                cluster=seen.cluster,
                job_id=action.job_id,
                dashboard_url=action.dashboard_url,
                options=self.environment.pod_options(seen.cluster),
            )
        elif isinstance(action, DeleteSubmitter):
            await kube.delete_submitter_job(store=self.store, raw=raw, submitter=seen.submitter_job)
        elif isinstance(action, EnsureJobService) and seen.cluster is not None:
            await kube.ensure_job_service(
                store=self.store,
                raw=raw,
                cluster=seen.cluster,
                update=action.update,
                options=self.environment.pod_options(seen.cluster),
            )
        elif isinstance(action, DeleteCluster):
            try:
                await self.store.delete(RAYCLUSTER, action.name, namespace=namespace)
                await events.record(
                    store=self.store,
                    involved=raw,
                    type_="Normal",
                    reason="DeletedRayCluster",
                    message=f"Deleted cluster {namespace}/{action.name}",
                    component=COMPONENT,
                )
            except NotFound:
                pass
        elif isinstance(action, SuspendWorkers):
            await self._suspend_workers(raw, namespace, action.name)
        elif isinstance(action, SubmitJob) and dashboard is not None:
            body = build_http_submit_request(rayjob=job, job_id=action.submission_id)
            with contextlib.suppress(JobAlreadyExists):
                await dashboard.submit_job(JobSubmission(**body))
        elif isinstance(action, StopJob) and dashboard is not None:
            try:
                await dashboard.stop_job(action.submission_id)
            except DashboardError as error:
                log.info("rayjob.stop_failed", error=str(error))
        elif isinstance(action, DeleteSelf):
            with contextlib.suppress(NotFound):
                await self.store.delete(RAYJOB, job.metadata.name or "", namespace=namespace)
            return None
        return raw

    async def _create_cluster(self, raw: Obj, job: RayJob, name: str) -> None:
        status = raw.get("status") or {}
        sidecar = job.spec.submission_mode is JobSubmissionMode.SIDECAR and not self.environment.submits_over_http
        options = None
        if sidecar and job.spec.ray_cluster_spec is not None:
            model = RayCluster.model_validate(
                {"metadata": {"name": name, "namespace": job.metadata.namespace}, "spec": job.spec.ray_cluster_spec}
            )
            options = self.environment.pod_options(model)
        cluster = build_rayjob_cluster(
            rayjob=job,
            raw=raw,
            name=name,
            job_id=str(status.get("jobId") or ""),
            dashboard_url=str(status.get("dashboardURL") or ""),
            sidecar=sidecar,
            **({"options": options} if options is not None else {}),
        )
        with contextlib.suppress(AlreadyExists):
            await self.store.create(RAYCLUSTER, cluster)

    async def _suspend_workers(self, raw: Obj, namespace: str, name: str) -> None:
        try:
            cluster = await self.store.get(RAYCLUSTER, name, namespace=namespace)
        except NotFound:
            return
        groups = [{**g, "suspend": True} for g in (cluster.get("spec") or {}).get("workerGroupSpecs") or []]
        try:
            await self.store.replace(RAYCLUSTER, {**cluster, "spec": {**cluster["spec"], "workerGroupSpecs": groups}})
        except StoreError as error:
            await self._event(
                raw,
                "Warning",
                "FailedToUpdateRayCluster",
                f"Failed to suspend worker groups in cluster {namespace}/{name}: {error}",
            )
            raise
        await self._event(
            raw,
            "Normal",
            "UpdatedRayCluster",
            f"Set the `suspend` field to true for all worker groups in cluster {namespace}/{name}",
        )

    async def _event(self, raw: Obj, type_: str, reason: str, message: str) -> None:
        await events.record(
            store=self.store, involved=raw, type_=type_, reason=reason, message=message, component=COMPONENT
        )

    async def _remove_finalizer(self, raw: Obj) -> None:
        meta = raw["metadata"]
        remaining = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        try:
            await self.store.replace(RAYJOB, {**raw, "metadata": {**meta, "finalizers": remaining}})
        except (NotFound, StoreError) as error:
            log.info("rayjob.finalizer_not_removed", error=str(error))

    async def _write_status(self, raw: Obj, status: dict[str, Any]) -> Obj:
        return await self.store.replace_status(RAYJOB, {**raw, "status": status})
