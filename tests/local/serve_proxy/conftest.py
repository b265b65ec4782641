"""Fixtures of the serve proxy tests: upstreams started per test (stopped after it) and a proxy."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from kray.local.serveproxy import ServeProxy, Timeouts
from tests.local.serve_proxy.support import Upstream


@pytest.fixture
def upstreams() -> Iterator[Callable[[str], Upstream]]:
    started: list[Upstream] = []

    def start(name: str) -> Upstream:
        started.append(Upstream(name))
        return started[-1]

    yield start
    for upstream in started:
        upstream.first_chunk_seen.set()
        upstream.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[ServeProxy]:
    """A proxy with seeded dice and short timeouts (nothing in these tests waits longer than seconds)."""
    async with ServeProxy(
        timeouts=Timeouts(connect=2, read=10, client_idle=10, pool_idle=30), rng=random.Random(10)
    ) as p:
        yield p
