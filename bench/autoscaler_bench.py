"""Ray's autoscaler on a local kray cluster: from a task that needs a new worker until it runs on one, and from idle
until the worker is gone, with autoscaler v1 and v2; beside it, a plain ``ray start`` of a worker joining the same
head. Prints a table.

Why: issue 11 asks whether autoscaling locally is limited by kray (the controller making the pod, the pod runner
starting it) or by Ray (the autoscaler's loop, a node's ``ray start``). The baseline is the Ray part alone, measured
in the same run on the same head, so the ratio says how much kray adds.

The cluster: KubeRay's ``ray-cluster.autoscaler.yaml`` (head ``num-cpus: 0``, a 1-CPU ``small-group`` from 0
replicas) with ``autoscalerOptions.version`` pinned (``v1`` or ``v2``; the sample names none, and Ray 2.60 then
picks v2) and ``idleTimeoutSeconds`` set by ``--idle``, applied with ``kray apply`` to a server of the bench's own
``KRAY_HOME`` (a fresh cluster, in a fresh namespace, per round; its start is not counted). A driver on this
machine (``ray.init`` to the cluster's GCS, token auth) submits one task, which stamps its own start; the bench
polls the store every 0.2 s. Times are wall-clock seconds of the one machine:

* ``replicas raised`` -- submit → the autoscaler patched the group's ``replicas`` up;
* ``worker pod running`` -- submit → the new pod's Ray container running;
* ``task on new worker`` -- submit → the 1-CPU task started on the new worker. Baseline: ``ray start --address``
  of a worker (with a custom resource no node type offers, so the autoscaler leaves the task alone) → the task
  needing that resource started on it;
* ``asked down`` -- task end → ``replicas`` back to 0 (``workersToDelete``); includes ``idleTimeoutSeconds``;
* ``worker gone`` -- task end → the pod deleted and gone.

Ray's v1 autoscaler keys nodes by IP address and every local pod is 127.0.0.1: it scales up, but never finds the
worker idle, so its ``asked down`` and ``worker gone`` stay empty (the bench waits ``--idle`` + 25 s for them).

    .venv/bin/python bench/autoscaler_bench.py [--repeat 1] [--only v1,v2] [--idle 10] [--timeout 180]

Progress goes to stderr, the table (metric | v1 | v2 | ray start | v1/ray start | v2/ray start) to stdout; with
``--repeat N`` each cell is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from kray.local.paths import LocalPaths, ray_temp_root
from kray.local.ports import PortAllocator
from kray.local.server.client import HttpStore
from kray.local.server.launcher import ensure_server, stop_server
from kray.store import POD, RAYCLUSTER, SECRET, Obj

BIN = Path(sys.executable).parent
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "kuberay-samples" / "ray-cluster.autoscaler.yaml"
CLUSTER = "raycluster-autoscaler"
VERSIONS = ("v1", "v2")
RAW = "ray start"
POLL = 0.2
HOLD = 1.0
V1_DOWN_GRACE = 25.0
ROWS = (
    ("replicas raised (s)", "raised"),
    ("worker pod running (s)", "pod running"),
    ("task on new worker (s)", "task running"),
    ("asked down (s)", "asked down"),
    ("worker gone (s)", "gone"),
)
DRIVER = """
import json, os, sys, time
import ray

ray.init(address=os.environ["BENCH_GCS"])
options = json.loads(sys.argv[1])

@ray.remote
def task(hold):
    started = time.time()
    time.sleep(hold)
    return {"node": ray.get_runtime_context().get_node_id(), "start": started, "end": time.time()}

submitted = time.time()
print("SUBMITTED", flush=True)
ref = task.options(**options).remote(float(sys.argv[2]))
result = ray.get(ref)
print("RESULT " + json.dumps({**result, "submitted": submitted, "head": ray.get_runtime_context().get_node_id()}))
"""


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


async def until(probe: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> tuple[Any, float]:
    """``probe``'s first truthy answer and when it came (``time.time()``); fails naming the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found, time.time()
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {found!r}")
        await asyncio.sleep(POLL)


class Bench:
    def __init__(self, *, idle: int, timeout: float) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="kray-asbench-"))
        self.paths = LocalPaths(self.home).ensure()
        self.idle, self.timeout = idle, timeout
        self.store: HttpStore | None = None

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "KRAY_"))}
        return {**base, "KRAY_HOME": str(self.home), "NO_COLOR": "1"}

    async def start(self) -> None:
        info = await asyncio.to_thread(ensure_server, self.paths, timeout=60)
        self.store = HttpStore(base_url=info.url, token=info.token)

    async def stop(self) -> None:
        if self.store is not None:
            await self.store.close()
        await asyncio.to_thread(stop_server, self.paths, timeout=90)
        shutil.rmtree(self.home, ignore_errors=True)

    # -- the cluster --------------------------------------------------------------------------------------------
    async def apply(self, version: str) -> str:
        assert self.store is not None
        namespace = f"asb-{version}-{secrets.token_hex(3)}"
        documents = [d for d in yaml.safe_load_all(SAMPLE.read_text()) if d]
        for document in documents:
            document["metadata"]["namespace"] = namespace
            if document["kind"] == "RayCluster":
                document["spec"]["autoscalerOptions"].update(version=version, idleTimeoutSeconds=self.idle)
        path = self.home / f"{namespace}.yaml"
        namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        path.write_text(yaml.safe_dump_all([namespace_doc, *documents], sort_keys=False))
        done = subprocess.run(
            [str(BIN / "kray"), "apply", "-f", str(path)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kray apply failed: {done.stdout}{done.stderr}")

        async def ready() -> Any:
            cluster = await self.store_get(RAYCLUSTER, CLUSTER, namespace)
            return ((cluster or {}).get("status") or {}).get("state") == "ready"

        await until(ready, timeout=self.timeout, what=f"{namespace}/{CLUSTER} ready")
        return namespace

    async def delete(self, namespace: str) -> None:
        assert self.store is not None
        await self.store.delete(RAYCLUSTER, CLUSTER, namespace=namespace)

        async def gone() -> Any:
            return not (await self.pods(namespace, "")) and await self.store_get(RAYCLUSTER, CLUSTER, namespace) is None

        await until(gone, timeout=self.timeout, what=f"{namespace}/{CLUSTER} and its pods gone")

    async def store_get(self, resource: Any, name: str, namespace: str) -> Obj | None:
        assert self.store is not None
        try:
            return await self.store.get(resource, name, namespace=namespace)
        except Exception:  # NotFound and a server busy for a poll both mean "not yet"
            return None

    async def pods(self, namespace: str, node_type: str = "worker") -> list[Obj]:
        assert self.store is not None
        selector = f"ray.io/cluster={CLUSTER}" + (f",ray.io/node-type={node_type}" if node_type else "")
        return (await self.store.list(POD, namespace=namespace, label_selector=selector)).items

    async def replicas(self, namespace: str) -> int | None:
        cluster = await self.store_get(RAYCLUSTER, CLUSTER, namespace)
        return None if cluster is None else cluster["spec"]["workerGroupSpecs"][0].get("replicas")

    async def driver_env(self, namespace: str) -> dict[str, str]:
        cluster = await self.store_get(RAYCLUSTER, CLUSTER, namespace)
        secret = await self.store_get(SECRET, CLUSTER, namespace)
        assert cluster is not None
        assert secret is not None
        ports = dict(p.split("=") for p in cluster["metadata"]["annotations"]["kray.io/local-ports"].split(","))
        token = base64.b64decode(secret["data"]["auth_token"]).decode()
        gcs = f"127.0.0.1:{ports['gcs']}"
        return {**self.env(), "BENCH_GCS": gcs, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}

    async def driver(self, env: dict[str, str], options: dict[str, Any]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DRIVER, json.dumps(options), str(HOLD),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=self.timeout)
        if not line.startswith(b"SUBMITTED"):
            raise RuntimeError(f"driver: {line!r} {(await proc.stderr.read())[-1500:]!r}")  # type: ignore[union-attr]
        return proc

    async def result(self, proc: asyncio.subprocess.Process) -> dict[str, Any]:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=self.timeout)
        lines = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"driver exited {proc.returncode}: {err.decode()[-1500:]}")
        found: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
        return found

    # -- one round ----------------------------------------------------------------------------------------------
    async def autoscaled(self, version: str, namespace: str) -> dict[str, float]:
        proc = await self.driver(await self.driver_env(namespace), {"num_cpus": 1})

        async def raised() -> Any:
            return (await self.replicas(namespace) or 0) >= 1

        async def running() -> Any:
            return any(
                "running" in ((p.get("status") or {}).get("containerStatuses") or [{}])[0].get("state", {})
                for p in await self.pods(namespace)
            )

        _, raised_at = await until(raised, timeout=self.timeout, what="replicas raised")
        _, running_at = await until(running, timeout=self.timeout, what="a worker pod running")
        result = await self.result(proc)
        if result["node"] == result["head"]:
            raise RuntimeError(f"the task ran on the head: {result}")
        submitted, end = result["submitted"], result["end"]
        measured = {
            "raised": raised_at - submitted,
            "pod running": running_at - submitted,
            "task running": result["start"] - submitted,
        }

        async def asked_down() -> Any:
            return await self.replicas(namespace) == 0

        async def gone() -> Any:
            return not await self.pods(namespace)

        down = self.idle + V1_DOWN_GRACE if version == "v1" else self.timeout
        try:
            _, asked_at = await until(asked_down, timeout=down, what="replicas back to 0")
            _, gone_at = await until(gone, timeout=self.timeout, what="the worker pod gone")
            measured |= {"asked down": asked_at - end, "gone": gone_at - end}
        except RuntimeError as error:
            if version != "v1":
                raise
            log(f"v1: {error} (Ray's v1 autoscaler keys nodes by IP; every local pod is 127.0.0.1)")
        return measured

    async def raw(self, namespace: str) -> dict[str, float]:
        """A plain ``ray start`` of a worker joining the cluster's head, and the task that only it can run."""
        env = await self.driver_env(namespace)
        proc = await self.driver(env, {"num_cpus": 0, "resources": {"bench_raw": 1}})
        agent, metrics = PortAllocator(self.home).allocate(2, owner=f"bench/{namespace}")
        temp = Path(tempfile.mkdtemp(prefix="r", dir=ray_temp_root()))
        argv = [
            str(BIN / "ray"), "start", f"--address={env['BENCH_GCS']}", "--node-ip-address=127.0.0.1",
            "--num-cpus=0", '--resources={"bench_raw": 1}', f"--dashboard-agent-listen-port={agent}",
            f"--metrics-export-port={metrics}", f"--temp-dir={temp}", "--block",
        ]  # fmt: skip
        started = time.time()
        node = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            result = await self.result(proc)
        finally:
            tree = psutil.Process(node.pid)
            for member in [*tree.children(recursive=True), tree]:
                try:
                    member.kill()
                except psutil.NoSuchProcess:
                    continue
            node.wait(timeout=30)
            PortAllocator(self.home).release(f"bench/{namespace}")
            shutil.rmtree(temp, ignore_errors=True)
        return {"task running": result["start"] - started}


# ---- the table --------------------------------------------------------------------------------------------------
def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for r in rounds for key in r}
    return {key: statistics.median(r[key] for r in rounds if key in r) for key in keys}


def table(results: dict[str, dict[str, float]]) -> str:
    header = f"{'metric':<24} | {'v1':>7} | {'v2':>7} | {RAW:>9} | v1/{RAW} | v2/{RAW}"
    lines = [header, "-" * len(header)]
    for label, key in ROWS:
        values = {way: results.get(way, {}).get(key) for way in (*VERSIONS, RAW)}
        cells = {way: f"{v:.2f}" if v is not None else "-" for way, v in values.items()}
        raw = values[RAW]
        ratios = [f"{v / raw:.2f}" if v is not None and raw else "-" for v in (values["v1"], values["v2"])]
        lines.append(f"{label:<24} | {cells['v1']:>7} | {cells['v2']:>7} | {cells[RAW]:>9} | "
                     f"{ratios[0]:>12} | {ratios[1]:>12}")  # fmt: skip
    return "\n".join(lines)


def parse_only(text: str) -> tuple[str, ...]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    if not chosen or any(v not in VERSIONS for v in chosen):
        raise argparse.ArgumentTypeError(f"expected some of v1,v2, got {text!r}")
    return tuple(v for v in VERSIONS if v in chosen)


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    rounds: dict[str, list[dict[str, float]]] = {way: [] for way in (*args.only, RAW)}
    bench = Bench(idle=args.idle, timeout=args.timeout)
    try:
        log("kray server start (setup) ...")
        await bench.start()
        for n in range(1, args.repeat + 1):
            for version in args.only:
                log(f"{version}, round {n}: a fresh cluster (setup) ...")
                namespace = await bench.apply(version)
                try:
                    log(f"{version}, round {n}: a task that needs a worker ...")
                    rounds[version].append(await bench.autoscaled(version, namespace))
                    log(f"{version}, round {n}: {rounds[version][-1]}; a plain `ray start` joining the head ...")
                    rounds[RAW].append(await bench.raw(namespace))
                    log(f"{RAW}, round {n}: {rounds[RAW][-1]}")
                finally:
                    await bench.delete(namespace)
    finally:
        await bench.stop()
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of each version (the table shows medians)")
    parser.add_argument("--only", type=parse_only, default=VERSIONS, help="some of v1,v2")
    parser.add_argument("--idle", type=int, default=10, help="the clusters' idleTimeoutSeconds")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds each wait may take")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: expected at least 1")
    start = os.getloadavg()
    rounds = asyncio.run(run(args))
    print(table({way: medians(measured) for way, measured in rounds.items() if measured}))
    end = os.getloadavg()
    load = f"at start {start[0]:.2f} {start[1]:.2f} {start[2]:.2f}, at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}"
    print(
        f"rounds: {args.repeat} (medians); idleTimeoutSeconds {args.idle}; {os.cpu_count()} CPUs; load average {load}"
    )
    if "v1" in args.only:
        print("v1: Ray's v1 autoscaler keys nodes by IP address and every local pod is 127.0.0.1: it never scales down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
