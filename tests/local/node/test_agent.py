"""``kray dev node`` against the real apiserver: the Node and its Lease, and pods bound to it run by the local
pod runner's code (readiness from a real HTTP probe, logs, CrashLoopBackOff, restartPolicy Never, the
kubelet's final delete). Pods are bound by ``spec.nodeName``, so no scheduler is involved; they share the
host's network here (no pod CIDR), so each server listens on a port the test picked free.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client, codecs
from lightkube.resources.core_v1 import Node, Pod

from kray.dev.controlplane import ControlPlane
from kray.dev.procs import free_port
from kray.dev.pytest_plugin import fresh_namespace
from kray.local.containers import pod_records
from kray.local.podrunner import pod_dir
from tests.local.node.agent_helpers import (
    AgentProcess,
    Lease,
    alive,
    condition,
    get_pod,
    node_name,
    node_removed,
    pod_manifest,
    state_dir_processes,
    wait_for,
)

pytestmark = pytest.mark.k8s

SERVER = (
    "import http.server as h, sys; print('serving', flush=True); "
    "h.test(h.SimpleHTTPRequestHandler, port=int(sys.argv[1]), bind='127.0.0.1')"
)


@pytest.fixture(scope="module")
def agent(
    k8s_control_plane: ControlPlane, k8s_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    name = node_name()
    root = tmp_path_factory.mktemp("node")
    args = ("--cpu", "3", "--memory", "5Gi", "--pods", "17", "--label", "kray.dev/test=agent")
    args += ("--taint", "kray.dev/agent=yes:NoSchedule")
    process = AgentProcess(plane=k8s_control_plane, name=name, state_dir=root / "state", args=args)
    with node_removed(k8s_client, name):
        process.start()
        try:
            wait_for(
                lambda: condition(_node(k8s_client, name), "Ready") == "True",
                timeout=60,
                what=f"node {name} Ready",
                seen=process.tail,
            )
            yield process
        finally:
            code = process.stop()
            assert code == 0, f"the agent exited {code} on SIGTERM; log:\n{process.tail()}"
            assert state_dir_processes(process.state_dir) == [], "pod processes outlived the agent's stop"


@pytest.fixture
def namespace(k8s_client: Client) -> Iterator[str]:
    with fresh_namespace(k8s_client, f"t-node-{secrets.token_hex(3)}") as name:
        yield name


def _node(client: Client, name: str) -> dict[str, Any] | None:
    try:
        return client.get(Node, name).to_dict()  # type: ignore[no-any-return]
    except Exception:
        return None


def test_node_registered_with_capacity_and_lease_renewed(agent: AgentProcess, k8s_client: Client) -> None:
    node = _node(k8s_client, agent.name)
    assert node is not None
    status = node["status"]
    assert status["capacity"]["cpu"] == "3"
    assert status["capacity"]["memory"] == "5Gi"
    assert status["capacity"]["pods"] == "17"
    assert status["allocatable"]["cpu"] == "3"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert kinds == {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == agent.name
    assert node["metadata"]["labels"]["kray.dev/test"] == "agent"
    assert {"key": "kray.dev/agent", "value": "yes", "effect": "NoSchedule"} in node["spec"]["taints"]

    def renew_time() -> str:
        try:
            lease = k8s_client.get(Lease, agent.name, namespace="kube-node-lease").to_dict()
        except ApiError:
            return ""
        return str(lease["spec"]["renewTime"])

    first = wait_for(renew_time, timeout=30, what="the node Lease", seen=agent.tail)
    lease = k8s_client.get(Lease, agent.name, namespace="kube-node-lease").to_dict()
    assert lease["spec"]["holderIdentity"] == agent.name
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["name"] == agent.name
    wait_for(lambda: renew_time() != first, timeout=25, what="the Lease renewed (every 10 s)", seen=renew_time)


def test_pod_runs_ready_by_probe_logs_and_final_delete(agent: AgentProcess, k8s_client: Client, namespace: str) -> None:
    port = free_port()
    probe = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}
    command = [sys.executable, "-c", SERVER, str(port)]
    k8s_client.create(codecs.from_dict(pod_manifest("web", namespace, agent.name, command, probe=probe)))
    seen: dict[str, Any] = {}

    def ready() -> bool:
        seen["pod"] = get_pod(k8s_client, "web", namespace)
        return condition(seen["pod"], "Ready") == "True"

    wait_for(ready, timeout=60, what="pod web Ready (its readiness probe)", seen=lambda: (seen, agent.tail()))
    pod = seen["pod"]
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIP"] == "127.0.0.1"
    assert pod["status"]["hostIP"] == "127.0.0.1"
    record = pod_records(pod)["main"]
    assert alive(record.pid)
    log = pod_dir(agent.state_dir, namespace, "web") / "main.log"
    assert "serving" in log.read_text()

    k8s_client.delete(Pod, "web", namespace=namespace)
    wait_for(
        lambda: get_pod(k8s_client, "web", namespace) is None,
        timeout=30,
        what="pod web gone after its delete (the agent's final delete)",
        seen=lambda: (get_pod(k8s_client, "web", namespace) or {}).get("metadata"),
    )
    wait_for(lambda: not alive(record.pid), timeout=10, what=f"pid {record.pid} gone", seen=lambda: "")
    assert not log.parent.exists()


def test_crash_loop_back_off(agent: AgentProcess, k8s_client: Client, namespace: str) -> None:
    command = ["sh", "-c", "echo boom; exit 3"]
    k8s_client.create(codecs.from_dict(pod_manifest("crash", namespace, agent.name, command)))
    seen: dict[str, Any] = {}

    def backing_off() -> bool:
        seen["pod"] = get_pod(k8s_client, "crash", namespace)
        statuses = ((seen["pod"] or {}).get("status") or {}).get("containerStatuses") or [{}]
        waiting = (statuses[0].get("state") or {}).get("waiting") or {}
        return waiting.get("reason") == "CrashLoopBackOff" and statuses[0].get("restartCount", 0) >= 1

    wait_for(backing_off, timeout=60, what="CrashLoopBackOff with a restart", seen=lambda: seen)
    entry = seen["pod"]["status"]["containerStatuses"][0]
    assert entry["lastState"]["terminated"]["exitCode"] == 3
    assert "boom" in entry["lastState"]["terminated"]["message"]
    assert condition(seen["pod"], "Ready") == "False"


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (2, "Failed")])
def test_restart_never_pod_ends(agent: AgentProcess, k8s_client: Client, namespace: str, code: int, phase: str) -> None:
    name = f"once-{code}"
    command = ["sh", "-c", f"echo done; exit {code}"]
    k8s_client.create(codecs.from_dict(pod_manifest(name, namespace, agent.name, command, restart="Never")))
    seen: dict[str, Any] = {}

    def ended() -> bool:
        seen["pod"] = get_pod(k8s_client, name, namespace)
        return ((seen["pod"] or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")

    wait_for(ended, timeout=60, what=f"pod {name} ended", seen=lambda: seen)
    status = seen["pod"]["status"]
    assert status["phase"] == phase
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == code
    assert status["containerStatuses"][0]["restartCount"] == 0
