"""One container of a local pod, run as the kubelet runs a container: its own process tree, log, probes,
restarts with CrashLoopBackOff, and its own status entry.

The pod (:class:`kray.local.podrunner.PodTask`) decides when a container starts (init containers in order,
native sidecars before the containers after them, main containers together) and when it stops (main
containers first, then sidecars); a :class:`ContainerRunner` does everything in between, independently of
the pod's other containers, so a crashing log shipper restarts without touching the Ray container:

- every start goes through the pod's one spawn path (``PodSide.spawn``: command checks, volumes, the
  process record on the Pod for adoption); a restarted runner adopts the live process instead;
- probes as the kubelet runs them: a ``startupProbe`` first (``started`` only once it passes; a failure
  kills the container), then readiness (a container without one is ready while running and started) and
  liveness (a failure kills the container);
- after an exit the container restarts when its policy says so (the pod's ``restartPolicy``; ``Always``
  for a native sidecar), after the kubelet's doubling back-off (:mod:`kray.local.crashloop`; kept by this
  runner, as the kubelet keeps it in memory), reporting ``CrashLoopBackOff`` meanwhile; the previous exit
  stays in ``lastState.terminated`` (exit code, reason, the run's last log lines).

Every change of state is reported to the pod, which writes the whole pod status (``PodSide.report``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import structlog

from kray.local import procs
from kray.local.crashloop import backoff_message, next_backoff
from kray.local.errors import LocalError, ProbeSpecError
from kray.local.podenv import EnvError
from kray.local.probes import ExecAction, ProbeEvent, ProbeKind, ProbeRunner, parse_probe

log = structlog.get_logger(__name__)

MESSAGE_LIMIT = 4000
"""Characters of a log tail kept in a status ``message``."""
UNKNOWN_EXIT = -1
"""The exit code of a process this runner did not start (adopted): it died with the runner that did."""
_TERMINATIONS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="kray-terminate")
"""Stopping a process tree waits out its grace period in a thread: pods stopping together get threads of
their own, never the default executor's few (spawns, volumes and files wait on those)."""


async def _terminate_tree(handle: procs.ProcessHandle, *, grace: float) -> procs.Termination:
    call = functools.partial(procs.terminate_tree, handle, grace=grace)
    return await asyncio.get_running_loop().run_in_executor(_TERMINATIONS, call)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Role(StrEnum):
    INIT = "init"
    """A regular init container: runs once to completion, before the containers after it."""
    SIDECAR = "sidecar"
    """A native sidecar (``initContainers[].restartPolicy: Always``): started in init order, always restarted."""
    MAIN = "main"
    """An entry of ``spec.containers`` (``containers[0]`` is the Ray container)."""


def role_of(container: Mapping[str, Any], *, init: bool) -> Role:
    if not init:
        return Role.MAIN
    return Role.SIDECAR if container.get("restartPolicy") == "Always" else Role.INIT


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """What identifies a container's process across runner restarts (kept in a Pod annotation)."""

    pid: int
    create_time: float
    tag: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "createTime": self.create_time, "tag": self.tag or ""}

    @classmethod
    def parse(cls, value: Any) -> ProcessRecord | None:
        try:
            return cls(pid=int(value["pid"]), create_time=float(value["createTime"]), tag=value.get("tag") or None)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def adopt(self) -> procs.ProcessHandle | None:
        try:
            return procs.adopt(self.pid, self.create_time, tag=self.tag)
        except LocalError:
            return None


PROCESSES_ANNOTATION = "kray.io/processes"
"""Every container's process record on its Pod (JSON: container name → pid, createTime, tag)."""
PID_ANNOTATION = "kray.io/pid"
CREATE_TIME_ANNOTATION = "kray.io/pid-create-time"
TAG_ANNOTATION = "kray.io/process-tag"
"""The Ray container's (``containers[0]``) record also under these three, as earlier versions kept it."""


def pod_records(pod: Mapping[str, Any]) -> dict[str, ProcessRecord]:
    """Each container's process record; a pod from before per-container records has only the Ray
    container's, under the single annotations."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    records = parse_records(annotations.get(PROCESSES_ANNOTATION))
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    ray = str(containers[0].get("name") or "")
    if ray not in records:
        legacy = ProcessRecord.parse(
            {
                "pid": annotations.get(PID_ANNOTATION),
                "createTime": annotations.get(CREATE_TIME_ANNOTATION),
                "tag": annotations.get(TAG_ANNOTATION),
            }
        )
        if legacy is not None:
            records[ray] = legacy
    return records


def parse_records(text: str | None) -> dict[str, ProcessRecord]:
    """The per-container records of a Pod's annotation; junk is dropped (that container starts afresh)."""
    try:
        raw = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(name): record for name, value in raw.items() if (record := ProcessRecord.parse(value)) is not None}


class Timing(Protocol):
    @property
    def poll(self) -> float: ...
    @property
    def backoff_start(self) -> float: ...
    @property
    def backoff_cap(self) -> float: ...
    @property
    def grace(self) -> float: ...
    @property
    def readiness_until_ready(self) -> float | None: ...


class PodSide(Protocol):
    """What a container needs from its pod."""

    name: str
    namespace: str
    pod: dict[str, Any]

    @property
    def settings(self) -> Timing: ...

    @property
    def pod_ip(self) -> str:
        """The pod's IP (its sandbox's): where HTTP and TCP probes dial."""
        ...

    async def env(self, container: dict[str, Any]) -> dict[str, str]: ...

    def probe_command(self, command: Sequence[str], *, pid: int) -> list[str]:
        """An exec probe's argv for the container process ``pid`` (run inside its sandbox)."""
        ...

    async def spawn(self, container: dict[str, Any], env: dict[str, str]) -> procs.ProcessHandle: ...

    def log_path(self, container: Mapping[str, Any]) -> Path: ...

    async def report(self) -> None: ...


class ContainerRunner:
    """One container's life. ``run`` (main containers, sidecars) and ``run_to_completion`` (init containers)
    are awaited in a task the pod cancels; the process stays until :meth:`terminate`."""

    def __init__(
        self,
        *,
        pod: PodSide,
        spec: Mapping[str, Any],
        role: Role,
        policy: str,
        previous: Mapping[str, Any],
        record: ProcessRecord | None,
    ) -> None:
        self.pod = pod
        self.spec = dict(spec)
        self.name = str(spec.get("name") or "")
        self.role = role
        self.policy = "Always" if role is Role.SIDECAR else policy
        self.record = record
        """The process this container had when the runner came (after a runner restart), if any."""
        self.handle: procs.ProcessHandle | None = None
        self.restarts = int(previous.get("restartCount") or 0)
        state = previous.get("state") or {}
        self.state: dict[str, Any] | None = dict(state) or None
        self.last: dict[str, Any] | None = (previous.get("lastState") or {}).get("terminated") or None
        """The previous termination (lastState): the current one moves here when the container restarts."""
        self.started_at: str | None = (state.get("running") or {}).get("startedAt")
        self.ready = False
        self.started = False
        self.started_event = asyncio.Event()
        """Set once the container has started (its startup probe passed): the next init container may go."""
        self._spawning: asyncio.Future[procs.ProcessHandle] | None = None
        self._step: float | None = None
        """The back-off before the last restart (None: none yet): restartCount only grows, this resets."""
        self._ran: float | None = None
        """How long the last run lasted, in seconds (None: unknown, e.g. a process this runner adopted)."""

    # -- status ---------------------------------------------------------------------------------------

    def entry(self, *, waiting_reason: str) -> dict[str, Any]:
        """The kubelet's container status; ``waiting_reason`` for a container that was never started."""
        return {
            "name": self.name,
            "ready": self.ready,
            "restartCount": self.restarts,
            "image": self.spec.get("image", ""),
            "started": self.started,
            "state": self.state or {"waiting": {"reason": waiting_reason}},
            "lastState": {"terminated": self.last} if self.last else {},
        }

    async def _running(self) -> None:
        self.state = {"running": {"startedAt": self.started_at or now()}}
        await self.pod.report()

    async def _waiting(self, reason: str, message: str) -> None:
        self.state = {"waiting": {"reason": reason, "message": message}}
        self.ready = self.started = False
        await self.pod.report()

    async def _terminated(self, code: int, reason: str, message: str) -> None:
        """Report the exit (with the previous one still as lastState), then keep it as the last termination."""
        moment = now()
        termination: dict[str, Any] = {"exitCode": code, "reason": reason}
        if message:
            termination["message"] = message[-MESSAGE_LIMIT:]
        termination |= {"startedAt": self.started_at or moment, "finishedAt": moment}
        self.state = {"terminated": termination}
        self.ready = self.started = False
        await self.pod.report()
        self.started_at = None

    def _retire(self) -> None:
        """The container starts again: its last exit becomes lastState."""
        terminated = (self.state or {}).get("terminated")
        if terminated is not None:
            self.last = terminated

    @property
    def exit_code(self) -> int | None:
        terminated = (self.state or {}).get("terminated")
        return None if terminated is None else int(terminated.get("exitCode", 0))

    # -- life -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run, restarting as the policy says, until the container is done for good (never, under Always)."""
        env = await self._resolve_env()
        record, self.record = self.record, None
        adopted = record.adopt() if record is not None else None
        vanished = record is not None and adopted is None
        while True:
            if vanished:
                vanished = False
                code, reason = UNKNOWN_EXIT, "Error"
                message = "the process ended while the pod runner was not running; its exit code is unknown"
            else:
                code, reason, message = await self._attempt(env, adopted)
                adopted = None
            await self._terminated(code, reason, message)
            if not (self.policy == "Always" or (self.policy == "OnFailure" and code != 0)):
                return
            self.restarts += 1
            await self._backoff()

    async def run_to_completion(self) -> tuple[bool, str]:
        """A regular init container: one run; (success, what to tell when it failed)."""
        env = await self._resolve_env()
        self.started_at = now()
        try:
            self.handle = await self._spawn(env)
        except LocalError as error:
            await self._terminated(127, "StartError", str(error))
            return False, str(error)
        await self._running()
        code = await self._wait_exit(self.handle)
        self.handle = None
        tail = procs.tail(self.pod.log_path(self.spec), lines=20, last_run=True) if code != 0 else ""
        await self._terminated(code, "Completed" if code == 0 else "Error", tail)
        self.ready = code == 0  # the kubelet's: a completed init container is ready
        return code == 0, f"init container {self.name} exited {code}:\n{tail}"

    async def _resolve_env(self) -> dict[str, str]:
        """The container's environment; a missing Secret or ConfigMap key is retried, as the kubelet does."""
        while True:
            try:
                return await self.pod.env(self.spec)
            except EnvError as error:
                if (self.state or {}).get("waiting", {}).get("message") != str(error):
                    await self._waiting("CreateContainerConfigError", str(error))
                await asyncio.sleep(self.pod.settings.backoff_start)

    async def _spawn(self, env: dict[str, str]) -> procs.ProcessHandle:
        # Shielded: a pod stopped while its container starts still gets the process, to terminate it.
        self._spawning = asyncio.ensure_future(self.pod.spawn(self.spec, env))
        handle = await asyncio.shield(self._spawning)
        self._spawning = None
        return handle

    async def _attempt(self, env: dict[str, str], adopted: procs.ProcessHandle | None) -> tuple[int, str, str]:
        """One run of the container: (exit code, reason, message)."""
        self._retire()
        began: float | None = None
        if adopted is not None:
            self.handle = adopted
            self.started_at = self.started_at or now()
        else:
            self.started_at = now()
            began = time.monotonic()
            try:
                self.handle = await self._spawn(env)
            except LocalError as error:
                return 127, "StartError", str(error)
        code = await self._watch(self.handle)
        self._ran = None if began is None else time.monotonic() - began
        self.handle = None
        message = procs.tail(self.pod.log_path(self.spec), lines=20, last_run=True) if code != 0 else ""
        return code, "Completed" if code == 0 else "Error", message  # FallbackToLogsOnError

    async def _backoff(self) -> None:
        settings = self.pod.settings
        ran, self._ran = self._ran, None
        delay = next_backoff(self._step, ran=ran, start=settings.backoff_start, cap=settings.backoff_cap)
        self._step = delay
        self._retire()
        uid = str((self.pod.pod.get("metadata") or {}).get("uid") or "")
        message = backoff_message(delay, container=self.name, pod=self.pod.name, namespace=self.pod.namespace, uid=uid)
        await self._waiting("CrashLoopBackOff", message)
        await asyncio.sleep(delay)

    async def _wait_exit(self, handle: procs.ProcessHandle) -> int:
        while True:
            code = handle.poll()
            if code is not None:
                return 128 - code if code < 0 else code  # killed by signal N: 128+N, as container runtimes say
            if handle.popen is None and not handle.is_alive():
                return UNKNOWN_EXIT
            await asyncio.sleep(self.pod.settings.poll)

    def _probe(self, key: str, kind: ProbeKind) -> asyncio.Task[ProbeEvent | None] | None:
        spec = self.spec.get(key)
        if not spec:
            return None
        try:
            probe = parse_probe(spec, ports=_named_ports(self.spec), host=self.pod.pod_ip)
        except ProbeSpecError as error:
            log.warning("podrunner.probe_skipped", pod=self.pod.name, container=self.name, probe=key, error=str(error))
            return None
        if isinstance(probe.action, ExecAction) and self.handle is not None:
            command = self.pod.probe_command(probe.action.command, pid=self.handle.pid)
            probe = dataclasses.replace(probe, action=ExecAction(command=tuple(command)))
        if kind is ProbeKind.READINESS:
            probe = dataclasses.replace(probe, period_until_ready=self.pod.settings.readiness_until_ready)
        runner = ProbeRunner(probe, kind=kind, on_event=self._on_probe)
        return asyncio.create_task(runner.run())

    async def _on_probe(self, event: ProbeEvent) -> None:
        if event.kind is ProbeKind.READINESS and self.started:
            self.ready = event.ok
            await self.pod.report()
        elif event.kind is ProbeKind.STARTUP and event.ok:
            await self._mark_started()

    async def _mark_started(self) -> None:
        self.started = True
        self.ready = not self.spec.get("readinessProbe")
        self.started_event.set()
        await self._running()

    async def _watch(self, handle: procs.ProcessHandle) -> int:
        """Wait for the process to exit, running the probes meanwhile; its exit code."""
        self.ready = self.started = False
        startup = self._probe("startupProbe", ProbeKind.STARTUP)
        probes = [startup] if startup is not None else []
        if startup is None:
            await self._mark_started()
        else:
            await self._running()
        exited = asyncio.create_task(self._wait_exit(handle))
        try:
            if startup is None:
                probes += self._later_probes()
            while True:
                done, _ = await asyncio.wait({exited, *probes}, return_when=asyncio.FIRST_COMPLETED)
                if exited in done:
                    return exited.result()
                for task in [t for t in probes if t in done]:
                    probes.remove(task)
                    event = task.result()
                    if event is not None and event.kind is ProbeKind.STARTUP and event.ok:
                        probes += self._later_probes()
                    elif event is not None and not event.ok:  # liveness or startup failed: kill, then restart
                        log.info("podrunner.probe_failed", pod=self.pod.name, container=self.name, kind=event.kind)
                        await _terminate_tree(handle, grace=self.pod.settings.grace)
        finally:
            exited.cancel()
            for task in probes:
                task.cancel()

    def _later_probes(self) -> list[asyncio.Task[ProbeEvent | None]]:
        found = (self._probe("readinessProbe", ProbeKind.READINESS), self._probe("livenessProbe", ProbeKind.LIVENESS))
        return [task for task in found if task is not None]

    async def terminate(self, *, grace: float, report: bool = False) -> None:
        """Stop the container's process tree (SIGTERM, ``grace``, SIGKILL); with ``report``, its exit becomes
        its status (the pod ended: a sidecar is stopped, not crashed). Also stops a process recorded by a
        previous runner that this one never adopted."""
        if self._spawning is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                self.handle = self.handle or await self._spawning
            self._spawning = None
        handle = self.handle or (self.record.adopt() if self.record is not None else None)
        self.handle = None
        if handle is None:
            return
        result = await _terminate_tree(handle, grace=grace)
        if report:
            code = result.exit_code
            code = UNKNOWN_EXIT if code is None else 128 - code if code < 0 else code
            await self._terminated(code, "Completed" if code == 0 else "Error", "")


def _named_ports(container: Mapping[str, Any]) -> dict[int | str, int]:
    """The container's named ports (``ports[].name`` -> ``containerPort``): what a probe's ``port: probes`` means."""
    return {
        str(p["name"]): int(p["containerPort"])
        for p in container.get("ports") or ()
        if isinstance(p, Mapping) and p.get("name") and isinstance(p.get("containerPort"), int)
    }
