"""kray's own endpoints on the local server: job history, driver logs, cluster access."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kray.local.environment import PORTS_ANNOTATION
from kray.local.history import JobHistory
from kray.local.paths import LocalPaths
from kray.store import RAYCLUSTER, SECRET, Store
from kray.store.errors import NotFound


def build_routes(*, store: Store, history: JobHistory, paths: LocalPaths) -> list[Route]:
    async def jobs(request: Request) -> Response:
        namespace = request.query_params.get("namespace")
        name = request.query_params.get("name")
        records = await asyncio.to_thread(history.records, namespace=namespace, name=name)
        return JSONResponse([r.as_dict() for r in records])

    async def logs(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        offset = int(request.query_params.get("offset", "0"))
        submission = request.query_params.get("submission")
        records = await asyncio.to_thread(history.records, namespace=namespace, name=name)
        if submission:
            records = [r for r in records if r.submission_id == submission]
        record = records[-1] if records else None
        if record is None or not record.log_path:
            raise NotFound(f"no job history for {namespace}/{name}")
        path = Path(record.log_path)
        data = await asyncio.to_thread(_read_from, path, offset)
        headers = {
            "X-Kray-Log-Size": str(offset + len(data)),
            "X-Kray-Log-Complete": str(record.log_complete),
            "X-Kray-Job-Status": record.job_status or "",
            "X-Kray-Submission": record.submission_id or "",
        }
        return PlainTextResponse(data.decode("utf-8", "replace"), headers=headers)

    async def access(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        cluster = await store.get(RAYCLUSTER, name, namespace=namespace)
        ports = ((cluster.get("metadata") or {}).get("annotations") or {}).get(PORTS_ANNOTATION, "")
        values = dict(part.split("=", 1) for part in ports.split(",") if "=" in part)
        secret = await store.get(SECRET, name, namespace=namespace)
        token = base64.b64decode((secret.get("data") or {})["auth_token"]).decode()
        token_file = paths.cluster_token(namespace, name)
        await asyncio.to_thread(_write_secret, token_file, token)
        return JSONResponse(
            {
                "dashboard": f"http://127.0.0.1:{values.get('dashboard', '?')}",
                "gcs": f"127.0.0.1:{values.get('gcs', '?')}",
                "client": f"ray://127.0.0.1:{values.get('client', '?')}",
                "token_file": str(token_file),
            }
        )

    return [
        Route("/kray/v1/history/jobs", jobs),
        Route("/kray/v1/history/jobs/{namespace}/{name}/logs", logs),
        Route("/kray/v1/clusters/{namespace}/{name}/access", access),
    ]


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(4 * 1024 * 1024)
    except FileNotFoundError:
        return b""


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
