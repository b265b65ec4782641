"""Refuse, before anything is created, a manifest this machine cannot run (issue 8).

``kray apply`` and ``kray job run`` call :func:`refuse_unfit` with every document of their files. The
decision is :func:`kray.local.fit.plan_fit`'s; this module only gathers the machine's facts (memory,
programs on the pods' PATH, modules of kray's Python, whether pods can mount volumes, accelerators, and
the ConfigMaps/Secrets/PVCs/RayClusters local mode already stores), prints, and exits 1.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:  # the planner loads when a command checks a manifest, not when the CLI starts
    from kray.local.fit import Machine

err = Console(stderr=True, soft_wrap=True)


def refuse_unfit(documents: list[dict[str, Any]], *, source: str) -> None:
    """Exit 1 (nothing created) when a document needs what this machine lacks; print notes; return otherwise."""
    from kray.local.fit import plan_fit

    machine = gather_machine(documents)
    fit = plan_fit(documents, machine=machine)
    if fit.missing:  # maybe stored already: ask local mode (starting its server, which the command needs anyway)
        existing = _stored({namespace for _, namespace, _ in fit.missing})
        fit = plan_fit(documents, machine=replace(machine, existing=existing))
    for note in fit.notes:
        err.print(f"note: {note.line(source)}", highlight=False, markup=False, emoji=False)
    if fit.refusals:
        for refusal in fit.refusals:
            err.print(f"error: {refusal.line(source)}", highlight=False, markup=False)
        err.print(
            f"error: {source}: this machine cannot run it; nothing was created (docs/local-mode.md, "
            '"What local mode refuses")',
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)


def gather_machine(documents: list[dict[str, Any]]) -> Machine:
    import psutil

    from kray.local.fit import Machine
    from kray.local.preflight import DEFAULT_BIN_DIR, pod_path

    path = pod_path(DEFAULT_BIN_DIR, os.environ.get("PATH"))
    return Machine(
        memory_bytes=psutil.virtual_memory().total,
        cpus=os.cpu_count() or 1,
        has_command=lambda name: shutil.which(name, path=path) is not None,
        has_module=_has_module,
        can_mount=_can_mount(documents),
        extended=_accelerators(),
    )


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _can_mount(documents: list[dict[str, Any]]) -> bool:
    """Whether pods may get the mount namespace their volumes need (asked of kray.local.mountns in a child)."""
    if '"volumeMounts"' not in json.dumps(documents, default=str):
        return True
    try:
        result = subprocess.run(
            [sys.executable, "-m", "kray.local.mountns", "--probe"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return True  # undecided: the pod runner says why when the pod starts
    return result.returncode == 0


def _accelerators() -> dict[str, int]:
    """Devices local Ray processes would see: NVIDIA GPUs (/dev/nvidiaN) and TPU chips (/dev/accelN, /dev/vfio)."""
    found = {
        "nvidia.com/gpu": len(glob.glob("/dev/nvidia[0-9]*")),
        "google.com/tpu": len(glob.glob("/dev/accel[0-9]*")),
    }
    return {name: count for name, count in found.items() if count}


def _stored(namespaces: set[str]) -> frozenset[tuple[str, str, str]]:
    """(kind, namespace, name) of the ConfigMaps, Secrets, PVCs and RayClusters local mode stores."""
    import asyncio

    from kray.cli.client import local_paths
    from kray.local.server.client import HttpStore
    from kray.local.server.launcher import ensure_server
    from kray.store import CONFIGMAP, PERSISTENT_VOLUME_CLAIM, RAYCLUSTER, SECRET
    from kray.store.errors import StoreError

    info = ensure_server(local_paths())

    async def run() -> frozenset[tuple[str, str, str]]:
        store = HttpStore(base_url=info.url, token=info.token)
        found: set[tuple[str, str, str]] = set()
        try:
            for resource in (CONFIGMAP, SECRET, PERSISTENT_VOLUME_CLAIM, RAYCLUSTER):
                for namespace in sorted(namespaces):
                    try:
                        items = (await store.list(resource, namespace=namespace)).items
                    except StoreError:
                        continue
                    found |= {(resource.kind, namespace, item["metadata"]["name"]) for item in items}
        finally:
            await store.close()
        return frozenset(found)

    return asyncio.run(run())
