"""The local server's HTTP API: the Store over HTTP, plus kray's own endpoints.

Every request needs ``Authorization: Bearer <server token>`` (the token file is 0600 in the state
directory), and the server listens on 127.0.0.1 only. Watches stream newline-delimited JSON events.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from kray.local.server.wire import resource_by_path, status_body
from kray.store import Resource, Store
from kray.store.errors import NotFound, StoreError

Extra = Callable[[Request], Awaitable[Response]]


def _resource(request: Request) -> Resource:
    params = request.path_params
    found = resource_by_path(params.get("group", ""), params["version"], params["plural"])
    if found is None:
        raise NotFound(f"the server does not serve {params['plural']}")
    return found


def build_app(*, store: Store, token: str, extra_routes: list[Route] | None = None) -> Starlette:
    async def guard(request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return JSONResponse(
                {"kind": "Status", "reason": "Unauthorized", "message": "a valid token is required", "code": 401},
                status_code=401,
            )
        try:
            return await call()
        except StoreError as error:
            body, code = status_body(error)
            return JSONResponse(body, status_code=code)

    async def collection(request: Request) -> Response:
        async def call() -> Response:
            resource = _resource(request)
            namespace = request.path_params.get("namespace")
            if request.method == "POST":
                return JSONResponse(await store.create(resource, await request.json()), status_code=201)
            selector = request.query_params.get("labelSelector") or None
            if request.query_params.get("watch") in {"1", "true"}:
                version = request.query_params.get("resourceVersion", "0")
                return StreamingResponse(
                    _watch(store, resource, namespace, selector, version), media_type="application/x-ndjson"
                )
            listed = await store.list(resource, namespace=namespace, label_selector=selector)
            return JSONResponse(
                {
                    "kind": f"{resource.kind}List",
                    "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": listed.resource_version},
                    "items": listed.items,
                }
            )

        return await guard(request, call)

    async def item(request: Request) -> Response:
        async def call() -> Response:
            resource = _resource(request)
            namespace = request.path_params.get("namespace")
            name = request.path_params["name"]
            status = request.path_params.get("sub") == "status"
            if request.method == "GET":
                return JSONResponse(await store.get(resource, name, namespace=namespace))
            if request.method == "PUT":
                body = await request.json()
                method = store.replace_status if status else store.replace
                return JSONResponse(await method(resource, body))
            if request.method == "PATCH":
                return JSONResponse(
                    await store.patch(
                        resource,
                        name,
                        namespace=namespace,
                        patch=await request.json(),
                        subresource="status" if status else None,
                    )
                )
            propagation = request.query_params.get("propagationPolicy", "Background")
            await store.delete(resource, name, namespace=namespace, propagation=propagation)  # type: ignore[arg-type]
            return JSONResponse({"kind": "Status", "status": "Success", "code": 200})

        return await guard(request, call)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    def guarded(endpoint: Extra) -> Extra:
        async def wrapped(request: Request) -> Response:
            return await guard(request, lambda: endpoint(request))

        return wrapped

    methods = ["GET", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/healthz", healthz),
        *(Route(path, collection, methods=["GET", "POST"]) for path in _collection_paths()),
        *(Route(path + "/{name}", item, methods=methods) for path in _collection_paths()),
        *(Route(path + "/{name}/{sub}", item, methods=methods) for path in _collection_paths()),
        *(Route(r.path, guarded(r.endpoint), methods=list(r.methods or ["GET"])) for r in extra_routes or ()),
    ]
    return Starlette(routes=routes)


def _collection_paths() -> list[str]:
    return [
        "/api/{version}/{plural}",
        "/api/{version}/namespaces/{namespace}/{plural}",
        "/apis/{group}/{version}/{plural}",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
    ]


async def _watch(
    store: Store, resource: Resource, namespace: str | None, selector: str | None, version: str
) -> AsyncIterator[bytes]:
    try:
        async for event in store.watch(
            resource, namespace=namespace, label_selector=selector, resource_version=version
        ):
            yield json.dumps({"type": event.type.value, "object": event.object}).encode() + b"\n"
    except StoreError as error:
        body, _ = status_body(error)
        yield json.dumps({"type": "ERROR", "object": body}).encode() + b"\n"
