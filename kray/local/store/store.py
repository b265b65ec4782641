"""The embedded store: :class:`~kray.store.Store` over one SQLite file, for local mode.

This class is the asynchronous facade: it turns each request into one write transaction on the
writer thread (:mod:`.writes`) or one read snapshot on the event loop, fires the in-process signal
that wakes watches and the garbage collector after every commit, and owns their lifecycle. The
semantics live in :mod:`.strategy` (pure), the storage in :mod:`.db`, the watch cursor in
:mod:`.watch`, collection in :mod:`.gc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

from kray.store import NAMESPACE, Obj, ObjectList, Propagation, Resource, WatchEvent
from kray.store.errors import AlreadyExists, Unavailable
from kray.store.meta import parse_resource_version
from kray.store.selectors import parse_selector

from . import writes
from .db import Database, Tx, resource_key
from .gc import Collector
from .strategy import Stamp
from .watch import Signal, follow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    """Tunables of the embedded store (defaults suit local mode)."""

    retained_changes: int = 10_000
    """How many changes the watch log keeps; a watch from an older resourceVersion raises Gone."""
    busy_timeout: float = 5.0
    """Seconds a write waits for another process's write lock before failing with Unavailable."""
    poll_interval: float = 0.5
    """Seconds between checks for writes by other processes (watches, garbage collector)."""
    garbage_collection: bool = True
    """Run the garbage collector in this process (tests turn it off to inspect queued work)."""


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EmbeddedStore:
    """Use :func:`open_embedded_store` (or ``async with await open_embedded_store(...)``)."""

    def __init__(
        self,
        *,
        db: Database,
        settings: EmbeddedSettings,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._changes = Signal()
        self._gc_work = Signal()
        self._stop = asyncio.Event()
        self._closed = False
        self._gc_task: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        return self._db.path

    async def _start(self) -> None:
        await self._db.open()
        with contextlib.suppress(AlreadyExists):
            await self.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        if self._settings.garbage_collection:
            collector = Collector(
                db=self._db,
                now=self._now,
                wake=self._gc_work.current,
                notify=self._committed,
                poll_interval=self._settings.poll_interval,
            )
            self._gc_task = asyncio.create_task(collector.run(self._stop), name=f"kray-store-gc:{self.path}")

    def _now(self) -> str:
        return rfc3339(self._clock())

    def _committed(self, tx: Tx) -> None:
        if tx.changed:
            self._changes.fire()
        if tx.gc_enqueued:
            self._gc_work.fire()

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise Unavailable("embedded store is closed")
        result, tx = await self._db.write(fn)
        self._committed(tx)
        return result

    # ---- Store ---------------------------------------------------------------------------------------
    async def create(self, resource: Resource, obj: Obj) -> Obj:
        stamp = Stamp(uid=str(uuid.uuid4()), now=self._now())
        return await self._write(lambda tx: writes.create(tx, resource, obj, stamp=stamp, choice=self._rng.choice))

    async def get(self, resource: Resource, name: str, *, namespace: str | None) -> Obj:
        scope = writes.scope(resource, namespace)
        with self._db.snapshot() as snap:
            found = snap.get(resource_key(resource), scope, name)
        if found is None:
            raise writes.not_found(resource, name)
        return found

    async def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        selector = parse_selector(label_selector)
        with self._db.snapshot() as snap:
            rv, _ = snap.versions()
            items = snap.objects(
                resource_key(resource), namespace if resource.namespaced else None, labels=selector.matches
            )
        return ObjectList(items=items, resource_version=str(rv))

    async def replace(self, resource: Resource, obj: Obj) -> Obj:
        return await self._write(lambda tx: writes.replace(tx, resource, obj, status=False))

    async def replace_status(self, resource: Resource, obj: Obj) -> Obj:
        return await self._write(lambda tx: writes.replace(tx, resource, obj, status=True))

    async def patch(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None,
        patch: Obj,
        subresource: Literal["status"] | None = None,
    ) -> Obj:
        scope = writes.scope(resource, namespace)
        return await self._write(
            lambda tx: writes.patch(tx, resource, name, namespace=scope, patch=patch, subresource=subresource)
        )

    async def delete(
        self, resource: Resource, name: str, *, namespace: str | None, propagation: Propagation = "Background"
    ) -> None:
        scope = writes.scope(resource, namespace)
        now = self._now()

        def run(tx: Tx) -> None:
            stored = writes.get_stored(tx, resource, namespace=scope, name=name)
            writes.delete(tx, key=resource_key(resource), stored=stored, propagation=propagation, now=now)

        await self._write(run)

    def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str,
    ) -> AsyncIterator[WatchEvent]:
        if self._closed:
            raise Unavailable("embedded store is closed")
        parse_resource_version(resource_version)  # refuse a malformed version now, not at first iteration
        return follow(
            db=self._db,
            key=resource_key(resource),
            namespace=namespace if resource.namespaced else None,
            selector=parse_selector(label_selector),
            resource_version=resource_version,
            signal=self._changes,
            closed=lambda: self._closed,
            poll_interval=self._settings.poll_interval,
        )

    async def close(self) -> None:
        """Stop the collector, end every watch (their iterators finish), close the file."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._changes.fire()
        task, self._gc_task = self._gc_task, None
        try:
            if task is not None:
                await task
        finally:
            await self._db.close()

    async def __aenter__(self) -> EmbeddedStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def open_embedded_store(
    path: Path,
    *,
    settings: EmbeddedSettings | None = None,
    clock: Callable[[], datetime] | None = None,
    rng: random.Random | None = None,
) -> EmbeddedStore:
    """Open (creating or migrating) the store file at ``path``; its directory must exist.

    ``clock`` (UTC ``datetime``) and ``rng`` (generateName suffixes) are injectable for tests."""
    settings = settings or EmbeddedSettings()
    store = EmbeddedStore(
        db=Database(path=path, busy_timeout=settings.busy_timeout, retained_changes=settings.retained_changes),
        settings=settings,
        clock=clock or (lambda: datetime.now(UTC)),
        rng=rng or random.Random(),
    )
    try:
        await store._start()
    except BaseException:
        await store._db.close()
        raise
    return store
