"""Leader election on a Lease: the record rules (pure), and elections on the embedded store with
short durations (real store, real clock, a few seconds). The same races on a real API server are in
``test_leader_kube.py``."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kray.local.store import EmbeddedSettings, EmbeddedStore, open_embedded_store
from kray.runtime.leader import (
    DEFAULT_LEASE_NAME,
    LeaderElectionConfig,
    LeaderElector,
    LeadershipLost,
    LeaseRecord,
    claimed,
    default_identity,
    micro_time,
    released,
)
from kray.runtime.metrics import RuntimeMetrics
from kray.store import LEASE, NAMESPACE, Obj, Store
from kray.store.errors import Unavailable

MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# ---- the record rules -------------------------------------------------------------------------------
def test_micro_time_is_rfc3339_with_microseconds_in_utc() -> None:
    assert micro_time(datetime(2026, 11, 30, 5, 0, 0, 0, tzinfo=UTC)) == "2026-11-30T05:00:00.000000Z"
    assert MICRO_TIME.match(micro_time(datetime.now(UTC)))


def test_identity_is_hostname_underscore_uuid() -> None:
    host, _, uid = default_identity().rpartition("_")
    assert host
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", uid)
    assert default_identity() != default_identity()


def test_claiming_renewing_and_releasing_a_record() -> None:
    first = claimed(None, identity="a", lease_duration=15, now="t1")
    assert first == LeaseRecord("a", 15, acquire_time="t1", renew_time="t1", transitions=0)
    renewed = claimed(first, identity="a", lease_duration=15, now="t2")
    assert renewed == LeaseRecord("a", 15, acquire_time="t1", renew_time="t2", transitions=0)
    taken = claimed(renewed, identity="b", lease_duration=15, now="t3")
    assert taken == LeaseRecord("b", 15, acquire_time="t3", renew_time="t3", transitions=1)
    free = released(taken, now="t4")
    assert free == LeaseRecord("", 1, acquire_time="t4", renew_time="t4", transitions=1)
    assert claimed(free, identity="a", lease_duration=15, now="t5").transitions == 2
    assert LeaseRecord.of({"spec": free.spec()}) == free
    assert free.spec() == {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "leaseTransitions": 1,
        "acquireTime": "t4",
        "renewTime": "t4",
    }


def test_config_defaults_are_client_gos_and_kuberays_and_bad_timings_are_refused() -> None:
    config = LeaderElectionConfig(namespace="ray-system")
    assert (config.name, config.lease_duration, config.renew_deadline, config.retry_period) == (
        "ray-operator-leader",
        15,
        10.0,
        2.0,
    )
    assert DEFAULT_LEASE_NAME == "ray-operator-leader"
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElectionConfig(namespace="n", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="whole number"):
        LeaderElectionConfig(namespace="n", lease_duration=0)


# ---- elections on the embedded store ----------------------------------------------------------------
@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with await open_embedded_store(tmp_path / "store.db", settings=EmbeddedSettings(poll_interval=0.05)) as s:
        yield s


@pytest.fixture
async def ns(store: EmbeddedStore) -> str:
    name = f"t-{secrets.token_hex(3)}"
    await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


FAST = {"lease_duration": 2, "renew_deadline": 1.0, "retry_period": 0.2}


class Candidate:
    """An elector running in a task; records when it started and stopped leading."""

    def __init__(self, store: Store, ns: str, identity: str, **config: Any) -> None:
        settings = {**FAST, **config}
        self.elector = LeaderElector(store, LeaderElectionConfig(namespace=ns, identity=identity, **settings))
        self.identity = identity
        self.stop = asyncio.Event()
        self.led_at: float | None = None
        self.lead_ended: str | None = None
        self.task: asyncio.Task[None] | None = None

    async def lead(self, lead_stop: asyncio.Event) -> None:
        self.led_at = time.monotonic()
        try:
            await lead_stop.wait()
            self.lead_ended = "stopped"
        except asyncio.CancelledError:
            self.lead_ended = "cancelled"
            raise

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(self.stop, self.lead))
        return self

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
                await asyncio.wait_for(self.task, timeout=10)


async def until(predicate: Callable[[], bool], *, timeout: float, what: str, seen: Callable[[], object]) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw {seen()!r}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def lease(store: Store, ns: str, name: str = DEFAULT_LEASE_NAME) -> Obj:
    return await store.get(LEASE, name, namespace=ns)


async def test_a_lone_candidate_creates_the_lease_leads_and_releases_it_on_stop(store: EmbeddedStore, ns: str) -> None:
    metrics = RuntimeMetrics(process=False)
    config = LeaderElectionConfig(namespace=ns, identity="me_1", **FAST)  # type: ignore[arg-type]
    elector = LeaderElector(store, config, metrics=metrics)
    status = {"name": DEFAULT_LEASE_NAME}
    assert metrics.registry.get_sample_value("leader_election_master_status", status) == 0
    stop, seen = asyncio.Event(), []

    async def lead(lead_stop: asyncio.Event) -> None:
        seen.append(elector.is_leader)
        seen.append(metrics.registry.get_sample_value("leader_election_master_status", status))
        await lead_stop.wait()
        # Still the holder while draining: the lease is released only after lead returns.
        seen.append((await lease(store, ns))["spec"]["holderIdentity"])

    task = asyncio.create_task(elector.run(stop, lead))
    await until(lambda: len(seen) == 2, timeout=5, what="leading", seen=seen.copy)
    spec = (await lease(store, ns))["spec"]
    assert spec["holderIdentity"] == "me_1"
    assert spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert MICRO_TIME.match(spec["acquireTime"])
    assert MICRO_TIME.match(spec["renewTime"])
    first_renew = spec["renewTime"]
    await asyncio.sleep(0.5)
    renewed = (await lease(store, ns))["spec"]
    assert renewed["renewTime"] > first_renew, "renewed every retry_period"
    assert renewed["acquireTime"] == spec["acquireTime"]

    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert seen == [True, 1.0, "me_1"]
    spec = (await lease(store, ns))["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert not elector.is_leader
    assert metrics.registry.get_sample_value("leader_election_master_status", status) == 0


async def test_only_one_of_two_candidates_leads(store: EmbeddedStore, ns: str) -> None:
    one, two = Candidate(store, ns, "one").start(), Candidate(store, ns, "two").start()
    try:
        await until(
            lambda: one.led_at is not None or two.led_at is not None, timeout=5, what="a leader", seen=lambda: None
        )
        await asyncio.sleep(1.5)  # several retry periods
        assert (one.led_at is None) != (two.led_at is None)
        leader = one if one.led_at is not None else two
        assert (await lease(store, ns))["spec"]["holderIdentity"] == leader.identity
        assert [one.elector.is_leader, two.elector.is_leader].count(True) == 1
    finally:
        await one.finish()
        await two.finish()


async def test_a_standby_takes_over_when_the_leader_dies_without_releasing(store: EmbeddedStore, ns: str) -> None:
    leader = Candidate(store, ns, "leader", release_on_cancel=False).start()
    await until(lambda: leader.led_at is not None, timeout=5, what="leader", seen=lambda: None)
    standby = Candidate(store, ns, "standby").start()
    try:
        await asyncio.sleep(0.5)
        assert standby.led_at is None
        before = (await lease(store, ns))["spec"]
        assert leader.task is not None
        leader.task.cancel()  # dies: no release (as kill -9)
        with contextlib.suppress(asyncio.CancelledError):
            await leader.task
        assert (await lease(store, ns))["spec"]["holderIdentity"] == "leader"
        took = await until(lambda: standby.led_at is not None, timeout=6, what="takeover", seen=lambda: None)
        # lease_duration after the standby last saw a renewal, plus at most one poll.
        assert took < 2 + 0.2 * 1.1 + 1.0, f"takeover took {took:.2f}s"
        after = (await lease(store, ns))["spec"]
        assert after["holderIdentity"] == "standby"
        assert after["leaseTransitions"] == before["leaseTransitions"] + 1
        assert after["acquireTime"] > before["acquireTime"]
    finally:
        await standby.finish()


async def test_a_graceful_release_hands_over_at_once(store: EmbeddedStore, ns: str) -> None:
    slow = {"lease_duration": 10, "renew_deadline": 5.0, "retry_period": 0.2}
    leader = Candidate(store, ns, "leader", **slow).start()
    await until(lambda: leader.led_at is not None, timeout=5, what="leader", seen=lambda: None)
    standby = Candidate(store, ns, "standby", **slow).start()
    try:
        await asyncio.sleep(0.5)
        await leader.finish()
        assert leader.lead_ended == "stopped"
        took = await until(lambda: standby.led_at is not None, timeout=5, what="takeover", seen=lambda: None)
        assert took < 1.0, f"takeover took {took:.2f}s after release (lease is 10 s)"
        # A release keeps the count; taking the free lease counts as one transition.
        assert (await lease(store, ns))["spec"]["leaseTransitions"] == 1
    finally:
        await standby.finish()


class FlakyStore:
    """The embedded store, with Lease writes failing once ``broken`` is set."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def replace(self, resource: Any, obj: Obj) -> Obj:
        if self.broken:
            raise Unavailable("API server unreachable (test)")
        return await self._store.replace(resource, obj)


async def test_failing_renewals_lose_leadership_within_the_renew_deadline(store: EmbeddedStore, ns: str) -> None:
    flaky = FlakyStore(store)
    leader = Candidate(flaky, ns, "leader").start()  # type: ignore[arg-type]
    await until(lambda: leader.led_at is not None, timeout=5, what="leader", seen=lambda: None)
    assert leader.task is not None
    flaky.broken = True
    t0 = time.monotonic()
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(leader.task, timeout=5)
    lost_after = time.monotonic() - t0
    # The next renewal is due within retry_period; it then fails for renew_deadline (1 s).
    assert 0.9 < lost_after < 1.0 + 0.2 + 0.5, f"lost after {lost_after:.2f}s"
    assert leader.lead_ended == "cancelled", "losing the lease cancels the leader's work at once"
    assert not leader.elector.is_leader
    # No release attempt: the lease still names the old holder and expires by itself.
    assert (await lease(store, ns))["spec"]["holderIdentity"] == "leader"


async def test_a_leader_whose_lease_was_taken_stops_at_its_next_renewal(store: EmbeddedStore, ns: str) -> None:
    leader = Candidate(store, ns, "leader").start()
    await until(lambda: leader.led_at is not None, timeout=5, what="leader", seen=lambda: None)
    current = await lease(store, ns)
    current["spec"]["holderIdentity"] = "usurper"
    await store.replace(LEASE, current)
    assert leader.task is not None
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(leader.task, timeout=0.2 + 0.5)
    assert leader.lead_ended == "cancelled"


async def test_stop_before_acquiring_returns_without_leading(store: EmbeddedStore, ns: str) -> None:
    holder = Candidate(store, ns, "holder").start()
    await until(lambda: holder.led_at is not None, timeout=5, what="leader", seen=lambda: None)
    waiting = Candidate(store, ns, "waiting").start()
    try:
        await asyncio.sleep(0.3)
        await waiting.finish()
        assert waiting.led_at is None
        assert waiting.task is not None
        assert waiting.task.done()
        assert (await lease(store, ns))["spec"]["holderIdentity"] == "holder", "a standby releases nothing"
    finally:
        await holder.finish()


async def test_an_error_in_the_leaders_work_propagates_and_releases_the_lease(store: EmbeddedStore, ns: str) -> None:
    elector = LeaderElector(store, LeaderElectionConfig(namespace=ns, identity="me", **FAST))  # type: ignore[arg-type]

    async def lead(_: asyncio.Event) -> None:
        raise RuntimeError("controllers crashed")

    with pytest.raises(RuntimeError, match="controllers crashed"):
        await asyncio.wait_for(elector.run(asyncio.Event(), lead), timeout=5)
    assert (await lease(store, ns))["spec"]["holderIdentity"] == ""
