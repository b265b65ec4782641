"""A node agent killed with -9 and started again: the processes its pods record are adopted (same pid, never
started twice), a pod deleted meanwhile is stopped and let go, a pod force-deleted meanwhile leaves an orphan
that is killed at start; and a stopped agent (SIGTERM) leaves no process behind.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.resources.core_v1 import Pod

from kray.dev.controlplane import ControlPlane
from kray.dev.pytest_plugin import fresh_namespace
from kray.local.containers import pod_records
from kray.local.podrunner import pod_dir
from kray.local.procs import START_MARKER
from tests.local.node.agent_helpers import (
    AgentProcess,
    alive,
    get_pod,
    node_name,
    node_removed,
    pod_manifest,
    state_dir_processes,
    wait_for,
)

pytestmark = pytest.mark.k8s


@pytest.fixture
def namespace(k8s_client: Client) -> Iterator[str]:
    with fresh_namespace(k8s_client, f"t-node-{secrets.token_hex(3)}") as name:
        yield name


def _running_pid(client: Client, name: str, namespace: str, agent: AgentProcess) -> int:
    seen: dict[str, Any] = {}

    def running() -> int | None:
        seen["pod"] = get_pod(client, name, namespace)
        pod = seen["pod"] or {}
        record = pod_records(pod).get("main")
        if (pod.get("status") or {}).get("phase") == "Running" and record is not None:
            return record.pid
        return None

    pid: int = wait_for(running, timeout=60, what=f"pod {name} Running", seen=lambda: (seen, agent.tail()))
    return pid


def test_an_agent_killed_9_is_adopted_on_restart_and_a_stop_leaves_nothing(
    k8s_control_plane: ControlPlane, k8s_client: Client, namespace: str, tmp_path: Path
) -> None:
    name = node_name()
    agent = AgentProcess(plane=k8s_control_plane, name=name, state_dir=tmp_path / "state")
    with node_removed(k8s_client, name):
        agent.start()
        try:
            sleeper = ["sh", "-c", "echo started; exec sleep 1000"]
            for pod in ("keep", "deleted", "forced"):
                k8s_client.create(codecs.from_dict(pod_manifest(pod, namespace, name, sleeper)))
            pids = {pod: _running_pid(k8s_client, pod, namespace, agent) for pod in ("keep", "deleted", "forced")}

            agent.kill()
            assert all(alive(pid) for pid in pids.values()), "kill -9 of the agent stopped a pod"
            k8s_client.delete(Pod, "deleted", namespace=namespace)  # Terminating until a kubelet lets it go
            k8s_client.delete(Pod, "forced", namespace=namespace, grace_period=0)  # gone at once: an orphan
            assert get_pod(k8s_client, "deleted", namespace) is not None

            agent.start()
            wait_for(
                lambda: not alive(pids["forced"]),
                timeout=30,
                what="the force-deleted pod's process killed at start",
                seen=agent.tail,
            )
            wait_for(
                lambda: get_pod(k8s_client, "deleted", namespace) is None and not alive(pids["deleted"]),
                timeout=30,
                what="the pod deleted meanwhile stopped and let go",
                seen=lambda: (get_pod(k8s_client, "deleted", namespace) or {}).get("metadata"),
            )
            assert _running_pid(k8s_client, "keep", namespace, agent) == pids["keep"]
            assert alive(pids["keep"])
            log = (pod_dir(agent.state_dir, namespace, "keep") / "main.log").read_text()
            assert log.count(START_MARKER) == 1, f"the adopted container was started again:\n{log}"
        finally:
            code = agent.stop()
        assert code == 0, f"the agent exited {code} on SIGTERM; log:\n{agent.tail()}"
        assert not alive(pids["keep"])
        assert state_dir_processes(agent.state_dir) == []
