"""The Kubernetes adapter of the :class:`~kray.store.Store` port: plain REST against an API server.

Why raw REST and not lightkube's typed or generic resources: the port speaks plain JSON dicts, and
every kind (core, batch, coordination, ray.io) is addressed the same way from its
:class:`~kray.store.Resource`, so decoding into lightkube models only to turn them back into dicts
would cost time and fidelity. lightkube still does what it is good at: reading the kubeconfig and
building the authenticated ``httpx2.AsyncClient`` (TLS, tokens, exec plugins).

Requests carry ``fieldValidation=Strict`` so unknown fields are refused (Invalid), as the embedded
store's structural check does, instead of being silently pruned. There is no cache: every call is
one request (a list is one request per page of ``page_size``). A watch re-issues its request from
the last seen resourceVersion whenever the server ends it (``timeoutSeconds``); it requests
bookmarks to keep that version fresh and does not yield them.

A 429 or 5xx answer carrying ``Retry-After: <seconds>`` (the server shedding load) is waited out
and the request re-sent, up to ``max_retries`` times, as client-go does; a longer wait than
``max_retry_after`` is not worth blocking a reconcile for, so that answer fails as Unavailable
and the work queue's backoff takes over.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx2
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig

from kray._kube.errors import error_from_status, map_errors, retry_after
from kray.api.errors import FieldError
from kray.store import SERVICE_ACCOUNT, Obj, ObjectList, Propagation, Resource, WatchEvent, WatchEventType
from kray.store import meta as m
from kray.store.errors import Invalid, Unavailable
from kray.store.selectors import parse_selector

_PROPAGATIONS = ("Background", "Foreground", "Orphan")
_STRICT = {"fieldValidation": "Strict"}


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """Tunables of the Kubernetes adapter."""

    request_timeout: float = 30.0
    """Seconds for connect, write and read of an ordinary request."""
    watch_timeout: int = 290
    """``timeoutSeconds`` of each watch request; the adapter reconnects transparently after it."""
    keepalive_connections: int = 64
    """Idle connections kept for requests (watches hold their own; the pool itself is unbounded)."""
    page_size: int = 500
    """Items per list request (``limit``); pages are followed with ``continue``."""
    max_retries: int = 10
    """Re-sends of one request the server answered with 429/5xx and ``Retry-After`` (client-go: 10)."""
    max_retry_after: float = 30.0
    """The longest ``Retry-After`` waited out; a longer one fails the request as Unavailable."""


def _path(resource: Resource, *, namespace: str | None, name: str | None = None, status: bool = False) -> str:
    parts = ["api", resource.version] if not resource.group else ["apis", resource.group, resource.version]
    if resource.namespaced and namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(resource.plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if status:
        parts.append("status")
    return "/" + "/".join(parts)


def _scope(resource: Resource, namespace: str | None) -> str | None:
    if resource.namespaced and not namespace:
        raise Invalid(f"{resource.kind} is namespaced: a namespace is required", [FieldError("metadata.namespace", "")])
    return namespace if resource.namespaced else None


def _identity(resource: Resource, obj: Obj, *, need_name: bool) -> tuple[str | None, str | None]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        raise Invalid(f"a {resource.kind} needs metadata", [FieldError("metadata", "expected object")])
    name = meta.get("name")
    if need_name and (not isinstance(name, str) or not name):
        raise Invalid(f"a {resource.kind} update needs metadata.name", [FieldError("metadata.name", "Required value")])
    return _scope(resource, meta.get("namespace")), name if isinstance(name, str) else None


def _with_type(resource: Resource, obj: Obj) -> Obj:
    return {"apiVersion": resource.api_version, "kind": resource.kind, **obj}


class KubeStore:
    """:class:`~kray.store.Store` over a Kubernetes API server. Build with :meth:`from_kubeconfig`."""

    def __init__(self, *, client: httpx2.AsyncClient, settings: KubeSettings | None = None) -> None:
        self._client = client
        self._settings = settings or KubeSettings()
        self._closed = False

    @property
    def server(self) -> str:
        """The apiserver's URL (``https://host:port``)."""
        return str(self._client.base_url).rstrip("/")

    @classmethod
    def from_config(cls, config: SingleConfig, *, settings: KubeSettings | None = None) -> KubeStore:
        settings = settings or KubeSettings()
        # Every watch holds one HTTP/1.1 connection for its whole life, so the pool has no upper
        # bound: an operator watching many namespaces (5 kinds each) exhausted httpx's default 100
        # and every request then failed with PoolTimeout. HTTP/2 is no way out here: httpcore
        # queues streams beyond the server's max-concurrent-streams (250) behind the watches,
        # so plain requests would wait for ever.
        params = ConnectionParams(timeout=httpx2.Timeout(settings.request_timeout))
        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=settings.keepalive_connections)
        return cls(client=httpx2.AsyncClient(**params.httpx_params(config), limits=limits), settings=settings)

    @classmethod
    def from_kubeconfig(
        cls, path: Path | None = None, *, context: str | None = None, settings: KubeSettings | None = None
    ) -> KubeStore:
        """From a kubeconfig file (default: ``$KUBECONFIG``, ``~/.kube/config`` or in-cluster)."""
        kubeconfig = KubeConfig.from_file(path) if path is not None else KubeConfig.from_env()
        config = kubeconfig.get(context_name=context)
        if config is None:
            raise Invalid(f"kubeconfig {path or '(environment)'} has no context {context or '(current)'}", [])
        return cls.from_config(config, settings=settings)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        settings = self._settings
        for attempt in range(settings.max_retries + 1):
            with map_errors():
                response = await self._client.request(method, path, params=params, content=content, headers=headers)
                delay = retry_after(response)
                if delay is None or delay > settings.max_retry_after or attempt == settings.max_retries:
                    response.raise_for_status()
                    break
            await asyncio.sleep(delay)
        return response.json()

    # ---- Store ---------------------------------------------------------------------------------------
    async def create(self, resource: Resource, obj: Obj) -> Obj:
        namespace, _ = _identity(resource, obj, need_name=False)
        path = _path(resource, namespace=namespace)
        created: Obj = await self._call(
            "POST", path, params={"fieldValidation": "Strict"}, body=_with_type(resource, obj)
        )
        return created

    async def get(self, resource: Resource, name: str, *, namespace: str | None) -> Obj:
        found: Obj = await self._call("GET", _path(resource, namespace=_scope(resource, namespace), name=name))
        return found

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        """``field_selector`` (this adapter only): the apiserver's ``fieldSelector`` (``spec.nodeName=n``)."""
        parse_selector(label_selector)  # refuse a bad selector the same way the embedded store does
        params = {"limit": str(self._settings.page_size)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        path = _path(resource, namespace=namespace if resource.namespaced else None)
        items: list[Obj] = []
        version = ""
        while True:
            page = await self._call("GET", path, params=params)
            version = version or str(page["metadata"].get("resourceVersion", ""))
            items += [_with_type(resource, item) for item in page.get("items") or []]
            token = page["metadata"].get("continue")
            if not token:
                return ObjectList(items=items, resource_version=version)
            params["continue"] = token

    async def _update(self, resource: Resource, obj: Obj, *, status: bool) -> Obj:
        namespace, name = _identity(resource, obj, need_name=True)
        path = _path(resource, namespace=namespace, name=name, status=status)
        updated: Obj = await self._call(
            "PUT", path, params={"fieldValidation": "Strict"}, body=_with_type(resource, obj)
        )
        return updated

    async def replace(self, resource: Resource, obj: Obj) -> Obj:
        return await self._update(resource, obj, status=False)

    async def replace_status(self, resource: Resource, obj: Obj) -> Obj:
        return await self._update(resource, obj, status=True)

    async def patch(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None,
        patch: Obj,
        subresource: Literal["status"] | None = None,
    ) -> Obj:
        path = _path(resource, namespace=_scope(resource, namespace), name=name, status=subresource == "status")
        patched: Obj = await self._call(
            "PATCH",
            path,
            params=_STRICT,
            body=patch,
            content_type="application/merge-patch+json",
        )
        return patched

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None,
        propagation: Propagation = "Background",
        grace_period_seconds: int | None = None,
        uid: str | None = None,
    ) -> None:
        """``grace_period_seconds`` and ``uid`` (this adapter only): the kubelet's final delete of a pod whose
        containers are gone (``0``, only if the object is still the one of that uid: Conflict otherwise)."""
        if propagation not in _PROPAGATIONS:
            raise Invalid(
                f"unknown propagationPolicy {propagation!r}", [FieldError("propagationPolicy", "unsupported")]
            )
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        await self._call("DELETE", _path(resource, namespace=_scope(resource, namespace), name=name), body=options)

    async def request_token(
        self,
        *,
        namespace: str,
        service_account: str,
        audiences: Sequence[str],
        expiration_seconds: int,
        pod: Obj | None = None,
    ) -> tuple[str, str]:
        """A TokenRequest for a service account (the kubelet's, for a projected ``serviceAccountToken``):
        (token, expirationTimestamp). With ``pod``, the token is bound to it (invalid once the pod is gone)."""
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:  # none: the apiserver's own (its --api-audiences, else its issuer)
            spec["audiences"] = list(audiences)
        if pod is not None:
            meta = pod.get("metadata") or {}
            bound = {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"), "uid": meta.get("uid")}
            spec["boundObjectRef"] = bound
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        path = _path(SERVICE_ACCOUNT, namespace=namespace, name=service_account) + "/token"
        answer = await self._call("POST", path, body=body)
        status = answer.get("status") or {}
        return str(status.get("token") or ""), str(status.get("expirationTimestamp") or "")

    def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        m.parse_resource_version(resource_version)
        parse_selector(label_selector)
        return self._watch(resource, namespace, label_selector, resource_version, field_selector)

    async def _watch(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None,
        version: str,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        settings = self._settings
        path = _path(resource, namespace=namespace if resource.namespaced else None)
        timeout = httpx2.Timeout(settings.request_timeout, read=settings.watch_timeout + settings.request_timeout)
        if version == "0":
            # "Start with the current state": a consistent list, as ADDED events, then changes after it.
            # (The apiserver's own RV=0 watch is served from its watch cache at "any" version, which the
            # contract suite saw deliver nothing for 20 s about once in five full runs.)
            current = await self.list(
                resource, namespace=namespace, label_selector=label_selector, field_selector=field_selector
            )
            for item in current.items:
                yield WatchEvent(WatchEventType.ADDED, item)
            version = current.resource_version
        while not self._closed:
            params = {
                "watch": "1",
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(settings.watch_timeout),
                "resourceVersion": version,
            }
            if label_selector:
                params["labelSelector"] = label_selector
            if field_selector:
                params["fieldSelector"] = field_selector
            try:
                async for event in self._stream(path, params=params, timeout=timeout):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise error_from_status(obj)
                    version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                    if event.get("type") != "BOOKMARK":
                        yield WatchEvent(WatchEventType(event["type"]), obj)
            except Unavailable:
                if self._closed:
                    return
                raise

    async def _stream(self, path: str, *, params: dict[str, str], timeout: httpx2.Timeout) -> AsyncIterator[Any]:
        """The decoded lines of one watch request, until the server ends it.

        Lines end at b"\\n" only: JSON escapes newlines inside strings, but not U+0085, which
        ``aiter_lines`` (``str.splitlines``) also ends a line at -- one custom resource with it in a
        string cut the stream mid-object, and the informer of its kind stopped for good.
        """
        with map_errors():
            async with self._client.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    response.raise_for_status()
                pending = bytearray()
                async for chunk in response.aiter_bytes():
                    searched = len(pending)  # no newline before this offset
                    pending += chunk
                    while (end := pending.find(b"\n", searched)) >= 0:
                        line = bytes(pending[:end])
                        del pending[: end + 1]
                        searched = 0
                        if line.strip():
                            yield json.loads(line)
                if pending.strip():
                    yield json.loads(bytes(pending))

    async def close(self) -> None:
        """Close the HTTP client; watches end at their next reconnect."""
        self._closed = True
        await self._client.aclose()

    async def __aenter__(self) -> KubeStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
