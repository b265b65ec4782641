"""Running ``ip`` and ``nft`` for the node's network: bounded, and failing with what failed and why.

Why a module: every kernel object the node agent makes (network namespaces, veths, the bridge, routes, the
nftables table) goes through these two tools, from asyncio code (:func:`run`) and from the synchronous
sweep (:func:`run_sync`). A command that hangs must not hang the agent (each has a timeout), and a failure
must say which step failed with the command's own stderr: it becomes the pod's :class:`SandboxError`.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
from typing import Any

from kray.local.sandbox import SandboxError

__all__ = ["COMMAND_TIMEOUT", "LISTING_ATTEMPTS", "NETNS_DIR", "json_sync", "run", "run_sync"]

COMMAND_TIMEOUT = 20.0
"""Seconds one ``ip``/``nft`` call may take (a busy 2-core machine makes a netns in ~10 ms)."""
NETNS_DIR = "/run/netns"


def _error(what: str, argv: tuple[str, ...], detail: str) -> SandboxError:
    return SandboxError(f"{what}: `{shlex.join(argv)}` failed: {detail.strip() or 'no output'}")


async def run(what: str, *argv: str, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run ``argv``; its stdout, or :class:`SandboxError` naming ``what`` with the command's stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as e:
        raise _error(what, argv, str(e)) from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise _error(what, argv, f"no answer in {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise _error(what, argv, err.decode(errors="replace") or f"exit {proc.returncode}")
    return out.decode(errors="replace")


def run_sync(what: str, *argv: str, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """:func:`run` for synchronous callers (the sweep)."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise _error(what, argv, f"no answer in {timeout:.0f} s") from None
    except OSError as e:
        raise _error(what, argv, str(e)) from e
    if done.returncode != 0:
        raise _error(what, argv, done.stderr or f"exit {done.returncode}")
    return done.stdout


LISTING_ATTEMPTS = 3
"""How often a listing that came out unreadable is asked again (see :func:`json_sync`)."""


def json_sync(what: str, *argv: str) -> list[dict[str, Any]]:
    """An ``ip -j`` listing (an empty output is an empty list).

    A netlink dump that links or routes changed under (another pod's veth going away) can come out torn --
    the JSON cut at its start, seen with iproute2 on a busy node -- so an unreadable listing is asked again:
    a listing is a snapshot, the next one is as good. :class:`SandboxError` if none of the attempts parses.
    """
    for attempt in range(1, LISTING_ATTEMPTS + 1):
        out = run_sync(what, *argv).strip()
        try:
            parsed = json.loads(out) if out else []
        except ValueError as e:
            if attempt == LISTING_ATTEMPTS:
                raise _error(what, argv, f"unreadable output {attempt} times ({e}): {out[:200]!r}") from None
            continue
        return parsed if isinstance(parsed, list) else []
    raise AssertionError("unreachable")
