"""The operator image installs kray without Ray, runs as non-root, and its entry point works.

There is no Docker engine here, so the Dockerfile is checked for what matters and its install step is
reproduced: the wheel ``pip install .`` builds, installed into a fresh venv with its dependencies
from the package index -- ``kray operator --help`` must work there and ``ray`` must not be importable.
"""

from __future__ import annotations

import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.install.support import REPO

DOCKERFILE = REPO / "Dockerfile.operator"


def test_dockerfile_builds_a_non_root_operator_image_without_extras() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    installs = re.findall(r"pip install ([^&\n]+)", text)
    assert installs == [". "], f"the image installs exactly `.` (no extras such as [local]): {installs}"
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user, "no USER line"
    assert not user[-1].startswith(("0", "root")), user
    assert text.rstrip().endswith('ENTRYPOINT ["kray", "operator"]')
    chart_uid = 10001  # charts/kray-operator/values.yaml podSecurityContext.runAsUser
    assert f"USER {chart_uid}:{chart_uid}" in text
    assert f"runAsUser: {chart_uid}" in (REPO / "charts" / "kray-operator" / "values.yaml").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-w", str(out), "-q"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (path,) = out.glob("kray-*.whl")
    return path


def test_wheel_requires_ray_only_in_the_local_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    requires = [
        line.split(":", 1)[1].strip().replace("'", '"')
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    ray = [r for r in requires if re.match(r"ray\b", r)]
    assert ray, "the local extra should still name ray"
    assert all('extra == "local"' in r for r in ray), ray
    base = [r for r in requires if "extra ==" not in r]
    assert "lightkube" in " ".join(base)
    assert not [r for r in base if re.match(r"ray\b", r)]


@pytest.mark.slow
@pytest.mark.timeout(1020)
def test_operator_runs_from_a_fresh_venv_without_ray(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=540,
        check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    kray = env_dir / "bin" / "kray"
    helped = subprocess.run([str(kray), "operator", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0, helped.stderr
    assert "--watch-namespace" in helped.stdout
    no_ray = subprocess.run([str(python), "-c", "import ray"], capture_output=True, text=True, timeout=60, check=False)
    assert no_ray.returncode != 0
    assert "No module named 'ray'" in no_ray.stderr
