"""Loading a manifest and dumping it back loses nothing, for every shape our CRD schema admits.

Manifests are generated from the published CRD schema itself, so the models, the schema and the
checker are held to each other: anything the schema admits, the checker accepts and the model
loads and dumps back unchanged (pod templates included, every field kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kray.api.crd import crd
from kray.api.structural import check, with_defaults
from kray.api.v1 import KINDS
from tests.api.schema_strategies import from_schema

KIND_NAMES = list(KINDS)


def manifest_strategy(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    openapi = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just("ray.io/v1"),
            "kind": st.just(kind),
            "metadata": st.fixed_dictionaries({"name": st.just("sample")}),
            "spec": from_schema(openapi["properties"]["spec"], max_depth=7),
        },
        optional={"status": from_schema(openapi["properties"]["status"], max_depth=5)},
    )


@pytest.mark.parametrize("kind", KIND_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_schema_valid_manifest_loads_and_dumps_back_unchanged(kind: str, data: st.DataObject) -> None:
    manifest = data.draw(manifest_strategy(kind))
    openapi = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert check(manifest, openapi) == []
    obj = KINDS[kind].model_validate(manifest)
    assert obj.to_dict() == manifest


def test_a_pod_template_keeps_fields_the_models_do_not_name() -> None:
    manifest = yaml.safe_load(
        """
        apiVersion: ray.io/v1
        kind: RayCluster
        metadata: {name: keep, labels: {team: a}, annotations: {note: b}}
        spec:
          headGroupSpec:
            rayStartParams: {}
            template:
              metadata: {labels: {x: y}}
              spec:
                priorityClassName: high
                topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]
                containers:
                - name: ray-head
                  image: rayproject/ray:2.60.0
                  lifecycle: {preStop: {exec: {command: [ray, stop]}}}
                  startupProbe: {httpGet: {path: /, port: 8265}, failureThreshold: 30}
        """
    )
    assert KINDS["RayCluster"].model_validate(manifest).to_dict() == manifest


SAMPLES = sorted((Path(__file__).resolve().parents[3] / "shared" / "kuberay-samples").glob("*.yaml"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_kuberay_sample_round_trips_and_validates_under_our_crd_with_jsonschema(path: Path) -> None:
    """A second, independent validator (jsonschema) agrees that our CRD schema admits the corpus."""
    ray_docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("apiVersion") == "ray.io/v1"]
    for doc in ray_docs:
        openapi = crd(doc["kind"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        jsonschema.Draft4Validator(openapi).validate(with_defaults(doc, openapi))
        assert KINDS[doc["kind"]].model_validate(doc).to_dict() == doc


def test_the_corpus_is_present() -> None:
    documents = [d for p in SAMPLES for d in yaml.safe_load_all(p.read_text()) if d]
    assert len(SAMPLES) == 85  # plus the LICENSE file
    assert sum(d.get("apiVersion") == "ray.io/v1" for d in documents) == 82
