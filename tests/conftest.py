"""Shared pytest setup: registers kray's real-Kubernetes fixtures (see kray.dev.pytest_plugin), and groups the
tests for ``pytest -n 2`` (what ``scripts/test`` runs).

Why groups: most of the suite waits on real processes (Ray starting, controllers reconciling), so two workers
on two cores finish it in far less time than one. A test file's module fixtures (a local server, a control plane's
namespaces, a shared Ray cluster) are built once when the whole file runs on one worker: every file is a group,
and the end-to-end directory, whose session fixture starts a control plane, a node agent and an operator, is one
group. The longest groups go first so the two workers end together.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["kray.dev.pytest_plugin"]

LONGEST_FIRST = (
    "tests/local_mode/test_samples_local.py",
    "tests/e2e/",
    "tests/differential/",
    "tests/local_mode/",
    "tests/operator/",
)
"""Path prefixes in the order their groups should start (each takes minutes); the rest follows as collected."""


def _group(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return "tests/e2e/" if path.startswith("tests/e2e/") else path


def _rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: within a rank, collection order
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item.nodeid)))
