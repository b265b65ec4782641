"""Pure ObjectMeta helpers shared by the store adapters: names, labels, finalizers, owner references.

Why here: the embedded store must refuse exactly what a Kubernetes API server refuses (a name that is
not a DNS subdomain, a label value with a space, a finalizer that is neither standard nor
domain-qualified), and the label-selector parser validates keys and values with the same rules. The
Kubernetes adapter needs none of this (the server checks), but its tests compare against it.

Nothing here does I/O or reads a clock: randomness and time are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kray.api.errors import FieldError
from kray.store import Obj, Resource
from kray.store.errors import Invalid

FOREGROUND_FINALIZER = "foregroundDeletion"
"""Set by a Foreground delete; the garbage collector removes it once blocking dependents are gone."""
ORPHAN_FINALIZER = "orphan"
"""Set by an Orphan delete; the garbage collector removes it after stripping dependents' references."""
NAMESPACE_FINALIZER = "kubernetes"
"""The ``spec.finalizers`` entry of every Namespace: its contents must go before it does."""
STANDARD_FINALIZERS = frozenset({FOREGROUND_FINALIZER, ORPHAN_FINALIZER, NAMESPACE_FINALIZER})

PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
"""Namespaces the API server refuses to delete."""

GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""apimachinery's ``utilrand`` alphabet: no vowels (no accidental words), no look-alike digits."""
GENERATE_NAME_SUFFIX = 5
_MAX_GENERATE_NAME_PREFIX = 63 - GENERATE_NAME_SUFFIX

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_NAME_RULES: Mapping[str, tuple[re.Pattern[str], int, str]] = {
    "Namespace": (_DNS1123_LABEL, 63, "a lowercase RFC 1123 label"),
    # DNS-1035 until Kubernetes 1.34's RelaxedServiceNameValidation; 1.37 accepts RFC 1123 labels.
    "Service": (_DNS1123_LABEL, 63, "a lowercase RFC 1123 label"),
}
_SUBDOMAIN_RULE = (_DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain")

_SERVER_FIELDS = frozenset(
    {"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"}
)
OBJECT_META_FIELDS = frozenset(
    {
        *_SERVER_FIELDS,
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The parts of an ``ownerReferences`` entry the garbage collector acts on."""

    uid: str
    block_owner_deletion: bool
    controller: bool


def generate_name(prefix: str, *, choice: Callable[[str], str]) -> str:
    """``prefix`` (cut to 58 characters) plus a 5-character random suffix, as the API server does.

    ``choice`` picks one character of a string (``random.choice`` or ``secrets.choice``)."""
    return prefix[:_MAX_GENERATE_NAME_PREFIX] + "".join(choice(GENERATE_NAME_ALPHABET) for _ in range(5))


def is_qualified_name(value: str) -> bool:
    """A label key or finalizer name: ``[prefix/]name``, the prefix a DNS subdomain, the name ≤ 63 chars."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and _QUALIFIED_NAME_PART.match(name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None


def name_errors(kind: str, name: str, *, path: str = "metadata.name") -> list[FieldError]:
    pattern, limit, what = _NAME_RULES.get(kind, _SUBDOMAIN_RULE)
    if len(name) > limit:
        return [FieldError(path, f"must be no more than {limit} characters")]
    if not pattern.match(name):
        return [FieldError(path, f'Invalid value: "{name}": must be {what}')]
    return []


def metadata_errors(resource: Resource, meta: Any) -> list[FieldError]:
    """What the API server's ObjectMeta validation refuses in ``meta`` (name included)."""
    if not isinstance(meta, dict):
        return [FieldError("metadata", "expected object")]
    errors = [FieldError(f"metadata.{key}", f'unknown field "{key}"') for key in meta if key not in OBJECT_META_FIELDS]
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        errors.append(FieldError("metadata.name", "Required value: name or generateName is required"))
    else:
        errors += name_errors(resource.kind, name)
    errors += _string_map_errors(meta.get("labels"), "metadata.labels", labels=True)
    errors += _string_map_errors(meta.get("annotations"), "metadata.annotations", labels=False)
    errors += finalizer_errors(meta.get("finalizers"))
    errors += owner_reference_errors(meta.get("ownerReferences"))
    return errors


def _string_map_errors(value: Any, path: str, *, labels: bool) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [FieldError(path, "expected object")]
    errors: list[FieldError] = []
    for key, item in value.items():
        if not isinstance(key, str) or not is_qualified_name(key):
            errors.append(FieldError(f"{path}[{key}]", "name part must be a qualified name ([prefix/]name)"))
        if not isinstance(item, str):
            errors.append(FieldError(f"{path}[{key}]", "expected string"))
        elif labels and not is_label_value(item):
            errors.append(FieldError(f"{path}[{key}]", f'Invalid value: "{item}": must be a valid label value'))
    return errors


def finalizer_errors(value: Any) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [FieldError("metadata.finalizers", "expected array")]
    errors: list[FieldError] = []
    for index, item in enumerate(value):
        path = f"metadata.finalizers[{index}]"
        if not isinstance(item, str) or not is_qualified_name(item):
            errors.append(FieldError(path, "must be a qualified name"))
        elif "/" not in item and item not in STANDARD_FINALIZERS:
            errors.append(FieldError(path, f'"{item}": neither a standard finalizer nor fully qualified'))
    return errors


def owner_reference_errors(value: Any) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [FieldError("metadata.ownerReferences", "expected array")]
    errors: list[FieldError] = []
    for index, ref in enumerate(value):
        path = f"metadata.ownerReferences[{index}]"
        if not isinstance(ref, dict):
            errors.append(FieldError(path, "expected object"))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref.get(key), str) or not ref[key]:
                errors.append(FieldError(f"{path}.{key}", "Required value"))
    if sum(1 for ref in value if isinstance(ref, dict) and ref.get("controller") is True) > 1:
        errors.append(FieldError("metadata.ownerReferences", "Only one reference can have Controller set to true"))
    return errors


def parse_resource_version(value: str) -> int | None:
    """The integer of a watch's resourceVersion; None for "" and "0" (start with the current state).

    Invalid for anything else that is not a decimal number (a real API server answers 500 there)."""
    if value in ("", "0"):
        return None
    if not value.isdigit():
        raise Invalid(f"invalid resourceVersion {value!r}", [FieldError("resourceVersion", "must be an integer")])
    return int(value)


def metadata(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def labels_of(obj: Obj) -> dict[str, str]:
    labels = metadata(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


def finalizers_of(obj: Obj) -> list[str]:
    return list(metadata(obj).get("finalizers") or [])


def is_deleting(obj: Obj) -> bool:
    return bool(metadata(obj).get("deletionTimestamp"))


def owner_refs(obj: Obj) -> list[OwnerRef]:
    return [
        OwnerRef(
            uid=str(ref["uid"]),
            block_owner_deletion=ref.get("blockOwnerDeletion") is True,
            controller=ref.get("controller") is True,
        )
        for ref in metadata(obj).get("ownerReferences") or []
        if isinstance(ref, dict) and ref.get("uid")
    ]


def without_server_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` minus everything only the server may set (what a create request may not choose)."""
    return {key: value for key, value in meta.items() if key not in _SERVER_FIELDS}
