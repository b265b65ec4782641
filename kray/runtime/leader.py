"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Several operator replicas may run; only the one holding the Lease runs controllers, so two never
reconcile the same objects. The Lease goes through the :class:`~kray.store.Store` port, so the same
code elects on a real API server and on the embedded store.

How it works (client-go's ``leaderelection`` with a ``LeaseLock``):

* Acquire: read the Lease; take it (create it, or update it with its ``resourceVersion``) when it is
  free (``holderIdentity`` empty), ours, or expired. A Conflict or AlreadyExists means another
  candidate won the race. *Expired* is judged by the local clock only: ``leaseDurationSeconds``
  after this candidate last saw the record change — never by comparing ``renewTime`` with the
  local clock, so clock skew between machines cannot make two leaders.
* Renew every ``retry_period``; if no renewal succeeds for ``renew_deadline`` seconds (or another
  holder is seen), leadership is lost: the leading coroutine is cancelled at once (no drain:
  another replica may already lead) and :meth:`LeaderElector.run` raises :class:`LeadershipLost`;
  the operator then exits non-zero, as controller-runtime's manager does. Invariant:
  ``renew_deadline < lease_duration``, so a leader that cannot renew stops before anyone else can
  take over.
* Graceful stop: the leading coroutine is told to stop (its event is set) and awaited while the
  Lease keeps being renewed (controllers drain as leader), then the Lease is released
  (``holderIdentity: ""``, ``leaseDurationSeconds: 1``; client-go's ``ReleaseOnCancel``) so a
  standby takes over at its next poll (within ``retry_period`` plus jitter) instead of after 15 s.
* A leader that dies without releasing (kill -9) is replaced once its lease expires for the
  standby: ``lease_duration`` after the standby last saw a renewal, i.e. about 13-17 s after the
  death with the defaults. A standby sleeps until that exact moment rather than a whole retry.

``holderIdentity`` is ``<hostname>_<uuid>`` (controller-runtime's form); ``acquireTime`` and
``renewTime`` are RFC 3339 micro-times; ``leaseTransitions`` counts changes of holder.

The default Lease name is KubeRay's election ID, ``ray-operator-leader``, on purpose: kray is a
drop-in replacement for KubeRay's operator, and during a swap (or a mixed rollout) both operators
would otherwise reconcile the same RayClusters with no coordination. Sharing the Lease name makes
the two mutually exclusive in the namespace where they elect. Configure ``name`` to opt out.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from kray.store import LEASE, Obj, Store
from kray.store.errors import AlreadyExists, Conflict, NotFound, StoreError

if TYPE_CHECKING:
    from kray.runtime.metrics import RuntimeMetrics

log = structlog.get_logger(__name__)

DEFAULT_LEASE_NAME = "ray-operator-leader"
"""KubeRay's leader election ID: kray and KubeRay exclude each other (see the module docstring)."""


def default_identity() -> str:
    """``<hostname>_<uuid>``: unique per process, readable in ``kubectl get lease``."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(moment: datetime) -> str:
    """Kubernetes' MicroTime: RFC 3339 in UTC with microseconds (``2026-11-30T05:00:00.000000Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LeaderElectionConfig:
    """Where and how to elect; durations are client-go's defaults (seconds)."""

    namespace: str
    name: str = DEFAULT_LEASE_NAME
    identity: str = field(default_factory=default_identity)
    lease_duration: int = 15
    """``leaseDurationSeconds``: how long a standby waits after the last renewal it saw."""
    renew_deadline: float = 10.0
    """The leader gives up after failing to renew for this long; must be < ``lease_duration``."""
    retry_period: float = 2.0
    """Between attempts to acquire or renew."""
    jitter: float = 0.1
    """A standby's poll is ``retry_period * (1 + jitter * random())``, spreading standbys out."""
    release_on_cancel: bool = True
    """Release the Lease on a graceful stop, so a standby takes over at once."""

    def __post_init__(self) -> None:
        if not isinstance(self.lease_duration, int) or self.lease_duration < 1:
            raise ValueError("lease_duration must be a whole number of seconds >= 1 (leaseDurationSeconds)")
        if not self.retry_period > 0:
            raise ValueError("retry_period must be > 0")
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        if not self.identity:
            raise ValueError("identity must not be empty")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The leader-election fields of a Lease's spec."""

    holder: str = ""
    lease_duration: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def of(cls, lease: Obj) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


def claimed(current: LeaseRecord | None, *, identity: str, lease_duration: int, now: str) -> LeaseRecord:
    """The record after ``identity`` acquires or renews: a change of holder bumps ``leaseTransitions``."""
    if current is not None and current.holder == identity:
        return replace(current, lease_duration=lease_duration, renew_time=now)
    transitions = 0 if current is None else current.transitions + 1
    return LeaseRecord(identity, lease_duration, acquire_time=now, renew_time=now, transitions=transitions)


def released(current: LeaseRecord, *, now: str) -> LeaseRecord:
    """The record a leader leaves on a graceful stop: no holder, expiring in one second."""
    return LeaseRecord("", 1, acquire_time=now, renew_time=now, transitions=current.transitions)


class LeadershipLost(Exception):
    """Renewal failed for ``renew_deadline`` (or another holder took the Lease): stop, exit non-zero."""


class _Attempt(enum.Enum):
    LEADING = "leading"
    HELD = "held by another candidate"
    FAILED = "failed"


Lead = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class LeaderElector:
    """Elects on one Lease. ``await run(stop, lead)`` once per process; see the module docstring."""

    def __init__(
        self,
        store: Store,
        config: LeaderElectionConfig,
        *,
        metrics: RuntimeMetrics | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._metrics = metrics
        self._now = now or (lambda: datetime.now(UTC))
        self._lease: Obj | None = None  # the Lease as last read or written (its resourceVersion)
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # loop time when _observed last changed
        self._leading = False
        if metrics is not None:
            metrics.leader(config.name, leading=False)

    @property
    def identity(self) -> str:
        return self.config.identity

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def observed_holder(self) -> str:
        """The holder in the last record seen ("" when free or never read)."""
        return self._observed.holder if self._observed is not None else ""

    async def run(self, stop: asyncio.Event, lead: Lead) -> None:
        """Wait for the Lease, then ``await lead(lead_stop)`` while holding it.

        Returns without leading if ``stop`` is set first. Once leading: when ``stop`` is set,
        ``lead_stop`` is set and ``lead`` awaited (still renewing), then the Lease is released and
        ``run`` returns (re-raising what ``lead`` raised). When ``lead`` returns by itself the
        Lease is released too. Raises :class:`LeadershipLost` (after cancelling ``lead``) when
        renewal fails for ``renew_deadline``.
        """
        if not await self._acquire(stop):
            return
        self._set_leading(True)
        lead_stop = asyncio.Event()
        lead_task = asyncio.create_task(lead(lead_stop), name="leader-lead")
        renewer = asyncio.create_task(self._keep_renewing(), name="leader-renew")
        stopper = asyncio.create_task(stop.wait(), name="leader-stop")
        lost = False
        try:
            await asyncio.wait({lead_task, renewer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not renewer.done() and not lead_task.done():
                lead_stop.set()  # graceful stop: let the controllers drain while we keep renewing
                await asyncio.wait({lead_task, renewer}, return_when=asyncio.FIRST_COMPLETED)
            lost = renewer.done()  # the renewer only ends when leadership is lost (or it crashed)
            if lost:
                cause = renewer.exception()
                raise LeadershipLost(f"lost Lease {self.config.namespace}/{self.config.name}") from cause
            await lead_task
        finally:
            for task in (lead_task, renewer, stopper):
                task.cancel()
            for task in (lead_task, renewer, stopper):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._set_leading(False)
            if not lost and self.config.release_on_cancel:
                await self._release()

    # ---- one attempt -----------------------------------------------------------------------------
    def _observe(self, lease: Obj) -> LeaseRecord:
        record = LeaseRecord.of(lease)
        if record != self._observed:
            if record.holder != self.observed_holder:
                log.info("leader.observed", lease=self.config.name, holder=record.holder or None)
            self._observed = record
            self._observed_at = asyncio.get_running_loop().time()
        self._lease = lease
        return record

    def _valid_for(self) -> float:
        """Seconds until the observed lease expires for us (<= 0: expired or free)."""
        if self._observed is None or not self._observed.holder:
            return 0.0
        expiry = self._observed_at + self._observed.lease_duration
        return expiry - asyncio.get_running_loop().time()

    async def _try(self) -> _Attempt:
        config, store = self.config, self._store
        now = micro_time(self._now())
        try:
            try:
                lease = await store.get(LEASE, config.name, namespace=config.namespace)
            except NotFound:
                record = claimed(None, identity=config.identity, lease_duration=config.lease_duration, now=now)
                body = {"metadata": {"name": config.name, "namespace": config.namespace}, "spec": record.spec()}
                self._observe(await store.create(LEASE, {"apiVersion": LEASE.api_version, "kind": "Lease", **body}))
                return _Attempt.LEADING
            current = self._observe(lease)
            if current.holder not in ("", config.identity) and self._valid_for() > 0:
                return _Attempt.HELD
            record = claimed(current, identity=config.identity, lease_duration=config.lease_duration, now=now)
            self._observe(await store.replace(LEASE, {**lease, "spec": {**(lease.get("spec") or {}), **record.spec()}}))
            return _Attempt.LEADING
        except (AlreadyExists, Conflict):
            return _Attempt.FAILED  # another candidate wrote first; the next read shows who
        except StoreError as error:
            log.warning("leader.attempt_failed", lease=config.name, error=repr(error))
            return _Attempt.FAILED

    # ---- loops -----------------------------------------------------------------------------------
    async def _acquire(self, stop: asyncio.Event) -> bool:
        config = self.config
        log.info("leader.acquiring", lease=f"{config.namespace}/{config.name}", identity=config.identity)
        while not stop.is_set():
            if await self._try() is _Attempt.LEADING:
                log.info("leader.acquired", lease=f"{config.namespace}/{config.name}", identity=config.identity)
                return True
            delay = config.retry_period * (1 + config.jitter * random.random())
            until_expiry = self._valid_for()
            if 0 < until_expiry < delay:
                delay = until_expiry  # wake exactly when the holder's lease runs out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        return False

    async def _keep_renewing(self) -> None:
        """Renew every ``retry_period``; returns when leadership is lost."""
        config = self.config
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(config.retry_period)
            deadline = loop.time() + config.renew_deadline
            while True:
                try:
                    attempt = await asyncio.wait_for(self._try(), timeout=max(deadline - loop.time(), 0.001))
                except TimeoutError:
                    attempt = _Attempt.FAILED
                if attempt is _Attempt.LEADING:
                    break
                remaining = deadline - loop.time()
                # Another holder with a valid lease means ours expired for them: stop at once.
                if attempt is _Attempt.HELD or remaining <= 0:
                    log.error("leader.lost", lease=config.name, reason=attempt.value, holder=self.observed_holder)
                    return
                await asyncio.sleep(min(config.retry_period, remaining))

    async def _release(self) -> None:
        config, lease = self.config, self._lease
        if lease is None or self._observed is None or self._observed.holder != config.identity:
            return
        record = released(self._observed, now=micro_time(self._now()))
        body = {**lease, "spec": {**(lease.get("spec") or {}), **record.spec()}}
        try:
            self._observe(await asyncio.wait_for(self._store.replace(LEASE, body), timeout=config.renew_deadline))
        except (StoreError, TimeoutError) as error:
            log.warning("leader.release_failed", lease=config.name, error=repr(error))
        else:
            log.info("leader.released", lease=f"{config.namespace}/{config.name}")

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        if self._metrics is not None:
            self._metrics.leader(self.config.name, leading=leading)
