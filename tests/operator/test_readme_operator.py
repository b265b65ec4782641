"""The README's operator walk-through runs as written (bash, against a private detached dev plane)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(540)]
ROOT = Path(__file__).resolve().parents[2]


def readme_block() -> str:
    found = re.search(r"<!-- readme:operator -->\s*```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert found, "README.md lacks the <!-- readme:operator --> bash block"
    return found.group(1)


def test_the_readme_operator_walkthrough_works(k8s_binaries: object, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "XDG_STATE_HOME": str(tmp_path / "state"),  # a plane of its own, never a developer's
    }
    script = "set -euo pipefail\ncd " + str(ROOT) + "\n" + readme_block()
    try:
        done = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=360, cwd=tmp_path, check=False
        )
    finally:  # a failed walk-through must not leave its control plane running
        subprocess.run(["bash", "-c", "kray dev k8s down"], env=env, capture_output=True, timeout=60, check=False)
    log = (ROOT / "operator.log").read_text() if (ROOT / "operator.log").exists() else ""
    (ROOT / "operator.log").unlink(missing_ok=True)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\noperator log:\n{log[-3000:]}"
    assert "condition met" in done.stdout
    assert done.stdout.count("raycluster-sample-") >= 2, done.stdout  # head and worker pods listed
