"""The CRDs committed under config/crd/ are exactly what the models generate: stale files fail here.

Regenerate with ``kray crds -o config/crd``.
"""

from __future__ import annotations

import pytest
import yaml

from kray.api.crd import ALL_KINDS, crd, crd_filename, render_all, render_crd
from tests.api.conftest import REPO

KINDS = [model.model_fields["kind"].default for model in ALL_KINDS]


@pytest.mark.parametrize("kind", KINDS)
def test_committed_crd_is_fresh(kind: str) -> None:
    committed = REPO / "config" / "crd" / crd_filename(kind)
    assert committed.read_text() == render_crd(kind), "stale CRD: run `kray crds -o config/crd`"


@pytest.mark.parametrize("kind", KINDS)
def test_crd_schema_is_structural(kind: str) -> None:
    """No $ref, no title, no nullable anyOf; every node typed unless it is int-or-string or opaque."""
    text = render_crd(kind)
    assert "$ref" not in text
    assert "title:" not in text
    assert "description:" not in text

    def walk(node: dict[str, object], path: str) -> None:
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
        for name, sub in (node.get("properties") or {}).items():  # type: ignore[attr-defined]
            walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[{key}]")  # type: ignore[arg-type]

    for version in crd(kind)["spec"]["versions"]:
        walk(version["schema"]["openAPIV3Schema"], version["name"])


def test_render_all_is_the_four_crds_in_one_stream() -> None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    names = [d["metadata"]["name"] for d in yaml.load_all(render_all(), Loader=loader) if d]
    assert names == ["rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io", "raycronjobs.ray.io"]


def test_defaults_match_kuberay_conformance_item_1() -> None:
    cluster = crd("RayCluster")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    group = cluster["properties"]["spec"]["properties"]["workerGroupSpecs"]["items"]["properties"]
    assert {k: group[k]["default"] for k in ("replicas", "minReplicas", "maxReplicas", "numOfHosts")} == {
        "replicas": 0,
        "minReplicas": 0,
        "maxReplicas": 2147483647,
        "numOfHosts": 1,
    }
    job = crd("RayJob")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert job["spec"]["properties"]["submissionMode"]["default"] == "K8sJobMode"
    assert job["spec"]["properties"]["backoffLimit"]["default"] == 0
    assert job["spec"]["properties"]["ttlSecondsAfterFinished"]["default"] == 0
    assert job["status"]["properties"]["succeeded"]["default"] == 0
    assert job["status"]["properties"]["failed"]["default"] == 0
