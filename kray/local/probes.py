"""Kubernetes probes for local processes: the kubelet's timing and thresholds, reported as events.

KubeRay gives Ray pods exec readiness and liveness probes (``wget .../api/local_raylet_healthz`` and
``.../api/gcs_healthz``), and users add their own; local mode must honour them the way the kubelet does,
since RayCluster status, RayService readiness and restarts follow from them.

Semantics reproduced (kubelet ``prober/worker.go``):

- nothing runs for ``initialDelaySeconds``; then one attempt every ``periodSeconds`` measured from the
  start of the previous attempt (a slow attempt is followed at once by the next), each bounded by
  ``timeoutSeconds``;
- the state flips to success after ``successThreshold`` consecutive successes and to failure after
  ``failureThreshold`` consecutive failures. Readiness starts *failed* (not ready), liveness starts
  *succeeded*, startup starts *unknown*;
- (local mode only, ``Probe.period_until_ready``) a readiness probe that has never succeeded is tried more often
  than its period, and at its period from its first success on;
- every flip is reported as a :class:`ProbeEvent`. A liveness failure ends the runner (the kubelet
  stops probing until the container restarts; probe the new process with a new runner), and so does
  the first startup result either way. Readiness runs until cancelled.

The clock and the single attempt are injectable, so timing is tested without waiting and the attempts
(:mod:`kray.local.probe_checks`) are tested against real servers.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from kray.local import errors
from kray.local.probe_checks import (
    ExecAction,
    HttpGetAction,
    ProbeAction,
    ProbeResult,
    TcpSocketAction,
    run_action,
)

__all__ = [
    "Clock",
    "ExecAction",
    "HttpGetAction",
    "LoopClock",
    "Probe",
    "ProbeEvent",
    "ProbeKind",
    "ProbeResult",
    "ProbeRunner",
    "TcpSocketAction",
    "ThresholdTracker",
    "parse_probe",
]


class ProbeKind(StrEnum):
    STARTUP = "startup"
    READINESS = "readiness"
    LIVENESS = "liveness"


@dataclass(frozen=True, slots=True)
class Probe:
    """A parsed probe spec; times in seconds, defaults as Kubernetes'."""

    action: ProbeAction
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    period_until_ready: float | None = None
    """A readiness probe that has never succeeded is tried this often (at most ``period``); None: always
    ``period``, as the kubelet does. Local mode's: a process starts in seconds, and a probe of a ready container
    every second costs CPU for as long as it runs."""


@dataclass(frozen=True, slots=True)
class ProbeEvent:
    """The probe's state flipped: ``ok`` is the new state, ``message`` the attempt that flipped it."""

    kind: ProbeKind
    ok: bool
    message: str
    at: float
    """Clock time when the deciding attempt started."""


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# -- parsing -------------------------------------------------------------------------------------------


def _int(spec: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = spec.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise errors.ProbeSpecError(f"{key}: must be an integer >= {minimum}, got {value!r}")
    return value


def _port(value: Any, ports: Mapping[int | str, int], where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise errors.ProbeSpecError(f"{where}.port: required")
    if value in ports:
        return ports[value]
    if isinstance(value, int) and 0 < value < 65536:
        return value
    if isinstance(value, str) and value.isdigit():
        return _port(int(value), ports, where)
    raise errors.ProbeSpecError(f"{where}.port: {value!r} is not a port number or a known container port name")


def parse_probe(
    spec: Mapping[str, Any], *, ports: Mapping[int | str, int] | None = None, host: str = "127.0.0.1"
) -> Probe:
    """A Kubernetes probe (camelCase, as in a pod spec) as a :class:`Probe`.

    ``ports`` maps container ports (numbers or names) to the local ports the process really uses; numbers
    not in it are used as they are. ``host`` replaces the pod IP the kubelet would default to.
    """
    ports = ports or {}
    handlers = [key for key in ("httpGet", "tcpSocket", "exec", "grpc") if spec.get(key) is not None]
    if len(handlers) != 1:
        raise errors.ProbeSpecError(f"a probe needs exactly one of httpGet, tcpSocket, exec; got {handlers or 'none'}")
    kind = handlers[0]
    body = spec[kind]
    if not isinstance(body, Mapping):
        raise errors.ProbeSpecError(f"{kind}: must be an object")
    action: ProbeAction
    if kind == "httpGet":
        scheme = str(body.get("scheme") or "HTTP").lower()
        if scheme not in ("http", "https"):
            raise errors.ProbeSpecError(f"httpGet.scheme: {body.get('scheme')!r} is not HTTP or HTTPS")
        headers = tuple((str(h["name"]), str(h.get("value", ""))) for h in body.get("httpHeaders") or ())
        action = HttpGetAction(
            port=_port(body.get("port"), ports, kind),
            path=str(body.get("path") or "/"),
            host=str(body.get("host") or host),
            scheme=scheme,
            headers=headers,
        )
    elif kind == "tcpSocket":
        action = TcpSocketAction(port=_port(body.get("port"), ports, kind), host=str(body.get("host") or host))
    elif kind == "exec":
        command = body.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            raise errors.ProbeSpecError("exec.command: must be a non-empty list of strings")
        action = ExecAction(command=tuple(command))
    else:
        raise errors.ProbeSpecError("grpc probes are not supported in local mode")
    return Probe(
        action=action,
        initial_delay=_int(spec, "initialDelaySeconds", 0, 0),
        period=_int(spec, "periodSeconds", 10, 1),
        timeout=_int(spec, "timeoutSeconds", 1, 1),
        success_threshold=_int(spec, "successThreshold", 1, 1),
        failure_threshold=_int(spec, "failureThreshold", 3, 1),
    )


# -- state --------------------------------------------------------------------------------------------


class ThresholdTracker:
    """Consecutive-result counting: pure, so its edge cases are tested without any clock."""

    def __init__(self, *, success_threshold: int, failure_threshold: int, initial: bool | None) -> None:
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold
        self.state = initial
        self._successes = 0
        self._failures = 0

    def observe(self, ok: bool) -> bool | None:
        """Count one result; return the new state if it flipped, else None."""
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            if self.state is not True and self._successes >= self.success_threshold:
                self.state = True
                return True
        else:
            self._failures, self._successes = self._failures + 1, 0
            if self.state is not False and self._failures >= self.failure_threshold:
                self.state = False
                return False
        return None


_INITIAL_STATE: dict[ProbeKind, bool | None] = {
    ProbeKind.STARTUP: None,
    ProbeKind.READINESS: False,
    ProbeKind.LIVENESS: True,
}

EventCallback = Callable[[ProbeEvent], Awaitable[None] | None]


class ProbeRunner:
    """Runs one probe against one process; await :meth:`run` in a task and cancel it to stop."""

    def __init__(
        self,
        probe: Probe,
        *,
        kind: ProbeKind,
        on_event: EventCallback,
        clock: Clock | None = None,
        check: Callable[[], Awaitable[ProbeResult]] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.probe = probe
        self.kind = kind
        self._on_event = on_event
        self._clock = clock or LoopClock()
        self._check = check or (lambda: run_action(probe.action, timeout=probe.timeout, env=env, cwd=cwd))
        self._tracker = ThresholdTracker(
            success_threshold=probe.success_threshold,
            failure_threshold=probe.failure_threshold,
            initial=_INITIAL_STATE[kind],
        )
        self._ever_ready = False

    @property
    def state(self) -> bool | None:
        """True: ready / alive / started; False: not; None: a startup probe without a verdict yet."""
        return self._tracker.state

    async def run(self) -> ProbeEvent | None:
        """Probe until cancelled; returns the event that ends a liveness or startup probe."""
        await self._clock.sleep(self.probe.initial_delay)
        while True:
            started = self._clock.now()
            result = await self._check()
            flipped = self._tracker.observe(result.ok)
            self._ever_ready = self._ever_ready or self._tracker.state is True
            if flipped is not None:
                event = ProbeEvent(kind=self.kind, ok=flipped, message=result.message, at=started)
                outcome = self._on_event(event)
                if inspect.isawaitable(outcome):
                    await outcome
                if self.kind is ProbeKind.STARTUP or (self.kind is ProbeKind.LIVENESS and not flipped):
                    return event
            await self._clock.sleep(max(0.0, started + self._period() - self._clock.now()))

    def _period(self) -> float:
        quick = self.probe.period_until_ready
        if quick is not None and self.kind is ProbeKind.READINESS and not self._ever_ready:
            return min(quick, self.probe.period)
        return self.probe.period
