"""The RayJob reconcile: observe (store + dashboard), plan (:mod:`.plan`), act. Thin.

The dashboard is asked about the Ray job only when the plan needs it (Running, or stopping a job
on deletion). Submission goes through the dashboard REST API (HTTPMode semantics) with the
submission id fixed in ``status.jobId`` beforehand, so a retry after a crash never submits twice:
the plan submits only after the dashboard said the id does not exist, and a concurrent duplicate
is refused by Ray itself (``JobAlreadyExists``), which counts as success.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import secrets
import string
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
from kray.api.v1.enums import JobDeploymentStatus, ManagedBy
from kray.api.v1.raycluster import RayCluster
from kray.api.v1.rayjob import RayJob
from kray.controllers import events
from kray.controllers.common.diagnosis import PodTrouble, troubles
from kray.controllers.common.labels import RAY_CLUSTER
from kray.controllers.common.names import auth_secret_name, head_service_name
from kray.controllers.common.submitter import build_submit_request
from kray.controllers.environment import ClusterEnvironment
from kray.controllers.rayjob.plan import (
    FINALIZER,
    AddFinalizer,
    CreateCluster,
    DeleteCluster,
    DeleteSelf,
    Observed,
    RayJobInfo,
    RemoveFinalizer,
    Settings,
    StopJob,
    SubmitJob,
    SuspendWorkers,
    plan,
)
from kray.runtime.controller import Result
from kray.runtime.informer import ObjectKey
from kray.store import POD, RAYCLUSTER, RAYJOB, SECRET, SERVICE, Obj, Store
from kray.store.errors import AlreadyExists, Conflict, NotFound, StoreError

log = structlog.get_logger(__name__)
COMPONENT = "rayjob-controller"
_ALPHABET = string.ascii_lowercase + string.digits

DashboardFactory = Callable[[str, str | None], AsyncDashboardClient]


def default_dashboards(address: str, token: str | None) -> AsyncDashboardClient:
    return AsyncDashboardClient(f"http://{address}", token=token, timeout=5.0)


class JobObserver(Protocol):
    """Told about every status a RayJob takes (local mode keeps job history and driver logs)."""

    async def observe(self, *, job: Obj, status: dict[str, Any], dashboard: AsyncDashboardClient | None) -> None: ...

    async def deleted(self, *, job: Obj, status: dict[str, Any], dashboard: AsyncDashboardClient | None) -> None:
        """The RayJob is about to go (its Ray job already asked to stop): the last word on it."""
        ...


def random_suffix() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(5))


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
        if (raw.get("spec") or {}).get("managedBy") not in (None, ManagedBy.KUBERAY_OPERATOR.value):
            return Result.done()
        job = await self._validated(raw)
        if job is None:
            return Result.done()
        observed, dashboard = await self._observe(raw, job)
        try:
            return await self._act(raw, job, observed, dashboard)
        finally:
            if dashboard is not None:
                await dashboard.aclose()

    async def _validated(self, raw: Obj) -> RayJob | None:
        status = (raw.get("status") or {}).get("jobDeploymentStatus")
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
                **(raw.get("status") or {}),
                "jobDeploymentStatus": "ValidationFailed",
                "reason": "ValidationFailed",
                "message": message,
            }
            await self._write_status(raw, new)
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

    async def _observe(self, raw: Obj, job: RayJob) -> tuple[Observed, AsyncDashboardClient | None]:
        status = raw.get("status") or {}
        namespace = job.metadata.namespace or "default"
        cluster_name = status.get("rayClusterName")
        cluster_raw: Obj | None = None
        if cluster_name:
            try:
                cluster_raw = await self.store.get(RAYCLUSTER, cluster_name, namespace=namespace)
            except NotFound:
                cluster_raw = None
        observed = Observed(
            job=job,
            now=self.clock(),
            random_suffix=self.suffix(),
            settings=self.settings,
            cluster_exists=cluster_raw is not None,
        )
        if cluster_raw is None:
            return observed, None
        cluster_status = cluster_raw.get("status") or {}
        cluster = parse_object(cluster_raw)
        assert isinstance(cluster, RayCluster)
        head_service = await self._head_service(cluster)
        address = self.environment.dashboard_address(cluster=cluster, head_service=head_service)
        values: dict[str, Any] = {
            "cluster_ready": cluster_status.get("state") == "ready",
            "cluster_status": cluster_status or None,
            "dashboard_url": address,
        }
        deployment = status.get("jobDeploymentStatus")
        deleting = bool(job.metadata.deletion_timestamp)
        if deployment == JobDeploymentStatus.INITIALIZING.value and not values["cluster_ready"]:
            values["cluster_troubles"] = await self._troubles(namespace, cluster_name or "")
        job_id = status.get("jobId")
        dashboard: AsyncDashboardClient | None = None
        wants_dashboard = deployment == JobDeploymentStatus.RUNNING.value or deleting or self.observer is not None
        if job_id and address is not None and wants_dashboard:
            dashboard = self.dashboards(address, await self._token(cluster))
        if job_id and dashboard is not None and (deployment == JobDeploymentStatus.RUNNING.value or deleting):
            try:
                info = await dashboard.get_job(job_id)
                values["ray_job"] = RayJobInfo(info.status, info.message or "", info.start_time, info.end_time)
            except JobNotFound:
                values["ray_job_missing"] = True
            except DashboardError as error:
                values["dashboard_error"] = str(error)
        return dataclasses.replace(observed, **values), dashboard

    async def _troubles(self, namespace: str, cluster_name: str) -> tuple[PodTrouble, ...]:
        pods = await self.store.list(POD, namespace=namespace, label_selector=f"{RAY_CLUSTER}={cluster_name}")
        return tuple(troubles(pods.items))

    async def _head_service(self, cluster: RayCluster) -> Obj | None:
        name = head_service_name(cluster.metadata.name or "")
        try:
            return await self.store.get(SERVICE, name, namespace=cluster.metadata.namespace)
        except NotFound:
            return None

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

    async def _act(self, raw: Obj, job: RayJob, observed: Observed, dashboard: AsyncDashboardClient | None) -> Result:
        result = plan(observed)
        for type_, reason, message in result.events:
            await events.record(
                store=self.store, involved=raw, type_=type_, reason=reason, message=message, component=COMPONENT
            )
        for action in result.actions:
            if isinstance(action, RemoveFinalizer) and self.observer is not None:
                await self.observer.deleted(job=raw, status=result.status, dashboard=dashboard)
            try:
                after = await self._execute(action, raw=raw, job=job, dashboard=dashboard)
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
        if self.observer is not None:
            await self.observer.observe(job=raw, status=result.status, dashboard=dashboard)
        return Result() if result.requeue_after is None else Result.after(result.requeue_after)

    async def _execute(
        self, action: Any, *, raw: Obj, job: RayJob, dashboard: AsyncDashboardClient | None
    ) -> Obj | None:
        """Carry out one action; returns the RayJob as it now is, or None once it is gone."""
        namespace = job.metadata.namespace or "default"
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
        elif isinstance(action, DeleteCluster):
            try:
                await self.store.delete(RAYCLUSTER, action.name, namespace=namespace)
                await events.record(
                    store=self.store,
                    involved=raw,
                    type_="Normal",
                    reason="DeletedRayCluster",
                    message=f"Deleted RayCluster {namespace}/{action.name}",
                    component=COMPONENT,
                )
            except NotFound:
                pass
        elif isinstance(action, SuspendWorkers):
            await self._suspend_workers(namespace, action.name)
        elif isinstance(action, SubmitJob) and dashboard is not None:
            body = build_submit_request(rayjob=job, job_id=action.submission_id)
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
        meta = raw["metadata"]
        spec = (raw.get("spec") or {}).get("rayClusterSpec") or {}
        labels = {
            **(meta.get("labels") or {}),
            "ray.io/originated-from-cr-name": meta["name"],
            "ray.io/originated-from-crd": "RayJob",
            "ray.io/job-submission-mode": job.spec.submission_mode.value,
        }
        cluster = {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {
                "name": name,
                "namespace": meta.get("namespace"),
                "labels": labels,
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "ray.io/v1",
                        "kind": "RayJob",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }
        with contextlib.suppress(AlreadyExists):
            await self.store.create(RAYCLUSTER, cluster)

    async def _suspend_workers(self, namespace: str, name: str) -> None:
        try:
            cluster = await self.store.get(RAYCLUSTER, name, namespace=namespace)
        except NotFound:
            return
        groups = [{**g, "suspend": True} for g in (cluster.get("spec") or {}).get("workerGroupSpecs") or []]
        await self.store.replace(RAYCLUSTER, {**cluster, "spec": {**cluster["spec"], "workerGroupSpecs": groups}})

    async def _remove_finalizer(self, raw: Obj) -> None:
        meta = raw["metadata"]
        remaining = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        try:
            await self.store.replace(RAYJOB, {**raw, "metadata": {**meta, "finalizers": remaining}})
        except (NotFound, StoreError) as error:
            log.info("rayjob.finalizer_not_removed", error=str(error))

    async def _write_status(self, raw: Obj, status: dict[str, Any]) -> Obj:
        return await self.store.replace_status(RAYJOB, {**raw, "status": status})
