"""The CLI's connection to local mode: find or start the server, and run async calls from sync commands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from kray.local.paths import LocalPaths

if TYPE_CHECKING:  # the server's client (httpx2) is imported by the commands that talk to it
    from kray.local.server.client import HttpStore

T = TypeVar("T")


def local_paths() -> LocalPaths:
    return LocalPaths.default()


def with_store(action: Callable[[HttpStore], Awaitable[T]], *, paths: LocalPaths | None = None) -> T:
    """Run ``action`` against the local server's store (starting the server if needed)."""
    import asyncio

    from kray.local.server.client import HttpStore
    from kray.local.server.launcher import ensure_server

    paths = paths or local_paths()
    info = ensure_server(paths)

    async def run() -> T:
        store = HttpStore(base_url=info.url, token=info.token)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())
