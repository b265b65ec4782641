"""The per-pod checks of :mod:`kray.local.fit`: containers, resources, env references and volumes. Pure.

A :class:`Findings` collects, for one document, every refusal and note as (field path, message); paths
render map keys as ``kray validate`` does (``resources.limits[nvidia.com/gpu]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kray._ray.quantity import QuantityError, parse_quantity
from kray.api.structural import map_child
from kray.local.shell_commands import container_programs

VOLUME_TYPES = ("configMap", "secret", "emptyDir", "downwardAPI", "projected", "hostPath", "persistentVolumeClaim")
"""The volume types local mode mounts (docs/local-mode.md)."""
NATIVE_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
GPU_SHARE_ANNOTATIONS = ("gpu-fraction", "gpu-memory")
"""KAI scheduler's GPU sharing: a pod asks for part of a GPU by annotation instead of a resource."""
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Pod", "Job")
_CLOUD_URI = re.compile(r"\b(?:gs|gcs|s3|s3a|s3n|az|abfss?|wasbs?)://[^\s'\"]+")
K8S_TOKEN_AUTH = "Ray validates these tokens with a Kubernetes API server (TokenReview); local mode has none"
_CONFIG_KINDS = ("ConfigMap", "Secret", "PersistentVolumeClaim", "RayCluster")


def known_names(
    documents: list[dict[str, Any]], existing: frozenset[tuple[str, str, str]], *, namespace: str
) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every ConfigMap, Secret, PVC and RayCluster in the file or the store."""
    known = set(existing)
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") not in _CONFIG_KINDS:
            continue
        meta = _dict(document.get("metadata"))
        if isinstance(meta.get("name"), str):
            known.add((str(document["kind"]), _str(meta.get("namespace")) or namespace, meta["name"]))
    return known


def quantity(value: Any) -> Fraction | None:
    """A Kubernetes quantity's exact amount; None for what is not one (validation reports it)."""
    if not isinstance(value, str | int | float):
        return None
    try:
        return parse_quantity(value).amount
    except (QuantityError, ValueError, OverflowError):
        return None


def cloud_uris(value: Any) -> list[str]:
    """Cloud storage URIs (gs://, s3://, az://, abfss://...) in a string value."""
    return _CLOUD_URI.findall(value) if isinstance(value, str) else []


@dataclass
class Findings:
    """Refusals and notes of one document (a builder, local to one :func:`~kray.local.fit.plan_fit` call)."""

    documents: list[dict[str, Any]]
    known: set[tuple[str, str, str]]
    machine_commands: Callable[[str], bool]
    can_mount: bool
    namespace: str = "default"
    extended: dict[str, int] = field(default_factory=dict)
    provided: set[tuple[str, str]] = field(default_factory=set)
    """(kind, name) local mode creates itself (the cluster's token Secret)."""
    refusals: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    missing: set[tuple[str, str, str]] = field(default_factory=set)

    def refuse(self, path: str, message: str) -> None:
        if (path, message) not in self.refusals:
            self.refusals.append((path, message))

    def note(self, path: str, message: str) -> None:
        if (path, message) not in self.notes:
            self.notes.append((path, message))

    def has(self, kind: str, name: str) -> bool:
        return (kind, self.namespace, name) in self.known or (kind, name) in self.provided

    def require(self, kind: str, name: Any, path: str) -> None:
        if isinstance(name, str) and name and not self.has(kind, name):
            self.missing.add((kind, self.namespace, name))
            self.refuse(path, f'{kind.lower()} "{name}" is neither in the file nor in namespace {self.namespace}')

    def defined(self, kind: str, name: str) -> bool:
        return any(_dict(d).get("kind") == kind and _name(d) == name for d in self.documents)

    def workloads_named(self, name: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if _dict(d).get("kind") in WORKLOAD_KINDS and _name(d) == name]

    # -- resources and references ------------------------------------------------------------------

    def check_resources(self, path: str, resources: Any) -> None:
        """Extended resources (GPUs, TPUs...) beyond what this machine has."""
        refused: set[str] = set()
        for key in ("limits", "requests"):
            for name, value in _dict(_dict(resources).get(key)).items():
                if not isinstance(name, str) or name in NATIVE_RESOURCES or name.startswith("hugepages-"):
                    continue
                amount = quantity(value)
                if amount is None:
                    continue
                have = self.extended.get(name, 0)
                if amount > have and name not in refused:
                    refused.add(name)
                    self.refuse(
                        map_child(f"{path}.{key}", name), f"requests {value}, this machine has {have or 'none'}"
                    )

    def check_value_from(self, path: str, value_from: Any) -> None:
        source = _dict(value_from)
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            ref = _dict(source.get(key))
            if ref and ref.get("optional") is not True:
                self.require(kind, ref.get("name"), f"{path}.{key}.name")

    def check_env(self, path: str, container: Any) -> None:
        """env and envFrom references, and Kubernetes-only settings in env."""
        container = _dict(container)
        for index, item in enumerate(_list(container.get("env"))):
            env = _dict(item)
            here = f"{path}.env[{index}]"
            if "valueFrom" in env:
                self.check_value_from(f"{here}.valueFrom", env["valueFrom"])
            value = env.get("value")
            if env.get("name") == "RAY_ENABLE_K8S_TOKEN_AUTH" and str(value).lower() == "true":
                self.refuse(
                    here, "Ray validates these tokens with a Kubernetes API server (TokenReview); local mode has none"
                )
            if env.get("name") == "RAY_USE_TLS" and str(value).lower() in {"1", "true"}:
                self.refuse(
                    here,
                    "Ray's TLS needs certificates for the address Ray dials, and locally Ray turns the pod IP "
                    "(127.0.0.1) into this machine's network address, which a certificate made for the pod IP "
                    "does not cover: the GCS connection would fail forever",
                )
            for uri in cloud_uris(value):
                self.note(f"{here}.value", f"{uri}: local pods use this machine's own cloud credentials")
        for index, item in enumerate(_list(container.get("envFrom"))):
            source = _dict(item)
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = _dict(source.get(key))
                if ref and ref.get("optional") is not True:
                    self.require(kind, ref.get("name"), f"{path}.envFrom[{index}].{key}.name")

    def check_programs(self, path: str, container: Any) -> None:
        """A sidecar or init container runs as a process here: its programs must exist on this machine."""
        container = _dict(container)
        programs, reason = container_programs(container)
        label = f'container "{container.get("name")}"'
        if reason:
            self.refuse(f"{path}.command", f"{label} {reason} (image {container.get('image')})")
            return
        mounts = [m.get("mountPath") for m in map(_dict, _list(container.get("volumeMounts")))]
        mounted = [m.rstrip("/") + "/" for m in mounts if isinstance(m, str) and m.startswith("/")]
        missing: dict[str, list[str]] = {}
        for program in programs:
            name = program.name
            if not name or any(c in name for c in "$`") or ("/" in name and not name.startswith("/")):
                continue  # known only when the container runs
            if any(name.startswith(m) for m in mounted):
                continue  # a file of one of its volumes
            if not self.machine_commands(name):
                missing.setdefault(program.field, []).append(name)
        for key, names in missing.items():
            listed = ", ".join(names)
            verb = "is" if len(names) == 1 else "are"
            self.refuse(
                f"{path}.{key}",
                f"{label} runs {listed}, which {verb} not on this machine "
                "(pods find programs in kray's environment, then on PATH): install it, or remove the container",
            )


def check_pod(found: Findings, path: str, template: dict[str, Any]) -> None:
    """Every check of one pod template at ``path`` (``...template``)."""
    annotations = _dict(_dict(template.get("metadata")).get("annotations"))
    for key in GPU_SHARE_ANNOTATIONS:
        if key in annotations and found.extended.get("nvidia.com/gpu", 0) <= 0:
            found.refuse(
                map_child(f"{path}.metadata.annotations", key),
                f"asks for a share of a GPU ({key} {annotations[key]}), this machine has none",
            )
    spec = _dict(template.get("spec"))
    scheduler = spec.get("schedulerName")
    if isinstance(scheduler, str) and scheduler not in {"", "default-scheduler"}:
        found.note(f"{path}.spec.schedulerName", f"{scheduler} is a Kubernetes scheduler; ignored locally")
    mount_refused = False
    for key in ("containers", "initContainers"):
        for index, container in enumerate(_list(spec.get(key))):
            here = f"{path}.spec.{key}[{index}]"
            found.check_resources(f"{here}.resources", _dict(container).get("resources"))
            found.check_env(here, container)
            if key == "initContainers" or index > 0:
                found.check_programs(here, container)
            if not found.can_mount and _list(_dict(container).get("volumeMounts")) and not mount_refused:
                mount_refused = True
                found.refuse(
                    f"{here}.volumeMounts[0]",
                    "this machine gives a pod no mount namespace of its own: run kray as root, or enable "
                    "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu "
                    "also kernel.apparmor_restrict_unprivileged_userns=0)",
                )
    for index, volume in enumerate(_list(spec.get("volumes"))):
        check_volume(found, f"{path}.spec.volumes[{index}]", _dict(volume))


def check_volume(found: Findings, path: str, volume: dict[str, Any]) -> None:
    kinds = [k for k in volume if k != "name"]
    for kind in kinds:
        if kind not in VOLUME_TYPES:
            found.refuse(
                path, f"a {kind} volume cannot be mounted on this machine; local mode mounts {', '.join(VOLUME_TYPES)}"
            )
    _check_source(found, path, volume)
    for index, item in enumerate(_list(_dict(volume.get("projected")).get("sources"))):
        here = f"{path}.projected.sources[{index}]"
        source = _dict(item)
        _check_source(found, here, source)
        if "serviceAccountToken" in source:
            found.refuse(
                f"{here}.serviceAccountToken",
                "ServiceAccount tokens are issued by a Kubernetes API server; local mode has none",
            )
        if "clusterTrustBundle" in source:
            found.refuse(f"{here}.clusterTrustBundle", "ClusterTrustBundles live in a Kubernetes API server")


def _check_source(found: Findings, path: str, volume: dict[str, Any]) -> None:
    for key, kind, name_key in (
        ("configMap", "ConfigMap", "name"),
        ("secret", "Secret", "secretName" if "secretName" in _dict(volume.get("secret")) else "name"),
        ("persistentVolumeClaim", "PersistentVolumeClaim", "claimName"),
    ):
        source = _dict(volume.get(key))
        if source and source.get("optional") is not True:
            found.require(kind, source.get(name_key), f"{path}.{key}.{name_key}")


def _name(document: Any) -> str:
    return _str(_dict(_dict(document).get("metadata")).get("name"))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
