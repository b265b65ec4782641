"""PersistentVolumeClaims on one machine: each claim is a directory, bound at once, kept until the claim goes.

Kubernetes binds a claim to a volume from its storage class; a single machine has one obvious volume per
claim: ``<state>/volumes/<namespace>/<claim>`` (:func:`kray.local.volumes.claim_dir`). This controller
marks every claim ``Bound`` with the capacity it requests, and holds it with the
``kubernetes.io/pvc-protection`` finalizer as Kubernetes does: a deleted claim stays (Terminating) while a
pod that may still run uses it; then its directory is removed and the claim goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog

from kray.local.paths import UnsafePath, remove_tree
from kray.local.volumes import claim_dir
from kray.runtime.informer import Informer, ObjectKey, key_of
from kray.runtime.workqueue import ShutDown, WorkQueue
from kray.store import PERSISTENT_VOLUME_CLAIM, POD, Obj, Store
from kray.store.errors import NotFound, StoreError

log = structlog.get_logger(__name__)

PROTECTION = "kubernetes.io/pvc-protection"
ENDED = frozenset({"Succeeded", "Failed"})


def claims_of(pod: Obj) -> list[str]:
    return [
        str(v["persistentVolumeClaim"].get("claimName", ""))
        for v in (pod.get("spec") or {}).get("volumes") or ()
        if v.get("persistentVolumeClaim")
    ]


def _in_use(pod: Obj) -> bool:
    """A pod whose processes may run (not ended; a deleted pod until its finalizers are gone)."""
    return (pod.get("status") or {}).get("phase") not in ENDED


class ClaimsController:
    def __init__(self, *, store: Store, state_dir: Path, retry: float = 2.0) -> None:
        self.store = store
        self.state_dir = state_dir
        self.retry = retry
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self.pods = Informer(store, POD)
        self.claims = Informer(store, PERSISTENT_VOLUME_CLAIM)

    async def run(self, stop: asyncio.Event) -> None:
        self.claims.add_handler(lambda old, new: self.queue.add(key_of(new if new is not None else old)))  # type: ignore[arg-type]
        self.pods.add_handler(self._pod_changed)
        tasks = [
            asyncio.create_task(self.claims.run(stop)),
            asyncio.create_task(self.pods.run(stop)),
            asyncio.create_task(self._work()),
        ]
        try:
            await stop.wait()
        finally:
            self.queue.shut_down()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _pod_changed(self, old: Obj | None, new: Obj | None) -> None:
        for pod in (old, new):
            if pod is not None:
                namespace = (pod.get("metadata") or {}).get("namespace") or "default"
                for claim in claims_of(pod):
                    self.queue.add(ObjectKey((namespace, claim)))

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                again = await self.sync(key)
                if again:
                    self.queue.add_after(key, self.retry)
            except StoreError as error:
                log.warning("claims.sync_failed", claim="/".join(key), error=str(error))
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def _used(self, namespace: str, claim: str) -> bool:
        return any(
            (p["metadata"].get("namespace") or "default") == namespace and claim in claims_of(p) and _in_use(p)
            for p in self.pods.list()
        )

    async def sync(self, key: ObjectKey) -> bool:
        """One step for a claim; True to look again later (a deleted claim still in use)."""
        namespace, name = key
        try:
            claim = await self.store.get(PERSISTENT_VOLUME_CLAIM, name, namespace=namespace)
        except NotFound:
            return False
        meta = claim["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        directory = claim_dir(self.state_dir, namespace, name)
        if meta.get("deletionTimestamp"):
            if PROTECTION not in finalizers:
                return False
            if self._used(namespace, name):
                return True
            try:
                await asyncio.to_thread(remove_tree, directory, inside=self.state_dir / "volumes")
            except (OSError, UnsafePath) as error:
                log.warning("claims.cleanup_failed", path=str(directory), error=str(error))
            with contextlib.suppress(NotFound):
                await self.store.patch(
                    PERSISTENT_VOLUME_CLAIM,
                    name,
                    namespace=namespace,
                    patch={"metadata": {"finalizers": [f for f in finalizers if f != PROTECTION]}},
                )
            return False
        if PROTECTION not in finalizers:
            claim = await self.store.patch(
                PERSISTENT_VOLUME_CLAIM,
                name,
                namespace=namespace,
                patch={"metadata": {"finalizers": [*finalizers, PROTECTION]}},
            )
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True, mode=0o777)
        spec = claim.get("spec") or {}
        bound = {
            "phase": "Bound",
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")},
        }
        if {k: (claim.get("status") or {}).get(k) for k in bound} != bound:
            await self.store.patch(
                PERSISTENT_VOLUME_CLAIM, name, namespace=namespace, patch={"status": bound}, subresource="status"
            )
        return False
