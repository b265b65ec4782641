"""A separate process writing to an embedded store, for the durability and concurrency tests.

``python -m tests.store.writer_process PATH churn``: writes forever (creates, replaces, owned
objects, deletes) and prints ``ack <name> <resourceVersion>`` after each committed write, until it is
killed. ``... PATH counter TAG N``: increments the shared ``counter`` ConfigMap N times with
optimistic concurrency (retrying on Conflict) and creates N objects named ``TAG-<i>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from kray.local.store import EmbeddedSettings, open_embedded_store
from kray.store import CONFIGMAP
from kray.store.errors import AlreadyExists, Conflict


def _cm(name: str, **meta: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", **meta}}


async def churn(path: Path) -> None:
    store = await open_embedded_store(path, settings=EmbeddedSettings(retained_changes=500))
    index = 0
    while True:
        owner = await store.create(CONFIGMAP, _cm(f"owner-{index}", labels={"i": str(index)}))
        print("ack", owner["metadata"]["name"], owner["metadata"]["resourceVersion"], flush=True)
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": f"owner-{index}", "uid": owner["metadata"]["uid"]}
        child = await store.create(CONFIGMAP, _cm(f"child-{index}", ownerReferences=[ref]))
        print("ack", child["metadata"]["name"], child["metadata"]["resourceVersion"], flush=True)
        owner["data"] = {"n": str(index)}
        owner = await store.replace(CONFIGMAP, owner)
        print("ack", owner["metadata"]["name"], owner["metadata"]["resourceVersion"], flush=True)
        if index % 3 == 0:
            await store.delete(CONFIGMAP, f"owner-{index}", namespace="default")
            print("deleted", f"owner-{index}", flush=True)
        index += 1


async def counter(path: Path, tag: str, count: int) -> None:
    store = await open_embedded_store(path, settings=EmbeddedSettings(poll_interval=0.05))
    try:
        with contextlib.suppress(AlreadyExists):
            await store.create(CONFIGMAP, {**_cm("counter"), "data": {"n": "0"}})
        for index in range(count):
            await store.create(CONFIGMAP, _cm(f"{tag}-{index}"))
            while True:
                current = await store.get(CONFIGMAP, "counter", namespace="default")
                current["data"] = {"n": str(int(current["data"]["n"]) + 1)}
                try:
                    await store.replace(CONFIGMAP, current)
                    break
                except Conflict:
                    continue
    finally:
        await store.close()


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if sys.argv[2] == "churn":
        asyncio.run(churn(target))
    else:
        asyncio.run(counter(target, sys.argv[3], int(sys.argv[4])))
