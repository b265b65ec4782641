"""``kray dev node``: a node agent that registers a Node with a real apiserver and runs the pods bound to it.

The kubelet's jobs, each done by the piece of kray that already does it locally:

- the Node (:mod:`kray.local.node.node_object`): created, or taken over from a previous run, with this
  machine's capacity unless told otherwise; its status (conditions with heartbeats, addresses, nodeInfo)
  re-posted when the apiserver's differs, else every ``status_interval``; its Lease renewed every 10 s
  (:mod:`kray.local.node.lease`);
- the pods: the local pod runner (:class:`kray.local.podrunner.PodRunner`) with the node's policy (pods whose
  ``spec.nodeName`` is this node, let go by the kubelet's final delete: :mod:`kray.local.node.policy`),
  service-account tokens from TokenRequests (:mod:`kray.local.node.tokens`) and, with a pod CIDR, a network
  namespace per pod (:class:`kray.local.node.network.NodeNetwork`, kept in step with the cluster's Services
  and EndpointSlices as kube-proxy would); without one, pods share the host's network as in local mode;
- a restart after kill -9: the runner adopts the processes its pods record, the network adopts their
  namespaces; processes and namespaces no pod bound here names are removed first (:mod:`kray.local.node.orphans`).

On stop every pod's processes are stopped and every sandbox removed; the Node stays (its Lease expires and the
node lifecycle controller marks it NotReady, as for a kubelet that died).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from kray._kube.store import KubeStore
from kray.local.node.lease import NodeLease, NodeStatusReporter
from kray.local.node.node_object import (
    ENDPOINT_SLICE,
    NODE,
    Capacity,
    NodeSpec,
    Taint,
    node_manifest,
    node_status,
    now_text,
)
from kray.local.node.orphans import find_orphans, kill, known_tags
from kray.local.node.policy import NodePolicy
from kray.local.node.tokens import PodTokens
from kray.local.podrunner import PodRunner, RunnerSettings
from kray.local.sandbox import LOCAL_POD_IP, HostSandboxes, Sandboxes
from kray.runtime.informer import Informer
from kray.store import POD, SERVICE, Obj
from kray.store.errors import NotFound, StoreError

if TYPE_CHECKING:
    from kray.local.node.network import NodeNetwork

__all__ = ["AgentConfig", "NodeAgent"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    name: str
    state_dir: Path
    kubeconfig: Path | None = None
    context: str | None = None
    cpu: str | None = None
    memory: str | None = None
    pods: int | None = None
    pod_cidr: str | None = None
    """A pod network per pod from this CIDR; None: pods share the host's network (IP 127.0.0.1)."""
    net_prefix: str | None = None
    """Names the network's kernel objects (default: derived from the node name)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    lease_interval: float = 10.0
    lease_duration: int = 40
    status_interval: float = 60.0
    debounce: float = 0.2
    """Services, EndpointSlices and pods changing together are applied to the network once."""
    grace: float = 30.0
    """A pod's grace period when it names none (the apiserver defaults it to 30 s)."""

    @property
    def prefix(self) -> str:
        return self.net_prefix or "kn" + hashlib.sha256(self.name.encode()).hexdigest()[:6]


class NodeAgent:
    def __init__(self, config: AgentConfig, *, store: KubeStore | None = None) -> None:
        self.config = config
        self._store = store
        self.store: KubeStore | None = store
        self.runner: PodRunner | None = None
        self.lease: NodeLease | None = None
        self.started = asyncio.Event()
        """Set once the Node is registered and the runner runs."""

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        store = self._store or KubeStore.from_kubeconfig(config.kubeconfig, context=config.context)
        self.store = store
        config.state_dir.mkdir(parents=True, exist_ok=True)
        network = None
        sandboxes: Sandboxes = HostSandboxes()
        host_ip = LOCAL_POD_IP
        try:
            if config.pod_cidr:
                network = await self._network(store)
                sandboxes, host_ip = network, str(network.gateway)
            capacity = Capacity.of_machine(
                state_dir=str(config.state_dir), cpu=config.cpu, memory=config.memory, pods=config.pods
            )
            spec = NodeSpec(
                name=config.name,
                capacity=capacity,
                host_ip=host_ip,
                labels=config.labels,
                taints=config.taints,
                pod_cidr=config.pod_cidr,
            )
            node = await self._register(store, spec)
            await self._sweep(store, network)
            policy = NodePolicy(node_name=config.name, deleter=store)
            settings = RunnerSettings(state_dir=config.state_dir, grace=config.grace, readiness_until_ready=None)
            self.runner = PodRunner(
                store=store, settings=settings, sandboxes=sandboxes, policy=policy, tokens=PodTokens(requester=store)
            )
            self.lease = NodeLease(
                store=store, node=node, duration=config.lease_duration, interval=config.lease_interval
            )
            reporter = NodeStatusReporter(store=store, spec=spec, interval=config.status_interval)
            jobs = [self.runner.run(stop), self.lease.run(stop), reporter.run(stop)]
            if network is not None:
                jobs.append(self._services(store, network, stop))
            self.started.set()
            log.info("node.running", node=config.name, pods_on=policy.field_selector, host_ip=host_ip)
            await asyncio.gather(*jobs)
        finally:
            if network is not None:
                await network.stop()
                log.info("node.network_removed", node=config.name, prefix=config.prefix)
            if self._store is None:
                await store.close()
            log.info("node.stopped", node=config.name)

    # -- the Node ---------------------------------------------------------------------------------------

    async def _register(self, store: KubeStore, spec: NodeSpec) -> Obj:
        try:
            existing: Obj | None = await store.get(NODE, spec.name, namespace=None)
        except NotFound:
            existing = None
        manifest = node_manifest(spec, existing=existing)
        if existing is None:
            node = await store.create(NODE, {**manifest, "status": node_status(spec, previous=None, now=now_text())})
            log.info("node.registered", node=spec.name, capacity=spec.capacity.to_json())
        else:
            patch = {"metadata": manifest["metadata"], "spec": manifest["spec"]}
            node = await store.patch(NODE, spec.name, namespace=None, patch=patch)
            log.info("node.taken_over", node=spec.name, capacity=spec.capacity.to_json())
        status = node_status(spec, previous=node, now=now_text())
        return await store.patch(NODE, spec.name, namespace=None, patch={"status": status}, subresource="status")

    # -- what a previous run left ---------------------------------------------------------------------------

    async def _sweep(self, store: KubeStore, network: NodeNetwork | None) -> None:
        """Kill the processes, and remove the pod networks, that no pod bound here names (a previous agent
        killed with -9, its pods deleted meanwhile); what the pods name is adopted by the runner."""
        listed = await store.list(POD, field_selector=f"spec.nodeName={self.config.name}")
        tags = known_tags(listed.items)
        found = await asyncio.to_thread(find_orphans, str(self.config.state_dir), keep=tags)
        if found:
            pids = await asyncio.to_thread(kill, found)
            log.info("node.orphans_killed", node=self.config.name, pids=pids)
        if network is not None:
            await network.prune(keep={str(p["metadata"].get("uid")) for p in listed.items})

    # -- the pod network ------------------------------------------------------------------------------------

    async def _network(self, store: KubeStore) -> NodeNetwork:
        from kray.local.node.network import NodeNetwork  # noqa: PLC0415 - only with a pod CIDR (root, ip, nft)

        server = urlsplit(store.server)
        apiserver = (server.hostname or "127.0.0.1", server.port or 443)
        network = NodeNetwork(
            prefix=self.config.prefix,
            pod_cidr=str(self.config.pod_cidr),
            state_dir=self.config.state_dir / "network",
            apiserver=apiserver,
            kubernetes_service=await _kubernetes_service(store),
            node_name=self.config.name,
        )
        await network.start()
        log.info("node.network_started", node=self.config.name, prefix=self.config.prefix, cidr=self.config.pod_cidr)
        return network

    async def _services(self, store: KubeStore, network: NodeNetwork, stop: asyncio.Event) -> None:
        """Keep the network's Services (hosts files, ClusterIP rules) in step with the cluster's."""
        changed = asyncio.Event()
        informers = [
            Informer(store, SERVICE),
            Informer(store, ENDPOINT_SLICE),
            Informer(store, POD, field_selector=f"spec.nodeName={self.config.name}"),
        ]
        for informer in informers:
            informer.add_handler(lambda old, new: changed.set())
        feeds = [asyncio.create_task(i.run(stop)) for i in informers]
        try:
            while not stop.is_set():
                waiter = asyncio.ensure_future(changed.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if stop.is_set():
                    return
                await asyncio.sleep(self.config.debounce)
                changed.clear()
                if not all(i.synced.is_set() for i in informers):
                    continue  # the last one to sync sets changed again
                services, slices, pods = (i.list() for i in informers)
                try:
                    await network.update_services(services=services, endpoint_slices=slices, pods=pods)
                except Exception as error:  # a bad Service must not stop the others' updates
                    log.warning("node.services_failed", node=self.config.name, error=repr(error))
        finally:
            for feed in feeds:
                feed.cancel()
            await asyncio.gather(*feeds, return_exceptions=True)


async def _kubernetes_service(store: KubeStore) -> tuple[str, int] | None:
    """The ``kubernetes`` Service's ClusterIP and port (what pods' ``KUBERNETES_SERVICE_HOST/PORT`` say)."""
    try:
        service = await store.get(SERVICE, "kubernetes", namespace="default")
    except StoreError:
        return None
    spec = service.get("spec") or {}
    ports = spec.get("ports") or [{}]
    ip = spec.get("clusterIP")
    return (str(ip), int(ports[0].get("port") or 443)) if ip and ip != "None" else None
