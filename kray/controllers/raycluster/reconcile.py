"""The RayCluster reconcile: read, plan (:mod:`.plan`), act, write status (:mod:`.status`). Thin.

Order as KubeRay's: Redis-cleanup finalizer (:mod:`.cleanup`) → validation → children in KubeRay's
order (:mod:`.children`) → pods → status. The first failing step stops the pass; a failed pod
operation is reported as the ReplicaFailure condition. Status is written only when it changed
meaningfully (KubeRay's ``inconsistentRayClusterStatus``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from kray.api.errors import ManifestError
from kray.api.manifest import parse_object
from kray.api.rules import FeatureGates, check_raycluster
from kray.api.v1.enums import ManagedBy
from kray.api.v1.raycluster import RayCluster
from kray.controllers import events
from kray.controllers.common import labels as keys
from kray.controllers.common.names import RANDOM_SUFFIX_ALPHABET, head_service_name, replica_group_name
from kray.controllers.common.options import PodBuildOptions
from kray.controllers.common.pod import build_head_pod, build_worker_pod
from kray.controllers.common.redis_cleanup import build_redis_cleanup_job
from kray.controllers.environment import ClusterEnvironment
from kray.controllers.raycluster.children import ChildError, ChildReconciler, Children
from kray.controllers.raycluster.cleanup import REQUEUE_HEAD_TERMINATING, CleanupFacts, CleanupStep, plan_cleanup
from kray.controllers.raycluster.plan import (
    CreateHead,
    CreateReplica,
    CreateWorker,
    DeleteAllPods,
    DeletePod,
    PlanOptions,
    RefreshHeadVersion,
    plan_pods,
)
from kray.controllers.raycluster.podview import CLUSTER_LABEL, NODE_TYPE_LABEL, views
from kray.controllers.raycluster.status import compute_status, status_differs
from kray.controllers.raycluster.upgrade import recreate_hash
from kray.runtime.controller import Result
from kray.runtime.informer import ObjectKey
from kray.store import JOB, POD, RAYCLUSTER, SERVICE, Obj, Store
from kray.store.errors import AlreadyExists, Conflict, NotFound, StoreError

log = structlog.get_logger(__name__)
COMPONENT = "raycluster-controller"
REQUEUE_CHANGED = 2.0
REQUEUE_IDLE = 300.0  # RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RayClusterReconciler:
    store: Store
    environment: ClusterEnvironment
    gates: FeatureGates = field(default_factory=FeatureGates)
    clock: Callable[[], str] = now_rfc3339
    requeue_idle: float = REQUEUE_IDLE
    redis_cleanup: bool = True
    """``ENABLE_GCS_FT_REDIS_CLEANUP``: guard Redis fault-tolerant clusters with the cleanup finalizer."""
    kubernetes_only_objects: bool = True
    """Create the autoscaler ServiceAccount/Role/RoleBinding and the head Ingress (see :mod:`.children`)."""

    async def __call__(self, key: ObjectKey) -> Result:
        namespace, name = key
        try:
            raw = await self.store.get(RAYCLUSTER, name, namespace=namespace)
        except NotFound:
            self.environment.release(namespace=namespace, name=name)
            return Result.done()
        spec = raw.get("spec")  # any JSON at all under a CRD with validation off
        managed_by = spec.get("managedBy") if isinstance(spec, dict) else None
        if isinstance(managed_by, str) and managed_by != ManagedBy.KUBERAY_OPERATOR.value:
            return Result.done()  # another controller's; a managedBy of the wrong type is reported below
        try:
            cluster = parse_object(raw)
        except ManifestError as error:
            if raw["metadata"].get("deletionTimestamp"):
                return Result.done()
            await self._invalid(raw, "; ".join(str(e) for e in error.errors))
            return Result.done()
        assert isinstance(cluster, RayCluster)
        if self.redis_cleanup:
            cleanup = await self._cleanup(raw, cluster)
            if cleanup is not None:
                return cleanup
        if raw["metadata"].get("deletionTimestamp"):
            return Result.done()
        problems = check_raycluster(cluster, gates=self.gates)
        if problems:
            await self._invalid(raw, "; ".join(str(e) for e in problems))
            return Result.done()
        prepared = await self.environment.prepare(store=self.store, cluster=raw)
        if prepared is not None:
            return Result.after(0)
        return await self._reconcile(raw, cluster)

    async def _invalid(self, raw: Obj, message: str) -> None:
        meta = raw["metadata"]
        await self._event(
            raw,
            "Warning",
            "InvalidRayClusterSpec",
            f"The RayCluster spec is invalid {meta.get('namespace')}/{meta.get('name')}: {message}",
        )

    async def _event(self, raw: Obj, type_: str, reason: str, message: str) -> None:
        await events.record(
            store=self.store, involved=raw, type_=type_, reason=reason, message=message, component=COMPONENT
        )

    async def _reconcile(self, raw: Obj, cluster: RayCluster) -> Result:
        namespace = cluster.metadata.namespace or "default"
        name = cluster.metadata.name or ""
        options = self.environment.pod_options(cluster)
        children = ChildReconciler(
            store=self.store, environment=self.environment, kubernetes_only_objects=self.kubernetes_only_objects
        )
        failure: tuple[str, str] | None = None
        acted = False
        try:
            made = await children.reconcile(raw=raw, cluster=cluster, options=options)
        except (ChildError, StoreError) as error:
            log.warning("raycluster.child_failed", cluster=name, error=str(error))
            failure = ("", str(error))  # not a pod operation: no ReplicaFailure reason (KubeRay's)
            made = Children(auth_secret=None, head_service=await self._existing_head_service(cluster))
        if failure is None:
            pods = await self._pods(namespace, name)
            spec_hash = recreate_hash(raw.get("spec") or {})
            plan_options = PlanOptions(
                multi_host_indexing=options.multi_host_indexing,
                recreate_hash=spec_hash,
                kuberay_version=options.kuberay_version,
            )
            plan = plan_pods(cluster=cluster, pods=views(pods), options=plan_options)
            if plan.error is not None:
                failure = ("", plan.error)
            acted = bool(plan.actions)
            for action in plan.actions:
                try:
                    await self._execute(
                        action, raw=raw, cluster=cluster, pods=pods, children=made, options=options, spec_hash=spec_hash
                    )
                except StoreError as error:
                    failure = (_failure_reason(action), str(error))
                    log.warning("raycluster.pod_action_failed", action=repr(action), error=str(error))
                    break
            if plan.skipped_creations and failure is None:
                acted = True
        fresh = await self._pods(namespace, name)
        status = compute_status(
            cluster=cluster,
            pods=views(fresh),
            head_service=made.head_service,
            reconcile_error=failure,
            now=self.clock(),
        )
        changed = status_differs(raw.get("status") or {}, status)
        if changed:
            status["lastUpdateTime"] = self.clock()
            try:
                await self.store.replace_status(RAYCLUSTER, {**raw, "status": status})
            except (Conflict, NotFound):
                return Result.after(0)
        busy = changed or acted or failure is not None
        return Result.after(REQUEUE_CHANGED if busy else self.requeue_idle)

    async def _existing_head_service(self, cluster: RayCluster) -> Obj | None:
        override = ((cluster.spec.head_group_spec.head_service or {}).get("metadata") or {}).get("name")
        name = head_service_name(cluster.metadata.name or "", override=override)
        try:
            return await self.store.get(SERVICE, name, namespace=cluster.metadata.namespace or "default")
        except StoreError:
            return None

    async def _pods(self, namespace: str, name: str) -> list[Obj]:
        listed = await self.store.list(POD, namespace=namespace, label_selector=f"{CLUSTER_LABEL}={name}")
        return [p for p in listed.items if (p["metadata"].get("labels") or {}).get(NODE_TYPE_LABEL) != "redis-cleanup"]

    async def _execute(
        self,
        action: Any,
        *,
        raw: Obj,
        cluster: RayCluster,
        pods: list[Obj],
        children: Children,
        options: PodBuildOptions,
        spec_hash: str,
    ) -> None:
        namespace = cluster.metadata.namespace or "default"
        if isinstance(action, CreateHead):
            pod = build_head_pod(cluster=cluster, options=options, recreate_hash=spec_hash)
            await self._create_pod(raw, cluster, pod, head=True, secret=children.auth_secret)
        elif isinstance(action, CreateWorker | CreateReplica):
            group = next(g for g in cluster.spec.worker_group_specs or () if g.group_name == action.group)
            if isinstance(action, CreateWorker):
                pod = build_worker_pod(
                    cluster=cluster, group=group, replica_index=action.replica_index, options=options
                )
                await self._create_pod(raw, cluster, pod, head=False, secret=children.auth_secret)
                return
            # A multi-host replica: its hosts share a fresh name; a partial one is deleted next pass.
            suffix = "".join(secrets.choice(RANDOM_SUFFIX_ALPHABET) for _ in range(5))
            replica = replica_group_name(group.group_name, suffix)
            for host in range(action.hosts):
                pod = build_worker_pod(
                    cluster=cluster,
                    group=group,
                    replica_index=action.replica_index,
                    replica_name=replica,
                    host_index=host,
                    options=options,
                )
                await self._create_pod(raw, cluster, pod, head=False, secret=children.auth_secret)
        elif isinstance(action, DeletePod):
            await self._delete_pod(raw, namespace, action.name, pods)
        elif isinstance(action, DeleteAllPods):
            for pod in pods:
                if not pod["metadata"].get("deletionTimestamp"):
                    try:
                        await self.store.delete(POD, pod["metadata"]["name"], namespace=namespace)
                    except NotFound:
                        continue
            why = "due to suspension" if action.reason == "suspending" else f"({action.reason})"
            await self._event(
                raw, "Normal", "DeletedPod", f"Deleted Pods for RayCluster {namespace}/{cluster.metadata.name} {why}"
            )
        elif isinstance(action, RefreshHeadVersion):
            patch = {
                "metadata": {
                    "annotations": {
                        keys.UPGRADE_STRATEGY_RECREATE_HASH: spec_hash,
                        keys.KUBERAY_VERSION: options.kuberay_version,
                    }
                }
            }
            await self.store.patch(POD, action.name, namespace=namespace, patch=patch)

    async def _create_pod(self, raw: Obj, cluster: RayCluster, pod: Obj, *, head: bool, secret: str | None) -> None:
        pod = self.environment.customize_pod(cluster=cluster, pod=pod, head=head, auth_secret=secret)
        try:
            created = await self.store.create(POD, pod)
        except StoreError as error:  # e.g. refused by admission; the caller reports ReplicaFailure
            namespace = cluster.metadata.namespace or "default"
            if head:  # KubeRay names the pod as sent: empty when the name is generated
                message = f"Failed to create head Pod {namespace}/{pod['metadata'].get('name', '')}, {error}"
            else:
                message = f"Failed to create worker Pod for the cluster {namespace}/{cluster.metadata.name}, {error}"
            await self._event(raw, "Warning", "FailedToCreateHeadPod" if head else "FailedToCreateWorkerPod", message)
            raise
        meta = created["metadata"]
        role = "head" if head else "worker"
        await self._event(
            raw,
            "Normal",
            "CreatedHeadPod" if head else "CreatedWorkerPod",
            f"Created {role} Pod {meta.get('namespace')}/{meta['name']}",
        )

    async def _delete_pod(self, raw: Obj, namespace: str, name: str, pods: list[Obj]) -> None:
        try:
            await self.store.delete(POD, name, namespace=namespace)
        except NotFound:
            return
        pod = next((p for p in pods if p["metadata"]["name"] == name), None)
        head = pod is not None and (pod["metadata"].get("labels") or {}).get(NODE_TYPE_LABEL) == "head"
        reason = "DeletedHeadPod" if head else "DeletedWorkerPod"
        await self._event(raw, "Normal", reason, f"Deleted Pod {namespace}/{name}")

    async def _cleanup(self, raw: Obj, cluster: RayCluster) -> Result | None:
        """The Redis cleanup finalizer's flow; None when the ordinary reconcile should run."""
        metadata = raw["metadata"]
        namespace, name = metadata.get("namespace") or "default", metadata["name"]
        finalizers: list[str] = list(metadata.get("finalizers") or [])
        needs_facts = bool(metadata.get("deletionTimestamp")) and keys.GCS_FT_REDIS_CLEANUP_FINALIZER in finalizers
        pods = await self._pods(namespace, name) if needs_facts else []
        job = await self._cleanup_job(namespace, name) if needs_facts else None
        facts = CleanupFacts(
            now=datetime.fromisoformat(self.clock().replace("Z", "+00:00")),
            head_pods=sum(1 for p in pods if (p["metadata"].get("labels") or {}).get(NODE_TYPE_LABEL) == "head"),
            live_pods=sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")),
            job=job,
        )
        step = plan_cleanup(cluster=cluster, finalizers=finalizers, facts=facts)
        if step is CleanupStep.NONE:
            return None
        try:
            return await self._cleanup_step(step, raw=raw, cluster=cluster, pods=pods, finalizers=finalizers)
        except (Conflict, NotFound):
            return Result.after(0)
        except StoreError as error:
            log.warning("raycluster.redis_cleanup_failed", cluster=name, step=str(step), error=str(error))
            return Result.after(REQUEUE_CHANGED)

    async def _cleanup_step(
        self, step: CleanupStep, *, raw: Obj, cluster: RayCluster, pods: list[Obj], finalizers: list[str]
    ) -> Result:
        metadata = raw["metadata"]
        namespace, name = metadata.get("namespace") or "default", metadata["name"]
        finalizer = keys.GCS_FT_REDIS_CLEANUP_FINALIZER
        if step is CleanupStep.ADD_FINALIZER:
            await self.store.replace(
                RAYCLUSTER, {**raw, "metadata": {**metadata, "finalizers": [*finalizers, finalizer]}}
            )
            return Result.after(REQUEUE_CHANGED)
        if step in (CleanupStep.REMOVE_FINALIZER, CleanupStep.FORCE_REMOVE_FINALIZER):
            remaining = [f for f in finalizers if f != finalizer]
            await self.store.replace(RAYCLUSTER, {**raw, "metadata": {**metadata, "finalizers": remaining}})
            if step is CleanupStep.FORCE_REMOVE_FINALIZER:
                await self._event(
                    raw,
                    "Warning",
                    "ForceDeletedStuckCluster",
                    f"RayCluster {namespace}/{name} was stuck in deletion for more than its GCS fault tolerance "
                    f"deletion timeout; removed the finalizer {finalizer} without cleaning up Redis",
                )
            return Result.done()
        if step is CleanupStep.DELETE_PODS:
            for pod in pods:
                if not pod["metadata"].get("deletionTimestamp"):
                    try:
                        await self.store.delete(POD, pod["metadata"]["name"], namespace=namespace)
                    except NotFound:
                        continue
            return Result.after(REQUEUE_HEAD_TERMINATING)
        if step is CleanupStep.WAIT_FOR_HEAD:
            return Result.after(REQUEUE_HEAD_TERMINATING)
        if step is CleanupStep.CREATE_JOB:
            options = self.environment.pod_options(cluster)
            head = build_head_pod(cluster=cluster, options=options)
            job = build_redis_cleanup_job(head_pod=head, cluster=name, login_shell=options.enable_login_shell)
            try:
                await self.store.create(JOB, job)
            except AlreadyExists:
                return Result.after(REQUEUE_CHANGED)
            except StoreError as error:
                await self._event(
                    raw,
                    "Warning",
                    "FailedToCreateRedisCleanupJob",
                    f"Failed to create Redis cleanup Job {namespace}/{job['metadata']['name']}, {error}",
                )
                raise
            await self._event(
                raw,
                "Normal",
                "CreatedRedisCleanupJob",
                f"Created Redis cleanup Job {namespace}/{job['metadata']['name']}",
            )
        return Result.after(REQUEUE_CHANGED)

    async def _cleanup_job(self, namespace: str, name: str) -> Obj | None:
        selector = f"{CLUSTER_LABEL}={name},{NODE_TYPE_LABEL}={keys.REDIS_CLEANUP_NODE_TYPE}"
        listed = await self.store.list(JOB, namespace=namespace, label_selector=selector)
        return listed.items[0] if listed.items else None


def _failure_reason(action: Any) -> str:
    if isinstance(action, CreateHead):
        return "FailedCreateHeadPod"
    if isinstance(action, CreateWorker | CreateReplica):
        return "FailedCreateWorkerPod"
    if isinstance(action, DeleteAllPods):
        return "FailedDeleteAllPods"
    if isinstance(action, RefreshHeadVersion):
        return ""
    return "FailedDeleteWorkerPod"
