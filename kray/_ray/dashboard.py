"""Ray dashboard clients: a sync one for the CLI and SDK, an async one for the operator.

The control plane never imports ``ray``: it drives Ray only through the dashboard's REST API (jobs,
serve, health, version), exactly like KubeRay's ``dashboard_httpclient.go``. What to send and what an
answer means lives in :mod:`kray._ray.dashboard_protocol` (pure); these classes add a transport
(httpx2, injectable so tests use ``httpx2.MockTransport``), the token, timeouts and a small retry, and
are the one edge where library exceptions become :mod:`kray._ray.errors`.

Decisions:

- **Timeouts are always explicit** (5 s by default; KubeRay uses 2 s). A hung dashboard must not hang a
  reconcile.
- **Only idempotent GETs are retried**, and only on :class:`DashboardUnavailable`, with bounded backoff.
  A POST that timed out may have been applied; the caller decides (e.g. a resubmit meets
  :class:`JobAlreadyExists`, which the RayJob logic treats as "already submitted").
- **The token is a secret**: it is sent as ``x-ray-authorization: Bearer ...`` on every request and the
  log tail, and never appears in a repr, a log record or an exception message (bodies quoted in errors
  are scrubbed, and the WebSocket library is denied debug logging, which would print the handshake
  headers).
- **The log tail offers no compression**: with permessage-deflate negotiated, Ray 2.60's dashboard
  closes the tail without sending a line (verified against a live head).
- **No environment proxies** (``trust_env=False``, ``proxy=None``): the dashboard is addressed directly,
  and a proxy picked up from the environment would see the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx2
import websockets.exceptions
from websockets.asyncio.client import connect as ws_connect

from kray._ray import dashboard_protocol as protocol
from kray._ray import errors
from kray._ray.dashboard_protocol import (
    AUTH_HEADER,
    DashboardRequest,
    JobInfo,
    JobSubmission,
    RetryPolicy,
    VersionInfo,
)
from kray._tls import trusted_context
from kray.api.v1.enums import JobStatus

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "AsyncDashboardClient",
    "DashboardClient",
    "JobInfo",
    "JobStatus",
    "JobSubmission",
    "RetryPolicy",
    "VersionInfo",
]

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""Seconds for connect, read, write and pool waits (KubeRay's client uses 2 s)."""

DEFAULT_RETRY = RetryPolicy()
"""Three attempts of idempotent GETs, 0.2 s then 0.4 s apart."""

_TAIL_MAX_MESSAGE = 16 * 1024 * 1024  # one log chunk; Ray sends lines in batches


class _Secret:
    """A string that never shows in a repr (so not in debuggers, crash reporters or ``vars()`` dumps)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"


class _TokenAuth(httpx2.Auth):
    """Adds the Ray token to each request; its repr never shows it."""

    def __init__(self, token: _Secret) -> None:
        self._token = token

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers[AUTH_HEADER] = f"Bearer {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "_TokenAuth(<hidden>)"


class _NoDebugLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets logs every handshake header at DEBUG, the token included: report DEBUG as disabled."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


@contextlib.contextmanager
def _map_http_errors(request: DashboardRequest, *, base_url: str, secrets: tuple[str, ...]) -> Iterator[None]:
    """httpx2 exceptions -> :mod:`kray._ray.errors`, for one request."""
    try:
        yield
    except httpx2.TransportError as exc:  # connect/read/write errors and timeouts
        detail = protocol.excerpt(f"{type(exc).__name__}: {exc}", secrets=secrets)
        raise errors.DashboardUnavailable(
            f"{request.method} {request.path}: cannot reach the dashboard at {base_url}: {detail}"
        ) from exc
    except httpx2.HTTPError as exc:
        detail = protocol.excerpt(f"{type(exc).__name__}: {exc}", secrets=secrets)
        raise errors.DashboardError(f"{request.method} {request.path}: {detail}") from exc


@contextlib.contextmanager
def _map_ws_errors(request: DashboardRequest, *, base_url: str, secrets: tuple[str, ...]) -> Iterator[None]:
    """websockets exceptions -> :mod:`kray._ray.errors`, for the log tail."""
    try:
        yield
    except websockets.exceptions.InvalidStatus as exc:  # the handshake got an HTTP answer, not 101
        body = (exc.response.body or b"").decode("utf-8", "replace")
        protocol.check_response(request, status=exc.response.status_code, text=body, secrets=secrets)
        raise errors.DashboardResponseError(
            f"{request.method} {request.path}: no WebSocket upgrade (HTTP {exc.response.status_code})",
            status=exc.response.status_code,
        ) from exc
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        detail = protocol.excerpt(f"{type(exc).__name__}: {exc}", secrets=secrets)
        raise errors.DashboardUnavailable(
            f"{request.method} {request.path}: log tail from {base_url} failed: {detail}"
        ) from exc


class _Base:
    """Configuration shared by both clients."""

    def __init__(self, base_url: str, *, token: str | None, timeout: float, retry: RetryPolicy) -> None:
        if token is not None and (not token or any(c in token for c in "\r\n")):
            raise ValueError("token must be a non-empty single-line string")
        self._base_url = str(base_url).rstrip("/")
        self._token = _Secret(token) if token else None
        self._timeout = timeout
        self._retry = retry

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def _secrets(self) -> tuple[str, ...]:
        """What error messages must never contain."""
        return (self._token.reveal(),) if self._token else ()

    def _http_options(self) -> dict[str, Any]:
        return {
            "base_url": self._base_url,
            "auth": _TokenAuth(self._token) if self._token else None,
            "timeout": httpx2.Timeout(self._timeout),
            "trust_env": False,
            "verify": trusted_context(trust_env=False),
            "follow_redirects": False,
        }

    def _check(self, request: DashboardRequest, response: httpx2.Response) -> str:
        protocol.check_response(request, status=response.status_code, text=response.text, secrets=self._secrets)
        return response.text

    def _retry_delays(self, request: DashboardRequest) -> Iterator[float]:
        return self._retry.delays() if request.retryable else iter(())

    def __repr__(self) -> str:
        token = "<hidden>" if self._token else None
        return f"{type(self).__name__}({self._base_url!r}, token={token})"


class DashboardClient(_Base):
    """Blocking client (CLI, SDK, tests). Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout, retry=retry)
        self._sleep = sleep
        self._http = httpx2.Client(transport=transport, **self._http_options())

    def _send(self, request: DashboardRequest) -> str:
        delays = self._retry_delays(request)
        while True:
            try:
                with _map_http_errors(request, base_url=self._base_url, secrets=self._secrets):
                    response = self._http.request(request.method, request.path, json=request.json)
                return self._check(request, response)
            except errors.DashboardUnavailable as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                _log.debug("%s failed (%s); retrying in %.2fs", request.op, exc, delay)
                self._sleep(delay)

    def get_job(self, job_id: str) -> JobInfo:
        return protocol.parse_job_info(self._send(protocol.build_get_job_request(job_id)))

    def list_jobs(self) -> list[JobInfo]:
        return protocol.parse_job_list(self._send(protocol.build_list_jobs_request()))

    def submit_job(self, submission: JobSubmission) -> str:
        """Submit; returns the submission id. Raises :class:`JobAlreadyExists` for a used id."""
        return protocol.parse_submit_job(self._send(protocol.build_submit_job_request(submission)))

    def stop_job(self, job_id: str) -> bool:
        return protocol.parse_stop_job(self._send(protocol.build_stop_job_request(job_id)))

    def delete_job(self, job_id: str) -> bool:
        """Delete a terminal job's record (Ray refuses running jobs with a :class:`DashboardRequestError`)."""
        return protocol.parse_delete_job(self._send(protocol.build_delete_job_request(job_id)))

    def get_job_logs(self, job_id: str) -> str:
        return protocol.parse_job_logs(self._send(protocol.build_get_job_logs_request(job_id)))

    def gcs_healthz(self) -> bool:
        """True when the dashboard answers and reports the GCS alive; False while it is unreachable."""
        try:
            return protocol.parse_gcs_healthz(self._send(protocol.build_gcs_healthz_request()))
        except errors.DashboardUnavailable:
            return False

    def version(self) -> VersionInfo:
        return protocol.parse_version(self._send(protocol.build_version_request()))

    def serve_applications(self) -> dict[str, Any]:
        return protocol.parse_serve_applications(self._send(protocol.build_get_serve_applications_request()))

    def put_serve_applications(self, config: Mapping[str, Any]) -> None:
        self._send(protocol.build_put_serve_applications_request(config))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncDashboardClient(_Base):
    """Asyncio client (operator, local supervisor). Use ``async with`` or await :meth:`aclose`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(base_url, token=token, timeout=timeout, retry=retry)
        self._sleep = sleep
        self._http = httpx2.AsyncClient(transport=transport, **self._http_options())

    async def _send(self, request: DashboardRequest) -> str:
        delays = self._retry_delays(request)
        while True:
            try:
                with _map_http_errors(request, base_url=self._base_url, secrets=self._secrets):
                    response = await self._http.request(
                        request.method, request.path, json=request.json, content=request.content
                    )
                return self._check(request, response)
            except errors.DashboardUnavailable as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                _log.debug("%s failed (%s); retrying in %.2fs", request.op, exc, delay)
                await self._sleep(delay)

    async def get_job(self, job_id: str) -> JobInfo:
        return protocol.parse_job_info(await self._send(protocol.build_get_job_request(job_id)))

    async def list_jobs(self) -> list[JobInfo]:
        return protocol.parse_job_list(await self._send(protocol.build_list_jobs_request()))

    async def upload_package(self, uri: str, data: bytes) -> None:
        """Upload a zipped working dir as ``gcs://_ray_pkg_<hash>.zip`` (then name it in runtime_env)."""
        await self._send(protocol.build_upload_package_request(uri, data))

    async def submit_job(self, submission: JobSubmission) -> str:
        """Submit; returns the submission id. Raises :class:`JobAlreadyExists` for a used id."""
        return protocol.parse_submit_job(await self._send(protocol.build_submit_job_request(submission)))

    async def stop_job(self, job_id: str) -> bool:
        return protocol.parse_stop_job(await self._send(protocol.build_stop_job_request(job_id)))

    async def delete_job(self, job_id: str) -> bool:
        return protocol.parse_delete_job(await self._send(protocol.build_delete_job_request(job_id)))

    async def get_job_logs(self, job_id: str) -> str:
        return protocol.parse_job_logs(await self._send(protocol.build_get_job_logs_request(job_id)))

    async def gcs_healthz(self) -> bool:
        try:
            return protocol.parse_gcs_healthz(await self._send(protocol.build_gcs_healthz_request()))
        except errors.DashboardUnavailable:
            return False

    async def version(self) -> VersionInfo:
        return protocol.parse_version(await self._send(protocol.build_version_request()))

    async def serve_applications(self) -> dict[str, Any]:
        return protocol.parse_serve_applications(await self._send(protocol.build_get_serve_applications_request()))

    async def put_serve_applications(self, config: Mapping[str, Any]) -> None:
        await self._send(protocol.build_put_serve_applications_request(config))

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """Follow a job's output over the WebSocket ``/api/jobs/<id>/logs/tail``, chunk by chunk.

        Ends when Ray closes the stream (the job is terminal and its log is drained). Raises
        :class:`JobNotFound` for an unknown job and :class:`DashboardUnavailable` if the stream breaks.
        No read timeout: a quiet job is not a dead one (WebSocket pings detect dead peers).
        """
        request = protocol.build_tail_job_logs_request(job_id)
        url = httpx2.URL(self._base_url + request.path)
        url = url.copy_with(scheme="wss" if url.scheme == "https" else "ws")
        headers = {AUTH_HEADER: f"Bearer {self._token.reveal()}"} if self._token else {}
        with _map_ws_errors(request, base_url=self._base_url, secrets=self._secrets):
            async with ws_connect(
                str(url),
                additional_headers=headers,
                open_timeout=self._timeout,
                proxy=None,
                max_size=_TAIL_MAX_MESSAGE,
                # Ray 2.60's dashboard relays nothing (the head's socket to the agent dies, code 1006)
                # when the client negotiates permessage-deflate, websockets' default. Ray's SDK never asks.
                compression=None,
                logger=_NoDebugLogger(logging.getLogger("websockets.client")),
            ) as ws:
                async for message in ws:
                    yield message if isinstance(message, str) else message.decode("utf-8", "replace")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
