"""The RayCluster's objects other than pods, created once each in KubeRay's order.

Order (``rayClusterReconcile``'s chain): autoscaler ServiceAccount → Role → RoleBinding → Ingress →
auth Secret → head Service → headless worker Service → serve Service; pods come after. The first
failure stops the chain (the caller records it and writes status). None of these objects is ever
updated: KubeRay creates them when missing and leaves existing ones alone.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

import structlog

from kray.api.v1.raycluster import RayCluster
from kray.controllers import events
from kray.controllers.common import labels as keys
from kray.controllers.common.ingress import build_head_ingress
from kray.controllers.common.names import auth_secret_name, head_service_name, headless_service_name, serve_service_name
from kray.controllers.common.options import PodBuildOptions
from kray.controllers.common.pod_env import k8s_auth_enabled
from kray.controllers.common.rbac import (
    build_autoscaler_role,
    build_autoscaler_role_binding,
    build_autoscaler_service_account,
    head_service_account_name,
    user_named_service_account,
)
from kray.controllers.common.service import build_head_service, build_headless_worker_service, build_serve_service
from kray.controllers.environment import ClusterEnvironment
from kray.store import INGRESS, ROLE, ROLE_BINDING, SECRET, SERVICE, SERVICE_ACCOUNT, Obj, Resource, Store
from kray.store.errors import AlreadyExists, NotFound

log = structlog.get_logger(__name__)
COMPONENT = "raycluster-controller"


class ChildError(Exception):
    """A child object could not be made; the message is what KubeRay would report."""


@dataclass(frozen=True)
class Children:
    """What the pods and the status need from the chain."""

    auth_secret: str | None
    head_service: Obj | None


@dataclass
class ChildReconciler:
    store: Store
    environment: ClusterEnvironment
    kubernetes_only_objects: bool = True
    """Create the autoscaler RBAC objects and the Ingress (a place without Kubernetes RBAC or ingress
    controllers may switch this off; the head pod still names the ServiceAccount)."""

    async def reconcile(self, *, raw: Obj, cluster: RayCluster, options: PodBuildOptions) -> Children:
        if cluster.spec.autoscaling_enabled() and self.kubernetes_only_objects:
            await self._service_account(raw, cluster)
            await self._create_once(raw, ROLE, build_autoscaler_role(cluster=cluster), "CreatedRole", "role")
            await self._create_once(
                raw, ROLE_BINDING, build_autoscaler_role_binding(cluster=cluster), "CreatedRoleBinding", "role binding"
            )
        if cluster.spec.head_group_spec.enable_ingress and self.kubernetes_only_objects:
            ingress = build_head_ingress(cluster=cluster, options=options)
            await self._create_once(raw, INGRESS, ingress, "CreatedIngress", "ingress")
        secret = await self._auth_secret(raw, cluster)
        head_service = await self._head_service(raw, cluster, options)
        if any(group.num_of_hosts > 1 for group in cluster.spec.worker_group_specs or ()):
            await self._service(
                raw, build_headless_worker_service(cluster=cluster), headless_service_name(_name(cluster))
            )
        if (cluster.metadata.annotations or {}).get(keys.ENABLE_SERVE_SERVICE) == "true":
            name = serve_service_name(_name(cluster))
            if not await self._exists(SERVICE, name, cluster):
                try:
                    service = build_serve_service(cluster=cluster, options=options)
                except ValueError as error:
                    raise ChildError(str(error)) from None
                await self._service(raw, service, name)
        return Children(auth_secret=secret, head_service=head_service)

    async def _service_account(self, raw: Obj, cluster: RayCluster) -> None:
        name = head_service_account_name(cluster)
        if await self._exists(SERVICE_ACCOUNT, name, cluster):
            return
        if user_named_service_account(cluster) == name:
            # A user-named account is the user's to create: KubeRay-made ones lose permissions across
            # RayService upgrades (kuberay#1123).
            message = (
                "If users specify ServiceAccountName for the head Pod, they need to create a ServiceAccount "
                f"themselves. However, ServiceAccount {name} is not found. Please create one. See the PR "
                "description of https://github.com/ray-project/kuberay/pull/1128 for more details."
            )
            await self._event(
                raw,
                "Warning",
                "AutoscalerServiceAccountNotFound",
                f"Failed to reconcile RayCluster {_namespace(cluster)}/{_name(cluster)}. {message}",
            )
            raise ChildError(message)
        account = build_autoscaler_service_account(cluster=cluster)
        await self._create_once(raw, SERVICE_ACCOUNT, account, "CreatedServiceAccount", "service account")

    async def _auth_secret(self, raw: Obj, cluster: RayCluster) -> str | None:
        """The name of the auth Secret, created if kray manages it; None without token auth.

        KubeRay makes one only for ``mode: token`` without ``secretName`` and without Kubernetes token
        auth (which authenticates with the pod's ServiceAccount token instead).
        """
        options = cluster.spec.auth_options
        forced = self.environment.force_token_auth
        if not (cluster.spec.auth_enabled() or forced):
            return None
        if options is not None and options.secret_name:
            return options.secret_name
        if k8s_auth_enabled(options) and not forced:
            return None
        name = _name(cluster)
        secret_name = auth_secret_name(name)
        token = base64.b64encode(secrets.token_bytes(32)).decode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "namespace": _namespace(cluster),
                "labels": {keys.RAY_CLUSTER: name},
                "ownerReferences": [_owner(raw)],
            },
            "data": {"auth_token": base64.b64encode(token.encode()).decode()},
        }
        with contextlib.suppress(AlreadyExists):
            await self.store.create(SECRET, secret)
        return secret_name

    async def _head_service(self, raw: Obj, cluster: RayCluster, options: PodBuildOptions) -> Obj | None:
        override = ((cluster.spec.head_group_spec.head_service or {}).get("metadata") or {}).get("name")
        name = head_service_name(_name(cluster), override=override)
        try:
            return await self.store.get(SERVICE, name, namespace=_namespace(cluster))
        except NotFound:
            pass
        service = build_head_service(cluster=cluster, options=options)
        service = self.environment.customize_service(cluster=cluster, service=service)
        return await self._service(raw, service, name)

    async def _service(self, raw: Obj, service: Obj, name: str) -> Obj:
        namespace = service["metadata"]["namespace"]
        try:
            created = await self.store.create(SERVICE, service)
        except AlreadyExists:
            return await self.store.get(SERVICE, name, namespace=namespace)
        await self._event(raw, "Normal", "CreatedService", f"Created service {namespace}/{name}")
        return created

    async def _create_once(self, raw: Obj, resource: Resource, obj: Obj, reason: str, noun: str) -> None:
        metadata = obj["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        try:
            await self.store.get(resource, name, namespace=namespace)
            return
        except NotFound:
            pass
        try:
            await self.store.create(resource, obj)
        except AlreadyExists:
            return
        await self._event(raw, "Normal", reason, f"Created {noun} {namespace}/{name}")

    async def _exists(self, resource: Resource, name: str, cluster: RayCluster) -> bool:
        try:
            await self.store.get(resource, name, namespace=_namespace(cluster))
        except NotFound:
            return False
        return True

    async def _event(self, raw: Obj, type_: str, reason: str, message: str) -> None:
        await events.record(
            store=self.store, involved=raw, type_=type_, reason=reason, message=message, component=COMPONENT
        )


def _owner(raw: Obj) -> dict[str, Any]:
    return {
        "apiVersion": raw["apiVersion"],
        "kind": raw["kind"],
        "name": raw["metadata"]["name"],
        "uid": raw["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _name(cluster: RayCluster) -> str:
    return cluster.metadata.name or ""


def _namespace(cluster: RayCluster) -> str:
    return cluster.metadata.namespace or "default"
