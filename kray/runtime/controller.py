"""A controller: a work queue of object keys, fed by informers, drained by reconcile workers.

``reconcile(key)`` is level-triggered: it reads the current state and moves it one step towards the
desired state, returning when to look again. A failing reconcile is retried with per-key backoff;
one object's failure never stops the others. Events on owned objects (pods of a cluster) enqueue
their controlling owner's key, as controller-runtime's ``Owns()`` does.

``workers`` reconciles run concurrently (controller-runtime's MaxConcurrentReconciles); the queue
guarantees one key is never reconciled by two workers at once. Stopping drains: once ``stop`` is
set no worker takes a new key, reconciles in flight get ``drain_timeout`` seconds to finish (a
reconcile cut off halfway wastes its work and may leave a half-written step to redo), and only
then are they cancelled. A reconcile raising :class:`TerminalError` is not retried. With
``metrics`` (:class:`~kray.runtime.metrics.RuntimeMetrics`) the controller and its queue export
controller-runtime's series under the controller's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from kray.runtime.informer import Informer, ObjectKey, key_of
from kray.runtime.workqueue import ShutDown, WorkQueue
from kray.store import Obj

if TYPE_CHECKING:
    from kray.runtime.metrics import RuntimeMetrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for: nothing more, or another look after ``requeue_after`` seconds."""

    requeue_after: float | None = None

    @classmethod
    def done(cls) -> Result:
        return cls()

    @classmethod
    def after(cls, seconds: float) -> Result:
        return cls(requeue_after=seconds)


Reconcile = Callable[[ObjectKey], Awaitable[Result]]
Predicate = Callable[[Obj, Obj], bool]


def spec_or_metadata_changed(old: Obj, new: Obj) -> bool:
    """controller-runtime's Generation-, Label- or AnnotationChangedPredicate (KubeRay's RayCluster watch):
    a status write of the controller's own does not wake it again."""
    before, after = old.get("metadata") or {}, new.get("metadata") or {}
    return any(before.get(field) != after.get(field) for field in ("generation", "labels", "annotations"))


class TerminalError(Exception):
    """A reconcile failure that retrying cannot fix: logged and counted, the key is not re-queued."""


def controller_owner(obj: Obj, *, kind: str) -> str | None:
    """The name of the object's controlling owner of ``kind``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("kind") == kind and ref.get("controller"):
            name = ref.get("name")
            return str(name) if name else None
    return None


class Controller:
    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 2,
        drain_timeout: float = 30.0,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        self.name = name
        self.queue: WorkQueue[ObjectKey] = WorkQueue(metrics=metrics.queue(name) if metrics is not None else None)
        self._reconcile = reconcile
        self._workers = workers
        self._drain_timeout = drain_timeout
        self._metrics = metrics.controller(name, workers=workers) if metrics is not None else None

    def watches(self, informer: Informer, *, predicate: Predicate | None = None) -> None:
        """Reconcile the objects of this informer's kind (the primary kind).

        ``predicate(old, new)`` filters updates (both present); creations and deletions always pass.
        """

        def enqueue(old: Obj | None, new: Obj | None) -> None:
            obj = new if new is not None else old
            if obj is None:
                return
            if predicate is not None and old is not None and new is not None and not predicate(old, new):
                return
            self.queue.add(key_of(obj))

        informer.add_handler(enqueue)

    def owns(self, informer: Informer, *, owner_kind: str) -> None:
        """Reconcile the controlling owner (same namespace) whenever an owned object changes."""

        def enqueue(old: Obj | None, new: Obj | None) -> None:
            for obj in (old, new):
                if obj is None:
                    continue
                owner = controller_owner(obj, kind=owner_kind)
                if owner:
                    self.queue.add(ObjectKey((key_of(obj)[0], owner)))

        informer.add_handler(enqueue)

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile until ``stop`` is set, then drain (see the module docstring) and return."""
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self._workers)]
        try:
            await stop.wait()
            # Shutting the queue down stops idle workers at once; busy ones exit after their reconcile.
            self.queue.shut_down()
            _, pending = await asyncio.wait(workers, timeout=self._drain_timeout)
            if pending:
                log.warning("controller.drain_timeout", controller=self.name, unfinished=len(pending))
        finally:
            self.queue.shut_down()
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            metrics = self._metrics
            if metrics is not None:
                metrics.active_workers.inc()
            started = time.monotonic()
            try:
                structlog.contextvars.bind_contextvars(controller=self.name, key="/".join(key))
                await self._reconcile_one(key)
            finally:
                if metrics is not None:
                    metrics.reconcile_time.observe(time.monotonic() - started)
                    metrics.active_workers.dec()
                structlog.contextvars.unbind_contextvars("controller", "key")
                self.queue.done(key)

    async def _reconcile_one(self, key: ObjectKey) -> None:
        metrics = self._metrics
        try:
            result = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            terminal = isinstance(error, TerminalError)
            log.warning("reconcile.failed", error=repr(error), terminal=terminal)
            if not terminal:
                self.queue.add_rate_limited(key)
            if metrics is not None:
                if terminal:
                    metrics.terminal_errors.inc()
                metrics.reconcile_errors.inc()
                metrics.result("error")
            return
        self.queue.forget(key)
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)
        if metrics is not None:
            if result.requeue_after is None:
                metrics.result("success")
            else:
                metrics.result("requeue_after" if result.requeue_after > 0 else "requeue")
