"""What the RayService reconcile remembers between calls, per RayService: KubeRay's two in-memory maps
(the deletion schedule of unused clusters, the Serve config last PUT to each cluster) and the last answer
of each cluster's Serve API and Serve proxy, so those are asked at most once per interval.

Why spaced: every watch event (a pod's readiness, a status write) triggers a reconcile; without spacing a
busy RayService asks its head's dashboard many times a second. Invariants: an answer older than the
interval is asked again; a successful PUT forgets the cluster's last Serve answer (it described a config
no longer there, and would make the planner PUT again); everything of a RayService goes with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kray.runtime.informer import ObjectKey


@dataclass(frozen=True, slots=True)
class ServeAnswer:
    """One ``GET /api/serve/applications/``: the details, or why there were none."""

    at: float
    details: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass
class ServiceMemory:
    deletion_schedule: Mapping[str, datetime] = field(default_factory=dict)
    serve_configs: dict[str, str] = field(default_factory=dict)
    serve_answers: dict[str, ServeAnswer] = field(default_factory=dict)
    proxy_answers: dict[str, tuple[float, bool]] = field(default_factory=dict)

    def keep_clusters(self, names: frozenset[str]) -> None:
        """Forget the answers about clusters that no longer exist."""
        for answers in (self.serve_answers, self.proxy_answers):
            for name in [n for n in answers if n not in names]:
                del answers[name]

    def keep_serve_configs(self, names: frozenset[str]) -> None:
        for name in [n for n in self.serve_configs if n not in names]:
            del self.serve_configs[name]

    def put(self, cluster: str, cache_as: str | None) -> None:
        """A PUT succeeded: cache its config (KubeRay caches no empty one); the last Serve answer is stale."""
        if cache_as:
            self.serve_configs[cluster] = cache_as
        self.serve_answers.pop(cluster, None)


@dataclass
class Memories:
    """Every RayService's :class:`ServiceMemory`, by (namespace, name)."""

    by_service: dict[ObjectKey, ServiceMemory] = field(default_factory=dict)

    def of(self, key: ObjectKey) -> ServiceMemory:
        return self.by_service.setdefault(key, ServiceMemory())

    def forget(self, key: ObjectKey) -> None:
        self.by_service.pop(key, None)


def fresh(at: float | None, *, now: float, interval: float) -> bool:
    """An answer taken at ``at`` still stands at ``now``."""
    return at is not None and 0 <= now - at < interval
