"""The Kubernetes objects a RayJob keeps beside its cluster: the submitter Job and ``<rayjob>-head-svc``.

Only where the place runs submitters (``ClusterEnvironment.submits_over_http`` false) and keeps the
head Service (``rayjob_head_service``): local mode has neither. Reading turns them into the
planner's :class:`~kray.controllers.rayjob.plan.SubmitterState`; writing follows KubeRay (create
once, delete in the background, re-point the Service only when the job's cluster changed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kray.api.v1.raycluster import RayCluster
from kray.api.v1.rayjob import RayJob
from kray.controllers import events
from kray.controllers.common.labels import RAY_CLUSTER, RAY_NODE_TYPE
from kray.controllers.common.names import owner_head_service_name, rayjob_submitter_job_name
from kray.controllers.common.options import PodBuildOptions
from kray.controllers.common.service import build_owner_head_service
from kray.controllers.common.submitter import SUBMITTER_CONTAINER, build_submitter_job
from kray.controllers.rayjob.plan import SubmitterState
from kray.store import JOB, POD, SERVICE, Obj, Store
from kray.store.errors import AlreadyExists, NotFound

COMPONENT = "rayjob-controller"


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def get_or_none(store: Store, resource: Any, name: str, namespace: str) -> Obj | None:
    try:
        return await store.get(resource, name, namespace=namespace)
    except NotFound:
        return None


async def read_submitter_job(store: Store, job: RayJob) -> Obj | None:
    name = rayjob_submitter_job_name(job.metadata.name or "")
    return await get_or_none(store, JOB, name, job.metadata.namespace or "default")


def submitter_job_state(submitter: Obj) -> SubmitterState:
    """K8sJobMode: failed = condition ``Failed`` True; finished = ``Complete`` or ``Failed`` True (its time)."""
    conditions = [c for c in (submitter.get("status") or {}).get("conditions") or () if c.get("status") == "True"]
    failed = next((c for c in conditions if c.get("type") == "Failed"), None)
    done = next((c for c in conditions if c.get("type") in ("Complete", "Failed")), None)
    return SubmitterState(
        failed=failed is not None,
        reason=(failed or {}).get("reason") or "",
        message=(failed or {}).get("message") or "",
        finished_at=_time((done or {}).get("lastTransitionTime")),
    )


def sidecar_state(head_pods: Sequence[Obj]) -> SubmitterState | None:
    """SidecarMode: no head pod is a failure; two are an error KubeRay retries (None)."""
    if not head_pods:
        return SubmitterState(head_pod_found=False)
    if len(head_pods) > 1:
        return None
    statuses = (head_pods[0].get("status") or {}).get("containerStatuses") or ()
    mine = next((s for s in statuses if s.get("name") == SUBMITTER_CONTAINER), None)
    terminated = ((mine or {}).get("state") or {}).get("terminated")
    if terminated is None:
        return SubmitterState()
    exit_code = int(terminated.get("exitCode") or 0)
    return SubmitterState(
        failed=exit_code != 0,
        reason=terminated.get("reason") or "",
        exit_code=exit_code,
        finished_at=_time(terminated.get("finishedAt")),
    )


async def read_sidecar(store: Store, namespace: str, cluster: str) -> SubmitterState | None:
    selector = f"{RAY_CLUSTER}={cluster},{RAY_NODE_TYPE}=head"
    pods = await store.list(POD, namespace=namespace, label_selector=selector)
    return sidecar_state(pods.items)


async def read_job_service_target(store: Store, job: RayJob) -> str | None:
    service = await get_or_none(
        store, SERVICE, owner_head_service_name(job.metadata.name or ""), job.metadata.namespace or "default"
    )
    if service is None:
        return None
    return str(((service.get("spec") or {}).get("selector") or {}).get(RAY_CLUSTER, ""))


async def create_submitter_job(
    *,
    store: Store,
    raw: Obj,
    job: RayJob,
    cluster: RayCluster,
    job_id: str,
    dashboard_url: str,
    options: PodBuildOptions,
) -> None:
    manifest = build_submitter_job(
        rayjob=job,
        cluster=cluster,
        job_id=job_id,
        dashboard_url=dashboard_url,
        owner_uid=raw["metadata"]["uid"],
        options=options,
    )
    try:
        await store.create(JOB, manifest)
    except AlreadyExists:
        return
    meta = manifest["metadata"]
    await _event(store, raw, "CreatedRayJobSubmitter", f"Created Kubernetes Job {meta['namespace']}/{meta['name']}")


async def delete_submitter_job(*, store: Store, raw: Obj, submitter: Obj | None) -> None:
    """Background propagation (the Job's pods go after it); a Job already being deleted is left alone."""
    if submitter is None or submitter["metadata"].get("deletionTimestamp"):
        return
    meta = submitter["metadata"]
    with contextlib.suppress(NotFound):
        await store.delete(JOB, meta["name"], namespace=meta["namespace"], propagation="Background")
        await _event(
            store, raw, "DeletedRayJobSubmitter", f"Deleted submitter K8s Job {meta['namespace']}/{meta['name']}"
        )


async def ensure_job_service(
    *, store: Store, raw: Obj, cluster: RayCluster, update: bool, options: PodBuildOptions
) -> None:
    meta = raw["metadata"]
    wanted = build_owner_head_service(
        owner_kind="RayJob", owner_name=meta["name"], owner_uid=meta["uid"], cluster=cluster, options=options
    )
    name, namespace = wanted["metadata"]["name"], wanted["metadata"]["namespace"]
    current = await get_or_none(store, SERVICE, name, namespace) if update else None
    if current is None:
        with contextlib.suppress(AlreadyExists):
            await store.create(SERVICE, wanted)
            await _event(store, raw, "CreatedService", f"Created the service {namespace}/{name}")
        return
    spec = dict(wanted["spec"])
    if (current.get("spec") or {}).get("clusterIP"):  # immutable once assigned
        spec["clusterIP"] = current["spec"]["clusterIP"]
    await store.replace(SERVICE, {**current, "spec": spec})
    await _event(store, raw, "UpdatedService", f"Updated the service {namespace}/{name}")


async def _event(store: Store, raw: Obj, reason: str, message: str) -> None:
    await events.record(store=store, involved=raw, type_="Normal", reason=reason, message=message, component=COMPONENT)
