"""A node agent's liveness as the control plane judges it: the Node's heartbeat advances while the agent runs;
killed with -9, its Lease stops and kube-controller-manager's node lifecycle controller (not the agent) turns
the Node Ready=Unknown with the unreachable taint and marks its pod not ready; started again, the Node is
Ready, the taint is gone and its pod is the same process, adopted and Ready again.

The session control plane's controller-manager declares a node dead after 25 s without a Lease renewal
(``FAST_NODE_MONITOR``; Kubernetes' default is 50 s), which keeps this test under a minute.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client, codecs
from lightkube.resources.core_v1 import Node

from kray.dev.controlplane import ControlPlane
from kray.dev.pytest_plugin import fresh_namespace
from kray.local.containers import pod_records
from kray.local.podrunner import pod_dir
from kray.local.procs import START_MARKER
from tests.local.node.agent_helpers import (
    AgentProcess,
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

UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture
def namespace(k8s_client: Client) -> Iterator[str]:
    with fresh_namespace(k8s_client, f"t-node-{secrets.token_hex(3)}") as name:
        yield name


def _node(client: Client, name: str) -> dict[str, Any]:
    try:
        return client.get(Node, name).to_dict()  # type: ignore[no-any-return]
    except ApiError:
        return {}


def _ready(node: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in (node.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"]
    return found[0] if found else {}


def _taints(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or ()}


def _summary(node: dict[str, Any]) -> dict[str, Any]:
    ready = _ready(node)
    return {
        "ready": {k: ready.get(k) for k in ("status", "reason", "lastHeartbeatTime", "lastTransitionTime")},
        "taints": sorted(_taints(node)),
    }


def test_a_killed_agent_goes_unknown_with_the_unreachable_taint_and_a_restart_brings_it_back(
    k8s_control_plane: ControlPlane, k8s_client: Client, namespace: str, tmp_path: Path
) -> None:
    name = node_name()
    agent = AgentProcess(
        plane=k8s_control_plane, name=name, state_dir=tmp_path / "state", args=("--status-interval", "2")
    )

    def seen() -> tuple[dict[str, Any], str]:
        return _summary(_node(k8s_client, name)), agent.tail()

    with node_removed(k8s_client, name):
        agent.start()
        try:
            wait_for(
                lambda: _ready(_node(k8s_client, name)).get("status") == "True", timeout=60, what="Ready", seen=seen
            )
            sleeper = ["sh", "-c", "echo started; exec sleep 1000"]
            k8s_client.create(codecs.from_dict(pod_manifest("sleeper", namespace, name, sleeper)))

            def running() -> int | None:
                pod = get_pod(k8s_client, "sleeper", namespace) or {}
                record = pod_records(pod).get("main")
                ready = condition(pod, "Ready") == "True"
                return record.pid if ready and (pod.get("status") or {}).get("phase") == "Running" and record else None

            pid: int = wait_for(running, timeout=60, what="the pod Running and Ready", seen=seen)

            # The status heartbeat: re-posted every --status-interval, the transition time unmoved.
            first = _ready(_node(k8s_client, name))
            later = wait_for(
                lambda: (r := _ready(_node(k8s_client, name)))["lastHeartbeatTime"] > first["lastHeartbeatTime"] and r,
                timeout=10,
                what="lastHeartbeatTime advanced (a status every 2 s)",
                seen=seen,
            )
            assert later["status"] == "True"
            assert later["lastTransitionTime"] == first["lastTransitionTime"]

            agent.kill()
            killed = time.monotonic()
            node = wait_for(
                lambda: (n := _node(k8s_client, name)) and _ready(n).get("status") == "Unknown" and n,
                timeout=45,  # the grace from the last heartbeat seen, plus two 2 s monitor periods
                what="the controller-manager's Ready=Unknown for the killed agent's node",
                seen=seen,
            )
            unknown_after = time.monotonic() - killed
            assert _ready(node)["reason"] == "NodeStatusUnknown"
            assert _ready(node)["message"] == "Kubelet stopped posting node status."
            # NoSchedule follows the condition. NoExecute (eviction after the pods' 300 s toleration) is withheld
            # while every node of the zone is down ("full disruption": the controller suspects itself), which
            # depends on what else this session's cluster holds, so it is not asserted.
            wait_for(
                lambda: (UNREACHABLE, "NoSchedule") in _taints(_node(k8s_client, name)),
                timeout=15,
                what="the unreachable taint",
                seen=seen,
            )
            assert alive(pid), "kill -9 of the agent stopped its pod"
            # The controller marks the dead node's pods not ready (MarkPodsNotReady).
            wait_for(
                lambda: condition(get_pod(k8s_client, "sleeper", namespace), "Ready") == "False",
                timeout=15,
                what="the pod marked not ready by the node lifecycle controller",
                seen=lambda: (get_pod(k8s_client, "sleeper", namespace) or {}).get("status"),
            )

            agent.start()
            restarted = time.monotonic()
            wait_for(
                lambda: (
                    (n := _node(k8s_client, name))
                    and _ready(n).get("status") == "True"
                    and not any(key == UNREACHABLE for key, _ in _taints(n))
                ),
                timeout=30,
                what="Ready=True and the unreachable taints removed after the restart",
                seen=seen,
            )
            ready_after = time.monotonic() - restarted
            assert wait_for(running, timeout=30, what="the adopted pod Ready again", seen=seen) == pid
            log = (pod_dir(agent.state_dir, namespace, "sleeper") / "main.log").read_text()
            assert log.count(START_MARKER) == 1, f"the adopted container was started again:\n{log}"
            print(f"kill -9 -> Unknown {unknown_after:.1f}s; restart -> Ready, untainted {ready_after:.1f}s")
        finally:
            code = agent.stop()
        assert code == 0, f"the agent exited {code} on SIGTERM; log:\n{agent.tail()}"
        assert not alive(pid)
        assert state_dir_processes(agent.state_dir) == []


def test_a_stalled_agent_marked_unknown_restores_its_node_and_pod_status_when_it_resumes(
    k8s_control_plane: ControlPlane, k8s_client: Client, namespace: str, tmp_path: Path
) -> None:
    """SIGSTOP, not kill: the agent's processes run on, but its Lease lapses, so the controller turns the Node
    Unknown and marks its pod not ready. Resumed, the agent sees the apiserver's status differ from its own
    and posts both again at its next check (the kubelet's node status and status manager do the same), long
    before its 60 s status interval."""
    name = node_name()
    agent = AgentProcess(plane=k8s_control_plane, name=name, state_dir=tmp_path / "state")

    def seen() -> tuple[dict[str, Any], Any, str]:
        pod_status = (get_pod(k8s_client, "sleeper", namespace) or {}).get("status") or {}
        return _summary(_node(k8s_client, name)), pod_status.get("conditions"), agent.tail()

    with node_removed(k8s_client, name):
        agent.start()
        assert agent.proc is not None
        stopped = False
        try:
            wait_for(
                lambda: _ready(_node(k8s_client, name)).get("status") == "True", timeout=60, what="Ready", seen=seen
            )
            sleeper = ["sh", "-c", "echo started; exec sleep 1000"]
            k8s_client.create(codecs.from_dict(pod_manifest("sleeper", namespace, name, sleeper)))
            wait_for(
                lambda: condition(get_pod(k8s_client, "sleeper", namespace), "Ready") == "True",
                timeout=60,
                what="the pod Ready",
                seen=seen,
            )

            agent.proc.send_signal(signal.SIGSTOP)
            stopped = True
            wait_for(
                lambda: (
                    _ready(_node(k8s_client, name)).get("status") == "Unknown"
                    and condition(get_pod(k8s_client, "sleeper", namespace), "Ready") == "False"
                ),
                timeout=45,
                what="the stalled agent's node Unknown and its pod not ready",
                seen=seen,
            )
            agent.proc.send_signal(signal.SIGCONT)
            stopped = False
            resumed = time.monotonic()
            wait_for(
                lambda: (
                    _ready(_node(k8s_client, name)).get("status") == "True"
                    and condition(get_pod(k8s_client, "sleeper", namespace), "Ready") == "True"
                ),
                timeout=15,  # checks every 10 s; the old fixed 60 s re-post came ~25 s after the resume
                what="the node Ready and the pod Ready again, posted by the resumed agent",
                seen=seen,
            )
            print(f"SIGCONT -> node and pod Ready {time.monotonic() - resumed:.1f}s")
        finally:
            if stopped:
                agent.proc.send_signal(signal.SIGCONT)
            code = agent.stop()
        assert code == 0, f"the agent exited {code} on SIGTERM; log:\n{agent.tail()}"
        assert state_dir_processes(agent.state_dir) == []
