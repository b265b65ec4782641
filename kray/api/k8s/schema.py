"""Structural CRD schemas for Kubernetes types, derived from the vendored upstream OpenAPI data.

Why: Kubernetes publishes its types as OpenAPI v3 with ``$ref``s, ``allOf`` wrappers, ``oneOf`` for
int-or-string and Quantity, and Go zero-value defaults. A CRD (``apiextensions.k8s.io/v1``) accepts
none of those: it needs a *structural* schema, self-contained, with a ``type`` on every node.
:func:`structural_schema` rewrites one vendored definition into that form, following the conventions
controller-gen applies to the same Go types, so kray's CRDs accept what KubeRay's accept (plus the
fields that newer Kubernetes releases added). Anything the rewrite does not understand fails loudly,
so a data refresh can never slip a non-structural schema into a CRD.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

KUBERNETES_VERSION = "v1.37.2"
"""The Kubernetes release whose OpenAPI data is vendored. Changed only by hack/refresh_k8s_openapi.py."""

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""The pattern controller-gen puts on every ``resource.Quantity``: the Quantity grammar as a regex."""

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

EMBEDDED_META_FIELDS = ("annotations", "finalizers", "labels", "name", "namespace")
"""The ObjectMeta fields an embedded object keeps, as controller-gen's ``generateEmbeddedObjectMeta``.

A template's other metadata (uid, managedFields, creationTimestamp: null, ...) is server-owned or
meaningless before the object exists; pruning it, as KubeRay's CRDs do, keeps such manifests valid.
"""

_KEPT = frozenset(
    {
        "additionalProperties",
        "default",
        "enum",
        "format",
        "items",
        "maxItems",
        "maxLength",
        "maximum",
        "minItems",
        "minLength",
        "minimum",
        "pattern",
        "properties",
        "required",
        "type",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-preserve-unknown-fields",
    }
)
"""Keywords that mean the same inside a CRD schema and are copied as they are."""

_DROPPED = frozenset(
    {
        "description",
        "x-kubernetes-group-version-kind",
        "x-kubernetes-patch-merge-key",
        "x-kubernetes-patch-strategy",
        "x-kubernetes-unions",
    }
)
"""Keywords a CRD schema cannot carry and whose loss changes no validation."""

_REF_PREFIX = "#/definitions/"


class SchemaError(ValueError):
    """The vendored data holds something that cannot become a structural CRD schema."""


@functools.cache
def openapi_data() -> Mapping[str, Any]:
    """The vendored document for :data:`KUBERNETES_VERSION`, read once per process. Do not mutate."""
    resource = resources.files(__package__ or "kray.api.k8s").joinpath(f"openapi-{KUBERNETES_VERSION}.json")
    data: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    if data.get("kubernetesVersion") != KUBERNETES_VERSION:
        raise SchemaError(f"{resource} is for {data.get('kubernetesVersion')}, not {KUBERNETES_VERSION}")
    return data


def definition_names() -> frozenset[str]:
    """Every definition :func:`structural_schema` can render (the closure of the vendored roots)."""
    return frozenset(openapi_data()["definitions"])


def structural_schema(definition: str) -> dict[str, Any]:
    """The structural CRD schema of ``definition`` (e.g. ``io.k8s.api.core.v1.PodTemplateSpec``).

    All references are inlined; descriptions, Go zero-value defaults and strategic-merge-patch hints
    are dropped; IntOrString and Quantity become ``x-kubernetes-int-or-string`` nodes; ObjectMeta
    becomes the embedded form (see :data:`EMBEDDED_META_FIELDS`). The result is a fresh copy that the
    caller may change. Raises :class:`SchemaError` for an unknown name or a recursive type.
    """
    return copy.deepcopy(_rendered(definition))


def property_paths(schema: Mapping[str, Any]) -> set[str]:
    """Every property path in ``schema``: ``spec.containers[].env[].name``; ``{}`` marks a map value."""
    paths: set[str] = set()
    _collect_paths(schema, prefix="", into=paths)
    return paths


def render_definition(definition: str, *, definitions: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`structural_schema` over any ``definitions`` in the vendored file's form (uncached)."""
    return _convert_definition(definition, definitions=definitions, stack=())


@functools.cache
def _rendered(definition: str) -> dict[str, Any]:
    return render_definition(definition, definitions=openapi_data()["definitions"])


def _int_or_string() -> dict[str, Any]:
    return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}


def _convert_definition(name: str, *, definitions: Mapping[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
    if name in stack:
        raise SchemaError(f"recursive Kubernetes type: {' -> '.join((*stack, name))}")
    if name == INT_OR_STRING:
        return _int_or_string()
    if name == QUANTITY:
        return {**_int_or_string(), "pattern": QUANTITY_PATTERN}
    schema = definitions.get(name)
    if schema is None:
        raise SchemaError(f"{name} is not in the vendored Kubernetes {KUBERNETES_VERSION} data")
    if name == OBJECT_META:
        schema = _embedded_object_meta(schema)
    return _convert_node(schema, definitions=definitions, stack=(*stack, name))


def _embedded_object_meta(schema: Mapping[str, Any]) -> dict[str, Any]:
    properties = schema["properties"]
    return {"type": "object", "properties": {field: properties[field] for field in EMBEDDED_META_FIELDS}}


def _ref_target(node: Mapping[str, Any]) -> str | None:
    """The definition a node stands for: ``{"$ref": X}`` or ``{"allOf": [{"$ref": X}]}``, else None."""
    ref = node.get("$ref")
    all_of = node.get("allOf")
    if ref is None and isinstance(all_of, list) and len(all_of) == 1 and set(all_of[0]) == {"$ref"}:
        ref = all_of[0]["$ref"]
    if ref is None:
        return None
    if not isinstance(ref, str) or not ref.startswith(_REF_PREFIX):
        raise SchemaError(f"unsupported reference {ref!r}")
    return ref.removeprefix(_REF_PREFIX)


def _convert_node(node: Mapping[str, Any], *, definitions: Mapping[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
    target = _ref_target(node)
    if target is not None:
        siblings = {key: value for key, value in node.items() if key not in ("$ref", "allOf")}
        inlined = _convert_definition(target, definitions=definitions, stack=stack)
        return {**inlined, **_convert_keywords(siblings, definitions=definitions, stack=stack)}
    out = _convert_keywords(node, definitions=definitions, stack=stack)
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"schema without a type in {' -> '.join(stack)}: {sorted(node)}")
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _convert_keywords(
    node: Mapping[str, Any], *, definitions: Mapping[str, Any], stack: tuple[str, ...]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key not in _KEPT:
            raise SchemaError(f"unsupported keyword {key!r} in {' -> '.join(stack)}")
        if key == "properties":
            out[key] = {name: _convert_node(prop, definitions=definitions, stack=stack) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            if not isinstance(value, Mapping):
                raise SchemaError(f"{key} must be a schema in {' -> '.join(stack)}")
            out[key] = _convert_node(value, definitions=definitions, stack=stack)
        elif key == "required":
            out[key] = sorted(value)
        else:
            out[key] = copy.deepcopy(value)
    _drop_implicit_defaults(out)
    _check_list_map_keys(out, stack=stack)
    return out


def _drop_implicit_defaults(out: dict[str, Any]) -> None:
    """Remove the defaults Kubernetes' generator derives from Go zero values.

    ``default: {}`` marks a non-pointer struct field, and a default on a required field marks a
    non-``omitempty`` one. In a CRD either would make the API server invent data (and make ``required``
    moot), which controller-gen never does; defaults from explicit ``+default`` markers stay.
    """
    if out.get("default") == {}:
        del out["default"]
    for name in out.get("required", ()):
        out.get("properties", {}).get(name, {}).pop("default", None)


def _check_list_map_keys(out: Mapping[str, Any], *, stack: tuple[str, ...]) -> None:
    """The API server refuses a map-list whose keys are neither required nor defaulted."""
    if out.get("x-kubernetes-list-type") != "map":
        return
    items = out.get("items", {})
    for key in out.get("x-kubernetes-list-map-keys", ()):
        if key not in items.get("required", ()) and "default" not in items.get("properties", {}).get(key, {}):
            raise SchemaError(f"map-list key {key!r} is neither required nor defaulted in {' -> '.join(stack)}")


def _collect_paths(node: Mapping[str, Any], *, prefix: str, into: set[str]) -> None:
    for name, prop in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        into.add(path)
        _collect_paths(prop, prefix=path, into=into)
    for key, marker in (("items", "[]"), ("additionalProperties", "{}")):
        child = node.get(key)
        if isinstance(child, Mapping):
            _collect_paths(child, prefix=prefix + marker, into=into)
