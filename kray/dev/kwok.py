"""kwok: simulated nodes whose pods go Running/Ready without a kubelet, for operator scale benchmarks.

Why: the operator issues need hundreds of worker pods that become Ready, on a 2-core machine with no
container runtime. kwok (built by hack/k8s/build.sh) fakes the kubelet for nodes it manages: it
initialises and heartbeats them (leases) and walks pods bound to them through Pending -> Running/Ready,
completes Job pods, and finalises deletions. The bare kwok binary has no stages, so we pass the upstream
"fast" stage files that the build script copied next to the binaries (kwokctl's defaults).

Only nodes labelled ``type=kwok`` are managed, so real components are never touched. Pods reach those
nodes through kube-scheduler (or an explicit ``spec.nodeName``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kray.dev.binaries import Binaries
from kray.dev.procs import ProcessSpec

NODE_LABEL = ("type", "kwok")
POD_CIDR = "10.244.0.0/16"
STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def stage_files(binaries: Binaries) -> list[Path]:
    files = [binaries.kwok_stages / s for s in STAGES]
    if missing := [str(f) for f in files if not f.is_file()]:
        raise FileNotFoundError(f"kwok stage files missing (rerun hack/k8s/build.sh kwok): {missing}")
    return files


def spec(*, binaries: Binaries, kubeconfig: Path, workdir: Path, port: int) -> ProcessSpec:
    """The kwok controller process; serves /healthz on 127.0.0.1:``port``."""
    config = [f"--config={f}" for f in stage_files(binaries)]
    argv = (
        str(binaries.path("kwok")),
        f"--kubeconfig={kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-label-selector={NODE_LABEL[0]}={NODE_LABEL[1]}",
        f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{port}",
        *config,
    )
    # HOME points kwok's default config (~/.kwok/kwok.yaml) into the work dir: user files never leak in.
    return ProcessSpec("kwok", argv, workdir / "logs" / "kwok.log", env={"HOME": str(workdir)})


def node_manifest(
    name: str,
    *,
    cpu: str = "32",
    memory: str = "256Gi",
    pods: str = "110",
    gpus: int = 0,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node object kwok will manage (capacity is what the scheduler packs against)."""
    capacity = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "1Ti"}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                NODE_LABEL[0]: NODE_LABEL[1],
                **(labels or {}),
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }
