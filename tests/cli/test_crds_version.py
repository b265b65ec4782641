"""``kray crds``, ``kray version`` and ``kray --help``.

Why: ``kray crds | kubectl apply --server-side -f -`` installs the API, so the stream must be exactly
the four CRDs, and ``kray crds -o DIR`` must reproduce the committed ``config/crd`` files byte for
byte (otherwise the repo and the binary disagree about the schema). ``kray version`` reports the one
version in ``kray/_version.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from kray._version import __version__
from kray.cli.main import app

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "config" / "crd"
NAMES = {
    "rayclusters.ray.io": ("RayCluster", "rayclusters"),
    "rayjobs.ray.io": ("RayJob", "rayjobs"),
    "rayservices.ray.io": ("RayService", "rayservices"),
    "raycronjobs.ray.io": ("RayCronJob", "raycronjobs"),
}

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader: the pure-Python one needs seconds for 4 CRDs of 10,000 lines each."""

runner = CliRunner()


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def test_crds_prints_four_crds() -> None:
    result = invoke("crds")
    assert result.exit_code == 0
    docs = [d for d in yaml.load_all(result.stdout, Loader=LOADER) if d is not None]
    assert len(docs) == 4
    assert {d["metadata"]["name"] for d in docs} == set(NAMES)
    for doc in docs:
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
        assert doc["kind"] == "CustomResourceDefinition"
        spec = doc["spec"]
        assert spec["group"] == "ray.io"
        assert spec["scope"] == "Namespaced"
        assert (spec["names"]["kind"], spec["names"]["plural"]) == NAMES[doc["metadata"]["name"]]
        assert "v1" in [v["name"] for v in spec["versions"]]


def test_crds_stream_is_the_committed_files_concatenated() -> None:
    printed = invoke("crds").stdout
    files = ["ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml", "ray.io_raycronjobs.yaml"]
    assert printed == "".join((COMMITTED / name).read_text() for name in files)


def test_crds_output_dir_reproduces_config_crd(tmp_path: Path) -> None:
    out = tmp_path / "new" / "crd"
    result = invoke("crds", "-o", str(out))
    assert result.exit_code == 0
    assert result.stdout == ""
    written = sorted(p.name for p in out.iterdir())
    committed = sorted(p.name for p in COMMITTED.glob("*.yaml"))
    assert written == committed
    assert len(written) == 4
    for name in written:
        assert (out / name).read_bytes() == (COMMITTED / name).read_bytes(), f"{name} differs from config/crd"
    assert sorted(result.stderr.splitlines()) == sorted(f"wrote {out / name}" for name in written)


def test_crds_output_dir_overwrites(tmp_path: Path) -> None:
    (tmp_path / "ray.io_rayjobs.yaml").write_text("stale")
    assert invoke("crds", "--output-dir", str(tmp_path)).exit_code == 0
    assert (tmp_path / "ray.io_rayjobs.yaml").read_bytes() == (COMMITTED / "ray.io_rayjobs.yaml").read_bytes()


def test_version() -> None:
    result = invoke("version")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"kray {__version__}"
    assert "ray.io API: v1" in result.stdout


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "Usage: kray" in result.stdout
    for command in ("validate", "crds", "version"):
        assert command in result.stdout


def test_validate_help_documents_the_exit_code() -> None:
    result = runner.invoke(app, ["validate", "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for option in ("--filename", "--feature-gates", "--quiet"):
        assert option in result.stdout
    assert "Exit code 0" in result.stdout
