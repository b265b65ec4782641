"""The mounts one container gets, as a :class:`MountPlan` for :mod:`kray.local.mountns`.

A decision kept apart from making the volumes (:mod:`kray.local.volume_sources`): it only reads the host's
filesystem (what exists, what is mounted) to choose bind mounts (``subPath``, ``readOnly``; API-data
volumes always read-only, as the kubelet's), tmpfs for ``medium: Memory`` emptyDirs, and how to make the
mount points the host lacks (an overlay or shadow over their nearest existing ancestor, or a dir under the
temp dir made on the host) without hiding kray's own shared roots. With a pod sandbox, the plan also says what
the launcher enters and binds first (:class:`SandboxPlan`); when the container has a ``/tmp`` of its own,
mount points under ``/tmp`` are made there by the launcher, never on the host.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from kray._ray.quantity import QuantityError, parse_quantity
from kray.local.podenv import expand_args
from kray.local.volume_spec import API_DATA_KINDS, VolumeContext, VolumeInvalid, container_field, relative_path
from kray.store import Obj


@dataclass(frozen=True, slots=True)
class Mount:
    volume: str
    target: str
    source: str = ""
    """The host path bound at ``target`` (empty for a tmpfs)."""
    read_only: bool = False
    tmpfs: bool = False
    size: int | None = None
    """A tmpfs's size in bytes (a Memory emptyDir's ``sizeLimit``)."""
    file: bool = False
    """The source is a file (a ``subPath`` of one): the mount point is made as a file."""


@dataclass(frozen=True, slots=True)
class Cover:
    """Made in the namespace before the mounts, so missing mount points below ``path`` can be created."""

    path: str
    how: Literal["overlay", "shadow"]
    upper: str = ""
    work: str = ""
    stage: str = ""


PRIVATE_TMP = "/tmp"
"""Where a sandbox with ``private_tmp`` gives each container a dir of its own."""


@dataclass(frozen=True, slots=True)
class SandboxPlan:
    """What the launcher enters and binds before the volumes (:class:`kray.local.sandbox.Sandbox`)."""

    netns: str | None = None
    hostname: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    """(host file, path in the container), bound read-only."""
    tmp: str | None = None
    """The container's own ``/tmp`` on the host (made mode 1777 by the runner); None: the host's ``/tmp``."""
    keep: tuple[str, ...] = ()
    """Host dirs under ``/tmp`` the container still sees at their path (the Python environment, kray's tools)."""


@dataclass(frozen=True, slots=True)
class MountPlan:
    mounts: tuple[Mount, ...]
    covers: tuple[Cover, ...] = ()
    host_dirs: tuple[str, ...] = ()
    """Missing mount points under the temp dir, created on the host by the runner (parents first)."""
    workdir: str | None = None
    sandbox: SandboxPlan | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mounts": [asdict(m) for m in self.mounts],
            "covers": [asdict(c) for c in self.covers],
            "workdir": self.workdir,
            "sandbox": asdict(self.sandbox) if self.sandbox is not None else None,
        }


def plan_sandbox(*, container: Mapping[str, Any], ctx: VolumeContext) -> SandboxPlan | None:
    """The sandbox part of a container's plan; None when the pod shares the host's everything."""
    sandbox = ctx.sandbox
    if sandbox is None or not sandbox.isolated:
        return None
    tmp: str | None = None
    keep: tuple[str, ...] = ()
    if sandbox.private_tmp:
        tmp = str(private_tmp_dir(ctx, container))
        shared = (*ctx.protected, Path(sys.prefix), Path(ctx.python).parent)
        keep = tuple(
            dict.fromkeys(
                real
                for real in (os.path.realpath(p) for p in shared)
                if _under(real, PRIVATE_TMP) and real != PRIVATE_TMP and os.path.isdir(real)
            )
        )
    return SandboxPlan(netns=sandbox.netns, hostname=sandbox.hostname, files=sandbox.files, tmp=tmp, keep=keep)


def private_tmp_dir(ctx: VolumeContext, container: Mapping[str, Any]) -> Path:
    return ctx.pod_dir / "tmp" / str(container.get("name") or "container")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _submounts(path: str) -> bool:
    """Whether a mount lies strictly below ``path`` (an overlay over it would hide that mount)."""
    prefix = path.rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return True
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            return True
    return False


def _existing_ancestor(path: str) -> str:
    current = os.path.dirname(path)
    while not os.path.isdir(current):
        current = os.path.dirname(current)
    return current


def _mount_of(
    container: Mapping[str, Any],
    j: int,
    *,
    pod: Obj,
    sources: Mapping[str, Path | None],
    env: Mapping[str, str],
    where: str,
) -> Mount:
    mount = container["volumeMounts"][j]
    name = str(mount["name"])
    volume = next(v for v in (pod.get("spec") or {}).get("volumes") or () if v.get("name") == name)
    kind = next(k for k in volume if k != "name")
    body = volume[kind] or {}
    sub = str(mount.get("subPath") or "")
    if mount.get("subPathExpr"):
        sub = relative_path(
            expand_args([str(mount["subPathExpr"])], env)[0], f"{where}.subPathExpr", what="subPathExpr"
        )
    target = os.path.normpath(str(mount["mountPath"]))
    read_only = bool(mount.get("readOnly")) or kind in API_DATA_KINDS or bool(body.get("readOnly"))
    source = sources[name]
    if source is None:
        if sub:
            raise VolumeInvalid(f"{where}.subPath: a medium: Memory emptyDir cannot be mounted with a subPath locally")
        limit = body.get("sizeLimit")
        try:
            size = math.ceil(parse_quantity(limit).amount) if limit is not None else None
        except QuantityError as error:
            raise VolumeInvalid(f"spec.volumes[?].emptyDir.sizeLimit of {name!r}: {error}") from None
        return Mount(volume=name, target=target, read_only=read_only, tmpfs=True, size=size)
    path = source / sub if sub else source
    if sub:
        if not path.resolve().is_relative_to(source.resolve()):
            raise VolumeInvalid(f"{where}.subPath: {sub!r} leads out of volume {name!r}")
        if not path.exists():
            path.mkdir(parents=True, mode=0o777)  # the kubelet makes a missing subPath as a directory
    return Mount(volume=name, target=target, source=str(path), read_only=read_only, file=not path.is_dir())


def plan_container(
    *, pod: Obj, container: Mapping[str, Any], sources: Mapping[str, Path | None], ctx: VolumeContext,
    env: Mapping[str, str],
) -> MountPlan:  # fmt: skip
    """The mounts of one container, parents first, and how to make the mount points the host lacks."""
    field = container_field(pod, container)
    wheres = {}
    mounts = []
    for j in range(len(container.get("volumeMounts") or ())):
        where = f"{field}.volumeMounts[{j}]"
        mount = _mount_of(container, j, pod=pod, sources=sources, env=env, where=where)
        mounts.append(mount)
        wheres[mount.target] = where
    mounts.sort(key=lambda m: len(PurePosixPath(m.target).parts))
    roots = [Path(os.path.realpath(r)) for r in ctx.roots()]
    temp = Path(os.path.realpath(ctx.temp_dir))
    sandbox = plan_sandbox(container=container, ctx=ctx)
    covers: dict[str, Cover] = {}
    host: list[str] = []
    done: list[Mount] = []
    private = sandbox is not None and sandbox.tmp is not None

    def seen(target: str) -> str:
        """The path as the container sees it (its own /tmp is not the host's: nothing there to resolve)."""
        return target if private and _under(target, PRIVATE_TMP) else os.path.realpath(target)

    for mount in mounts:
        where, real = wheres[mount.target], seen(mount.target)
        in_private_tmp = private and _under(mount.target, PRIVATE_TMP)
        hidden = [r for r in roots if r.is_relative_to(real)]
        if hidden and os.path.exists(real) and not in_private_tmp:
            raise VolumeInvalid(
                f"{where}.mountPath: {mount.target} would hide {hidden[0]}, which kray's processes share on this "
                "machine; mount the volume elsewhere"
            )
        parent = next((m for m in reversed(done) if Path(real).is_relative_to(seen(m.target))), None)
        done.append(mount)
        if parent is not None:
            if not parent.tmpfs:  # made in the parent volume, on the host: read-only volumes cannot get it later
                inner = Path(parent.source) / Path(real).relative_to(seen(parent.target))
                _make_point(inner, file=mount.file)
            continue
        if in_private_tmp or os.path.lexists(real):  # the launcher makes it in the container's own /tmp
            continue
        if Path(real).is_relative_to(temp):
            parts = Path(real).relative_to(temp).parts
            host += [str(temp.joinpath(*parts[: k + 1])) for k in range(len(parts))]
            continue
        ancestor = _existing_ancestor(real)
        if ancestor == "/":
            raise VolumeInvalid(
                f"{where}.mountPath: {mount.target} does not exist on this machine, and kray creates mount points on "
                f"the host only under {temp} (covering / is not possible); mount the volume under an existing "
                "directory, or create the path first"
            )
        if any(Path(ancestor).is_relative_to(p) for p in covers):
            continue
        covers = {p: c for p, c in covers.items() if not Path(p).is_relative_to(ancestor)}
        scratch = ctx.volumes / ".mnt" / f"{container.get('name', 'c')}-{len(covers)}"
        shared = any(r.is_relative_to(ancestor) for r in roots) or _submounts(ancestor)
        covers[ancestor] = (
            Cover(path=ancestor, how="shadow", stage=str(scratch / "stage"))
            if shared
            else Cover(path=ancestor, how="overlay", upper=str(scratch / "upper"), work=str(scratch / "work"))
        )
    ordered = tuple(sorted(covers.values(), key=lambda c: c.path))
    return MountPlan(
        mounts=tuple(mounts),
        covers=ordered,
        host_dirs=tuple(dict.fromkeys(host)),
        workdir=container.get("workingDir"),
        sandbox=sandbox,
    )


def _make_point(path: Path, *, file: bool) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if file:
        path.touch()
    else:
        path.mkdir(mode=0o755)
