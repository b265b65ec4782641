"""`kray apply` and `kray job run` refuse what this machine cannot run before anything is created (issue 8).

Why: a TPU or GPU sample used to start a cluster whose pods could never get their devices. The refusal names
the field with the numbers, exits 1, and leaves local mode untouched: no server started, no state written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from kray.cli.fit import refuse_unfit
from kray.cli.main import app
from kray.local.paths import LocalPaths
from kray.local.server.client import HttpStore
from kray.local.server.launcher import ensure_server, stop_server
from kray.store import CONFIGMAP

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "kuberay-samples"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KRAY_HOME", str(home))
    return home


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["apply", "-f", str(SAMPLES / "ray-cluster.tpu-v4-singlehost.yaml")],
            "error: {file}: RayCluster/raycluster-tpu-v4-singlehost: "
            "spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits[google.com/tpu]: requests 4, "
            "this machine has",
        ),
        (
            ["job", "run", "-f", str(SAMPLES / "ray-job.batch-inference.yaml")],
            "error: {file}: RayJob/rayjob-sample: "
            "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].resources.limits[nvidia.com/gpu]: "
            "requests 4, this machine has",
        ),
        (
            ["apply", "-f", str(SAMPLES / "ray-cronjob.sample.yaml")],
            "error: {file}: RayCronJob/raycronjob-sample: kind: "
            "local mode runs RayCluster, RayJob and RayService objects",
        ),
    ],
    ids=["apply-tpu", "job-run-gpu", "apply-raycronjob-alone"],
)
def test_a_sample_needing_devices_is_refused_and_nothing_is_created(home: Path, args: list[str], line: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert line.format(file=args[-1]) in one_line(result.output)
    assert "nothing was created" in result.output
    assert not home.exists()  # no server started, nothing stored


def test_notes_are_printed_and_do_not_stop_the_command(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "c", "namespace": "default", "labels": {"kueue.x-k8s.io/queue-name": "q"}},
        "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray"}]}}}},
    }
    refuse_unfit([cluster], source="c.yaml")
    assert "note: c.yaml: RayCluster/c: metadata.labels[kueue.x-k8s.io/queue-name]: " in capsys.readouterr().err
    assert not home.exists()


def test_a_configmap_local_mode_already_stores_is_found(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cluster(configmap: str) -> dict[str, object]:
        volume = {"name": "code", "configMap": {"name": configmap}}
        pod = {"containers": [{"name": "ray"}], "volumes": [volume]}
        return {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {"headGroupSpec": {"template": {"spec": pod}}},
        }

    paths = LocalPaths.default()
    info = ensure_server(paths)
    try:

        async def store_configmap() -> None:
            store = HttpStore(base_url=info.url, token=info.token)
            try:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code", "namespace": "default"}}
                await store.create(CONFIGMAP, body)
            finally:
                await store.close()

        asyncio.run(store_configmap())
        refuse_unfit([cluster("code")], source="c.yaml")
        with pytest.raises(typer.Exit) as exited:
            refuse_unfit([cluster("other")], source="c.yaml")
        assert exited.value.exit_code == 1
        assert (
            "error: c.yaml: RayCluster/c: spec.headGroupSpec.template.spec.volumes[0].configMap.name: "
            'configmap "other" is neither in the file nor in namespace default' in capsys.readouterr().err
        )
    finally:
        stop_server(paths)
