"""The node agent with a pod CIDR: each pod in its own network namespace (:class:`NodeNetwork`), probed at its
own IP, with the downward API's and the apiserver's addresses in its environment, the ServiceAccount token
the admission plugin's ``kube-api-access`` volume asks for (a TokenRequest), an exec probe run inside the
container; and nothing of the network left after the agent stops (the ``prefix`` fixture checks).
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.resources.core_v1 import Pod

from kray.dev.controlplane import ControlPlane
from kray.dev.pytest_plugin import fresh_namespace
from kray.local.podrunner import pod_dir
from tests.local.node.agent_helpers import (
    AgentProcess,
    condition,
    get_pod,
    node_name,
    node_removed,
    pod_manifest,
    state_dir_processes,
    wait_for,
)

pytestmark = pytest.mark.k8s

SERVER = """
import http.server, os
print("env", os.environ["POD_IP"], os.environ.get("KUBERNETES_SERVICE_HOST"), flush=True)
print("kubeconfig", os.environ.get("KUBECONFIG"), "hostname", os.environ.get("HOSTNAME"), "cwd", os.getcwd())
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("0.0.0.0", 8080), Ok).serve_forever()
"""
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@pytest.fixture
def namespace(k8s_client: Client) -> Iterator[str]:
    with fresh_namespace(k8s_client, f"t-node-{secrets.token_hex(3)}") as name:
        yield name


def test_a_pod_in_its_own_network_namespace(
    k8s_control_plane: ControlPlane, k8s_client: Client, namespace: str, tmp_path: Path, prefix: str, pod_cidr: str
) -> None:
    name = node_name()
    args = ("--pod-cidr", pod_cidr, "--net-prefix", prefix)
    agent = AgentProcess(plane=k8s_control_plane, name=name, state_dir=tmp_path / "state", args=args)
    with node_removed(k8s_client, name):
        agent.start()
        try:
            env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
            # Slack for a loaded machine (CI runs two lanes beside Ray): a missing token still fails every attempt.
            liveness = {
                "exec": {"command": ["test", "-s", TOKEN]},
                "periodSeconds": 1,
                "timeoutSeconds": 10,
                "failureThreshold": 3,
            }
            manifest = pod_manifest(
                "web",
                namespace,
                name,
                [sys.executable, "-c", SERVER],
                probe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                automount=True,
                env=env,
                livenessProbe=liveness,
            )
            k8s_client.create(codecs.from_dict(manifest))
            seen: dict[str, Any] = {}

            def ready() -> bool:
                seen["pod"] = get_pod(k8s_client, "web", namespace)
                return condition(seen["pod"], "Ready") == "True"

            log = pod_dir(agent.state_dir, namespace, "web") / "main.log"

            def shown() -> str:
                status = (seen.get("pod") or {}).get("status")
                text = log.read_text() if log.exists() else "(no log)"
                return f"status {status}\ncontainer log:\n{text}\nagent log:\n{agent.tail()}"

            wait_for(ready, timeout=60, what="pod web Ready at its own IP", seen=shown)
            status = seen["pod"]["status"]
            cidr = ipaddress.IPv4Network(pod_cidr)
            assert ipaddress.IPv4Address(status["podIP"]) in cidr
            assert status["hostIP"] == str(cidr.network_address + 1)
            assert status["containerStatuses"][0]["restartCount"] == 0, f"the exec probe (token file) failed: {shown()}"
            assert f"env {status['podIP']} 10.96.0.1" in log.read_text()
            # Nothing of the agent's environment (its kubeconfig), the pod's hostname, an image's working dir.
            assert "kubeconfig None hostname web cwd /\n" in log.read_text()

            k8s_client.delete(Pod, "web", namespace=namespace)
            wait_for(
                lambda: get_pod(k8s_client, "web", namespace) is None,
                timeout=30,
                what="pod web gone",
                seen=agent.tail,
            )
        finally:
            code = agent.stop()
        assert code == 0, f"the agent exited {code} on SIGTERM; log:\n{agent.tail()}"
        assert state_dir_processes(agent.state_dir) == []
