"""Removing a node network's kernel objects by their names alone: what a killed agent left, or a test's.

Why by name: after a kill -9 nothing in memory says what exists, and the state dir may be gone too; every
object carries the agent's prefix (``<prefix>-node``, ``<prefix>-<12 hex>``, ``<prefix>up``), and a prefix
holds no ``-``, so matching names never touches another agent's objects.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection

from kray.local.node.netcmd import NETNS_DIR, json_sync, run_sync
from kray.local.sandbox import SandboxError

__all__ = ["sweep_pods", "sweep_prefix", "veth_name"]


def veth_name(key: str) -> str:
    """A pod's veth end on the node's bridge (inside the node netns, where names are the agent's own)."""
    return f"v{key}"


def _try(errors: list[str], what: str, *argv: str) -> None:
    try:
        run_sync(what, *argv)
    except SandboxError as e:
        errors.append(str(e))


def sweep_pods(prefix: str, *, keep: Collection[str] = ()) -> list[str]:
    """Delete the pods' namespaces carrying ``prefix`` but not in ``keep``, and their veths in the node netns;
    the errors met (every namespace is tried)."""
    pattern = re.compile(rf"{re.escape(prefix)}-([0-9a-f]{{12}})")
    node = f"{prefix}-node"
    errors: list[str] = []
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return errors
    for name in names:
        if (m := pattern.fullmatch(name)) and name not in keep:
            if node in names:
                with contextlib.suppress(SandboxError):
                    run_sync("removing a pod's veth", "ip", "-n", node, "link", "del", veth_name(m.group(1)))
            _try(errors, "removing a pod's network namespace", "ip", "netns", "delete", name)
    return errors


def sweep_prefix(prefix: str) -> None:
    """Remove everything carrying ``prefix``: pods' namespaces, the node netns, its links, addresses and
    table, the host's uplink (its route goes with it). Raises :class:`SandboxError` after trying all."""
    errors = sweep_pods(prefix)
    node = f"{prefix}-node"
    if os.path.exists(f"{NETNS_DIR}/{node}"):
        # The netns dies with its last reference, which might be a socket elsewhere: empty it explicitly.
        try:
            for link in json_sync("listing the node's links", "ip", "-n", node, "-j", "link", "show"):
                if (name := str(link.get("ifname"))) != "lo":
                    _try(errors, "removing a node link", "ip", "-n", node, "link", "del", name)
            _try(errors, "removing the node's addresses", "ip", "-n", node, "addr", "flush", "dev", "lo")
            _try(errors, "removing the node's table", "nsenter", f"--net={NETNS_DIR}/{node}", "nft", "flush", "ruleset")
        except SandboxError as e:
            errors.append(str(e))
        _try(errors, "removing the node netns", "ip", "netns", "delete", node)
    if os.path.exists(f"/sys/class/net/{prefix}up"):
        _try(errors, "removing the uplink", "ip", "link", "del", f"{prefix}up")
    if errors:
        raise SandboxError("; ".join(errors))
