"""Helpers of the store contract suite: manifests, bounded waits, watch collection.

Every wait here has a deadline: the real API server's garbage collector and watches are
asynchronous, and a test must fail (not hang) when something never happens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from kray.store import Obj, Resource, Store, WatchEvent
from kray.store.errors import NotFound

IMAGE = "rayproject/ray:2.52.0"


def configmap(name: str, namespace: str, *, labels: dict[str, str] | None = None, **meta: Any) -> Obj:
    metadata: Obj = {"name": name, "namespace": namespace, **meta}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


def owner_ref(owner: Obj, *, block: bool | None = None, controller: bool | None = None) -> Obj:
    ref: Obj = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block is not None:
        ref["blockOwnerDeletion"] = block
    if controller is not None:
        ref["controller"] = controller
    return ref


def _template(container: str) -> Obj:
    return {"spec": {"containers": [{"name": container, "image": IMAGE}]}}


def raycluster(name: str, namespace: str, **meta: Any) -> Obj:
    """A minimal valid RayCluster whose worker group leaves the CRD-defaulted fields unset."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": _template("ray-head")},
            "workerGroupSpecs": [
                {"groupName": "small", "replicas": 1, "rayStartParams": {}, "template": _template("ray-worker")}
            ],
        },
    }


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str) -> None:
    """Poll ``check`` until it returns True; AssertionError naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def gone(store: Store, resource: Resource, name: str, namespace: str | None) -> bool:
    try:
        await store.get(resource, name, namespace=namespace)
    except NotFound:
        return True
    return False


async def collect(
    events: AsyncIterator[WatchEvent],
    *,
    count: int | None = None,
    seconds: float = 20.0,
    names: Iterable[str] | None = None,
) -> list[WatchEvent]:
    """Events (of objects named in ``names``, if given) until ``count`` arrived or ``seconds`` passed.

    With ``count``, running out of time is a failure; without it, the time is a quiet period."""
    wanted = set(names) if names is not None else None
    out: list[WatchEvent] = []
    try:
        async with asyncio.timeout(seconds):
            async for event in events:
                if wanted is None or event.object["metadata"]["name"] in wanted:
                    out.append(event)
                if count is not None and len(out) >= count:
                    break
    except TimeoutError:
        if count is not None:
            got = [(e.type.value, e.object["metadata"]["name"]) for e in out]
            raise AssertionError(f"expected {count} watch events within {seconds}s, got {got}") from None
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
    return out


def summary(events: Iterable[WatchEvent]) -> list[tuple[str, str]]:
    return [(event.type.value, event.object["metadata"]["name"]) for event in events]
