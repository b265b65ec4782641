"""``kray job submit --cluster C [--working-dir DIR] -- ENTRYPOINT``: a job on a running local cluster.

The job becomes a RayJob that selects the cluster (``clusterSelector``), so it gets the same state
machine, history and logs as any RayJob, and deleting it never touches the cluster. A working
directory is zipped and uploaded to the cluster as ``gcs://_ray_pkg_<sha>.zip`` (what ``ray job
submit --working-dir`` does) and named in the job's runtime env.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import shlex
import string
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from kray.cli.jobs import err, follow, job_app
from kray.cli.local import EXIT_INVALID, Namespace, _call, fail
from kray.local.history import submitter_identity
from kray.local.server.client import HttpStore
from kray.store import RAYCLUSTER, RAYJOB, SECRET
from kray.store.errors import NotFound

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
    cluster: Annotated[str, typer.Option("--cluster", "-c", help="A running local RayCluster.")],
    working_dir: Annotated[Path | None, typer.Option("--working-dir", help="Uploaded; the job starts in it.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="RayJob name (default: <cluster>-job-<random>).")] = None,
    namespace: Namespace = "default",
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once submitted.")] = False,
) -> None:
    """Submit ENTRYPOINT (after --) to an existing local cluster and stream its log."""
    entrypoint = shlex.join(ctx.args)
    if not entrypoint:
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
    job_name = (
        name or f"{cluster}-job-{''.join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))}"
    )

    async def main(store: HttpStore) -> dict[str, Any]:
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
        await store.create(RAYJOB, job)
        err.print(f"[dim]kray:[/dim] submitted RayJob {namespace}/{job_name} to cluster {cluster}", highlight=False)
        if no_wait:
            return job
        return await follow(store, namespace, job_name, show_progress=True)

    final = _call(main)
    status = final.get("status") or {}
    if no_wait:
        return
    if status.get("jobStatus") != "SUCCEEDED":
        outcome = f"{job_name}: {status.get('jobDeploymentStatus')} {status.get('message') or ''}"
        err.print(f"[red]kray:[/red] {escape(outcome)}", highlight=False)
        raise typer.Exit(1)
    err.print(f"[green]kray:[/green] {job_name}: SUCCEEDED", highlight=False)


async def _upload(store: HttpStore, *, namespace: str, cluster: str, uri: str, data: bytes) -> None:
    from kray._ray.dashboard import AsyncDashboardClient

    access = await store.request("GET", f"/kray/v1/clusters/{namespace}/{cluster}/access")
    secret = await store.get(SECRET, cluster, namespace=namespace)
    token = base64.b64decode((secret.get("data") or {})["auth_token"]).decode()
    async with AsyncDashboardClient(access["dashboard"], token=token, timeout=60.0) as client:
        await client.upload_package(uri, data)
