"""Watches of the embedded store: a cursor over the ``changes`` log, woken by the writer.

A watch keeps one number, the resourceVersion up to which it has *scanned* the log (not just the
last event it delivered), so a watch filtered to a quiet kind never falls behind the compaction
point while idle. Each round reads the next batch of its kind (and namespace) from a read snapshot,
filters it by label selector, and yields; when the log is exhausted it sleeps until the store's
:class:`Signal` fires or ``poll_interval`` passes (writes of other processes sharing the file have
no in-process signal). Replay and live following are the same code path, so there is no gap or
duplicate between them, and a slow consumer costs nothing: it just reads further back next time —
until the log is compacted past it, which raises :class:`~kray.store.errors.Gone`.

Label-selector transitions follow the API server's watch cache: an object that stops matching is
delivered as DELETED carrying its last matching state (at the new resourceVersion), one that starts
matching as ADDED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

from kray.store import WatchEvent, WatchEventType
from kray.store import meta as m
from kray.store.errors import Gone
from kray.store.selectors import Selector

from .db import Change, Database

BATCH = 500


class Signal:
    """Wakes every current waiter once per :meth:`fire`. Waiters take :meth:`current` *before* they
    look at the database, so a write committed after their look always wakes them."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


def translate(change: Change, selector: Selector) -> WatchEvent | None:
    """The event a watch with ``selector`` sees for one change, if any."""
    obj = json.loads(change.body)
    now = selector.matches(m.labels_of(obj))
    if change.type == "MODIFIED" and change.prev_body is not None:
        before = json.loads(change.prev_body)
        if selector.matches(m.labels_of(before)) and not now:
            before["metadata"]["resourceVersion"] = str(change.rv)
            return WatchEvent(WatchEventType.DELETED, before)
        if now and not selector.matches(m.labels_of(before)):
            return WatchEvent(WatchEventType.ADDED, obj)
    return WatchEvent(WatchEventType(change.type), obj) if now else None


async def follow(
    *,
    db: Database,
    key: str,
    namespace: str | None,
    selector: Selector,
    resource_version: str,
    signal: Signal,
    closed: Callable[[], bool],
    poll_interval: float,
) -> AsyncIterator[WatchEvent]:
    """Every change after ``resource_version``, then live ones, until the store closes."""
    start = m.parse_resource_version(resource_version)
    with db.snapshot() as snap:
        current, compacted = snap.versions()
        initial = snap.objects(key, namespace, labels=selector.matches) if start is None else []
    if start is not None and not compacted <= start <= current:
        raise Gone(f"too old resource version: {start} ({compacted})")
    position = current if start is None else start
    for obj in initial:
        yield WatchEvent(WatchEventType.ADDED, obj)
    while not closed():
        wake = signal.current()
        with db.snapshot() as snap:
            current, compacted = snap.versions()
            if position < compacted:
                raise Gone(f"too old resource version: {position} ({compacted})")
            batch = snap.changes(key, namespace, after=position, upto=current, limit=BATCH)
        position = batch[-1].rv if len(batch) == BATCH else current
        for change in batch:
            event = translate(change, selector)
            if event is not None:
                yield event
        if len(batch) < BATCH and not closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_interval)
