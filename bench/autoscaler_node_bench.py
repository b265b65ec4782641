"""Ray's autoscaler on kray's operator and the node agent: how long from a task that needs a new worker until it runs
on one, and from idle until the worker is gone, with autoscaler v1 and v2. Prints a table.

Why: issue 11 asks what autoscaling costs on kray -- the part that is Ray's (the autoscaler's loop, ``ray start`` of
the worker) against the part that is kray's (the operator making the pod, the agent starting it). The phases split
the wait so the table shows which one dominates.

The cluster: KubeRay's ``ray-cluster.autoscaler.yaml`` / ``ray-cluster.autoscaler-v2.yaml`` (head 1 CPU 2 GiB with
``num-cpus: 0``, a 1-CPU worker group from 0 replicas), ``version`` pinned (the v1 sample names none: Ray >= 2.47
then picks v2 under KubeRay) and ``idleTimeoutSeconds`` set by ``--idle``. Each round, from 0 workers, a driver in
the head pod (as ``kubectl exec``) runs one 1-CPU task sleeping 1 s; the bench polls the RayCluster and the pods
every 0.2 s. All times are wall-clock seconds of the one machine (the task stamps its own start and end):

* ``replicas raised`` -- submit → the autoscaler patched the group's ``replicas`` up;
* ``worker pod running`` -- submit → the new pod's containers started (the operator made it, the scheduler bound
  it, the agent started its ``ray start``; KubeRay's readiness probe waits 10 s more, so Ready is not the mark);
* ``task running`` -- submit → the task started on the new worker (its Ray node is not the head's);
* ``asked down`` -- task end → the autoscaler patched ``replicas`` back to 0 (``workersToDelete``): includes the
  idle timeout;
* ``worker gone`` -- task end → the pod deleted and gone.

    .venv/bin/python bench/autoscaler_node_bench.py [--repeat 1] [--only v1,v2] [--idle 10] [--timeout 240]

Progress goes to stderr, the table (metric | v1 | v2) to stdout; with ``--repeat N`` each cell is the median.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from lightkube import ApiError, codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Namespace, Pod
from node_bench_cluster import NodeCluster, wait_for

from kray.local.containers import PROCESSES_ANNOTATION
from kray.local.volumes import join_argv

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "kuberay-samples"
FILES = {"v1": "ray-cluster.autoscaler.yaml", "v2": "ray-cluster.autoscaler-v2.yaml"}
VERSIONS = tuple(FILES)
GROUP = "small-group"
RayCluster = create_namespaced_resource("ray.io", "v1", "RayCluster", "rayclusters")
ROWS = (
    ("replicas raised (s)", "raised"),
    ("worker pod running (s)", "pod_running"),
    ("task running (s)", "running"),
    ("asked down (s)", "asked_down"),
    ("worker gone (s)", "gone"),
)
DRIVER = """
import json, time, ray
ray.init()
head = ray.get_runtime_context().get_node_id()
@ray.remote(num_cpus=1)
def work():
    start = time.time()
    time.sleep(1)
    return ray.get_runtime_context().get_node_id(), start, time.time()
submitted = time.time()
node, start, end = ray.get(work.remote())
print(json.dumps({"submitted": submitted, "start": start, "end": end, "node": node, "head": head}))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%X')}] {message}", file=sys.stderr, flush=True)


def manifests(version: str, namespace: str, idle: int) -> list[dict[str, Any]]:
    cluster, config_map = (copy.deepcopy(d) for d in yaml.safe_load_all((SAMPLES / FILES[version]).read_text()))
    for obj in (cluster, config_map):
        obj["metadata"]["namespace"] = namespace
    cluster["spec"]["autoscalerOptions"] |= {"version": version, "idleTimeoutSeconds": idle}
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["resources"] = {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}
    return [config_map, cluster]


class Sample:
    """One autoscaling sample in a namespace of its own on the node cluster."""

    def __init__(self, node: NodeCluster, version: str, *, idle: int) -> None:
        assert node.client is not None
        self.node, self.client, self.version, self.idle = node, node.client, version, idle
        self.namespace = f"ab-{version}-{secrets.token_hex(2)}"
        self.name = "raycluster-autoscaler"

    def __enter__(self) -> Sample:
        self.client.create(Namespace(metadata={"name": self.namespace}))  # type: ignore[arg-type]
        for manifest in manifests(self.version, self.namespace, self.idle):
            self.client.create(codecs.from_dict(manifest))
        wait_for(lambda: self.state() == "ready", 240, f"RayCluster {self.version} ready", self.seen)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ApiError):
            self.client.delete(Namespace, self.namespace)

    def state(self) -> str | None:
        return (self.cluster().get("status") or {}).get("state")

    def cluster(self) -> dict[str, Any]:
        return dict(self.client.get(RayCluster, self.name, namespace=self.namespace).to_dict())  # type: ignore[no-untyped-call]

    def group(self) -> tuple[int, list[str]]:
        group = next(g for g in self.cluster()["spec"]["workerGroupSpecs"] if g["groupName"] == GROUP)
        return int(group.get("replicas") or 0), list((group.get("scaleStrategy") or {}).get("workersToDelete") or [])

    def workers(self) -> list[Pod]:
        return list(self.client.list(Pod, namespace=self.namespace, labels={"ray.io/group": GROUP}))

    def seen(self) -> str:
        return f"RayCluster: {self.cluster().get('status')}; group: {self.group()}\n{self.node.report(self.namespace)}"

    def driver(self) -> subprocess.Popen[str]:
        heads = list(self.client.list(Pod, namespace=self.namespace, labels={"ray.io/node-type": "head"}))
        records = json.loads((heads[0].metadata.annotations or {})[PROCESSES_ANNOTATION])  # type: ignore[union-attr]
        argv = join_argv(python=sys.executable, pid=int(records["ray-head"]["pid"]), argv=["python", "-c", DRIVER])
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def round(self, *, timeout: float) -> dict[str, float]:
        """From 0 workers: the task's wait for a new worker, then the worker's idle removal."""
        wait_for(lambda: self.group() == (0, []) and not self.workers(), timeout, "no worker at the start", self.seen)
        at: dict[str, float] = {}
        driver = self.driver()
        deadline = time.monotonic() + timeout
        while driver.poll() is None:
            now = time.time()
            if "raised" not in at and self.group()[0] > 0:
                at["raised"] = now
            if "pod_running" not in at and any(p.status and p.status.phase == "Running" for p in self.workers()):
                at["pod_running"] = now
            if time.monotonic() > deadline:
                driver.kill()
                raise TimeoutError(f"the task did not run in {timeout}s: {at}\n{self.seen()}")
            time.sleep(0.2)
        out, err = driver.communicate()
        if driver.returncode != 0:
            raise RuntimeError(f"the driver exited {driver.returncode}:\n{err[-3000:]}")
        task = json.loads(out.strip().splitlines()[-1])
        if task["node"] == task["head"]:
            raise RuntimeError(f"the task ran on the head: {task}")

        def down() -> bool:
            now = time.time()
            if "asked_down" not in at and self.group()[0] == 0:
                at["asked_down"] = now
            if "asked_down" in at and not self.workers():
                at["gone"] = now
            return "gone" in at

        wait_for(down, timeout + self.idle, "the idle worker removed", self.seen)
        submitted, end = float(task["submitted"]), float(task["end"])
        return {
            "raised": at.get("raised", task["start"]) - submitted,
            "pod_running": at.get("pod_running", task["start"]) - submitted,
            "running": float(task["start"]) - submitted,
            "asked_down": at["asked_down"] - end,
            "gone": at["gone"] - end,
        }


def table(results: dict[str, dict[str, float]]) -> str:
    header = f"{'metric':<22} | {'v1':>8} | {'v2':>8}"
    lines = [header, "-" * len(header)]
    for label, key in ROWS:
        cells = [f"{results[v][key]:.2f}" if key in results.get(v, {}) else "-" for v in VERSIONS]
        lines.append(f"{label:<22} | {cells[0]:>8} | {cells[1]:>8}")
    return "\n".join(lines)


def parse_only(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in chosen if c not in VERSIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(VERSIONS)}, got {text!r}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=1, help="rounds per version (the table shows medians)")
    parser.add_argument("--only", type=parse_only, default=VERSIONS, help="some of v1,v2")
    parser.add_argument("--idle", type=int, default=10, help="the samples' autoscalerOptions.idleTimeoutSeconds")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds each phase may take")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: expected at least 1")
    if args.idle < 0:
        parser.error("--idle: expected seconds >= 0")
    start = os.getloadavg()
    rounds: dict[str, list[dict[str, float]]] = {}
    with NodeCluster(log=log) as node:
        for version in args.only:
            started = time.monotonic()
            with Sample(node, version, idle=args.idle) as sample:
                log(f"{version}: cluster ready in {time.monotonic() - started:.1f}s (not counted)")
                for n in range(1, args.repeat + 1):
                    measured = sample.round(timeout=args.timeout)
                    log(f"{version} round {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in measured.items()))
                    rounds.setdefault(version, []).append(measured)
        setup = node.setup_phases()
    medians = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in rounds.items()}
    print(table(medians))
    end = os.getloadavg()
    print(f"rounds: {args.repeat} (medians); idleTimeoutSeconds {args.idle}; {os.cpu_count()} CPUs; load average "
          f"at start {start[0]:.2f}, at end {end[0]:.2f}")  # fmt: skip
    print(f"node setup: {setup}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
