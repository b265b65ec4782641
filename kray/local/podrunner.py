"""The pod runner: a virtual node that turns Pods in the store into local processes.

For each Pod it runs the init containers in order, then the Ray container (``containers[0]``) with
the pod's command, args and resolved env — the very ``ray start`` line KubeRay generates — using
the ``ray`` of the current Python environment (the image is ignored; it says so once). It reports
phase, pod IP (127.0.0.1), container states and readiness (from the pod's readiness probe) back to
the store as the kubelet would — a restarted container keeps its previous exit in ``lastState.terminated``
(exit code, reason, last log lines), which is what tells a crash loop's cause — applies ``restartPolicy``
with CrashLoopBackOff delays, and kills the whole process tree when the Pod goes away. A deleted pod
leaves nothing on disk: its own directory (container logs) goes, and its cluster's Ray temp dir goes with
the cluster's last pod.

Process identity (pid, start time, tag) is recorded on the Pod, so a restarted runner re-adopts
live processes instead of starting them twice, and cleans up after processes that died meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from kray.local import procs
from kray.local.errors import LocalError, ProbeSpecError
from kray.local.paths import UnsafePath, ray_temp_root, remove_tree
from kray.local.podenv import LOCAL_POD_IP, EnvError, expand_args, resolve_env
from kray.local.ports import PortAllocator
from kray.local.preflight import find_ray, missing_ray_message, pod_path
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
RAY_TEMP_DIR_ANNOTATION = "kray.io/ray-temp-dir"
"""The Ray temp dir (``--temp-dir``) the pod's processes share with the rest of its cluster. The runner
deletes it when no pod that may still run uses it, and only if it lies inside :func:`ray_temp_root`."""
FINALIZER = "kray.io/pod-runner"
"""Set on every pod local mode creates: a deleted pod stays (Terminating, with a deletionTimestamp) until the
runner has stopped its processes, as the kubelet's graceful deletion keeps a pod until its containers are
gone. Without it a suspended or deleted cluster would read as gone while its Ray processes still run."""
BACKOFF_START, BACKOFF_CAP = 10.0, 300.0
_RAY_COMMAND = re.compile(r"(^|[\s;&|(])ray\s")
"""A command line that runs ``ray`` (KubeRay's generated ``ray start`` line, a user's ``ray ...``)."""
MESSAGE_LIMIT = 4000
"""Characters of a log tail kept in a status ``message``."""
ENDED = frozenset({"Succeeded", "Failed"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_dir(state_dir: Path, namespace: str, name: str) -> Path:
    """Where a pod's container logs (and default working dir) live."""
    return state_dir / "pods" / namespace / name


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
        self._leaving: set[str] = set()
        """Ray temp dirs of pods whose deletion is under way (removed by a stop that interrupts it)."""

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
                # No process of these pods runs any more: their Ray sessions are over (a pod started again
                # begins a new session), so their clusters' temp dirs go, with those of pods whose deletion
                # this stop interrupted; pod dirs keep their logs.
                stopped = {d for t in self.tasks.values() if (d := _temp_dir_of(t.pod))} | self._leaving
                for temp_dir in sorted(stopped):
                    await self._remove(Path(temp_dir), inside=ray_temp_root())
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
                leaving = _temp_dir_of(task.pod)
                if leaving:
                    self._leaving.add(leaving)
                await task.stop()
                if self.ports is not None and task.port_owner:
                    self.ports.release(task.port_owner)
            if pod is not None and FINALIZER in (pod["metadata"].get("finalizers") or []):
                await self._finish_deletion(pod, stopped=task is not None)
            elif task is not None:
                await self._clean_up(pod if pod is not None else task.pod)
            if task is not None and leaving:
                self._leaving.discard(leaving)
            return
        if task is not None or (pod.get("status") or {}).get("phase") in ENDED:
            return
        if not self._image_noted:
            self._image_noted = True
            image = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("image", "?")
            log.info("podrunner.image_ignored", image=image, ray=shutil.which("ray", path=str(self.settings.bin_dir)))
        task = PodTask(store=self.store, pod=pod, settings=self.settings)
        self.tasks[key] = task
        task.start()

    async def _finish_deletion(self, pod: Obj, *, stopped: bool) -> None:
        """A deleting pod's processes are stopped: clean up after it and let it go (stopping first what a
        previous runner left)."""
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
        await self._clean_up(pod)
        remaining = [f for f in finalizers if f != FINALIZER]
        with contextlib.suppress(NotFound):
            await self.store.patch(
                POD, meta["name"], namespace=meta.get("namespace"), patch={"metadata": {"finalizers": remaining}}
            )

    # -- leaving nothing behind -----------------------------------------------------------------------

    async def _clean_up(self, pod: Obj) -> None:
        """Delete a stopped pod's directory, and its cluster's Ray temp dir unless another pod may use it.

        Runs on the runner's single worker, the only place a PodTask is registered and started: between
        the "in use?" check and the deletion no pod of the same cluster can start. Never raises.
        """
        key = key_of(pod)
        pods_root = self.settings.state_dir / "pods"
        await self._remove(pod_dir(self.settings.state_dir, key[0] or "default", key[1]), inside=pods_root)
        temp_dir = _temp_dir_of(pod)
        if temp_dir and not await self._temp_dir_in_use(temp_dir, besides=key):
            await self._remove(Path(temp_dir), inside=ray_temp_root())

    async def _temp_dir_in_use(self, temp_dir: str, *, besides: ObjectKey) -> bool:
        """Whether a pod other than ``besides`` runs, or may yet run, with this Ray temp dir.

        Besides this runner's tasks, the store is asked: after a runner restart, live pods of the same
        cluster are adopted only when the queue reaches them.
        """
        for key, task in self.tasks.items():
            if key != besides and task.active and _temp_dir_of(task.pod) == temp_dir:
                return True
        try:
            pods = (await self.store.list(POD)).items
        except StoreError as error:
            log.warning("podrunner.cleanup_skipped", temp_dir=temp_dir, error=str(error))
            return True
        return any(key_of(other) != besides and _temp_dir_of(other) == temp_dir and _may_run(other) for other in pods)

    async def _remove(self, path: Path, *, inside: Path) -> None:
        try:
            removed = await asyncio.to_thread(remove_tree, path, inside=inside)
        except (OSError, UnsafePath) as error:
            log.warning("podrunner.cleanup_failed", path=str(path), error=str(error))
        else:
            if removed:
                log.debug("podrunner.removed", path=str(path))


def _temp_dir_of(pod: Obj) -> str | None:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(RAY_TEMP_DIR_ANNOTATION) or None


def _may_run(pod: Obj) -> bool:
    """Whether a pod's processes may be alive, or may start: it has not ended and, if it is being deleted,
    our finalizer still holds it (without it, only the runner's task for it would tell, and that is
    checked apart)."""
    meta = pod.get("metadata") or {}
    if (pod.get("status") or {}).get("phase") in ENDED:
        return False
    return not meta.get("deletionTimestamp") or FINALIZER in (meta.get("finalizers") or [])


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
        self.dir: Path = pod_dir(settings.state_dir, self.namespace, self.name)
        self.handle: procs.ProcessHandle | None = None
        # What the pod already says (a restarted runner adopting it): the Ray container's last
        # termination, reported as lastState until the next one, and when its current run started.
        ray = _ray_status(pod)
        state = ray.get("state") or {}
        self._last_termination: dict[str, Any] | None = (
            state.get("terminated") or (ray.get("lastState") or {}).get("terminated") or None
        )
        self._started_at: str | None = (state.get("running") or {}).get("startedAt")
        self._task: asyncio.Task[None] | None = None
        self._detached = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=f"pod-{self.namespace}-{self.name}")

    @property
    def active(self) -> bool:
        """Its processes may be alive: the pod's life is not over, or a process of it is not yet stopped."""
        return self.handle is not None or (self._task is not None and not self._task.done())

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
                self._started_at = self._started_at or _now()
            else:
                try:
                    self._started_at = _now()
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
            message = procs.tail(self._log(ray), lines=20, last_run=True) if code != 0 else ""  # FallbackToLogsOnError
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
        env = {**base, **resolved, HOME_ENV: str(self.settings.state_dir)}
        # kray's environment comes first even when the manifest sets PATH (for its image's directories).
        env["PATH"] = pod_path(self.settings.bin_dir, env.get("PATH"))
        return env

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
        if _RAY_COMMAND.search(" ".join(argv)) and find_ray(bin_dir=self.settings.bin_dir, path=env["PATH"]) is None:
            raise LocalError(missing_ray_message(bin_dir=self.settings.bin_dir))
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
            message = procs.tail(self._log(container), lines=20, last_run=True)
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
        await self._patch_status({"phase": phase, "reason": reason, "message": message[-MESSAGE_LIMIT:]})

    async def _report(
        self,
        container: dict[str, Any],
        *,
        state: dict[str, Any],
        restarts: int,
        ready: bool = False,
        phase: str | None = None,
        pod_fields: dict[str, Any] | None = None,
    ) -> None:
        """Write the Ray container's status and the pod conditions that follow from it (the one builder).

        ``lastState`` is the previous termination, as the kubelet keeps it: while the container waits to
        restart and once it runs again, it says how the last run ended.
        """
        name = str(container.get("name") or "")
        entry = {
            "name": name,
            "ready": ready,
            "restartCount": restarts,
            "image": container.get("image", ""),
            "started": "running" in state,
            "state": state,
            "lastState": {"terminated": self._last_termination} if self._last_termination else {},
        }
        previous = (self.pod.get("status") or {}).get("conditions")
        status: dict[str, Any] = {
            **(pod_fields or {}),
            "conditions": _conditions(previous, ready=ready, container=name, now=_now()),
            "containerStatuses": [entry],
        }
        if phase is not None:
            status["phase"] = phase
        await self._patch_status(status)

    async def _running(self, container: dict[str, Any], *, restarts: int, ready: bool) -> None:
        now = _now()
        await self._report(
            container,
            state={"running": {"startedAt": self._started_at or now}},
            restarts=restarts,
            ready=ready,
            phase="Running",
            pod_fields={
                "podIP": LOCAL_POD_IP,
                "podIPs": [{"ip": LOCAL_POD_IP}],
                "hostIP": LOCAL_POD_IP,
                "startTime": (self.pod.get("status") or {}).get("startTime") or now,
            },
        )

    async def _waiting(self, container: dict[str, Any], *, reason: str, message: str, restarts: int = 0) -> None:
        phase = (
            "Pending"
            if reason == "CreateContainerConfigError"
            else (self.pod.get("status") or {}).get("phase", "Pending")
        )
        await self._report(
            container, state={"waiting": {"reason": reason, "message": message}}, restarts=restarts, phase=phase
        )

    async def _terminated(
        self, container: dict[str, Any], *, code: int, reason: str, message: str, restarts: int, phase: str | None
    ) -> None:
        now = _now()
        termination: dict[str, Any] = {"exitCode": code, "reason": reason}
        if message:
            termination["message"] = message[-MESSAGE_LIMIT:]
        termination |= {"startedAt": self._started_at or now, "finishedAt": now}
        pod_fields = {"message": message[-MESSAGE_LIMIT:]} if phase is not None and message else None
        await self._report(
            container, state={"terminated": termination}, restarts=restarts, phase=phase, pod_fields=pod_fields
        )
        self._last_termination = termination
        self._started_at = None


def _conditions(
    previous: list[dict[str, Any]] | None, *, ready: bool, container: str, now: str
) -> list[dict[str, str]]:
    """The kubelet's pod conditions (the pod is scheduled and initialized once the Ray container runs).

    A condition's ``lastTransitionTime`` moves only when its status flips; a not-ready pod says why, in
    Kubernetes' words.
    """
    before = {c.get("type"): c for c in previous or ()}
    flag = "True" if ready else "False"
    why = {} if ready else {"reason": "ContainersNotReady", "message": f"containers with unready status: [{container}]"}
    out = []
    for type_, status, extra in (
        ("PodScheduled", "True", {}),
        ("Initialized", "True", {}),
        ("ContainersReady", flag, why),
        ("Ready", flag, why),
    ):
        old = before.get(type_) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append({"type": type_, "status": status, "lastTransitionTime": since or now, **extra})
    return out


def _ray_status(pod: Obj) -> dict[str, Any]:
    """The Ray container's (``containers[0]``) status entry, or an empty one."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return dict(statuses[0]) if statuses else {}


def _restart_count(pod: Obj) -> int:
    return int(_ray_status(pod).get("restartCount", 0))
