"""What kray's volume modules share: the volume kinds a pod may use locally, the check of its volumes, the
errors, and where a pod's volumes live.

:mod:`kray.local.volume_sources` (making the volumes) and :mod:`kray.local.volume_plan` (the mounts of a
container) both stand on these; :mod:`kray.local.volumes` ties them together for the pod runner. The check
is pure: it raises :class:`VolumeInvalid` naming the field before anything is made.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from kray.local.sandbox import Sandbox
from kray.store import Obj, Resource

KINDS = ("configMap", "secret", "emptyDir", "downwardAPI", "projected", "hostPath", "persistentVolumeClaim")
API_DATA_KINDS = frozenset({"configMap", "secret", "downwardAPI", "projected"})
"""Mounted read-only whatever the mount says (the kubelet's ReadOnlyAPIDataVolumes)."""


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


class TokenSource(Protocol):
    """Issues a pod's ServiceAccount tokens (a TokenRequest to the apiserver, bound to the pod), for projected
    ``serviceAccountToken`` sources. Raises :class:`VolumePending` while the token cannot be had yet."""

    async def token(self, *, pod: Obj, audience: str | None, expiration_seconds: int) -> str: ...


@dataclass(frozen=True, slots=True)
class VolumeContext:
    """Where a pod's volumes live and what must never be covered by an overlay."""

    pod_dir: Path
    state_dir: Path
    protected: tuple[Path, ...] = ()
    """kray's shared roots (Ray temp root, state dir, Python environment): never hidden or overlaid."""
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    python: str = sys.executable
    sandbox: Sandbox | None = None
    """The pod's sandbox: an isolated one sends every container through the launcher, volumes or not."""
    tokens: TokenSource | None = None
    """Where projected ``serviceAccountToken`` sources get their token; None: they are skipped (local mode
    refuses them before a pod is made)."""

    @property
    def volumes(self) -> Path:
        return self.pod_dir / "volumes"

    def roots(self) -> tuple[Path, ...]:
        return (*self.protected, self.state_dir, self.pod_dir, Path(sys.prefix))


def claim_dir(state_dir: Path, namespace: str, claim: str) -> Path:
    """A persistentVolumeClaim's data: outlives pods, removed with the claim (:mod:`kray.local.claims`)."""
    return state_dir / "volumes" / namespace / claim


# -- validation (pure) --------------------------------------------------------------------------------------


def relative_path(path: object, where: str, *, what: str = "path") -> str:
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
                    if kind == "serviceAccountToken":
                        relative_path((inner or {}).get("path"), f"{where}.projected.sources[{j}].{kind}.path")
                    for k, item in enumerate((inner or {}).get("items") or ()):
                        relative_path(item.get("path"), f"{where}.projected.sources[{j}].{kind}.items[{k}].path")
        for k, item in enumerate(body.get("items") or ()) if isinstance(body, dict) else ():
            relative_path(item.get("path"), f"{where}.{kinds[0]}.items[{k}].path")
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
                        relative_path(mount[sub], f"{where}.{sub}", what=sub)
