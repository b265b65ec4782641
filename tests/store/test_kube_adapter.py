"""Kubernetes-adapter specifics the contract suite cannot show: the Status-to-error table, and a
watch that outlives the server's ``timeoutSeconds`` and ends cleanly on close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kray._kube.errors import error_from_status
from kray._kube.store import KubeSettings, KubeStore
from kray.dev.controlplane import ControlPlane
from kray.store import CONFIGMAP, WatchEvent
from kray.store.errors import AlreadyExists, Conflict, Forbidden, Gone, Invalid, NotFound, StoreError, Unavailable
from tests.store.support import configmap


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ({"code": 404, "reason": "NotFound"}, NotFound),
        ({"code": 409, "reason": "AlreadyExists"}, AlreadyExists),
        ({"code": 409, "reason": "Conflict"}, Conflict),
        ({"code": 410, "reason": "Expired", "message": "too old resource version: 1 (240)"}, Gone),
        ({"code": 403, "reason": "Forbidden"}, Forbidden),
        ({"code": 422, "reason": "Invalid"}, Invalid),
        ({"code": 400, "reason": "BadRequest"}, Invalid),
        ({"code": 504, "reason": "Timeout", "message": "Too large resource version: 99, current: 12"}, Gone),
        ({"code": 500, "reason": "InternalError"}, Unavailable),
        ({"code": 429, "reason": "TooManyRequests"}, Unavailable),
    ],
)
def test_status_to_store_error(status: dict[str, Any], error: type[StoreError]) -> None:
    assert type(error_from_status(status)) is error


def test_invalid_carries_field_paths() -> None:
    unprocessable = {
        "code": 422,
        "message": 'RayCluster.ray.io "x" is invalid: ...',
        "details": {
            "causes": [
                {"field": "spec.suspend", "message": "Invalid value: must be of type boolean"},
                {"field": "<nil>", "message": "some validation rules were not checked"},
            ]
        },
    }
    assert [e.path for e in error_from_status(unprocessable).errors] == ["spec.suspend"]  # type: ignore[attr-defined]
    strict = {"code": 400, "message": 'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"'}
    assert [e.path for e in error_from_status(strict).errors] == ["spec.foo", "spec.bar"]  # type: ignore[attr-defined]


@pytest.mark.k8s
@pytest.mark.asyncio
async def test_watch_outlives_server_timeouts_and_ends_on_close(
    k8s_control_plane: ControlPlane, k8s_namespace: str
) -> None:
    store = KubeStore.from_kubeconfig(k8s_control_plane.kubeconfig, settings=KubeSettings(watch_timeout=1))
    start = (await store.list(CONFIGMAP, namespace=k8s_namespace)).resource_version
    received: list[WatchEvent] = []

    async def consume() -> None:
        async for event in store.watch(CONFIGMAP, namespace=k8s_namespace, resource_version=start):
            received.append(event)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(2.5)  # the server has ended the first watch request(s) by now
    await store.create(CONFIGMAP, configmap("late", k8s_namespace))
    async with asyncio.timeout(20):
        while "late" not in {event.object["metadata"]["name"] for event in received}:
            await asyncio.sleep(0.05)
    await store.close()
    await asyncio.wait_for(consumer, timeout=5)  # ends without an error
