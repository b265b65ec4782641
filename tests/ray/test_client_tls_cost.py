"""Making an HTTP client must not load a CA bundle each time: the controllers make a dashboard client per reconcile,
the CLI and the tests a store client per call (py-spy found a fifth of a core in a local server running one RayJob,
and half of a test's CPU, in ``ssl.create_default_context``)."""

from __future__ import annotations

import ssl

import pytest

from kray._ray.dashboard import AsyncDashboardClient, DashboardClient
from kray.local.server.client import HttpStore


@pytest.fixture
def verify_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loads: list[str] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append("load")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    return loads


async def test_dashboard_and_store_clients_share_one_trust_context(verify_loads: list[str]) -> None:
    for port in range(8265, 8270):
        await AsyncDashboardClient(f"http://127.0.0.1:{port}", token="t").aclose()
        DashboardClient(f"http://127.0.0.1:{port}", token=None).close()
        await HttpStore(base_url=f"http://127.0.0.1:{port}", token="t").close()
    assert len(verify_loads) <= 2, f"{len(verify_loads)} CA bundle loads for 15 clients (one per trust setting at most)"
