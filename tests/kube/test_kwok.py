"""kwok smoke test: simulated nodes become Ready and pods the real scheduler binds to them run.

Why: the operator scale benchmarks rely on this path (scheduler -> kwok node -> Running/Ready pod)
instead of a kubelet; if it breaks, those benchmarks would silently measure Pending pods.
"""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.resources.core_v1 import Node, Pod

from kray.dev.procs import wait_until

pytestmark = pytest.mark.k8s


def test_kwok_nodes_run_scheduled_pods(k8s_client: Client, k8s_namespace: str, kwok_nodes: Any) -> None:
    names = kwok_nodes(3, cpu="4", memory="16Gi")
    assert len(names) == 3
    assert k8s_client.get(Node, names[0]).status.capacity["cpu"] == "4"
    for i in range(6):
        k8s_client.create(
            codecs.from_dict(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"w-{i}", "namespace": k8s_namespace, "labels": {"app": "w"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "1"}}}]
                    },
                }
            )
        )

    def all_running_ready() -> bool:
        pods = list(k8s_client.list(Pod, namespace=k8s_namespace, labels={"app": "w"}))
        return len(pods) == 6 and all(
            p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in pods
        )

    wait_until(all_running_ready, timeout=90, what="6 pods to be Running/Ready on kwok nodes")
    placed = {p.spec.nodeName for p in k8s_client.list(Pod, namespace=k8s_namespace, labels={"app": "w"})}
    assert placed <= set(names)
    assert len(placed) >= 2  # 6 x 1 CPU cannot fit on one 4-CPU node: the scheduler really packed them
