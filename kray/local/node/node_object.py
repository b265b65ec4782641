"""The Node object the agent registers and the status it reports, as a kubelet writes them (pure: no I/O).

What the rest of the cluster reads from it: the scheduler its ``allocatable`` and taints, the node lifecycle
controller its ``Ready`` condition (with the node Lease, :mod:`kray.local.node.lease`), ``kubectl get nodes``
its addresses and ``nodeInfo``. Capacity defaults to this machine's; flags override it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from kray import __version__
from kray._ray.quantity import QuantityError, parse_quantity
from kray.store import Obj, Resource

__all__ = [
    "ENDPOINT_SLICE",
    "NODE",
    "Capacity",
    "NodeSpec",
    "Taint",
    "TaintError",
    "conditions",
    "node_manifest",
    "node_status",
    "parse_taint",
    "status_differs",
]

NODE = Resource("v1", "Node", "nodes", namespaced=False, status_subresource=True)
ENDPOINT_SLICE = Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
KUBELET_VERSION = "v1.37.2-kray"
"""What ``kubectl get nodes`` shows as VERSION: semver-shaped, as components that parse it expect."""
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
CONTROLLER_TAINTS = "node.kubernetes.io/"
"""Taints the node lifecycle controller manages (not-ready, unreachable...): a re-registering agent keeps them."""


class TaintError(ValueError):
    """A ``--taint`` that is not ``key[=value]:Effect``."""


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: str
    value: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


def parse_taint(text: str) -> Taint:
    """``key=value:Effect`` or ``key:Effect``, as ``kubectl taint`` writes them."""
    body, sep, effect = text.rpartition(":")
    if not sep or effect not in TAINT_EFFECTS:
        raise TaintError(f"{text!r}: expected key[=value]:Effect with Effect one of {', '.join(TAINT_EFFECTS)}")
    key, _, value = body.partition("=")
    if not key:
        raise TaintError(f"{text!r}: the taint has no key")
    return Taint(key=key, effect=effect, value=value)


@dataclass(frozen=True, slots=True)
class Capacity:
    cpu: str
    memory: str
    pods: str
    ephemeral_storage: str

    @classmethod
    def of_machine(
        cls, *, state_dir: str, cpu: str | None = None, memory: str | None = None, pods: int | None = None
    ) -> Capacity:
        """This machine's CPUs, memory and the state dir's disk, unless given (quantities are checked)."""
        for name, value in (("--cpu", cpu), ("--memory", memory)):
            if value is not None:
                try:
                    parse_quantity(value)
                except QuantityError as error:
                    raise ValueError(f"{name}: {value!r} is not a quantity ({error})") from None
        if pods is not None and pods < 1:
            raise ValueError(f"--pods: expected a positive number, got {pods}")
        disk = psutil.disk_usage(state_dir if os.path.isdir(state_dir) else "/").total
        return cls(
            cpu=cpu or str(os.cpu_count() or 1),
            memory=memory or f"{psutil.virtual_memory().total // 1024}Ki",
            pods=str(pods or 110),
            ephemeral_storage=f"{disk // 1024}Ki",
        )

    def to_json(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
        }


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    capacity: Capacity
    host_ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Taint] = ()
    pod_cidr: str | None = None


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_manifest(spec: NodeSpec, *, existing: Obj | None = None) -> Obj:
    """The Node to create, or (``existing``) the metadata and spec to patch over the one a previous run left:
    our labels added, our taints replacing the old ones but the node lifecycle controller's kept."""
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _arch(),
        "kray.io/node-agent": "true",
        **spec.labels,
    }
    kept = [
        t
        for t in ((existing or {}).get("spec") or {}).get("taints") or []
        if t.get("key", "").startswith(CONTROLLER_TAINTS)
    ]
    node_spec: dict[str, Any] = {"taints": [*kept, *(t.to_json() for t in spec.taints)]}
    if spec.pod_cidr and not ((existing or {}).get("spec") or {}).get("podCIDR"):
        node_spec |= {"podCIDR": spec.pod_cidr, "podCIDRs": [spec.pod_cidr]}
    return {
        "apiVersion": NODE.api_version,
        "kind": NODE.kind,
        "metadata": {"name": spec.name, "labels": labels},
        "spec": node_spec,
    }


def conditions(previous: Sequence[Mapping[str, Any]] | None, *, now: str, ready: bool = True) -> list[dict[str, Any]]:
    """The kubelet's four conditions, heartbeat ``now``; a transition time moves only when a status changes."""
    wanted = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        (
            "Ready",
            "True" if ready else "False",
            "KubeletReady" if ready else "KubeletNotReady",
            "kubelet is posting ready status" if ready else "the node agent is stopping",
        ),
    ]
    before = {str(c.get("type")): c for c in previous or ()}
    out = []
    for kind, status, reason, message in wanted:
        old = before.get(kind) or {}
        moved = old.get("status") != status or not old.get("lastTransitionTime")
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now if moved else old["lastTransitionTime"],
            }
        )
    return out


def node_status(spec: NodeSpec, *, previous: Obj | None, now: str, ready: bool = True) -> dict[str, Any]:
    capacity = spec.capacity.to_json()
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": conditions(((previous or {}).get("status") or {}).get("conditions"), now=now, ready=ready),
        "addresses": [{"type": "InternalIP", "address": spec.host_ip}, {"type": "Hostname", "address": spec.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": _node_info(),
    }


def status_differs(stored: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Whether the Node's stored status says something else than ``wanted``, heartbeat and transition times
    aside: the node lifecycle controller's Ready=Unknown after a stalled agent, an edit. The kubelet posts
    at once then, and otherwise only every report interval."""
    stored = stored or {}

    def said(entries: Sequence[Mapping[str, Any]] | None) -> dict[str, tuple[Any, ...]]:
        return {str(c.get("type")): (c.get("status"), c.get("reason"), c.get("message")) for c in entries or ()}

    if said(stored.get("conditions")) != said(wanted.get("conditions")):
        return True
    return any(stored.get(key) != value for key, value in wanted.items() if key != "conditions")


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _node_info() -> dict[str, str]:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    return {
        "machineID": _read("/etc/machine-id"),
        "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
        "bootID": _read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": platform.release(),
        "osImage": release.get("PRETTY_NAME", platform.platform()),
        "containerRuntimeVersion": f"kray://{__version__}",
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": _arch(),
    }
