"""KubeStore honours Retry-After as client-go does: a 429 or 5xx that asks for a retry is waited out
and re-sent (bounded); any other failure, or one without the header, fails at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2
import pytest

from kray._kube.errors import retry_after
from kray._kube.store import KubeSettings, KubeStore
from kray.store import POD
from kray.store.errors import NotFound, Unavailable

POD_JSON = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7"}}


def status(code: int, reason: str) -> dict[str, object]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}


class Server:
    """Answers from a script of responses, then 200 with a pod; records each request."""

    def __init__(self, script: list[httpx2.Response]) -> None:
        self.script = script
        self.requests: list[tuple[float, str, bytes]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append((time.monotonic(), request.method, request.content))
        return self.script.pop(0) if self.script else httpx2.Response(200, json=POD_JSON)


def store_for(server: Callable[[httpx2.Request], httpx2.Response], **settings: float) -> KubeStore:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server), base_url="https://apiserver.test")
    return KubeStore(client=client, settings=KubeSettings(**settings))  # type: ignore[arg-type]


def too_many(seconds: str | None) -> httpx2.Response:
    headers = {"Retry-After": seconds} if seconds is not None else {}
    return httpx2.Response(429, json=status(429, "TooManyRequests"), headers=headers)


async def test_a_429_with_retry_after_is_waited_out_and_re_sent() -> None:
    server = Server([too_many("1")])
    async with store_for(server) as store:
        pod = await store.get(POD, "p", namespace="ns")
    assert pod["metadata"]["name"] == "p"
    assert len(server.requests) == 2
    waited = server.requests[1][0] - server.requests[0][0]
    assert 0.95 <= waited < 2, f"re-sent after {waited:.2f}s; the server asked for 1 s"


async def test_a_5xx_with_retry_after_re_sends_the_same_write() -> None:
    unavailable = httpx2.Response(503, json=status(503, "ServiceUnavailable"), headers={"Retry-After": "0"})
    server = Server([unavailable, unavailable])
    async with store_for(server) as store:
        await store.create(POD, {"metadata": {"name": "p", "namespace": "ns"}})
    assert [method for _, method, _ in server.requests] == ["POST"] * 3
    assert len({body for _, _, body in server.requests}) == 1


async def test_retries_are_bounded() -> None:
    server = Server([too_many("0") for _ in range(10)])
    async with store_for(server, max_retries=3) as store:
        with pytest.raises(Unavailable):
            await store.get(POD, "p", namespace="ns")
    assert len(server.requests) == 4  # the request and three re-sends


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(too_many(None), id="429-without-retry-after"),
        pytest.param(too_many("Wed, 21 Oct 2026 07:28:00 GMT"), id="http-date"),
        pytest.param(too_many("3600"), id="longer-than-max_retry_after"),
        pytest.param(httpx2.Response(500, json=status(500, "InternalError")), id="500-without-retry-after"),
    ],
)
async def test_no_usable_retry_after_fails_at_once(response: httpx2.Response) -> None:
    server = Server([response])
    async with store_for(server) as store:
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            await store.get(POD, "p", namespace="ns")
    assert len(server.requests) == 1
    assert time.monotonic() - t0 < 0.5


async def test_other_errors_are_never_retried_even_with_retry_after() -> None:
    not_found = httpx2.Response(404, json=status(404, "NotFound"), headers={"Retry-After": "1"})
    server = Server([not_found])
    async with store_for(server) as store:
        with pytest.raises(NotFound):
            await store.get(POD, "p", namespace="ns")
    assert len(server.requests) == 1


def test_retry_after_reads_whole_seconds_of_429_and_5xx_only() -> None:
    assert retry_after(httpx2.Response(429, headers={"Retry-After": "2"})) == 2.0
    assert retry_after(httpx2.Response(504, headers={"Retry-After": " 0 "})) == 0.0
    assert retry_after(httpx2.Response(409, headers={"Retry-After": "2"})) is None
    assert retry_after(httpx2.Response(429, headers={"Retry-After": "-1"})) is None
    assert retry_after(httpx2.Response(429)) is None
