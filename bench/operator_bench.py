"""kray's operator against KubeRay's own (Go, v1.5.0) on one control plane: N RayClusters at once.

Why: the operator issue's goals are relative -- time to ready <= 0.8x KubeRay's, peak RSS <= KubeRay's -- so
both run in the same process of measurement, on the same apiserver, one after the other, each in a fresh
namespace with the other stopped (and the previous namespace deleted and gone, so its garbage collection
does not load the next run).

The work: N RayClusters (1 head + 3 workers each, the shape of ``examples/raycluster.yaml``) created
at once (64 creates in flight) on kwok nodes (simulated kubelets: pods go Running/Ready without
containers). Then M clusters (spread over the N, one every ``--scale-interval`` s) get their worker
group's ``replicas`` patched 3 → 4 while all N are live. Measured per operator:

* ``time to all ready``: first create → every RayCluster has ``status.state == ready`` (client watch);
* ``queue empty``: from then until the operator's RayCluster work queue is empty (its /metrics), the
  tail of the creation wave (requeues after status changes);
* ``scale latency p50/p99``, measured from then on: patch sent → the new worker pod's ADDED event on
  the client's pod watch (monotonic clock on this side; creationTimestamp has only second granularity);
* ``peak RSS`` (sum over the operator's process tree, sampled every 0.2 s) and ``CPU seconds``
  (user+system of the tree, read just before the operator is stopped);
* ``API requests``: the apiserver's audit log (Metadata level, one event per finished request),
  counted by User-Agent over the operator's lifetime -- kray's client sends ``python-httpx2/…``,
  KubeRay's client-go ``kuberay-operator/…``; this bench sends ``kray-operator-bench`` -- with the
  apiserver's own time for them (per verb+resource in the JSON: a list whose cost grows with N shows);
* the RayCluster controller's reconciles, mean reconcile time and mean work-queue wait, from each
  operator's /metrics (controller-runtime's names, which both export).

``--profile-kray FILE`` runs kray's operator under cProfile (CPU clock); read it with ``pstats``.

Same settings for both: ``--reconcile-concurrency`` (KubeRay's default 1), leader election off,
``RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV`` at its default (300 s), KubeRay's v1.7 gates on
(:data:`kray.dev.kuberay.DEFAULT_GATES`). KubeRay keeps its own client rate limit (``--qps 100
--burst 200``, its defaults); kray has none. Pods are bound at creation (``spec.nodeName`` in the
templates, round-robin over the nodes) so kube-scheduler's own client limit (50 QPS) does not cap
both runs alike and hide the operators' difference; ``--scheduler`` goes through it instead.

    .venv/bin/python bench/operator_bench.py [--n 100] [--m 20] [--only kray|kuberay] [--json out.json]
        [--concurrency 1] [--order kray,kuberay] [--scheduler] [--timeout S] [--log-dir DIR]
        [--profile-kray FILE] [--no-cleanup]

The accounting (RSS/CPU sampler, audit-log counts, controller metrics, the table) is in
``operator_bench_measure.py`` beside this file. Prints progress on stderr and the table (metric | kray |
KubeRay | kray/KubeRay) on stdout. Goals are reported, never asserted. ``--n 10000`` (40,000 pods) is a
long run; every step of the bench itself is linear in N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube.config.client_adapter import AsyncClient as authenticated_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig
from operator_bench_measure import (
    AUDIT_POLICY,
    OPERATORS,
    Requests,
    TreeSampler,
    controller_stats,
    goals,
    percentile,
    raycluster_samples,
    table,
)

from kray._kube.store import KubeStore
from kray.dev import kwok
from kray.dev.binaries import Binaries, ensure_binaries
from kray.dev.controlplane import ControlPlane, Options
from kray.dev.kuberay import KubeRayOperator, KubeRayOptions
from kray.dev.procs import ManagedProcess, ProcessSpec, free_port, log_tail
from kray.store import NAMESPACE, POD, RAYCLUSTER, SERVICE_ACCOUNT, Resource, WatchEventType
from kray.store.errors import AlreadyExists, NotFound

ROOT = Path(__file__).resolve().parents[1]
NODE = Resource("v1", "Node", "nodes", namespaced=False, status_subresource=True)
CRD = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)
BENCH_UA = "kray-operator-bench"
PODS_PER_NODE = 900  # of the nodes' 1000: headroom for the scale-up pods
CREATES_IN_FLIGHT = 64


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# ---- manifests -------------------------------------------------------------------------------------
def cluster_manifest(name: str, namespace: str, *, node: str | None) -> dict[str, Any]:
    def template(container: str) -> dict[str, Any]:
        limits = {"cpu": "1", "memory": "2Gi"}
        spec: dict[str, Any] = {
            "containers": [{"name": container, "image": "rayproject/ray:2.60.0", "resources": {"limits": limits}}]
        }
        if node is not None:
            spec["nodeName"] = node
        return {"spec": spec}

    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {"rayStartParams": {}, "template": template("ray-head")},
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "replicas": 3,
                    "minReplicas": 0,
                    "maxReplicas": 10,
                    "rayStartParams": {},
                    "template": template("ray-worker"),
                }
            ],
        },
    }


# ---- waiting ---------------------------------------------------------------------------------------
async def wait_for(check: Callable[[], Awaitable[bool] | bool], *, timeout: float, what: str,
                   seen: Callable[[], object], every: float = 0.2) -> None:  # fmt: skip
    """Poll ``check`` until true; on timeout, fail saying what ``seen()`` last reported."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last saw: {seen()}")
        await asyncio.sleep(every)


# ---- the operators -----------------------------------------------------------------------------------
@dataclass
class Running:
    pid: int
    log: Path
    metrics_url: str
    stop: Callable[[], None]


def _http_status(url: str) -> int:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 0


# The CLI's entry point under cProfile with the CPU clock (a wall clock would charge the time other
# processes run to whatever kray was doing then, e.g. socket sends); the stats are written however it
# exits (SIGTERM: SystemExit 0).
PROFILED = """
import cProfile, time
from kray.cli.main import main
profiler = cProfile.Profile(time.process_time)
try:
    profiler.runcall(main)
finally:
    profiler.dump_stats({out!r})
"""


def start_kray(*, kubeconfig: Path, namespace: str, concurrency: int, log_dir: Path, profile: Path | None) -> Running:
    """``kray operator`` as a user runs it; started once ``/readyz`` says every informer synced. With
    ``profile``, under cProfile (stats written there when it exits on SIGTERM)."""
    health, metrics = free_port(), free_port()
    entry = ("-m", "kray.cli.main") if profile is None else ("-c", PROFILED.format(out=str(profile)))
    argv = (
        sys.executable, *entry, "operator", "--kubeconfig", str(kubeconfig),
        "--watch-namespace", namespace, "--reconcile-concurrency", str(concurrency),
        "--enable-leader-election=false", "--metrics-addr", f"127.0.0.1:{metrics}",
        "--health-probe-bind-address", f"127.0.0.1:{health}",
    )  # fmt: skip
    log_file = log_dir / f"kray-operator-{namespace}.log"
    proc = ManagedProcess(
        ProcessSpec("kray-operator", argv, log_file, env={"KUBECONFIG": str(kubeconfig)}), tie_to_parent=True
    )
    deadline, status = time.monotonic() + 60, 0
    while (status := _http_status(f"http://127.0.0.1:{health}/readyz")) != 200:
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"kray operator not ready in 60 s (last /readyz: {status}):\n{log_tail(log_file)}")
        time.sleep(0.2)
    return Running(proc.pid, log_file, f"http://127.0.0.1:{metrics}/metrics", proc.stop)


def start_kuberay(*, kubeconfig: Path, namespace: str, concurrency: int, log_dir: Path, bins: Binaries) -> Running:
    options = KubeRayOptions(namespaces=(namespace,), reconcile_concurrency=concurrency)
    op = KubeRayOperator(
        kubeconfig=kubeconfig, binaries=bins, log_dir=log_dir, options=options, name=f"kuberay-operator-{namespace}"
    ).start()
    assert op.metrics_url is not None
    return Running(op.pid, op.log, op.metrics_url, op.stop)


# ---- one run -----------------------------------------------------------------------------------------
@dataclass
class Tracker:
    """What the client's watches saw, stamped with this process's monotonic clock."""

    n: int
    ready_at: dict[str, float] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    workers: dict[str, set[str]] = field(default_factory=dict)
    worker_count: int = 0
    all_workers_at: float | None = None
    expect: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    latencies: dict[str, float] = field(default_factory=dict)

    def on_cluster(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        state = str((obj.get("status") or {}).get("state") or "(none)")
        self.states[name] = state
        if state == "ready":
            self.ready_at.setdefault(name, now)

    def on_pod(self, obj: dict[str, Any], now: float) -> None:
        cluster = (obj["metadata"].get("labels") or {}).get("ray.io/cluster", "")
        names = self.workers.setdefault(cluster, set())
        name = obj["metadata"]["name"]
        if name in names:
            return
        names.add(name)
        self.worker_count += 1
        if self.all_workers_at is None and self.worker_count >= 3 * self.n:
            self.all_workers_at = now
        if cluster in self.expect and cluster not in self.latencies and name not in self.expect[cluster][1]:
            self.latencies[cluster] = now - self.expect[cluster][0]

    async def seen_workers(self, cluster: str, *, count: int) -> None:
        names = self.workers.setdefault(cluster, set())
        await wait_for(
            lambda: len(names) >= count, timeout=60, what=f"{count} workers of {cluster}", seen=lambda: names
        )

    def state_summary(self) -> str:
        counts = Counter(self.states.values())
        return f"{len(self.ready_at)}/{self.n} ready; states {dict(counts.most_common())}; {self.worker_count} workers"


async def follow(store: KubeStore, resource: Resource, namespace: str, handle: Callable[[dict[str, Any], float], None],
                 *, selector: str | None = None) -> None:  # fmt: skip
    async for event in store.watch(resource, namespace=namespace, label_selector=selector, resource_version="0"):
        if event.type in (WatchEventType.ADDED, WatchEventType.MODIFIED):
            handle(event.object, time.monotonic())


def bench_store(kubeconfig: Path) -> tuple[KubeStore, httpx2.AsyncClient]:
    config = KubeConfig.from_file(kubeconfig).get()
    assert config is not None, f"{kubeconfig} has no current context"
    client = authenticated_client(config, ConnectionParams(timeout=httpx2.Timeout(60.0)))
    client.headers["User-Agent"] = BENCH_UA
    return KubeStore(client=client), client


async def fresh_namespace(store: KubeStore, name: str) -> None:
    await store.create(NAMESPACE, {"metadata": {"name": name, "labels": {"kray.dev/bench": "operator"}}})

    async def sa_ready() -> bool:
        with contextlib.suppress(NotFound):
            return bool(await store.get(SERVICE_ACCOUNT, "default", namespace=name))
        return False

    await wait_for(sa_ready, timeout=60, what=f"ServiceAccount {name}/default", seen=lambda: "not yet created")


async def delete_namespace(store: KubeStore, name: str, *, timeout: float) -> None:
    await store.delete(NAMESPACE, name, namespace=None)
    last: dict[str, Any] = {}

    async def gone() -> bool:
        nonlocal last
        try:
            last = (await store.get(NAMESPACE, name, namespace=None)).get("status") or {}
        except NotFound:
            return True
        return False

    await wait_for(gone, timeout=timeout, what=f"namespace {name} to be deleted", seen=lambda: last, every=1.0)


async def run_operator(
    operator: str,
    *,
    args: argparse.Namespace,
    plane: ControlPlane,
    bins: Binaries,
    nodes: list[str],
    audit: Path,
    cleanup: bool,
) -> dict[str, Any]:
    n, m = args.n, min(args.m, args.n)
    namespace = f"bench-{operator}-{secrets.token_hex(3)}"
    store, client = bench_store(plane.kubeconfig)
    tasks: list[asyncio.Task[None]] = []
    try:
        await fresh_namespace(store, namespace)
        audit_start = audit.stat().st_size
        log(f"{OPERATORS[operator]}: starting the operator on namespace {namespace}")
        kwargs = {"kubeconfig": plane.kubeconfig, "namespace": namespace, "concurrency": args.concurrency,
                  "log_dir": args.log_dir}  # fmt: skip
        if operator == "kray":
            running = start_kray(**kwargs, profile=args.profile_kray)
        else:
            running = start_kuberay(**kwargs, bins=bins)
        sampler: TreeSampler | None = None
        try:
            sampler = TreeSampler(running.pid)
            tracker = Tracker(n)
            tasks = [
                asyncio.create_task(follow(store, RAYCLUSTER, namespace, tracker.on_cluster)),
                asyncio.create_task(follow(store, POD, namespace, tracker.on_pod, selector="ray.io/node-type=worker")),
            ]
            names = [f"rc-{i:05d}" for i in range(n)]
            gate = asyncio.Semaphore(CREATES_IN_FLIGHT)

            async def create(i: int, name: str) -> None:
                node = None if args.scheduler else nodes[i % len(nodes)]
                async with gate:
                    await store.create(RAYCLUSTER, cluster_manifest(name, namespace, node=node))

            log(f"{OPERATORS[operator]}: creating {n} RayClusters")
            t0 = time.monotonic()
            await asyncio.gather(*(create(i, name) for i, name in enumerate(names)))
            created = time.monotonic() - t0
            await wait_for(lambda: len(tracker.ready_at) >= n, timeout=args.timeout, every=0.1,
                           what=f"{n} RayClusters to be ready", seen=tracker.state_summary)  # fmt: skip
            ready = max(tracker.ready_at.values()) - t0
            all_workers = (tracker.all_workers_at or math.nan) - t0
            log(f"{OPERATORS[operator]}: all ready after {ready:.1f}s (creates took {created:.1f}s)")
            drained = await settle(running.metrics_url, timeout=args.timeout)
            log(f"{OPERATORS[operator]}: work queue empty {drained:.1f}s after that; scaling {m}")
            targets = [names[i * n // m] for i in range(m)]
            await scale(client=client, namespace=namespace, tracker=tracker, targets=targets, args=args)
            cpu = sampler.finish()
            stats = controller_stats(running.metrics_url)
        finally:
            if sampler is not None:
                sampler.finish()
            running.stop()
        await asyncio.sleep(1.0)  # the audit events of its closed watches
        requests = Requests.read(audit, start=audit_start, operator=operator)
        if not requests.by_verb:
            raise RuntimeError(f"no audit events from {operator}'s client; seen: {requests.agents.most_common(8)}")
        lat = sorted(tracker.latencies.values())
        return {
            "namespace": namespace,
            "operator_log": str(running.log),
            "time_to_ready_s": ready,
            "queue_drained_s": drained,
            "creates_s": created,
            "all_workers_created_s": all_workers,
            "scale_p50_ms": 1000 * percentile(lat, 50),
            "scale_p99_ms": 1000 * percentile(lat, 99),
            "scale_samples": len(lat),
            "scale_latencies_ms": {name: round(1000 * value, 1) for name, value in sorted(tracker.latencies.items())},
            "peak_rss_mib": sampler.peak_rss / 2**20,
            "rss_samples": sampler.samples,
            "cpu_s": cpu,
            **stats,
            "api_requests": sum(requests.by_verb.values()),
            "api_server_s": requests.server_seconds,
            "api_server_mean_ms": requests.server_mean_ms(),
            "api_by_verb": dict(requests.by_verb),
            "api_top": dict(requests.by_target.most_common(12)),
            "user_agents": dict(requests.agents.most_common(8)),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if cleanup:
            log(f"{OPERATORS[operator]}: deleting namespace {namespace}")
            await delete_namespace(store, namespace, timeout=120 + 0.5 * n)
        await store.close()


async def settle(metrics_url: str, *, timeout: float) -> float:
    """Seconds until the RayCluster work queue is empty (twice in a row, 0.5 s apart): the creation wave's
    requeues are done, so the scale-ups measure a live but idle operator, not its backlog."""
    t0, depths = time.monotonic(), [-1.0]

    async def empty() -> bool:
        sample = await asyncio.to_thread(raycluster_samples, metrics_url)
        depths.append(sample["workqueue_depth"])
        return depths[-2:] == [0.0, 0.0]

    await wait_for(empty, timeout=timeout, every=0.5, what="an empty RayCluster work queue", seen=lambda: depths[-5:])
    return time.monotonic() - t0


async def scale(
    *, client: httpx2.AsyncClient, namespace: str, tracker: Tracker, targets: list[str], args: argparse.Namespace
) -> None:
    """Patch each target's worker replicas 3 → 4, one every ``scale_interval`` s; wait for every new pod."""
    ops = json.dumps([{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 4}])
    headers = {"Content-Type": "application/json-patch+json"}
    for name in targets:
        # Every old worker must have been seen, so a late ADDED event cannot pass for the new one.
        await tracker.seen_workers(name, count=3)
        tracker.expect[name] = (time.monotonic(), frozenset(tracker.workers[name]))
        response = await client.patch(f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters/{name}", content=ops,
                                      headers=headers)  # fmt: skip
        response.raise_for_status()
        await asyncio.sleep(args.scale_interval)
    await wait_for(lambda: len(tracker.latencies) >= len(targets), timeout=args.timeout, what="every scale-up pod",
                   seen=lambda: f"still waiting for {sorted(set(targets) - set(tracker.latencies))[:10]}")  # fmt: skip


def condition(status: dict[str, Any] | None, kind: str) -> bool:
    """Whether a status carries condition ``kind`` with status True."""
    conditions = (status or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


# ---- the shared stage --------------------------------------------------------------------------------
async def prepare(plane: ControlPlane, n: int) -> list[str]:
    """CRDs established and enough Ready kwok nodes for N clusters scaled up (5 pods each)."""
    store, _ = bench_store(plane.kubeconfig)
    try:
        crds = []
        for path in sorted((ROOT / "config" / "crd").glob("*.yaml")):
            for crd in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):  # 10x the pure-Python loader
                with contextlib.suppress(AlreadyExists):
                    await store.create(CRD, crd)
                crds.append(crd["metadata"]["name"])
        status: dict[str, Any] = {}

        async def established() -> bool:
            for name in crds:
                status[name] = (await store.get(CRD, name, namespace=None)).get("status")
            return all(condition(status[name], "Established") for name in crds)

        await wait_for(established, timeout=60, what="the ray.io CRDs to be Established", seen=lambda: status)
        plane.start_kwok()
        nodes = [f"kwok-bench-{i}" for i in range(max(1, math.ceil(5 * n / PODS_PER_NODE)))]
        for name in nodes:
            await store.create(NODE, kwok.node_manifest(name, cpu="1000", memory="4Ti", pods="1000"))
        ready: set[str] = set()

        async def nodes_ready() -> bool:
            for node in (await store.list(NODE, label_selector="type=kwok")).items:
                if condition(node.get("status"), "Ready"):
                    ready.add(node["metadata"]["name"])
            return ready.issuperset(nodes)

        await wait_for(nodes_ready, timeout=120, what=f"{len(nodes)} kwok nodes Ready", seen=lambda: sorted(ready))
        return nodes
    finally:
        await store.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="RayClusters created at once (default 100)")
    p.add_argument("--m", type=int, default=20, help="clusters scaled 3 -> 4 workers (default 20)")
    p.add_argument("--scale-interval", type=float, default=0.5, help="seconds between scale patches")
    p.add_argument("--only", choices=sorted(OPERATORS), help="run one operator only")
    p.add_argument("--order", default="kray,kuberay", help="run order (default kray,kuberay)")
    p.add_argument("--concurrency", type=int, default=1, help="--reconcile-concurrency of both (default 1)")
    p.add_argument("--scheduler", action="store_true", help="let kube-scheduler bind pods (default: nodeName)")
    p.add_argument("--timeout", type=float, help="seconds for each wait on the operator (default 120 + 0.6 N)")
    p.add_argument("--no-cleanup", dest="cleanup", action="store_false", help="keep each run's namespace")
    p.add_argument("--log-dir", type=Path, help="operator logs (default: a new temp dir, kept)")
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--profile-kray", type=Path, help="run kray's operator under cProfile, stats to this file")
    args = p.parse_args(argv)
    args.timeout = args.timeout or 120 + 0.6 * args.n
    args.log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kray-operator-bench-"))
    args.log_dir.mkdir(parents=True, exist_ok=True)
    order = [args.only] if args.only else [o.strip() for o in args.order.split(",")]
    if sorted(order) != sorted(set(order)) or not set(order) <= set(OPERATORS):
        p.error(f"--order: expected a permutation of {','.join(OPERATORS)}, got {args.order!r}")
    args.operators = order
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bins = ensure_binaries(echo=sys.stderr)
    audit_dir = Path(tempfile.mkdtemp(prefix="kray-bench-audit-"))
    policy, audit = audit_dir / "policy.yaml", audit_dir / "audit.log"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    # maxsize in MB: 0 would mean lumberjack's 100 MB rotation, which would cut a window in two.
    audit_args = (f"--audit-policy-file={policy}", f"--audit-log-path={audit}", "--audit-log-maxsize=1000000")
    results: dict[str, dict[str, Any]] = {}
    log(f"control plane (audit log {audit}); operator logs in {args.log_dir}")
    options = Options(scheduler=args.scheduler, extra_apiserver_args=audit_args)
    with ControlPlane(binaries=bins, options=options) as plane:
        nodes = asyncio.run(prepare(plane, args.n))
        log(f"{len(nodes)} kwok nodes ready")
        for i, operator in enumerate(args.operators):
            # The last run's namespace goes with the control plane: no need to wait for its deletion.
            cleanup = args.cleanup and i < len(args.operators) - 1
            run = run_operator(operator, args=args, plane=plane, bins=bins, nodes=nodes, audit=audit, cleanup=cleanup)
            results[operator] = asyncio.run(run)
            plane.assert_running()
    audit.unlink(missing_ok=True)
    settings = f"N={args.n} ({4 * args.n} pods), M={min(args.m, args.n)}, reconcile concurrency {args.concurrency}"
    print(f"\noperator bench: {settings}, {'kube-scheduler' if args.scheduler else 'nodeName'} binding\n")
    print(table(results))
    print("\n" + goals(results))
    for op, r in results.items():
        print(f"{OPERATORS[op]} top requests: " + ", ".join(f"{k}={v}" for k, v in r["api_top"].items()))
    if args.json:
        report = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "results": results}
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
