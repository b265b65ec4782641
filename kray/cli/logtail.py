"""A job's driver log read from the server's history, in order, whatever its size.

The log route answers at most a few MiB at a time (cut between UTF-8 characters) and says the log
is complete only with its last byte; :class:`LogTail` asks again until it has caught up, writes the
bytes to stdout as they are (so a redirected log is the kept file, byte for byte), and treats a
failed request as an outage: reported once on stderr with its reason, retried by the caller.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2

from kray.local.server.client import HttpStore
from kray.store.errors import NotFound

REQUEST_SECONDS = 10.0
"""One log request's bound (the store client waits for answers without one)."""


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
