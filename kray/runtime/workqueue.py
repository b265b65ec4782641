"""A de-duplicating, rate-limited work queue with client-go's semantics.

A key is in the queue at most once; a key being processed is never handed to a second worker —
if it is added meanwhile, it is marked dirty and re-queued when the first worker is done. Delayed
adds (``add_after``) and per-key exponential backoff (``add_rate_limited``) feed the same queue.
These rules make reconciles of one object strictly sequential while different objects run in
parallel, which is what level-triggered controllers assume.

Optional :class:`~kray.runtime.metrics.QueueMetrics` observe the queue as client-go's queue
metrics do (depth, adds, latency, work duration, retries); without them the queue records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from kray.runtime.metrics import QueueMetrics

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Per-key exponential backoff: ``base * 2**failures``, capped (client-go: 5 ms .. 1000 s)."""

    base: float = 0.005
    cap: float = 1000.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.base * (2 ** min(failures, 40))))


@dataclass(slots=True)
class _State(Generic[K]):
    queue: list[K] = field(default_factory=list)
    dirty: set[K] = field(default_factory=set)
    processing: set[K] = field(default_factory=set)
    failures: dict[K, int] = field(default_factory=dict)
    delayed: list[tuple[float, int, K]] = field(default_factory=list)


class ShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self._state: _State[K] = _State()
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._changed = asyncio.Event()
        self._shut = False
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._state.queue)

    def add(self, key: K) -> None:
        state = self._state
        if self._shut or key in state.dirty:
            return
        state.dirty.add(key)
        if self._metrics is not None:
            self._metrics.add(key)
        if key not in state.processing:
            state.queue.append(key)
            self._changed.set()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        heapq.heappush(self._state.delayed, (self._clock() + delay, next(self._seq), key))
        self._changed.set()

    def add_rate_limited(self, key: K) -> None:
        failures = self._state.failures.get(key, 0)
        self._state.failures[key] = failures + 1
        if self._metrics is not None:
            self._metrics.retry()
        self.add_after(key, self._backoff.delay(failures))

    def forget(self, key: K) -> None:
        """Reset the key's backoff after a successful reconcile."""
        self._state.failures.pop(key, None)

    def done(self, key: K) -> None:
        state = self._state
        state.processing.discard(key)
        if self._metrics is not None:
            self._metrics.done(key)
        if key in state.dirty:
            state.queue.append(key)
            self._changed.set()

    async def get(self) -> K:
        """The next key to process; waits for one (including delayed ones coming due)."""
        state = self._state
        while True:
            if self._shut:
                raise ShutDown
            self._promote_due()
            if state.queue:
                key = state.queue.pop(0)
                state.dirty.discard(key)
                state.processing.add(key)
                if self._metrics is not None:
                    self._metrics.get(key)
                return key
            self._changed.clear()
            timeout = state.delayed[0][0] - self._clock() if state.delayed else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=timeout)

    def _promote_due(self) -> None:
        now = self._clock()
        delayed = self._state.delayed
        while delayed and delayed[0][0] <= now:
            _, _, key = heapq.heappop(delayed)
            self.add(key)

    def shut_down(self) -> None:
        self._shut = True
        self._changed.set()
