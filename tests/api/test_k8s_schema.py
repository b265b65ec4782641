"""Tests for kray.api.k8s: the vendored Kubernetes OpenAPI data and the structural schemas built from it.

Why: kray's CRDs embed PodTemplateSpec and Service, and users move manifests between KubeRay and kray.
So besides checking the schemas are structural (the API server refuses anything else), these tests
hold them against KubeRay's own generated CRD, read at test time from the shared folder and never
copied into the repo: every field KubeRay's embedded schemas know must be known here too, with the
same validation, except for the differences listed below with their reasons.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from kray.api.k8s import schema as k8s
from kray.api.k8s.schema import (
    EMBEDDED_META_FIELDS,
    KUBERNETES_VERSION,
    SchemaError,
    definition_names,
    openapi_data,
    property_paths,
    render_definition,
    structural_schema,
)

REPO = Path(__file__).resolve().parents[2]
KUBERAY_CRDS = Path(os.environ.get("KRAY_KUBERAY_CRDS", REPO.parent / "shared" / "kuberay-crds"))

POD_TEMPLATE_SPEC = "io.k8s.api.core.v1.PodTemplateSpec"
SERVICE = "io.k8s.api.core.v1.Service"

EMBEDDED = {"template": POD_TEMPLATE_SPEC, "headService": SERVICE}
"""headGroupSpec property in KubeRay's RayCluster CRD -> the definition kray renders for it."""

KNOWN_MISSING_PATHS: dict[str, str] = {}
"""Property paths KubeRay's embedded schemas have and ours lack, with the reason. None today:
Kubernetes v1.37 removed no field that KubeRay's k8s.io/api v0.36 had."""

CONDITION_MARKERS = (
    "+kubebuilder:validation markers on metav1.Condition are read by controller-gen from the Go source; "
    "Kubernetes' published OpenAPI does not carry them. Only the Service's status (written by Kubernetes) "
    "is affected."
)
PORT_STATUS_MARKERS = (
    "+kubebuilder:validation markers on PortStatus.error are controller-gen-only, as for Condition; "
    "status written by Kubernetes."
)
ATOMIC_FROM_EMBEDDED = (
    "controller-gen copies +structType=atomic from the inlined LocalObjectReference onto the embedding "
    "struct; the published OpenAPI does not. It changes server-side-apply merging only, not validation."
)
DEFAULT_BY_REF = (
    "+default=ref(...) markers: Kubernetes' OpenAPI resolves them, controller-gen drops them. The API "
    "server applies the same defaults when it creates the Pod, so the CRD default changes nothing."
)
KNOWN_KEYWORD_DIFFERENCES: dict[tuple[str, str], str] = {
    ("metadata.finalizers", "x-kubernetes-list-type"): (
        "Kubernetes publishes ObjectMeta.finalizers as listType=set; controller-gen's embedded ObjectMeta "
        "is a fixed schema without list types."
    ),
    ("envFrom[].configMapRef", "x-kubernetes-map-type"): ATOMIC_FROM_EMBEDDED,
    ("envFrom[].secretRef", "x-kubernetes-map-type"): ATOMIC_FROM_EMBEDDED,
    ("volumes[].configMap", "x-kubernetes-map-type"): ATOMIC_FROM_EMBEDDED,
    ("sources[].configMap", "x-kubernetes-map-type"): ATOMIC_FROM_EMBEDDED,
    ("sources[].secret", "x-kubernetes-map-type"): ATOMIC_FROM_EMBEDDED,
    ("azureDisk.cachingMode", "default"): DEFAULT_BY_REF,
    ("azureDisk.kind", "default"): DEFAULT_BY_REF,
    ("status.conditions[].message", "maxLength"): CONDITION_MARKERS,
    ("status.conditions[].observedGeneration", "minimum"): CONDITION_MARKERS,
    ("status.conditions[].reason", "maxLength"): CONDITION_MARKERS,
    ("status.conditions[].reason", "minLength"): CONDITION_MARKERS,
    ("status.conditions[].reason", "pattern"): CONDITION_MARKERS,
    ("status.conditions[].status", "enum"): CONDITION_MARKERS,
    ("status.conditions[].type", "maxLength"): CONDITION_MARKERS,
    ("status.conditions[].type", "pattern"): CONDITION_MARKERS,
    ("ingress[].ports[]", "required"): PORT_STATUS_MARKERS,
    ("ingress[].ports[].error", "maxLength"): PORT_STATUS_MARKERS,
    ("ingress[].ports[].error", "pattern"): PORT_STATUS_MARKERS,
}
"""(path suffix, keyword) pairs where a node both schemas have is validated differently."""

CHILD_KEYWORDS = ("properties", "items", "additionalProperties", "description")

RAY_HEAD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "ray-head"}, "annotations": {"team": "ml"}},
    "spec": {
        "serviceAccountName": "ray",
        "containers": [
            {
                "name": "ray-head",
                "image": "rayproject/ray:2.55.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/bash", "-lc", "--"],
                "args": ["ray start --head --block"],
                "ports": [
                    {"containerPort": 6379, "name": "gcs"},
                    {"containerPort": 8265, "name": "dashboard", "protocol": "TCP"},
                ],
                "resources": {"limits": {"cpu": 2, "memory": "4Gi"}, "requests": {"cpu": "500m"}},
                "env": [
                    {"name": "RAY_LOG_TO_STDERR", "value": "1"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {
                        "name": "MEMORY_LIMIT",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                    },
                ],
                "envFrom": [{"configMapRef": {"name": "ray-env", "optional": True}}],
                "volumeMounts": [{"name": "logs", "mountPath": "/tmp/ray"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8265}, "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": "gcs"}},
                "lifecycle": {"preStop": {"exec": {"command": ["ray", "stop"]}}},
                "securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "logs", "emptyDir": {"sizeLimit": "1Gi"}}],
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ray"]}]}]
                }
            }
        },
    },
}


def _container(template: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = template["spec"]["containers"][0]
    return container


def _set_port_to_name(template: dict[str, Any]) -> None:
    _container(template)["ports"][0]["containerPort"] = "gcs"


def _set_bad_quantity(template: dict[str, Any]) -> None:
    _container(template)["resources"]["limits"]["memory"] = "4 gigabytes"


def _drop_container_name(template: dict[str, Any]) -> None:
    del _container(template)["name"]


def _set_containers_to_map(template: dict[str, Any]) -> None:
    template["spec"]["containers"] = {"ray-head": _container(template)}


def _set_env_value_to_int(template: dict[str, Any]) -> None:
    _container(template)["env"][0]["value"] = 1


def _set_label_to_bool(template: dict[str, Any]) -> None:
    template["metadata"]["labels"]["app"] = True


BREAKAGES = {
    "containerPort is a string": _set_port_to_name,
    "memory is no quantity": _set_bad_quantity,
    "container without a name": _drop_container_name,
    "containers is a map": _set_containers_to_map,
    "env value is an integer": _set_env_value_to_int,
    "label value is a boolean": _set_label_to_bool,
}


def load_refresh_script() -> ModuleType:
    path = REPO / "hack" / "refresh_k8s_openapi.py"
    spec = importlib.util.spec_from_file_location("refresh_k8s_openapi", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def kuberay_head_group_spec() -> Mapping[str, Any]:
    crd_path = KUBERAY_CRDS / "ray.io_rayclusters.yaml"
    assert crd_path.is_file(), f"KubeRay's CRDs are not at {KUBERAY_CRDS} (set KRAY_KUBERAY_CRDS)"
    crd = yaml.safe_load(crd_path.read_text(encoding="utf-8"))
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == "v1")
    head_group: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "headGroupSpec"
    ]
    return head_group


def kuberay_embedded(name: str) -> Mapping[str, Any]:
    embedded: Mapping[str, Any] = kuberay_head_group_spec()["properties"][name]
    return embedded


def nodes(schema: Mapping[str, Any], *, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node with its property path (root is ``""``), as property_paths names them."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from nodes(prop, path=f"{path}.{name}" if path else name)
    for key, marker in (("items", "[]"), ("additionalProperties", "{}")):
        child = schema.get(key)
        if isinstance(child, Mapping):
            yield from nodes(child, path=path + marker)
    for key in ("anyOf", "allOf", "oneOf"):
        for index, alternative in enumerate(schema.get(key, ())):
            yield from nodes(alternative, path=f"{path}<{key}{index}>")


def keyword_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(path, keyword) for every validation keyword that differs on a node both schemas have."""
    our_nodes, their_nodes = dict(nodes(ours)), dict(nodes(theirs))
    differences = set()
    for path in our_nodes.keys() & their_nodes.keys():
        a, b = our_nodes[path], their_nodes[path]
        for keyword in (a.keys() | b.keys()) - set(CHILD_KEYWORDS):
            if a.get(keyword) != b.get(keyword):
                differences.add((path, keyword))
    return differences


def explained(path: str, keyword: str) -> bool:
    return any(path.endswith(suffix) and keyword == kw for suffix, kw in KNOWN_KEYWORD_DIFFERENCES)


def is_int_or_string(node: Mapping[str, Any]) -> bool:
    return node.get("x-kubernetes-int-or-string") is True


def would_prune_everything(node: Mapping[str, Any]) -> bool:
    """An object node with no fields and no preserve-unknown-fields: the API server keeps nothing."""
    free_form = node.get("type") == "object" and not ({"properties", "additionalProperties"} & node.keys())
    return free_form and node.get("x-kubernetes-preserve-unknown-fields") is not True


# --- fidelity against KubeRay's generated CRD ---------------------------------------------------------


@pytest.mark.parametrize(("kuberay_field", "definition"), sorted(EMBEDDED.items()))
def test_every_kuberay_property_path_is_ours_too(kuberay_field: str, definition: str) -> None:
    theirs = property_paths(kuberay_embedded(kuberay_field))
    ours = property_paths(structural_schema(definition))
    assert len(theirs) > 50, "KubeRay's embedded schema looks truncated"
    assert theirs - ours == KNOWN_MISSING_PATHS.keys() & theirs
    assert KNOWN_MISSING_PATHS.keys() <= theirs - ours, "stale KNOWN_MISSING_PATHS entry"


@pytest.mark.parametrize(("kuberay_field", "definition"), sorted(EMBEDDED.items()))
def test_shared_nodes_validate_like_kuberay(kuberay_field: str, definition: str) -> None:
    differences = keyword_differences(structural_schema(definition), kuberay_embedded(kuberay_field))
    assert sorted(d for d in differences if not explained(*d)) == []


def test_every_known_keyword_difference_still_occurs() -> None:
    differences = set().union(
        *(keyword_differences(structural_schema(d), kuberay_embedded(f)) for f, d in EMBEDDED.items())
    )
    unused = [
        (suffix, keyword)
        for suffix, keyword in KNOWN_KEYWORD_DIFFERENCES
        if not any(path.endswith(suffix) and kw == keyword for path, kw in differences)
    ]
    assert unused == [], "stale KNOWN_KEYWORD_DIFFERENCES entry"


def test_embedded_metadata_matches_controller_gen_field_set() -> None:
    ours = structural_schema(POD_TEMPLATE_SPEC)["properties"]["metadata"]
    theirs = kuberay_embedded("template")["properties"]["metadata"]
    assert set(ours["properties"]) == set(theirs["properties"]) == set(EMBEDDED_META_FIELDS)
    assert ours["type"] == "object"


# --- structural form -----------------------------------------------------------------------------------


@pytest.mark.parametrize("definition", sorted(definition_names()))
def test_rendered_schema_is_structural(definition: str) -> None:
    problems = []
    for path, node in nodes(structural_schema(definition)):
        if {"$ref", "allOf", "oneOf", "not", "description", "nullable"} & node.keys():
            problems.append((path, "forbidden keyword", sorted(node)))
        if "anyOf" in node and not is_int_or_string(node):
            problems.append((path, "anyOf outside int-or-string", node["anyOf"]))
        if "type" not in node and not is_int_or_string(node):
            problems.append((path, "no type", sorted(node)))
        if would_prune_everything(node):
            problems.append((path, "free-form object would be pruned empty", sorted(node)))
    assert problems == []


def test_int_or_string_and_quantity_render_as_controller_gen_does() -> None:
    template = structural_schema(POD_TEMPLATE_SPEC)["properties"]["spec"]["properties"]
    container = template["containers"]["items"]["properties"]
    port = container["readinessProbe"]["properties"]["httpGet"]["properties"]["port"]
    limit = container["resources"]["properties"]["limits"]["additionalProperties"]
    int_or_string = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    assert port == int_or_string
    assert limit == {**int_or_string, "pattern": k8s.QUANTITY_PATTERN}


def test_go_zero_value_defaults_are_dropped_and_marker_defaults_kept() -> None:
    spec = structural_schema(POD_TEMPLATE_SPEC)
    container = spec["properties"]["spec"]["properties"]["containers"]["items"]
    assert "default" not in spec["properties"]["metadata"]
    assert "default" not in container["properties"]["name"]
    assert "default" not in container["properties"]["resources"]
    assert container["properties"]["ports"]["items"]["properties"]["protocol"]["default"] == "TCP"


def test_patch_hints_are_dropped_and_list_semantics_kept() -> None:
    container = structural_schema(POD_TEMPLATE_SPEC)["properties"]["spec"]["properties"]["containers"]
    env = container["items"]["properties"]["env"]
    assert env["x-kubernetes-list-type"] == "map"
    assert env["x-kubernetes-list-map-keys"] == ["name"]
    assert not any(key.startswith("x-kubernetes-patch") for _, node in nodes(container) for key in node)


def test_property_paths_names_lists_and_maps() -> None:
    schema = {
        "type": "object",
        "properties": {
            "env": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
            "byZone": {
                "type": "object",
                "additionalProperties": {"type": "object", "properties": {"weight": {"type": "integer"}}},
            },
        },
    }
    assert property_paths(schema) == {"env", "env[].name", "byZone", "byZone{}.weight"}


# --- validation with the schemas -----------------------------------------------------------------------


def test_realistic_pod_template_validates() -> None:
    jsonschema.Draft7Validator(structural_schema(POD_TEMPLATE_SPEC)).validate(RAY_HEAD_TEMPLATE)


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_pod_template_is_rejected(breakage: str) -> None:
    template = copy.deepcopy(RAY_HEAD_TEMPLATE)
    BREAKAGES[breakage](template)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(structural_schema(POD_TEMPLATE_SPEC)).validate(template)


def test_head_service_validates_and_rejects_a_bad_port() -> None:
    service: dict[str, Any] = {
        "metadata": {"name": "raycluster-head", "labels": {"ray.io/node-type": "head"}},
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "dashboard", "port": 8265, "targetPort": "dashboard"}],
        },
    }
    validator = jsonschema.Draft7Validator(structural_schema(SERVICE))
    validator.validate(service)
    service["spec"]["ports"][0]["port"] = "8265"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(service)


# --- conversion errors ---------------------------------------------------------------------------------


def test_recursive_type_fails_loudly() -> None:
    definitions = {
        "A": {"type": "object", "properties": {"b": {"allOf": [{"$ref": "#/definitions/B"}]}}},
        "B": {"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}},
    }
    with pytest.raises(SchemaError, match=r"recursive Kubernetes type: A -> B -> A"):
        render_definition("A", definitions=definitions)


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        (
            {"A": {"type": "object", "properties": {"x": {"$ref": "#/definitions/Nope"}}}},
            "not in the vendored",
        ),
        (
            {"A": {"type": "object", "properties": {"x": {"oneOf": [{"type": "string"}]}}}},
            "unsupported keyword",
        ),
        ({"A": {"type": "object", "properties": {"x": {"format": "int32"}}}}, "without a type"),
        (
            {
                "A": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["k"],
                }
            },
            "neither required nor defaulted",
        ),
    ],
)
def test_unconvertible_schema_fails_loudly(definitions: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        render_definition("A", definitions=definitions)


def test_unknown_definition_fails_loudly() -> None:
    with pytest.raises(SchemaError, match="not in the vendored"):
        structural_schema("io.k8s.api.core.v1.NoSuchThing")


# --- the vendored data ---------------------------------------------------------------------------------


def test_vendored_file_is_the_pinned_version() -> None:
    files = sorted(path.name for path in (REPO / "kray" / "api" / "k8s").glob("openapi-*.json"))
    assert files == [f"openapi-{KUBERNETES_VERSION}.json"]
    assert openapi_data()["kubernetesVersion"] == KUBERNETES_VERSION
    assert openapi_data()["source"]["module"] == f"k8s.io/kubernetes@{KUBERNETES_VERSION}"
    assert load_refresh_script().pinned_version() == KUBERNETES_VERSION


def test_vendored_file_is_canonical_and_trimmed() -> None:
    script = load_refresh_script()
    path = REPO / "kray" / "api" / "k8s" / f"openapi-{KUBERNETES_VERSION}.json"
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert script.render(data) == text, "not in the refresh script's deterministic rendering"
    assert "description" not in {key for d in data["definitions"].values() for _, n in nodes(d) for key in n}
    roots = tuple(data["source"]["roots"])
    assert set(script.ROOT_DEFINITIONS) == set(roots)
    assert script.closure(data["definitions"], roots=roots) == sorted(data["definitions"])


def test_refresh_script_trims_and_rewrites_references() -> None:
    script = load_refresh_script()
    upstream = {
        "description": "gone",
        "properties": {"spec": {"allOf": [{"$ref": "#/components/schemas/X"}], "description": "gone"}},
        "type": "object",
    }
    assert script.trim(upstream) == {
        "properties": {"spec": {"allOf": [{"$ref": "#/definitions/X"}]}},
        "type": "object",
    }


def test_loading_is_cached_and_results_are_private_copies() -> None:
    assert openapi_data() is openapi_data()
    first = structural_schema(POD_TEMPLATE_SPEC)
    first["properties"].clear()
    assert structural_schema(POD_TEMPLATE_SPEC)["properties"], "a caller's change leaked into the cache"
    hits = openapi_data.cache_info().hits
    structural_schema(SERVICE)
    definition_names()
    assert openapi_data.cache_info().misses == 1
    assert openapi_data.cache_info().hits > hits
