"""``kray operator`` as a user runs it: flags, namespace scoping, probes, metrics, JSON logs, SIGTERM.

The operator is its own process against the real test control plane (kube-apiserver, etcd,
controller-manager, scheduler, kwok nodes that report pods Running/Ready).
"""

from __future__ import annotations

import asyncio
import copy
import re
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray._kube.store import KubeStore
from kray.store import NAMESPACE, POD, RAYCLUSTER
from kray.store.errors import NotFound
from tests.operator.support import eventually, running_operator

pytestmark = [pytest.mark.k8s]
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "raycluster.yaml").read_text())


def cluster(name: str, namespace: str) -> dict[str, Any]:
    manifest = copy.deepcopy(EXAMPLE)
    manifest["metadata"] = {"name": name, "namespace": namespace}
    return manifest


async def state(store: KubeStore, name: str, namespace: str) -> str | None:
    try:
        found = await store.get(RAYCLUSTER, name, namespace=namespace)
    except NotFound:
        return None
    return (found.get("status") or {}).get("state")


async def test_kray_operator_reconciles_its_namespaces_only_and_reports_itself(
    k8s_control_plane: Any, ray_crds: Any, k8s_namespace: str, kwok_nodes: Any, tmp_path: Path
) -> None:
    kwok_nodes(1)
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    other = f"t-unwatched-{secrets.token_hex(3)}"
    await store.create(NAMESPACE, {"metadata": {"name": other}})
    try:
        with running_operator(
            kubeconfig=Path(k8s_control_plane.kubeconfig),
            log_dir=tmp_path,
            namespaces=[k8s_namespace],
            extra=["--enable-leader-election=false", "--reconcile-concurrency", "2"],
        ) as operator:
            status, _ = await asyncio.to_thread(operator.get, "/readyz")
            await store.create(RAYCLUSTER, cluster("watched", k8s_namespace))
            await store.create(RAYCLUSTER, cluster("unwatched", other))

            async def ready() -> str | None:
                return "ok" if await state(store, "watched", k8s_namespace) == "ready" else None

            await eventually(ready, timeout=90, what="RayCluster watched to be ready")
            ready_status = await asyncio.to_thread(operator.get, "/readyz")
            assert ready_status == (200, "ok")
            assert await state(store, "unwatched", other) is None
            assert not (await store.list(POD, namespace=other)).items, "pods created outside --watch-namespace"

            metrics = await asyncio.to_thread(operator.metrics)
            for line in (
                'controller_runtime_reconcile_total{controller="raycluster",result="success"}',
                'controller_runtime_max_concurrent_reconciles{controller="raycluster"} 2.0',
                f'kuberay_cluster_info{{name="watched",namespace="{k8s_namespace}"',
                f'kuberay_cluster_condition_provisioned{{condition="true",name="watched",namespace="{k8s_namespace}"',
                f'kuberay_cluster_provisioned_duration_seconds{{name="watched",namespace="{k8s_namespace}"',
            ):
                assert _has(metrics, line), f"/metrics lacks {line}:\n{_grep(metrics, line)}"
            assert "unwatched" not in metrics

            t0 = time.monotonic()
            code = await asyncio.to_thread(operator.terminate)
            assert code == 0, operator.tail()
            assert time.monotonic() - t0 < 35
            records = operator.log_lines()
            assert records, f"no JSON log lines:\n{operator.tail()}"
            assert all({"event", "level", "ts"} <= set(r) for r in records)
            assert any(r["event"] == "operator.stopped" for r in records)
        assert status in (200, 500)  # before the first sync it may be either; after it, 200 (checked above)
    finally:
        await store.delete(NAMESPACE, other, namespace=None)
        await store.close()


def _has(metrics: str, prefix: str) -> bool:
    """``prefix`` matches a sample line whose labels may carry more (sorted) labels after it."""
    head, _, rest = prefix.partition("{")
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    tail = rest.rsplit("}", 1)[1].strip() if "}" in rest else ""
    for line in metrics.splitlines():
        if not line.startswith(head + "{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if wanted.items() <= labels.items() and (not tail or line.rsplit(" ", 1)[-1] == tail):
            return True
    return False


def _grep(metrics: str, prefix: str) -> str:
    name = prefix.split("{", 1)[0]
    return "\n".join(line for line in metrics.splitlines() if line.startswith(name)) or "(no such metric)"
