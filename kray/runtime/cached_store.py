"""Reads from the informers' caches, writes to the API server: what controller-runtime's client does.

Why: every reconcile reads its object, its head Service and its pods. Against the API server that was
four round trips per reconcile (44% of the operator's requests at 1,000 clusters, and a pod list that
grows with the namespace); the informers already hold all of it. :class:`CachedStore` wraps the real
store: ``get``/``list`` of a kind an informer covers are answered from memory, everything else passes
through. Events are created in the background, off the reconcile's path, as client-go's recorder does.

A cache lags the writes the controller itself just made. Invariant kept here so a reconcile never acts
on its own stale view (KubeRay's "scale expectations"): an object this store created is visible to
``get``/``list`` until the informer has it (same uid), and one it deleted stays hidden until the
informer has dropped it — each for at most ``expectation_timeout`` seconds. A ``get`` the cache cannot
answer is NotFound: a synced informer sees its whole scope (controller-runtime's cached client, too,
never reads outside it). Only a kind with no synced informer is read from the API server.
Objects are handed out as deep copies: reconcilers may change what they read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Literal

import structlog

from kray.runtime.informer import Informer, ObjectKey
from kray.store import EVENT, Obj, ObjectList, Propagation, Resource, Store, WatchEvent
from kray.store.errors import NotFound, StoreError
from kray.store.selectors import Operator, parse_selector

log = structlog.get_logger(__name__)

EXPECTATION_TIMEOUT = 30.0  # KubeRay's scale expectations expire after 30 s too
MAX_EVENTS_IN_FLIGHT = 64


def _key(obj: Obj) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey((str(meta.get("namespace") or ""), str(meta.get("name") or "")))


def _copy(obj: Obj) -> Obj:
    """A deep copy. JSON, not copy.deepcopy: faster, and deepcopy's recursion (several frames per level)
    failed on a custom resource nested thousands of levels deep, which the apiserver accepts."""
    copied: Obj = json.loads(json.dumps(obj))
    return copied


def _uid(obj: Obj | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid") or "")


class CachedStore:
    """:class:`~kray.store.Store` whose reads of informer-covered kinds come from the informers."""

    def __init__(
        self,
        store: Store,
        informers: Mapping[Resource, Sequence[Informer]],
        *,
        expectation_timeout: float = EXPECTATION_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        background_events: bool = True,
    ) -> None:
        self._store = store
        self._informers = {resource: list(group) for resource, group in informers.items()}
        self._timeout = expectation_timeout
        self._clock = clock
        self._created: dict[tuple[Resource, ObjectKey], tuple[Obj, float]] = {}
        self._deleted: dict[tuple[Resource, ObjectKey], tuple[str, float]] = {}
        self._background_events = background_events
        self._events: set[asyncio.Task[None]] = set()
        self._event_slots = asyncio.Semaphore(MAX_EVENTS_IN_FLIGHT)

    # ---- which informer answers ---------------------------------------------------------------------
    def _informer(self, resource: Resource, namespace: str | None) -> Informer | None:
        for informer in self._informers.get(resource, ()):
            if informer.synced.is_set() and (informer.namespace is None or informer.namespace == namespace):
                return informer
        return None

    def _expired(self, since: float) -> bool:
        return self._clock() - since > self._timeout

    def _visible(self, resource: Resource, informer: Informer, key: ObjectKey, cached: Obj | None) -> Obj | None:
        """The cached object as this store's own writes say it is (see the module docstring)."""
        deleted = self._deleted.get((resource, key))
        if deleted is not None:
            uid, since = deleted
            if cached is None or _uid(cached) != uid or self._expired(since):
                del self._deleted[(resource, key)]
            else:
                return None
        created = self._created.get((resource, key))
        if created is not None:
            obj, since = created
            if (cached is not None and _uid(cached) == _uid(obj)) or self._expired(since):
                del self._created[(resource, key)]
            elif cached is None or _uid(cached) != _uid(obj):
                return obj
        return cached

    # ---- reads --------------------------------------------------------------------------------------
    async def get(self, resource: Resource, name: str, *, namespace: str | None) -> Obj:
        informer = self._informer(resource, namespace)
        if informer is not None:
            key = ObjectKey((namespace or "", name))
            found = self._visible(resource, informer, key, informer.get(key))
            if found is not None:
                return _copy(found)
            # A synced informer sees every object of its scope: a miss is an absent object (as
            # controller-runtime's cached client answers; an object outside the scope is never read).
            raise NotFound(f"{resource.kind} {namespace}/{name} not found")
        return await self._store.get(resource, name, namespace=namespace)

    async def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        informer = self._informer(resource, namespace)
        if informer is None or namespace is None:
            return await self._store.list(resource, namespace=namespace, label_selector=label_selector)
        selector = parse_selector(label_selector)
        candidates = None
        for requirement in selector.requirements:
            if requirement.key == informer.index_label and requirement.operator is Operator.EQUALS:
                candidates = informer.by_index(namespace, requirement.values[0])
        if candidates is None:
            candidates = informer.list(namespace=namespace)
        keys = {_key(obj) for obj in candidates}
        keys |= {key for (kind, key) in self._created if kind == resource and key[0] == namespace}
        items = []
        for key in sorted(keys):
            obj = self._visible(resource, informer, key, informer.get(key))
            if obj is not None and selector.matches((obj.get("metadata") or {}).get("labels") or {}):
                items.append(_copy(obj))
        return ObjectList(items=items, resource_version="")

    def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str,
    ) -> AsyncIterator[WatchEvent]:
        return self._store.watch(
            resource, namespace=namespace, label_selector=label_selector, resource_version=resource_version
        )

    # ---- writes -------------------------------------------------------------------------------------
    async def create(self, resource: Resource, obj: Obj) -> Obj:
        if resource == EVENT and self._background_events:
            self._record_later(obj)
            return obj
        created = await self._store.create(resource, obj)
        if resource in self._informers:
            self._created[(resource, _key(created))] = (created, self._clock())
            self._deleted.pop((resource, _key(created)), None)
        return created

    async def delete(
        self, resource: Resource, name: str, *, namespace: str | None, propagation: Propagation = "Background"
    ) -> None:
        key = ObjectKey((namespace or "", name))
        informer = self._informer(resource, namespace)
        known = informer.get(key) if informer is not None else None
        await self._store.delete(resource, name, namespace=namespace, propagation=propagation)
        self._created.pop((resource, key), None)
        if known is not None and not (known.get("metadata") or {}).get("finalizers"):
            self._deleted[(resource, key)] = (_uid(known), self._clock())

    async def replace(self, resource: Resource, obj: Obj) -> Obj:
        return await self._store.replace(resource, obj)

    async def replace_status(self, resource: Resource, obj: Obj) -> Obj:
        return await self._store.replace_status(resource, obj)

    async def patch(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None,
        patch: Obj,
        subresource: Literal["status"] | None = None,
    ) -> Obj:
        return await self._store.patch(resource, name, namespace=namespace, patch=patch, subresource=subresource)

    # ---- events in the background -------------------------------------------------------------------
    def _record_later(self, event: Obj) -> None:
        async def send() -> None:
            async with self._event_slots:
                try:
                    await self._store.create(EVENT, event)
                except StoreError as error:
                    log.info("event.not_recorded", reason=event.get("reason"), error=str(error))

        task = asyncio.get_running_loop().create_task(send(), name="event")
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def flush_events(self, *, timeout: float = 10.0) -> None:
        """Wait (bounded) for the events still being sent."""
        if self._events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._events, return_exceptions=True), timeout=timeout)

    async def close(self) -> None:
        await self.flush_events()
        await self._store.close()
