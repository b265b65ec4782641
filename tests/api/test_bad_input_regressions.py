"""Inputs that once made validation raise (found by fuzzing): each must now be a clear FieldError."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kray.api.manifest import validate_bytes
from kray.cli.main import app

HEAD = {"template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray"}]}}}


def cluster(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "c"},
        "spec": {"headGroupSpec": HEAD, **spec},
    }


def job(**spec: Any) -> dict[str, Any]:
    body = {"rayClusterSpec": {"headGroupSpec": HEAD}, **spec}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"}, "spec": body}


def cron(schedule: str) -> dict[str, Any]:
    template = {"rayClusterSpec": {"headGroupSpec": HEAD}, "entrypoint": "true"}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCronJob",
        "metadata": {"name": "c"},
        "spec": {"schedule": schedule, "jobTemplate": template},
    }


def service(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "s", "annotations": annotations},
        "spec": {"rayClusterConfig": {"headGroupSpec": HEAD}},
    }


CASES = [
    pytest.param(job(runtimeEnvYAML="[" * 3000), "spec.runtimeEnvYAML", "nesting is too deep", id="deep-runtime-env"),
    pytest.param(cron("² * * * *"), "spec.schedule", "is not a number", id="cron-superscript-digit"),
    pytest.param(cron("*/² * * * *"), "spec.schedule", "bad step", id="cron-superscript-step"),
    pytest.param(cron("9" * 5000 + " * * * *"), "spec.schedule", "is not a number", id="cron-5000-digits"),
    pytest.param(cron("٣ * * * *"), "spec.schedule", "is not a number", id="cron-arabic-indic-digit"),
    pytest.param(cron("@every abc"), "spec.schedule", "positive Go duration", id="cron-every-bad-duration"),
    pytest.param(cron("0 0 5-1 * *"), "spec.schedule", "starts after it ends", id="cron-reversed-range"),
    pytest.param(
        service(**{"ray.io/initializing-timeout": "9" * 5000}),
        "metadata.annotations[ray.io/initializing-timeout]",
        "invalid format",
        id="timeout-5000-digits",
    ),
    pytest.param(
        cluster(rayVersion="9" * 5000 + ".1", authOptions={"mode": "token"}),
        "spec.rayVersion",
        "is not a valid version",
        id="ray-version-5000-digits",
    ),
]


@pytest.mark.parametrize(("manifest", "path", "message"), CASES)
def test_hostile_values_become_field_errors(manifest: dict[str, Any], path: str, message: str) -> None:
    report = validate_bytes(yaml.safe_dump(manifest).encode(), source="m.yaml")
    (outcome,) = report.outcomes
    assert [e.path for e in outcome.errors] == [path]
    assert message in outcome.errors[0].message
    assert len(outcome.errors[0].message) < 300, "user values are shortened in messages"


def test_duplicate_keys_are_refused_with_the_line() -> None:
    report = validate_bytes(b"apiVersion: ray.io/v1\nkind: RayJob\nkind: RayCluster\n", source="d.yaml")
    assert [str(e) for e in report.outcomes[0].errors] == ["invalid YAML at line 3, column 1: duplicate key 'kind'"]


def test_unreadable_path_is_a_clear_cli_error() -> None:
    result = CliRunner().invoke(app, ["validate", "-f", "/proc/self/mem"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: /proc/self/mem: cannot read: Input/output error"
    assert "Traceback" not in result.output
