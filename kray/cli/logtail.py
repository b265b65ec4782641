"""A job's driver log read from the server's history, in order, whatever its size.

The log route answers at most a few MiB at a time (cut between UTF-8 characters) and says the log
is complete only with its last byte; :class:`LogTail` asks again until it has caught up, writes the
bytes to stdout as they are (so a redirected log is the kept file, byte for byte), and treats a
failed request as an outage: reported once on stderr with its reason, retried by the caller.
:class:`StartWait` lets ``kray logs -f`` wait for a job that history does not know yet because its RayJob
has not submitted it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kray.store import RAYJOB, Obj
from kray.store.errors import NotFound

if TYPE_CHECKING:  # imported where used: `kray job run` imports this module before it parses its arguments
    from kray.local.server.client import HttpStore

REQUEST_SECONDS = 10.0
"""One log request's bound (the store client waits for answers without one)."""
ENDED = frozenset({"Complete", "Failed", "ValidationFailed"})
START_MARGIN = 60.0
"""Waiting for a job to start outlasts its RayJob's startup deadline by this much (the controller's own
reaction to the deadline, and the submission's way into history)."""


class LogUnavailable(Exception):
    """A log request failed (the server is unreachable or answered an error)."""


def write_stdout(data: bytes) -> None:
    """The log's bytes as they are (a text-only stdout, as in tests, gets them decoded)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
        return
    sys.stdout.flush()
    buffer.write(data)
    buffer.flush()


@dataclass(kw_only=True)
class LogTail:
    store: HttpStore
    namespace: str
    name: str
    submission: str | None
    say: Callable[[str], None]
    """Prints one diagnostic line on stderr."""
    write: Callable[[bytes], None] = write_stdout
    offset: int = 0
    complete: bool = False
    failing_since: float | None = field(default=None, init=False)
    last_error: str = field(default="", init=False)
    job_status: str = field(default="", init=False)
    """The Ray job's status as history last had it."""

    def failing_for(self) -> float:
        """Seconds since the current outage began (0 when the last request succeeded)."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since

    async def pull(self) -> int:
        """Write all the log history holds now (request after request); returns how many bytes came.

        Raises NotFound while history has no such job. A failed request ends the pull: the first of an
        outage is reported, and :meth:`failing_for` tells the caller how long it has lasted.
        """
        got = 0
        while not self.complete:
            try:
                data = await self._request()
            except LogUnavailable as error:
                self.last_error = str(error)
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    self.say(f"cannot read the log of {self.namespace}/{self.name}: {error}; retrying")
                return got
            self.failing_since = None
            got += len(data)
            if data:
                self.write(data)
            elif not self.complete:
                return got  # caught up with a log still being written
        return got

    async def _request(self) -> bytes:
        import asyncio

        import httpx2

        params = {"offset": str(self.offset)}
        if self.submission:
            params["submission"] = self.submission
        path = f"/kray/v1/history/jobs/{self.namespace}/{self.name}/logs"
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                async with self.store.stream("GET", path, params=params) as response:
                    body: bytes = await response.aread()
        except TimeoutError:
            raise LogUnavailable(f"no answer from the kray server within {REQUEST_SECONDS:.0f} s") from None
        except httpx2.HTTPError as error:
            raise LogUnavailable(f"the kray server is not reachable ({error or type(error).__name__})") from None
        if response.status_code == 404:
            raise NotFound(f"no job history for {self.namespace}/{self.name}")
        if response.status_code != 200:
            text = body.decode("utf-8", "replace").strip()[:200]
            raise LogUnavailable(f"the kray server answered {response.status_code}: {text}")
        self.offset = int(response.headers.get("X-Kray-Log-Size", self.offset + len(body)))
        self.complete = response.headers.get("X-Kray-Log-Complete") == "1"
        self.job_status = response.headers.get("X-Kray-Job-Status", "")
        return body


def startup_seconds(job: Obj) -> float:
    """How long a RayJob may take to submit its job: its ``spec.preRunningDeadlineSeconds``, else local mode's
    startup timeout (``KRAY_STARTUP_TIMEOUT``), else 600 s — never unbounded here."""
    from kray.local.config import job_settings

    deadline = (job.get("spec") or {}).get("preRunningDeadlineSeconds")
    if isinstance(deadline, int | float) and deadline > 0:
        return float(deadline)
    try:
        policy = job_settings(os.environ).startup
    except ValueError:
        policy = None
    return policy.timeout if policy is not None and policy.timeout else 600.0


@dataclass(kw_only=True)
class StartWait:
    """A job history does not know yet: whether to wait for its RayJob to submit it.

    Yes while the RayJob exists, has not ended and its startup (:func:`startup_seconds`, plus
    :data:`START_MARGIN`, counted from the first ask) has not run out; the first yes says so once.
    """

    store: HttpStore
    namespace: str
    name: str
    say: Callable[[str], None]
    deadline: float | None = field(default=None, init=False)

    async def waiting(self) -> bool:
        try:
            job = await self.store.get(RAYJOB, self.name, namespace=self.namespace)
        except NotFound:
            return False
        if ((job.get("status") or {}).get("jobDeploymentStatus") or "") in ENDED:
            return False
        if self.deadline is None:
            self.deadline = time.monotonic() + startup_seconds(job) + START_MARGIN
            self.say(f"waiting for RayJob {self.namespace}/{self.name} to start its job")
        return time.monotonic() < self.deadline
