"""The Ray dashboard REST API as pure data: request builders, response checks and parsers. No I/O.

Why sans-I/O: the operator (async), the CLI/SDK (sync) and the local-mode supervisor all speak the same
protocol. Keeping "what to send" and "what the answer means" here lets :class:`DashboardClient` and
:class:`AsyncDashboardClient` in :mod:`kray._ray.dashboard` stay thin shells around one transport call,
and lets every status code and body shape be tested without a socket.

Wire facts this module encodes (Ray 2.60, checked against a live head):

- ``GET /api/jobs/<id>`` answers 404 with the text ``Job <id> does not exist`` for an unknown id.
- ``POST /api/jobs/`` with a submission id Ray already knows answers **500** (the head relays the job
  agent's 400 as an internal error) whose text is a Python traceback ending in
  ``ValueError: Job with submission_id <id> already exists. Please use a different submission_id.``
- With ``RAY_AUTH_MODE=token``: no token gives 401 ``Unauthorized: Missing authentication token``, a wrong
  one 403 ``Forbidden: Invalid authentication token``. ``/api/gcs_healthz`` is exempt and answers
  ``success`` (200) or 503.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kray._ray import errors
from kray.api.v1.enums import JobStatus

AUTH_HEADER = "x-ray-authorization"
"""The header KubeRay sends the token in (Ray also accepts ``Authorization``, which proxies may eat)."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job as the dashboard reports it. Times are Unix milliseconds."""

    status: JobStatus
    entrypoint: str
    submission_id: str | None = None
    job_id: str | None = None
    job_type: str | None = None
    """``SUBMISSION`` for jobs from the Jobs API, ``DRIVER`` for drivers that called ``ray.init``."""
    message: str | None = None
    error_type: str | None = None
    """Ray's ``JobErrorType`` when it failed, e.g. ``JOB_ENTRYPOINT_COMMAND_ERROR``."""
    start_time: int | None = None
    end_time: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    runtime_env: Mapping[str, Any] | None = None
    driver_exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class JobSubmission:
    """What to run: the body of ``POST /api/jobs/``. Unset (None) fields are not sent."""

    entrypoint: str
    submission_id: str | None = None
    runtime_env: Mapping[str, Any] | None = None
    metadata: Mapping[str, str] | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """``GET /api/version``: the Jobs API version and the Ray build behind the dashboard."""

    version: str
    ray_version: str
    ray_commit: str
    session_name: str | None = None


@dataclass(frozen=True, slots=True)
class DashboardRequest:
    """One HTTP call, described: the clients only add the base URL, the token and a transport."""

    op: str
    """The operation's name, used in error messages (``get_job``, ``submit_job``...)."""
    method: str
    path: str
    json: Any = None
    retryable: bool = False
    """Safe to resend after a transport error or 5xx: only idempotent GETs are."""
    job_id: str | None = None
    """The job this call is about, so a 404 becomes :class:`JobNotFound` (or a duplicate submit id)."""
    content: bytes | None = None
    """A raw body (package uploads) instead of ``json``."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff for retryable requests. ``attempts`` counts the first try."""

    attempts: int = 3
    initial_backoff: float = 0.2
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def delays(self) -> Iterator[float]:
        """The sleeps between attempts: ``attempts - 1`` of them."""
        delay = self.initial_backoff
        for _ in range(max(self.attempts - 1, 0)):
            yield min(delay, self.max_backoff)
            delay *= self.multiplier


NO_RETRY = RetryPolicy(attempts=1)


def _job_path(job_id: str, suffix: str = "") -> str:
    if not job_id:
        raise ValueError("job id must not be empty")
    return f"/api/jobs/{quote(job_id, safe='')}{suffix}"


# -- request builders -------------------------------------------------------------------------------


def build_get_job_request(job_id: str) -> DashboardRequest:
    return DashboardRequest("get_job", "GET", _job_path(job_id), retryable=True, job_id=job_id)


def build_list_jobs_request() -> DashboardRequest:
    return DashboardRequest("list_jobs", "GET", "/api/jobs/", retryable=True)


def build_submit_job_request(submission: JobSubmission) -> DashboardRequest:
    body: dict[str, Any] = {"entrypoint": submission.entrypoint}
    optional: dict[str, Any] = {
        "submission_id": submission.submission_id,
        "runtime_env": None if submission.runtime_env is None else dict(submission.runtime_env),
        "metadata": None if submission.metadata is None else dict(submission.metadata),
        "entrypoint_num_cpus": submission.entrypoint_num_cpus,
        "entrypoint_num_gpus": submission.entrypoint_num_gpus,
        "entrypoint_memory": submission.entrypoint_memory,
        "entrypoint_resources": None
        if submission.entrypoint_resources is None
        else dict(submission.entrypoint_resources),
    }
    # Omit unset keys, as Ray's SDK does: older servers reject fields they do not know.
    body.update({key: value for key, value in optional.items() if value is not None})
    return DashboardRequest("submit_job", "POST", "/api/jobs/", json=body, job_id=submission.submission_id)


def build_stop_job_request(job_id: str) -> DashboardRequest:
    return DashboardRequest("stop_job", "POST", _job_path(job_id, "/stop"), job_id=job_id)


def build_delete_job_request(job_id: str) -> DashboardRequest:
    return DashboardRequest("delete_job", "DELETE", _job_path(job_id), job_id=job_id)


def build_get_job_logs_request(job_id: str) -> DashboardRequest:
    return DashboardRequest("get_job_logs", "GET", _job_path(job_id, "/logs"), retryable=True, job_id=job_id)


def build_tail_job_logs_request(job_id: str) -> DashboardRequest:
    """The WebSocket handshake for the log tail (a GET that upgrades)."""
    return DashboardRequest("tail_job_logs", "GET", _job_path(job_id, "/logs/tail"), job_id=job_id)


def build_gcs_healthz_request() -> DashboardRequest:
    # Not retried: a health check answers "now", its caller polls.
    return DashboardRequest("gcs_healthz", "GET", "/api/gcs_healthz")


def build_version_request() -> DashboardRequest:
    return DashboardRequest("version", "GET", "/api/version", retryable=True)


def build_get_serve_applications_request() -> DashboardRequest:
    return DashboardRequest(
        "serve_applications", "GET", "/api/serve/applications/?api_type=declarative", retryable=True
    )


def build_upload_package_request(uri: str, data: bytes) -> DashboardRequest:
    """``PUT /api/packages/gcs/<name>``: what ``ray job submit --working-dir`` does before submitting."""
    protocol, sep, name = uri.partition("://")
    if protocol != "gcs" or not sep or not re.fullmatch(r"_ray_pkg_[0-9a-f]+\.zip", name):
        raise ValueError(f"not a Ray GCS package URI: {uri!r}")
    return DashboardRequest("upload_package", "PUT", f"/api/packages/gcs/{name}", content=data)


def build_put_serve_applications_request(config: Mapping[str, Any]) -> DashboardRequest:
    return DashboardRequest("put_serve_applications", "PUT", "/api/serve/applications/", json=dict(config))


# -- response checks ----------------------------------------------------------------------------------

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)\b.*$", re.MULTILINE)
_EXCERPT_LIMIT = 300


def excerpt(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """A short, secret-free quote of an error body: the last exception line of a traceback, or the start."""
    if "Traceback (most recent call last)" in text:
        lines = _EXCEPTION_LINE.findall(text)
        if lines:
            text = lines[-1]
    text = " ".join(text.split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= _EXCERPT_LIMIT else text[: _EXCERPT_LIMIT - 3] + "..."


def check_response(request: DashboardRequest, *, status: int, text: str, secrets: tuple[str, ...] = ()) -> None:
    """Raise the :mod:`kray._ray.errors` exception a response means; return if it is a success (2xx)."""
    if 200 <= status < 300:
        return
    quoted = excerpt(text, secrets=secrets)
    where = f"{request.method} {request.path}: HTTP {status}"
    if request.op == "submit_job" and status in (400, 409, 500) and "already exists" in text:
        submission_id = request.job_id or "?"
        raise errors.JobAlreadyExists(
            f"job {submission_id!r} already exists ({where})", submission_id=submission_id, status=status
        )
    if status in (401, 403):
        raise errors.DashboardAuthError(f"{where}: {quoted or 'unauthorized'}", status=status)
    if status == 404 and request.job_id is not None:
        raise errors.JobNotFound(f"job {request.job_id!r} not found ({where})", job_id=request.job_id)
    if status in (408, 429) or status >= 500:
        raise errors.DashboardUnavailable(f"{where}: {quoted}", status=status)
    if 400 <= status < 500:
        raise errors.DashboardRequestError(f"{where}: {quoted}", status=status)
    raise errors.DashboardResponseError(f"{where}: unexpected status: {quoted}", status=status)


# -- parsers --------------------------------------------------------------------------------------------


def _bad(what: str, detail: str) -> errors.DashboardResponseError:
    return errors.DashboardResponseError(f"unexpected {what} from the dashboard: {detail}")


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _bad(what, f"not JSON ({excerpt(text)!r})") from exc


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(what, f"expected a JSON object, got {type(value).__name__}")
    return value


def _typed(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(key)
    # bool is an int in Python; a JSON true is never a valid time or exit code.
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is int)):
        raise _bad(what, f"field {key!r} has type {type(value).__name__}")
    return value


def _job_info(data: Any) -> JobInfo:
    what = "job info"
    data = _object(data, what)
    raw_status = data.get("status")
    try:
        status = JobStatus(raw_status)
        if status is JobStatus.NEW:
            raise ValueError(raw_status)
    except ValueError:
        raise _bad(what, f"unknown job status {raw_status!r}") from None
    return JobInfo(
        status=status,
        entrypoint=_typed(data, "entrypoint", str, what) or "",
        submission_id=_typed(data, "submission_id", str, what),
        job_id=_typed(data, "job_id", str, what),
        job_type=_typed(data, "type", str, what),
        message=_typed(data, "message", str, what),
        error_type=_typed(data, "error_type", str, what),
        start_time=_typed(data, "start_time", int, what),
        end_time=_typed(data, "end_time", int, what),
        metadata=dict(_typed(data, "metadata", dict, what) or {}),
        runtime_env=_typed(data, "runtime_env", dict, what),
        driver_exit_code=_typed(data, "driver_exit_code", int, what),
    )


def parse_job_info(text: str) -> JobInfo:
    return _job_info(_load(text, "job info"))


def parse_job_list(text: str) -> list[JobInfo]:
    data = _load(text, "job list")
    if not isinstance(data, list):
        raise _bad("job list", f"expected a JSON array, got {type(data).__name__}")
    return [_job_info(item) for item in data]


def parse_submit_job(text: str) -> str:
    """The submission id Ray assigned (ours, or ``raysubmit_...`` when we sent none)."""
    data = _object(_load(text, "submit answer"), "submit answer")
    submission_id = _typed(data, "submission_id", str, "submit answer") or _typed(data, "job_id", str, "submit answer")
    if not submission_id:
        raise _bad("submit answer", "no submission_id")
    return str(submission_id)


def _flag(text: str, key: str, what: str) -> bool:
    value = _object(_load(text, what), what).get(key)
    if not isinstance(value, bool):
        raise _bad(what, f"field {key!r} is not a boolean")
    return value


def parse_stop_job(text: str) -> bool:
    """Whether Ray stopped the job (False: it was not running)."""
    return _flag(text, "stopped", "stop answer")


def parse_delete_job(text: str) -> bool:
    return _flag(text, "deleted", "delete answer")


def parse_job_logs(text: str) -> str:
    logs = _object(_load(text, "job logs"), "job logs").get("logs")
    if not isinstance(logs, str):
        raise _bad("job logs", "field 'logs' is not a string")
    return logs


def parse_gcs_healthz(text: str) -> bool:
    return text.strip() == "success"


def parse_version(text: str) -> VersionInfo:
    what = "version"
    data = _object(_load(text, what), what)
    version, ray_version = _typed(data, "version", str, what), _typed(data, "ray_version", str, what)
    if not version or not ray_version:
        raise _bad(what, "missing version or ray_version")
    return VersionInfo(
        version=version,
        ray_version=ray_version,
        ray_commit=_typed(data, "ray_commit", str, what) or "",
        session_name=_typed(data, "session_name", str, what),
    )


def parse_serve_applications(text: str) -> dict[str, Any]:
    """Serve's instance details (``ServeInstanceDetails`` as JSON), left raw for the RayService logic."""
    return _object(_load(text, "serve applications"), "serve applications")
