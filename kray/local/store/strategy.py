"""What the API server does to an object on each write, as pure functions (its "registry strategies").

The embedded store keeps these rules apart from SQLite so they can be read against the Kubernetes
sources and tested without a database: server-owned metadata, ``generation`` bumps, the status
subresource, Namespace bookkeeping, deletion planning (finalizers, ``deletionTimestamp``, the
garbage collector's ``orphan``/``foregroundDeletion`` finalizers) and, for ray.io kinds, the CRD's
defaults and structural schema. Preconditions that need the stored version (``resourceVersion``,
``uid``) are checked by :func:`check_preconditions`; the caller supplies the stored object.

Rules measured against kube-apiserver 1.37 (see tests/store): ``generation`` exists only on custom
resources, Pods and Jobs; custom resources refuse an update without ``resourceVersion``
(Invalid), core kinds accept it; a ``uid`` that differs from the stored one is a Conflict; a
no-op update keeps the resourceVersion; marking an object deleted bumps its generation; a new Pod is
``Pending`` with its QoS class (:mod:`kray.local.store.podqos`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kray.api import structural
from kray.api.crd import crd
from kray.api.errors import FieldError
from kray.local.store.podqos import pod_qos_class
from kray.store import Obj, Propagation, Resource
from kray.store import meta as m
from kray.store.errors import Conflict, Invalid

_GENERATION_KINDS = frozenset({("v1", "Pod"), ("batch/v1", "Job")})
_CUSTOM_GROUPS = frozenset({"ray.io"})
_ENVELOPE = ("apiVersion", "kind", "metadata", "status")


@dataclass(frozen=True, slots=True)
class Stamp:
    """The server-chosen values of one write: a new object's uid, and the time in RFC 3339 (``...Z``)."""

    uid: str
    now: str


def is_custom(resource: Resource) -> bool:
    return resource.group in _CUSTOM_GROUPS


def tracks_generation(resource: Resource) -> bool:
    return is_custom(resource) or (resource.api_version, resource.kind) in _GENERATION_KINDS


def _schema(resource: Resource) -> Mapping[str, Any] | None:
    if not is_custom(resource):
        return None
    schema: Mapping[str, Any] = crd(resource.kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _invalid(resource: Resource, name: str, errors: list[FieldError]) -> Invalid:
    detail = "; ".join(str(error) for error in errors)
    return Invalid(f'{resource.kind} "{name}" is invalid: {detail}', errors)


def _envelope(resource: Resource, obj: Any) -> Obj:
    """A deep copy of ``obj`` with apiVersion/kind filled in (and checked against ``resource``)."""
    if not isinstance(obj, dict):
        raise Invalid(f"a {resource.kind} must be a JSON object", [FieldError("", "expected object")])
    out = {"apiVersion": resource.api_version, "kind": resource.kind, **copy.deepcopy(obj)}
    errors = []
    for field, expected in (("apiVersion", resource.api_version), ("kind", resource.kind)):
        if out[field] != expected:
            errors.append(FieldError(field, f'"{out[field]}" does not match the expected "{expected}"'))
    if not isinstance(out.get("metadata"), dict):
        errors.append(FieldError("metadata", "expected object"))
    if errors:
        raise _invalid(resource, "", errors)
    return out


def _validated(resource: Resource, obj: Obj) -> Obj:
    """Apply the CRD defaults and refuse what its schema refuses (ray.io kinds); check metadata (all)."""
    schema = _schema(resource)
    if schema is not None:
        obj = structural.with_defaults(obj, schema)
    meta = obj["metadata"]
    errors = m.metadata_errors(resource, meta)
    if schema is not None:
        errors += structural.check(obj, schema)
    if errors:
        raise _invalid(resource, str(meta.get("name", "")), errors)
    return obj


def prepare_create(resource: Resource, obj: Any, *, stamp: Stamp, namespace: str) -> Obj:
    """The object to store for a create request (its name already chosen, generateName resolved)."""
    out = _envelope(resource, obj)
    meta = out["metadata"]
    if meta.get("resourceVersion"):
        raise Invalid("resourceVersion should not be set on objects to be created", [FieldError("metadata", "")])
    meta = m.without_server_fields(meta)
    meta.pop("managedFields", None)
    meta.pop("selfLink", None)
    if resource.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta.update(uid=stamp.uid, creationTimestamp=stamp.now)
    if tracks_generation(resource):
        meta["generation"] = 1
    out["metadata"] = meta
    if resource.status_subresource:
        out.pop("status", None)
    if resource.kind == "Pod" and resource.api_version == "v1":
        # The pod strategy's PrepareForCreate: a new pod is Pending, with its QoS class, before any kubelet.
        out["status"] = {"phase": "Pending", "qosClass": pod_qos_class(out.get("spec") or {})}
    if resource.kind == "Namespace" and resource.api_version == "v1":
        out["spec"] = {"finalizers": [m.NAMESPACE_FINALIZER]}
        out["status"] = {"phase": "Active"}
        meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta.get("name", "")}
    return _validated(resource, out)


def check_preconditions(resource: Resource, stored: Obj, request: Obj) -> None:
    """Conflict when ``request`` names another incarnation or version than ``stored``."""
    have, want = m.metadata(stored), m.metadata(request)
    name = have.get("name")
    if want.get("uid") and want["uid"] != have.get("uid"):
        raise Conflict(f'{resource.plural} "{name}": precondition failed: uid {want["uid"]} != {have.get("uid")}')
    version = want.get("resourceVersion")
    if version:
        if str(version) != have.get("resourceVersion"):
            raise Conflict(
                f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
    elif is_custom(resource):
        error = FieldError("metadata.resourceVersion", "must be specified for an update")
        raise _invalid(resource, str(name), [error])


def _check_identity(resource: Resource, stored: Obj, request: Obj) -> None:
    have, want = m.metadata(stored), m.metadata(request)
    for field in ("name", "namespace"):
        if field in want and want[field] != have.get(field):
            error = FieldError(f"metadata.{field}", f'"{want[field]}" does not match "{have.get(field)}"')
            raise _invalid(resource, str(have.get("name")), [error])


def _spec_part(obj: Obj) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in _ENVELOPE}


def prepare_update(resource: Resource, stored: Obj, request: Any) -> Obj:
    """The object to store for a replace (or main-resource patch) of ``stored`` by ``request``."""
    out = _envelope(resource, request)
    _check_identity(resource, stored, out)
    old_meta = m.metadata(stored)
    meta = {key: value for key, value in out["metadata"].items() if key != "managedFields"}
    for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        meta.pop(field, None)
        if field in old_meta:
            meta[field] = old_meta[field]
    meta.update(name=old_meta["name"], resourceVersion=old_meta["resourceVersion"])
    if "namespace" in old_meta:
        meta["namespace"] = old_meta["namespace"]
    out["metadata"] = meta
    if m.is_deleting(stored):
        added = [f for f in m.finalizers_of(out) if f not in m.finalizers_of(stored)]
        if added:
            message = f"Forbidden: no new finalizers can be added if the object is being deleted, found {added}"
            raise _invalid(resource, meta["name"], [FieldError("metadata.finalizers", message)])
    if resource.status_subresource:
        out.pop("status", None)
        if "status" in stored:
            out["status"] = copy.deepcopy(stored["status"])
    if resource.kind == "Namespace" and resource.api_version == "v1":
        out["spec"] = copy.deepcopy(stored.get("spec", {}))  # spec.finalizers change only via /finalize
    out = _validated(resource, out)
    if "generation" in out["metadata"] and _spec_part(out) != _spec_part(stored):
        out["metadata"]["generation"] = int(out["metadata"]["generation"]) + 1
    return out


def prepare_status_update(resource: Resource, stored: Obj, request: Any) -> Obj:
    """The object to store for a status update: ``stored`` with only its ``status`` replaced."""
    out = _envelope(resource, request)
    _check_identity(resource, stored, out)
    result = copy.deepcopy(stored)
    if out.get("status") is None:
        result.pop("status", None)
    else:
        result["status"] = out["status"]
    return _validated(resource, result)


def plan_delete(*, kind: str, stored: Obj, propagation: Propagation, now: str) -> Obj | None:
    """What a delete request does: ``None`` to remove ``stored`` now, else the object to store instead
    (marked deleted and carrying the finalizers that must go first). May return ``stored`` itself
    when nothing changes (an object already being deleted the same way)."""
    if propagation not in ("Background", "Foreground", "Orphan"):
        raise Invalid(f"unknown propagationPolicy {propagation!r}", [FieldError("propagationPolicy", "unsupported")])
    if kind == "Namespace":
        if m.is_deleting(stored):
            return stored
        return _marked_deleted(stored, now=now, finalizers=m.finalizers_of(stored), phase="Terminating")
    kept = [f for f in m.finalizers_of(stored) if f not in (m.ORPHAN_FINALIZER, m.FOREGROUND_FINALIZER)]
    if propagation == "Orphan":
        kept.append(m.ORPHAN_FINALIZER)
    elif propagation == "Foreground":
        kept.append(m.FOREGROUND_FINALIZER)
    if not kept:
        return None
    if m.is_deleting(stored):
        if set(kept) == set(m.finalizers_of(stored)):
            return stored
        out = copy.deepcopy(stored)
        out["metadata"]["finalizers"] = kept
        return out
    return _marked_deleted(stored, now=now, finalizers=kept, phase=None)


def _marked_deleted(stored: Obj, *, now: str, finalizers: list[str], phase: str | None) -> Obj:
    out = copy.deepcopy(stored)
    meta = out["metadata"]
    meta.update(deletionTimestamp=now, deletionGracePeriodSeconds=0)
    if finalizers:
        meta["finalizers"] = finalizers
    if "generation" in meta:
        meta["generation"] = int(meta["generation"]) + 1
    if phase is not None:
        out.setdefault("status", {})["phase"] = phase
    return out


def finished_deleting(obj: Obj) -> bool:
    """A deleting object whose last finalizer is gone (Namespaces also wait for ``spec.finalizers``)."""
    if not m.is_deleting(obj) or m.finalizers_of(obj):
        return False
    spec = obj.get("spec")
    return not (obj.get("kind") == "Namespace" and isinstance(spec, dict) and spec.get("finalizers"))


def without_finalizer(obj: Obj, finalizer: str) -> Obj:
    out = copy.deepcopy(obj)
    remaining = [f for f in m.finalizers_of(obj) if f != finalizer]
    if remaining:
        out["metadata"]["finalizers"] = remaining
    else:
        out["metadata"].pop("finalizers", None)
    return out


def without_owners(obj: Obj, uids: frozenset[str]) -> Obj:
    out = copy.deepcopy(obj)
    refs = [ref for ref in out["metadata"].get("ownerReferences") or [] if ref.get("uid") not in uids]
    if refs:
        out["metadata"]["ownerReferences"] = refs
    else:
        out["metadata"].pop("ownerReferences", None)
    return out


def finalized_namespace(obj: Obj) -> Obj:
    """A terminating Namespace whose contents are gone: its ``spec.finalizers`` cleared."""
    out = copy.deepcopy(obj)
    out["spec"] = {key: value for key, value in (out.get("spec") or {}).items() if key != "finalizers"}
    return out
