"""``kray job submit --cluster C [--working-dir DIR] -- ENTRYPOINT``: a job on a running local cluster.

The job becomes a RayJob that selects the cluster (``clusterSelector``), so it gets the same state
machine, history and logs as any RayJob, and deleting it never touches the cluster. A working
directory is zipped and uploaded to the cluster as ``gcs://_ray_pkg_<sha>.zip`` (what ``ray job
submit --working-dir`` does) and named in the job's runtime env.

``kray job submit --rayjob NAME [-- ENTRYPOINT]`` is the kubectl-ray plugin's ``kubectl ray job submit``
for an InteractiveMode RayJob (which KubeRay leaves Waiting): it submits to that RayJob's cluster with the
RayJob's runtime env and entrypoint options, sets ``spec.jobId`` so KubeRay tracks the job, and follows it.
Either way the first Ctrl-C stops the job this command submitted, the second leaves at once.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import shlex
import string
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from kray.cli.jobs import (
    POLL,
    RAY_STATUS_TERMINAL,
    STOP_SECONDS,
    TERMINAL,
    create_and_follow,
    err,
    follow,
    interruptible,
    job_app,
    say,
)
from kray.cli.local import EXIT_INVALID, Namespace, _call, fail
from kray.store import RAYCLUSTER, RAYJOB
from kray.store.errors import Conflict, NotFound, StoreError

if TYPE_CHECKING:  # every command module is imported to register it: implementations load inside the commands
    from kray._ray.dashboard import AsyncDashboardClient
    from kray.local.server.client import HttpStore

# asyncio too is imported by the functions that use it: with ssl, it cost every `kray` start 0.05-0.3 s.

MAX_PACKAGE_BYTES = 100 * 1024 * 1024
SKIPPED = {".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"}


def zip_dir(root: Path) -> bytes:
    """The directory's files, zipped deterministically (sorted, fixed timestamps), caches skipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part in SKIPPED for part in relative.parts) or not path.is_file():
                continue
            info = zipfile.ZipInfo(str(relative), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def package_uri(data: bytes) -> str:
    return f"gcs://_ray_pkg_{hashlib.sha1(data, usedforsecurity=False).hexdigest()}.zip"


@job_app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="A running local RayCluster.")] = None,
    rayjob: Annotated[
        str | None,
        typer.Option("--rayjob", help="An InteractiveMode RayJob waiting for its job (kubectl ray job submit --name)."),
    ] = None,
    working_dir: Annotated[Path | None, typer.Option("--working-dir", help="Uploaded; the job starts in it.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="RayJob name (default: <cluster>-job-<random>).")] = None,
    namespace: Namespace = "default",
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once submitted.")] = False,
) -> None:
    """Submit ENTRYPOINT (after --) to an existing local cluster, or to the InteractiveMode RayJob that waits for
    it, and stream its log. The first Ctrl-C stops the job, the second leaves at once."""
    if (cluster is None) == (rayjob is None):
        raise fail(
            "give --cluster CLUSTER (a new RayJob on a running cluster) or --rayjob NAME (the job an "
            "InteractiveMode RayJob waits for)",
            EXIT_INVALID,
        )
    if rayjob is not None and name is not None:
        raise fail("--name names the new RayJob of --cluster; --rayjob submits to an existing one", EXIT_INVALID)
    entrypoint = shlex.join(ctx.args)
    if not entrypoint and cluster is not None:
        raise fail("give the entrypoint after --, e.g. kray job submit -c demo -- python script.py", EXIT_INVALID)
    package = None
    if working_dir is not None:
        if not working_dir.is_dir():
            raise fail(f"--working-dir {working_dir}: not a directory", EXIT_INVALID)
        package = zip_dir(working_dir)
        if len(package) > MAX_PACKAGE_BYTES:
            raise fail(
                f"--working-dir {working_dir}: {len(package) >> 20} MiB zipped; the limit is 100 MiB", EXIT_INVALID
            )
    if rayjob is not None:
        job_name = rayjob
        final = _call(lambda store: to_rayjob(store, namespace, rayjob, entrypoint, package=package, wait=not no_wait))
    else:
        assert cluster is not None
        job_name = name or f"{cluster}-job-{_suffix()}"
        final = _call(lambda store: _to_cluster(store, namespace, cluster, job_name, entrypoint, package, no_wait))
    if no_wait:
        return
    status = final.get("status") or {}
    if status.get("jobStatus") != "SUCCEEDED":
        outcome = f"{job_name}: {status.get('jobDeploymentStatus')} {status.get('message') or ''}"
        err.print(f"[red]kray:[/red] {escape(outcome)}", highlight=False)
        raise typer.Exit(1)
    err.print(f"[green]kray:[/green] {job_name}: SUCCEEDED", highlight=False)


def _suffix() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))


async def _to_cluster(
    store: HttpStore, namespace: str, cluster: str, job_name: str, entrypoint: str, package: bytes | None, no_wait: bool
) -> dict[str, Any]:
    """A RayJob selecting the running cluster; Ctrl-C deletes it (its Ray job stops, the cluster stays)."""
    import yaml

    from kray.local.history import submitter_identity

    try:
        await store.get(RAYCLUSTER, cluster, namespace=namespace)
    except NotFound:
        raise fail(f"RayCluster {namespace}/{cluster} not found (kray get clusters)") from None
    runtime_env: dict[str, Any] = {}
    if package is not None:
        uri = package_uri(package)
        await _upload(store, namespace=namespace, cluster=cluster, uri=uri, data=package)
        runtime_env["working_dir"] = uri
    job: dict[str, Any] = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {
            "name": job_name,
            "namespace": namespace,
            "annotations": {"kray.io/submitter": submitter_identity()},
        },
        "spec": {
            "entrypoint": entrypoint,
            "submissionMode": "HTTPMode",
            "clusterSelector": {"ray.io/cluster": cluster},
        },
    }
    if runtime_env:
        job["spec"]["runtimeEnvYAML"] = yaml.safe_dump(runtime_env)

    def created(as_named: str) -> None:
        err.print(f"[dim]kray:[/dim] submitted RayJob {namespace}/{as_named} to cluster {cluster}", highlight=False)

    if no_wait:
        await store.create(RAYJOB, job)
        created(job_name)
        return job
    return await create_and_follow(store, job, quiet=False, created=created)


async def _upload(store: HttpStore, *, namespace: str, cluster: str, uri: str, data: bytes) -> None:
    async with await dashboard_of(store, namespace=namespace, cluster=cluster) as client:
        await client.upload_package(uri, data)


async def dashboard_of(store: HttpStore, *, namespace: str, cluster: str) -> AsyncDashboardClient:
    """A client of the cluster's dashboard with its token (the file the server's access route keeps current)."""
    from kray._ray.dashboard import AsyncDashboardClient

    access = await store.request("GET", f"/kray/v1/clusters/{namespace}/{cluster}/access")
    token = Path(access["token_file"]).read_text()
    return AsyncDashboardClient(access["dashboard"], token=token, timeout=60.0)


# -- --rayjob: the job an InteractiveMode RayJob waits for ------------------------------------------------


async def to_rayjob(
    store: HttpStore, namespace: str, name: str, entrypoint: str, *, package: bytes | None, wait: bool
) -> dict[str, Any]:
    """``kubectl ray job submit``: submit to the RayJob's cluster, set ``spec.jobId`` (KubeRay then tracks the job),
    follow it. The first Ctrl-C stops the submitted Ray job (the RayJob ends with it)."""
    from kray._ray.dashboard_protocol import JobSubmission
    from kray.api.manifest import parse_object
    from kray.api.v1 import RayJob
    from kray.controllers.common.submitter import build_submit_request

    label = f"RayJob {namespace}/{name}"
    submitted: list[str] = []  # the submission id, once the dashboard took it

    async def work() -> dict[str, Any]:
        job = await _waiting(store, namespace, name)
        command = entrypoint or str((job.get("spec") or {}).get("entrypoint") or "")
        if not command:
            raise fail(f"{label} has no spec.entrypoint: give the entrypoint after --", EXIT_INVALID)
        parsed = parse_object(job)
        assert isinstance(parsed, RayJob)
        body = {**build_submit_request(rayjob=parsed, job_id=""), "entrypoint": command}
        cluster = str(job["status"]["rayClusterName"])
        async with await dashboard_of(store, namespace=namespace, cluster=cluster) as client:
            if package is not None:
                uri = package_uri(package)
                await client.upload_package(uri, package)
                body["runtime_env"] = {**(body.get("runtime_env") or {}), "working_dir": uri}
            submitted.append(await client.submit_job(JobSubmission(**body)))
        await _set_job_id(store, namespace, name, submitted[0])
        say(f"submitted Ray job {submitted[0]} to {label} (RayCluster {cluster}); its spec.jobId is set")
        return await follow(store, namespace, name, show_progress=True) if wait else job

    def stopping() -> str:
        return f"stopping Ray job {submitted[0]} of {label}" if submitted else f"nothing was submitted to {label}"

    def left(_: bool) -> str:
        if not submitted:
            return "nothing was submitted"
        return (
            f"Ray job {submitted[0]} of {label} may still run. `kray delete job {name}"
            f"{'' if namespace == 'default' else f' -n {namespace}'}` stops it and its cluster"
        )

    async def stop() -> None:
        if submitted:
            await _stop_submitted(store, namespace, name, submitted[0])

    return await interruptible(work(), stopping=stopping, stop=stop, left=left)


async def _waiting(store: HttpStore, namespace: str, name: str) -> dict[str, Any]:
    """The RayJob once it waits for its job (InteractiveMode, cluster ready); an error naming why it never will."""
    import asyncio

    label = f"RayJob {namespace}/{name}"
    said = False
    while True:
        try:
            job = await store.get(RAYJOB, name, namespace=namespace)
        except NotFound:
            raise fail(f"{label} not found (kray get jobs)") from None
        spec, status = job.get("spec") or {}, job.get("status") or {}
        mode = spec.get("submissionMode") or "K8sJobMode"
        if mode != "InteractiveMode":
            raise fail(f"{label} is {mode}: kray submits its job; --rayjob is for InteractiveMode", EXIT_INVALID)
        if spec.get("jobId"):
            raise fail(f"{label} already has its job ({spec['jobId']}): `kray logs {name} -f` follows it")
        deployment = status.get("jobDeploymentStatus") or "New"
        if deployment == "Waiting":
            return job
        if deployment in TERMINAL:
            raise fail(f"{label} is {deployment}: it takes no job")
        if not said:
            say(f"{label} is {deployment}: waiting for its cluster to be ready")
            said = True
        await asyncio.sleep(POLL)


async def _set_job_id(store: HttpStore, namespace: str, name: str, submission: str) -> None:
    """``spec.jobId``: what tells KubeRay which Ray job an InteractiveMode RayJob is (as the plugin's update)."""
    import asyncio

    for _ in range(10):
        job = await store.get(RAYJOB, name, namespace=namespace)
        job["spec"]["jobId"] = submission
        try:
            await store.replace(RAYJOB, job)
            return
        except Conflict:
            await asyncio.sleep(0.2)
    raise Conflict(f"RayJob {namespace}/{name}: could not set spec.jobId (changed by others 10 times)")


async def _stop_submitted(store: HttpStore, namespace: str, name: str, submission: str) -> None:
    """Stop the Ray job and wait at most :data:`STOP_SECONDS` for the RayJob to see it end."""
    import asyncio

    from kray._ray.errors import DashboardError

    label = f"RayJob {namespace}/{name}"
    try:
        async with asyncio.timeout(STOP_SECONDS):
            job = await store.get(RAYJOB, name, namespace=namespace)
            if not (job.get("spec") or {}).get("jobId"):
                await _set_job_id(store, namespace, name, submission)
            cluster = str(job["status"]["rayClusterName"])
            async with await dashboard_of(store, namespace=namespace, cluster=cluster) as client:
                await client.stop_job(submission)
            while True:
                status = (await store.get(RAYJOB, name, namespace=namespace)).get("status") or {}
                if status.get("jobId") == submission and status.get("jobStatus") in RAY_STATUS_TERMINAL:
                    say(f"Ray job {submission} is {status['jobStatus']}; {label} ends with it")
                    return
                await asyncio.sleep(POLL)
    except NotFound:
        say(f"{label} is gone, and its Ray job with its cluster")
    except TimeoutError:
        say(f"Ray job {submission} of {label} is still stopping after {STOP_SECONDS:.0f} s (`kray get jobs` shows it)")
    except (StoreError, DashboardError) as error:
        say(f"could not stop Ray job {submission} of {label}: {error}; `kray delete job {name}` stops it")
