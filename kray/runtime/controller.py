"""A controller: a work queue of object keys, fed by informers, drained by reconcile workers.

``reconcile(key)`` is level-triggered: it reads the current state and moves it one step towards the
desired state, returning when to look again. A failing reconcile is retried with per-key backoff;
one object's failure never stops the others. Events on owned objects (pods of a cluster) enqueue
their controlling owner's key, as controller-runtime's ``Owns()`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from kray.runtime.informer import Informer, ObjectKey, key_of
from kray.runtime.workqueue import ShutDown, WorkQueue
from kray.store import Obj

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


def controller_owner(obj: Obj, *, kind: str) -> str | None:
    """The name of the object's controlling owner of ``kind``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("kind") == kind and ref.get("controller"):
            name = ref.get("name")
            return str(name) if name else None
    return None


class Controller:
    def __init__(self, name: str, reconcile: Reconcile, *, workers: int = 2) -> None:
        self.name = name
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self._reconcile = reconcile
        self._workers = workers

    def watches(self, informer: Informer) -> None:
        """Reconcile the objects of this informer's kind (the primary kind)."""

        def enqueue(old: Obj | None, new: Obj | None) -> None:
            obj = new if new is not None else old
            if obj is not None:
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
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self._workers)]
        try:
            await stop.wait()
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
            try:
                structlog.contextvars.bind_contextvars(controller=self.name, key="/".join(key))
                result = await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("reconcile.failed", error=repr(error))
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                structlog.contextvars.unbind_contextvars("controller", "key")
                self.queue.done(key)
