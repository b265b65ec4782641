"""Which pods a pod runner runs, how long their stop may take, and how a deleted pod is let go.

The one thing local mode's runner and the node agent decide differently about a pod's life (where its
processes run is the other: :mod:`kray.local.sandbox`):

- local mode runs every pod of its store; each carries the runner's finalizer (set by the controllers that
  create them), so a deleted pod stays until its processes are gone, and the runner then drops the finalizer;
- the node agent (:class:`kray.local.node.policy.NodePolicy`) runs the pods bound to its node, created by
  others and carrying nothing of ours; the apiserver keeps a gracefully deleted pod (``deletionTimestamp``)
  until its kubelet deletes it again with ``gracePeriodSeconds: 0``, which the agent does once its processes
  are gone.
"""

from __future__ import annotations

import contextlib
import os
from typing import Protocol

from kray.store import POD, Obj, Store
from kray.store.errors import NotFound

__all__ = ["FINALIZER", "LocalPolicy", "PodPolicy", "grace_of", "host_env", "image_env"]

FINALIZER = "kray.io/pod-runner"
"""Set on every pod local mode creates: a deleted pod stays (Terminating, with a deletionTimestamp) until the
runner has stopped its processes, as the kubelet's graceful deletion keeps a pod until its containers are
gone. Without it a suspended or deleted cluster would read as gone while its Ray processes still run."""


class PodPolicy(Protocol):
    @property
    def field_selector(self) -> str | None:
        """What the runner's pod informer asks the store for (None: every pod)."""
        ...

    def ours(self, pod: Obj) -> bool:
        """Whether this runner runs the pod."""
        ...

    def held(self, pod: Obj) -> bool:
        """Whether a deleted pod (``deletionTimestamp`` set) waits for this runner to stop its processes."""
        ...

    def grace(self, pod: Obj, *, default: float) -> float:
        """Seconds between SIGTERM and SIGKILL when the pod stops."""
        ...

    async def release(self, store: Store, pod: Obj) -> None:
        """Let a deleted pod go: its processes are gone. Never raises NotFound."""
        ...

    def base_env(self) -> dict[str, str]:
        """What every container's environment starts from, before the sandbox's and the spec's."""
        ...


def host_env() -> dict[str, str]:
    """The runner's own environment less Ray's and kray's variables: local pods run as the user's programs."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "KRAY_"))}


def image_env() -> dict[str, str]:
    """What an image's environment typically holds (``PATH``, ``HOME``, ``LANG``), and nothing of the agent's:
    its kubeconfig, credentials or proxies must not reach a pod, which talks to the apiserver as its service
    account."""
    return {
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": os.path.expanduser("~") if os.geteuid() != 0 else "/root",
        "LANG": "C.UTF-8",
    }


def grace_of(pod: Obj, *, default: float, deleting: bool) -> float:
    """The pod's grace period: the delete's (``deletionGracePeriodSeconds``) when ``deleting``, else the spec's
    ``terminationGracePeriodSeconds``, else ``default``."""
    meta = pod.get("metadata") or {}
    value = meta.get("deletionGracePeriodSeconds") if deleting and meta.get("deletionTimestamp") else None
    if value is None:
        value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    try:
        return default if value is None else max(0.0, float(value))
    except (TypeError, ValueError):
        return default


class LocalPolicy:
    """Local mode: every pod, held by :data:`FINALIZER`. The local store's delete sets no grace period
    (``deletionGracePeriodSeconds: 0``), so the spec's, or the runner's default, is the grace period."""

    field_selector: str | None = None

    def ours(self, pod: Obj) -> bool:
        return True

    def held(self, pod: Obj) -> bool:
        return FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or [])

    def grace(self, pod: Obj, *, default: float) -> float:
        return grace_of(pod, default=default, deleting=False)

    async def release(self, store: Store, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        finalizers = meta.get("finalizers") or []
        if FINALIZER not in finalizers:
            return
        remaining = {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER]}}
        with contextlib.suppress(NotFound):
            await store.patch(POD, meta["name"], namespace=meta.get("namespace") or "default", patch=remaining)

    def base_env(self) -> dict[str, str]:
        return host_env()
