"""Switching a RayService's backends: under a constant request loop no request fails and the new
version answers after the switch; a request in flight finishes on the old backend; weights split
traffic; a drained backend's idle connections are closed.

KubeRay's promise for RayService upgrades is zero downtime: the serve Service's endpoints move from the
old cluster to the new one (``rayservice_controller.go``: ``reconcileServicesToReadyCluster`` /
``updateServeServiceEndpoints``), and with ``NewClusterWithIncrementalUpgrade`` the HTTPRoute's
``backendRefs`` weights move in steps (``reconcileHTTPRoute``). Locally the proxy's route table is that
Service and HTTPRoute.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable

import httpx2

from kray.local.serveproxy import Backend, ServeProxy
from tests.local.serve_proxy.support import Upstream, client

KEY = "default/rs"


async def _wait_until(check: Callable[[], bool], *, timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"after {timeout}s still not: {what()}"
        await asyncio.sleep(0.02)


async def test_switch_under_a_request_loop_fails_no_request(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    """Four keep-alive clients send requests back to back for 3 s; at 1 s the table switches from v1 to
    v2. Every request succeeds, every request sent after the switch is answered by v2, and one client
    connection carries both versions (a keep-alive connection is not pinned to a backend)."""
    v1, v2 = upstreams("v1"), upstreams("v2")
    port = await proxy.open(KEY)
    proxy.route(KEY, [Backend(v1.address)])
    results: list[tuple[float, float, str, int, str]] = []  # (sent at, answered at, client, status, answer)
    failures: list[str] = []
    switched_at = math.inf
    start = time.monotonic()

    async def loop(name: str) -> None:
        async with client(port, limits=httpx2.Limits(max_connections=1)) as http:
            while (sent := time.monotonic()) < start + 3:
                try:
                    r = await http.get("/who")
                    results.append((sent, time.monotonic(), name, r.status_code, r.text))
                except httpx2.HTTPError as e:
                    failures.append(f"{name}: {e!r}")

    async with asyncio.timeout(20):
        clients = [asyncio.create_task(loop(f"c{i}")) for i in range(4)]
        await asyncio.sleep(1)
        switched_at = time.monotonic()
        proxy.route(KEY, [Backend(v2.address)])
        await asyncio.gather(*clients)

    assert not failures
    assert all(r[3] == 200 for r in results), Counter(r[3] for r in results)
    assert len(results) / 3 >= 20, f"only {len(results)} requests in 3 s"
    after = [answer for sent, _, _, _, answer in results if sent > switched_at]
    before = [answer for _, answered, _, _, answer in results if answered < switched_at]
    assert set(after) == {"v2"}, Counter(after)
    assert set(before) == {"v1"}, Counter(before)
    c0 = {answer for _, _, name, _, answer in results if name == "c0"}
    assert c0 == {"v1", "v2"}
    assert v1.connections_seen <= 8  # pooled: a handful of connections, not one per request


async def test_a_slow_request_finishes_on_the_old_backend_after_the_switch(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    v1, v2 = upstreams("v1"), upstreams("v2")
    port = await proxy.open(KEY)
    proxy.route(KEY, [Backend(v1.address)])
    async with client(port) as http:
        slow = asyncio.create_task(http.get("/slow?s=1.5"))
        async with asyncio.timeout(5):
            await asyncio.to_thread(v1.slow_started.wait, 5)
        proxy.route(KEY, [Backend(v2.address)])  # v1 leaves the table while its request runs
        assert (await http.get("/who")).text == "v2"
        async with asyncio.timeout(10):
            answer = await slow
    assert (answer.status_code, answer.text) == (200, "v1")


async def test_weights_split_new_requests(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    """90/10 over N requests: the count for v2 is Binomial(N, 0.1); the bound is 5 standard deviations
    (a fair split fails it with probability < 1e-6; the proxy's dice are seeded, so the run repeats)."""
    v1, v2 = upstreams("v1"), upstreams("v2")
    port = await proxy.open(KEY)
    proxy.route(KEY, [Backend(v1.address, 90), Backend(v2.address, 10)])
    n = 1000
    async with client(port) as http, asyncio.timeout(60):
        answers = Counter([(await http.get("/who")).text for _ in range(n)])
        assert sum(answers.values()) == n
        mean, sd = n * 0.1, math.sqrt(n * 0.1 * 0.9)
        assert abs(answers["v2"] - mean) <= 5 * sd, answers

        proxy.route(KEY, [Backend(v1.address, 0), Backend(v2.address, 100)])  # v1 drained
        assert Counter([(await http.get("/who")).text for _ in range(50)]) == {"v2": 50}


async def test_a_drained_backends_idle_connections_are_closed(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    """The pool keeps idle connections for 30 s in this test's proxy; a drain closes them at once."""
    v1, v2 = upstreams("v1"), upstreams("v2")
    port = await proxy.open(KEY)
    proxy.route(KEY, [Backend(v1.address)])
    async with asyncio.timeout(10):
        clients = [client(port) for _ in range(3)]
        await asyncio.gather(*(c.get("/slow?s=0.2") for c in clients))  # three at once: three connections
        for c in clients:
            await c.aclose()
    assert v1.open_connections == 3

    proxy.route(KEY, [Backend(v1.address, 0), Backend(v2.address, 1)])
    await _wait_until(lambda: v1.open_connections == 0, timeout=3, what=lambda: f"{v1.open_connections} open to v1")
