"""The node agent's pods: those bound to its node, let go as the kubelet does (a final delete).

See :mod:`kray.local.pod_policy`. The apiserver keeps a pod deleted with a grace period until the kubelet
of its node deletes it again with ``gracePeriodSeconds: 0`` once its containers are gone; that delete
carries the pod's uid as a precondition, so a pod created again under the same name meanwhile is never hit.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from kray.local.pod_policy import grace_of, image_env
from kray.store import POD, Obj, Resource
from kray.store.errors import Conflict, NotFound

__all__ = ["FinalDelete", "NodePolicy"]


class FinalDelete(Protocol):
    """The store call the final delete needs (:class:`kray._kube.store.KubeStore`)."""

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
    ) -> None: ...


class NodePolicy:
    def __init__(self, *, node_name: str, deleter: FinalDelete) -> None:
        self.node_name = node_name
        self.deleter = deleter

    @property
    def field_selector(self) -> str:
        return f"spec.nodeName={self.node_name}"

    def ours(self, pod: Obj) -> bool:
        return (pod.get("spec") or {}).get("nodeName") == self.node_name

    def held(self, pod: Obj) -> bool:
        return bool((pod.get("metadata") or {}).get("deletionTimestamp"))

    def grace(self, pod: Obj, *, default: float) -> float:
        return grace_of(pod, default=default, deleting=True)

    async def release(self, store: object, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        with contextlib.suppress(NotFound, Conflict):  # gone, or another pod of that name now
            await self.deleter.delete(
                POD,
                str(meta.get("name")),
                namespace=meta.get("namespace") or "default",
                grace_period_seconds=0,
                uid=meta.get("uid"),
            )

    def base_env(self) -> dict[str, str]:
        return image_env()
