"""The embedded store's write operations, each run inside one SQLite write transaction.

These glue :mod:`~kray.local.store.strategy` (what the API server would store) to
:class:`~kray.local.store.db.Tx` (how it is stored): look up the current version, check
preconditions, store, and decide between "unchanged", "modified" and "gone" (a deleting object whose
last finalizer was just removed). The garbage collector reuses :func:`delete` and :func:`commit`.
Functions are synchronous (they run on the writer thread) and keyword-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from kray.api.errors import FieldError
from kray.store import Obj, Propagation, Resource
from kray.store import meta as m
from kray.store.errors import AlreadyExists, Forbidden, Invalid, NotFound
from kray.store.merge import merge_patch

from . import strategy
from .db import NAMESPACES, Tx, resource_key
from .strategy import Stamp

GENERATE_NAME_ATTEMPTS = 8


def scope(resource: Resource, namespace: str | None) -> str:
    """The namespace column of a request: '' for cluster-scoped kinds; Invalid when one is missing."""
    if not resource.namespaced:
        return ""
    if not isinstance(namespace, str) or not namespace:
        raise Invalid(f"{resource.kind} is namespaced: a namespace is required", [FieldError("metadata.namespace", "")])
    return namespace


def namespace_of(resource: Resource, obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return scope(resource, meta.get("namespace") if isinstance(meta, dict) else None)


def name_of(resource: Resource, obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise Invalid(f"a {resource.kind} update needs metadata.name", [])
    return name


def not_found(resource: Resource, name: str) -> NotFound:
    qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    return NotFound(f'{qualified} "{name}" not found')


def get_stored(tx: Tx, resource: Resource, *, namespace: str, name: str) -> Obj:
    found = tx.get(resource_key(resource), namespace, name)
    if found is None:
        raise not_found(resource, name)
    return found


def create(tx: Tx, resource: Resource, obj: Any, *, stamp: Stamp, choice: Callable[[str], str]) -> Obj:
    namespace = namespace_of(resource, obj)
    if resource.namespaced:
        home = tx.get(NAMESPACES, "", namespace)
        if home is None:
            raise NotFound(f'namespaces "{namespace}" not found')
        if m.is_deleting(home):
            raise Forbidden(f"unable to create new content in namespace {namespace} because it is being terminated")
    key = resource_key(resource)
    obj = dict(obj)
    meta = dict(obj.get("metadata") or {})
    prefix = meta.get("generateName")
    if not meta.get("name") and isinstance(prefix, str) and prefix:
        for _ in range(GENERATE_NAME_ATTEMPTS):
            meta["name"] = m.generate_name(prefix, choice=choice)
            if tx.get(key, namespace, meta["name"]) is None:
                break
    obj["metadata"] = meta
    prepared = strategy.prepare_create(resource, obj, stamp=stamp, namespace=namespace)
    name = prepared["metadata"]["name"]
    if tx.get(key, namespace, name) is not None:
        raise AlreadyExists(f'{resource.plural} "{name}" already exists')
    return tx.put(key, prepared, old=None)


def commit(tx: Tx, *, key: str, stored: Obj, new: Obj) -> Obj:
    """Store ``new`` over ``stored``: nothing when equal (no new resourceVersion, no event), removal
    when it is a deleting object without finalizers, else a MODIFIED write."""
    if strategy.finished_deleting(new):
        return tx.remove(key, stored)
    if new == stored:
        return stored
    return tx.put(key, new, old=stored)


def replace(tx: Tx, resource: Resource, obj: Any, *, status: bool) -> Obj:
    namespace, name = namespace_of(resource, obj), name_of(resource, obj)
    if status and not resource.status_subresource:
        raise NotFound(f"{resource.plural} have no status subresource")
    stored = get_stored(tx, resource, namespace=namespace, name=name)
    strategy.check_preconditions(resource, stored, obj)
    prepare = strategy.prepare_status_update if status else strategy.prepare_update
    return commit(tx, key=resource_key(resource), stored=stored, new=prepare(resource, stored, obj))


def patch(
    tx: Tx,
    resource: Resource,
    name: str,
    *,
    namespace: str,
    patch: Any,
    subresource: Literal["status"] | None,
) -> Obj:
    if not isinstance(patch, dict):
        raise Invalid("a merge patch must be a JSON object", [])
    if subresource == "status" and not resource.status_subresource:
        raise NotFound(f"{resource.plural} have no status subresource")
    stored = get_stored(tx, resource, namespace=namespace, name=name)
    patched = merge_patch(stored, patch)
    requested = m.metadata(patch)
    precondition = {"metadata": {k: requested[k] for k in ("uid", "resourceVersion") if requested.get(k)}}
    precondition["metadata"].setdefault("resourceVersion", stored["metadata"]["resourceVersion"])
    strategy.check_preconditions(resource, stored, precondition)
    prepare = strategy.prepare_status_update if subresource == "status" else strategy.prepare_update
    return commit(tx, key=resource_key(resource), stored=stored, new=prepare(resource, stored, patched))


def delete(tx: Tx, *, key: str, stored: Obj, propagation: Propagation, now: str) -> Obj | None:
    """Delete (or start deleting) ``stored``; returns what was written, None when nothing changed."""
    if key == NAMESPACES and stored["metadata"]["name"] in m.PROTECTED_NAMESPACES:
        raise Forbidden(f'namespaces "{stored["metadata"]["name"]}" is forbidden: this namespace may not be deleted')
    planned = strategy.plan_delete(kind=str(stored.get("kind")), stored=stored, propagation=propagation, now=now)
    if planned is None:
        return tx.remove(key, stored)
    if planned is stored:
        return None
    return tx.put(key, planned, old=stored)
