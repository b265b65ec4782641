"""ray.io kinds get their CRD's defaults and structural schema, as a real API server with kray's CRDs
applies them: defaults are filled in, schema violations are Invalid with the field path."""

from __future__ import annotations

import pytest

from kray.store import RAYCLUSTER, RAYJOB, Store
from kray.store.errors import Invalid
from tests.store.support import raycluster

pytestmark = pytest.mark.asyncio


async def test_crd_defaults_are_applied(store: Store, ns: str) -> None:
    created = await store.create(RAYCLUSTER, raycluster("rc", ns))
    group = created["spec"]["workerGroupSpecs"][0]
    assert group["numOfHosts"] == 1
    assert group["minReplicas"] == 0
    assert group["maxReplicas"] == 2147483647
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "job", "namespace": ns},
        "spec": {"entrypoint": "python -c 'print(1)'", "rayClusterSpec": raycluster("x", ns)["spec"]},
    }
    assert (await store.create(RAYJOB, job))["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"suspend": "yes"}, "spec.suspend"),
        (
            {"workerGroupSpecs": [{"groupName": "g", "replicas": "two", "rayStartParams": {}, "template": {}}]},
            "spec.workerGroupSpecs[0].replicas",
        ),
        ({"noSuchField": 1}, "spec.noSuchField"),
    ],
    ids=["wrong-type", "nested-wrong-type", "unknown-field"],
)
async def test_schema_violations_are_invalid_with_the_field_path(
    store: Store, ns: str, change: dict[str, object], path: str
) -> None:
    obj = raycluster("bad", ns)
    obj["spec"].update(change)
    with pytest.raises(Invalid) as caught:
        await store.create(RAYCLUSTER, obj)
    assert path in {error.path for error in caught.value.errors}


async def test_schema_applies_to_updates_and_status(store: Store, ns: str) -> None:
    created = await store.create(RAYCLUSTER, raycluster("rc", ns))
    with pytest.raises(Invalid) as caught:
        await store.patch(RAYCLUSTER, "rc", namespace=ns, patch={"spec": {"suspend": 3}})
    assert "spec.suspend" in {error.path for error in caught.value.errors}
    with pytest.raises(Invalid) as caught:
        await store.replace_status(RAYCLUSTER, {**created, "status": {"readyWorkerReplicas": "x"}})
    assert "status.readyWorkerReplicas" in {error.path for error in caught.value.errors}
