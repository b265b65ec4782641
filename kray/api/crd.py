"""Generate KubeRay-compatible CRDs from the pydantic models.

The generator walks model annotations itself instead of post-processing ``model_json_schema()``:
Kubernetes wants *structural* schemas (no ``$ref``, no ``anyOf`` nullables, a ``type`` on every
node), and KubeRay's CRDs carry controller-gen specifics (defaults, ``format: int32``, list types,
CEL rules) that live on our fields as :class:`~kray.api.v1._base.Schema` markers. Embedded
Kubernetes types (:class:`~kray.api.v1._base.K8sType`) come from the vendored OpenAPI document.

Deliberate differences from KubeRay's CRDs are listed in ``tests/api/test_crd_compat.py``.
"""

from __future__ import annotations

import types
import typing
from enum import Enum
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kray.api.k8s.schema import structural_schema
from kray.api.v1 import GROUP, KINDS, RayCluster, RayCronJob, RayJob, RayService
from kray.api.v1._base import K8sType, Schema

JSONSchema = dict[str, Any]

_SCALARS: dict[type, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _split_annotated(tp: Any) -> tuple[Any, list[Any]]:
    """Peel ``Annotated`` and ``X | None`` layers, collecting metadata from all of them."""
    metadata: list[Any] = []
    while True:
        if get_origin(tp) is typing.Annotated:
            tp, *extra = get_args(tp)
            metadata.extend(extra)
            continue
        if get_origin(tp) in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp, metadata


def _type_schema(tp: Any, metadata: list[Any]) -> JSONSchema:
    markers = [m for m in metadata if isinstance(m, Schema)]
    for marker in markers:
        if marker.opaque:
            return dict(marker.extra)
    k8s = next((m for m in metadata if isinstance(m, K8sType)), None)
    if k8s is not None:
        schema = structural_schema(k8s.definition)
    elif "anyOf" in {key for m in markers for key in m.extra}:
        schema = {}  # int-or-string: the marker carries the whole shape
    else:
        schema = _plain_schema(tp)
    for marker in markers:
        schema.update(marker.extra)
    return schema


def _plain_schema(tp: Any) -> JSONSchema:
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp)
        return {"type": "array", "items": _type_schema(*_split_annotated(item))}
    if origin is dict:
        _, value = get_args(tp)
        inner, metadata = _split_annotated(value)
        if inner is Any and not metadata:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": _type_schema(inner, metadata)}
    if origin is Literal:
        return {"type": "string"}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return model_schema(tp)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return {"type": "string", "enum": [member.value for member in tp]}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    raise TypeError(f"no OpenAPI mapping for {tp!r}")


def _field_schema(info: FieldInfo) -> tuple[JSONSchema, bool]:
    """The schema of one field, and whether the parent lists it as required."""
    tp, metadata = _split_annotated(info.annotation)
    schema = _type_schema(tp, [*metadata, *info.metadata])
    has_default = info.default is not PydanticUndefined and info.default_factory is None
    if has_default and info.default is not None and get_origin(tp) is not Literal:
        default = info.default
        schema["default"] = default.value if isinstance(default, Enum) else default
    forced = any(isinstance(m, Schema) and m.required for m in [*metadata, *info.metadata])
    return schema, info.is_required() or forced


def model_schema(model: type[BaseModel]) -> JSONSchema:
    """The structural schema of a model: properties in alias order, sorted like controller-gen."""
    properties: JSONSchema = {}
    required: list[str] = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        schema, is_required = _field_schema(info)
        properties[alias] = schema
        if is_required:
            required.append(alias)
    out: JSONSchema = {"type": "object", "properties": dict(sorted(properties.items()))}
    if required:
        out["required"] = sorted(required)
    return out


_PRINTER_COLUMNS: dict[str, list[JSONSchema]] = {
    "RayCluster": [
        {"jsonPath": ".status.desiredWorkerReplicas", "name": "desired workers", "type": "integer"},
        {"jsonPath": ".status.availableWorkerReplicas", "name": "available workers", "type": "integer"},
        {"jsonPath": ".status.desiredCPU", "name": "cpus", "type": "string"},
        {"jsonPath": ".status.desiredMemory", "name": "memory", "type": "string"},
        {"jsonPath": ".status.desiredGPU", "name": "gpus", "type": "string"},
        {"jsonPath": ".status.desiredTPU", "name": "tpus", "priority": 1, "type": "string"},
        {"jsonPath": ".status.state", "name": "status", "type": "string"},
        {"jsonPath": ".metadata.creationTimestamp", "name": "age", "type": "date"},
        {"jsonPath": ".status.head.podIP", "name": "head pod IP", "priority": 1, "type": "string"},
        {"jsonPath": ".status.head.serviceIP", "name": "head service IP", "priority": 1, "type": "string"},
    ],
    "RayJob": [
        {"jsonPath": ".status.jobStatus", "name": "job status", "type": "string"},
        {"jsonPath": ".status.jobDeploymentStatus", "name": "deployment status", "type": "string"},
        {"jsonPath": ".status.rayClusterName", "name": "ray cluster name", "type": "string"},
        {"jsonPath": ".status.startTime", "name": "start time", "type": "string"},
        {"jsonPath": ".status.endTime", "name": "end time", "type": "string"},
        {"jsonPath": ".metadata.creationTimestamp", "name": "age", "type": "date"},
    ],
    "RayService": [
        {"jsonPath": ".status.serviceStatus", "name": "service status", "type": "string"},
        {"jsonPath": ".status.numServeEndpoints", "name": "num serve endpoints", "type": "string"},
    ],
    "RayCronJob": [
        {"jsonPath": ".spec.schedule", "name": "schedule", "type": "string"},
        {"jsonPath": ".spec.timeZone", "name": "timezone", "type": "string"},
        {"jsonPath": ".status.lastScheduleTime", "name": "last schedule", "type": "date"},
        {"jsonPath": ".metadata.creationTimestamp", "name": "age", "type": "date"},
        {"jsonPath": ".spec.suspend", "name": "suspend", "type": "boolean"},
    ],
}

# KubeRay still serves v1alpha1 (storage: false) for these kinds; the CRDs carry no conversion stanza,
# so the API server only rewrites apiVersion. We serve it with the v1 schema (a superset of the old one).
_SERVES_V1ALPHA1 = {"RayCluster", "RayJob", "RayService"}
_PRINTER_COLUMNS_V1ALPHA1 = {"RayCluster"}


@cache
def crd(kind: str) -> JSONSchema:
    """The CustomResourceDefinition of one ray.io kind, as a plain dict (cached: do not mutate it)."""
    model = KINDS[kind]
    plural = kind.lower() + "s"
    openapi = model_schema(model)
    openapi.pop("required", None)  # the API server requires nothing at the root of a custom resource
    versions = [_version("v1", kind, openapi, storage=True)]
    if kind in _SERVES_V1ALPHA1:
        versions.append(_version("v1alpha1", kind, openapi, storage=False))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "categories": ["all"],
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced",
            "versions": versions,
        },
    }


def _version(name: str, kind: str, openapi: JSONSchema, *, storage: bool) -> JSONSchema:
    version: JSONSchema = {"name": name}
    if name == "v1" or kind in _PRINTER_COLUMNS_V1ALPHA1:
        version["additionalPrinterColumns"] = _PRINTER_COLUMNS[kind]
    version.update(
        {
            "schema": {"openAPIV3Schema": openapi},
            "served": True,
            "storage": storage,
            "subresources": {"status": {}},
        }
    )
    return version


ALL_KINDS = (RayCluster, RayJob, RayService, RayCronJob)


def crd_filename(kind: str) -> str:
    return f"{GROUP}_{kind.lower()}s.yaml"


def render_crd(kind: str) -> str:
    """One CRD as YAML, deterministic byte for byte (the committed files are compared with it)."""
    header = "# Generated by `kray crds` from kray/api/v1; do not edit.\n---\n"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # same bytes as SafeDumper, 4x faster
    return header + yaml.dump(crd(kind), Dumper=dumper, sort_keys=False, width=120)


def render_all() -> str:
    """All CRDs as one multi-document YAML stream, for ``kray crds | kubectl apply --server-side -f -``."""
    return "".join(render_crd(model.model_fields["kind"].default) for model in ALL_KINDS)
