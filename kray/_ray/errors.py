"""Errors of the Ray dashboard boundary (:mod:`kray._ray.dashboard`).

* DashboardError                 (base; ``status`` is the HTTP status, or None when there was no response)
  + DashboardUnavailable         (connect error, timeout, dropped connection, 5xx: worth retrying later)
  + DashboardAuthError           (401 missing token / 403 wrong token: retrying will not help)
  + JobNotFound                  (404 for a job id; ``job_id``)
  + JobAlreadyExists             (submit with a submission id Ray already knows; ``submission_id``)
  + DashboardRequestError        (other 4xx: Ray refused the request, e.g. an invalid runtime_env)
  + DashboardResponseError       (a response we cannot understand: wrong status, not JSON, missing field)

Why our own tree: controllers decide on *categories* (retry later, give up, submit now, fail the RayJob),
and must not depend on httpx2 or websockets types, which stay replaceable. Every exception is raised in
:mod:`kray._ray.dashboard` at one edge, with the library error chained as ``__cause__``.

Messages name the method, path and status and quote at most a short excerpt of the body (Ray answers
errors with whole Python tracebacks); they never contain the auth token: the edge scrubs it.
"""

from __future__ import annotations


class DashboardError(Exception):
    """Something went wrong talking to a Ray dashboard."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DashboardUnavailable(DashboardError):
    """The dashboard could not be reached or answered 5xx; the call may succeed later."""


class DashboardAuthError(DashboardError):
    """The dashboard refused our credentials (401: no token sent, 403: token wrong)."""


class JobNotFound(DashboardError):
    """Ray knows no job with this submission (or job) id."""

    def __init__(self, message: str, *, job_id: str, status: int | None = 404) -> None:
        super().__init__(message, status=status)
        self.job_id = job_id


class JobAlreadyExists(DashboardError):
    """A job with this submission id was submitted before (submission ids are single-use in Ray)."""

    def __init__(self, message: str, *, submission_id: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.submission_id = submission_id


class DashboardRequestError(DashboardError):
    """The dashboard rejected the request as invalid (a 4xx other than 401/403/404)."""


class DashboardResponseError(DashboardError):
    """The dashboard answered something this client does not understand."""
