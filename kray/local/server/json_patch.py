"""JSON patch (RFC 6902, ``application/json-patch+json``) as the Kubernetes API server applies it. Pure.

Ray's autoscaler patches the RayCluster with JSON patches (``replace`` of a group's ``replicas`` or
``scaleStrategy``, ``test`` of ``/metadata/resourceVersion`` then ``add`` of a finalizer), so kray's local
server applies them like the apiserver does (gopkg.in/evanphx/json-patch.v4 behind
k8s.io/apiserver's ``jsonPatcher``): the operations run in order on a copy, and any failing one -- a
``test`` that does not match, a path that does not resolve -- rejects the whole patch (the caller answers
422 Invalid, as the apiserver does). Where v4 differs from the RFC the contract test decides: ``replace``
of a missing object member adds it.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The patch is malformed or an operation does not apply; the message says which."""


def apply_json_patch(document: Any, operations: Any) -> Any:
    """``document`` with ``operations`` applied, or :class:`PatchError`. ``document`` is not modified."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a JSON array of operations")
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise PatchError(f"invalid JSON patch operation: {op!r}")
        doc = _apply(doc, op)
    return doc


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, path: str, inserting: bool) -> int:
    if token == "-" and inserting:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r} in {path}")
    index = int(token)
    if index > len(container) or (index == len(container) and not inserting):
        raise PatchError(f"array index {index} out of bounds in {path}")
    return index


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for token in parts[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, path=path, inserting=False)]
        else:
            raise PatchError(f"doc is missing path: {path}")
    if not isinstance(node, dict | list):
        raise PatchError(f"doc is missing path: {path}")
    return node


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, last = _parent(doc, parts, path), parts[-1]
    if isinstance(parent, list):
        return parent[_index(parent, last, path=path, inserting=False)]
    if last not in parent:
        raise PatchError(f"doc is missing key: {path}")
    return parent[last]


def _add(doc: Any, path: str, value: Any, *, replacing: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path), parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif replacing:
        parent[_index(parent, last, path=path, inserting=False)] = value
    else:
        parent.insert(_index(parent, last, path=path, inserting=True), value)
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, parts, path), parts[-1]
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path=path, inserting=False))
    if last not in parent:
        raise PatchError(f"remove operation does not apply: doc is missing key: {path}")
    return doc, parent.pop(last)


def _apply(doc: Any, op: dict[str, Any]) -> Any:
    kind, path = op["op"], op["path"]
    if kind in {"add", "replace", "test"} and "value" not in op:
        raise PatchError(f"{kind} operation has no value: {path}")
    if kind == "add":
        return _add(doc, path, copy.deepcopy(op["value"]))
    if kind == "replace":
        return _add(doc, path, copy.deepcopy(op["value"]), replacing=True)
    if kind == "remove":
        return _remove(doc, path)[0]
    if kind == "test":
        if _get(doc, path) != op["value"]:
            raise PatchError(f"testing value {path} failed: test failed")
        return doc
    if kind in {"move", "copy"}:
        source = op.get("from")
        if not isinstance(source, str):
            raise PatchError(f"{kind} operation has no from: {path}")
        if kind == "move":
            doc, value = _remove(doc, source)
        else:
            value = copy.deepcopy(_get(doc, source))
        return _add(doc, path, value)
    raise PatchError(f"unsupported JSON patch operation {kind!r}")
