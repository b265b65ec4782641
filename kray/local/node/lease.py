"""The node's heartbeat: its Lease in ``kube-node-lease``, renewed every 10 s for 40 s, as the kubelet does.

The node lifecycle controller reads a node's health from this Lease (and from the Ready condition's
heartbeat): when neither moves for ``--node-monitor-grace-period`` the Node turns ``Unknown``/NotReady and
its pods get the unreachable taint. The Lease is owned by the Node, so deleting the Node deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import structlog

from kray.store import LEASE, Obj, Store
from kray.store.errors import AlreadyExists, NotFound, StoreError

__all__ = ["LEASE_NAMESPACE", "NodeLease"]

log = structlog.get_logger(__name__)

LEASE_NAMESPACE = "kube-node-lease"


def micro_time(moment: datetime | None = None) -> str:
    """A ``MicroTime`` as the API writes it."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeLease:
    def __init__(self, *, store: Store, node: Obj, duration: int = 40, interval: float = 10.0) -> None:
        self.store = store
        self.name = str(node["metadata"]["name"])
        self.node_uid = str(node["metadata"].get("uid") or "")
        self.duration = duration
        self.interval = interval
        self.renewals = 0

    def _spec(self) -> dict[str, Any]:
        return {"holderIdentity": self.name, "leaseDurationSeconds": self.duration, "renewTime": micro_time()}

    async def renew(self) -> None:
        """Renew the Lease (create it the first time). Raises StoreError."""
        try:
            await self.store.patch(LEASE, self.name, namespace=LEASE_NAMESPACE, patch={"spec": self._spec()})
        except NotFound:
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.node_uid}
            lease = {
                "apiVersion": LEASE.api_version,
                "kind": LEASE.kind,
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                "spec": self._spec(),
            }
            with contextlib.suppress(AlreadyExists):  # made meanwhile: the next renewal patches it
                await self.store.create(LEASE, lease)
        self.renewals += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Renew every ``interval`` until ``stop``; a failed renewal is logged and retried at the next tick."""
        while not stop.is_set():
            try:
                await self.renew()
            except StoreError as error:
                log.warning("node.lease_renew_failed", node=self.name, error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
