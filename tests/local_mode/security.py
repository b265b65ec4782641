"""Probing a local cluster's TCP ports without credentials: HTTP first, then Ray's gRPC services.

Ray 2.60 with ``RAY_AUTH_MODE=token`` checks the token on its HTTP servers (dashboard, dashboard agent,
runtime-env agent: 401) and on every gRPC service (GCS, raylet, object manager, core workers, agents,
Ray client: ``UNAUTHENTICATED``). A gRPC server answers ``UNIMPLEMENTED`` for a service it does not host,
so each port is asked one read-only (``Get*``) method of every Ray service, without a token and with a
wrong one; a port counts as refusing only if some call was refused as ``UNAUTHENTICATED`` and none got in.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache

import grpc
import httpx2
import psutil


@dataclass(frozen=True)
class Verdict:
    port: int
    host: str
    kind: str
    """``http`` or ``grpc`` (or ``unknown`` when neither answered)."""
    refused: bool
    detail: str


@cache
def read_only_methods() -> tuple[str, ...]:
    """``/ray.rpc.Service/GetSomething`` for every unary Ray gRPC service that has a ``Get*`` method."""
    from ray.core import generated

    methods = []
    for info in pkgutil.iter_modules(generated.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"ray.core.generated.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                unary = not (method.client_streaming or method.server_streaming)
                if unary and method.name.startswith(("Get", "List", "Check")):
                    methods.append(f"/{service.full_name}/{method.name}")
                    break
    # A service with no Python stubs: the raylet's object manager (refused before it would pull anything).
    methods.append("/ray.rpc.ObjectManagerService/Pull")
    return tuple(sorted(methods))


def listening(pids: set[int]) -> dict[int, str]:
    """Port -> a host to reach it on, for every TCP socket these processes listen on."""
    found: dict[int, str] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or conn.pid not in pids:
            continue
        host = conn.laddr.ip
        if host in {"0.0.0.0", "::", ""}:
            host = "127.0.0.1"
        elif host.startswith("::ffff:"):
            host = host.removeprefix("::ffff:")
        found.setdefault(conn.laddr.port, host)
    return found


def http_status(host: str, port: int, path: str = "/api/jobs/", headers: dict[str, str] | None = None) -> int | None:
    try:
        return httpx2.get(f"http://{host}:{port}{path}", timeout=3, headers=headers or {}).status_code
    except httpx2.HTTPError:
        return None


def grpc_call(host: str, port: int, method: str, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token is not None else None
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(b"", timeout=3, metadata=metadata)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def probe(host: str, port: int) -> Verdict:
    code = http_status(host, port)
    if code is not None:
        return Verdict(port, host, "http", code in {401, 403}, f"GET /api/jobs/ -> {code}")
    answers: dict[str, set[str]] = {}
    for token in (None, "not-the-token"):
        for method in read_only_methods():
            status = grpc_call(host, port, method, token)
            answers.setdefault(status.name, set()).add(method.rsplit("/", 2)[1])
            if status is grpc.StatusCode.UNAVAILABLE:
                break  # not a gRPC server (or gone): asking further methods is pointless
    refused = "UNAUTHENTICATED" in answers
    got_in = set(answers) - {"UNAUTHENTICATED", "UNIMPLEMENTED", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
    kind = "grpc" if refused or got_in or "UNIMPLEMENTED" in answers else "unknown"
    summary = ", ".join(f"{name}: {sorted(services)[:3]}" for name, services in sorted(answers.items()))
    return Verdict(port, host, kind, refused and not got_in, summary)
