"""Deletion: finalizers and deletionTimestamp, and cascading deletion by ownerReferences
(Background, Foreground, Orphan, dangling owners) and by Namespace termination.

The real garbage collector (kube-controller-manager) is asynchronous, and so is the embedded one:
every expectation about dependents is awaited with a deadline.
"""

from __future__ import annotations

import copy
import secrets

import pytest

from kray.store import CONFIGMAP, NAMESPACE, RAYCLUSTER, Store
from kray.store.errors import Forbidden, Invalid, NotFound
from tests.store.support import configmap, eventually, gone, owner_ref, raycluster

pytestmark = pytest.mark.asyncio

FINALIZER = "kray.dev/test"


async def test_delete_missing_is_not_found(store: Store, ns: str) -> None:
    with pytest.raises(NotFound):
        await store.delete(CONFIGMAP, "nope", namespace=ns)


async def test_delete_without_finalizers_removes_at_once(store: Store, ns: str) -> None:
    await store.create(RAYCLUSTER, raycluster("rc", ns))
    await store.delete(RAYCLUSTER, "rc", namespace=ns)
    with pytest.raises(NotFound):
        await store.get(RAYCLUSTER, "rc", namespace=ns)


async def test_finalizers_hold_a_deleted_object_until_removed(store: Store, ns: str) -> None:
    created = await store.create(RAYCLUSTER, raycluster("rc", ns, finalizers=[FINALIZER]))
    await store.delete(RAYCLUSTER, "rc", namespace=ns)
    deleting = await store.get(RAYCLUSTER, "rc", namespace=ns)
    meta = deleting["metadata"]
    assert meta["deletionTimestamp"]
    assert meta["deletionGracePeriodSeconds"] == 0
    assert meta["finalizers"] == [FINALIZER]
    assert meta["generation"] == created["metadata"]["generation"] + 1  # marking deleted bumps it
    await store.delete(RAYCLUSTER, "rc", namespace=ns)  # again: nothing changes
    assert (await store.get(RAYCLUSTER, "rc", namespace=ns)) == deleting

    more = copy.deepcopy(deleting)
    more["metadata"]["finalizers"] = [FINALIZER, "kray.dev/another"]
    with pytest.raises(Invalid) as caught:
        await store.replace(RAYCLUSTER, more)
    assert "metadata.finalizers" in {error.path for error in caught.value.errors}

    labelled = copy.deepcopy(deleting)
    labelled["metadata"]["labels"] = {"still": "updatable"}
    labelled = await store.replace(RAYCLUSTER, labelled)
    labelled["metadata"]["finalizers"] = []
    await store.replace(RAYCLUSTER, labelled)
    with pytest.raises(NotFound):
        await store.get(RAYCLUSTER, "rc", namespace=ns)


async def test_patch_removing_the_last_finalizer_deletes(store: Store, ns: str) -> None:
    await store.create(CONFIGMAP, configmap("a", ns, finalizers=[FINALIZER]))
    await store.delete(CONFIGMAP, "a", namespace=ns)
    await store.patch(CONFIGMAP, "a", namespace=ns, patch={"metadata": {"finalizers": None}})
    assert await gone(store, CONFIGMAP, "a", ns)


async def test_background_deletion_collects_dependents_recursively(store: Store, ns: str) -> None:
    owner = await store.create(RAYCLUSTER, raycluster("owner", ns))
    child = await store.create(CONFIGMAP, configmap("child", ns, ownerReferences=[owner_ref(owner, controller=True)]))
    await store.create(CONFIGMAP, configmap("grandchild", ns, ownerReferences=[owner_ref(child)]))
    bystander = await store.create(CONFIGMAP, configmap("bystander", ns))
    await store.create(CONFIGMAP, configmap("shared", ns, ownerReferences=[owner_ref(owner), owner_ref(bystander)]))
    await store.delete(RAYCLUSTER, "owner", namespace=ns, propagation="Background")
    assert await gone(store, RAYCLUSTER, "owner", ns)

    async def collected() -> bool:
        return await gone(store, CONFIGMAP, "child", ns) and await gone(store, CONFIGMAP, "grandchild", ns)

    await eventually(collected, what="child and grandchild to be garbage-collected")

    async def reference_dropped() -> bool:
        shared = await store.get(CONFIGMAP, "shared", namespace=ns)
        return [ref["uid"] for ref in shared["metadata"]["ownerReferences"]] == [bystander["metadata"]["uid"]]

    await eventually(reference_dropped, what="the shared dependent to lose its dangling reference")


async def test_foreground_deletion_waits_for_blocking_dependents(store: Store, ns: str) -> None:
    owner = await store.create(RAYCLUSTER, raycluster("owner", ns))
    ref = owner_ref(owner, block=True, controller=True)
    await store.create(CONFIGMAP, configmap("blocker", ns, ownerReferences=[ref], finalizers=[FINALIZER]))
    await store.create(CONFIGMAP, configmap("plain", ns, ownerReferences=[owner_ref(owner, block=False)]))
    await store.delete(RAYCLUSTER, "owner", namespace=ns, propagation="Foreground")
    deleting = await store.get(RAYCLUSTER, "owner", namespace=ns)
    assert "foregroundDeletion" in deleting["metadata"]["finalizers"]
    assert deleting["metadata"]["deletionTimestamp"]

    async def blocker_deleting() -> bool:
        blocker = await store.get(CONFIGMAP, "blocker", namespace=ns)
        return bool(blocker["metadata"].get("deletionTimestamp"))

    await eventually(blocker_deleting, what="the blocking dependent to be marked deleted")
    await eventually(lambda: gone(store, CONFIGMAP, "plain", ns), what="the non-blocking dependent to go")
    assert not await gone(store, RAYCLUSTER, "owner", ns)  # still waits for the blocker's finalizer
    await store.patch(CONFIGMAP, "blocker", namespace=ns, patch={"metadata": {"finalizers": None}})
    await eventually(lambda: gone(store, RAYCLUSTER, "owner", ns), what="the owner to go after its dependents")


async def test_foreground_deletion_without_dependents_completes(store: Store, ns: str) -> None:
    await store.create(CONFIGMAP, configmap("lonely", ns))
    await store.delete(CONFIGMAP, "lonely", namespace=ns, propagation="Foreground")
    await eventually(lambda: gone(store, CONFIGMAP, "lonely", ns), what="a foreground delete with no dependents")


async def test_orphan_deletion_keeps_dependents_without_the_reference(store: Store, ns: str) -> None:
    owner = await store.create(RAYCLUSTER, raycluster("owner", ns))
    await store.create(CONFIGMAP, configmap("kept", ns, ownerReferences=[owner_ref(owner, block=True)]))
    await store.delete(RAYCLUSTER, "owner", namespace=ns, propagation="Orphan")
    await eventually(lambda: gone(store, RAYCLUSTER, "owner", ns), what="the orphaning owner to go")
    kept = await store.get(CONFIGMAP, "kept", namespace=ns)
    assert "ownerReferences" not in kept["metadata"]
    assert "deletionTimestamp" not in kept["metadata"]


async def test_dependent_of_a_missing_owner_is_collected(store: Store, ns: str) -> None:
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost", "uid": "11111111-2222-4333-8444-555555555555"},
    }
    await store.create(CONFIGMAP, configmap("dangling", ns, ownerReferences=[owner_ref(ghost)]))
    await eventually(lambda: gone(store, CONFIGMAP, "dangling", ns), what="a dependent of a missing owner to go")


async def test_namespace_termination_deletes_its_contents(store: Store) -> None:
    name = f"t-term-{secrets.token_hex(3)}"
    await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        await store.create(CONFIGMAP, configmap("plain", name))
        await store.create(CONFIGMAP, configmap("held", name, finalizers=[FINALIZER]))
        await store.delete(NAMESPACE, name, namespace=None)
        terminating = await store.get(NAMESPACE, name, namespace=None)
        assert terminating["metadata"]["deletionTimestamp"]
        assert terminating["status"]["phase"] == "Terminating"
        with pytest.raises(Forbidden):
            await store.create(CONFIGMAP, configmap("late", name))
        await eventually(lambda: gone(store, CONFIGMAP, "plain", name), what="namespace contents to be deleted")

        async def held_deleting() -> bool:
            held = await store.get(CONFIGMAP, "held", namespace=name)
            return bool(held["metadata"].get("deletionTimestamp"))

        await eventually(held_deleting, what="the finalized object to be marked deleted")
        assert not await gone(store, NAMESPACE, name, None)
    finally:
        await store.patch(CONFIGMAP, "held", namespace=name, patch={"metadata": {"finalizers": None}})
    await eventually(lambda: gone(store, NAMESPACE, name, None), timeout=60, what="the namespace to go")


async def test_protected_namespace_cannot_be_deleted(store: Store) -> None:
    with pytest.raises(Forbidden):
        await store.delete(NAMESPACE, "default", namespace=None)
