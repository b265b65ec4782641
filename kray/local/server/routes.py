"""kray's own endpoints on the local server: job and Serve config history, driver logs, cluster access."""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kray.controllers.common.names import auth_secret_name
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

    async def services(request: Request) -> Response:
        namespace = request.query_params.get("namespace")
        name = request.query_params.get("name")
        changes = await asyncio.to_thread(history.serve_changes, namespace=namespace, name=name)
        return JSONResponse([c.as_dict() for c in changes])

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
        data, size = await asyncio.to_thread(_read_from, Path(record.log_path), offset)
        end = offset + len(data)
        headers = {
            "X-Kray-Log-Size": str(end),
            # Complete only with the last byte of the final copy: a reader stops at this answer.
            "X-Kray-Log-Complete": "1" if record.log_complete and end >= size else "0",
            "X-Kray-Job-Status": record.job_status or "",
            "X-Kray-Submission": record.submission_id or "",
        }
        return Response(data, media_type="text/plain; charset=utf-8", headers=headers)

    async def access(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        cluster = await store.get(RAYCLUSTER, name, namespace=namespace)
        ports = ((cluster.get("metadata") or {}).get("annotations") or {}).get(PORTS_ANNOTATION, "")
        values = dict(part.split("=", 1) for part in ports.split(",") if "=" in part)
        options = ((cluster.get("spec") or {}).get("authOptions")) or {}
        secret_name = auth_secret_name(name, override=options.get("secretName"))
        secret = await store.get(SECRET, secret_name, namespace=namespace)
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
        Route("/kray/v1/history/services", services),
        Route("/kray/v1/history/jobs/{namespace}/{name}/logs", logs),
        Route("/kray/v1/clusters/{namespace}/{name}/access", access),
    ]


LOG_CHUNK = 4 * 1024 * 1024
"""The most one log answer carries; readers ask again from the offset it ends at."""


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """Up to :data:`LOG_CHUNK` bytes from ``offset``, ending between UTF-8 characters, and the file's size."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset)
            data = f.read(LOG_CHUNK)
    except FileNotFoundError:
        return b"", 0
    if offset + len(data) < size:
        data = data[: _whole_characters(data)]
    return data, size


def _whole_characters(data: bytes) -> int:
    """The length of ``data`` without a UTF-8 character cut at its end (bytes that are not UTF-8 stay)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: the character starts further back
        needs = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return len(data) - back if needs > back else len(data)
    return len(data)


def _write_secret(path: Path, text: str) -> None:
    """``path`` holds ``text``, mode 0600: replaced atomically when it differs (a re-created cluster's new token)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
