"""``kray job run`` (the main job), ``kray job submit`` and ``kray logs``.

``job run`` validates a RayJob manifest, creates it in local mode, shows the cluster coming up,
streams the driver's log as it is written, and exits 0 when the Ray job SUCCEEDED (1 when it ended
otherwise, 2 for an invalid manifest). The first Ctrl-C deletes the RayJob, which stops the Ray job
and tears its cluster down, and waits for that at most :data:`STOP_SECONDS`; the second leaves at
once, saying what is left. The job stays in history. Losing the server for :data:`LOST_SERVER_SECONDS`
ends the command (exit 1) with what to do.

A RayJob with ``metadata.generateName`` is created as ``kubectl create`` creates it and followed by the name
the store gave it. An InteractiveMode RayJob waits for its user's job: once its cluster is ready ``job run``
prints the ``kray job submit --rayjob`` command that submits it, and follows that job to the end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from kray.cli.fit import refuse_unfit
from kray.cli.interrupt import EXIT_INTERRUPTED, Interrupts
from kray.cli.local import EXIT_INVALID, Namespace, TargetNamespace, _call, fail, require_ray
from kray.cli.logtail import REQUEST_SECONDS, LogTail, StartWait
from kray.store import POD, RAYCLUSTER, RAYJOB
from kray.store.errors import NotFound, StoreError

if TYPE_CHECKING:  # every command module is imported to register it: implementations load inside the commands
    from kray.local.server.client import HttpStore

# asyncio too is imported by the functions that use it: with ssl, it cost every `kray` start 0.05-0.3 s.

job_app = typer.Typer(help="Run and submit Ray jobs.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)  # messages quote log lines: never re-wrapped
TERMINAL = {"Complete", "Failed", "ValidationFailed"}
POLL = 0.5
LOST_SERVER_SECONDS = 15.0
"""How long a command following a job waits for an unreachable server before it gives up."""
DRAIN_SECONDS = 15.0
"""After a job ended: how long its log may stay unchanged before the command stops waiting for the rest."""
STOP_SECONDS = 10.0
"""After Ctrl-C: how long the command waits for the RayJob (and its cluster) to be gone."""
RAY_STATUS_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
T = TypeVar("T")


def say(line: str, *, style: str = "dim") -> None:
    err.print(f"[{style}]kray:[/{style}] {escape(line)}", highlight=False)


def _warn(line: str) -> None:
    say(line, style="yellow")


def _hint(namespace: str, name: str) -> str:
    """``kray delete job NAME`` as the user would type it for this job."""
    return f"kray delete job {name}" + ("" if namespace == "default" else f" -n {namespace}")


def _phase_line(job: dict[str, Any], cluster: dict[str, Any] | None, pods: list[dict[str, Any]]) -> str:
    status = job.get("status") or {}
    deployment = status.get("jobDeploymentStatus") or "New"
    if deployment in {"", "New", "Initializing"}:
        if cluster is None:
            return "creating the Ray cluster"
        heads = [p for p in pods if (p["metadata"].get("labels") or {}).get("ray.io/node-type") == "head"]
        workers = [p for p in pods if (p["metadata"].get("labels") or {}).get("ray.io/node-type") == "worker"]
        ready = sum(1 for p in workers if _ready(p))
        cluster_status = cluster.get("status")  # desiredWorkerReplicas is omitted when 0, as KubeRay writes it
        desired = cluster_status.get("desiredWorkerReplicas", 0) if cluster_status else len(workers)
        head = "head ready" if heads and _ready(heads[0]) else "head starting"
        problems = sorted({reason for p in pods if (reason := _waiting_reason(p))})
        suffix = f" ({', '.join(problems)})" if problems else ""
        return f"provisioning: {head}, workers ready {ready}/{desired}{suffix}"
    if deployment == "Running":
        ray_status = status.get("jobStatus") or "submitting"
        return f"job {status.get('jobId')}: {ray_status}"
    return f"{deployment}"


def _waiting_reason(pod: dict[str, Any]) -> str | None:
    """``<pod>: CrashLoopBackOff`` and the like: why a pod's container is not running, if it says."""
    for container in (pod.get("status") or {}).get("containerStatuses") or ():
        reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
        if reason and reason not in ("ContainerCreating", "PodInitializing"):
            return f"{pod['metadata']['name']}: {reason}"
    return None


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


async def _state(
    store: HttpStore, namespace: str, name: str
) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    job = await store.get(RAYJOB, name, namespace=namespace)
    cluster_name = (job.get("status") or {}).get("rayClusterName")
    cluster, pods = None, []
    if cluster_name:
        with contextlib.suppress(NotFound):
            cluster = await store.get(RAYCLUSTER, cluster_name, namespace=namespace)
        pods = (await store.list(POD, namespace=namespace, label_selector=f"ray.io/cluster={cluster_name}")).items
    return job, cluster, pods


async def _replace_finished(store: HttpStore, namespace: str, name: str) -> None:
    """A RayJob of that name that already ended is removed first (history keeps it); a live one is an error."""
    import asyncio

    try:
        existing = await store.get(RAYJOB, name, namespace=namespace)
    except NotFound:
        return
    state = (existing.get("status") or {}).get("jobDeploymentStatus")
    if state not in TERMINAL:
        raise fail(
            f"RayJob {namespace}/{name} already exists and is {state or 'starting'}; follow it with "
            f"`kray logs {name} -f` or stop it with `kray delete job {name}`"
        )
    await store.delete(RAYJOB, name, namespace=namespace, propagation="Foreground")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            await store.get(RAYJOB, name, namespace=namespace)
        except NotFound:
            return
        await asyncio.sleep(POLL)
    raise fail(f"the previous RayJob {namespace}/{name} did not go away within 120 s")


async def follow(store: HttpStore, namespace: str, name: str, *, show_progress: bool) -> dict[str, Any]:
    """Print progress (stderr) and the driver log (stdout) until the RayJob ends; returns its last state."""
    import asyncio

    tail: LogTail | None = None
    last_line = ""
    hinted = False
    job: dict[str, Any] = {}
    lost_since: float | None = None
    while True:
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                job, cluster, pods = await _state(store, namespace, name)
        except NotFound:
            raise fail(f"RayJob {namespace}/{name} was deleted") from None
        except (StoreError, TimeoutError) as error:
            reason = str(error) or f"no answer within {REQUEST_SECONDS:.0f} s"
            if lost_since is None:
                lost_since = time.monotonic()
                _warn(f"lost the kray server ({reason}); retrying for {LOST_SERVER_SECONDS:.0f} s")
            if time.monotonic() - lost_since > LOST_SERVER_SECONDS:
                raise fail(_lost_server(namespace, name, reason)) from None
            await asyncio.sleep(POLL)
            continue
        if lost_since is not None:
            lost_since = None
            say("the kray server answers again")
        status = job.get("status") or {}
        line = _phase_line(job, cluster, pods)
        if show_progress and line != last_line:
            say(line)
            last_line = line
        if status.get("jobDeploymentStatus") == "Waiting" and not hinted:  # InteractiveMode: said even with -q
            say(_submit_hint(job), style="cyan")
            hinted = True
        submission = status.get("jobId")
        if submission and (tail is None or tail.submission != submission):
            tail = LogTail(store=store, namespace=namespace, name=name, submission=submission, say=_warn)
        if tail is not None:
            with contextlib.suppress(NotFound):  # history has not recorded this submission yet
                await tail.pull()
        if status.get("jobDeploymentStatus") in TERMINAL:
            if tail is not None and status.get("jobStatus"):
                await _drain(tail)
            return job
        await asyncio.sleep(POLL)


EXAMPLE_ENTRYPOINT = 'python -c "import ray; ray.init(); print(ray.cluster_resources())"'
"""What the InteractiveMode hint offers to run when the RayJob has no ``spec.entrypoint``: it works as printed."""


def _submit_hint(job: dict[str, Any]) -> str:
    """How to submit the job an InteractiveMode RayJob waits for (``kubectl ray job submit`` in local mode)."""
    meta, spec = job["metadata"], job.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    command = f"kray job submit --rayjob {name}" + ("" if namespace == "default" else f" -n {namespace}")
    head = f"RayJob {namespace}/{name} is InteractiveMode: its cluster is ready and waits for a job."
    follow_ = "This command follows the job to the end."
    if spec.get("entrypoint"):
        return f"{head} `{command}` submits its spec.entrypoint (or give another after --). {follow_}"
    return f"{head} Submit one with `{command} -- {EXAMPLE_ENTRYPOINT}` (any entrypoint after --). {follow_}"


def _lost_server(namespace: str, name: str, reason: str) -> str:
    return (
        f"lost the kray server for {LOST_SERVER_SECONDS:.0f} s ({reason}) while following RayJob "
        f"{namespace}/{name}. If it was stopped, the job's Ray processes were stopped with it. If it died, "
        f"they may still run: `kray server start` brings it back (then `kray logs {name} -f` follows the job, "
        f"`{_hint(namespace, name)}` stops it), or `kray server stop` stops every Ray process it left."
    )


async def _drain(tail: LogTail) -> None:
    """After the job ended: print the rest of the log, until history has its complete copy."""
    import asyncio

    quiet_since = time.monotonic()
    while not tail.complete:
        try:
            got = await tail.pull()
        except NotFound:
            got = 0
        if tail.complete:
            return
        if got:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > DRAIN_SECONDS:
            why = f" ({tail.last_error})" if tail.failing_since is not None else ""
            say(
                f"the driver log above may be incomplete: history has no complete copy after "
                f"{DRAIN_SECONDS:.0f} s{why}; `kray logs {tail.name}` prints what it keeps",
                style="yellow",
            )
            return
        await asyncio.sleep(POLL)


async def _kept_cluster(store: HttpStore, job: dict[str, Any]) -> str | None:
    """The name of the finished job's own cluster if it still runs (a clusterSelector job's cluster is the user's)."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    name = status.get("rayClusterName")
    if not name or spec.get("clusterSelector") or spec.get("shutdownAfterJobFinishes"):
        return None
    try:
        cluster = await store.get(RAYCLUSTER, name, namespace=job["metadata"]["namespace"])
    except NotFound:
        return None
    return None if cluster["metadata"].get("deletionTimestamp") else str(name)


async def interruptible(
    work: Awaitable[T],
    *,
    stopping: Callable[[], str],
    stop: Callable[[], Awaitable[None]],
    left: Callable[[bool], str],
) -> T:
    """Await ``work``; the first Ctrl-C says ``stopping()``, cancels it and awaits ``stop()`` (which bounds
    itself), then exits 130; a second Ctrl-C says ``left(stop_started)`` and leaves at once."""
    import asyncio

    task = asyncio.ensure_future(work)
    started = False

    def first() -> None:
        say(f"interrupted: {stopping()} (Ctrl-C again to leave without waiting)", style="yellow")
        task.cancel()

    def second() -> None:
        say(f"left without waiting: {left(started)}", style="yellow")

    interrupts = Interrupts(first=first, second=second)
    loop = asyncio.get_running_loop()
    interrupts.install(loop)
    try:
        try:
            return await task
        except asyncio.CancelledError:
            if not interrupts.count:
                raise
        started = True
        await stop()
    finally:
        interrupts.uninstall(loop)
    raise typer.Exit(EXIT_INTERRUPTED)


@dataclass
class Target:
    """The RayJob a command created and follows: named once the store has named it (``generateName``)."""

    namespace: str
    name: str | None
    cluster: str | None
    """The RayCluster it runs on when that is not its own (``clusterSelector``): deleting the job spares it."""

    @property
    def label(self) -> str:
        return f"RayJob {self.namespace}/{self.name or '(not created yet)'}"

    def stopping(self) -> str:
        if self.name is None:
            return "nothing was created yet"
        if self.cluster is None:
            return f"deleting {self.label} and its cluster"
        return f"deleting {self.label}, which stops its Ray job (RayCluster {self.cluster} keeps running)"

    def left(self, stop_started: bool) -> str:
        if self.name is None:
            return "nothing was created"
        running = "its Ray job" if self.cluster else "its cluster's Ray processes"
        what = (
            f"{self.label} is being deleted, and {running} may still run"
            if stop_started
            else f"{self.label} and {'its Ray job' if self.cluster else 'its cluster'} may still run"
        )
        return (
            f"{what}. `{_hint(self.namespace, self.name)}` stops them and waits; "
            f"`kray server stop` stops every Ray process of kray's server"
        )


def target_of(job: dict[str, Any]) -> Target:
    selector = (job.get("spec") or {}).get("clusterSelector") or {}
    meta = job["metadata"]
    return Target(namespace=meta["namespace"], name=meta.get("name"), cluster=selector.get("ray.io/cluster"))


async def create_and_follow(
    store: HttpStore, job: dict[str, Any], *, quiet: bool, created: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Create the RayJob (a finished one of its name replaced; a ``generateName`` resolved by the store) and
    follow it; on Ctrl-C delete it (bounded) and exit 130."""
    import asyncio

    target = target_of(job)
    creating: asyncio.Future[dict[str, Any]] | None = None

    async def work() -> dict[str, Any]:
        nonlocal creating
        if target.name:
            await _replace_finished(store, target.namespace, target.name)
        creating = asyncio.ensure_future(store.create(RAYJOB, job))
        stored = await asyncio.shield(creating)  # a Ctrl-C meanwhile lets it finish: :func:`stop` deletes what it made
        target.name = str(stored["metadata"]["name"])
        if created is not None:
            created(target.name)
        return await follow(store, target.namespace, target.name, show_progress=not quiet)

    async def stop() -> None:
        if creating is not None:  # sent: its answer (bounded) names what to delete
            await asyncio.wait([creating], timeout=STOP_SECONDS)
            if creating.done() and not creating.cancelled() and creating.exception() is None:
                target.name = str(creating.result()["metadata"]["name"])
        await _stop(store, target)

    return await interruptible(work(), stopping=target.stopping, stop=stop, left=target.left)


async def _stop(store: HttpStore, target: Target) -> None:
    """Delete the RayJob (its own cluster goes with it) and wait at most :data:`STOP_SECONDS` for it to be gone."""
    import asyncio

    namespace, name = target.namespace, target.name
    if name is None:
        say("nothing to stop")
        return
    try:
        async with asyncio.timeout(STOP_SECONDS):
            try:
                await store.delete(RAYJOB, name, namespace=namespace, propagation="Foreground")
            except NotFound:
                say(f"{target.label} had not been created: nothing to stop")
                return
            while True:
                try:
                    await store.get(RAYJOB, name, namespace=namespace)
                except NotFound:
                    deleted = (
                        f"{target.label} and its cluster are deleted"
                        if target.cluster is None
                        else f"{target.label} is deleted and its Ray job stopped"
                    )
                    say(f"{deleted}; the job stays in history")
                    return
                await asyncio.sleep(POLL)
    except TimeoutError:
        say(
            f"{target.label} is still being deleted after {STOP_SECONDS:.0f} s; its Ray processes "
            f"stop in the background (`kray get jobs` shows it until they have)",
            style="yellow",
        )
    except StoreError as error:
        say(
            f"could not delete {target.label}: {error}. `{_hint(namespace, name)}` deletes it once "
            f"the server answers; `kray server stop` stops every Ray process of kray's server",
            style="red",
        )


@job_app.command("run")
def run(
    filename: Annotated[str, typer.Option("--filename", "-f", help="A RayJob manifest (KubeRay's format).")],
    namespace: TargetNamespace = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines, only the driver log.")] = False,
) -> None:
    """Run a RayJob on this machine: provision its cluster, run it, stream its log, tear down.

    Exit code 0 when the Ray job SUCCEEDED, 1 when it failed or was stopped, 2 for an invalid manifest.
    """
    from kray.cli.documents import ensure_namespace, read_manifests, store_all
    from kray.local.history import submitter_identity

    manifests = read_manifests([filename], namespace=namespace, generate_name=True)
    jobs = [p for p in manifests.planned if p.resource is RAYJOB]
    if len(jobs) != 1:
        raise fail(f"{filename}: expected exactly one RayJob, found {len(jobs)}", EXIT_INVALID)
    require_ray()
    refuse_unfit(list(manifests.documents), source=filename)
    others = [p for p in manifests.planned if p is not jobs[0]]  # stored first: what the job's pods use
    job = jobs[0].obj
    job["metadata"].setdefault("annotations", {})["kray.io/submitter"] = submitter_identity()
    ns, name = job["metadata"]["namespace"], str(job["metadata"].get("name") or "")

    def progress(line: str) -> None:
        if not quiet:
            err.print(f"[dim]kray:[/dim] {escape(line)}", highlight=False)

    def created(as_named: str) -> None:
        nonlocal name
        if not name:  # generateName: the store named it
            name = as_named
            progress(f"running RayJob {ns}/{name} on this machine")

    if name:
        progress(f"running RayJob {ns}/{name} on this machine")

    async def main(store: HttpStore) -> tuple[dict[str, Any], str | None]:
        await store_all(store, others, say=progress)
        await ensure_namespace(store, ns, say=progress)
        for line in manifests.skipped:
            progress(line)
        final = await create_and_follow(store, job, quiet=quiet, created=created)
        return final, await _kept_cluster(store, final)

    try:
        final, kept = _call(main)
    except KeyboardInterrupt:  # before the handler of :func:`interruptible` was installed
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if kept and not quiet:
        err.print(
            f"[dim]kray:[/dim] RayCluster {escape(kept)} is kept (spec.shutdownAfterJobFinishes is not true); "
            f"`kray delete job {escape(name)}` removes it",
            highlight=False,
        )
    status = final.get("status") or {}
    ray_status = status.get("jobStatus") or "-"
    summary = f"RayJob {ns}/{name}: {status.get('jobDeploymentStatus')} (Ray job {status.get('jobId')}: {ray_status})"
    if status.get("message") and ray_status != "SUCCEEDED":
        summary += f"\n  {status.get('reason') or ''}: {status['message']}"
    if ray_status == "SUCCEEDED":
        err.print(f"[green]kray:[/green] {escape(summary)}", highlight=False)
        return
    err.print(f"[red]kray:[/red] {escape(summary)}", highlight=False)
    raise typer.Exit(EXIT_INVALID if status.get("jobDeploymentStatus") == "ValidationFailed" else 1)


def logs(
    name: Annotated[str, typer.Argument(help="RayJob name (running or finished).")],
    namespace: Namespace = "default",
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    submission: Annotated[str | None, typer.Option(help="A specific submission id (default: the latest).")] = None,
) -> None:
    """Print a job's driver log; works after its cluster (or the RayJob) is gone."""

    async def main(store: HttpStore) -> None:
        import asyncio

        tail = LogTail(store=store, namespace=namespace, name=name, submission=submission, say=_warn)
        start = StartWait(store=store, namespace=namespace, name=name, say=say)
        quiet_since = time.monotonic()
        while True:
            try:
                got = await tail.pull()
            except NotFound:
                if not follow_ or not await start.waiting():
                    raise fail(f"no job history for {namespace}/{name}") from None
                await asyncio.sleep(POLL)
                continue
            if tail.complete or (not follow_ and tail.failing_since is None):
                return
            if tail.failing_for() > LOST_SERVER_SECONDS:
                raise fail(
                    f"lost the kray server for {LOST_SERVER_SECONDS:.0f} s ({tail.last_error}); "
                    f"`kray server start` brings it back, then `kray logs {name} -f` prints the rest"
                )
            if got or tail.job_status not in RAY_STATUS_TERMINAL:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > DRAIN_SECONDS:
                say(f"the job ended ({tail.job_status}) and history has no complete copy of its log", style="yellow")
                return
            await asyncio.sleep(POLL)

    _call(main)
