"""Without Ray in kray's environment, `kray job run` and `kray apply` say how to fix it and create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kray.cli.main import app
from kray.local import preflight

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def no_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setattr(preflight, "DEFAULT_BIN_DIR", empty)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("KRAY_HOME", str(tmp_path / "home"))
    return empty


@pytest.mark.parametrize(
    "args", [["job", "run", "-f", str(EXAMPLES / "rayjob.yaml")], ["apply", "-f", str(EXAMPLES / "raycluster.yaml")]]
)
def test_missing_ray_is_refused_before_anything_starts(no_ray: Path, tmp_path: Path, args: list[str]) -> None:
    assert preflight.find_ray() is None
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = " ".join(result.output.split())
    assert f"`ray` was not found in {no_ray} nor on PATH" in message
    assert "pip install 'kray[local]'" in message
    assert not (tmp_path / "home").exists()  # no server started, no state written


def test_ray_is_found_in_krays_environment() -> None:
    found = preflight.find_ray(path="")
    assert found is not None
    assert Path(found).parent == preflight.DEFAULT_BIN_DIR
