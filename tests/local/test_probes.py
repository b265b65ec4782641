"""Probes: spec parsing, kubelet timing on a fake clock, and real httpGet/tcpSocket/exec attempts."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kray.local import errors, probe_checks
from kray.local.ports import free_port
from kray.local.probes import (
    ExecAction,
    HttpGetAction,
    Probe,
    ProbeEvent,
    ProbeKind,
    ProbeResult,
    ProbeRunner,
    TcpSocketAction,
    ThresholdTracker,
    parse_probe,
)

# -- parsing ---------------------------------------------------------------------------------------------


def test_parse_applies_kubernetes_defaults() -> None:
    probe = parse_probe({"tcpSocket": {"port": 6379}})
    assert probe == Probe(action=TcpSocketAction(port=6379, host="127.0.0.1"))
    assert (probe.initial_delay, probe.period, probe.timeout) == (0, 10, 1)
    assert (probe.success_threshold, probe.failure_threshold) == (1, 3)


def test_parse_http_get_with_everything() -> None:
    spec = {
        "httpGet": {
            "path": "healthz",
            "port": "dashboard",
            "scheme": "HTTPS",
            "httpHeaders": [{"name": "X-Probe", "value": "1"}],
        },
        "initialDelaySeconds": 5,
        "periodSeconds": 3,
        "timeoutSeconds": 2,
        "successThreshold": 2,
        "failureThreshold": 4,
    }
    probe = parse_probe(spec, ports={"dashboard": 28265})
    assert probe.action == HttpGetAction(
        port=28265, path="healthz", host="127.0.0.1", scheme="https", headers=(("X-Probe", "1"),)
    )
    assert isinstance(probe.action, HttpGetAction)
    assert probe.action.url() == "https://127.0.0.1:28265/healthz"
    assert (probe.initial_delay, probe.period, probe.timeout, probe.success_threshold, probe.failure_threshold) == (
        5,
        3,
        2,
        2,
        4,
    )


def test_parse_maps_container_ports_to_local_ones() -> None:
    assert parse_probe({"tcpSocket": {"port": 8265}}, ports={8265: 28265}).action == TcpSocketAction(port=28265)
    assert parse_probe({"tcpSocket": {"port": "8265"}}).action == TcpSocketAction(port=8265)


def test_parse_exec() -> None:
    spec = {"exec": {"command": ["bash", "-c", "true"]}, "periodSeconds": 5}
    assert parse_probe(spec).action == ExecAction(command=("bash", "-c", "true"))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({}, "exactly one"),
        ({"tcpSocket": {"port": 1}, "exec": {"command": ["true"]}}, "exactly one"),
        ({"grpc": {"port": 1}}, "grpc"),
        ({"tcpSocket": {"port": "metrics"}}, "container port name"),
        ({"tcpSocket": {}}, "required"),
        ({"tcpSocket": {"port": 70000}}, "not a port"),
        ({"exec": {"command": []}}, "non-empty"),
        ({"httpGet": {"port": 1, "scheme": "FTP"}}, "HTTP or HTTPS"),
        ({"tcpSocket": {"port": 1}, "periodSeconds": 0}, "periodSeconds"),
        ({"tcpSocket": {"port": 1}, "initialDelaySeconds": -1}, "initialDelaySeconds"),
        ({"tcpSocket": {"port": 1}, "failureThreshold": True}, "failureThreshold"),
    ],
)
def test_parse_rejects(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(errors.ProbeSpecError, match=match):
        parse_probe(spec)


# -- thresholds (pure) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "results", "flips"),
    [
        (False, [True], [True]),
        (False, [False, False, False, False], [None, None, None, None]),  # not ready stays quiet
        (True, [False, False, False], [None, None, False]),
        (True, [False, False, True, False, False, False], [None, None, None, None, None, False]),
        (None, [False, False, False], [None, None, False]),  # startup: a verdict either way
        (None, [True], [True]),
    ],
)
def test_threshold_tracker(initial: bool | None, results: list[bool], flips: list[bool | None]) -> None:
    tracker = ThresholdTracker(success_threshold=1, failure_threshold=3, initial=initial)
    assert [tracker.observe(ok) for ok in results] == flips


def test_threshold_tracker_needs_consecutive_successes() -> None:
    tracker = ThresholdTracker(success_threshold=2, failure_threshold=1, initial=False)
    assert [tracker.observe(ok) for ok in [True, False, True, True, True, False]] == [
        None,
        None,
        None,
        True,
        None,
        False,
    ]


# -- timing (fake clock) -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


class Script:
    """A check returning scripted results; each attempt records the clock and may take fake time."""

    def __init__(self, clock: FakeClock, results: list[bool], *, takes: float = 0.0) -> None:
        self.clock, self.results, self.takes = clock, list(results), takes
        self.times: list[float] = []

    async def __call__(self) -> ProbeResult:
        self.times.append(self.clock.t)
        self.clock.t += self.takes
        if not self.results:
            raise asyncio.CancelledError  # end of script: stop the runner
        ok = self.results.pop(0)
        return ProbeResult(ok, f"attempt {len(self.times)}")


async def run_script(
    kind: ProbeKind, probe: Probe, results: list[bool], *, takes: float = 0.0
) -> tuple[list[float], list[ProbeEvent], ProbeEvent | None]:
    clock = FakeClock()
    script = Script(clock, results, takes=takes)
    events: list[ProbeEvent] = []
    runner = ProbeRunner(probe, kind=kind, on_event=events.append, clock=clock, check=script)
    try:
        final = await asyncio.wait_for(runner.run(), timeout=5)
    except asyncio.CancelledError:
        final = None
    return script.times, events, final


TCP = TcpSocketAction(port=1)


@pytest.mark.asyncio
async def test_readiness_timing_and_transitions() -> None:
    probe = Probe(action=TCP, initial_delay=5, period=10, success_threshold=2, failure_threshold=3)
    results = [False, True, True, True, False, False, False, True, True]
    times, events, final = await run_script(ProbeKind.READINESS, probe, results)
    assert times == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert [(e.ok, e.at, e.message) for e in events] == [
        (True, 25, "attempt 3"),
        (False, 65, "attempt 7"),
        (True, 85, "attempt 9"),
    ]
    assert all(e.kind is ProbeKind.READINESS for e in events)
    assert final is None  # readiness only ends by cancellation


@pytest.mark.asyncio
async def test_a_readiness_probe_is_quick_only_until_its_first_success() -> None:
    probe = Probe(action=TCP, initial_delay=1, period=5, failure_threshold=2, period_until_ready=1)
    times, events, _ = await run_script(ProbeKind.READINESS, probe, [False, False, True, True, False, False, True])
    # Every second while never ready; from the first success on every 5 s, unready again or not.
    assert times == [1, 2, 3, 8, 13, 18, 23, 28]
    assert [(e.ok, e.at) for e in events] == [(True, 3), (False, 18), (True, 23)]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [ProbeKind.LIVENESS, ProbeKind.STARTUP])
async def test_only_readiness_probes_are_quick(kind: ProbeKind) -> None:
    probe = Probe(action=TCP, period=5, failure_threshold=9, period_until_ready=1)
    times, _, _ = await run_script(kind, probe, [False, False])
    assert times == [0, 5, 10]


@pytest.mark.asyncio
async def test_period_counts_from_the_start_of_an_attempt() -> None:
    probe = Probe(action=TCP, period=10)
    times, _, _ = await run_script(ProbeKind.READINESS, probe, [True, True, True], takes=4)
    assert times == [0, 10, 20, 30]
    times, _, _ = await run_script(ProbeKind.READINESS, probe, [True, True], takes=15)  # slower than the period
    assert times == [0, 15, 30]


@pytest.mark.asyncio
async def test_liveness_failure_ends_the_runner() -> None:
    probe = Probe(action=TCP, initial_delay=1, period=2, failure_threshold=3)
    times, events, final = await run_script(ProbeKind.LIVENESS, probe, [True, False, False, True, False, False, False])
    assert times == [1, 3, 5, 7, 9, 11, 13]
    assert [(e.ok, e.at) for e in events] == [(False, 13)]
    assert final == events[0]


@pytest.mark.asyncio
@pytest.mark.parametrize(("results", "ok", "at"), [([False, False, True], True, 20), ([False] * 3, False, 20)])
async def test_startup_ends_at_its_first_verdict(results: list[bool], ok: bool, at: float) -> None:
    probe = Probe(action=TCP, period=10, failure_threshold=3)
    times, events, final = await run_script(ProbeKind.STARTUP, probe, results)
    assert times == [0, 10, 20]
    assert final is not None
    assert (final.ok, final.at) == (ok, at)
    assert events == [final]


@pytest.mark.asyncio
async def test_async_callbacks_are_awaited() -> None:
    clock = FakeClock()
    seen: list[bool] = []

    async def on_event(event: ProbeEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.ok)

    runner = ProbeRunner(
        Probe(action=TCP, failure_threshold=1),
        kind=ProbeKind.LIVENESS,
        on_event=on_event,
        clock=clock,
        check=Script(clock, [False]),
    )
    await asyncio.wait_for(runner.run(), timeout=5)
    assert seen == [False]
    assert runner.state is False


# -- real attempts -----------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    seen_headers: list[dict[str, str]] = []

    def do_GET(self) -> None:
        Handler.seen_headers.append(dict(self.headers.items()))
        if self.path == "/slow":
            time.sleep(2)
        status = {"/ok": 200, "/slow": 200, "/fail": 500, "/moved": 302, "/missing": 404}.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "ok", "message"),
    [
        ("/ok", True, "HTTP 200"),
        ("/moved", True, "HTTP 302"),  # 3xx is success, and not followed
        ("/fail", False, "statuscode: 500"),
        ("/missing", False, "statuscode: 404"),
    ],
)
async def test_http_get(http_port: int, path: str, ok: bool, message: str) -> None:
    result = await probe_checks.http_get(HttpGetAction(port=http_port, path=path), timeout=2)
    assert result.ok is ok
    assert message in result.message


@pytest.mark.asyncio
async def test_http_get_sends_kubelet_and_spec_headers(http_port: int) -> None:
    Handler.seen_headers.clear()
    action = HttpGetAction(port=http_port, path="/ok", headers=(("X-Custom", "yes"), ("Accept", "text/plain")))
    assert (await probe_checks.http_get(action, timeout=2)).ok
    headers = Handler.seen_headers[-1]
    assert headers["User-Agent"].startswith("kube-probe/")
    assert (headers["X-Custom"], headers["Accept"]) == ("yes", "text/plain")


@pytest.mark.asyncio
async def test_http_get_times_out(http_port: int) -> None:
    started = time.monotonic()
    result = await probe_checks.http_get(HttpGetAction(port=http_port, path="/slow"), timeout=0.3)
    assert not result.ok
    assert "Timeout" in result.message
    assert time.monotonic() - started < 1.5


@pytest.mark.asyncio
async def test_http_get_refused() -> None:
    result = await probe_checks.http_get(HttpGetAction(port=free_port(), path="/"), timeout=2)
    assert not result.ok
    assert "ConnectError" in result.message


@pytest.mark.asyncio
async def test_tcp_socket() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert (await probe_checks.tcp_socket(TcpSocketAction(port=port), timeout=2)).ok
    refused = await probe_checks.tcp_socket(TcpSocketAction(port=port), timeout=2)
    assert not refused.ok
    assert refused.message.startswith(f"dial tcp 127.0.0.1:{port}:")


@pytest.mark.asyncio
async def test_exec() -> None:
    ok = await probe_checks.exec_command(ExecAction((sys.executable, "-c", "print('fine')")), timeout=5)
    assert (ok.ok, ok.message) == (True, "fine")
    code = "import os, sys; print(os.environ['PROBE_ENV']); sys.exit(2)"
    action = ExecAction((sys.executable, "-c", code))
    failed = await probe_checks.exec_command(action, timeout=5, env={"PROBE_ENV": "x"})
    assert (failed.ok, failed.message) == (False, "exit code 2: x")
    missing = await probe_checks.exec_command(ExecAction(("/nonexistent/probe",)), timeout=5)
    assert not missing.ok


@pytest.mark.asyncio
async def test_exec_timeout_kills_the_command(tmp_path: Any) -> None:
    marker = tmp_path / "survived"
    script = tmp_path / "slow.py"
    script.write_text(f"import time, pathlib\ntime.sleep(1.5)\npathlib.Path({str(marker)!r}).touch()\n")
    started = time.monotonic()
    action = ExecAction(("sh", "-c", f"{sys.executable} {script}; true"))  # the sleeper is a grandchild
    result = await probe_checks.exec_command(action, timeout=0.5)
    assert (result.ok, result.message) == (False, "command timed out after 0.5s")
    assert time.monotonic() - started < 2
    await asyncio.sleep(2)
    assert not marker.exists()  # the whole process group was killed, grandchild included


@pytest.mark.asyncio
async def test_runner_with_real_http_get(http_port: int) -> None:
    events: list[ProbeEvent] = []
    probe = parse_probe({"httpGet": {"path": "/ok", "port": "dash"}, "periodSeconds": 1}, ports={"dash": http_port})
    runner = ProbeRunner(probe, kind=ProbeKind.READINESS, on_event=events.append)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(5):
            while not events:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert events[0].ok
    assert runner.state is True
