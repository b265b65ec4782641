"""Micro-benchmark of the two Store adapters: the embedded SQLite store vs a real kube-apiserver.

Runs the same sequence against both in one process and prints operations per second (and the
embedded/apiserver ratio): create, get, replace, list, concurrent creates, and the latency from
issuing a write to receiving its watch event. The API server is a fresh dev control plane
(``kray.dev.controlplane``: etcd + kube-apiserver on loopback, no controllers) unless
``--kubeconfig`` points at a running one.

    .venv/bin/python bench/store_bench.py [-n 1000] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from kray._kube.store import KubeStore
from kray.dev.binaries import ensure_binaries
from kray.dev.controlplane import ControlPlane, Options
from kray.local.store import open_embedded_store
from kray.store import CONFIGMAP, NAMESPACE, Store

CONCURRENCY = 16


def _cm(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "yes", "i": name[-1]}},
        "data": {"payload": "x" * 512},
    }


async def _rate(count: int, work: Callable[[int], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    for index in range(count):
        await work(index)
    return count / (time.perf_counter() - t0)


async def _concurrent_rate(count: int, work: Callable[[int], Awaitable[Any]]) -> float:
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            await work(index)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - t0)


async def _watch_latency(store: Store, namespace: str, *, writes: int) -> list[float]:
    """Seconds from issuing a write to receiving its watch event, for ``writes`` writes in turn."""
    start = (await store.list(CONFIGMAP, namespace=namespace, label_selector="bench=watch")).resource_version
    events = store.watch(CONFIGMAP, namespace=namespace, label_selector="bench=watch", resource_version=start)
    latencies = []
    obj = await store.create(
        CONFIGMAP,
        {
            **_cm("watched", namespace),
            "metadata": {"name": "watched", "namespace": namespace, "labels": {"bench": "watch"}},
        },
    )
    await anext(events)  # the ADDED of the create above
    for index in range(writes):
        obj["data"] = {"i": str(index)}
        t0 = time.perf_counter()
        obj = await store.replace(CONFIGMAP, obj)
        event = await asyncio.wait_for(anext(events), timeout=30)
        latencies.append(time.perf_counter() - t0)
        assert event.object["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    await events.aclose()  # type: ignore[attr-defined]
    return latencies


async def run(store: Store, namespace: str, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    created: list[dict[str, Any]] = []

    async def create(i: int) -> None:
        created.append(await store.create(CONFIGMAP, _cm(f"cm-{i:06d}", namespace)))

    results["create /s"] = await _rate(n, create)
    results["get /s"] = await _rate(n, lambda i: store.get(CONFIGMAP, f"cm-{i:06d}", namespace=namespace))

    async def replace(i: int) -> None:
        obj = created[i]
        obj["data"] = {"payload": "y" * 512}
        created[i] = await store.replace(CONFIGMAP, obj)

    results["replace /s"] = await _rate(n, replace)
    lists = max(3, 20_000 // n)
    results[f"list ({n} items) /s"] = await _rate(lists, lambda _: store.list(CONFIGMAP, namespace=namespace))
    results[f"list selector ({n // 10} of {n}) /s"] = await _rate(
        lists, lambda _: store.list(CONFIGMAP, namespace=namespace, label_selector="i=7")
    )
    results[f"create x{CONCURRENCY} concurrent /s"] = await _concurrent_rate(
        n, lambda i: store.create(CONFIGMAP, _cm(f"cc-{i:06d}", namespace))
    )
    latencies = await _watch_latency(store, namespace, writes=min(n, 300))
    results["write->event p50 ms"] = statistics.median(latencies) * 1000
    results["write->event p99 ms"] = statistics.quantiles(latencies, n=100)[98] * 1000
    return results


@contextlib.contextmanager
def _kubeconfig(given: Path | None) -> Iterator[Path]:
    if given is not None:
        yield given
        return
    options = Options(controller_manager=False, scheduler=False)
    with ControlPlane(binaries=ensure_binaries(), options=options) as plane:
        print(f"started a dev control plane in {plane.startup_seconds:.1f}s")
        yield plane.kubeconfig


async def main(n: int, kubeconfig: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        embedded = await open_embedded_store(Path(tmp) / "bench.db")
        try:
            mine = await run(embedded, "default", n)
        finally:
            await embedded.close()
    with _kubeconfig(kubeconfig) as path:
        kube = KubeStore.from_kubeconfig(path)
        namespace = f"bench-{int(time.time())}"
        await kube.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        try:
            theirs = await run(kube, namespace, n)
        finally:
            await kube.delete(NAMESPACE, namespace, namespace=None)
            await kube.close()
    print(f"\n{'operation (n=' + str(n) + ')':<34}{'embedded':>12}{'apiserver':>12}{'ratio':>9}")
    for key, value in mine.items():
        print(f"{key:<34}{value:>12.1f}{theirs[key]:>12.1f}{value / theirs[key]:>8.2f}x")
    print("(ratio = embedded / apiserver; for latencies lower is better)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="objects per phase (default 1000)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="use this cluster instead of a fresh plane")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.kubeconfig))
