"""Create, get and the errors around them: server-set metadata, generateName, AlreadyExists,
NotFound, missing namespaces and names or finalizers the API server refuses."""

from __future__ import annotations

import re

import pytest

from kray.store import CONFIGMAP, EVENT, JOB, NAMESPACE, RAYCLUSTER, SERVICE, Store
from kray.store.errors import AlreadyExists, Invalid, NotFound
from tests.store.support import configmap, raycluster

pytestmark = pytest.mark.asyncio

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_create_sets_server_metadata(store: Store, ns: str) -> None:
    created = await store.create(CONFIGMAP, configmap("a", ns))
    meta = created["metadata"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", meta["uid"])
    assert RFC3339_UTC.match(meta["creationTimestamp"])
    assert meta["resourceVersion"].isdigit()
    assert "generation" not in meta  # core kinds without a spec have no generation
    assert (created["apiVersion"], created["kind"], created["data"]) == ("v1", "ConfigMap", {"k": "v"})
    assert await store.get(CONFIGMAP, "a", namespace=ns) == created


async def test_generation_starts_at_one_for_custom_resources_and_jobs(store: Store, ns: str) -> None:
    cluster = await store.create(RAYCLUSTER, raycluster("rc", ns))
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": ns},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}},
    }
    assert cluster["metadata"]["generation"] == 1
    assert (await store.create(JOB, job))["metadata"]["generation"] == 1


async def test_server_fields_in_the_request_are_ignored(store: Store, ns: str) -> None:
    created = await store.create(
        CONFIGMAP, configmap("a", ns, uid="0000", creationTimestamp="2000-01-01T00:00:00Z", generation=7)
    )
    assert created["metadata"]["uid"] != "0000"
    assert created["metadata"]["creationTimestamp"] != "2000-01-01T00:00:00Z"


async def test_generate_name_appends_five_random_characters(store: Store, ns: str) -> None:
    first = await store.create(CONFIGMAP, configmap("", ns, generateName="worker-"))
    second = await store.create(CONFIGMAP, configmap("", ns, generateName="worker-"))
    for obj in (first, second):
        assert re.fullmatch(r"worker-[bcdfghjklmnpqrstvwxz2456789]{5}", obj["metadata"]["name"])
        assert obj["metadata"]["generateName"] == "worker-"
    assert first["metadata"]["name"] != second["metadata"]["name"]


async def test_create_twice_is_already_exists(store: Store, ns: str) -> None:
    await store.create(CONFIGMAP, configmap("a", ns))
    with pytest.raises(AlreadyExists):
        await store.create(CONFIGMAP, configmap("a", ns))


async def test_get_missing_is_not_found(store: Store, ns: str) -> None:
    with pytest.raises(NotFound):
        await store.get(CONFIGMAP, "nope", namespace=ns)
    with pytest.raises(NotFound):
        await store.get(RAYCLUSTER, "nope", namespace=ns)


async def test_create_in_missing_namespace_is_not_found(store: Store, ns: str) -> None:
    with pytest.raises(NotFound, match="namespaces"):
        await store.create(CONFIGMAP, configmap("a", f"{ns}-missing"))


async def test_namespaces_are_objects_and_default_exists(store: Store, ns: str) -> None:
    default = await store.get(NAMESPACE, "default", namespace=None)
    assert default["status"]["phase"] == "Active"
    mine = await store.get(NAMESPACE, ns, namespace=None)
    assert mine["metadata"]["labels"]["kubernetes.io/metadata.name"] == ns
    names = {item["metadata"]["name"] for item in (await store.list(NAMESPACE)).items}
    assert {"default", ns} <= names


@pytest.mark.parametrize(
    ("kind", "name"),
    [("ConfigMap", "Bad_Name"), ("ConfigMap", ""), ("Service", "a.b")],
    ids=["uppercase", "missing", "service-with-dot"],  # Service names are labels, not subdomains
)
async def test_invalid_names_are_refused(store: Store, ns: str, kind: str, name: str) -> None:
    if kind == "Service":
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}}
        resource, obj = SERVICE, {**service, "spec": {"ports": [{"port": 80}]}}
    else:
        resource, obj = CONFIGMAP, configmap(name, ns)
    with pytest.raises(Invalid) as caught:
        await store.create(resource, obj)
    assert "metadata.name" in {error.path for error in caught.value.errors}


async def test_invalid_labels_and_finalizers_are_refused(store: Store, ns: str) -> None:
    with pytest.raises(Invalid) as caught:
        await store.create(CONFIGMAP, configmap("a", ns, labels={"app": "has space"}))
    assert any(error.path.startswith("metadata.labels") for error in caught.value.errors)
    with pytest.raises(Invalid) as caught:
        await store.create(CONFIGMAP, configmap("b", ns, finalizers=["unqualified"]))
    assert any(error.path.startswith("metadata.finalizers") for error in caught.value.errors)
    created = await store.create(CONFIGMAP, configmap("c", ns, finalizers=["kray.dev/test"]))
    assert created["metadata"]["finalizers"] == ["kray.dev/test"]
    await store.patch(CONFIGMAP, "c", namespace=ns, patch={"metadata": {"finalizers": None}})


async def test_unknown_metadata_fields_are_refused(store: Store, ns: str) -> None:
    with pytest.raises(Invalid) as caught:
        await store.create(CONFIGMAP, configmap("a", ns, colour="blue"))
    assert "metadata.colour" in {error.path for error in caught.value.errors}


async def test_events_are_ordinary_objects(store: Store, ns: str) -> None:
    cluster = await store.create(RAYCLUSTER, raycluster("rc", ns))
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "rc.", "namespace": ns},
        "involvedObject": {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "name": "rc",
            "namespace": ns,
            "uid": cluster["metadata"]["uid"],
        },
        "reason": "Created",
        "message": "Created head pod",
        "type": "Normal",
        "source": {"component": "kray"},
    }
    created = await store.create(EVENT, event)
    assert created["metadata"]["name"].startswith("rc.")
    listed = await store.list(EVENT, namespace=ns)
    assert [item["reason"] for item in listed.items] == ["Created"]
