"""Leader election on a real kube-apiserver, with client-go's default timings (15 s / 10 s / 2 s).

Three candidates in one namespace: only one leads; when the leader dies without releasing, a
standby takes over once the lease runs out (lease duration + one poll); when a leader stops
gracefully, it releases the Lease and a standby takes over at its next poll (< 3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from kray._kube.store import KubeStore
from kray.runtime.leader import DEFAULT_LEASE_NAME, LeaderElectionConfig, LeaderElector, LeadershipLost
from kray.store import LEASE, Store

pytestmark = [pytest.mark.k8s]


class Candidate:
    def __init__(self, store: Store, namespace: str, identity: str, *, release_on_cancel: bool = True) -> None:
        config = LeaderElectionConfig(namespace=namespace, identity=identity, release_on_cancel=release_on_cancel)
        self.elector = LeaderElector(store, config)
        self.identity = identity
        self.stop = asyncio.Event()
        self.led_at: float | None = None
        self.task = asyncio.create_task(self.elector.run(self.stop, self.lead))

    async def lead(self, lead_stop: asyncio.Event) -> None:
        self.led_at = time.monotonic()
        await lead_stop.wait()

    async def finish(self) -> None:
        self.stop.set()
        with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
            await asyncio.wait_for(self.task, timeout=15)


async def leader_among(candidates: list[Candidate], *, timeout: float, what: str, store: Store, ns: str) -> Candidate:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leading = [c for c in candidates if c.led_at is not None]
        if leading:
            assert len(leading) == 1, f"two leaders: {[c.identity for c in leading]}"
            return leading[0]
        await asyncio.sleep(0.05)
    spec = (await store.get(LEASE, DEFAULT_LEASE_NAME, namespace=ns)).get("spec")
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}; the Lease's spec was {spec}")


async def test_leader_election_on_a_real_apiserver(k8s_control_plane: Any, k8s_namespace: str) -> None:
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    ns = k8s_namespace
    candidates: list[Candidate] = []
    try:
        one = Candidate(store, ns, "one", release_on_cancel=False)
        two = Candidate(store, ns, "two")
        candidates += [one, two]
        first = await leader_among(candidates, timeout=10, what="a first leader", store=store, ns=ns)
        await asyncio.sleep(4.5)  # two renewals; the standby keeps polling
        assert [c.led_at is not None for c in candidates].count(True) == 1
        spec = (await store.get(LEASE, DEFAULT_LEASE_NAME, namespace=ns))["spec"]
        assert spec["holderIdentity"] == first.identity
        assert spec["leaseDurationSeconds"] == 15
        transitions = spec.get("leaseTransitions", 0)

        # The leader dies (no release, as kill -9): the standby waits for the lease to run out.
        if first is two:  # make the candidate that does not release be the one that dies
            await two.finish()
            candidates.remove(two)
            first = await leader_among([one], timeout=5, what="one after two's release", store=store, ns=ns)
            transitions += 1
        three = Candidate(store, ns, "three")
        candidates.append(three)
        await asyncio.sleep(2.5)  # the new standby has seen the lease
        assert one.led_at is not None
        assert three.led_at is None
        killed_at = time.monotonic()
        one.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await one.task
        candidates.remove(one)
        standbys = [c for c in candidates if c.led_at is None]
        second = await leader_among(standbys, timeout=25, what="takeover after the leader died", store=store, ns=ns)
        took = time.monotonic() - killed_at
        assert 13 - 2.2 < took < 15 + 2 * 1.1 + 1.0, f"takeover {took:.1f}s after the death (lease 15 s, retry 2 s)"
        spec = (await store.get(LEASE, DEFAULT_LEASE_NAME, namespace=ns))["spec"]
        assert spec["holderIdentity"] == second.identity
        assert spec["leaseTransitions"] == transitions + 1

        # A graceful stop releases the Lease: the remaining standby takes over at its next poll.
        rest = [c for c in candidates if c is not second]
        if not rest:  # "two" led first and finished above: a new standby must be watching the Lease
            four = Candidate(store, ns, "four")
            candidates.append(four)
            rest = [four]
            await asyncio.sleep(2.5)
        released_at = time.monotonic()
        await second.finish()
        candidates.remove(second)
        third = await leader_among(rest, timeout=10, what="takeover after release", store=store, ns=ns)
        took = time.monotonic() - released_at
        assert took < 3.0, f"takeover {took:.1f}s after a graceful release"
        assert (await store.get(LEASE, DEFAULT_LEASE_NAME, namespace=ns))["spec"]["holderIdentity"] == third.identity
    finally:
        for candidate in candidates:
            await candidate.finish()
        await store.close()
