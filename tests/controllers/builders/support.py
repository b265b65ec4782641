"""Shared helpers of the builder tests: loading KubeRay samples as API objects, golden-file comparison."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray.api.manifest import parse_object
from kray.api.v1 import RayCluster, RayJob

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "kuberay-samples"
GOLDEN = Path(__file__).resolve().parent / "golden"
UID = "00000000-0000-4000-8000-000000000001"
NAMESPACE = "default"


def sample_document(name: str) -> dict[str, Any]:
    """The RayCluster/RayJob/RayService document of a KubeRay sample file."""
    for doc in yaml.safe_load_all((SAMPLES / name).read_text()):
        if doc and doc.get("kind") in ("RayCluster", "RayJob", "RayService"):
            return dict(doc)
    raise LookupError(f"no Ray object in {name}")


def with_server_fields(doc: dict[str, Any], *, uid: str = UID, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The object as the API server returns it: with a namespace and a UID."""
    metadata = {**doc.get("metadata", {}), "namespace": namespace, "uid": uid}
    return {**doc, "metadata": metadata}


def sample_cluster(name: str) -> RayCluster:
    obj = parse_object(with_server_fields(sample_document(name)))
    assert isinstance(obj, RayCluster)
    return obj


def sample_rayjob(name: str) -> RayJob:
    obj = parse_object(with_server_fields(sample_document(name)))
    assert isinstance(obj, RayJob)
    return obj


def cluster_from_dict(
    spec: dict[str, Any],
    *,
    name: str = "c",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> RayCluster:
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "uid": UID}
    if annotations:
        metadata["annotations"] = annotations
    if labels:
        metadata["labels"] = labels
    # Models only: controller-side rules (feature gates, Ray versions) are not the builders' concern.
    return RayCluster.model_validate(
        {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": metadata, "spec": spec}
    )


def container(name: str = "ray", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "rayproject/ray:2.52.0", **fields}


def minimal_spec(
    *, head: dict[str, Any] | None = None, workers: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    head_group = {"rayStartParams": {}, "template": {"spec": {"containers": [container("ray-head")]}}}
    spec: dict[str, Any] = {"headGroupSpec": {**head_group, **(head or {})}, **extra}
    if workers is not None:
        spec["workerGroupSpecs"] = workers
    return spec


def worker_group(name: str = "wg", **fields: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "groupName": name,
        "replicas": 1,
        "minReplicas": 0,
        "maxReplicas": 3,
        "rayStartParams": {},
        "template": {"spec": {"containers": [container("ray-worker")]}},
    }
    return {**group, **fields}


def env_map(container_json: dict[str, Any]) -> dict[str, Any]:
    """name → value (or valueFrom) of a container's env, asserting names are unique."""
    env = container_json.get("env") or []
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), names
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


def assert_golden(name: str, actual: Any) -> None:
    """Compare with ``golden/<name>.yaml``; ``KRAY_UPDATE_GOLDEN=1`` rewrites it instead."""
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("KRAY_UPDATE_GOLDEN") == "1":
        path.write_text(yaml.safe_dump(actual, sort_keys=False, allow_unicode=True, width=2**16))
        return
    if not path.exists():
        pytest.fail(f"{path.name} is missing: run with KRAY_UPDATE_GOLDEN=1 and review the new file")
    expected = yaml.safe_load(path.read_text())
    assert actual == expected, f"{path.name} differs; if the change is right, regenerate with KRAY_UPDATE_GOLDEN=1"
