"""Shared paths for API tests: KubeRay's corpus and CRDs live outside the repo, read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "kuberay-samples"
KUBERAY_CRDS = SHARED / "kuberay-crds"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    assert SAMPLES.is_dir(), f"KubeRay's samples must be at {SAMPLES}"
    return SAMPLES
