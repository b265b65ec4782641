"""Traefik, the e2e tests' Gateway API implementation, is a build target like the control plane's binaries: built
once at its pinned version, then found in the cache without calling ``go`` again.

Why: ``scripts/test`` builds every target before pytest starts (``ensure_binaries``), and the e2e incremental
upgrade test runs the cached binary as a pod; a target that rebuilt on every run would cost ~15 CPU-minutes, and
one that ``--check`` ignored would let a fresh machine reach the test without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kray.dev.binaries import TRAEFIK, Binaries, BuildError, build_script


def _pinned() -> str:
    for line in (build_script().parent / "versions.env").read_text().splitlines():
        if line.startswith("TRAEFIK_VERSION="):
            return line.partition("=")[2].strip()
    raise AssertionError("hack/k8s/versions.env pins no TRAEFIK_VERSION")


def test_the_built_traefik_runs_at_the_pinned_version(k8s_binaries: Binaries) -> None:
    done = subprocess.run(
        [str(k8s_binaries.peer(TRAEFIK)), "version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"traefik version exited {done.returncode}: {done.stderr}"
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert fields.get("Version", "").strip() == _pinned(), done.stdout


def test_a_cached_traefik_is_not_rebuilt(k8s_binaries: Binaries, tmp_path: Path) -> None:
    """``build.sh traefik`` on a warm cache answers from its stamp: a ``go`` that fails if called stays uncalled."""
    k8s_binaries.peer(TRAEFIK)  # built by scripts/test before pytest
    fake = tmp_path / "bin"
    fake.mkdir()
    called = tmp_path / "go-called"
    (fake / "go").write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    (fake / "go").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    t0 = time.monotonic()
    done = subprocess.run(
        ["bash", str(build_script()), "traefik"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    took = time.monotonic() - t0
    assert done.returncode == 0, f"build.sh traefik exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert f"traefik {_pinned()}: cached" in done.stdout, done.stdout
    assert not called.exists(), "build.sh called go for a cached traefik"
    assert took < 10, f"a cached traefik took {took:.1f}s"


def test_check_wants_traefik(k8s_binaries: Binaries, tmp_path: Path) -> None:
    """``--check`` (is everything cached?) says no while traefik or its stamp is missing, yes once both are there."""
    source = k8s_binaries.bin_dir.parent
    cache = tmp_path / "cache"
    root = cache / source.name
    (root / "bin").mkdir(parents=True)
    for entry in (source / "bin").iterdir():
        (root / "bin" / entry.name).symlink_to(entry)
    shutil.copytree(source / "stamps", root / "stamps")
    (root / "kwok-stages").symlink_to(source / "kwok-stages")
    env = {**os.environ, "KRAY_K8S_CACHE": str(cache)}

    def check() -> int:
        argv = ["bash", str(build_script()), "--check"]
        return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode

    assert check() == 0
    (root / "stamps" / TRAEFIK).unlink()
    assert check() == 1
    shutil.copy(source / "stamps" / TRAEFIK, root / "stamps" / TRAEFIK)
    (root / "bin" / TRAEFIK).unlink()
    assert check() == 1
    with pytest.raises(BuildError, match=r"hack/k8s/build\.sh traefik"):
        Binaries(root / "bin").peer(TRAEFIK)
