"""Watches: order of ADDED/MODIFIED/DELETED, filtering by kind, namespace and labels (objects that
leave or enter a selector), resuming from an older resourceVersion, and Gone."""

from __future__ import annotations

import copy

import pytest

from kray.store import CONFIGMAP, NAMESPACE, RAYCLUSTER, SECRET, Store, WatchEventType
from kray.store.errors import Gone, Invalid
from tests.store.support import collect, configmap, raycluster, summary

pytestmark = pytest.mark.asyncio


async def test_watch_from_list_version_sees_changes_in_order(store: Store, ns: str) -> None:
    start = (await store.list(CONFIGMAP, namespace=ns)).resource_version
    events = store.watch(CONFIGMAP, namespace=ns, resource_version=start)
    a = await store.create(CONFIGMAP, configmap("a", ns))
    await store.create(CONFIGMAP, configmap("b", ns))
    a["data"] = {"k": "changed"}
    await store.replace(CONFIGMAP, a)
    await store.delete(CONFIGMAP, "b", namespace=ns)
    await store.patch(CONFIGMAP, "a", namespace=ns, patch={"metadata": {"labels": {"x": "y"}}})
    got = await collect(events, count=5, names={"a", "b"})
    assert summary(got) == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("MODIFIED", "a")]
    versions = [int(event.object["metadata"]["resourceVersion"]) for event in got]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert got[2].object["data"] == {"k": "changed"}


async def test_watch_is_filtered_by_kind_and_namespace(store: Store, ns: str) -> None:
    other = f"{ns}-b"
    await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        start = (await store.list(CONFIGMAP, namespace=ns)).resource_version
        mine = store.watch(CONFIGMAP, namespace=ns, resource_version=start)
        everywhere = store.watch(CONFIGMAP, resource_version=start, label_selector="suite=watch")
        labels = {"suite": "watch"}
        await store.create(CONFIGMAP, configmap("in-ns", ns, labels=labels))
        await store.create(CONFIGMAP, configmap("other-ns", other, labels=labels))
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other-kind", "namespace": ns}}
        await store.create(SECRET, secret)
        await store.create(CONFIGMAP, configmap("last", ns, labels=labels))
        assert summary(await collect(mine, count=2, names={"in-ns", "other-ns", "other-kind", "last"})) == [
            ("ADDED", "in-ns"),
            ("ADDED", "last"),
        ]
        got = await collect(everywhere, count=3, names={"in-ns", "other-ns", "last"})
        assert summary(got) == [("ADDED", "in-ns"), ("ADDED", "other-ns"), ("ADDED", "last")]
    finally:
        await store.delete(NAMESPACE, other, namespace=None)


async def test_watch_resumes_from_an_older_resource_version(store: Store, ns: str) -> None:
    await store.create(CONFIGMAP, configmap("a", ns))
    middle = await store.create(CONFIGMAP, configmap("b", ns))
    await store.create(CONFIGMAP, configmap("c", ns))
    await store.delete(CONFIGMAP, "a", namespace=ns)
    resumed = store.watch(CONFIGMAP, namespace=ns, resource_version=middle["metadata"]["resourceVersion"])
    assert summary(await collect(resumed, count=2, names={"a", "b", "c"})) == [("ADDED", "c"), ("DELETED", "a")]


async def test_label_selector_watch_sees_objects_leave_and_enter(store: Store, ns: str) -> None:
    start = (await store.list(CONFIGMAP, namespace=ns)).resource_version
    events = store.watch(CONFIGMAP, namespace=ns, label_selector="app=a", resource_version=start)
    await store.create(CONFIGMAP, configmap("w", ns, labels={"app": "a"}))
    left = await store.patch(CONFIGMAP, "w", namespace=ns, patch={"metadata": {"labels": {"app": "b"}}})
    await store.patch(CONFIGMAP, "w", namespace=ns, patch={"data": {"ignored": "while b"}})
    await store.patch(CONFIGMAP, "w", namespace=ns, patch={"metadata": {"labels": {"app": "a"}}})
    await store.delete(CONFIGMAP, "w", namespace=ns)
    got = await collect(events, count=4)
    assert summary(got) == [("ADDED", "w"), ("DELETED", "w"), ("ADDED", "w"), ("DELETED", "w")]
    # leaving the selector: the last state that matched, at the version of the change that left
    assert got[1].object["metadata"]["labels"] == {"app": "a"}
    assert got[1].object["metadata"]["resourceVersion"] == left["metadata"]["resourceVersion"]


async def test_deleted_event_carries_the_last_state(store: Store, ns: str) -> None:
    start = (await store.list(RAYCLUSTER, namespace=ns)).resource_version
    events = store.watch(RAYCLUSTER, namespace=ns, resource_version=start)
    created = await store.create(RAYCLUSTER, raycluster("rc", ns))
    await store.delete(RAYCLUSTER, "rc", namespace=ns)
    got = await collect(events, count=2)
    assert [event.type for event in got] == [WatchEventType.ADDED, WatchEventType.DELETED]
    assert got[1].object["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(got[1].object["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


async def test_watch_from_a_compacted_version_is_gone(store: Store, ns: str, backend: str) -> None:
    """Gone for a too-old resourceVersion.

    The embedded store keeps only ``RETAINED_CHANGES`` (100 in this suite) changes, so "1" is
    compacted after the writes below. A real API server answers from its watch cache, which for
    RayClusters starts when the CRD was installed: version "1" predates it, so the server sends an
    ERROR event with code 410 (etcd compaction itself cannot be forced from a test)."""
    cluster = await store.create(RAYCLUSTER, raycluster("rc", ns))
    for index in range(70):
        cluster = copy.deepcopy(cluster)
        cluster["metadata"]["annotations"] = {"kray.dev/i": str(index)}
        cluster = await store.replace(RAYCLUSTER, cluster)
        cluster = await store.replace_status(RAYCLUSTER, {**cluster, "status": {"reason": str(index)}})
    with pytest.raises(Gone):
        await collect(store.watch(RAYCLUSTER, namespace=ns, resource_version="1"), count=1)
    if backend == "embedded":  # and a recent version still works
        current = (await store.list(RAYCLUSTER, namespace=ns)).resource_version
        events = store.watch(RAYCLUSTER, namespace=ns, resource_version=current)
        await store.delete(RAYCLUSTER, "rc", namespace=ns)
        assert summary(await collect(events, count=1)) == [("DELETED", "rc")]


async def test_watch_with_a_malformed_resource_version_is_invalid(store: Store, ns: str) -> None:
    with pytest.raises(Invalid):
        store.watch(CONFIGMAP, namespace=ns, resource_version="abc")


async def test_watch_from_zero_starts_with_the_current_state(store: Store, ns: str) -> None:
    await store.create(CONFIGMAP, configmap("existing", ns, labels={"suite": "zero"}))
    events = store.watch(CONFIGMAP, namespace=ns, label_selector="suite=zero", resource_version="0")
    first = await collect(events, count=1)
    assert summary(first) == [("ADDED", "existing")]
