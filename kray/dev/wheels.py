"""Prebuilt wheels for the ``pip`` runtime envs of the tests' Ray jobs, offered to pip through ``PIP_FIND_LINKS``.

Why: Ray installs a job's ``pip`` runtime env with ``--no-cache-dir``, so a requirement that PyPI serves only as a
source distribution for this Python is compiled again on every node of every job. KubeRay's RayJob samples pin
``pendulum==2.1.2`` (C extensions, no wheel for CPython 3.11): ~20 s of CPU per install, a dozen installs per suite
run on two cores. Built once per machine into a cache keyed by the interpreter (beside the Go binaries' cache) and
found by pip through ``PIP_FIND_LINKS``, which Ray's pip inherits from the node's environment, the jobs install
exactly the versions they ask for — every other requirement still comes from the index — without the compile.

A wheel lands in the cache by an atomic rename, so concurrent test sessions never see half a file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kray.dev.binaries import cache_root

__all__ = ["WheelBuildError", "wheelhouse", "wheelhouse_dir"]


class WheelBuildError(RuntimeError):
    """``pip wheel`` failed; the message carries the requirement and pip's last lines."""


def wheelhouse_dir() -> Path:
    """``~/.cache/kray/wheels/cp311-linux_x86_64`` (the interpreter's tag: a wheel built here fits only it)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}-{sys.platform}-{os.uname().machine}"
    return cache_root().parent / "wheels" / tag


def _stem(requirement: str) -> str:
    """``pendulum==2.1.2`` -> ``pendulum-2.1.2-``: how a wheel of exactly that version is named (PEP 427)."""
    name, sep, version = requirement.partition("==")
    if not sep or not version or any(c in version for c in "<>=!~*,; "):
        raise ValueError(f"{requirement!r}: give an exact pin (name==version)")
    return f"{re.sub(r'[-_.]+', '_', name.strip()).lower()}-{version.strip()}-"


def _has(where: Path, requirement: str) -> bool:
    stem = _stem(requirement)
    return where.is_dir() and any(p.name.lower().startswith(stem) for p in where.glob("*.whl"))


def wheelhouse(requirements: Sequence[str], *, where: Path | None = None, timeout: float = 300.0) -> Path:
    """The directory holding a wheel of every pinned requirement, building the missing ones (no dependencies:
    those are pip's business at install time). Raises :class:`WheelBuildError` naming what failed."""
    where = where or wheelhouse_dir()
    missing = [r for r in requirements if not _has(where, r)]
    if not missing:
        return where
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=where.parent, prefix=".build-") as scratch:
        for requirement in missing:
            command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check"]
            try:
                done = subprocess.run(
                    [*command, "--wheel-dir", scratch, requirement],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                raise WheelBuildError(f"pip wheel {requirement}: not done after {timeout:.0f}s") from None
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
                raise WheelBuildError(f"pip wheel {requirement} exited {done.returncode}:\n{tail}")
        for built in Path(scratch).glob("*.whl"):
            os.replace(built, where / built.name)
    still = [r for r in missing if not _has(where, r)]
    if still:
        raise WheelBuildError(f"pip wheel made no wheel named for {still} in {where}")
    return where
