"""The RayCluster reconcile: read, plan (:mod:`.plan`), act, write status (:mod:`.status`). Thin.

Order as KubeRay's: validation → auth Secret → head Service → pods → status. The first failing
step stops the pass; a failed pod operation is reported as the ReplicaFailure condition. Status is
written only when it changed meaningfully (KubeRay's ``inconsistentRayClusterStatus``).
"""

from __future__ import annotations

import base64
import contextlib
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
from kray.controllers.common.names import auth_secret_name, head_service_name
from kray.controllers.common.pod import build_head_pod, build_worker_pod
from kray.controllers.common.service import build_head_service
from kray.controllers.environment import ClusterEnvironment
from kray.controllers.raycluster.plan import CreateHead, CreateWorker, DeleteAllPods, DeletePod, plan_pods
from kray.controllers.raycluster.podview import CLUSTER_LABEL, views
from kray.controllers.raycluster.status import compute_status, status_differs
from kray.runtime.controller import Result
from kray.runtime.informer import ObjectKey
from kray.store import POD, RAYCLUSTER, SECRET, SERVICE, Obj, Store
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

    async def __call__(self, key: ObjectKey) -> Result:
        namespace, name = key
        try:
            raw = await self.store.get(RAYCLUSTER, name, namespace=namespace)
        except NotFound:
            self.environment.release(namespace=namespace, name=name)
            return Result.done()
        if raw["metadata"].get("deletionTimestamp"):
            return Result.done()
        managed_by = (raw.get("spec") or {}).get("managedBy")
        if managed_by not in (None, ManagedBy.KUBERAY_OPERATOR.value):
            return Result.done()
        try:
            cluster = parse_object(raw)
        except ManifestError as error:
            await self._invalid(raw, "; ".join(str(e) for e in error.errors))
            return Result.done()
        assert isinstance(cluster, RayCluster)
        problems = check_raycluster(cluster, gates=self.gates)
        if problems:
            await self._invalid(raw, "; ".join(str(e) for e in problems))
            return Result.done()
        prepared = await self.environment.prepare(store=self.store, cluster=raw)
        if prepared is not None:
            return Result.after(0)
        return await self._reconcile(raw, cluster)

    async def _invalid(self, raw: Obj, message: str) -> None:
        await events.record(
            store=self.store,
            involved=raw,
            type_="Warning",
            reason="InvalidRayClusterSpec",
            message=message,
            component=COMPONENT,
        )

    async def _reconcile(self, raw: Obj, cluster: RayCluster) -> Result:
        namespace = cluster.metadata.namespace or "default"
        name = cluster.metadata.name or ""
        secret = await self._ensure_auth_secret(raw, cluster)
        head_service = await self._ensure_head_service(raw, cluster)
        pods = await self._pods(namespace, name)
        plan = plan_pods(cluster=cluster, pods=views(pods))
        failure: tuple[str, str] | None = None
        if plan.error is not None:
            failure = ("FailedCreateHeadPod", plan.error)
        for action in plan.actions:
            try:
                await self._execute(action, raw=raw, cluster=cluster, pods=pods, secret=secret)
            except StoreError as error:
                failure = (_failure_reason(action), str(error))
                log.warning("raycluster.pod_action_failed", action=repr(action), error=str(error))
                break
        fresh = await self._pods(namespace, name)
        status = compute_status(
            cluster=cluster, pods=views(fresh), head_service=head_service, reconcile_error=failure, now=self.clock()
        )
        changed = status_differs(raw.get("status") or {}, status)
        if changed:
            status["lastUpdateTime"] = self.clock()
            try:
                await self.store.replace_status(RAYCLUSTER, {**raw, "status": status})
            except (Conflict, NotFound):
                return Result.after(0)
        busy = changed or bool(plan.actions) or failure is not None
        return Result.after(REQUEUE_CHANGED if busy else self.requeue_idle)

    async def _pods(self, namespace: str, name: str) -> list[Obj]:
        listed = await self.store.list(POD, namespace=namespace, label_selector=f"{CLUSTER_LABEL}={name}")
        return listed.items

    async def _execute(
        self, action: Any, *, raw: Obj, cluster: RayCluster, pods: list[Obj], secret: str | None
    ) -> None:
        namespace = cluster.metadata.namespace or "default"
        options = self.environment.pod_options(cluster)
        if isinstance(action, CreateHead | CreateWorker):
            head = isinstance(action, CreateHead)
            if isinstance(action, CreateWorker):
                group = next(g for g in cluster.spec.worker_group_specs or () if g.group_name == action.group)
                pod = build_worker_pod(
                    cluster=cluster, group=group, replica_index=action.replica_index, options=options
                )
            else:
                pod = build_head_pod(cluster=cluster, options=options)
            pod = self.environment.customize_pod(cluster=cluster, pod=pod, head=head, auth_secret=secret)
            created = await self.store.create(POD, pod)
            role = "head" if head else "worker"
            await events.record(
                store=self.store,
                involved=raw,
                type_="Normal",
                reason="CreatedHeadPod" if head else "CreatedWorkerPod",
                message=f"Created {role} Pod {namespace}/{created['metadata']['name']}",
                component=COMPONENT,
            )
        elif isinstance(action, DeletePod):
            try:
                await self.store.delete(POD, action.name, namespace=namespace)
            except NotFound:
                return
            await events.record(
                store=self.store,
                involved=raw,
                type_="Normal",
                reason="DeletedPod",
                message=f"Deleted Pod {namespace}/{action.name}: {action.reason}",
                component=COMPONENT,
            )
        elif isinstance(action, DeleteAllPods):
            for pod in pods:
                try:
                    await self.store.delete(POD, pod["metadata"]["name"], namespace=namespace)
                except NotFound:
                    continue

    async def _ensure_auth_secret(self, raw: Obj, cluster: RayCluster) -> str | None:
        """The name of the cluster's auth Secret, created if kray manages it; None without auth."""
        options = cluster.spec.auth_options
        if not (cluster.spec.auth_enabled() or self.environment.force_token_auth):
            return None
        name = cluster.metadata.name or ""
        if options is not None and options.secret_name:
            return options.secret_name
        secret_name = auth_secret_name(name)
        token = base64.b64encode(secrets.token_bytes(32)).decode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "namespace": cluster.metadata.namespace or "default",
                "labels": {CLUSTER_LABEL: name},
                "ownerReferences": [_owner(raw)],
            },
            "data": {"auth_token": base64.b64encode(token.encode()).decode()},
        }
        with contextlib.suppress(AlreadyExists):
            await self.store.create(SECRET, secret)
        return secret_name

    async def _ensure_head_service(self, raw: Obj, cluster: RayCluster) -> Obj | None:
        name = cluster.metadata.name or ""
        namespace = cluster.metadata.namespace or "default"
        override = ((cluster.spec.head_group_spec.head_service or {}).get("metadata") or {}).get("name")
        service_name = head_service_name(name, override=override)
        try:
            return await self.store.get(SERVICE, service_name, namespace=namespace)
        except NotFound:
            pass
        service = build_head_service(cluster=cluster, options=self.environment.pod_options(cluster))
        service = self.environment.customize_service(cluster=cluster, service=service)
        try:
            created = await self.store.create(SERVICE, service)
        except AlreadyExists:
            return await self.store.get(SERVICE, service_name, namespace=namespace)
        await events.record(
            store=self.store,
            involved=raw,
            type_="Normal",
            reason="CreatedService",
            message=f"Created head Service {namespace}/{service_name}",
            component=COMPONENT,
        )
        return created


def _owner(raw: Obj) -> dict[str, Any]:
    return {
        "apiVersion": raw["apiVersion"],
        "kind": raw["kind"],
        "name": raw["metadata"]["name"],
        "uid": raw["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _failure_reason(action: Any) -> str:
    if isinstance(action, CreateHead):
        return "FailedCreateHeadPod"
    if isinstance(action, CreateWorker):
        return "FailedCreateWorkerPod"
    if isinstance(action, DeleteAllPods):
        return "FailedDeleteAllPods"
    return "FailedDeleteWorkerPod"
