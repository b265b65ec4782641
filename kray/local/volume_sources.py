"""Makes a pod's volumes in its dir as the kubelet's volume plugins do: configMap, secret, downwardAPI and
projected files (a projected ``serviceAccountToken`` from the context's :class:`TokenSource`, on a node), disk
emptyDirs, checked hostPaths and per-claim dirs.

Apart from the mount plan because this is the part that does I/O against the store (ConfigMaps, Secrets,
claims, read through any :class:`ObjectReader`) and the disk: each API-data volume is written aside and
swapped in whole (the kubelet's atomic writer), so a container never sees half a volume. A missing
non-optional object raises :class:`VolumePending` with the kubelet's words.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import shutil
import stat
import uuid
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import psutil
import structlog

from kray._ray.quantity import QuantityError, parse_quantity
from kray.local.podenv import pod_fields
from kray.local.volume_spec import (
    API_DATA_KINDS,
    ObjectReader,
    TokenSource,
    VolumeContext,
    VolumeInvalid,
    VolumePending,
    claim_dir,
)
from kray.store import CONFIGMAP, PERSISTENT_VOLUME_CLAIM, SECRET, Obj, Resource
from kray.store.errors import NotFound

log = structlog.get_logger(__name__)

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
"""A serviceAccountToken source's ``expirationSeconds`` when it names none (the API's default)."""


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
    if path == "status.podIPs":  # env only: the apiserver refuses it in a downwardAPI volume
        return ""
    return str(pod_fields(pod).get(path, ""))


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


async def _files(
    reader: ObjectReader, pod: Obj, kind: str, body: Mapping[str, Any], *, where: str, tokens: TokenSource | None
) -> Files:
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
            if inner_kind == "serviceAccountToken" and tokens is not None:
                token = await tokens.token(
                    pod=pod,
                    audience=inner.get("audience") or None,
                    expiration_seconds=int(inner.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS),
                )
                files[str(inner.get("path") or "token")] = (token.encode(), default)
            elif inner_kind == "serviceAccountToken":
                log.info("volumes.token_skipped", volume=where, reason="no service account tokens locally")
            elif inner_kind in ("configMap", "secret", "downwardAPI"):
                here = f"{where}.projected.sources[{j}]"
                files |= await _files(reader, pod, inner_kind, inner, where=here, tokens=tokens)
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
        files = await _files(reader, pod, kind, body, where=where, tokens=ctx.tokens)
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
