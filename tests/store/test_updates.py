"""Updates: optimistic concurrency (stale resourceVersion, other uid), generation rules, the status
subresource's isolation, and JSON merge patch of the main resource and of status."""

from __future__ import annotations

import copy

import pytest

from kray.store import CONFIGMAP, RAYCLUSTER, Store
from kray.store.errors import Conflict, Invalid, NotFound
from tests.store.support import configmap, raycluster

pytestmark = pytest.mark.asyncio


async def test_stale_resource_version_conflicts_on_replace(store: Store, ns: str) -> None:
    first = await store.create(RAYCLUSTER, raycluster("rc", ns))
    second = copy.deepcopy(first)
    second["metadata"]["labels"] = {"a": "1"}
    await store.replace(RAYCLUSTER, second)
    first["metadata"]["labels"] = {"a": "2"}
    with pytest.raises(Conflict):
        await store.replace(RAYCLUSTER, first)


async def test_stale_resource_version_conflicts_on_replace_status(store: Store, ns: str) -> None:
    stale = await store.create(RAYCLUSTER, raycluster("rc", ns))
    await store.replace_status(RAYCLUSTER, {**stale, "status": {"state": "ready"}})
    with pytest.raises(Conflict):
        await store.replace_status(RAYCLUSTER, {**stale, "status": {"state": "suspended"}})


async def test_patch_with_stale_resource_version_conflicts(store: Store, ns: str) -> None:
    created = await store.create(CONFIGMAP, configmap("a", ns))
    await store.patch(CONFIGMAP, "a", namespace=ns, patch={"data": {"k": "v2"}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"k": "v3"}}
    with pytest.raises(Conflict):
        await store.patch(CONFIGMAP, "a", namespace=ns, patch=stale)
    fresh = await store.get(CONFIGMAP, "a", namespace=ns)
    patched = await store.patch(
        CONFIGMAP, "a", namespace=ns, patch={"metadata": {"resourceVersion": fresh["metadata"]["resourceVersion"]}}
    )
    assert patched["data"] == {"k": "v2"}


async def test_replace_with_another_uid_conflicts(store: Store, ns: str) -> None:
    created = await store.create(CONFIGMAP, configmap("a", ns))
    other = copy.deepcopy(created)
    other["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(Conflict):
        await store.replace(CONFIGMAP, other)


async def test_custom_resources_need_a_resource_version_core_kinds_do_not(store: Store, ns: str) -> None:
    cluster = await store.create(RAYCLUSTER, raycluster("rc", ns))
    del cluster["metadata"]["resourceVersion"]
    with pytest.raises(Invalid) as caught:
        await store.replace(RAYCLUSTER, cluster)
    assert [error.path for error in caught.value.errors] == ["metadata.resourceVersion"]
    cm = await store.create(CONFIGMAP, configmap("a", ns))
    del cm["metadata"]["resourceVersion"]
    cm["data"] = {"k": "unconditional"}
    assert (await store.replace(CONFIGMAP, cm))["data"] == {"k": "unconditional"}


async def test_replace_of_missing_object_is_not_found(store: Store, ns: str) -> None:
    with pytest.raises(NotFound):
        await store.replace(CONFIGMAP, configmap("nope", ns))
    with pytest.raises(NotFound):
        await store.patch(CONFIGMAP, "nope", namespace=ns, patch={"data": {"a": "b"}})


async def test_generation_bumps_on_spec_changes_only(store: Store, ns: str) -> None:
    cluster = await store.create(RAYCLUSTER, raycluster("rc", ns))
    cluster["metadata"]["labels"] = {"a": "b"}
    cluster["metadata"]["annotations"] = {"kray.dev/note": "x"}
    cluster = await store.replace(RAYCLUSTER, cluster)
    assert cluster["metadata"]["generation"] == 1
    cluster = await store.replace_status(RAYCLUSTER, {**cluster, "status": {"state": "ready"}})
    assert cluster["metadata"]["generation"] == 1
    cluster["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    cluster = await store.replace(RAYCLUSTER, cluster)
    assert cluster["metadata"]["generation"] == 2
    patch = {"spec": {"suspend": True}}
    assert (await store.patch(RAYCLUSTER, "rc", namespace=ns, patch=patch))["metadata"]["generation"] == 3


async def test_noop_update_keeps_the_resource_version(store: Store, ns: str) -> None:
    cluster = await store.create(RAYCLUSTER, raycluster("rc", ns))
    again = await store.replace(RAYCLUSTER, copy.deepcopy(cluster))
    assert again["metadata"]["resourceVersion"] == cluster["metadata"]["resourceVersion"]
    patched = await store.patch(RAYCLUSTER, "rc", namespace=ns, patch={"spec": {"suspend": None}})
    assert patched["metadata"]["resourceVersion"] == cluster["metadata"]["resourceVersion"]


async def test_status_is_ignored_on_create_and_replace(store: Store, ns: str) -> None:
    created = await store.create(RAYCLUSTER, {**raycluster("rc", ns), "status": {"state": "ready"}})
    assert "status" not in created
    changed = copy.deepcopy(created)
    changed["status"] = {"state": "ready"}
    changed["metadata"]["labels"] = {"a": "b"}
    replaced = await store.replace(RAYCLUSTER, changed)
    assert "status" not in replaced
    assert replaced["metadata"]["labels"] == {"a": "b"}
    patched = await store.patch(RAYCLUSTER, "rc", namespace=ns, patch={"status": {"state": "failed"}})
    assert "status" not in patched


async def test_replace_status_changes_only_status(store: Store, ns: str) -> None:
    created = await store.create(RAYCLUSTER, raycluster("rc", ns))
    request = copy.deepcopy(created)
    request["status"] = {"state": "ready", "readyWorkerReplicas": 1}
    request["spec"]["suspend"] = True
    request["metadata"]["labels"] = {"ignored": "yes"}
    updated = await store.replace_status(RAYCLUSTER, request)
    assert updated["status"] == {"state": "ready", "readyWorkerReplicas": 1}
    assert "suspend" not in updated["spec"]
    assert "labels" not in updated["metadata"]
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    fetched = await store.get(RAYCLUSTER, "rc", namespace=ns)
    assert fetched["status"] == updated["status"]


async def test_merge_patch_of_status(store: Store, ns: str) -> None:
    await store.create(RAYCLUSTER, raycluster("rc", ns))
    first = {"status": {"state": "ready", "readyWorkerReplicas": 1, "endpoints": {"dashboard": "8265"}}}
    await store.patch(RAYCLUSTER, "rc", namespace=ns, patch=first, subresource="status")
    second = {"status": {"readyWorkerReplicas": 2, "endpoints": {"client": "10001", "dashboard": None}}}
    patched = await store.patch(RAYCLUSTER, "rc", namespace=ns, patch=second, subresource="status")
    assert patched["status"] == {"state": "ready", "readyWorkerReplicas": 2, "endpoints": {"client": "10001"}}
    assert patched["metadata"]["generation"] == 1
    ignored = {"spec": {"suspend": True}, "status": {"state": "suspended"}}
    patched = await store.patch(RAYCLUSTER, "rc", namespace=ns, patch=ignored, subresource="status")
    assert "suspend" not in patched["spec"]
    assert patched["status"]["state"] == "suspended"


async def test_merge_patch_of_the_main_resource(store: Store, ns: str) -> None:
    await store.create(CONFIGMAP, configmap("a", ns, labels={"x": "1", "y": "2"}))
    patched = await store.patch(
        CONFIGMAP, "a", namespace=ns, patch={"metadata": {"labels": {"x": None, "z": "3"}}, "data": {"n": "m"}}
    )
    assert patched["metadata"]["labels"] == {"y": "2", "z": "3"}
    assert patched["data"] == {"k": "v", "n": "m"}


async def test_status_subresource_of_a_kind_without_one_is_not_found(store: Store, ns: str) -> None:
    created = await store.create(CONFIGMAP, configmap("a", ns))
    with pytest.raises(NotFound):
        await store.replace_status(CONFIGMAP, created)
    with pytest.raises(NotFound):
        await store.patch(CONFIGMAP, "a", namespace=ns, patch={"data": {}}, subresource="status")
