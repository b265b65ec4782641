"""Lists: namespaces, every label-selector operator, refused selectors, and the list's resourceVersion."""

from __future__ import annotations

import pytest

from kray.store import CONFIGMAP, NAMESPACE, Store
from kray.store.errors import Invalid
from tests.store.support import configmap

pytestmark = pytest.mark.asyncio

OBJECTS = {
    "web-1": {"app": "web", "tier": "front", "rank": "1"},
    "web-2": {"app": "web", "tier": "back", "rank": "5"},
    "db": {"app": "db", "rank": "10"},
    "plain": {"other": "x"},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", {"web-1", "web-2"}),
        ("app==web", {"web-1", "web-2"}),
        ("app!=web", {"db", "plain"}),
        ("app in (db, web)", {"web-1", "web-2", "db"}),
        ("app notin (web)", {"db", "plain"}),
        ("tier", {"web-1", "web-2"}),
        ("!tier", {"db", "plain"}),
        ("app=web,tier=front", {"web-1"}),
        ("app in (web),!tier", set()),
        ("rank>2", {"web-2", "db"}),
        ("rank<5", {"web-1"}),
        ("", {"web-1", "web-2", "db", "plain"}),
    ],
)
async def test_label_selectors(store: Store, ns: str, selector: str, expected: set[str]) -> None:
    for name, labels in OBJECTS.items():
        await store.create(CONFIGMAP, configmap(name, ns, labels=labels))
    listed = await store.list(CONFIGMAP, namespace=ns, label_selector=selector)
    names = {item["metadata"]["name"] for item in listed.items}
    assert names & OBJECTS.keys() == expected  # a real cluster adds kube-root-ca.crt to every namespace


@pytest.mark.parametrize("selector", ["app=", "a b", "app in web", "app in (web", "=web", "app=has space,", "x>y"])
async def test_malformed_selectors_are_invalid(store: Store, ns: str, selector: str) -> None:
    if selector == "app=":  # the empty value is allowed: it selects app=""
        await store.list(CONFIGMAP, namespace=ns, label_selector=selector)
        return
    with pytest.raises(Invalid):
        await store.list(CONFIGMAP, namespace=ns, label_selector=selector)


async def test_list_is_per_namespace_or_across_all(store: Store, ns: str) -> None:
    other = f"{ns}-b"
    await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        await store.create(CONFIGMAP, configmap("a", ns, labels={"suite": ns}))
        await store.create(CONFIGMAP, configmap("b", other, labels={"suite": ns}))
        mine = await store.list(CONFIGMAP, namespace=ns, label_selector=f"suite={ns}")
        everywhere = await store.list(CONFIGMAP, label_selector=f"suite={ns}")
        assert [item["metadata"]["name"] for item in mine.items] == ["a"]
        assert sorted((i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere.items) == sorted(
            [(ns, "a"), (other, "b")]
        )
        assert all((item["apiVersion"], item["kind"]) == ("v1", "ConfigMap") for item in everywhere.items)
    finally:
        await store.delete(NAMESPACE, other, namespace=None)


async def test_list_resource_version_is_at_least_the_last_write(store: Store, ns: str) -> None:
    created = await store.create(CONFIGMAP, configmap("a", ns))
    listed = await store.list(CONFIGMAP, namespace=ns)
    assert int(listed.resource_version) >= int(created["metadata"]["resourceVersion"])
