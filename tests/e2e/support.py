"""What the end-to-end tests share: the cluster they run on (a control plane of its own, a ``kray dev node``
agent whose pods are processes in their own network namespaces, kray's operator installed by its chart as a pod
on that node), running a command inside a pod's container, and bounded waits that say what they last saw.

Why a separate plane: with no kwok node, the scheduler binds every pod to the agent, so every pod the operator
and the controller-manager make really runs; the session's shared plane stays kwok-only for the others' tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod
from lightkube.resources.discovery_v1 import EndpointSlice

from kray.dev.controlplane import ControlPlane
from kray.local.containers import PROCESSES_ANNOTATION
from kray.local.node.ipam import pod_key
from kray.local.podrunner import pod_dir
from kray.local.volumes import join_argv
from tests.local.node.agent_helpers import AgentProcess, alive

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "kuberay-samples"
CHART = REPO / "charts" / "kray-operator"
OPERATOR_NS = "kray-system"

RayCluster = create_namespaced_resource("ray.io", "v1", "RayCluster", "rayclusters")
RayJob = create_namespaced_resource("ray.io", "v1", "RayJob", "rayjobs")
RayService = create_namespaced_resource("ray.io", "v1", "RayService", "rayservices")


@dataclass
class E2E:
    """The running cluster (see the module docstring)."""

    plane: ControlPlane
    client: Client
    agent: AgentProcess
    prefix: str
    pod_cidr: str
    kubectl_bin: Path
    helm_bin: Path
    notes: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return self.agent.name

    @property
    def state_dir(self) -> Path:
        return self.agent.state_dir

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.plane.env()}

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(self.kubectl_bin), *args],
            input=stdin,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
        return done.stdout

    def create(self, manifest: Mapping[str, Any]) -> None:
        self.client.create(codecs.from_dict(dict(manifest)))

    # -- what a failure message shows ------------------------------------------------------------------------

    def container_log(self, namespace: str, pod: str, container: str, *, lines: int = 20) -> str:
        path = pod_dir(self.state_dir, namespace, pod) / f"{container}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def operator_tail(self, lines: int = 25) -> str:
        pods = self.client.list(Pod, namespace=OPERATOR_NS)
        tails = [
            f"--- {p.metadata.name}:\n{self.container_log(OPERATOR_NS, p.metadata.name, 'kray-operator', lines=lines)}"
            for p in pods
            if p.metadata and p.metadata.name
        ]
        return "\n".join(tails) or "(no operator pod)"

    def pods_seen(self, namespace: str) -> str:
        out = []
        for p in self.client.list(Pod, namespace=namespace):
            status = p.status
            states = [
                f"{c.name}:{'ready' if c.ready else 'not-ready'}:r{c.restartCount}"
                for c in (status.containerStatuses or [] if status else [])
            ]
            name = p.metadata.name if p.metadata else "?"
            out.append(f"{name} {status.phase if status else '?'} {status.podIP if status else ''} {states}")
        return "; ".join(out) or "(no pods)"

    def report(self, namespace: str, *extra: str) -> str:
        """Pods of ``namespace`` and the operator's and agent's log tails."""
        parts = [*extra, f"pods: {self.pods_seen(namespace)}"]
        for p in self.client.list(Pod, namespace=namespace):
            name = p.metadata.name if p.metadata else None
            for c in (p.spec.initContainers or []) + p.spec.containers if p.spec and name else []:
                parts.append(f"--- {name}/{c.name} log:\n{self.container_log(namespace, str(name), c.name, lines=12)}")
        parts.append(f"operator log:\n{self.operator_tail()}")
        parts.append(f"agent log:\n{self.agent.tail()}")
        return "\n".join(parts)


def head_spec() -> dict[str, Any]:
    """A head-only cluster: 1 CPU, small memory."""
    resources = {"cpu": "1", "memory": "2Gi"}
    container = {
        "name": "ray-head",
        "image": "rayproject/ray:2.52.0",
        "resources": {"limits": resources, "requests": resources},
        "ports": [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"}],
    }
    return {
        "rayVersion": "2.52.0",
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}},
    }


def get_obj(client: Client, kind: Any, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        found = client.get(kind, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise
    return dict(found.to_dict())


def container_pid(client: Client, namespace: str, pod: str, container: str) -> int:
    """The pid of ``container``'s process, from the ``kray.io/processes`` record the agent keeps on the pod."""
    obj = client.get(Pod, pod, namespace=namespace).to_dict()
    records = json.loads((obj["metadata"].get("annotations") or {}).get(PROCESSES_ANNOTATION) or "{}")
    assert container in records, f"pod {namespace}/{pod} records no process for {container!r}: {records}"
    return int(records[container]["pid"])


def exec_in(
    client: Client, namespace: str, pod: str, container: str, argv: list[str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``argv`` run inside the container (its netns, hostname, mounts, env), as ``kubectl exec`` would."""
    pid = container_pid(client, namespace, pod, container)
    return subprocess.run(
        join_argv(python=sys.executable, pid=pid, argv=argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def removing(client: Client, kind: Any, name: str, namespace: str) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(ApiError):
            client.delete(kind, name, namespace=namespace)


# -- Ray as seen from inside a pod ----------------------------------------------------------------------------


def pods(client: Client, namespace: str, **labels: str) -> list[dict[str, Any]]:
    selector: dict[str, Any] = dict(labels)
    return [p.to_dict() for p in client.list(Pod, namespace=namespace, labels=selector or None)]


NODES = """
import json, urllib.request
with urllib.request.urlopen("http://127.0.0.1:8265/api/v0/nodes?limit=100&detail=0", timeout=10) as r:
    print(json.dumps(json.load(r)["data"]["result"]["result"]))
"""


def ray_nodes(client: Client, namespace: str, head: str) -> list[dict[str, Any]]:
    """Ray's own view of the cluster's nodes (node ip, state): what ``ray list nodes`` asks the head's dashboard,
    asked from inside the head pod (without the CLI's seconds of imports, as the tests poll it)."""
    done = exec_in(client, namespace, head, "ray-head", ["python", "-c", NODES])
    assert done.returncode == 0, f"the dashboard's node list: exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return list(json.loads(done.stdout))


def alive_ips(nodes: list[dict[str, Any]]) -> set[str]:
    return {str(n["node_ip"]) for n in nodes if n.get("state") == "ALIVE"}


@dataclass(frozen=True)
class Trace:
    """What a pod leaves on the node while it runs: its processes and its network namespace."""

    pod: str
    pids: tuple[int, ...]
    netns: str


def traces(e2e: E2E, namespace: str, **labels: str) -> list[Trace]:
    found = []
    for pod in pods(e2e.client, namespace, **labels):
        records = json.loads((pod["metadata"].get("annotations") or {}).get(PROCESSES_ANNOTATION) or "{}")
        pids = tuple(int(r["pid"]) for r in records.values())
        found.append(Trace(pod["metadata"]["name"], pids, f"{e2e.prefix}-{pod_key(pod['metadata']['uid'])}"))
    return found


def left_of(found: list[Trace]) -> list[str]:
    """The processes and namespaces of these pods that still exist."""
    left = [f"{t.pod}: pid {pid}" for t in found for pid in t.pids if alive(pid)]
    left += [f"{t.pod}: netns {t.netns}" for t in found if os.path.exists(f"/run/netns/{t.netns}")]
    return left


def service_endpoints(client: Client, namespace: str, service: str) -> list[tuple[str, bool]]:
    """``(pod name, ready)`` of every endpoint in the Service's EndpointSlices (what kube-proxy forwards to)."""
    found = []
    for endpoint_slice in client.list(
        EndpointSlice, namespace=namespace, labels={"kubernetes.io/service-name": service}
    ):
        for endpoint in endpoint_slice.endpoints or []:
            name = endpoint.targetRef.name if endpoint.targetRef else "?"
            found.append((str(name), bool(endpoint.conditions and endpoint.conditions.ready)))
    return found
