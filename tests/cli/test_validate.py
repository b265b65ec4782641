"""``kray validate``: what a user sees, byte for byte, and the exit codes scripts rely on.

Why: ``kray validate`` is used in CI pipelines (``kray validate -f k8s/ || exit``) and by people
reading its output. Valid documents go to stdout as ``file: Kind/name: valid``; every problem goes
to stderr as ``file: Kind/name: field.path: message``; the exit code is 0 only when every ray.io
document is valid, and 2 otherwise (including for a missing file or a bad ``--feature-gates``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kray.cli.main import app

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "kuberay-samples"
NETWORK_POLICY_SAMPLE = SAMPLES / "ray-cluster.network-policy-deny-all.yaml"

runner = CliRunner()


def _container(name: str) -> dict[str, Any]:
    return {"name": name, "image": "rayproject/ray:2.52.0"}


def raycluster(name: str = "demo", *, min_replicas: int = 1, max_replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "rayVersion": "2.52.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [_container("ray-head")]}}},
            "workerGroupSpecs": [
                {
                    "groupName": "small",
                    "minReplicas": min_replicas,
                    "maxReplicas": max_replicas,
                    "template": {"spec": {"containers": [_container("ray-worker")]}},
                }
            ],
        },
    }


def rayjob(name: str = "job", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name},
        "spec": {"entrypoint": "python -c 'print(1)'", "clusterSelector": {"ray.io/cluster": "demo"}, **spec},
    }


CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code"}, "data": {"a.py": "print(1)"}}


def write(path: Path, *docs: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def invoke(*args: str, stdin: bytes | str | None = None) -> Any:
    result = runner.invoke(app, list(args), input=stdin)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path / "cluster.yaml", raycluster())
    result = invoke("validate", "-f", str(path))
    assert result.exit_code == 0
    assert result.stdout == f"{path}: RayCluster/demo: valid\n"
    assert result.stderr == "1 valid, 0 invalid\n"


def test_invalid_file_lists_every_error_on_stderr(tmp_path: Path) -> None:
    bad = raycluster("x" * 60, min_replicas=5, max_replicas=2)
    bad["spec"]["headGroupSpec"]["rayStartParams"] = {"labels": "a=b"}
    path = write(tmp_path / "bad.yaml", bad)
    result = invoke("validate", "-f", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    where = f"{path}: RayCluster/{'x' * 60}"
    assert result.stderr == (
        f"{where}: metadata.name: RayCluster name should be no more than 53 characters\n"
        f"{where}: spec.headGroupSpec.rayStartParams[labels]: rayStartParams['labels'] is not supported for Head "
        "group; use the labels field instead\n"
        f"{where}: spec.workerGroupSpecs[0].minReplicas: 5 is greater than maxReplicas 2\n"
        "0 valid, 1 invalid\n"
    )


def test_schema_error_is_rendered_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raycluster()).replace("workerGroupSpecs", "workerGroupSpec"))
    result = invoke("validate", "-f", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f'{path}: RayCluster/demo: spec.workerGroupSpec: unknown field "workerGroupSpec" '
        '(did you mean "workerGroupSpecs"?)'
    )


def test_directory_is_walked_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b-cluster.yml", raycluster("beta"))
    write(tmp_path / "a-cluster.yaml", raycluster("alpha"))
    (tmp_path / "c-job.json").write_text(json.dumps(rayjob("gamma")))
    write(tmp_path / "sub" / "d-job.yaml", rayjob("delta", activeDeadlineSeconds=0))
    (tmp_path / "notes.txt").write_text("not: [a manifest")
    (tmp_path / "README.md").write_text("# docs\n")
    result = invoke("validate", "-f", str(tmp_path))
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"{tmp_path / 'a-cluster.yaml'}: RayCluster/alpha: valid",
        f"{tmp_path / 'b-cluster.yml'}: RayCluster/beta: valid",
        f"{tmp_path / 'c-job.json'}: RayJob/gamma: valid",
    ]
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'sub' / 'd-job.yaml'}: RayJob/delta: spec.activeDeadlineSeconds: must be a positive integer",
        "3 valid, 1 invalid",
    ]


def test_directory_without_manifests(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = invoke("validate", "-f", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path}: no .yaml, .yml or .json files in this directory\n"


def test_stdin(tmp_path: Path) -> None:
    result = invoke("validate", "-f", "-", stdin=yaml.safe_dump(rayjob()))
    assert result.exit_code == 0
    assert result.stdout == "<stdin>: RayJob/job: valid\n"


def test_invalid_stdin() -> None:
    result = invoke("validate", "-f", "-", stdin=yaml.safe_dump(rayjob(backoffLimit=3)))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "<stdin>: RayJob/job: spec.backoffLimit: is incompatible with clusterSelector mode",
        "0 valid, 1 invalid",
    ]


def test_binary_stdin() -> None:
    result = invoke("validate", "-f", "-", stdin=b"\x89PNG\x00\x00")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "<stdin>: binary file, not YAML"


def test_multi_document_file(tmp_path: Path) -> None:
    path = write(tmp_path / "all.yaml", raycluster(), CONFIGMAP, rayjob(suspend=True))
    result = invoke("validate", "-f", str(path))
    assert result.exit_code == 2
    assert result.stdout == f"{path}: RayCluster/demo: valid\n"
    assert result.stderr.splitlines() == [
        f"{path}: ConfigMap/code: skipped: not a ray.io resource (v1 ConfigMap); not validated by kray",
        f"{path}: RayJob/job: spec.suspend: a RayJob with shutdownAfterJobFinishes false cannot be suspended",
        f"{path}: RayJob/job: spec.suspend: clusterSelector mode does not support suspend",
        "1 valid, 1 invalid, 1 skipped",
    ]


def test_only_foreign_documents_is_not_a_failure(tmp_path: Path) -> None:
    path = write(tmp_path / "cm.yaml", CONFIGMAP)
    result = invoke("validate", "-f", str(path))
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1] == "0 valid, 0 invalid, 1 skipped"


def test_several_files_and_quiet(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", raycluster())
    bad = write(tmp_path / "bad.yaml", raycluster(min_replicas=4, max_replicas=1))
    result = invoke("validate", "-q", "-f", str(good), "-f", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (
        result.stderr
        == f"{bad}: RayCluster/demo: spec.workerGroupSpecs[0].minReplicas: 4 is greater than maxReplicas 1\n"
    )
    quiet_ok = invoke("validate", "--quiet", "-f", str(good))
    assert (quiet_ok.exit_code, quiet_ok.stdout, quiet_ok.stderr) == (0, "", "")


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = invoke("validate", "-f", str(missing))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {missing}: no such file or directory\n"


def test_missing_filename_option() -> None:
    result = invoke("validate")
    assert result.exit_code == 2
    assert "--filename" in result.stderr


@pytest.mark.parametrize(
    ("flag", "expected_exit", "stream", "expected"),
    [
        pytest.param(
            None,
            2,
            "stderr",
            "spec.networkPolicy: requires the RayClusterNetworkPolicy feature gate",
            id="default-gates",
        ),
        pytest.param(
            "RayClusterNetworkPolicy=false", 2, "stderr", "RayClusterNetworkPolicy feature gate", id="gate-off"
        ),
        pytest.param(
            "RayClusterNetworkPolicy=true", 0, "stdout", "RayCluster/raycluster-deny-all: valid", id="gate-on"
        ),
        pytest.param(" RayClusterNetworkPolicy=TRUE , RayClusterMTLS=true", 0, "stdout", ": valid", id="gate-list"),
    ],
)
def test_feature_gates_decide_gated_fields(flag: str | None, expected_exit: int, stream: str, expected: str) -> None:
    args = ["validate", "-f", str(NETWORK_POLICY_SAMPLE)]
    if flag is not None:
        args += ["--feature-gates", flag]
    result = invoke(*args)
    assert result.exit_code == expected_exit
    assert expected in getattr(result, stream)
    assert f"{NETWORK_POLICY_SAMPLE}: RayCluster/raycluster-deny-all" in getattr(result, stream)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        pytest.param(
            "Bogus=true", "error: --feature-gates: unknown feature gate(s): Bogus; known: ", id="unknown-gate"
        ),
        pytest.param(
            "RayClusterMTLS", 'feature gate "RayClusterMTLS": expected Name=true or Name=false', id="no-value"
        ),
        pytest.param("RayClusterMTLS=yes", 'feature gate "RayClusterMTLS=yes": expected Name=true', id="bad-value"),
    ],
)
def test_bad_feature_gates(tmp_path: Path, flag: str, message: str) -> None:
    path = write(tmp_path / "cluster.yaml", raycluster())
    result = invoke("validate", "-f", str(path), "--feature-gates", flag)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
