"""The local serve address of every RayService: a :class:`~kray.local.serveproxy.ServeProxy` port routed as its
status says.

Why here: on Kubernetes clients of a RayService use ``<rs>-serve-svc``, whose selector KubeRay moves from the
active cluster to the new one on promotion (``reconcileServices``), or a Gateway HTTPRoute whose two
``backendRefs`` carry the active and pending clusters' ``calculateTrafficRoutedPercent`` weights during a
``NewClusterWithIncrementalUpgrade`` (``createHTTPRoute``, rayservice_controller.go). On one machine nothing
routes by Service, so the local control plane plays that part from the store alone -- RayService status
(``activeServiceStatus``/``pendingServiceStatus``: ``rayClusterName``, ``trafficRoutedPercent``) and each
RayCluster's serve port -- and the controller, shared with Kubernetes, knows nothing of it.

Where the address lives: the annotation ``kray.io/serve-address`` (``127.0.0.1:<port>``) on the RayService,
as a local cluster's ports live in ``kray.io/local-ports`` on its RayCluster (which ``kray get clusters``
shows through ``status.endpoints``, derived from them). Not a status field: the controller replaces the whole
status with the one it plans, so a local-only field would vanish at its next write, while annotations
survive both the controller's writes and ``kray apply``'s three-way merge. The annotation is written once,
when the port is reserved (:class:`~kray.local.ports.PortAllocator`, owner ``rayservice/<ns>/<name>``), and
read back after a restart so the address stays; the port is released when the RayService goes.

History: each ``UpdatedServeApplications`` Event (the controller's, after a Serve config PUT succeeded) is
recorded once (by Event name) with the cluster it names and a hash of the RayService's ``serveConfigV2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
import yaml

from kray.controllers.common import labels as keys
from kray.local.adjust import LOCAL_HOST, ClusterPorts
from kray.local.environment import PORTS_ANNOTATION
from kray.local.history import JobHistory, ServeConfigChange
from kray.local.ports import PortAllocator
from kray.local.serveproxy import Backend, ProxyThread
from kray.runtime.informer import Informer, ObjectKey, key_of
from kray.store import RAYSERVICE, Obj, Store
from kray.store.errors import NotFound

log = structlog.get_logger(__name__)

SERVE_ADDRESS_ANNOTATION = "kray.io/serve-address"
PUT_REASON = "UpdatedServeApplications"
_PUT_MESSAGE = re.compile(r"to the RayCluster (?P<namespace>[^/\s]+)/(?P<cluster>\S+)$")


def serve_address(rayservice: Mapping[str, Any]) -> str | None:
    """``127.0.0.1:<port>`` of a RayService's local serve address, once reserved (None before)."""
    text = ((rayservice.get("metadata") or {}).get("annotations") or {}).get(SERVE_ADDRESS_ANNOTATION) or ""
    host, _, port = text.rpartition(":")
    return text if host and port.isdigit() else None


def port_owner(namespace: str, name: str) -> str:
    return f"rayservice/{namespace}/{name}"


def cluster_serve_address(cluster: Mapping[str, Any]) -> str | None:
    """A RayCluster's Serve proxy on loopback (every proxy of the cluster binds its serve port)."""
    text = ((cluster.get("metadata") or {}).get("annotations") or {}).get(PORTS_ANNOTATION) or ""
    port = ClusterPorts.parse_annotation(text).get("serve")
    return None if port is None else f"{LOCAL_HOST}:{port}"


def backends(rayservice: Mapping[str, Any], cluster_address: Callable[[str], str | None]) -> tuple[Backend, ...]:
    """Where the RayService's requests go now. Pure.

    The active cluster takes everything (the serve Service selects its pods only), unless the pending
    cluster has a ``trafficRoutedPercent``: then both take their percentages, as the HTTPRoute's weights.
    No active cluster (still initializing): nowhere, the proxy answers 503. A cluster whose serve port is
    not known is left out.
    """
    status = rayservice.get("status") or {}
    active = status.get("activeServiceStatus") or {}
    pending = status.get("pendingServiceStatus") or {}
    active_name, pending_name = active.get("rayClusterName"), pending.get("rayClusterName")
    active_at = cluster_address(active_name) if active_name else None
    pending_at = cluster_address(pending_name) if pending_name else None
    pending_share = pending.get("trafficRoutedPercent")
    if pending_at is None or pending_at == active_at or not isinstance(pending_share, int):
        return () if active_at is None else (Backend(active_at),)
    active_share = active.get("trafficRoutedPercent")
    active_share = 100 - pending_share if not isinstance(active_share, int) else active_share
    chosen = [(active_at, active_share), (pending_at, pending_share)]
    routed = tuple(Backend(at, max(0, share)) for at, share in chosen if at is not None)
    if not any(b.weight for b in routed):  # weights that route nothing: keep serving from the active cluster
        return () if active_at is None else (Backend(active_at),)
    return routed


def config_digest(serve_config_v2: str | None) -> tuple[str, str]:
    """(hash, short form) of a ``serveConfigV2``: the hash of its parsed YAML (formatting does not count),
    and its applications as ``name route_prefix``."""
    text = serve_config_v2 or ""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = text
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    apps = parsed.get("applications") if isinstance(parsed, dict) else None
    names = [
        f"{app.get('name', '?')} {app.get('route_prefix', '/')}".strip() for app in apps or () if isinstance(app, dict)
    ]
    return digest, ", ".join(names)


def slim_event(event: Obj) -> Obj:
    """Only the RayService Serve-config Events keep their fields in the informer's cache."""
    involved = event.get("involvedObject") or {}
    meta = event.get("metadata") or {}
    if involved.get("kind") != "RayService" or event.get("reason") != PUT_REASON:
        return {"metadata": {k: meta.get(k) for k in ("name", "namespace", "resourceVersion")}}
    return event


def _owner_of_cluster(cluster: Obj) -> ObjectKey | None:
    labels = (cluster.get("metadata") or {}).get("labels") or {}
    if labels.get(keys.ORIGINATED_FROM_CRD) != "RayService" or not labels.get(keys.ORIGINATED_FROM_CR_NAME):
        return None
    return ObjectKey(((cluster.get("metadata") or {}).get("namespace") or "", labels[keys.ORIGINATED_FROM_CR_NAME]))


@dataclass
class ServeRoutes:
    """Keeps one proxy port per live RayService, routed to its clusters' Serve proxies."""

    store: Store
    ports: PortAllocator
    services: Informer
    clusters: Informer
    events: Informer | None = None
    history: JobHistory | None = None
    proxy: ProxyThread = field(default_factory=ProxyThread)
    """On its own thread: nothing else the server does delays a request (:mod:`kray.local.serveproxy.threaded`)."""
    _dirty: set[ObjectKey] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _changes: list[Obj] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.services.add_handler(lambda old, new: self._mark(key_of(new or old or {})))
        self.clusters.add_handler(self._cluster_changed)
        if self.events is not None:
            self.events.add_handler(self._event_seen)

    def address(self, namespace: str, name: str) -> str | None:
        port = self.proxy.port(port_owner(namespace, name))
        return None if port is None else f"{self.proxy.host}:{port}"

    def _mark(self, key: ObjectKey) -> None:
        self._dirty.add(key)
        self._wake.set()

    def _cluster_changed(self, old: Obj | None, new: Obj | None) -> None:
        owner = _owner_of_cluster(new or old or {})
        if owner is not None:
            self._mark(owner)

    def _event_seen(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and new.get("reason") == PUT_REASON:
            self._changes.append(new)
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the informers until ``stop``; then close every port (their reservations stay, for the
        restarted server to open the same ones)."""
        stopping = asyncio.ensure_future(stop.wait())
        # A stop before the informers synced must end this too (they never sync once stopped).
        synced: asyncio.Future[Any] = asyncio.gather(self.services.synced.wait(), self.clusters.synced.wait())
        await asyncio.wait([synced, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not synced.done():
            synced.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await synced
        try:
            if not stop.is_set():
                self._release_strays()
            while not stop.is_set():
                waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
                self._wake.clear()
                await self._drain()
        finally:
            stopping.cancel()
            await self.proxy.aclose()

    async def _drain(self) -> None:
        while self._dirty:
            key = self._dirty.pop()
            try:
                await self.sync(key)
            except Exception:  # one RayService's failure never stops the others
                log.exception("serve_routes.sync_failed", namespace=key[0], name=key[1])
        changes, self._changes = self._changes, []
        for event in changes:
            await self._record(event)

    async def sync(self, key: ObjectKey) -> None:
        """Bring one RayService's port and route table in line with the store (idempotent)."""
        namespace, name = key
        owner = port_owner(namespace, name)
        service = self.services.get(key)
        if service is None or service["metadata"].get("deletionTimestamp"):
            await self.proxy.close(owner)
            self.ports.release(owner)
            return
        port = await self._open(service, owner)
        if port is None:
            return
        table = backends(service, self._cluster_address(namespace))
        if self.proxy.table(owner).backends != table:
            await self.proxy.route(owner, table)
            log.info("serve_routes.routed", namespace=namespace, name=name, backends=[b.address for b in table])

    def _cluster_address(self, namespace: str) -> Callable[[str], str | None]:
        def find(name: str) -> str | None:
            cluster = self.clusters.get(ObjectKey((namespace, name)))
            return None if cluster is None else cluster_serve_address(cluster)

        return find

    async def _open(self, service: Obj, owner: str) -> int | None:
        """The RayService's port, open: the annotated one, else (none yet, or it cannot be bound) a new one."""
        if (open_port := self.proxy.port(owner)) is not None:
            return open_port
        known = serve_address(service)
        if known is not None:
            try:
                return await self.proxy.open(owner, int(known.rpartition(":")[2]))
            except OSError as error:  # taken while the server was down: a new address, said in the log
                log.warning("serve_routes.port_lost", owner=owner, address=known, error=str(error))
                self.ports.release(owner)
        (port,) = self.ports.allocate(1, owner=owner)
        meta = service["metadata"]
        address = f"{self.proxy.host}:{port}"
        try:
            await self.store.patch(
                RAYSERVICE,
                meta["name"],
                namespace=meta["namespace"],
                patch={"metadata": {"annotations": {SERVE_ADDRESS_ANNOTATION: address}}},
            )
        except NotFound:
            self.ports.release(owner)
            return None
        return await self.proxy.open(owner, port)

    def _release_strays(self) -> None:
        """Reservations of RayServices deleted while no server ran."""
        live = {port_owner(*key) for key in (key_of(s) for s in self.services.list())}
        for owner in set(self.ports.reservations().values()):
            if owner.startswith("rayservice/") and owner not in live:
                self.ports.release(owner)

    async def _record(self, event: Obj) -> None:
        if self.history is None:
            return
        involved = event.get("involvedObject") or {}
        match = _PUT_MESSAGE.search(event.get("message") or "")
        namespace, name = involved.get("namespace") or "", involved.get("name") or ""
        service = self.services.get(ObjectKey((namespace, name)))
        digest, summary = config_digest(((service or {}).get("spec") or {}).get("serveConfigV2"))
        change = ServeConfigChange(
            event=event["metadata"]["name"],
            namespace=namespace,
            name=name,
            uid=involved.get("uid") or "",
            cluster=match.group("cluster") if match else "",
            time=event.get("lastTimestamp") or event.get("firstTimestamp") or "",
            config_hash=digest,
            summary=summary,
        )
        try:
            await asyncio.to_thread(self.history.serve_config_changed, change)
        except sqlite3.Error as error:  # history is best effort, as Events are
            log.warning("serve_routes.history_failed", namespace=namespace, name=name, error=str(error))
