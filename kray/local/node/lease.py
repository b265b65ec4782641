"""The node's heartbeats: its Lease in ``kube-node-lease``, renewed every 10 s for 40 s, and its status, posted
when it differs from what the apiserver holds (checked every 10 s) or else every report interval, as the
kubelet does.

The node lifecycle controller reads a node's health from this Lease (and from the Ready condition's
heartbeat): when neither moves for ``--node-monitor-grace-period`` the Node turns ``Unknown``/NotReady and
its pods are marked not ready. An agent that was only stalled renews the Lease and, seeing Ready=Unknown,
posts Ready=True at its next check. The Lease is owned by the Node, so deleting the Node deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import structlog

from kray.local.node.node_object import NODE, NodeSpec, node_status, now_text, status_differs
from kray.store import LEASE, Obj, Store
from kray.store.errors import AlreadyExists, NotFound, StoreError

__all__ = ["LEASE_NAMESPACE", "NodeLease", "NodeStatusReporter"]

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


class NodeStatusReporter:
    """Posts the Node's status (its conditions' heartbeat) when the stored one differs from it, else every
    ``interval`` seconds; checks every ``check`` seconds (the kubelet's nodeStatusUpdateFrequency, 10 s),
    or every ``interval`` if that is shorter."""

    def __init__(self, *, store: Store, spec: NodeSpec, interval: float, check: float = 10.0) -> None:
        self.store = store
        self.spec = spec
        self.interval = interval
        self.check = min(check, interval)
        self.posted_at = time.monotonic()
        """When the status was last posted (the agent posts it on registering)."""

    async def tick(self) -> str | None:
        """Post if due: why it posted ("changed": the stored status differed; "due": ``interval`` passed), or
        None. Raises StoreError."""
        node = await self.store.get(NODE, self.spec.name, namespace=None)
        status = node_status(self.spec, previous=node, now=now_text())
        if status_differs(node.get("status"), status):
            why = "changed"
        elif time.monotonic() - self.posted_at >= self.interval:
            why = "due"
        else:
            return None
        await self.store.patch(NODE, self.spec.name, namespace=None, patch={"status": status}, subresource="status")
        self.posted_at = time.monotonic()
        return why

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``check`` seconds until ``stop``; a failure is logged and retried at the next check."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.check)
            if stop.is_set():
                return
            try:
                if await self.tick() == "changed":
                    log.info("node.status_restored", node=self.spec.name)
            except StoreError as error:
                log.warning("node.status_failed", node=self.spec.name, error=str(error))
