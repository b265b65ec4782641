"""The local serve address's cost: requests/s and p50/p99 latency through kray's serve proxy against
straight to the same upstream, in one run, as ratios (issue 10's goal: >= 0.95x throughput, p99 + <= 2 ms).

The upstream is a fast asyncio server answering a small fixed body, so what is measured is the proxy, not
Serve. Three processes: the upstream, the proxy (``ServeProxy``, as the local server runs it) and this load
generator (keep-alive connections, raw HTTP/1.1). Two loads, each run direct and through the proxy,
alternating for ``--rounds`` rounds:

- closed loop: ``--connections`` clients send back to back (the most each way serves on this machine);
- paced: ``--rate`` requests/s spread over the connections, latency counted from each request's scheduled
  send time (so a stall is not hidden by sending later).

    PYTHONPATH=. .venv/bin/python bench/serve_proxy_bench.py [--seconds 4] [--rounds 2] [--rate 500]

``--serve``: the same two loads against real Ray Serve instead (issue 10's comparison): the example
RayService of ``examples/rayservice.yaml`` on a fresh local server, "direct" being straight to the active
cluster's own Serve proxy (its serve port) and "via proxy" kray's serve address of the RayService (the
``kray.io/serve-address`` annotation, served by kray's server). CPU columns: the process listening on the
serve port (Serve's proxy actor) as the upstream, kray's server as the proxy. About a minute to set up.

    PYTHONPATH=. .venv/bin/python bench/serve_proxy_bench.py --serve [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog
import yaml

from kray.local.serve_routes import cluster_serve_address
from kray.local.serveproxy import Backend, ServeProxy
from kray.store import RAYCLUSTER, RAYSERVICE
from tests.local_mode import test_lm_serve_upgrades as rs
from tests.local_mode.conftest import start_local, status

BODY = b'{"version":"v1","result":"ok"}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
REQUEST = b"GET /app/predict HTTP/1.1\r\nHost: bench\r\nUser-Agent: serve-proxy-bench\r\n\r\n"


class _Upstream(asyncio.Protocol):
    """Answers every bodiless request in what arrived, in order (pipelining included)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if (n := self.buffer.count(b"\r\n\r\n")) > 0:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * n)


async def _run_upstream() -> None:
    server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await _until_stdin_closes()


async def _run_proxy(backend: str) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # stdout: the port
    async with ServeProxy() as proxy:
        port = await proxy.open("bench/rs")
        proxy.route("bench/rs", [Backend(backend)])
        print(port, flush=True)
        await _until_stdin_closes()


async def _until_stdin_closes() -> None:
    await asyncio.to_thread(sys.stdin.read)


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    latencies: list[float]  # seconds
    errors: int
    cpu: float = 0.0  # CPU seconds the proxy process used meanwhile (0 for direct runs)
    upstream_cpu: float = 0.0  # CPU seconds the upstream process used meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return statistics.quantiles(self.latencies, n=1000)[int(q * 1000) - 1] * 1000 if self.latencies else 0.0


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:40])
    lowered = head.lower()
    if b"content-length:" in lowered:
        await reader.readexactly(int(lowered.split(b"content-length:")[1].split(b"\r\n")[0]))
        return
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):  # chunked (Ray Serve's answers)
        await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")  # no trailers: the empty line after the last chunk


async def _load(port: int, *, connections: int, seconds: float, rate: float | None) -> Result:
    """``connections`` keep-alive clients for ``seconds``: back to back, or paced at ``rate`` in total."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05
    end = start + seconds

    async def client(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = connections / rate if rate else 0.0
        due = start + index * interval / connections
        try:
            while due < end:
                now = time.perf_counter()
                if rate:
                    if due > now:
                        await asyncio.sleep(due - now)
                    sent, due = due, due + interval
                else:
                    sent = due = now
                try:
                    await asyncio.wait_for(_exchange(reader, writer), 10)
                except (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - sent)
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(connections)))
    return Result(len(latencies), max(time.perf_counter(), end) - start, latencies, errors)


@contextlib.contextmanager
def _process(*args: str) -> Iterator[tuple[int, psutil.Process]]:
    """This script in another role, yielding the port it prints; ended by closing its stdin."""
    child = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert child.stdout is not None
        yield int(child.stdout.readline()), psutil.Process(child.pid)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=5)


def _listener(port: int) -> psutil.Process:
    """The process listening on a loopback TCP port."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def _serve_pair() -> Iterator[tuple[tuple[int, psutil.Process], tuple[int, psutil.Process]]]:
    """The example RayService, Ready on a fresh local server: (Serve's own proxy, kray's serve address)."""
    with (
        tempfile.TemporaryDirectory(prefix="kray-bench-") as home,
        contextlib.contextmanager(start_local)(Path(home)) as local,
    ):
        path = local.manifests / "rayservice.yaml"
        path.write_text(yaml.safe_dump_all(rs.example(), sort_keys=False))
        applied = local.kray("apply", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
        try:
            rs.wait_until(lambda: rs.settled(local), timeout=600, what="Ready", report=lambda: rs.seen(local))
            url = rs.serve_address(local, rs.NAME)
            rs.wait_until(lambda: rs.answer(url)[0], timeout=60, what=url, report=lambda: rs.answer(url)[1])
            active = status(rs.rayservice(local))["activeServiceStatus"]["rayClusterName"]
            serve = cluster_serve_address(local.get(RAYCLUSTER, active) or {})
            assert serve is not None, f"no serve port on RayCluster {active}"
            assert local.info is not None
            serve_port, kray_port = int(serve.rpartition(":")[2]), int(url.rpartition(":")[2])
            yield (serve_port, _listener(serve_port)), (kray_port, psutil.Process(local.info.pid))
        finally:
            local.delete(RAYSERVICE, rs.NAME)
            local.wait_gone(RAYSERVICE, rs.NAME, timeout=120)


def _merge(results: list[Result]) -> Result:
    return Result(
        sum(r.requests for r in results),
        sum(r.seconds for r in results),
        [x for r in results for x in r.latencies],
        sum(r.errors for r in results),
        sum(r.cpu for r in results),
        sum(r.upstream_cpu for r in results),
    )


def _rows(direct: Result, proxied: Result, label: str) -> list[tuple[str, float, float, str]]:
    ratio = proxied.rps / direct.rps if direct.rps else float("nan")
    rows = [(f"{label}: requests/s", direct.rps, proxied.rps, f"{ratio:.3f}x")]
    for q in (0.5, 0.99):
        d, p = direct.percentile(q), proxied.percentile(q)
        rows.append((f"{label}: p{round(q * 100)} latency (ms)", d, p, f"{p - d:+.3f} ms"))
    rows.append((f"{label}: failed requests", direct.errors, proxied.errors, ""))
    per_request = proxied.cpu / proxied.requests * 1e6 if proxied.requests else float("nan")
    rows.append((f"{label}: proxy CPU per request (us)", 0.0, per_request, ""))
    d_up, p_up = (r.upstream_cpu / r.requests * 1e6 if r.requests else float("nan") for r in (direct, proxied))
    rows.append((f"{label}: upstream CPU per request (us)", d_up, p_up, ""))
    return rows


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _measure(
    args: argparse.Namespace, upstream: int, proxy: int, processes: tuple[psutil.Process, psutil.Process]
) -> dict[str, tuple[Result, Result]]:
    upstream_process, proxy_process = processes
    loads = {
        f"closed loop, {args.connections} conns": (args.connections, None),
        f"paced {args.rate:g}/s": (args.connections, args.rate),
    }
    out: dict[str, tuple[Result, Result]] = {}
    for label, (connections, rate) in loads.items():
        await _load(proxy, connections=connections, seconds=0.3, rate=rate)  # warm the pool and the caches
        runs: dict[int, list[Result]] = {upstream: [], proxy: []}
        for _ in range(args.rounds):
            for port in (upstream, proxy):
                cpu, upstream_cpu = _cpu(proxy_process), _cpu(upstream_process)
                result = await _load(port, connections=connections, seconds=args.seconds, rate=rate)
                result = dataclasses.replace(
                    result,
                    cpu=_cpu(proxy_process) - cpu if port == proxy else 0.0,
                    upstream_cpu=_cpu(upstream_process) - upstream_cpu,
                )
                runs[port].append(result)
        out[label] = (_merge(runs[upstream]), _merge(runs[proxy]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=2, help="direct/proxy alternations per load")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s of the paced load")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--serve", action="store_true", help="real Ray Serve: kray's serve address vs Serve's proxy")
    parser.add_argument("--role", choices=["upstream", "proxy"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        asyncio.run(_run_upstream())
        return
    if args.role == "proxy":
        asyncio.run(_run_proxy(args.backend))
        return

    if args.serve:
        with _serve_pair() as ((upstream, upstream_process), (proxy, proxy_process)):
            results = asyncio.run(_measure(args, upstream, proxy, (upstream_process, proxy_process)))
        print("direct: the cluster's Serve proxy; via proxy: kray's serve address of the RayService")
    else:
        with (
            _process("--role", "upstream") as (upstream, upstream_process),
            _process("--role", "proxy", "--backend", f"127.0.0.1:{upstream}") as (proxy, proxy_process),
        ):
            results = asyncio.run(_measure(args, upstream, proxy, (upstream_process, proxy_process)))
    rows = [row for label, (d, p) in results.items() for row in _rows(d, p, label)]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}} | {'direct':>10} | {'via proxy':>10} | proxy vs direct")
    for name, d, p, ratio in rows:
        print(f"{name:<{width}} | {d:>10.3f} | {p:>10.3f} | {ratio}")
    if args.json:
        payload = {
            label: {
                way: {
                    "rps": r.rps,
                    "p50_ms": r.percentile(0.5),
                    "p99_ms": r.percentile(0.99),
                    "errors": r.errors,
                    "proxy_cpu_s": r.cpu,
                    "upstream_cpu_s": r.upstream_cpu,
                }
                for way, r in (("direct", d), ("proxy", p))
            }
            for label, (d, p) in results.items()
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)


if __name__ == "__main__":
    main()
