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
- :func:`prepare_container` does both and wraps the container's argv with the launcher; a container
  without ``volumeMounts`` runs exactly as before. A bad volume raises :class:`VolumeInvalid` naming the
  field; a kernel that allows no mount namespace raises :class:`VolumesUnsupported` at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

import psutil
import structlog

from kray._ray.quantity import QuantityError, parse_quantity
from kray.local.podenv import LOCAL_POD_IP, expand_args
from kray.store import CONFIGMAP, PERSISTENT_VOLUME_CLAIM, SECRET, Obj, Resource
from kray.store.errors import NotFound

log = structlog.get_logger(__name__)

KINDS = ("configMap", "secret", "emptyDir", "downwardAPI", "projected", "hostPath", "persistentVolumeClaim")
API_DATA_KINDS = frozenset({"configMap", "secret", "downwardAPI", "projected"})
"""Mounted read-only whatever the mount says (the kubelet's ReadOnlyAPIDataVolumes)."""
DEFAULT_MODE = 0o644
HOST_DIRS = ".host-dirs.json"
"""In ``<pod dir>/volumes``: the mount points this pod's runner created on the host (under the temp dir)."""
ENABLE_USERNS = (
    "mounting volumes as a normal user needs unprivileged user namespaces: "
    "`sysctl -w kernel.unprivileged_userns_clone=1` (Debian and older Ubuntu), "
    "`sysctl -w user.max_user_namespaces=15000` (when it is 0), and on Ubuntu 23.10+ "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; or run kray as root"
)


class VolumeError(Exception):
    """A volume cannot be set up for a container."""


class VolumePending(VolumeError):
    """Something a volume needs does not exist yet (the pod waits in ContainerCreating and retries)."""


class VolumeInvalid(VolumeError):
    """The pod's volumes are wrong, or cannot be mounted here: the pod fails (the message names the field)."""


class VolumesUnsupported(VolumeError):
    """The kernel allows no private mount namespace for this user: the pod fails at once."""


class ObjectReader(Protocol):
    async def get(self, resource: Resource, name: str, *, namespace: str | None) -> Obj: ...


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


@dataclass(frozen=True, slots=True)
class MountPlan:
    mounts: tuple[Mount, ...]
    covers: tuple[Cover, ...] = ()
    host_dirs: tuple[str, ...] = ()
    """Missing mount points under the temp dir, created on the host by the runner (parents first)."""
    workdir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mounts": [asdict(m) for m in self.mounts],
            "covers": [asdict(c) for c in self.covers],
            "workdir": self.workdir,
        }


@dataclass(frozen=True, slots=True)
class VolumeContext:
    """Where a pod's volumes live and what must never be covered by an overlay."""

    pod_dir: Path
    state_dir: Path
    protected: tuple[Path, ...] = ()
    """kray's shared roots (Ray temp root, state dir, Python environment): never hidden or overlaid."""
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    python: str = sys.executable

    @property
    def volumes(self) -> Path:
        return self.pod_dir / "volumes"

    def roots(self) -> tuple[Path, ...]:
        return (*self.protected, self.state_dir, self.pod_dir, Path(sys.prefix))


@dataclass(frozen=True, slots=True)
class Prepared:
    argv: list[str]
    plan: MountPlan | None = None


def claim_dir(state_dir: Path, namespace: str, claim: str) -> Path:
    """A persistentVolumeClaim's data: outlives pods, removed with the claim (:mod:`kray.local.claims`)."""
    return state_dir / "volumes" / namespace / claim


# -- validation (pure) --------------------------------------------------------------------------------------


def _relative(path: object, where: str, *, what: str = "path") -> str:
    text = str(path or "")
    parts = PurePosixPath(text).parts
    if text.startswith("/") or ".." in parts:
        raise VolumeInvalid(f"{where}: {what} {text!r} must be relative and must not contain '..'")
    return text


def container_field(pod: Obj, container: Mapping[str, Any]) -> str:
    """``spec.containers[i]`` / ``spec.initContainers[i]`` of a container of the pod."""
    spec = pod.get("spec") or {}
    for key in ("initContainers", "containers"):
        for i, other in enumerate(spec.get(key) or ()):
            if other is container or other.get("name") == container.get("name"):
                return f"spec.{key}[{i}]"
    return "spec.containers[?]"


def check_pod(pod: Obj) -> None:
    """Raise :class:`VolumeInvalid` naming the field when a volume or volumeMount cannot be honoured."""
    spec = pod.get("spec") or {}
    names: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or ()):
        where = f"spec.volumes[{i}]"
        kinds = [k for k in volume if k != "name"]
        if not volume.get("name"):
            raise VolumeInvalid(f"{where}.name: a volume needs a name")
        names.add(str(volume["name"]))
        if len(kinds) != 1 or kinds[0] not in KINDS:
            raise VolumeInvalid(
                f"{where}: volume kind {', '.join(kinds) or '(none)'} is not supported locally "
                f"(expected one of {', '.join(KINDS)})"
            )
        body = volume[kinds[0]] or {}
        if kinds[0] == "projected":
            for j, source in enumerate(body.get("sources") or ()):
                for kind, inner in source.items():
                    for k, item in enumerate((inner or {}).get("items") or ()):
                        _relative(item.get("path"), f"{where}.projected.sources[{j}].{kind}.items[{k}].path")
        for k, item in enumerate(body.get("items") or ()) if isinstance(body, dict) else ():
            _relative(item.get("path"), f"{where}.{kinds[0]}.items[{k}].path")
        if kinds[0] == "hostPath" and not str(body.get("path", "")).startswith("/"):
            raise VolumeInvalid(f"{where}.hostPath.path: expected an absolute path, got {body.get('path')!r}")
    for key in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(key) or ()):
            for j, mount in enumerate(container.get("volumeMounts") or ()):
                where = f"spec.{key}[{i}].volumeMounts[{j}]"
                if mount.get("name") not in names:
                    raise VolumeInvalid(f"{where}.name: no volume named {mount.get('name')!r} in spec.volumes")
                if not str(mount.get("mountPath", "")).startswith("/"):
                    raise VolumeInvalid(f"{where}.mountPath: expected an absolute path, got {mount.get('mountPath')!r}")
                for sub in ("subPath", "subPathExpr"):
                    if mount.get(sub):
                        _relative(mount[sub], f"{where}.{sub}", what=sub)


# -- materialisation ----------------------------------------------------------------------------------------


async def _get(reader: ObjectReader, resource: Resource, name: str, namespace: str) -> Obj | None:
    try:
        return await reader.get(resource, name, namespace=namespace)
    except NotFound:
        return None


def _data(obj: Obj, *, secret: bool) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if secret:
        out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    else:
        out.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


Files = dict[str, tuple[bytes, int]]


async def _keys(reader: ObjectReader, body: Mapping[str, Any], *, secret: bool, namespace: str, default: int) -> Files:
    kind = "secret" if secret else "configmap"
    name = str(body.get("secretName" if secret and "secretName" in body else "name") or "")
    obj = await _get(reader, SECRET if secret else CONFIGMAP, name, namespace)
    optional = bool(body.get("optional"))
    if obj is None:
        if optional:
            return {}
        raise VolumePending(f'{kind} "{name}" not found')
    data = _data(obj, secret=secret)
    items = body.get("items")
    if not items:
        return {key: (value, default) for key, value in data.items()}
    files: Files = {}
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if optional:
                continue
            raise VolumePending(f"{kind} references non-existent {'secret ' if secret else 'config '}key: {key}")
        files[str(item["path"])] = (data[key], int(item.get("mode", default)))
    return files


def _field_value(pod: Obj, path: str) -> str:
    meta = pod.get("metadata") or {}
    for which in ("labels", "annotations"):
        values = meta.get(which) or {}
        if path == f"metadata.{which}":
            return "\n".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(values.items()))
        if path.startswith(f"metadata.{which}['") and path.endswith("']"):
            return str(values.get(path[len(which) + 11 : -2], ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": "localhost",
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": LOCAL_POD_IP,
        "status.hostIP": LOCAL_POD_IP,
    }
    return str(simple.get(path, ""))


def _resource_value(pod: Obj, ref: Mapping[str, Any], where: str) -> str:
    """A resourceFieldRef as the kubelet writes it: the quantity divided by ``divisor``, rounded up; an unset
    limit is the machine's capacity."""
    containers = [
        *((pod.get("spec") or {}).get("containers") or ()),
        *((pod.get("spec") or {}).get("initContainers") or ()),
    ]
    wanted = ref.get("containerName")
    container = next((c for c in containers if c.get("name") == wanted), containers[0] if containers else {})
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(resource)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(resource)
    try:
        if raw is not None:
            amount = parse_quantity(raw).amount
        elif resource == "cpu":
            amount = Fraction(os.cpu_count() or 1) if kind == "limits" else Fraction(0)
        elif resource == "memory":
            amount = Fraction(psutil.virtual_memory().total) if kind == "limits" else Fraction(0)
        else:
            amount = Fraction(0)
        divisor = parse_quantity(ref.get("divisor") or "1").amount or Fraction(1)
    except QuantityError as error:
        raise VolumeInvalid(f"{where}: {error}") from None
    return str(math.ceil(amount / divisor))


def _downward(pod: Obj, items: list[Mapping[str, Any]], *, where: str, default: int) -> Files:
    files: Files = {}
    for k, item in enumerate(items):
        if "fieldRef" in item:
            value = _field_value(pod, str(item["fieldRef"].get("fieldPath", "")))
        elif "resourceFieldRef" in item:
            value = _resource_value(pod, item["resourceFieldRef"], f"{where}.items[{k}].resourceFieldRef")
        else:
            raise VolumeInvalid(f"{where}.items[{k}]: expected fieldRef or resourceFieldRef")
        files[str(item["path"])] = (value.encode(), int(item.get("mode", default)))
    return files


async def _files(reader: ObjectReader, pod: Obj, kind: str, body: Mapping[str, Any], *, where: str) -> Files:
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    default = int(body.get("defaultMode", DEFAULT_MODE))
    if kind in ("configMap", "secret"):
        return await _keys(reader, body, secret=kind == "secret", namespace=namespace, default=default)
    if kind == "downwardAPI":
        return _downward(pod, list(body.get("items") or ()), where=f"{where}.downwardAPI", default=default)
    files: Files = {}
    for j, source in enumerate(body.get("sources") or ()):
        for inner_kind, given in source.items():
            inner = {"defaultMode": default, **(given or {})}
            if inner_kind == "serviceAccountToken":
                log.info("volumes.token_skipped", volume=where, reason="no service account tokens locally")
            elif inner_kind in ("configMap", "secret", "downwardAPI"):
                files |= await _files(reader, pod, inner_kind, inner, where=f"{where}.projected.sources[{j}]")
            else:
                raise VolumeInvalid(f"{where}.projected.sources[{j}]: source {inner_kind} is not supported locally")
    return files


def _write_tree(directory: Path, files: Files) -> None:
    """Replace ``directory`` with exactly ``files`` (written aside, then swapped in)."""
    fresh = directory.with_name(f".new-{directory.name}-{uuid.uuid4().hex[:8]}")
    fresh.mkdir(parents=True, mode=0o755)
    for relative, (content, mode) in files.items():
        path = fresh / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_bytes(content)
        path.chmod(mode & 0o7777)
    fresh.chmod(0o755)
    old = directory.with_name(f".old-{directory.name}-{uuid.uuid4().hex[:8]}")
    if directory.exists():
        directory.rename(old)
    fresh.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


_HOST_TYPES = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _host_path(body: Mapping[str, Any], *, where: str) -> Path:
    path, kind = Path(str(body["path"])), str(body.get("type") or "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    elif kind == "FileOrCreate" and not path.exists():
        if not path.parent.is_dir():
            raise VolumePending(f"hostPath type check failed: {path.parent} is not a directory")
        path.touch(mode=0o644)
    kind = {"DirectoryOrCreate": "Directory", "FileOrCreate": "File"}.get(kind, kind)
    if kind in _HOST_TYPES:
        check, what = _HOST_TYPES[kind]
        try:
            ok = check(path.stat().st_mode)
        except FileNotFoundError:
            ok = False
        if not ok:
            raise VolumePending(f"hostPath type check failed: {path} is not {what}")
    elif kind:
        raise VolumeInvalid(f"{where}.hostPath.type: unknown type {kind!r}")
    return path


async def materialize(
    *, reader: ObjectReader, pod: Obj, ctx: VolumeContext, names: set[str] | None = None
) -> dict[str, Path | None]:
    """Make the pod's volumes (those in ``names``, default all); a volume's host path, or None for a tmpfs.

    Raises :class:`VolumePending` with the kubelet's ``MountVolume.SetUp failed ...`` message when a
    ConfigMap, Secret, claim or hostPath is not there yet.
    """
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    sources: dict[str, Path | None] = {}
    for i, volume in enumerate((pod.get("spec") or {}).get("volumes") or ()):
        name = str(volume["name"])
        if names is not None and name not in names:
            continue
        kind = next(k for k in volume if k != "name")
        body = volume[kind] or {}
        where = f"spec.volumes[{i}]"
        try:
            sources[name] = await _make(reader, pod, kind, body, ctx=ctx, name=name, namespace=namespace, where=where)
        except VolumePending as error:
            raise VolumePending(f'MountVolume.SetUp failed for volume "{name}" : {error}') from None
    return sources


async def _make(
    reader: ObjectReader, pod: Obj, kind: str, body: Mapping[str, Any], *, ctx: VolumeContext, name: str,
    namespace: str, where: str,
) -> Path | None:  # fmt: skip
    directory = ctx.volumes / name
    if kind in API_DATA_KINDS:
        files = await _files(reader, pod, kind, body, where=where)
        await asyncio.to_thread(_write_tree, directory, files)
        return directory
    if kind == "emptyDir":
        if body.get("medium") == "Memory":
            return None
        directory.mkdir(parents=True, exist_ok=True, mode=0o777)
        return directory
    if kind == "hostPath":
        return await asyncio.to_thread(_host_path, body, where=where)
    claim_name = str(body.get("claimName", ""))
    claim = await _get(reader, PERSISTENT_VOLUME_CLAIM, claim_name, namespace)
    if claim is None:
        raise VolumePending(f'persistentvolumeclaim "{claim_name}" not found')
    if claim["metadata"].get("deletionTimestamp"):
        raise VolumePending(f'persistentvolumeclaim "{claim_name}" is being deleted')
    path = claim_dir(ctx.state_dir, namespace, claim_name)
    path.mkdir(parents=True, exist_ok=True, mode=0o777)
    return path


# -- the mount plan -----------------------------------------------------------------------------------------


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
        sub = _relative(expand_args([str(mount["subPathExpr"])], env)[0], f"{where}.subPathExpr", what="subPathExpr")
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
    covers: dict[str, Cover] = {}
    host: list[str] = []
    done: list[Mount] = []
    for mount in mounts:
        where, real = wheres[mount.target], os.path.realpath(mount.target)
        hidden = [r for r in roots if r.is_relative_to(real)]
        if hidden and os.path.exists(real):
            raise VolumeInvalid(
                f"{where}.mountPath: {mount.target} would hide {hidden[0]}, which kray's processes share on this "
                "machine; mount the volume elsewhere"
            )
        parent = next((m for m in reversed(done) if Path(real).is_relative_to(os.path.realpath(m.target))), None)
        done.append(mount)
        if parent is not None:
            if not parent.tmpfs:  # made in the parent volume, on the host: read-only volumes cannot get it later
                inner = Path(parent.source) / Path(real).relative_to(os.path.realpath(parent.target))
                _make_point(inner, file=mount.file)
            continue
        if os.path.lexists(real):
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
        mounts=tuple(mounts), covers=ordered, host_dirs=tuple(dict.fromkeys(host)), workdir=container.get("workingDir")
    )


def _make_point(path: Path, *, file: bool) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if file:
        path.touch()
    else:
        path.mkdir(mode=0o755)


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

    A container without ``volumeMounts`` gets ``argv`` back unchanged. Raises :class:`VolumeInvalid`,
    :class:`VolumesUnsupported` (fail the pod) or :class:`VolumePending` (wait and call again).
    """
    mounts = container.get("volumeMounts") or []
    if not mounts:
        return Prepared(argv=list(argv))
    check_pod(pod)
    reason = await unsupported_reason(ctx.python)
    if reason is not None:
        field = container_field(pod, container)
        raise VolumesUnsupported(
            f'volume "{mounts[0].get("name")}" ({field}.volumeMounts[0], mountPath {mounts[0].get("mountPath")}) '
            f"is mounted in a private mount namespace, which this kernel refused: {reason}; {ENABLE_USERNS}"
        )
    sources = await materialize(reader=reader, pod=pod, ctx=ctx, names={str(m["name"]) for m in mounts})
    plan = await asyncio.to_thread(plan_container, pod=pod, container=container, sources=sources, ctx=ctx, env=env)
    _make_host_dirs(plan, ctx)
    plan_path = ctx.volumes / ".plans" / f"{container.get('name', 'container')}.json"
    plan_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    plan_path.write_text(json.dumps(plan.to_json(), indent=1))
    plan_path.chmod(0o644)
    return Prepared(argv=[ctx.python, "-I", "-m", "kray.local.mountns", str(plan_path), "--", *argv], plan=plan)


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
