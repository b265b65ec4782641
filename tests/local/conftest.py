"""Fixtures shared by the local-runtime tests: a real embedded store, polled fast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kray.local.store import EmbeddedSettings, EmbeddedStore, open_embedded_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with await open_embedded_store(tmp_path / "store.db", settings=EmbeddedSettings(poll_interval=0.05)) as s:
        yield s
