"""Pod sandboxes: what a pod's containers share, and the one thing local mode and a node agent do differently.

A CRI runtime starts a *pod sandbox* before any container of a pod (its network namespace, its IP, its
hostname) and removes it after the last one. The pod runner does the same through a :class:`Sandboxes`
port, so one runner serves both places:

- local mode (:class:`HostSandboxes`): every pod shares the host's network; its IP is ``127.0.0.1`` and
  local mode's controllers give each pod its own ports;
- the node agent (:mod:`kray.local.node`): each pod gets its own network namespace, veth and IP, a hosts
  file resolving the cluster's Services, and the apiserver's address, as a kubelet with a CNI plugin gives.

The launcher (:mod:`kray.local.mountns`) enters the sandbox before it mounts a container's volumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kray.store import Obj

__all__ = ["LOCAL_POD_IP", "HostSandboxes", "Sandbox", "SandboxError", "Sandboxes"]

LOCAL_POD_IP = "127.0.0.1"


class SandboxError(Exception):
    """A pod's sandbox cannot be made (the pod fails with this message: it names what is missing)."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """Where a pod's containers run. Equal for every container of a pod, and the same again for the same
    pod uid after an agent restart (a restarted agent adopts the processes and their namespaces)."""

    ip: str
    """The pod's IP (``status.podIP``): what probes dial and what the downward API answers."""
    host_ip: str = LOCAL_POD_IP
    """The node's IP (``status.hostIP``)."""
    node_name: str = "localhost"
    """``spec.nodeName`` as the downward API answers it when the pod does not name one."""
    netns: str | None = None
    """A network namespace file (``/run/netns/<name>``) every container enters; None: the host's network."""
    hostname: str | None = None
    """The pod's hostname, set in a UTS namespace of its own; None: the host's."""
    files: tuple[tuple[str, str], ...] = ()
    """(host file, path in the container) bound read-only over each container's view: ``/etc/hosts``,
    ``/etc/resolv.conf``, as the kubelet manages them."""
    private_tmp: bool = False
    """Each container gets a ``/tmp`` of its own (in its pod's dir), as an image's filesystem gives it."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to every container's environment (``KUBERNETES_SERVICE_HOST``/``_PORT``)."""

    @property
    def isolated(self) -> bool:
        """Whether containers must go through the launcher even without volumes."""
        return self.netns is not None or self.hostname is not None or bool(self.files) or self.private_tmp


class Sandboxes(Protocol):
    """Makes and removes pod sandboxes. Both calls are idempotent and safe to repeat after a restart."""

    async def create(self, pod: Obj) -> Sandbox:
        """The pod's sandbox, made if needed (raises :class:`SandboxError`)."""
        ...

    async def remove(self, pod: Obj) -> None:
        """Remove what :meth:`create` made for this pod, once none of its processes runs. Never raises."""
        ...


class HostSandboxes:
    """Local mode: every pod runs in the host's network, as ``127.0.0.1``."""

    async def create(self, pod: Obj) -> Sandbox:
        return Sandbox(ip=LOCAL_POD_IP)

    async def remove(self, pod: Obj) -> None:
        return None
