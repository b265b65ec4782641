"""What a RayService's status and its HTTPRoute said during an upgrade, and when: the evidence an incremental
upgrade test checks (the weights as they stepped, the clusters' target capacities, the conditions seen) and the
post-mortem of a failed request (what the route's generation, weights and status, and the capacities, were
around the request's start).

Why watches and not polling: a status can live for less than a poll interval (the old cluster at capacity 0 lasts
one reconcile before the promotion), and a failed request is explained by the order of such changes to within
milliseconds. Each watch event is stamped with the host's wall clock, the clock the request loop stamps its
requests with (pods are processes on this machine). The watches use clients of their own, closed to stop them.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lightkube import Client, KubeConfig
from lightkube.generic_resource import create_namespaced_resource

from tests.e2e.support import E2E, RayService, get_obj

Gateway = create_namespaced_resource("gateway.networking.k8s.io", "v1", "Gateway", "gateways")
HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")


def serve_svc(cluster: str) -> str:
    """The per-cluster serve Service a backendRef names."""
    return f"{cluster}-serve-svc"


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {str(c.get("type")): str(c.get("status")) for c in (obj.get("status") or {}).get("conditions") or ()}


def service_view(service: dict[str, Any]) -> dict[str, Any]:
    """Both sides as [cluster, targetCapacity, trafficRoutedPercent], and the conditions."""
    status = service.get("status") or {}
    sides = {
        side: [entry.get("rayClusterName"), entry.get("targetCapacity"), entry.get("trafficRoutedPercent")]
        for side, key in (("active", "activeServiceStatus"), ("pending", "pendingServiceStatus"))
        for entry in [status.get(key) or {}]
    }
    return {**sides, "conditions": conditions(service)}


def route_view(route: dict[str, Any]) -> dict[str, Any]:
    """Generation, weight per backend, and the generations the gateway's Accepted conditions were written for."""
    refs = [r for rule in (route.get("spec") or {}).get("rules") or () for r in rule.get("backendRefs") or ()]
    accepted = [
        c.get("observedGeneration")
        for parent in (route.get("status") or {}).get("parents") or ()
        for c in parent.get("conditions") or ()
        if c.get("type") == "Accepted" and c.get("status") == "True"
    ]
    return {
        "generation": (route.get("metadata") or {}).get("generation"),
        "weights": {r["name"]: r.get("weight") for r in refs},
        "accepted_for": accepted,
    }


def snapshot(e2e: E2E, namespace: str, name: str) -> dict[str, Any]:
    """:func:`service_view` of RayService ``name`` with its route's :func:`route_view` (if any) under ``route``."""
    found = service_view(get_obj(e2e.client, RayService, name, namespace) or {})
    route = get_obj(e2e.client, HTTPRoute, f"{name}-httproute", namespace)
    if route is not None:
        found["route"] = route_view(route)
    return found


@dataclass
class Timeline:
    """Watches of the RayService ``name`` and its HTTPRoute; after each event the merged view, stamped."""

    e2e: E2E
    namespace: str
    name: str
    entries: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _state: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _clients: list[Client] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Timeline:
        for kind in (RayService, HTTPRoute):
            client = Client(KubeConfig.from_file(self.e2e.plane.kubeconfig))
            self._clients.append(client)
            thread = threading.Thread(target=self._watch, args=(client, kind), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for client in self._clients:
            client.close()  # a watch blocked on its stream ends at its 1 s server timeout, then finds it closed
        for thread in self._threads:
            thread.join(10)

    def _watch(self, client: Client, kind: Any) -> None:
        wanted = self.name if kind is RayService else f"{self.name}-httproute"
        try:
            for _, obj in client.watch(kind, namespace=self.namespace, server_timeout=1):
                if self._stop.is_set():
                    return
                raw = obj.to_dict()
                if (raw.get("metadata") or {}).get("name") != wanted:
                    continue
                self._record(kind is RayService, raw)
        except Exception as error:
            if not self._stop.is_set():
                self.errors.append(f"{time.time():.3f} watch of {kind.__name__}: {type(error).__name__}: {error}")

    def _record(self, is_service: bool, raw: dict[str, Any]) -> None:
        at = time.time()
        with self._lock:
            if is_service:
                self._state.update(service_view(raw))
            else:
                self._state["route"] = route_view(raw)
            if not self.entries or self.entries[-1][1] != self._state:
                self.entries.append((at, copy.deepcopy(self._state)))

    def _copy(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self.entries)

    def weights(self, cluster: str) -> list[int]:
        """The route's weight for ``cluster``'s backend as it changed (absent: not listed)."""
        out: list[int] = []
        for _, entry in self._copy():
            weight = ((entry.get("route") or {}).get("weights") or {}).get(serve_svc(cluster))
            if weight is not None and (not out or out[-1] != weight):
                out.append(int(weight))
        return out

    def capacities(self, side: str) -> list[tuple[str | None, int | None]]:
        """(cluster, targetCapacity) of the status' ``active`` or ``pending`` side as it changed."""
        out: list[tuple[str | None, int | None]] = []
        for _, entry in self._copy():
            if side not in entry:
                continue
            name, capacity, _ = entry[side]
            if not out or out[-1] != (name, capacity):
                out.append((name, capacity))
        return out

    def condition_seen(self, kind: str) -> bool:
        return any((entry.get("conditions") or {}).get(kind) == "True" for _, entry in self._copy())

    def pending_weight(self) -> int:
        """The route's weight for the status' pending cluster now (0 while it has no backend)."""
        entries = self._copy()
        if not entries or "pending" not in entries[-1][1]:
            return 0
        entry = entries[-1][1]
        pending = entry["pending"][0]
        weight = ((entry.get("route") or {}).get("weights") or {}).get(serve_svc(pending)) if pending else None
        return int(weight or 0)

    def moments(self) -> list[str]:
        """The changes, compact: time from the first, each side's cluster/capacity/traffic, the route's weights and
        generation with the generations accepted (for a report)."""
        entries = self._copy()
        t0 = entries[0][0] if entries else 0.0
        return [f"{t - t0:6.2f}s {json.dumps(e, sort_keys=True)}" for t, e in entries]

    def around(self, at: float, *, before: float = 8.0, after: float = 2.0) -> str:
        """The entries from ``before`` s before ``at`` to ``after`` s after it, the last one before included."""
        entries = self._copy()
        earlier = [i for i, (t, _) in enumerate(entries) if t <= at - before]
        start = earlier[-1] if earlier else 0
        lines = [f"  {t - at:+7.3f}s {json.dumps(e, sort_keys=True)}" for t, e in entries[start:] if t <= at + after]
        return "\n".join(lines)

    def explain(self, failures: list[dict[str, Any]]) -> str:
        """Each failed request (its start time) against what the cluster said around it."""
        parts = [f"failed request {f}:\n{self.around(float(f['at']))}" for f in failures[:5]]
        if self.errors:
            parts.append(f"timeline gaps: {self.errors[:5]}")
        return "\n".join(parts)
