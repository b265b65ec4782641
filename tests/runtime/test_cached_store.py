"""Reads from the informers' caches see the controller's own writes at once; events leave the reconcile path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kray.local.store import EmbeddedSettings, EmbeddedStore, open_embedded_store
from kray.runtime.cached_store import CachedStore
from kray.runtime.informer import Informer
from kray.store import EVENT, POD, Obj, Store
from kray.store.errors import AlreadyExists, NotFound

NS = "default"


def pod(name: str, cluster: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"ray.io/cluster": cluster}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with await open_embedded_store(tmp_path / "s.db", settings=EmbeddedSettings(poll_interval=0.05)) as s:
        yield s


class Paused:
    """An informer that stops seeing changes after its first sync (a cache lagging behind)."""

    def __init__(self, store: Store) -> None:
        self.informer = Informer(store, POD, namespace=NS, index_label="ray.io/cluster")

    async def sync_once(self) -> None:
        await self.informer._relist()  # list once, never watch


async def test_a_created_pod_is_listed_before_the_informer_sees_it(store: EmbeddedStore) -> None:
    await store.create(POD, pod("old", "a"))
    paused = Paused(store)
    await paused.sync_once()
    cached = CachedStore(store, {POD: [paused.informer]})
    await cached.create(POD, pod("new", "a"))
    await cached.create(POD, pod("other", "b"))
    names = [
        p["metadata"]["name"] for p in (await cached.list(POD, namespace=NS, label_selector="ray.io/cluster=a")).items
    ]
    assert names == ["new", "old"], "a lagging cache must never make a reconcile create the pod twice"
    assert (await cached.get(POD, "new", namespace=NS))["metadata"]["uid"]


async def test_a_deleted_pod_stays_hidden_until_the_informer_drops_it(store: EmbeddedStore) -> None:
    await store.create(POD, pod("gone", "a"))
    paused = Paused(store)
    await paused.sync_once()
    cached = CachedStore(store, {POD: [paused.informer]})
    await cached.delete(POD, "gone", namespace=NS)
    assert (await cached.list(POD, namespace=NS, label_selector="ray.io/cluster=a")).items == []
    with pytest.raises(NotFound):
        await cached.get(POD, "gone", namespace=NS)


async def test_expectations_expire(store: EmbeddedStore) -> None:
    paused = Paused(store)
    await paused.sync_once()
    now = {"t": 0.0}
    cached = CachedStore(store, {POD: [paused.informer]}, expectation_timeout=30, clock=lambda: now["t"])
    await cached.create(POD, pod("p", "a"))
    now["t"] = 31.0
    assert (await cached.list(POD, namespace=NS, label_selector="ray.io/cluster=a")).items == []


async def test_reads_are_copies_and_a_synced_caches_miss_is_not_found(store: EmbeddedStore) -> None:
    await store.create(POD, pod("p", "a"))
    paused = Paused(store)
    await paused.sync_once()
    cached = CachedStore(store, {POD: [paused.informer]})
    got = await cached.get(POD, "p", namespace=NS)
    got["metadata"]["labels"]["x"] = "mutated"
    assert "x" not in (await cached.get(POD, "p", namespace=NS))["metadata"]["labels"]
    await store.create(POD, pod("outside", "a"))  # never in the cache (as if outside its label scope)
    with pytest.raises(NotFound):
        await cached.get(POD, "outside", namespace=NS)  # a synced cache's miss: no API request
    with pytest.raises(AlreadyExists):
        await cached.create(POD, pod("outside", "a"))


async def test_the_index_and_a_full_scan_agree(store: EmbeddedStore) -> None:
    for i in range(6):
        await store.create(POD, pod(f"p{i}", "ab"[i % 2]))
    paused = Paused(store)
    await paused.sync_once()
    cached = CachedStore(store, {POD: [paused.informer]})
    by_index = await cached.list(POD, namespace=NS, label_selector="ray.io/cluster=a")
    by_scan = await cached.list(POD, namespace=NS, label_selector="ray.io/cluster in (a)")
    assert [p["metadata"]["name"] for p in by_index.items] == [p["metadata"]["name"] for p in by_scan.items]
    assert len(by_index.items) == 3


async def test_events_are_sent_in_the_background(store: EmbeddedStore) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowEvents:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def create(self, resource: Any, obj: Obj) -> Obj:
            if resource == EVENT:
                started.set()
                await release.wait()
            return await store.create(resource, obj)

    cached = CachedStore(SlowEvents(), {})  # type: ignore[arg-type]
    event = {
        "metadata": {"name": "e1", "namespace": NS},
        "involvedObject": {"kind": "Pod"},
        "reason": "R",
        "message": "m",
    }
    await asyncio.wait_for(cached.create(EVENT, event), timeout=1)  # returns before the API answers
    await asyncio.wait_for(started.wait(), timeout=5)
    release.set()
    await cached.flush_events()
    assert [e["reason"] for e in (await store.list(EVENT, namespace=NS)).items] == ["R"]
