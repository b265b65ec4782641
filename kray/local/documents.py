"""The documents of a manifest besides ray.io objects: which ones local mode stores, checked and normalized.

Pods use ConfigMaps, Secrets, ServiceAccounts and PersistentVolumeClaims, in Namespaces: ``kray apply`` and
``kray job run`` store those (a Secret dropped silently left ``authOptions.secretName`` pointing at nothing) and
name every other kind as skipped. Each stored document is checked here as the API server would check it, with
the field path in every error, and normalized as it would store it (a Secret's ``stringData`` merged into
``data``, its base64 made canonical, ``type`` defaulted). The install order is Helm's: Namespaces, then what
pods use, then ray.io objects. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kray.api.errors import FieldError
from kray.store import (
    CONFIGMAP,
    NAMESPACE,
    PERSISTENT_VOLUME_CLAIM,
    RAYCLUSTER,
    RAYJOB,
    RAYSERVICE,
    SECRET,
    SERVICE_ACCOUNT,
    Obj,
    Resource,
)
from kray.store import meta as m

STORED: dict[str, Resource] = {
    "Namespace": NAMESPACE,
    "ServiceAccount": SERVICE_ACCOUNT,
    "Secret": SECRET,
    "ConfigMap": CONFIGMAP,
    "PersistentVolumeClaim": PERSISTENT_VOLUME_CLAIM,
}
"""Core kinds stored, in Helm's install order."""
RAY_KINDS: dict[str, Resource] = {"RayCluster": RAYCLUSTER, "RayJob": RAYJOB, "RayService": RAYSERVICE}
_RANK = {kind: rank for rank, kind in enumerate([*STORED, *RAY_KINDS])}

_FIELDS = {
    "Namespace": {"spec", "status"},
    "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "Secret": {"data", "stringData", "type", "immutable"},
    "ConfigMap": {"data", "binaryData", "immutable"},
    "PersistentVolumeClaim": {"spec", "status"},
}
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_DATA_BYTES = 1024 * 1024
"""The API server's limit on a ConfigMap's or Secret's data."""
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_RBAC = "local mode does not use RBAC objects (one machine, one user)"
_WHY_NOT = {
    "Service": "local mode makes each cluster's Services itself",
    "Pod": "local mode runs only the pods its RayClusters make",
    "Role": _RBAC,
    "RoleBinding": _RBAC,
    "ClusterRole": _RBAC,
    "ClusterRoleBinding": _RBAC,
    "RayCronJob": "local mode runs RayClusters, RayJobs and RayServices",
}


@dataclass(frozen=True, slots=True)
class Planned:
    """A document to store: its resource and the object (namespace resolved for namespaced kinds)."""

    resource: Resource
    obj: Obj

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        return str(self.obj["metadata"]["namespace"]) if self.resource.namespaced else None

    @property
    def label(self) -> str:
        """kubectl's ``kind/name``: ``configmap/ray-job-code-sample``."""
        return f"{self.resource.kind.lower()}/{self.name}"


def is_stored_core(content: Any) -> bool:
    """A ``v1`` document of a kind pods use (checked by :func:`core_errors`, not by the ray.io validator)."""
    return isinstance(content, dict) and content.get("apiVersion") == "v1" and content.get("kind") in STORED


def plural(kind: str) -> str:
    if kind.endswith("y") and kind[-2:-1] not in set("aeiou"):
        return kind[:-1] + "ies"
    if kind.endswith(("s", "x", "ch", "sh")):
        return kind + "es"
    return kind + "s"


def skip_reason(kind: str) -> str:
    """Why a document of ``kind`` is not stored: ``local mode does not run Deployments``."""
    return _WHY_NOT.get(kind) or f"local mode does not run {plural(kind)}"


def core_errors(content: Obj) -> list[FieldError]:
    """Every problem the API server (kubectl's strict validation included) would find in a core document."""
    kind = str(content["kind"])
    errors = m.metadata_errors(STORED[kind], content.get("metadata"))
    meta = content.get("metadata")
    if isinstance(meta, dict) and "namespace" in meta and kind != "Namespace":
        errors += _namespace_errors(meta["namespace"])
    known = {"apiVersion", "kind", "metadata", *_FIELDS[kind]}
    errors += [FieldError(key, f'unknown field "{key}"') for key in content if key not in known]
    if kind in {"Secret", "ConfigMap"}:
        errors += _data_errors(content, secret=kind == "Secret")
    elif kind == "ServiceAccount":
        errors += _service_account_errors(content)
    elif kind == "PersistentVolumeClaim":
        errors += _claim_errors(content.get("spec"))
    elif kind == "Namespace":
        for field in ("spec", "status"):
            if field in content and not isinstance(content[field], dict):
                errors.append(FieldError(field, f"expected object, got {_type(content[field])}"))
    return errors


def _namespace_errors(value: Any) -> list[FieldError]:
    if not isinstance(value, str):
        return [FieldError("metadata.namespace", f"expected string, got {_type(value)}")]
    return m.name_errors("Namespace", value, path="metadata.namespace")


def _type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _string_map(content: Obj, field: str) -> tuple[dict[str, Any], list[FieldError]]:
    value = content.get(field)
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [FieldError(field, f"expected object, got {_type(value)}")]
    errors = []
    for key, item in value.items():
        path = f"{field}.{key}"
        if not isinstance(key, str) or len(key) > 253 or not _CONFIG_KEY.match(key) or key in {".", ".."}:
            errors.append(FieldError(path, "Invalid value: a key must consist of alphanumerics, '-', '_' or '.'"))
        elif not isinstance(item, str):
            hint = f' (quote it: "{item}")' if isinstance(item, int | float | bool) else ""
            errors.append(FieldError(path, f"expected string, got {_type(item)}{hint}"))
    return value, errors


def _decoded(text: str) -> bytes:
    """Go's base64 decoding of a ``[]byte`` field: standard alphabet with padding, line breaks ignored."""
    return base64.b64decode(text.replace("\n", "").replace("\r", ""), validate=True)


def _data_errors(content: Obj, *, secret: bool) -> list[FieldError]:
    data, errors = _string_map(content, "data")
    other_field = "stringData" if secret else "binaryData"
    other, other_errors = _string_map(content, other_field)
    errors += other_errors
    encoded = data.items() if secret else other.items()
    size = 0
    for key, value in encoded:
        if not isinstance(value, str):
            continue
        path = f"{'data' if secret else 'binaryData'}.{key}"
        try:
            size += len(_decoded(value))
        except (binascii.Error, ValueError):
            hint = " (put plain text under stringData)" if secret else ""
            errors.append(FieldError(path, f"Invalid value: not valid base64{hint}"))
    plain = other.items() if secret else data.items()
    size += sum(len(value.encode()) for _, value in plain if isinstance(value, str))
    if not secret:
        errors += [FieldError(f"data.{key}", "duplicate of a key in binaryData") for key in data if key in other]
    if size > MAX_DATA_BYTES:
        errors.append(FieldError("data", f"Too long: must have at most {MAX_DATA_BYTES} bytes, has {size}"))
    if "immutable" in content and not isinstance(content["immutable"], bool):
        errors.append(FieldError("immutable", f"expected boolean, got {_type(content['immutable'])}"))
    if secret and "type" in content and (not isinstance(content["type"], str) or not content["type"]):
        errors.append(FieldError("type", f"expected a non-empty string, got {_type(content['type'])}"))
    return errors


def _service_account_errors(content: Obj) -> list[FieldError]:
    errors = []
    for field in ("secrets", "imagePullSecrets"):
        value = content.get(field)
        if value is None:
            continue
        if not isinstance(value, list):
            errors.append(FieldError(field, f"expected array, got {_type(value)}"))
            continue
        errors += [
            FieldError(f"{field}[{i}]", f"expected object, got {_type(item)}")
            for i, item in enumerate(value)
            if not isinstance(item, dict)
        ]
    automount = content.get("automountServiceAccountToken")
    if automount is not None and not isinstance(automount, bool):
        errors.append(FieldError("automountServiceAccountToken", f"expected boolean, got {_type(automount)}"))
    return errors


def _claim_errors(spec: Any) -> list[FieldError]:
    if not isinstance(spec, dict):
        got = "missing" if spec is None else f"expected object, got {_type(spec)}"
        return [FieldError("spec", "required field is missing" if spec is None else got)]
    errors = []
    modes = spec.get("accessModes")
    if not isinstance(modes, list) or not modes:
        errors.append(FieldError("spec.accessModes", f"Required value: at least 1 of {', '.join(ACCESS_MODES)}"))
    else:
        errors += [
            FieldError(
                f"spec.accessModes[{i}]", f'Unsupported value: "{mode}": expected one of {", ".join(ACCESS_MODES)}'
            )
            for i, mode in enumerate(modes)
            if mode not in ACCESS_MODES
        ]
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        errors.append(FieldError("spec.resources.requests.storage", "Required value: the claim's size, e.g. 1Gi"))
    elif not isinstance(storage, str | int) or isinstance(storage, bool) or not str(storage).strip():
        errors.append(FieldError("spec.resources.requests.storage", f"expected a quantity, got {_type(storage)}"))
    return errors


def normalized(content: Obj) -> Obj:
    """A checked core document as the API server stores it: a Secret's ``stringData`` merged into
    ``data`` (each value re-encoded as canonical base64; stringData wins) and its ``type`` defaulted."""
    out = copy.deepcopy(content)
    if out["kind"] == "Secret":
        data = {key: base64.b64encode(_decoded(value)).decode() for key, value in (out.get("data") or {}).items()}
        for key, value in (out.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        if data or "data" in out:
            out["data"] = data
        out.setdefault("type", "Opaque")
    if out["kind"] == "Namespace":
        out["metadata"].pop("namespace", None)
    return out


def resolve_namespace(obj: Obj, resource: Resource, *, flag: str | None) -> FieldError | None:
    """Put the namespace in ``obj`` as kubectl does: its own, else ``-n``, else ``default``; a conflict is an error."""
    if not resource.namespaced:
        return None
    meta = obj["metadata"]
    own = meta.get("namespace")
    if own and flag and own != flag:
        message = (
            f'the namespace from the provided object "{own}" does not match the namespace "{flag}". '
            f"You must pass '--namespace={own}' to perform this operation."
        )
        return FieldError("metadata.namespace", message)
    meta["namespace"] = own or flag or "default"
    return None


def install_order(planned: Iterable[Planned]) -> list[Planned]:
    """Namespaces first, then what pods use (Helm's order), then ray.io objects; file order within a kind."""
    return sorted(planned, key=lambda item: _RANK[item.resource.kind])


def namespaces_needed(planned: Sequence[Planned]) -> list[str]:
    """Namespaces the documents go to that no Namespace document among them declares, in first-use order."""
    declared = {p.name for p in planned if p.resource is NAMESPACE}
    needed: list[str] = []
    for item in planned:
        namespace = item.namespace
        if namespace and namespace not in declared and namespace not in needed:
            needed.append(namespace)
    return needed
