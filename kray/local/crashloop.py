"""The kubelet's CrashLoopBackOff, as pure decisions: how long a failed container waits before its next
restart, and how the wait reads in its status.

The kubelet keeps one back-off per container (client-go's ``flowcontrol.Backoff``, in memory): it starts at
10 s, doubles per restart up to 300 s, and is forgotten once the container ran for more than twice the cap
(10 minutes), so the next crash backs off from the start again. ``restartCount`` is not part of it: it only
grows. The waiting container's message is ``back-off %s restarting failed container=%s pod=%s`` with the
delay as Go prints a ``time.Duration`` and the pod as ``format.Pod`` does (``name_namespace(uid)``).
"""

from __future__ import annotations

_SECOND = 1_000_000_000
"""Nanoseconds: Go's durations are whole nanoseconds."""


def next_backoff(previous: float | None, *, ran: float | None, start: float, cap: float) -> float:
    """The back-off before the next restart, given the one before the last restart (None: there was none)
    and how long the last run lasted in seconds (None: unknown, as for a process adopted from an earlier
    runner). Doubles up to ``cap``; back to ``start`` after a run longer than ``2 * cap``."""
    if previous is None or (ran is not None and ran > 2 * cap):
        return min(start, cap)
    return min(previous * 2, cap)


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String()`` prints it: ``500ms``, ``1.5s``, ``1m20s``, ``5m0s``."""
    nanos = round(seconds * _SECOND)
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos == 0:
        return "0s"
    if nanos < 1_000:
        return f"{sign}{nanos}ns"
    if nanos < 1_000_000:
        return f"{sign}{_fraction(nanos, 3)}µs"
    if nanos < _SECOND:
        return f"{sign}{_fraction(nanos, 6)}ms"
    whole, rest = divmod(nanos, _SECOND)
    hours, whole = divmod(whole, 3600)
    minutes, whole = divmod(whole, 60)
    text = f"{_fraction(whole * _SECOND + rest, 9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    return f"{sign}{minutes}m{text}" if minutes else f"{sign}{text}"


def _fraction(value: int, digits: int) -> str:
    """``value / 10**digits`` without trailing zeros (nor a trailing point), as Go's ``fmtFrac``."""
    whole, part = divmod(value, 10**digits)
    decimals = f"{part:0{digits}d}".rstrip("0")
    return f"{whole}.{decimals}" if decimals else str(whole)


def backoff_message(delay: float, *, container: str, pod: str, namespace: str, uid: str) -> str:
    """The kubelet's message for a container waiting in CrashLoopBackOff."""
    return f"back-off {go_duration(delay)} restarting failed container={container} pod={pod}_{namespace}({uid})"
