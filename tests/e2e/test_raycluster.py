"""KubeRay's ``ray-cluster.sample.yaml`` made by kray's operator and run as real Ray on the node agent: every
node joins the head through the head Service, ``ray status`` in the head pod lists them, scaling up and down
with ``workersToDelete`` is what Ray sees, and deleting the cluster leaves no pod, process or namespace.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml
from lightkube.types import PatchType

from tests.e2e.support import (
    E2E,
    SAMPLES,
    RayCluster,
    alive_ips,
    exec_in,
    get_obj,
    left_of,
    pods,
    ray_nodes,
    traces,
)
from tests.local.node.agent_helpers import wait_for

# The session fixture (control plane, node agent, operator: ~700 s of bounded waits under load) counts in the
# first test's budget, and each wait here is sized for a loaded 2-core machine.
pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(2100)]

SAMPLE = yaml.safe_load((SAMPLES / "ray-cluster.sample.yaml").read_text())
MERGE = PatchType.MERGE
RESOURCES = {"ray-head": ("1", "2Gi"), "ray-worker": ("1", "1Gi")}


def scaled_sample(namespace: str) -> dict[str, Any]:
    """The sample with 1 CPU per pod and small memory; everything else as KubeRay ships it."""
    manifest: dict[str, Any] = copy.deepcopy(SAMPLE)
    manifest["metadata"]["namespace"] = namespace
    spec = manifest["spec"]
    for template in (spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])):
        for container in template["spec"]["containers"]:
            cpu, memory = RESOURCES[container["name"]]
            container["resources"] = {
                "limits": {"cpu": cpu, "memory": memory},
                "requests": {"cpu": cpu, "memory": memory},
            }
    return manifest


def listed_nodes(status: str) -> dict[str, int]:
    """The nodes ``ray status`` lists (Active and Idle), counted per node type (KubeRay's group names)."""
    section = status.split("Node status", 1)[-1].split("Pending:", 1)[0]
    counts: dict[str, int] = {}
    for line in section.splitlines():
        count, _, kind = line.strip().partition(" ")
        if count.isdigit():
            counts[kind] = counts.get(kind, 0) + int(count)
    return counts


def test_sample_raycluster_runs_real_ray_scales_and_leaves_nothing(e2e: E2E, namespace: str) -> None:
    t0 = time.monotonic()
    name = SAMPLE["metadata"]["name"]
    e2e.create(scaled_sample(namespace))
    seen: dict[str, Any] = {}

    def status() -> str:
        return e2e.report(namespace, f"RayCluster status: {(seen.get('rc') or {}).get('status')}")

    def ready() -> bool:
        seen["rc"] = get_obj(e2e.client, RayCluster, name, namespace)
        return ((seen["rc"] or {}).get("status") or {}).get("state") == "ready"

    wait_for(ready, timeout=180, what=f"RayCluster {name} ready", seen=status)
    head = pods(e2e.client, namespace, **{"ray.io/node-type": "head"})[0]["metadata"]["name"]

    def ray_sees(expected: int) -> set[str] | None:
        """Ray's alive nodes, once they are the Running pods (asked only once the pods are: each ask is a
        process in the head pod, and polling them would slow the very Ray starts awaited)."""
        running = {p["status"].get("podIP") for p in pods(e2e.client, namespace) if _ready(p)}
        if len(running) != expected:
            return None
        seen["ray"] = ray_nodes(e2e.client, namespace, head)
        ips = alive_ips(seen["ray"])
        return ips if ips == running else None

    def ray_seen() -> str:
        nodes = [(n.get("node_ip"), n.get("state")) for n in seen.get("ray") or ()]
        return e2e.report(namespace, f"Ray's nodes: {nodes}")

    wait_for(lambda: ray_sees(2), timeout=120, what="Ray to see the head and the worker", seen=ray_seen, every=2)
    done = exec_in(e2e.client, namespace, head, "ray-head", ["ray", "status"])
    assert done.returncode == 0, f"ray status exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert listed_nodes(done.stdout) == {"headgroup": 1, "workergroup": 1}, done.stdout
    print(f"ready and seen by Ray in {time.monotonic() - t0:.1f}s")

    # Up to two workers: the new one joins through the head Service. (Waits leave room for one restart of a Ray
    # container: under load Ray 2.52's raylet aborts when its dashboard agent takes over 15 s to start.)
    group = scaled_sample(namespace)["spec"]["workerGroupSpecs"][0] | {"replicas": 2}
    e2e.client.patch(RayCluster, name, {"spec": {"workerGroupSpecs": [group]}}, namespace=namespace, patch_type=MERGE)
    wait_for(lambda: ray_sees(3), timeout=180, what="Ray to see a second worker", seen=ray_seen, every=2)
    print(f"scaled up at {time.monotonic() - t0:.1f}s")

    # Down to one, naming the worker to delete.
    workers = sorted(p["metadata"]["name"] for p in pods(e2e.client, namespace, **{"ray.io/node-type": "worker"}))
    victim = workers[0]
    victim_ip = next(p["status"]["podIP"] for p in pods(e2e.client, namespace) if p["metadata"]["name"] == victim)
    group = scaled_sample(namespace)["spec"]["workerGroupSpecs"][0]
    group |= {"replicas": 1, "scaleStrategy": {"workersToDelete": [victim]}}
    e2e.client.patch(RayCluster, name, {"spec": {"workerGroupSpecs": [group]}}, namespace=namespace, patch_type=MERGE)
    ips = wait_for(lambda: ray_sees(2), timeout=90, what=f"Ray to see {victim} gone", seen=ray_seen, every=2)
    assert victim_ip not in ips
    wait_for(
        lambda: victim not in {p["metadata"]["name"] for p in pods(e2e.client, namespace)},
        timeout=60,
        what=f"pod {victim} gone",
        seen=lambda: e2e.report(namespace),
    )
    remaining = {p["metadata"]["name"] for p in pods(e2e.client, namespace, **{"ray.io/node-type": "worker"})}
    assert remaining == set(workers[1:]), f"workersToDelete named {victim}; left: {remaining}"
    print(f"scaled down at {time.monotonic() - t0:.1f}s")

    # Deleting the cluster leaves no pod, process or network namespace.
    found = traces(e2e, namespace)
    e2e.client.delete(RayCluster, name, namespace=namespace)
    wait_for(
        lambda: not pods(e2e.client, namespace) and not left_of(found),
        timeout=60,
        what="no pod, process or netns of the cluster",
        seen=lambda: e2e.report(namespace, f"left: {left_of(found)}"),
    )
    print(f"whole test {time.monotonic() - t0:.1f}s")


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    return status.get("phase") == "Running" and ready and pod["metadata"].get("deletionTimestamp") is None
