"""A pod's volumes, made as the kubelet makes them, and the mounts each container gets.

Kubernetes pods read their code and configuration from volumes (KubeRay's samples mount a ConfigMap
at ``/home/ray/samples``); a pod runner that ignored them would start clusters whose jobs fail later on
a missing file. This module is the kubelet's volume manager for a virtual node, independent of the
local store (it reads ConfigMaps, Secrets and claims through any :class:`ObjectReader`):

- :func:`materialize` writes every volume a container mounts into the pod's dir
  (``<pod dir>/volumes/<name>``): configMap, secret and projected files (``items``, ``mode``,
  ``defaultMode``, ``optional``), downwardAPI values, disk emptyDirs; checks hostPaths (``type``); and
  names the per-claim dir of a persistentVolumeClaim (``<state>/volumes/<ns>/<claim>``, kept by
  :mod:`kray.local.claims`). A missing non-optional ConfigMap, Secret or claim raises
  :class:`VolumePending` with the kubelet's words (the pod waits in ``ContainerCreating``).
- :func:`plan_container` (a decision: it only reads the host's filesystem) turns a container's
  ``volumeMounts`` into a :class:`MountPlan` for :mod:`kray.local.mountns`: bind mounts (``subPath``,
  ``readOnly``; configMap, secret, downwardAPI and projected volumes always read-only, as the kubelet's),
  tmpfs for ``medium: Memory`` emptyDirs, and how to make mount points the host lacks.
- :func:`prepare_container` does both and wraps the container's argv with the launcher, which also enters
  the pod's sandbox when it is isolated (:class:`kray.local.sandbox.Sandbox`: network namespace, hostname,
  hosts file, own ``/tmp``); a container without ``volumeMounts`` in no such sandbox runs exactly as
  before. A bad volume raises :class:`VolumeInvalid` naming the field; a kernel that allows no mount
  namespace raises :class:`VolumesUnsupported` at once.
- :func:`join_argv` runs a command inside a launched container's namespaces (exec probes, ``ray status``).

The entry point the pod runner and the claims controller import: the check and shared values live in
:mod:`kray.local.volume_spec`, the making of volumes in :mod:`kray.local.volume_sources`, the plan in
:mod:`kray.local.volume_plan`; this module launches containers with them and tidies the host after.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from kray.local.volume_plan import Cover, Mount, MountPlan, SandboxPlan, plan_container, private_tmp_dir
from kray.local.volume_sources import materialize
from kray.local.volume_spec import (
    API_DATA_KINDS,
    KINDS,
    ObjectReader,
    TokenSource,
    VolumeContext,
    VolumeError,
    VolumeInvalid,
    VolumePending,
    VolumesUnsupported,
    check_pod,
    claim_dir,
    container_field,
)
from kray.store import Obj

__all__ = [
    "API_DATA_KINDS",
    "ENABLE_USERNS",
    "HOST_DIRS",
    "KINDS",
    "Cover",
    "Mount",
    "MountPlan",
    "ObjectReader",
    "Prepared",
    "SandboxPlan",
    "TokenSource",
    "VolumeContext",
    "VolumeError",
    "VolumeInvalid",
    "VolumePending",
    "VolumesUnsupported",
    "check_pod",
    "claim_dir",
    "container_field",
    "join_argv",
    "materialize",
    "plan_container",
    "prepare_container",
    "release",
    "unsupported_reason",
]

log = structlog.get_logger(__name__)

HOST_DIRS = ".host-dirs.json"
"""In ``<pod dir>/volumes``: the mount points this pod's runner created on the host (under the temp dir)."""
ENABLE_USERNS = (
    "mounting volumes as a normal user needs unprivileged user namespaces: "
    "`sysctl -w kernel.unprivileged_userns_clone=1` (Debian and older Ubuntu), "
    "`sysctl -w user.max_user_namespaces=15000` (when it is 0), and on Ubuntu 23.10+ "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; or run kray as root"
)


@dataclass(frozen=True, slots=True)
class Prepared:
    argv: list[str]
    plan: MountPlan | None = None


# -- the launcher -------------------------------------------------------------------------------------------

_support: dict[tuple[str, int], str | None] = {}


async def unsupported_reason(python: str) -> str | None:
    """None when this user may enter a private mount namespace, else the kernel's answer (asked once)."""
    key = (python, os.geteuid())
    if key not in _support:

        def ask() -> str | None:
            try:
                done = subprocess.run(
                    [python, "-I", "-m", "kray.local.mountns", "--probe"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                return str(error)
            return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")

        _support[key] = await asyncio.to_thread(ask)
    return _support[key]


async def prepare_container(
    *,
    reader: ObjectReader,
    pod: Obj,
    container: Mapping[str, Any],
    argv: list[str],
    env: Mapping[str, str],
    ctx: VolumeContext,
) -> Prepared:
    """Make the container's volumes and wrap ``argv`` with the mount-namespace launcher.

    A container without ``volumeMounts`` and no isolated sandbox gets ``argv`` back unchanged. Raises
    :class:`VolumeInvalid`, :class:`VolumesUnsupported` (fail the pod) or :class:`VolumePending` (wait and
    call again).
    """
    mounts = container.get("volumeMounts") or []
    sandbox = ctx.sandbox if ctx.sandbox is not None and ctx.sandbox.isolated else None
    if not mounts and sandbox is None:
        return Prepared(argv=list(argv))
    check_pod(pod)
    if sandbox is not None and sandbox.netns is not None and os.geteuid() != 0:
        raise VolumesUnsupported(
            f"the pod's network namespace {sandbox.netns} can be entered only by root; run the node agent as root"
        )
    reason = await unsupported_reason(ctx.python)
    if reason is not None:
        field = container_field(pod, container)
        what = (
            f'volume "{mounts[0].get("name")}" ({field}.volumeMounts[0], mountPath {mounts[0].get("mountPath")}) '
            "is mounted"
            if mounts
            else f"{field} runs in its pod's sandbox"
        )
        raise VolumesUnsupported(
            f"{what} in a private mount namespace, which this kernel refused: {reason}; {ENABLE_USERNS}"
        )
    sources = await materialize(reader=reader, pod=pod, ctx=ctx, names={str(m["name"]) for m in mounts})
    plan = await asyncio.to_thread(plan_container, pod=pod, container=container, sources=sources, ctx=ctx, env=env)
    _make_host_dirs(plan, ctx)
    if plan.sandbox is not None and plan.sandbox.tmp is not None:
        _make_private_tmp(private_tmp_dir(ctx, container))
    plan_path = ctx.volumes / ".plans" / f"{container.get('name', 'container')}.json"
    plan_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    plan_path.write_text(json.dumps(plan.to_json(), indent=1))
    plan_path.chmod(0o644)
    return Prepared(argv=[ctx.python, "-I", "-m", "kray.local.mountns", str(plan_path), "--", *argv], plan=plan)


def join_argv(*, python: str, pid: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside the namespaces of the launched container process ``pid`` (its network, hostname,
    mounts and user), in its working dir and with its environment, as a CRI runtime's exec."""
    return [python, "-I", "-m", "kray.local.mountns", "--join", str(pid), "--", *argv]


def _make_private_tmp(path: Path) -> None:
    """A container's own /tmp, sticky and world-writable as /tmp is; empty at each start of the container, as
    a restarted container's fresh writable layer is (its old processes are gone by then)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    path.chmod(0o1777)


# -- mount points kray made on the host ---------------------------------------------------------------------


def _registry(state_dir: Path) -> Path:
    return state_dir / "volumes" / HOST_DIRS


def _read(path: Path) -> list[str]:
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def _write(path: Path, paths: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fresh.write_text(json.dumps(sorted(set(paths))))
    fresh.replace(path)


def _make_host_dirs(plan: MountPlan, ctx: VolumeContext) -> None:
    """Create the plan's missing mount points under the temp dir, and record them (synchronous on purpose:
    no other pod's record changes in between)."""
    if not plan.host_dirs:
        return
    created = _read(_registry(ctx.state_dir))
    for path in plan.host_dirs:
        if not os.path.lexists(path):
            os.mkdir(path, mode=0o755)
            created.append(path)
    _write(_registry(ctx.state_dir), created)
    _write(ctx.volumes / HOST_DIRS, [*_read(ctx.volumes / HOST_DIRS), *plan.host_dirs])


def release(*, pod_dir: Path, state_dir: Path) -> None:
    """Before a pod's dir goes: remove the mount points kray made on the host for it that no other pod of
    this state dir uses (only when empty), and make its overlay work dirs removable. Never raises."""
    mine = _read(pod_dir / "volumes" / HOST_DIRS)
    if mine:
        others = {
            path
            for record in (state_dir / "pods").glob(f"*/*/volumes/{HOST_DIRS}")
            if record.parent.parent != pod_dir
            for path in _read(record)
        }
        created = _read(_registry(state_dir))
        for path in sorted(set(mine) & set(created) - others, key=len, reverse=True):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            created.remove(path)
        try:
            _write(_registry(state_dir), created)
        except OSError as error:
            log.warning("volumes.release_failed", pod_dir=str(pod_dir), error=str(error))
    scratch = pod_dir / "volumes" / ".mnt"
    if scratch.is_dir():  # overlayfs leaves work/work with mode 000
        for directory, _, _ in os.walk(scratch):
            try:
                os.chmod(directory, 0o700)
            except OSError:
                continue
