"""An informer: list once, then watch, keeping a local cache of one kind and telling handlers.

Level-triggered controllers only need "this key may have changed": handlers receive the old and
new object (either may be None) and usually just enqueue a key. On ``Gone`` the informer relists
and reports the difference, so no deletion is ever missed; on any other error it backs off and
relists. A kind the server does not serve (its CRD not installed) is logged once as an error naming the
resource and how to install it, then retried quietly until it is served. The cache holds the objects as the store
returned them; never mutate them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import NewType

import structlog

from kray.store import Obj, Resource, Store, WatchEvent, WatchEventType
from kray.store.errors import Gone, KindNotServed, StoreError
from kray.store.selectors import parse_selector

ObjectKey = NewType("ObjectKey", tuple[str, str])
"""(namespace, name); namespace is "" for cluster-scoped kinds."""

Handler = Callable[[Obj | None, Obj | None], None]

log = structlog.get_logger(__name__)

_NOT_SERVED_HINT = {
    "ray.io": "install KubeRay's CRDs: kray crds | kubectl apply --server-side -f -",
    "gateway.networking.k8s.io": "install the Gateway API CRDs (standard channel)",
}
"""What to do when a kind's API is not served, by API group: the CRDs are the cluster admin's to install."""


def key_of(obj: Obj) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey((meta.get("namespace") or "", meta.get("name") or ""))


class Informer:
    def __init__(
        self,
        store: Store,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        retry_delay: float = 1.0,
        index_label: str | None = None,
        transform: Callable[[Obj], Obj] | None = None,
        field_selector: str | None = None,
    ) -> None:
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.synced = asyncio.Event()
        self.index_label = index_label
        """Objects are also indexed by (namespace, this label's value): a list for one value is O(matches)."""
        self._cache: dict[ObjectKey, Obj] = {}
        self._index: dict[tuple[str, str], set[ObjectKey]] = {}
        self._handlers: list[Handler] = []
        self._retry_delay = retry_delay
        self._transform = transform
        """Applied to every object before it is cached (client-go's SetTransform): slim projections."""
        self._fields: dict[str, str] = {"field_selector": field_selector} if field_selector else {}
        """A ``fieldSelector`` for stores that take one (the Kubernetes adapter: a node's pods)."""

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, key: ObjectKey) -> Obj | None:
        return self._cache.get(key)

    def by_index(self, namespace: str, value: str) -> list[Obj]:
        """The cached objects of ``namespace`` whose ``index_label`` is ``value``."""
        return [self._cache[key] for key in self._index.get((namespace, value), ())]

    def _indexed(self, key: ObjectKey, old: Obj | None, new: Obj | None) -> None:
        if self.index_label is None:
            return
        for obj, add in ((old, False), (new, True)):
            value = (((obj or {}).get("metadata") or {}).get("labels") or {}).get(self.index_label)
            if value is None:
                continue
            bucket = self._index.setdefault((key[0], str(value)), set())
            if add:
                bucket.add(key)
            else:
                bucket.discard(key)
                if not bucket:
                    del self._index[(key[0], str(value))]

    def list(self, *, namespace: str | None = None, label_selector: str | None = None) -> list[Obj]:
        matches = parse_selector(label_selector) if label_selector else None
        out = []
        for (ns, _), obj in self._cache.items():
            if namespace is not None and ns != namespace:
                continue
            if matches is not None and not matches((obj.get("metadata") or {}).get("labels") or {}):
                continue
            out.append(obj)
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """List and watch until ``stop`` is set; never raises (any failure: back off, relist)."""
        version: str | None = None
        missing = False  # the kind is not served: said once, loudly, until it is
        while not stop.is_set():
            try:
                if version is None:
                    version = await self._relist()
                    if missing:
                        log.info("informer.kind_served", kind=self.resource.kind, resource=self._resource_name)
                    missing = False
                version = await self._watch(version, stop)
            except Gone:
                version = None
            except KindNotServed as error:
                version = None
                if not missing:
                    log.error(
                        "informer.kind_not_served",
                        kind=self.resource.kind,
                        resource=self._resource_name,
                        hint=_NOT_SERVED_HINT.get(self.resource.group, "install the API that serves it"),
                        error=str(error),
                    )
                missing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._retry_delay)
            except StoreError as error:
                version = None
                log.warning("informer.retry", kind=self.resource.kind, error=str(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._retry_delay)
            except Exception as error:  # an informer that dies stops every reconcile of its kind: relist
                version = None
                log.exception("informer.failed", kind=self.resource.kind, error=repr(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._retry_delay)

    @property
    def _resource_name(self) -> str:
        """As kubectl names it: ``rayservices.ray.io``, ``pods``."""
        return f"{self.resource.plural}.{self.resource.group}" if self.resource.group else self.resource.plural

    async def _relist(self) -> str:
        listed = await self.store.list(
            self.resource, namespace=self.namespace, label_selector=self.label_selector, **self._fields
        )
        fresh = {key_of(obj): self._slim(obj) for obj in listed.items}
        old = self._cache
        self._cache = fresh
        self._index = {}
        for key, obj in fresh.items():
            self._indexed(key, None, obj)
        for key, obj in fresh.items():
            previous = old.get(key)
            if previous is None or _version(previous) != _version(obj):
                self._notify(previous, obj)
        for key, obj in old.items():
            if key not in fresh:
                self._notify(obj, None)
        self.synced.set()
        return listed.resource_version

    async def _watch(self, version: str, stop: asyncio.Event) -> str:
        """Apply watch events until the stream ends or ``stop``; returns the last version seen."""
        stream = self.store.watch(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            resource_version=version,
            **self._fields,
        )
        stopper = asyncio.ensure_future(stop.wait())
        nxt: asyncio.Future[WatchEvent] | None = None
        try:
            iterator = stream.__aiter__()
            while not stop.is_set():
                nxt = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, StoreError):
                        await nxt
                    return version
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    return version  # the stream ended (a server timeout): resume from here
                version = _version(event.object) or version
                self._apply(event.type, event.object)
            return version
        finally:
            stopper.cancel()
            if nxt is not None and not nxt.done():  # cancelled from outside while waiting for an event
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, StoreError):
                    await nxt
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _slim(self, obj: Obj) -> Obj:
        return self._transform(obj) if self._transform is not None else obj

    def _apply(self, kind: WatchEventType, obj: Obj) -> None:
        if kind is WatchEventType.BOOKMARK:
            return
        obj = self._slim(obj)
        key = key_of(obj)
        previous = self._cache.get(key)
        if kind is WatchEventType.DELETED:
            self._cache.pop(key, None)
            self._indexed(key, previous, None)
            self._notify(previous or obj, None)
        else:
            self._cache[key] = obj
            self._indexed(key, previous, obj)
            self._notify(previous, obj)

    def _notify(self, old: Obj | None, new: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:  # a handler bug must not stop the informer
                log.exception("informer.handler_failed", kind=self.resource.kind)


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))
