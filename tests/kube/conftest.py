"""Helpers for the real-Kubernetes smoke tests: the RayCluster resource class and a valid manifest.

Why here and not in the plugin: these encode what the smoke suite sends, not how the plane runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

RAY_IMAGE = "rayproject/ray:2.52.0"


def _pod_template(container: str) -> dict[str, Any]:
    return {
        "spec": {
            "containers": [
                {
                    "name": container,
                    "image": RAY_IMAGE,
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
                }
            ]
        }
    }


def raycluster_manifest(name: str, namespace: str) -> dict[str, Any]:
    """A minimal valid ray.io/v1 RayCluster (one worker group)."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": _pod_template("ray-head")},
            "workerGroupSpecs": [
                {
                    "groupName": "small",
                    "replicas": 1,
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "rayStartParams": {},
                    "template": _pod_template("ray-worker"),
                }
            ],
        },
    }


@pytest.fixture
def raycluster() -> Callable[[str, str], dict[str, Any]]:
    """Factory for a fresh, deep-copied valid RayCluster manifest."""
    return lambda name, namespace: copy.deepcopy(raycluster_manifest(name, namespace))


@pytest.fixture(scope="session")
def RayCluster() -> Any:
    """lightkube generic resource class for ray.io/v1 RayCluster."""
    from lightkube.generic_resource import create_namespaced_resource

    return create_namespaced_resource("ray.io", "v1", "RayCluster", "rayclusters")
