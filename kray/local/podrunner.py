"""The pod runner: a virtual node that turns Pods in the store into local processes.

For each Pod it runs the init containers in order, then the Ray container (``containers[0]``) with
the pod's command, args and resolved env — the very ``ray start`` line KubeRay generates — using
the ``ray`` of the current Python environment (the image is ignored; it says so once). It reports
phase, pod IP (127.0.0.1), container states and readiness (from the pod's readiness probe) back to
the store, applies ``restartPolicy`` with CrashLoopBackOff delays, and kills the whole process tree
when the Pod goes away.

Process identity (pid, start time, tag) is recorded on the Pod, so a restarted runner re-adopts
live processes instead of starting them twice, and cleans up after processes that died meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from kray.local import procs
from kray.local.errors import LocalError, ProbeSpecError
from kray.local.podenv import LOCAL_POD_IP, EnvError, expand_args, resolve_env
from kray.local.ports import PortAllocator
from kray.local.probes import ProbeEvent, ProbeKind, ProbeRunner, parse_probe
from kray.runtime.informer import Informer, ObjectKey, key_of
from kray.runtime.workqueue import ShutDown, WorkQueue
from kray.store import POD, Obj, Store
from kray.store.errors import NotFound, StoreError

log = structlog.get_logger(__name__)

HOME_ENV = "KRAY_LOCAL_HOME"
"""Every pod process carries its state dir, so ``kray server stop`` can sweep orphans."""
PID_ANNOTATION = "kray.io/pid"
CREATE_TIME_ANNOTATION = "kray.io/pid-create-time"
TAG_ANNOTATION = "kray.io/process-tag"
PORT_OWNER_ANNOTATION = "kray.io/port-owner"
FINALIZER = "kray.io/pod-runner"
"""Set on every pod local mode creates: a deleted pod stays (Terminating, with a deletionTimestamp) until the
runner has stopped its processes, as the kubelet's graceful deletion keeps a pod until its containers are
gone. Without it a suspended or deleted cluster would read as gone while its Ray processes still run."""
BACKOFF_START, BACKOFF_CAP = 10.0, 300.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    state_dir: Path
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    """Put first on PATH: the ``ray`` and ``python`` pods run are this environment's."""
    grace: float = 10.0
    poll: float = 0.25
    backoff_start: float = BACKOFF_START
    backoff_cap: float = BACKOFF_CAP


class PodRunner:
    def __init__(self, *, store: Store, settings: RunnerSettings, ports: PortAllocator | None = None) -> None:
        self.store = store
        self.settings = settings
        self.ports = ports
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self.tasks: dict[ObjectKey, PodTask] = {}
        self._image_noted = False

    kill_on_exit = True
    """When the runner stops: kill every pod's processes (server stop), or leave them to be re-adopted."""

    async def run(self, stop: asyncio.Event) -> None:
        informer = Informer(self.store, POD)
        informer.add_handler(lambda old, new: self.queue.add(key_of(new if new is not None else old)))  # type: ignore[arg-type]
        feeder = asyncio.create_task(informer.run(stop))
        worker = asyncio.create_task(self._work())
        try:
            await stop.wait()
        finally:
            self.queue.shut_down()
            worker.cancel()
            feeder.cancel()
            for task in (worker, feeder):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.kill_on_exit:
                await asyncio.gather(*(t.stop() for t in self.tasks.values()), return_exceptions=True)
            else:
                for pod_task in self.tasks.values():
                    pod_task.detach()

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except StoreError as error:
                log.warning("podrunner.sync_failed", pod="/".join(key), error=str(error))
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    async def sync(self, key: ObjectKey) -> None:
        namespace, name = key
        try:
            pod = await self.store.get(POD, name, namespace=namespace)
        except NotFound:
            pod = None
        task = self.tasks.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            if task is not None:
                del self.tasks[key]
                await task.stop()
                if self.ports is not None and task.port_owner:
                    self.ports.release(task.port_owner)
            if pod is not None:
                await self._finish_deletion(pod, stopped=task is not None)
            return
        if task is not None or (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}:
            return
        if not self._image_noted:
            self._image_noted = True
            image = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("image", "?")
            log.info("podrunner.image_ignored", image=image, ray=shutil.which("ray", path=str(self.settings.bin_dir)))
        task = PodTask(store=self.store, pod=pod, settings=self.settings)
        self.tasks[key] = task
        task.start()

    async def _finish_deletion(self, pod: Obj, *, stopped: bool) -> None:
        """A deleting pod's processes are stopped: let it go (stopping first what a previous runner left)."""
        meta = pod["metadata"]
        finalizers = meta.get("finalizers") or []
        if FINALIZER not in finalizers:
            return
        if not stopped:
            leftover = PodTask(store=self.store, pod=pod, settings=self.settings)
            handle = leftover._adopt()
            if handle is not None:
                await asyncio.to_thread(procs.terminate_tree, handle, grace=self.settings.grace)
            owner = (meta.get("annotations") or {}).get(PORT_OWNER_ANNOTATION)
            if self.ports is not None and owner:
                self.ports.release(owner)
        remaining = [f for f in finalizers if f != FINALIZER]
        with contextlib.suppress(NotFound):
            await self.store.patch(
                POD, meta["name"], namespace=meta.get("namespace"), patch={"metadata": {"finalizers": remaining}}
            )


class PodTask:
    """Runs one pod's containers until the pod is deleted or ends for good."""

    def __init__(self, *, store: Store, pod: Obj, settings: RunnerSettings) -> None:
        self.store = store
        self.pod = pod
        self.settings = settings
        meta = pod["metadata"]
        self.name: str = meta["name"]
        self.namespace: str = meta.get("namespace") or "default"
        self.port_owner = (meta.get("annotations") or {}).get(PORT_OWNER_ANNOTATION)
        self.dir: Path = settings.state_dir / "pods" / self.namespace / self.name
        self.handle: procs.ProcessHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._detached = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=f"pod-{self.namespace}-{self.name}")

    def detach(self) -> None:
        """Leave the processes running (the runner is going away but the pods are not)."""
        self._detached = True
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.handle is not None:
            await asyncio.to_thread(procs.terminate_tree, self.handle, grace=self.settings.grace)
            self.handle = None

    # -- the pod's life -------------------------------------------------------------------------------

    async def _main(self) -> None:
        spec = self.pod.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            await self._status(phase="Failed", reason="NoContainers", message="the pod has no containers")
            return
        ray = containers[0]
        try:
            env = await self._env(ray)
        except EnvError as error:
            await self._waiting(ray, reason="CreateContainerConfigError", message=str(error))
            return
        restarts = _restart_count(self.pod)
        adopted = self._adopt()
        if adopted is None:
            for init in spec.get("initContainers") or []:
                if not await self._run_init(init):
                    return
        policy = spec.get("restartPolicy", "Always")
        while True:
            if adopted is not None:
                self.handle, adopted = adopted, None
            else:
                try:
                    self.handle = await self._spawn(ray, env)
                except LocalError as error:
                    await self._terminated(
                        ray,
                        code=127,
                        reason="StartError",
                        message=str(error),
                        restarts=restarts,
                        phase="Failed" if policy == "Never" else None,
                    )
                    if policy == "Never":
                        return
                    restarts += 1
                    await self._backoff(ray, restarts)
                    continue
            await self._running(ray, restarts=restarts, ready=ray.get("readinessProbe") is None)
            code = await self._watch(ray)
            message = procs.tail(self._log(ray), lines=20) if code != 0 else ""
            finished = policy == "Never" or (policy == "OnFailure" and code == 0)
            phase = ("Succeeded" if code == 0 else "Failed") if finished else None
            await self._terminated(
                ray,
                code=code,
                reason="Completed" if code == 0 else "Error",
                message=message,
                restarts=restarts,
                phase=phase,
            )
            self.handle = None
            if finished:
                return
            restarts += 1
            await self._backoff(ray, restarts)

    async def _env(self, container: dict[str, Any]) -> dict[str, str]:
        resolved = await resolve_env(store=self.store, pod=self.pod, container=container)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "KRAY_"))}
        base["PATH"] = f"{self.settings.bin_dir}{os.pathsep}{base.get('PATH', '')}"
        return {**base, **resolved, HOME_ENV: str(self.settings.state_dir)}

    def _log(self, container: dict[str, Any]) -> Path:
        return self.dir / f"{container.get('name', 'container')}.log"

    def _workdir(self, container: dict[str, Any]) -> Path:
        wanted = container.get("workingDir")
        if wanted and Path(wanted).is_dir():
            return Path(wanted)
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir

    async def _spawn(self, container: dict[str, Any], env: dict[str, str]) -> procs.ProcessHandle:
        argv = expand_args([*(container.get("command") or []), *(container.get("args") or [])], env)
        if not argv:
            raise LocalError("the container has no command: local mode cannot run an image's entrypoint")
        handle = await asyncio.to_thread(
            procs.spawn, argv=argv, env=env, cwd=self._workdir(container), log_path=self._log(container)
        )
        await self._annotate(
            {
                PID_ANNOTATION: str(handle.pid),
                CREATE_TIME_ANNOTATION: repr(handle.create_time),
                TAG_ANNOTATION: handle.tag or "",
            }
        )
        return handle

    def _adopt(self) -> procs.ProcessHandle | None:
        annotations = self.pod["metadata"].get("annotations") or {}
        pid, created = annotations.get(PID_ANNOTATION), annotations.get(CREATE_TIME_ANNOTATION)
        if not pid or not created:
            return None
        try:
            return procs.adopt(int(pid), float(created), tag=annotations.get(TAG_ANNOTATION) or None)
        except (ValueError, LocalError):
            return None

    async def _run_init(self, container: dict[str, Any]) -> bool:
        env = await self._env(container)
        try:
            handle = await self._spawn(container, env)
        except LocalError as error:
            await self._status(phase="Failed", reason="InitError", message=str(error))
            return False
        self.handle = handle
        code = await self._wait_exit(handle)
        self.handle = None
        if code != 0:
            message = procs.tail(self._log(container), lines=20)
            await self._status(
                phase="Failed",
                reason="InitError",
                message=f"init container {container.get('name')} exited {code}:\n{message}",
            )
            return False
        return True

    async def _wait_exit(self, handle: procs.ProcessHandle) -> int:
        while True:
            code = handle.poll()
            if code is not None:
                return code
            if handle.popen is None and not handle.is_alive():
                return -1  # an adopted process: its exit code died with the previous runner
            await asyncio.sleep(self.settings.poll)

    async def _watch(self, container: dict[str, Any]) -> int:
        """Wait for the Ray container to exit, running its probes meanwhile."""
        assert self.handle is not None
        handle = self.handle
        probes: list[asyncio.Task[ProbeEvent | None]] = []
        for key, kind in (("readinessProbe", ProbeKind.READINESS), ("livenessProbe", ProbeKind.LIVENESS)):
            spec = container.get(key)
            if not spec:
                continue
            try:
                probe = parse_probe(spec, host=LOCAL_POD_IP)
            except ProbeSpecError as error:
                log.warning("podrunner.probe_skipped", pod=self.name, probe=key, error=str(error))
                continue
            runner = ProbeRunner(probe, kind=kind, on_event=self._probe_event(container))
            probes.append(asyncio.create_task(runner.run()))
        exited = asyncio.create_task(self._wait_exit(handle))
        try:
            while True:
                waiting: set[asyncio.Task[Any]] = {exited, *probes}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if exited in done:
                    return exited.result()
                for task in [t for t in probes if t in done]:
                    probes.remove(task)
                    event = task.result()
                    if event is not None and event.kind is ProbeKind.LIVENESS and not event.ok:
                        log.info("podrunner.liveness_failed", pod=self.name, message=event.message)
                        await asyncio.to_thread(procs.terminate_tree, handle, grace=self.settings.grace)
        finally:
            for task in probes:
                task.cancel()

    def _probe_event(self, container: dict[str, Any]) -> Any:
        async def on_event(event: ProbeEvent) -> None:
            if event.kind is ProbeKind.READINESS:
                await self._running(container, restarts=_restart_count(self.pod), ready=event.ok)

        return on_event

    async def _backoff(self, container: dict[str, Any], restarts: int) -> None:
        delay = min(self.settings.backoff_cap, self.settings.backoff_start * 2 ** max(0, restarts - 1))
        await self._waiting(
            container,
            reason="CrashLoopBackOff",
            message=f"back-off {delay:.0f}s restarting failed container",
            restarts=restarts,
        )
        await asyncio.sleep(delay)

    # -- status ---------------------------------------------------------------------------------------

    async def _annotate(self, annotations: dict[str, str]) -> None:
        try:
            self.pod = await self.store.patch(
                POD, self.name, namespace=self.namespace, patch={"metadata": {"annotations": annotations}}
            )
        except NotFound:
            raise asyncio.CancelledError from None

    async def _patch_status(self, status: dict[str, Any]) -> None:
        try:
            self.pod = await self.store.patch(
                POD, self.name, namespace=self.namespace, patch={"status": status}, subresource="status"
            )
        except NotFound:
            raise asyncio.CancelledError from None

    async def _status(self, *, phase: str, reason: str, message: str) -> None:
        await self._patch_status({"phase": phase, "reason": reason, "message": message[-4000:]})

    async def _running(self, container: dict[str, Any], *, restarts: int, ready: bool) -> None:
        now = _now()
        flag = "True" if ready else "False"
        await self._patch_status(
            {
                "phase": "Running",
                "podIP": LOCAL_POD_IP,
                "podIPs": [{"ip": LOCAL_POD_IP}],
                "hostIP": LOCAL_POD_IP,
                "startTime": (self.pod.get("status") or {}).get("startTime") or now,
                "conditions": _conditions(initialized=True, ready=flag, now=now),
                "containerStatuses": [
                    {
                        "name": container.get("name"),
                        "ready": ready,
                        "restartCount": restarts,
                        "image": container.get("image", ""),
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        )

    async def _waiting(self, container: dict[str, Any], *, reason: str, message: str, restarts: int = 0) -> None:
        await self._patch_status(
            {
                "phase": "Pending"
                if reason == "CreateContainerConfigError"
                else (self.pod.get("status") or {}).get("phase", "Pending"),
                "conditions": _conditions(initialized=True, ready="False", now=_now()),
                "containerStatuses": [
                    {
                        "name": container.get("name"),
                        "ready": False,
                        "restartCount": restarts,
                        "image": container.get("image", ""),
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ],
            }
        )

    async def _terminated(
        self, container: dict[str, Any], *, code: int, reason: str, message: str, restarts: int, phase: str | None
    ) -> None:
        now = _now()
        status: dict[str, Any] = {
            "conditions": _conditions(initialized=True, ready="False", now=now),
            "containerStatuses": [
                {
                    "name": container.get("name"),
                    "ready": False,
                    "restartCount": restarts,
                    "image": container.get("image", ""),
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": reason,
                            "message": message[-4000:],
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
        if phase is not None:
            status["phase"] = phase
            if message:
                status["message"] = message[-4000:]
        await self._patch_status(status)


def _conditions(*, initialized: bool, ready: str, now: str) -> list[dict[str, str]]:
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True" if initialized else "False", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
        {"type": "Ready", "status": ready, "lastTransitionTime": now},
    ]


def _restart_count(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return int(statuses[0].get("restartCount", 0)) if statuses else 0
