"""Two ``kray operator`` processes elect one leader on the Lease; a standby takes over when it dies.

Kill -9 of the leader (no release): the standby holds the Lease within 15 s and reconciles. SIGTERM
of the leader: it releases the Lease, and the standby takes over at its next poll.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from kray._kube.store import KubeStore
from kray.store import LEASE, RAYCLUSTER
from kray.store.errors import NotFound
from tests.operator.support import KrayOperator, eventually, start_kray_operator
from tests.operator.test_kray_operator import cluster, state

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


async def holder(store: KubeStore, namespace: str) -> str:
    try:
        lease = await store.get(LEASE, "ray-operator-leader", namespace=namespace)
    except NotFound:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def identity_of(operator: KrayOperator) -> str | None:
    for record in operator.log_lines():
        if record.get("event") == "operator.electing":
            return str(record["identity"])
    return None


async def test_a_standby_takes_over_within_15_s_of_the_leaders_death(
    k8s_control_plane: Any, ray_crds: Any, k8s_namespace: str, kwok_nodes: Any, tmp_path: Path
) -> None:
    kwok_nodes(1)
    kubeconfig = Path(k8s_control_plane.kubeconfig)
    store = KubeStore.from_kubeconfig(kubeconfig)
    flags = ["--leader-election-namespace", k8s_namespace]
    operators = [
        start_kray_operator(kubeconfig=kubeconfig, log_dir=tmp_path, namespaces=[k8s_namespace], extra=flags, name=n)
        for n in ("first", "second")
    ]
    try:

        async def elected() -> str | None:
            return await holder(store, k8s_namespace) or None

        leader_id = await eventually(elected, timeout=30, what="a Lease holder")
        ids = {identity_of(op): op for op in operators}
        assert leader_id in ids, f"holder {leader_id!r} is neither operator {list(ids)}"
        leader = ids[leader_id]
        standby = next(op for op in operators if op is not leader)
        assert (await asyncio.to_thread(leader.get, "/readyz"))[0] == 200
        assert (await asyncio.to_thread(standby.get, "/readyz"))[0] == 200, "a standby's caches sync too"
        assert 'leader_election_master_status{name="ray-operator-leader"} 1.0' in leader.metrics()
        assert 'leader_election_master_status{name="ray-operator-leader"} 0.0' in standby.metrics()

        await store.create(RAYCLUSTER, cluster("before", k8s_namespace))

        async def ready(name: str) -> bool:
            return await state(store, name, k8s_namespace) == "ready"

        await eventually(lambda: ready("before"), timeout=90, what="RayCluster before to be ready (the leader)")

        leader.kill()  # kill -9: no release
        died = time.monotonic()
        await store.create(RAYCLUSTER, cluster("after", k8s_namespace))

        async def taken_over() -> str | None:
            now = await holder(store, k8s_namespace)
            return now if now and now != leader_id else None

        await eventually(taken_over, timeout=30, what="the standby to hold the Lease", every=0.2)
        takeover = time.monotonic() - died
        assert takeover < 15.0, f"standby took over {takeover:.1f}s after the leader's death"
        await eventually(lambda: ready("after"), timeout=90, what="RayCluster after to be ready (the new leader)")

        # A graceful stop releases the Lease: a new standby takes over at its next poll.
        third = start_kray_operator(
            kubeconfig=kubeconfig, log_dir=tmp_path, namespaces=[k8s_namespace], extra=flags, name="third"
        )
        operators.append(third)
        await eventually(
            lambda: asyncio.to_thread(lambda: third.get("/readyz")[0] == 200), timeout=30, what="third ready"
        )
        stopped = time.monotonic()
        assert await asyncio.to_thread(standby.terminate) == 0, standby.tail()
        third_id = identity_of(third)

        async def third_leads() -> bool:
            return await holder(store, k8s_namespace) == third_id

        await eventually(third_leads, timeout=15, what="the third operator to hold the released Lease", every=0.2)
        assert time.monotonic() - stopped < 10
    finally:
        for operator in operators:
            operator.kill()
        await store.close()
