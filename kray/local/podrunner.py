"""The pod runner: a virtual node that turns Pods in the store into local processes.

For each Pod it runs what the kubelet runs, in the kubelet's order: the init containers one after the
other (a native sidecar, ``restartPolicy: Always``, is started and left running), then every container of
``spec.containers`` at once, each its own process tree with its own log (``<pod dir>/<container>.log``),
restarts and probes (:mod:`kray.local.containers`). Commands run as written — for the Ray container
(``containers[0]``) the very ``ray start`` line KubeRay generates — with the ``ray`` of the current Python
environment (the image is ignored; it says so once). The pod's status is written as the kubelet writes
it: one ``containerStatuses`` entry per container sorted by name, ``initContainerStatuses`` in spec order, and the phase
and conditions that follow from them (:mod:`kray.local.podstatus`). Deleting the pod stops the main
containers, then the sidecars (pods stop together, and meanwhile others start); a deleted pod leaves
nothing on disk: its own directory (container logs) goes, and its cluster's Ray temp dir goes with the
cluster's last pod.

Every container's process identity (pid, start time, tag) is recorded on the Pod, so a restarted runner
re-adopts live processes instead of starting them twice, and restarts (as their policy says) the
containers whose processes died meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from kray.local import procs
from kray.local.containers import (
    CREATE_TIME_ANNOTATION,
    MESSAGE_LIMIT,
    PID_ANNOTATION,
    PROCESSES_ANNOTATION,
    TAG_ANNOTATION,
    ContainerRunner,
    ProcessRecord,
    Role,
    role_of,
)
from kray.local.containers import now as _now
from kray.local.containers import pod_records as _records
from kray.local.errors import LocalError
from kray.local.paths import UnsafePath, ray_temp_root, remove_tree
from kray.local.pod_policy import FINALIZER, LocalPolicy, PodPolicy, host_env
from kray.local.podenv import expand_args, resolve_env
from kray.local.podstatus import pod_conditions, pod_phase
from kray.local.ports import PortAllocator
from kray.local.preflight import find_ray, missing_ray_message, pod_path
from kray.local.sandbox import LOCAL_POD_IP, HostSandboxes, Sandbox, SandboxError, Sandboxes
from kray.local.tempdirs import mark, remove_unused
from kray.local.volumes import (
    TokenSource,
    VolumeContext,
    VolumeError,
    VolumePending,
    join_argv,
    prepare_container,
    release,
)
from kray.runtime.informer import Informer, ObjectKey, key_of
from kray.runtime.workqueue import ShutDown, WorkQueue
from kray.store import POD, Obj, Store
from kray.store.errors import NotFound, StoreError

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_START",
    "CREATE_TIME_ANNOTATION",
    "FINALIZER",
    "HOME_ENV",
    "PID_ANNOTATION",
    "PORT_OWNER_ANNOTATION",
    "PROCESSES_ANNOTATION",
    "RAY_TEMP_DIR_ANNOTATION",
    "TAG_ANNOTATION",
    "PodRunner",
    "PodTask",
    "RunnerSettings",
    "pod_dir",
]

log = structlog.get_logger(__name__)

HOME_ENV = "KRAY_LOCAL_HOME"
"""Every pod process carries its state dir, so ``kray server stop`` can sweep orphans."""
PORT_OWNER_ANNOTATION = "kray.io/port-owner"
RAY_TEMP_DIR_ANNOTATION = "kray.io/ray-temp-dir"
"""The Ray temp dir (``--temp-dir``) the pod's processes share with the rest of its cluster. The runner
deletes it when no pod that may still run uses it, and only if it lies inside :func:`ray_temp_root`."""
BACKOFF_START, BACKOFF_CAP = 10.0, 300.0
VOLUME_RETRY_START, VOLUME_RETRY_CAP = 0.5, 10.0
"""A container waiting for what its volumes need looks again after 0.5 s, doubling up to 10 s."""
_RAY_COMMAND = re.compile(r"(^|[\s;&|(])ray\s")
"""A command line that runs ``ray`` (KubeRay's generated ``ray start`` line, a user's ``ray ...``)."""
ENDED = frozenset({"Succeeded", "Failed"})
STOP_MARGIN = 30.0
"""A stopping runner waits for its pods' stops at most twice the grace period and this long."""


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
    readiness_until_ready: float | None = 1.0
    """How often a readiness probe is tried until it first succeeds (``Probe.period_until_ready``); None on the
    node agent, which probes as the kubelet does."""


@dataclass(frozen=True, slots=True)
class _Stopping:
    """A pod whose processes are being stopped, in the background of the runner's worker."""

    pod: PodTask
    """Its task (a new one for what a previous runner left): its pod as last seen, its processes."""
    job: asyncio.Task[None]
    grace: float

    @property
    def uid(self) -> str | None:
        return _uid(self.pod.pod)


class PodRunner:
    """Runs the store's pods, one worker deciding: only the worker registers, starts and begins to stop a
    PodTask, and cleans up after one. Stopping (up to the grace period) runs in the background, so pods
    stop together and a pod starts while others stop; when a stop is over its key comes back to the worker,
    which then releases the ports, removes the directories and the finalizer."""

    def __init__(
        self,
        *,
        store: Store,
        settings: RunnerSettings,
        ports: PortAllocator | None = None,
        sandboxes: Sandboxes | None = None,
        policy: PodPolicy | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.ports = ports
        self.sandboxes: Sandboxes = sandboxes or HostSandboxes()
        self.policy: PodPolicy = policy or LocalPolicy()
        self.tokens = tokens
        """Service-account tokens for projected volumes (the node agent's); None: local mode skips them."""
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self.tasks: dict[ObjectKey, PodTask] = {}
        self._stopping: dict[ObjectKey, _Stopping] = {}
        """Pods being stopped, until the worker has cleaned up after them (at most one stop per key: a pod
        created again under the same name starts once the old one's stop is over)."""
        self._image_noted = False
        self._leaving: set[str] = set()
        """Ray temp dirs of pods whose deletion is under way (removed by a stop that interrupts it)."""

    kill_on_exit = True
    """When the runner stops: kill every pod's processes (server stop), or leave them to be re-adopted."""

    async def run(self, stop: asyncio.Event) -> None:
        informer = Informer(self.store, POD, field_selector=self.policy.field_selector)
        informer.add_handler(lambda old, new: self.queue.add(key_of(new if new is not None else old)))  # type: ignore[arg-type]
        await self._remove_unclaimed_temp_dirs()
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
            # A deleted pod's stop is finished either way (it began: its processes are going).
            stopping = list(self._stopping.values())
            stops = [s.job for s in stopping]
            graces = [s.grace for s in stopping]
            if self.kill_on_exit:
                for running in self.tasks.values():
                    graces.append(self.policy.grace(running.pod, default=self.settings.grace))
                    stops.append(asyncio.create_task(running.stop(grace=graces[-1])))
            await self._bounded(stops, grace=max(graces, default=self.settings.grace))
            if self.kill_on_exit:
                for pod in [*(t.pod for t in self.tasks.values()), *(s.pod.pod for s in stopping)]:
                    await self.sandboxes.remove(pod)
                # No process of these pods runs any more: their Ray sessions are over (a pod started again
                # begins a new session), so their clusters' temp dirs go, with those of pods whose deletion
                # this stop interrupted; pod dirs keep their logs.
                pods = [*(t.pod for t in self.tasks.values()), *(s.pod.pod for s in stopping)]
                stopped = {d for p in pods if (d := _temp_dir_of(p))} | self._leaving
                for temp_dir in sorted(stopped):
                    await self._remove(Path(temp_dir), inside=ray_temp_root())
            else:
                for pod_task in self.tasks.values():
                    pod_task.detach()

    async def _bounded(self, stops: Sequence[asyncio.Future[None]], *, grace: float) -> None:
        """Wait for stops, each bounded by the grace periods of its containers; past twice the (longest)
        grace period and a margin, say what is left and give up on it."""
        if not stops:
            return
        _, late = await asyncio.wait(stops, timeout=2 * grace + STOP_MARGIN)
        for job in late:
            job.cancel()
        if late:
            log.warning("podrunner.stop_timed_out", pods=len(late))
        await asyncio.gather(*stops, return_exceptions=True)

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
        if pod is not None and not self.policy.ours(pod):
            pod = None
        stopping = self._stopping.get(key)
        if stopping is not None:
            if not stopping.job.done():
                return  # its end brings the key back
            await self._after_stop(stopping, pod)
            del self._stopping[key]
            if pod is None or _uid(pod) == stopping.uid:
                return
        task = self.tasks.get(key)
        deleting = pod is None or bool(pod["metadata"].get("deletionTimestamp"))
        if task is not None and (deleting or _uid(pod or {}) != _uid(task.pod)):
            # (a pod of another uid: this one was deleted and created again meanwhile)
            self._begin_stop(key, task, latest=pod if _uid(pod or {}) == _uid(task.pod) else None)
            return
        if pod is None or deleting:
            if pod is not None and self.policy.held(pod):
                # A pod that never started here, or whose processes a previous runner left.
                self._begin_stop(key, self._task(pod), latest=pod)
            return
        if task is not None:
            if _condition_states(pod) != _condition_states(task.pod):
                # Another writer's (the node lifecycle controller marks a dead node's pods not ready): ours
                # again, as the kubelet's status manager restores its own.
                try:
                    await task.report()
                except asyncio.CancelledError:  # the pod is gone: its delete event brings the key back
                    if (current := asyncio.current_task()) is not None and current.cancelling():
                        raise
            return
        if (pod.get("status") or {}).get("phase") in ENDED:
            return
        if not self._image_noted:
            self._image_noted = True
            image = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("image", "?")
            log.info("podrunner.image_ignored", image=image, ray=shutil.which("ray", path=str(self.settings.bin_dir)))
        task = self._task(pod)
        self.tasks[key] = task
        task.start()

    def _task(self, pod: Obj) -> PodTask:
        return PodTask(
            store=self.store,
            pod=pod,
            settings=self.settings,
            sandboxes=self.sandboxes,
            tokens=self.tokens,
            base_env=self.policy.base_env(),
        )

    def _begin_stop(self, key: ObjectKey, stopped: PodTask, *, latest: Obj | None) -> None:
        """Stop the pod's processes in the background; the key comes back to the worker when they are gone.
        ``latest``: the pod as the store has it now (its delete's grace period), None when it is gone."""
        if self.tasks.get(key) is stopped:
            del self.tasks[key]
        leaving = _temp_dir_of(stopped.pod)
        if leaving:
            self._leaving.add(leaving)
        grace = self.policy.grace(latest or stopped.pod, default=self.settings.grace)

        async def stop() -> None:
            try:
                await stopped.stop(grace=grace)
            finally:
                self.queue.add(key)

        job = asyncio.create_task(stop(), name=f"stop-{key[0]}-{key[1]}")
        self._stopping[key] = _Stopping(pod=stopped, job=job, grace=grace)

    async def _after_stop(self, stopping: _Stopping, pod: Obj | None) -> None:
        """A pod's processes are stopped: release its ports, clean up after it, and, when the store still
        holds it for us, let it go (``pod``: what the store has under its name now, maybe a new pod)."""
        if not stopping.job.cancelled() and (error := stopping.job.exception()) is not None:
            log.warning("podrunner.stop_failed", pod=stopping.pod.name, error=repr(error))
        if self.ports is not None and stopping.pod.port_owner:
            self.ports.release(stopping.pod.port_owner)
        await self.sandboxes.remove(stopping.pod.pod)
        if pod is not None and _uid(pod) == stopping.uid and self.policy.held(pod):
            await self.policy.release(self.store, pod)
        # After the release: a cluster's temp dir never goes while one of its pods is still listed (killed in
        # between, the next start removes the dirs no listed pod names).
        await self._clean_up(stopping.pod.pod)
        leaving = _temp_dir_of(stopping.pod.pod)
        others = [s for s in self._stopping.values() if s is not stopping]
        if leaving and all(_temp_dir_of(s.pod.pod) != leaving for s in others):
            self._leaving.discard(leaving)

    # -- leaving nothing behind -----------------------------------------------------------------------

    async def _clean_up(self, pod: Obj) -> None:
        """Delete a stopped pod's directory, and its cluster's Ray temp dir unless another pod may use it.

        Runs on the runner's single worker, the only place a PodTask is registered and started: between
        the "in use?" check and the deletion no pod of the same cluster can start (the stops running
        meanwhile start nothing, and count as users). Never raises.
        """
        key = key_of(pod)
        pods_root = self.settings.state_dir / "pods"
        directory = pod_dir(self.settings.state_dir, key[0] or "default", key[1])
        release(pod_dir=directory, state_dir=self.settings.state_dir)
        await self._remove(directory, inside=pods_root)
        temp_dir = _temp_dir_of(pod)
        if temp_dir and not await self._temp_dir_in_use(temp_dir, besides=key):
            await self._remove(Path(temp_dir), inside=ray_temp_root())

    async def _remove_unclaimed_temp_dirs(self) -> None:
        """Delete this state dir's Ray temp dirs that no pod in the store names (a previous server was killed
        with -9 before it removed them): runs before the first pod starts, so no process of this state dir
        uses a dir no pod names. Never raises."""
        try:
            pods = (await self.store.list(POD)).items
        except StoreError as error:
            log.warning("podrunner.cleanup_skipped", error=str(error))
            return
        used = [d for p in pods if (d := _temp_dir_of(p))]
        for removed in await asyncio.to_thread(remove_unused, self.settings.state_dir, used=used):
            log.info("podrunner.removed_unclaimed", path=str(removed))

    async def _temp_dir_in_use(self, temp_dir: str, *, besides: ObjectKey) -> bool:
        """Whether a pod other than ``besides`` runs, or may yet run, with this Ray temp dir.

        Besides this runner's tasks and the pods it is stopping (cleaned up after, each in turn: the last
        removes the dir), the store is asked: after a runner restart, live pods of the same cluster are
        adopted only when the queue reaches them.
        """
        for key, task in self.tasks.items():
            if key != besides and task.active and _temp_dir_of(task.pod) == temp_dir:
                return True
        if any(key != besides and _temp_dir_of(s.pod.pod) == temp_dir for key, s in self._stopping.items()):
            return True
        try:
            pods = (await self.store.list(POD)).items
        except StoreError as error:
            log.warning("podrunner.cleanup_skipped", temp_dir=temp_dir, error=str(error))
            return True
        return any(
            key_of(other) != besides and _temp_dir_of(other) == temp_dir and _may_run(other, self.policy)
            for other in pods
        )

    async def _remove(self, path: Path, *, inside: Path) -> None:
        try:
            removed = await asyncio.to_thread(remove_tree, path, inside=inside)
        except (OSError, UnsafePath) as error:
            log.warning("podrunner.cleanup_failed", path=str(path), error=str(error))
        else:
            if removed:
                log.debug("podrunner.removed", path=str(path))


def _condition_states(pod: Obj) -> dict[str, str]:
    return {str(c.get("type")): str(c.get("status")) for c in (pod.get("status") or {}).get("conditions") or ()}


def _uid(pod: Obj) -> str | None:
    return (pod.get("metadata") or {}).get("uid")


def _temp_dir_of(pod: Obj) -> str | None:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(RAY_TEMP_DIR_ANNOTATION) or None


def _may_run(pod: Obj, policy: PodPolicy) -> bool:
    """Whether a pod's processes may be alive, or may start: it has not ended and, if it is being deleted,
    it is still held for us (without that, only the runner's task for it would tell, and that is
    checked apart)."""
    meta = pod.get("metadata") or {}
    if (pod.get("status") or {}).get("phase") in ENDED:
        return False
    return not meta.get("deletionTimestamp") or policy.held(pod)


class PodTask:
    """Runs one pod's containers until the pod is deleted or ends for good (see :mod:`kray.local.containers`
    for each container's own life)."""

    def __init__(
        self,
        *,
        store: Store,
        pod: Obj,
        settings: RunnerSettings,
        sandboxes: Sandboxes | None = None,
        tokens: TokenSource | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.pod = pod
        self.settings = settings
        self.tokens = tokens
        self.base_env: Mapping[str, str] = host_env() if base_env is None else base_env
        self.sandboxes: Sandboxes = sandboxes or HostSandboxes()
        self.sandbox: Sandbox | None = None
        """Made before the first container starts (the same again for an adopted pod)."""
        meta = pod["metadata"]
        self.name: str = meta["name"]
        self.namespace: str = meta.get("namespace") or "default"
        self.port_owner = (meta.get("annotations") or {}).get(PORT_OWNER_ANNOTATION)
        self.dir: Path = pod_dir(settings.state_dir, self.namespace, self.name)
        spec = pod.get("spec") or {}
        self.policy = str(spec.get("restartPolicy") or "Always")
        status = pod.get("status") or {}
        previous = {
            str(entry.get("name")): entry
            for entry in [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
        }
        records = _records(pod)
        self.inits = [
            self._runner(c, role_of(c, init=True), previous, records) for c in spec.get("initContainers") or ()
        ]
        self.mains = [self._runner(c, Role.MAIN, previous, records) for c in spec.get("containers") or ()]
        self._records = records
        self._initialized = False
        self._terminal = False
        self._failure: dict[str, str] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._children: list[asyncio.Task[Any]] = []

    def _runner(
        self, spec: dict[str, Any], role: Role, previous: dict[str, Any], records: dict[str, ProcessRecord]
    ) -> ContainerRunner:
        name = str(spec.get("name") or "")
        return ContainerRunner(
            pod=self,
            spec=spec,
            role=role,
            policy=self.policy,
            previous=previous.get(name) or {},
            record=records.get(name),
        )

    @property
    def sidecars(self) -> list[ContainerRunner]:
        return [r for r in self.inits if r.role is Role.SIDECAR]

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=f"pod-{self.namespace}-{self.name}")

    @property
    def active(self) -> bool:
        """Its processes may be alive: the pod's life is not over, or a process of it is not yet stopped."""
        running = any(r.handle is not None for r in (*self.inits, *self.mains))
        return running or (self._task is not None and not self._task.done())

    def detach(self) -> None:
        """Leave the processes running (the runner is going away but the pods are not)."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop every container as the kubelet does when a pod is deleted: the main containers (and a running
        init container) together, SIGTERM then SIGKILL after the grace period (``grace``, default the
        runner's); then the native sidecars, in reverse order, within what is left of it. Also stops the
        processes a previous runner left."""
        grace = self.settings.grace if grace is None else grace
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        first = [r for r in (*self.mains, *self.inits) if r.role is not Role.SIDECAR]
        await asyncio.gather(*(r.terminate(grace=grace) for r in first), return_exceptions=True)
        await self._stop_sidecars(grace=max(deadline - loop.time(), min(2.0, grace)))

    async def _stop_sidecars(self, *, grace: float, report: bool = False) -> None:
        for runner in reversed(self.sidecars):
            await runner.terminate(grace=grace, report=report)

    # -- the pod's life -------------------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            await self._life()
        finally:
            for child in self._children:
                child.cancel()
            await asyncio.gather(*self._children, return_exceptions=True)

    def _start(self, runner: ContainerRunner) -> asyncio.Task[None]:
        task = asyncio.create_task(runner.run(), name=f"container-{self.namespace}-{self.name}-{runner.name}")
        self._children.append(task)
        return task

    async def _life(self) -> None:
        if not self.mains:
            await self._fail("NoContainers", "the pod has no containers")
            return
        try:
            self.sandbox = await self.sandboxes.create(self.pod)
        except SandboxError as error:
            await self._fail("FailedCreatePodSandBox", f"Failed to create pod sandbox: {error}")
            return
        # Main containers have run: the init containers are done (a runner restart adopts, never re-inits).
        self._initialized = any(r.record is not None for r in self.mains)
        if self._initialized:
            for runner in self.inits:
                if runner.role is Role.SIDECAR:
                    self._start(runner)
                elif runner.state is None:
                    runner.state, runner.ready = {"terminated": {"exitCode": 0, "reason": "Completed"}}, True
        else:
            await self.report()
            for runner in self.inits:
                await runner.terminate(grace=self.settings.grace)  # a previous runner's, cut short
                if runner.role is Role.SIDECAR:
                    self._start(runner)
                    await runner.started_event.wait()
                    continue
                ok, message = await runner.run_to_completion()
                if not ok:
                    await self._stop_sidecars(grace=self.settings.grace)
                    await self._fail("InitError", message)
                    return
            self._initialized = True
        await asyncio.gather(*(self._start(runner) for runner in self.mains))
        # Every main container is done for good (Never, OnFailure): the sidecars go, the pod ends.
        for child in self._children:
            child.cancel()
        await asyncio.gather(*self._children, return_exceptions=True)
        self._terminal = True
        await self._stop_sidecars(grace=self.settings.grace, report=True)
        await self.report()

    async def _fail(self, reason: str, message: str) -> None:
        self._failure = {"reason": reason, "message": message[-MESSAGE_LIMIT:]}
        self._terminal = True
        await self.report()

    # -- what a container needs from its pod (containers.PodSide) -------------------------------------

    async def env(self, container: dict[str, Any]) -> dict[str, str]:
        resolved = await resolve_env(store=self.store, pod=self.pod, container=container, sandbox=self.sandbox)
        cluster = dict(self.sandbox.env) if self.sandbox is not None else {}
        if self.sandbox is not None and self.sandbox.hostname:
            cluster["HOSTNAME"] = self.sandbox.hostname
        env = {**self.base_env, **cluster, **resolved, HOME_ENV: str(self.settings.state_dir)}
        # kray's environment comes first even when the manifest sets PATH (for its image's directories).
        env["PATH"] = pod_path(self.settings.bin_dir, env.get("PATH"))
        return env

    @property
    def pod_ip(self) -> str:
        """Where HTTP and TCP probes dial."""
        return (self.sandbox or Sandbox(ip=LOCAL_POD_IP)).ip

    def probe_command(self, command: Sequence[str], *, pid: int) -> list[str]:
        """An exec probe's argv: inside the container (its namespaces, working dir and environment) when
        it runs in an isolated sandbox, as a CRI runtime's exec; on the host otherwise (local mode)."""
        if self.sandbox is None or not self.sandbox.isolated:
            return list(command)
        return join_argv(python=sys.executable, pid=pid, argv=command)

    def log_path(self, container: Mapping[str, Any]) -> Path:
        return self.dir / f"{container.get('name', 'container')}.log"

    def _workdir(self, container: dict[str, Any]) -> Path:
        wanted = container.get("workingDir")
        if wanted and Path(wanted).is_dir():
            return Path(wanted)
        if self.sandbox is not None and self.sandbox.isolated:
            return Path("/")  # as an image without WORKDIR: the pod's dir may lie under the private /tmp
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir

    async def spawn(self, container: dict[str, Any], env: dict[str, str]) -> procs.ProcessHandle:
        """Start a container's process: the one path every container (init, sidecar, main) takes."""
        argv = expand_args([*(container.get("command") or []), *(container.get("args") or [])], env)
        if not argv:
            raise LocalError("the container has no command: local mode cannot run an image's entrypoint")
        if _RAY_COMMAND.search(" ".join(argv)) and find_ray(bin_dir=self.settings.bin_dir, path=env["PATH"]) is None:
            raise LocalError(missing_ray_message(bin_dir=self.settings.bin_dir))
        argv = await self._volumes(container, argv, env)
        await self._mark_temp_dir()
        handle = await asyncio.to_thread(
            procs.spawn, argv=argv, env=env, cwd=self._workdir(container), log_path=self.log_path(container)
        )
        await self._record(str(container.get("name") or ""), handle)
        return handle

    async def _mark_temp_dir(self) -> None:
        """Name this state dir in the pod's Ray temp dir before a process may use it (:mod:`kray.local.tempdirs`),
        so ``kray server stop`` and a restarted runner know it as theirs. A temp dir outside the root is left
        alone: Ray creates it, kray never deletes it."""
        temp_dir = _temp_dir_of(self.pod)
        if not temp_dir:
            return
        try:
            await asyncio.to_thread(mark, Path(temp_dir), home=self.settings.state_dir)
        except (OSError, UnsafePath) as error:
            log.warning("podrunner.temp_dir_unmarked", temp_dir=temp_dir, error=str(error))

    async def _volumes(self, container: dict[str, Any], argv: list[str], env: dict[str, str]) -> list[str]:
        """The container's volumes, made and mounted (argv wrapped with the mount-namespace launcher), as the
        kubelet's volume manager: a missing ConfigMap, Secret or claim keeps the container in ContainerCreating,
        retried with a bounded back-off; a bad volume, or a kernel without mount namespaces, fails the pod."""
        ctx = VolumeContext(
            pod_dir=self.dir,
            state_dir=self.settings.state_dir,
            protected=(ray_temp_root(), self.settings.bin_dir),
            sandbox=self.sandbox,
            tokens=self.tokens,
        )
        delay = VOLUME_RETRY_START
        while True:
            try:
                prepared = await prepare_container(
                    reader=self.store, pod=self.pod, container=container, argv=argv, env=env, ctx=ctx
                )
                return prepared.argv
            except VolumePending as error:
                name = str(container.get("name") or "")
                for runner in (*self.inits, *self.mains):
                    if runner.name == name:
                        runner.state = {"waiting": {"reason": "ContainerCreating", "message": str(error)}}
                await self.report()
            except (VolumeError, OSError) as error:
                await self._fail("FailedMount", str(error))
                raise asyncio.CancelledError from None  # the pod has ended: nothing of it runs
            await asyncio.sleep(delay)
            delay = min(delay * 2, VOLUME_RETRY_CAP)

    async def _record(self, container: str, handle: procs.ProcessHandle) -> None:
        """Keep the process's identity on the Pod, so a restarted runner adopts it; the Ray container's also
        under the single annotations earlier versions wrote (and read)."""
        async with self._lock:
            self._records[container] = ProcessRecord(pid=handle.pid, create_time=handle.create_time, tag=handle.tag)
            annotations = {PROCESSES_ANNOTATION: json.dumps({k: v.to_json() for k, v in self._records.items()})}
            if self.mains and container == self.mains[0].name:
                annotations |= {
                    PID_ANNOTATION: str(handle.pid),
                    CREATE_TIME_ANNOTATION: repr(handle.create_time),
                    TAG_ANNOTATION: handle.tag or "",
                }
            try:
                self.pod = await self.store.patch(
                    POD, self.name, namespace=self.namespace, patch={"metadata": {"annotations": annotations}}
                )
            except NotFound:
                raise asyncio.CancelledError from None

    async def report(self) -> None:
        """Write the pod's status from its containers' (one writer at a time, always the whole picture)."""
        async with self._lock:
            await self._patch_status(self._status())

    def _status(self) -> dict[str, Any]:
        initializing = "PodInitializing" if not self._initialized else "ContainerCreating"
        init = [r.entry(waiting_reason="PodInitializing") for r in self.inits]
        mains = [r.entry(waiting_reason=initializing) for r in self.mains]
        regular = [e for r, e in zip(self.inits, init, strict=True) if r.role is Role.INIT]
        sidecars = [e for r, e in zip(self.inits, init, strict=True) if r.role is Role.SIDECAR]
        if self._failure is not None:
            phase = "Failed"
        else:
            phase = pod_phase(
                policy=self.policy, init=regular, sidecars=sidecars, containers=mains, terminal=self._terminal
            )
        uninitialized = (
            []
            if self._initialized
            else [r.name for r in self.inits if not (r.started if r.role is Role.SIDECAR else r.exit_code == 0)]
        )
        unready = [r.name for r in (*self.sidecars, *self.mains) if not r.ready]
        now = _now()
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": pod_conditions(
                (self.pod.get("status") or {}).get("conditions"),
                uninitialized=uninitialized,
                unready=unready,
                phase=phase,
                now=now,
            ),
            "startTime": (self.pod.get("status") or {}).get("startTime") or now,
            # The kubelet sorts main containers' statuses by name (init containers keep spec order); Ray's
            # autoscaler reads ``containerStatuses[0]``, so the order is part of the contract.
            "containerStatuses": sorted(mains, key=lambda entry: entry["name"]),
        }
        if self.sandbox is not None:
            ip, host = self.sandbox.ip, self.sandbox.host_ip
            status |= {"podIP": ip, "podIPs": [{"ip": ip}], "hostIP": host, "hostIPs": [{"ip": host}]}
        if init:
            status["initContainerStatuses"] = init
        if self._failure is not None:
            status |= self._failure
        elif phase in ENDED:
            ended = [(r.state or {}).get("terminated") or {} for r in self.mains]
            message = next((t.get("message") for t in ended if t.get("exitCode") != 0 and t.get("message")), None)
            if message:
                status["message"] = message
        return status

    async def _patch_status(self, status: dict[str, Any]) -> None:
        try:
            self.pod = await self.store.patch(
                POD, self.name, namespace=self.namespace, patch={"status": status}, subresource="status"
            )
        except NotFound:
            raise asyncio.CancelledError from None
