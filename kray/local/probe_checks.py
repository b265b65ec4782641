"""One probe attempt each for ``httpGet``, ``tcpSocket`` and ``exec``, as the kubelet does it.

Kept apart from the timing logic in :mod:`kray.local.probes` so that logic runs on a fake clock with a
fake check, and these run against real servers and commands. Every attempt is bounded by the probe's
``timeoutSeconds`` and turns every failure into a :class:`ProbeResult`: a probe never raises.

Kubelet behaviour reproduced: HTTP success is a status in [200, 400) without following redirects,
certificates are not verified for HTTPS, ``User-Agent: kube-probe/...`` and ``Accept: */*`` are sent
unless the spec's ``httpHeaders`` override them; TCP success is an accepted connection; exec success is
exit code 0, and a command that outlives the timeout is killed with its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2

_USER_AGENT = "kube-probe/1.37"
_OUTPUT_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class HttpGetAction:
    port: int
    path: str = "/"
    host: str = "127.0.0.1"
    scheme: str = "http"
    headers: tuple[tuple[str, str], ...] = ()

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.path.startswith("/") else "/" + self.path
        return f"{self.scheme}://{host}:{self.port}{path}"


@dataclass(frozen=True, slots=True)
class TcpSocketAction:
    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ExecAction:
    command: tuple[str, ...]


ProbeAction = HttpGetAction | TcpSocketAction | ExecAction


async def run_action(
    action: ProbeAction,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> ProbeResult:
    """Run one probe attempt; never raises (except cancellation)."""
    match action:
        case HttpGetAction():
            return await http_get(action, timeout=timeout)
        case TcpSocketAction():
            return await tcp_socket(action, timeout=timeout)
        case ExecAction():
            return await exec_command(action, timeout=timeout, env=env, cwd=cwd)


async def http_get(action: HttpGetAction, *, timeout: float) -> ProbeResult:
    url = action.url()
    headers = {"User-Agent": _USER_AGENT, "Accept": "*/*"}
    headers.update(action.headers)
    try:
        async with httpx2.AsyncClient(
            verify=False, trust_env=False, follow_redirects=False, timeout=httpx2.Timeout(timeout)
        ) as client:
            response = await client.get(url, headers=headers)
    except httpx2.HTTPError as exc:
        return ProbeResult(False, f"Get {url!r}: {type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 400:
        return ProbeResult(True, f"HTTP {response.status_code}")
    return ProbeResult(False, f"HTTP probe failed with statuscode: {response.status_code}")


async def tcp_socket(action: TcpSocketAction, *, timeout: float) -> ProbeResult:
    where = f"{action.host}:{action.port}"
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(action.host, action.port)
    except TimeoutError:
        return ProbeResult(False, f"dial tcp {where}: i/o timeout")
    except OSError as exc:
        return ProbeResult(False, f"dial tcp {where}: {exc.strerror or exc}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, f"connected to {where}")


async def exec_command(
    action: ExecAction,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> ProbeResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *action.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,  # so a timeout kills whatever the command started too
        )
    except OSError as exc:
        return ProbeResult(False, f"exec {action.command[0]!r}: {exc}")
    try:
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return ProbeResult(False, f"command timed out after {timeout:g}s")
    except BaseException:  # cancelled: do not leave the command running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    text = output.decode("utf-8", "replace").strip()[-_OUTPUT_LIMIT:]
    if proc.returncode == 0:
        return ProbeResult(True, text)
    return ProbeResult(False, f"exit code {proc.returncode}: {text}" if text else f"exit code {proc.returncode}")
