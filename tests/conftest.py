"""Shared pytest setup: registers kray's real-Kubernetes fixtures (see kray.dev.pytest_plugin), and gives the
Ray nodes of local-mode tests prebuilt wheels of the samples' source-only pins (see kray.dev.wheels)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kray.dev.wheels import wheelhouse

pytest_plugins = ["kray.dev.pytest_plugin"]

LOCAL_MODE = Path(__file__).parent / "local_mode"
SOURCE_ONLY_PINS = ("pendulum==2.1.2",)
"""Pins of KubeRay's RayJob samples' ``pip`` runtime envs that PyPI serves only as sources for this Python."""


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before any test of tests/local_mode runs, every server the session starts (and so every Ray node's pip)
    finds SOURCE_ONLY_PINS built once per machine: the samples install exactly what they pin, without compiling
    it per node. Here, not in a fixture: pytest-timeout would count a first build in a test's budget."""
    if any(Path(str(item.path)).is_relative_to(LOCAL_MODE) for item in session.items):
        os.environ["PIP_FIND_LINKS"] = str(wheelhouse(SOURCE_ONLY_PINS))
