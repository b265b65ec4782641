"""KubeRay's own Go operator (v1.5.0, built from the module proxy) runs on kray's CRDs as a test peer.

Why: kray's generated CRDs are meant to be drop-in for KubeRay's. If KubeRay's operator can list/watch them,
decode them and write its status through them, they are; and the peer fixture this proves is what the
side-by-side comparisons use. The sample manifest is KubeRay's own (``ray-cluster.sample.yaml``); kwok
nodes stand in for kubelets, so the pods go Running/Ready and the cluster must reach ``ready``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.resources.core_v1 import Pod, Service

from kray.dev.kuberay import DEFAULT_GATES, KubeRayOperator, KubeRayOptions
from kray.dev.procs import StartupError, wait_until
from kray.dev.pytest_plugin import fresh_namespace

pytestmark = pytest.mark.k8s
SAMPLE = Path("/work/shared/kuberay-samples/ray-cluster.sample.yaml")
NAME = "raycluster-kuberay"


@pytest.fixture
def unwatched_namespace(k8s_client: Client) -> Iterator[str]:
    """A second namespace, ready for pods (ServiceAccount present), that the operator is not told about."""
    with fresh_namespace(k8s_client, f"t-kuberay-unwatched-{secrets.token_hex(3)}") as name:
        yield name


def _sample(resource: Any, namespace: str) -> Any:
    manifest = yaml.safe_load(SAMPLE.read_text())
    manifest["metadata"]["namespace"] = namespace
    return resource.from_dict(manifest)


def _ready(pod: Pod) -> bool:
    conds = pod.status.conditions if pod.status and pod.status.conditions else []
    return (
        pod.status is not None
        and pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in conds)
    )


def test_kuberay_operator_reconciles_sample_on_kray_crds(
    k8s_client: Client,
    ray_crds: list[str],
    k8s_namespace: str,
    unwatched_namespace: str,
    kwok_nodes: Any,
    kuberay_operator: Any,
    RayCluster: Any,
) -> None:
    assert "rayclusters.ray.io" in ray_crds
    kwok_nodes(1)
    op = kuberay_operator(namespaces=[k8s_namespace])
    # Every controller synced its informers on kray's CRDs (start() waits for it) and the gates took.
    assert op.alive()
    log = op.log.read_text()
    assert f"--watch-namespace={k8s_namespace}" in log  # the launch line
    assert all(f"{name}=true" in log for name in DEFAULT_GATES)

    k8s_client.create(_sample(RayCluster, unwatched_namespace))
    k8s_client.create(_sample(RayCluster, k8s_namespace))
    selector = {"ray.io/cluster": NAME}
    seen: dict[str, Any] = {}

    def cluster_ready() -> bool:
        pods = list(k8s_client.list(Pod, namespace=k8s_namespace, labels=selector))
        rc = k8s_client.get(RayCluster, NAME, namespace=k8s_namespace)
        status = rc.status or {}
        seen.update(
            pods={p.metadata.name: (p.status.phase if p.status else None) for p in pods},
            state=status.get("state"),
            ready_workers=status.get("readyWorkerReplicas"),
        )
        return status.get("state") == "ready" and len(pods) == 2 and all(_ready(p) for p in pods)

    wait_until(
        cluster_ready,
        timeout=45,
        what=f"RayCluster {k8s_namespace}/{NAME} ready with a Running/Ready head and worker",
        detail=lambda: f"last seen: {seen}\noperator log {op.log}:\n{op.log_tail()}",
    )

    rc = k8s_client.get(RayCluster, NAME, namespace=k8s_namespace)
    uid = rc.metadata.uid
    pods = list(k8s_client.list(Pod, namespace=k8s_namespace, labels=selector))
    by_type = {t: [p for p in pods if p.metadata.labels.get("ray.io/node-type") == t] for t in ("head", "worker")}
    assert len(by_type["head"]) == 1
    assert len(by_type["worker"]) == 1
    worker = by_type["worker"][0]
    assert worker.metadata.labels["ray.io/group"] == "workergroup"
    # RayMultiHostIndexing (alpha in v1.5.0, switched on by the fixture) labels every worker with its index.
    assert worker.metadata.labels.get("ray.io/worker-group-replica-index") == "0"
    for pod in pods:
        owners = [o for o in pod.metadata.ownerReferences or [] if o.controller]
        assert [(o.kind, o.uid) for o in owners] == [("RayCluster", uid)]
    svc = k8s_client.get(Service, f"{NAME}-head-svc", namespace=k8s_namespace)
    assert svc.spec.selector["ray.io/node-type"] == "head"
    assert {p.name: p.port for p in svc.spec.ports}.items() >= {
        "gcs-server": 6379,
        "dashboard": 8265,
        "client": 10001,
    }.items()
    status = rc.status
    assert status["readyWorkerReplicas"] == 1
    assert status["head"]["podName"] == by_type["head"][0].metadata.name

    # The other namespace's identical cluster was created first; the operator never touched it.
    ignored = k8s_client.get(RayCluster, NAME, namespace=unwatched_namespace)
    assert not ignored.status
    assert list(k8s_client.list(Pod, namespace=unwatched_namespace)) == []
    assert [s.metadata.name for s in k8s_client.list(Service, namespace=unwatched_namespace)] == []
    op.assert_running()


def test_kuberay_operator_start_failure_quotes_its_log(k8s_binaries: Any, tmp_path: Path) -> None:
    """An operator that exits during startup fails start() fast, with its own words, and leaves nothing."""
    op = KubeRayOperator(
        kubeconfig=tmp_path / "absent-kubeconfig",  # never read: the gate is rejected first
        binaries=k8s_binaries,
        log_dir=tmp_path,
        options=KubeRayOptions(gates={"NoSuchGate": True}, start_timeout=30),
    )
    with pytest.raises(StartupError) as info:
        op.start()
    message = str(info.value)
    assert "exited with 1" in message
    assert "NoSuchGate" in message  # the operator's own log line, quoted
    assert str(op.log) in message
    assert not op.alive()
