"""``kray job run`` (the main job), ``kray job submit`` and ``kray logs``.

``job run`` validates a RayJob manifest, creates it in local mode, shows the cluster coming up,
streams the driver's log as it is written, and exits 0 when the Ray job SUCCEEDED (1 when it ended
otherwise, 2 for an invalid manifest). Ctrl-C deletes the RayJob, which stops the Ray job and tears
its cluster down; the job stays in history.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from kray.cli.documents import ensure_namespace, read_manifests, store_all
from kray.cli.fit import refuse_unfit
from kray.cli.local import EXIT_INVALID, Namespace, TargetNamespace, _call, fail, require_ray
from kray.local.history import submitter_identity
from kray.local.server.client import HttpStore
from kray.store import POD, RAYCLUSTER, RAYJOB
from kray.store.errors import NotFound, StoreError

job_app = typer.Typer(help="Run and submit Ray jobs.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)  # messages quote log lines: never re-wrapped
TERMINAL = {"Complete", "Failed", "ValidationFailed"}
POLL = 0.5


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


async def _logs(
    store: HttpStore, namespace: str, name: str, offset: int, submission: str | None
) -> tuple[str, int, bool]:
    params = {"offset": str(offset)}
    if submission:
        params["submission"] = submission
    try:
        async with store.stream("GET", f"/kray/v1/history/jobs/{namespace}/{name}/logs", params=params) as response:
            if response.status_code != 200:
                return "", offset, False
            text = (await response.aread()).decode("utf-8", "replace")
            return (
                text,
                int(response.headers.get("X-Kray-Log-Size", offset)),
                response.headers.get("X-Kray-Log-Complete") == "1",
            )
    except Exception:
        return "", offset, False


async def _replace_finished(store: HttpStore, namespace: str, name: str) -> None:
    """A RayJob of that name that already ended is removed first (history keeps it); a live one is an error."""
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
    offset, submission, last_line = 0, None, ""
    job: dict[str, Any] = {}
    unreachable_since: float | None = None
    while True:
        try:
            job, cluster, pods = await _state(store, namespace, name)
            unreachable_since = None
        except NotFound:
            raise fail(f"RayJob {namespace}/{name} was deleted") from None
        except StoreError as error:
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > 60:
                raise fail(f"lost the kray server for 60 s: {error}") from None
            await asyncio.sleep(POLL)
            continue
        status = job.get("status") or {}
        line = _phase_line(job, cluster, pods)
        if show_progress and line != last_line:
            err.print(f"[dim]kray:[/dim] {escape(line)}", highlight=False)
            last_line = line
        submission = status.get("jobId") or submission
        if submission:
            text, offset, _ = await _logs(store, namespace, name, offset, submission)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
        state = status.get("jobDeploymentStatus")
        if state in TERMINAL and (
            not submission
            or status.get("jobStatus") in {"", None}
            or await _drain(store, namespace, name, offset, submission)
        ):
            return job
        await asyncio.sleep(POLL)


async def _drain(store: HttpStore, namespace: str, name: str, offset: int, submission: str) -> bool:
    """After the job ended: print the rest of the log once history has the complete copy (≤ 15 s)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text, offset, complete = await _logs(store, namespace, name, offset, submission)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
        if complete:
            return True
        await asyncio.sleep(POLL)
    return True


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


@job_app.command("run")
def run(
    filename: Annotated[str, typer.Option("--filename", "-f", help="A RayJob manifest (KubeRay's format).")],
    namespace: TargetNamespace = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines, only the driver log.")] = False,
) -> None:
    """Run a RayJob on this machine: provision its cluster, run it, stream its log, tear down.

    Exit code 0 when the Ray job SUCCEEDED, 1 when it failed or was stopped, 2 for an invalid manifest.
    """
    manifests = read_manifests([filename], namespace=namespace)
    jobs = [p for p in manifests.planned if p.resource is RAYJOB]
    if len(jobs) != 1:
        raise fail(f"{filename}: expected exactly one RayJob, found {len(jobs)}", EXIT_INVALID)
    require_ray()
    refuse_unfit(list(manifests.documents), source=filename)
    others = [p for p in manifests.planned if p is not jobs[0]]  # stored first: what the job's pods use
    job = jobs[0].obj
    job["metadata"].setdefault("annotations", {})["kray.io/submitter"] = submitter_identity()
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    if not quiet:
        err.print(f"[dim]kray:[/dim] running RayJob {ns}/{name} on this machine", highlight=False)

    def say(line: str) -> None:
        if not quiet:
            err.print(f"[dim]kray:[/dim] {escape(line)}", highlight=False)

    async def main(store: HttpStore) -> tuple[dict[str, Any], str | None]:
        await store_all(store, others, say=say)
        await ensure_namespace(store, ns, say=say)
        for line in manifests.skipped:
            say(line)
        await _replace_finished(store, ns, name)
        await store.create(RAYJOB, job)
        try:
            final = await follow(store, ns, name, show_progress=not quiet)
        except (KeyboardInterrupt, asyncio.CancelledError):
            err.print(f"[yellow]kray:[/yellow] interrupted: deleting RayJob {ns}/{name} and its cluster")
            with contextlib.suppress(StoreError):
                await store.delete(RAYJOB, name, namespace=ns, propagation="Foreground")
            raise
        return final, await _kept_cluster(store, final)

    try:
        final, kept = _call(main)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
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
        offset = 0
        deadline = time.monotonic() + 24 * 3600
        while time.monotonic() < deadline:
            try:
                async with store.stream(
                    "GET",
                    f"/kray/v1/history/jobs/{namespace}/{name}/logs",
                    params={"offset": str(offset), **({"submission": submission} if submission else {})},
                ) as response:
                    if response.status_code == 404:
                        raise fail(f"no job history for {namespace}/{name}")
                    text = (await response.aread()).decode("utf-8", "replace")
                    offset = int(response.headers.get("X-Kray-Log-Size", offset))
                    complete = response.headers.get("X-Kray-Log-Complete") == "1"
            except StoreError as error:
                raise fail(str(error)) from None
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
            if not follow_ or complete:
                return
            await asyncio.sleep(POLL)

    _call(main)
