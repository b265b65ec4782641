"""The end-to-end cluster, once for the package (torn down after its last test, so it loads no other test): a
control plane of its own (controller-manager and scheduler, no kwok: every pod lands on the agent), a ``kray dev
node`` agent with a pod CIDR (each pod in its own network namespace), and kray's operator installed with its chart
(its CRDs applied first), running as a pod on that node with leader election on -- only pods resolve
``<svc>.<ns>.svc.cluster.local``, and the operator dials dashboards so.

Teardown uninstalls the chart, stops the agent with SIGTERM, and asserts that nothing of it is left: no process
of its pods, no network namespace, link or route carrying its prefix.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Node, Pod

from kray.dev.binaries import HELM, Binaries
from kray.dev.controlplane import ControlPlane, Options
from kray.dev.pytest_plugin import fresh_namespace
from kray.local.node.network import NodeNetwork
from tests.e2e.support import CHART, E2E, OPERATOR_NS, REPO
from tests.local.node.agent_helpers import AgentProcess, state_dir_processes, wait_for
from tests.local.node.conftest import host_routes, leftovers


def free_pod_cidr() -> str:
    """A /24 of 10.200.0.0/13 that no host route overlaps (another agent's included)."""
    taken = host_routes()
    for _ in range(100):
        net = ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.200.0.0")) + random.randrange(2048) * 256, 24))
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise AssertionError(f"no free /24 in 10.200.0.0/13; host routes: {taken}")


def _operator_ready(e2e: E2E) -> bool:
    for pod in e2e.client.list(Pod, namespace=OPERATOR_NS):
        conditions = (pod.status.conditions or []) if pod.status else []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return True
    return False


def _install_operator(e2e: E2E) -> None:
    argv = [
        str(e2e.helm_bin), "install", "kray-operator", str(CHART),
        "--namespace", OPERATOR_NS, "--create-namespace", "--skip-crds",
        "--set", "command={kray,operator}",
        "--set", "leaderElectionEnabled=true",
        "--set", "logging.stdoutEncoder=json",
        # The operator pod imports kray from this tree (a pod's environment is an image's, and the venv's own
        # path is the main checkout's): a worktree's e2e run tests the worktree's operator.
        "--set", "env[0].name=PYTHONPATH", "--set", f"env[0].value={REPO}",
        "--kubeconfig", str(e2e.plane.kubeconfig),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=e2e.env())
    assert done.returncode == 0, f"helm install exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    e2e.notes.append(f"helm installed at {time.strftime('%X')}")
    wait_for(
        lambda: _operator_ready(e2e),
        timeout=90,
        what="kray's operator pod Ready on the node agent",
        seen=lambda: e2e.report(OPERATOR_NS),
    )


def _uninstall_operator(e2e: E2E) -> None:
    argv = [str(e2e.helm_bin), "uninstall", "kray-operator", "--namespace", OPERATOR_NS, "--wait", "--timeout=60s"]
    argv += ["--kubeconfig", str(e2e.plane.kubeconfig)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=e2e.env())
    assert done.returncode == 0, f"helm uninstall exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    wait_for(
        lambda: not list(e2e.client.list(Pod, namespace=OPERATOR_NS)),
        timeout=60,
        what="the operator's pod gone after helm uninstall",
        seen=lambda: e2e.report(OPERATOR_NS),
    )


@pytest.fixture(scope="package")
def e2e(k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    t0 = time.monotonic()
    prefix = f"ke{secrets.token_hex(3)}"
    base = tmp_path_factory.mktemp("e2e")
    with ControlPlane(binaries=k8s_binaries, options=Options(scheduler=True)) as plane:
        client = Client(KubeConfig.from_file(plane.kubeconfig), field_manager="kray-e2e")
        agent = AgentProcess(
            plane=plane,
            name=f"ke-{secrets.token_hex(3)}",
            state_dir=base / "node",
            args=("--pod-cidr", free_pod_cidr(), "--net-prefix", prefix, "--cpu", "16", "--memory", "64Gi"),
        )
        cidr = agent.args[1]
        e2e = E2E(
            plane=plane,
            client=client,
            agent=agent,
            prefix=prefix,
            pod_cidr=cidr,
            kubectl_bin=k8s_binaries.path("kubectl"),
            helm_bin=k8s_binaries.tool(HELM),
        )
        agent.start()
        try:
            # The chart's CRDs by server-side apply (helm's own CRD install waits out a slow re-discovery).
            e2e.kubectl("apply", "--server-side", "--field-manager=kray-e2e", "-f", str(CHART / "crds"), timeout=120)
            e2e.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", timeout=90)
            wait_for(
                lambda: _node_ready(client, agent.name) or not agent.alive(),
                timeout=60,
                what=f"Node {agent.name} Ready",
                seen=agent.tail,
            )
            assert agent.alive(), f"the agent exited {agent.proc and agent.proc.poll()}:\n{agent.tail()}"
            e2e.notes.append(f"node Ready at {time.monotonic() - t0:.1f}s")
            _install_operator(e2e)
            e2e.notes.append(f"e2e cluster up in {time.monotonic() - t0:.1f}s")
            yield e2e
        finally:
            errors: list[str] = []
            try:
                _uninstall_operator(e2e)
            except AssertionError as error:
                errors.append(str(error))
            code = agent.stop()
            if code != 0:
                errors.append(f"the agent exited {code} on SIGTERM:\n{agent.tail()}")
            left = state_dir_processes(agent.state_dir)
            if left:
                errors.append(f"processes of the agent's pods left: {left}")
            net = leftovers(prefix)
            NodeNetwork.sweep(prefix)
            if net:
                errors.append(f"network objects left: {net}")
            with contextlib.suppress(Exception):
                client.delete(Node, agent.name)
            client.close()
            assert not errors, "\n".join(errors)


def _node_ready(client: Client, name: str) -> bool:
    with contextlib.suppress(Exception):
        node = client.get(Node, name)
        conditions = (node.status.conditions or []) if node.status else []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)
    return False


@pytest.fixture
def namespace(e2e: E2E, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the e2e plane, deleted afterwards."""
    stem = request.node.name.lower().replace("_", "-")[:30].strip("-")
    with fresh_namespace(e2e.client, f"e2e-{stem}-{secrets.token_hex(2)}") as name:
        yield name
