"""The store port: the Kubernetes API semantics kray's controllers are written against.

Controllers never talk to a Kubernetes client or to SQLite directly: they take a :class:`Store`.
Two adapters implement it — the embedded SQLite store of local mode (:mod:`kray.local.store`) and
a plain Kubernetes API client (:mod:`kray._kube.store`) — and one contract suite
(``tests/store/``) runs against both; where they differ, the embedded store is wrong.

Objects are plain JSON dicts, exactly as the API server returns them (``apiVersion``, ``kind``,
``metadata``, ``spec``, ``status``). Semantics every adapter keeps:

* ``metadata.uid``, ``creationTimestamp`` and ``resourceVersion`` are set by the store; an update
  carrying a stale ``resourceVersion`` fails with :class:`~kray.store.errors.Conflict`.
* ``metadata.generation`` starts at 1 and is bumped on spec changes only (never on status or
  metadata changes).
* Kinds with a status subresource ignore ``status`` on create/replace and everything but
  ``status`` on ``replace_status``.
* ``generateName`` gets a random 5-character suffix.
* Deleting an object with finalizers only sets ``deletionTimestamp``; it goes away when its last
  finalizer is removed. Dependents (``ownerReferences`` to its uid) are garbage-collected in the
  background after the owner is gone (propagation ``Background``).
* ``watch`` yields every change after ``resource_version`` in order; a version the store no longer
  has raises :class:`~kray.store.errors.Gone` (relist and watch again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
Propagation = Literal["Background", "Foreground", "Orphan"]


@dataclass(frozen=True, slots=True)
class Resource:
    """A kind the store serves: how it is named in URLs and whether it lives in a namespace."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True
    status_subresource: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


RAYCLUSTER = Resource("ray.io/v1", "RayCluster", "rayclusters", status_subresource=True)
RAYJOB = Resource("ray.io/v1", "RayJob", "rayjobs", status_subresource=True)
RAYSERVICE = Resource("ray.io/v1", "RayService", "rayservices", status_subresource=True)
RAYCRONJOB = Resource("ray.io/v1", "RayCronJob", "raycronjobs", status_subresource=True)
POD = Resource("v1", "Pod", "pods", status_subresource=True)
SERVICE = Resource("v1", "Service", "services", status_subresource=True)
SECRET = Resource("v1", "Secret", "secrets")
CONFIGMAP = Resource("v1", "ConfigMap", "configmaps")
EVENT = Resource("v1", "Event", "events")
NAMESPACE = Resource("v1", "Namespace", "namespaces", namespaced=False, status_subresource=True)
JOB = Resource("batch/v1", "Job", "jobs", status_subresource=True)
LEASE = Resource("coordination.k8s.io/v1", "Lease", "leases")
SERVICE_ACCOUNT = Resource("v1", "ServiceAccount", "serviceaccounts")
PERSISTENT_VOLUME_CLAIM = Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims", status_subresource=True)
ROLE = Resource("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLE_BINDING = Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
INGRESS = Resource("networking.k8s.io/v1", "Ingress", "ingresses", status_subresource=True)
GATEWAY = Resource("gateway.networking.k8s.io/v1", "Gateway", "gateways", status_subresource=True)
"""Gateway API (a CRD, not built in): only on Kubernetes, for ``NewClusterWithIncrementalUpgrade``."""
HTTPROUTE = Resource("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes", status_subresource=True)

RESOURCES: tuple[Resource, ...] = (
    RAYCLUSTER,
    RAYJOB,
    RAYSERVICE,
    RAYCRONJOB,
    POD,
    SERVICE,
    SECRET,
    CONFIGMAP,
    EVENT,
    NAMESPACE,
    JOB,
    LEASE,
    SERVICE_ACCOUNT,
    PERSISTENT_VOLUME_CLAIM,
    ROLE,
    ROLE_BINDING,
    INGRESS,
    GATEWAY,
    HTTPROUTE,
)


def resource_for(api_version: str, kind: str) -> Resource:
    """The Resource of an object's apiVersion and kind; KeyError for kinds kray does not serve."""
    for resource in RESOURCES:
        if resource.api_version == api_version and resource.kind == kind:
            return resource
    raise KeyError(f"{api_version} {kind}")


class WatchEventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: WatchEventType
    object: Obj


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[Obj]
    resource_version: str
    """The store's version at the time of the list: watch from here to see every later change."""


class Store(Protocol):
    """Kubernetes API semantics over some backend; every method raises :mod:`kray.store.errors`."""

    async def create(self, resource: Resource, obj: Obj) -> Obj: ...

    async def get(self, resource: Resource, name: str, *, namespace: str | None) -> Obj: ...

    async def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList: ...

    async def replace(self, resource: Resource, obj: Obj) -> Obj:
        """Update the whole object (not its status, for kinds with a status subresource)."""
        ...

    async def replace_status(self, resource: Resource, obj: Obj) -> Obj:
        """Update only ``status`` (kinds with a status subresource)."""
        ...

    async def patch(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None,
        patch: Obj,
        subresource: Literal["status"] | None = None,
    ) -> Obj:
        """Apply a JSON merge patch (RFC 7386); ``metadata.resourceVersion`` in it is a precondition."""
        ...

    async def delete(
        self, resource: Resource, name: str, *, namespace: str | None, propagation: Propagation = "Background"
    ) -> None: ...

    def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str,
    ) -> AsyncIterator[WatchEvent]: ...

    async def close(self) -> None: ...
