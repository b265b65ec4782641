"""Our generated CRDs against KubeRay's (read from ../shared, never copied): same names, columns,
subresources, and every property path KubeRay's schema has, ours has too.

Deliberate differences are listed here, each with its reason; a listed difference that no longer
occurs fails the test, so the list stays true.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml

from kray.api.crd import crd, crd_filename
from kray.api.k8s.schema import property_paths
from tests.api.conftest import KUBERAY_CRDS

KINDS = ["RayCluster", "RayJob", "RayService", "RayCronJob"]

MISSING_PATHS: dict[str, str] = {}
"""Paths KubeRay's v1 schemas have and ours lack. None."""

DIFFERENT_VERSION_SCHEMAS = (
    "KubeRay serves v1alpha1 with an older subset schema; kray serves v1alpha1 with the v1 schema "
    "(a superset), since the CRDs have no conversion webhook and the API server only rewrites apiVersion."
)


@cache
def kuberay(kind: str) -> dict[str, Any]:
    path = KUBERAY_CRDS / crd_filename(kind)
    assert path.is_file(), f"KubeRay's CRD must be at {path}"
    document: dict[str, Any] = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return document


def version(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (v for v in document["spec"]["versions"] if v["name"] == name)
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_names_scope_and_categories_match(kind: str) -> None:
    ours, theirs = crd(kind), kuberay(kind)
    assert ours["metadata"]["name"] == theirs["metadata"]["name"]
    assert ours["spec"]["names"] == theirs["spec"]["names"]
    assert ours["spec"]["scope"] == theirs["spec"]["scope"] == "Namespaced"
    assert ours["spec"]["group"] == "ray.io"


@pytest.mark.parametrize("kind", KINDS)
def test_versions_served_stored_columns_and_status_subresource_match(kind: str) -> None:
    ours, theirs = crd(kind), kuberay(kind)
    assert [v["name"] for v in ours["spec"]["versions"]] == [v["name"] for v in theirs["spec"]["versions"]]
    for mine in ours["spec"]["versions"]:
        other = version(theirs, mine["name"])
        assert (mine["served"], mine["storage"]) == (other["served"], other["storage"])
        assert mine["subresources"] == other["subresources"] == {"status": {}}
        assert mine.get("additionalPrinterColumns") == other.get("additionalPrinterColumns")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kuberay_property_path_exists_in_ours(kind: str) -> None:
    ours = property_paths(version(crd(kind), "v1")["schema"]["openAPIV3Schema"])
    theirs = property_paths(version(kuberay(kind), "v1")["schema"]["openAPIV3Schema"])
    missing = sorted(theirs - ours - set(MISSING_PATHS))
    assert not missing, f"{len(missing)} KubeRay paths missing, e.g. {missing[:10]}"


V1ALPHA1_ONLY_STATUS = "status.*.healthLastUpdateTime was dropped from RayService v1; kray writes v1 status only."


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob", "RayService"])
def test_v1alpha1_is_served_with_a_superset_of_kuberays_schema(kind: str) -> None:
    ours = property_paths(version(crd(kind), "v1alpha1")["schema"]["openAPIV3Schema"])
    theirs = property_paths(version(kuberay(kind), "v1alpha1")["schema"]["openAPIV3Schema"])
    missing = theirs - ours
    assert {path.rpartition(".")[2] for path in missing} <= {"healthLastUpdateTime"}, DIFFERENT_VERSION_SCHEMAS


def _nodes(schema: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    """Every schema node by property path, descriptions dropped."""
    out = {path: schema}
    for name, sub in schema.get("properties", {}).items():
        out.update(_nodes(sub, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        out.update(_nodes(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        out.update(_nodes(schema["additionalProperties"], f"{path}{{}}"))
    return out


KEYWORDS = (
    "type",
    "format",
    "default",
    "enum",
    "minimum",
    "minItems",
    "minLength",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
    "nullable",
)

ADDED_ENUMS = {
    ".submissionMode": "KubeRay leaves submissionMode free-form and fails later; kray refuses an unknown mode.",
    ".status.jobStatus": "status enums are typed in kray (written by controllers only)",
    ".status.jobDeploymentStatus": "status enums are typed in kray (written by controllers only)",
    ".status.reason": "status enums are typed in kray (written by controllers only)",
}


@pytest.mark.parametrize("kind", KINDS)
def test_ray_io_fields_carry_kuberays_types_defaults_enums_and_rules(kind: str) -> None:
    """Outside the embedded Kubernetes types, each node matches KubeRay's keyword for keyword."""
    ours = _nodes(version(crd(kind), "v1")["schema"]["openAPIV3Schema"])
    theirs = _nodes(version(kuberay(kind), "v1")["schema"]["openAPIV3Schema"])
    embedded = (
        "template",
        "headService",
        "serveService",
        "submitterPodTemplate",
        "resources",
        "securityContext",
        "env",
        "envFrom",
        "volumeMounts",
        "ingressRules",
        "egressRules",
        "tls",
        "valueFrom",
        "conditions",
    )
    compared = 0
    for path, their_node in theirs.items():
        if any(f".{name}" in path for name in embedded) or path == ".metadata":
            continue
        mine = ours[path]
        for keyword in KEYWORDS:
            if keyword == "enum" and mine.get("enum") and not their_node.get("enum"):
                assert any(path.endswith(p) for p in ADDED_ENUMS), f"{path}: enum added without a reason"
                continue
            assert mine.get(keyword) == their_node.get(keyword), f"{path}: {keyword}"
        compared += 1
    assert compared > 50
