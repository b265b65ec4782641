"""Is Ray there? Local pods run the ``ray`` of kray's own Python environment, so say so before starting.

KubeRay's pods find ``ray`` in their image; local pods find it first in the directory of kray's Python
(``RunnerSettings.bin_dir``), then on ``PATH``. Without it every Ray container exits 127 ("command not
found"); asking first turns that into one clear message before anything is created.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DEFAULT_BIN_DIR = Path(sys.executable).parent


def pod_path(bin_dir: Path, path: str | None) -> str:
    """The ``PATH`` a pod's processes get: kray's environment first, then the given one."""
    return f"{bin_dir}{os.pathsep}{path}" if path else str(bin_dir)


def find_ray(*, bin_dir: Path | None = None, path: str | None = None) -> str | None:
    """The ``ray`` executable a local pod would run, or None."""
    search = pod_path(bin_dir or DEFAULT_BIN_DIR, os.environ.get("PATH") if path is None else path)
    return shutil.which("ray", path=search)


def missing_ray_message(*, bin_dir: Path | None = None) -> str:
    bin_dir = bin_dir or DEFAULT_BIN_DIR
    return (
        f"`ray` was not found in {bin_dir} nor on PATH: local mode runs the Ray of kray's Python environment "
        f"({sys.executable}); install it there with: pip install 'kray[local]' (or 'ray[default]')"
    )
