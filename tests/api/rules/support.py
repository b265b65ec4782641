"""Helpers shared by the rule tests: change a valid manifest at field paths, validate, compare errors."""

from __future__ import annotations

import copy
import re
from typing import Any

from kray.api.errors import FieldError
from kray.api.manifest import Document, validate_document
from kray.api.rules import FeatureGates


def container(name: str) -> dict[str, Any]:
    return {"name": name, "image": "rayproject/ray:2.52.0"}


def cluster_spec() -> dict[str, Any]:
    """A valid RayClusterSpec (head + one worker group), as RayJob, RayService and RayCronJob embed it."""
    return {
        "rayVersion": "2.52.0",
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container("ray-head")]}}},
        "workerGroupSpecs": [
            {
                "groupName": "small",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 3,
                "rayStartParams": {},
                "template": {"spec": {"containers": [container("ray-worker")]}},
            }
        ],
    }


DELETE = object()
"""A change value that removes the field instead of setting it."""

_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def _segments(path: str) -> list[str | int]:
    """``a.b[0].c[ray.io/x]`` -> ["a", "b", 0, "c", "ray.io/x"] (the FieldError path syntax)."""
    parts: list[str | int] = []
    for plain, bracket in _SEGMENT.findall(path):
        parts.append(plain if plain else (int(bracket) if bracket.isdigit() else bracket))
    return parts


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with each path set to its value (or removed, for DELETE)."""
    manifest = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, last = _segments(path)
        node: Any = manifest
        for key, following in zip(parents, [*parents[1:], last], strict=True):
            if isinstance(node, list):
                node = node[key]  # type: ignore[index]
                continue
            if key not in node:
                node[key] = [] if isinstance(following, int) else {}
            node = node[key]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[last] = copy.deepcopy(value)
    return manifest


def errors_of(manifest: dict[str, Any], gates: FeatureGates | None = None) -> tuple[FieldError, ...]:
    outcome = validate_document(Document("test.yaml", 0, manifest), gates=gates)
    assert outcome.skipped is None
    return outcome.errors


def assert_errors(errors: tuple[FieldError, ...], expected: list[tuple[str, str, str]]) -> None:
    """Exactly the expected errors (path, rule, message fragment), in any order."""
    rendered = [f"{e.path} [{e.rule}]: {e.message}" for e in errors]
    assert len(errors) == len(expected), rendered
    remaining = list(errors)
    for path, rule, fragment in expected:
        match = next((e for e in remaining if e.path == path and e.rule == rule and fragment in e.message), None)
        assert match is not None, f"no error {path} [{rule}] containing {fragment!r} in {rendered}"
        remaining.remove(match)
