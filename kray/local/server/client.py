"""A Store that lives in the local server: the CLI's view of the embedded store, over HTTP.

It implements the same :class:`~kray.store.Store` protocol as the stores themselves, so CLI code
that reads or writes objects does not care where the store is.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx2

from kray._tls import trusted_context
from kray.local.server.wire import collection_path, error_from_status, object_path
from kray.store import Obj, ObjectList, Propagation, Resource, WatchEvent, WatchEventType
from kray.store import meta as m
from kray.store.errors import StoreError, Unavailable
from kray.store.selectors import parse_selector


class HttpStore:
    def __init__(
        self, *, base_url: str, token: str, timeout: float = 10.0, transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self._client = httpx2.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(timeout, read=None),
            transport=transport,
            verify=trusted_context(trust_env=True),
        )

    def __repr__(self) -> str:  # never show the token
        return f"HttpStore({self._client.base_url!s})"

    async def _call(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        try:
            response = await self._client.request(method, path, json=json_body, params=params)
        except httpx2.TransportError as error:
            raise Unavailable(f"the kray server at {self._client.base_url} is not reachable: {error}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text[:200]}
            raise error_from_status(body, response.status_code)
        return response.json()

    async def create(self, resource: Resource, obj: Obj) -> Obj:
        namespace = (obj.get("metadata") or {}).get("namespace") or ("default" if resource.namespaced else None)
        result: Obj = await self._call("POST", collection_path(resource, namespace), json_body=obj)
        return result

    async def get(self, resource: Resource, name: str, *, namespace: str | None) -> Obj:
        result: Obj = await self._call("GET", object_path(resource, name, namespace))
        return result

    async def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self._call("GET", collection_path(resource, namespace), params=params)
        return ObjectList(items=body["items"], resource_version=str(body["metadata"]["resourceVersion"]))

    async def replace(self, resource: Resource, obj: Obj) -> Obj:
        meta = obj.get("metadata") or {}
        result: Obj = await self._call("PUT", object_path(resource, meta["name"], meta.get("namespace")), json_body=obj)
        return result

    async def replace_status(self, resource: Resource, obj: Obj) -> Obj:
        meta = obj.get("metadata") or {}
        path = object_path(resource, meta["name"], meta.get("namespace")) + "/status"
        result: Obj = await self._call("PUT", path, json_body=obj)
        return result

    async def patch(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None,
        patch: Obj,
        subresource: Literal["status"] | None = None,
    ) -> Obj:
        path = object_path(resource, name, namespace) + ("/status" if subresource else "")
        result: Obj = await self._call("PATCH", path, json_body=patch)
        return result

    async def delete(
        self, resource: Resource, name: str, *, namespace: str | None, propagation: Propagation = "Background"
    ) -> None:
        await self._call("DELETE", object_path(resource, name, namespace), params={"propagationPolicy": propagation})

    def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str,
    ) -> AsyncIterator[WatchEvent]:
        # The Store contract: a malformed version or selector is refused by the call, before any iteration.
        m.parse_resource_version(resource_version)
        parse_selector(label_selector)
        return self._watch(resource, namespace, label_selector, resource_version)

    async def _watch(
        self, resource: Resource, namespace: str | None, label_selector: str | None, resource_version: str
    ) -> AsyncIterator[WatchEvent]:
        params = {"watch": "1", "resourceVersion": resource_version}
        if label_selector:
            params["labelSelector"] = label_selector
        try:
            async with self._client.stream("GET", collection_path(resource, namespace), params=params) as response:
                if response.status_code >= 400:
                    raise error_from_status(json.loads(await response.aread()), response.status_code)
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        raise error_from_status(event["object"], int(event["object"].get("code", 500)))
                    yield WatchEvent(WatchEventType(event["type"]), event["object"])
        except httpx2.TransportError as error:
            raise Unavailable(f"watch interrupted: {error}") from None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """kray's own endpoints (history, logs, tokens)."""
        return await self._call(method, path, **kwargs)

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._client.stream(method, path, **kwargs)

    async def close(self) -> None:
        await self._client.aclose()


__all__ = ["HttpStore", "StoreError"]
