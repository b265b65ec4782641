"""Run ``kray operator`` as its own process against the test control plane, as a user would.

Why a process and not the Operator class in-process: the flags, the signal handling, the exit codes
and the JSON logs are part of what is tested, and two operators (leader election) must be able to
die independently (kill -9).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kray.dev.procs import free_port, log_tail

T = TypeVar("T")


@dataclass
class KrayOperator:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    health_port: int
    args: list[str] = field(default_factory=list)

    def get(self, path: str, *, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()
        except (urllib.error.URLError, OSError) as error:
            return 0, str(error)

    def metrics(self) -> str:
        status, body = self.get("/metrics", port=self.metrics_port)
        assert status == 200, f"/metrics answered {status}: {body[:300]}"
        return body

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def tail(self) -> str:
        return log_tail(self.log, lines=30)

    def terminate(self, *, timeout: float = 45.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"kray operator ignored SIGTERM for {timeout:.0f}s; log:\n{self.tail()}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_kray_operator(
    *, kubeconfig: Path, log_dir: Path, namespaces: list[str], extra: list[str] | None = None, name: str = "kray"
) -> KrayOperator:
    """Start ``kray operator`` and wait (30 s at most) until ``/healthz`` answers."""
    metrics_port, health_port = free_port(), free_port()
    log = log_dir / f"{name}-operator-{metrics_port}.log"
    args = [
        sys.executable, "-m", "kray.cli.main", "operator",
        "--kubeconfig", str(kubeconfig),
        "--watch-namespace", ",".join(namespaces),
        "--metrics-addr", f"127.0.0.1:{metrics_port}",
        "--health-probe-bind-address", f"127.0.0.1:{health_port}",
        *(extra or []),
    ]  # fmt: skip
    env = {**os.environ, "RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV": "30"}
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    operator = KrayOperator(process, log, metrics_port, health_port, args)
    deadline = time.monotonic() + 30
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"kray operator exited {process.returncode}; log:\n{operator.tail()}")
        last = operator.get("/healthz")
        if last[0] == 200:
            return operator
        time.sleep(0.2)
    operator.kill()
    raise AssertionError(f"kray operator /healthz never answered 200 (last: {last}); log:\n{operator.tail()}")


@contextlib.contextmanager
def running_operator(**kwargs: Any) -> Iterator[KrayOperator]:
    operator = start_kray_operator(**kwargs)
    try:
        yield operator
    finally:
        operator.kill()


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float, what: str, every: float = 0.5) -> T:
    """The first truthy value of ``probe()``; on timeout, fails saying what it last saw."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last saw: {last!r}")
