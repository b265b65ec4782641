"""The embedded store's garbage collector: what kube-controller-manager's GC and namespace controllers do.

Work arrives through the ``gc_queue`` table, filled by the same transaction as the change that makes
it necessary (an owner removed, a dependent pointing at a missing owner, an ``orphan`` or
``foregroundDeletion`` finalizer set, a Namespace marked Terminating), so it survives ``kill -9`` and
is shared by every process that opens the file. For a queued uid:

* owner gone: each dependent loses the dangling references, or is deleted (Background, or the
  policy its own GC finalizers ask for) when no owner is left — recursively, via the queue;
* ``orphan`` finalizer: dependents lose their reference to the owner, then the finalizer goes;
* ``foregroundDeletion``: dependents are deleted (Foreground when they have dependents of their
  own); once none with ``blockOwnerDeletion`` remains, the finalizer goes;
* Terminating Namespace: its objects are deleted; once it is empty it goes.

Each uid is handled in one write transaction that re-reads everything, so concurrent collectors in
two processes are harmless. A transaction touches at most ``BATCH`` objects; a uid with more work
stays queued for the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kray.store import Obj, Propagation
from kray.store import meta as m
from kray.store.errors import StoreError

from . import strategy, writes
from .db import NAMESPACES, Database, Tx

BATCH = 200


def _policy_for(obj: Obj) -> Propagation:
    finalizers = m.finalizers_of(obj)
    if m.ORPHAN_FINALIZER in finalizers:
        return "Orphan"
    if m.FOREGROUND_FINALIZER in finalizers:
        return "Foreground"
    return "Background"


def _delete_dependent(tx: Tx, key: str, obj: Obj, *, policy: Propagation, now: str) -> None:
    if not m.is_deleting(obj):
        writes.delete(tx, key=key, stored=obj, propagation=policy, now=now)


def _collect_dependent(tx: Tx, key: str, obj: Obj, *, now: str) -> None:
    namespace = m.metadata(obj).get("namespace", "")
    owners = {ref.uid for ref in m.owner_refs(obj)}
    absent = frozenset(uid for uid in owners if tx.owner_state(uid, namespace=namespace) == "absent")
    if not absent:
        return
    if absent == owners:
        _delete_dependent(tx, key, obj, policy=_policy_for(obj), now=now)
    else:
        writes.commit(tx, key=key, stored=obj, new=strategy.without_owners(obj, absent))


def process(tx: Tx, uid: str, *, now: str) -> bool:
    """Handle one queued uid; True when it needs no more work (it is then dequeued)."""
    found = tx.by_uid(uid)
    if found is None:
        dependents = tx.dependents(uid, limit=BATCH + 1)
        for key, obj, _ in dependents[:BATCH]:
            _collect_dependent(tx, key, obj, now=now)
        return len(dependents) <= BATCH
    key, obj = found
    if not m.is_deleting(obj):
        return True
    if key == NAMESPACES:
        return _terminate_namespace(tx, obj, now=now)
    finalizers = m.finalizers_of(obj)
    if m.ORPHAN_FINALIZER in finalizers:
        dependents = tx.dependents(uid, limit=BATCH + 1)
        for dep_key, dep, _ in dependents[:BATCH]:
            writes.commit(tx, key=dep_key, stored=dep, new=strategy.without_owners(dep, frozenset({uid})))
        if len(dependents) > BATCH:
            return False
        writes.commit(tx, key=key, stored=obj, new=strategy.without_finalizer(obj, m.ORPHAN_FINALIZER))
    elif m.FOREGROUND_FINALIZER in finalizers:
        for dep_key, dep, _ in tx.dependents(uid, limit=BATCH):
            policy: Propagation = "Foreground" if tx.has_dependents(dep["metadata"]["uid"]) else "Background"
            _delete_dependent(tx, dep_key, dep, policy=policy, now=now)
        if not any(block for _, _, block in tx.dependents(uid)):
            writes.commit(tx, key=key, stored=obj, new=strategy.without_finalizer(obj, m.FOREGROUND_FINALIZER))
    return True


def _terminate_namespace(tx: Tx, namespace: Obj, *, now: str) -> bool:
    name = namespace["metadata"]["name"]
    contents = tx.namespace_contents(name, limit=BATCH)
    for key, obj in contents:
        _delete_dependent(tx, key, obj, policy="Background", now=now)
    if tx.namespace_contents(name, limit=1):
        return len(contents) < BATCH  # the rest wait for finalizers; their removal re-queues us
    writes.commit(tx, key=NAMESPACES, stored=namespace, new=strategy.finalized_namespace(namespace))
    return True


class Collector:
    """Runs :func:`process` over the queue whenever woken, and every ``poll_interval`` seconds (work
    queued by other processes sharing the file). ``notify`` gets every committed transaction, so the
    store can wake its watches (and this collector, when the transaction queued more work)."""

    def __init__(
        self,
        *,
        db: Database,
        now: Callable[[], str],
        wake: Callable[[], asyncio.Event],
        notify: Callable[[Tx], None],
        poll_interval: float,
    ) -> None:
        self._db = db
        self._now = now
        self._wake = wake
        self._notify = notify
        self._poll = poll_interval

    async def collect(self) -> int:
        """One round: every queued uid once. Returns how many were finished."""
        with self._db.snapshot() as snap:
            queued = snap.gc_queue(limit=10_000)
        finished = 0
        for uid in queued:

            def step(tx: Tx, uid: str = uid) -> bool:
                done = process(tx, uid, now=self._now())
                if done:
                    tx.dequeue(uid)
                return done

            done, tx = await self._db.write(step)
            finished += done
            self._notify(tx)
        return finished

    async def run(self, stop: asyncio.Event) -> None:
        """Collect until ``stop`` is set; a failing round is retried at the next wake-up or poll."""
        while not stop.is_set():
            wake = self._wake()
            with contextlib.suppress(StoreError):
                await self.collect()
            if stop.is_set():
                return
            waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
            try:
                await asyncio.wait(waiters, timeout=self._poll, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
