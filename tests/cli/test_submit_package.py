"""`kray job submit --working-dir`: the uploaded package is deterministic and named as Ray names it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from kray._ray.dashboard_protocol import build_upload_package_request
from kray.cli.submit import package_uri, zip_dir


def test_zip_is_deterministic_and_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "data.txt").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    first, second = zip_dir(tmp_path), zip_dir(tmp_path)
    assert first == second
    assert zipfile.ZipFile(io.BytesIO(first)).namelist() == ["main.py", "pkg/data.txt"]
    assert package_uri(first).startswith("gcs://_ray_pkg_")
    assert package_uri(first).endswith(".zip")


def test_upload_request_targets_rays_package_endpoint() -> None:
    request = build_upload_package_request("gcs://_ray_pkg_0123abcd.zip", b"zip")
    assert (request.method, request.path, request.content) == ("PUT", "/api/packages/gcs/_ray_pkg_0123abcd.zip", b"zip")
    with pytest.raises(ValueError, match="not a Ray GCS package URI"):
        build_upload_package_request("gcs://../../etc/passwd", b"")
