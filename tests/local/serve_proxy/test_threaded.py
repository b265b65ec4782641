"""The serve proxies answer while the local server's own event loop is busy (they run on a thread of their own).

Real sockets: a stdlib upstream on port 0 and a blocking client on a thread, so neither needs the test's loop.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from kray.local.serveproxy import Backend, ProxyThread
from tests.local.serve_proxy.support import Upstream

HELD = 1.5
"""Seconds the test holds its own event loop, as a long reconcile or a SQLite write holds the server's."""


def _timed_get(url: str, out: dict[str, object]) -> None:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as answer:
        out["body"] = answer.read()
    out["took"] = time.monotonic() - started


async def test_a_request_is_answered_while_the_callers_loop_is_held(upstreams: Callable[[str], Upstream]) -> None:
    proxy = ProxyThread()
    try:
        port = await proxy.open("default/rs")
        upstream = upstreams("v1")
        await proxy.route("default/rs", [Backend(upstream.address)])
        assert [b.address for b in proxy.table("default/rs").backends] == [upstream.address]
        seen: dict[str, object] = {}
        client = threading.Thread(target=_timed_get, args=(f"http://127.0.0.1:{port}/who", seen))
        client.start()
        time.sleep(HELD)  # holds this loop: a proxy on it could not even accept the connection
        client.join(10)
        assert seen.get("body") == b"v1", f"the client saw {seen}"
        took = seen["took"]
        assert isinstance(took, float)
        assert took < HELD / 3, f"answered in {took:.3f} s while the loop was held"
    finally:
        await proxy.aclose()
    assert proxy.port("default/rs") is None


async def test_close_frees_the_port_and_the_thread_ends(upstreams: Callable[[str], Upstream]) -> None:
    proxy = ProxyThread()
    port = await proxy.open("default/rs")
    assert proxy.port("default/rs") == port
    await proxy.route("default/rs", [Backend(upstreams("v1").address)])
    threads = {t.name for t in threading.enumerate()}
    assert "serve-proxy" in threads
    await proxy.aclose()
    assert "serve-proxy" not in {t.name for t in threading.enumerate()}
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/who", timeout=2)
    reopened = await proxy.open("default/rs", port)  # a closed ProxyThread starts again on demand
    assert reopened == port
    await proxy.aclose()


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ProxyThread("0.0.0.0")
