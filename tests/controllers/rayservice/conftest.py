"""The RayService reconcile tests' shared fixtures: an embedded store and a fake head (Serve API and proxy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kray.local.store import EmbeddedStore
from tests.controllers.rayservice.reconcile_support import FakeHead, open_store, serve_fake


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async for s in open_store(tmp_path):
        yield s


@pytest.fixture
async def head() -> AsyncIterator[FakeHead]:
    async for h in serve_fake(FakeHead()):
        yield h
