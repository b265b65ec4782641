"""The node agent's pod network: a network namespace, veth and IP per pod, Services as pods see them.

Layout (every name carries the agent's prefix, so agents and tests never collide):

- ``<prefix>-node``: a network namespace standing for the node. It holds the bridge ``<prefix>br`` whose
  address is the pod CIDR's gateway (its first address), forwards IPv4, owns the nftables table that makes
  ClusterIPs work (:mod:`kray.local.node.services`) and, on ``lo``, the ``kubernetes`` Service's ClusterIP
  with the apiserver relay listening on it (:mod:`kray.local.node.apiforward`).
- ``<prefix>-<12 hex of the pod uid>``: each pod's network namespace, made with ``ip netns add`` so it lives
  at ``/run/netns/NAME`` and survives the agent's kill -9. Its ``eth0`` is a veth whose other end is on the
  bridge with hairpin on (a pod reaching itself through a ClusterIP leaves and re-enters by the same port).
- The uplink (optional): a veth ``<prefix>up`` from the host netns to the node netns over a /30 of
  100.64.0.0/10, and a host route for the pod CIDR through it, so host processes (probes, tests) reach pod
  IPs. It is the only change made to the host's network, and it goes with the agent.

Pod addresses are persisted in the state dir (:mod:`kray.local.node.ipam`): a restarted agent keeps the
node netns and every recorded pod's netns and IP, and :meth:`NodeNetwork.create` is idempotent, so adopting
a pod is creating it again. What no record names is swept at :meth:`NodeNetwork.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from collections.abc import Collection, Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import structlog

from kray.local.node.apiforward import ApiForwarder, listen_in_netns
from kray.local.node.ipam import (
    Ipam,
    PodAddress,
    choose_link_net,
    overlapping,
    parse_pod_cidr,
    pod_key,
    validate_prefix,
)
from kray.local.node.netcmd import NETNS_DIR, json_sync, run
from kray.local.node.netsweep import sweep_pods, sweep_prefix, veth_name
from kray.local.node.services import (
    ServiceRecord,
    hosts_file,
    nft_ruleset,
    plan_services,
    pod_hostname,
    resolv_conf,
)
from kray.local.sandbox import Sandbox, SandboxError
from kray.store import Obj

__all__ = ["NodeNetwork"]

log = structlog.get_logger(__name__)

STATE_FILE = "network.json"
FILES_DIR = "pod-net"
NODE_UPLINK = "up0"
"""The uplink's end inside the node netns (names there are private to it)."""


def _write_in_place(path: Path, text: str) -> None:
    """Replace ``path``'s content keeping its inode: it is bind-mounted into running pods, where a file renamed
    over it would never be seen. Written before truncating, so a reader never sees it empty."""
    data = text.encode()
    try:
        with open(path, "r+b") as f:
            if f.read() == data:
                return
            f.seek(0)
            f.write(data)
            f.truncate()
    except FileNotFoundError:
        path.write_bytes(data)


class NodeNetwork:
    """:class:`kray.local.sandbox.Sandboxes` for the node agent (see the module's doc for the layout)."""

    def __init__(
        self,
        *,
        prefix: str,
        pod_cidr: str,
        state_dir: Path,
        apiserver: tuple[str, int],
        kubernetes_service: tuple[str, int] | None,
        node_name: str,
        cluster_domain: str = "cluster.local",
        uplink: bool = True,
    ) -> None:
        self.prefix = validate_prefix(prefix)
        self.cidr = parse_pod_cidr(pod_cidr)
        if kubernetes_service is not None and IPv4Address(kubernetes_service[0]) in self.cidr:
            raise SandboxError(f"kubernetes_service: {kubernetes_service[0]} lies inside the pod CIDR {self.cidr}")
        self.state_dir = Path(state_dir)
        self.apiserver = apiserver
        self.kubernetes_service = kubernetes_service
        self.node_name = node_name
        self.cluster_domain = cluster_domain
        self.uplink = uplink
        self.node_netns = f"{prefix}-node"
        self.bridge = f"{prefix}br"
        self.host_uplink = f"{prefix}up"
        self.gateway = IPv4Address(int(self.cidr.network_address) + 1)
        self._ipam: Ipam | None = None
        self._lock = asyncio.Lock()
        self._services: tuple[ServiceRecord, ...] = ()
        self._pods: dict[str, Mapping[str, Any]] = {}
        self._ruleset: str | None = None
        self._forwarder: ApiForwarder | None = None

    # -- names ------------------------------------------------------------------------------------------

    def netns_name(self, uid: str) -> str:
        return f"{self.prefix}-{pod_key(uid)}"

    def netns_path(self, uid: str) -> str:
        return f"{NETNS_DIR}/{self.netns_name(uid)}"

    @property
    def files_dir(self) -> Path:
        return self.state_dir / FILES_DIR

    def _node(self, *argv: str) -> tuple[str, ...]:
        return ("ip", "-n", self.node_netns, *argv)

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Make (or adopt, after a restart) the node netns, bridge, uplink, ruleset and apiserver relay."""
        async with self._lock:
            try:
                await self._start()
            except BaseException:
                await self._teardown()
                raise

    async def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(exist_ok=True)
        ipam = Ipam(path=self.state_dir / STATE_FILE, cidr=self.cidr)
        node_exists = os.path.exists(f"{NETNS_DIR}/{self.node_netns}")
        if not (node_exists and ipam.pods):
            # Nothing to adopt: whatever carries the prefix is a leftover.
            await asyncio.to_thread(self.sweep, self.prefix)
            ipam.pods.clear()
            ipam.uplink = None
            node_exists = False
        else:
            keep = {self.netns_name(uid) for uid in ipam.pods}
            if errors := await asyncio.to_thread(sweep_pods, self.prefix, keep=keep):
                log.warning("unrecorded pod namespaces not all removed", errors=errors)
        self._ipam = ipam
        routes = await asyncio.to_thread(self._host_routes)
        if clash := overlapping(self.cidr, routes):
            raise SandboxError(f"pod_cidr: {self.cidr} overlaps the host's routes {', '.join(clash)}")
        if not node_exists:
            await run("making the node netns", "ip", "netns", "add", self.node_netns)
        await self._setup_node()
        if self.uplink:
            taken = [IPv4Network(r, strict=False) for r in routes if r != "default"]
            if ipam.uplink is None or any(ipam.uplink.overlaps(t) for t in taken):
                ipam.uplink = choose_link_net(self.prefix, [*taken, self.cidr])
            await self._setup_uplink(ipam.uplink)
        ipam.save()
        self._ruleset = None
        await self._apply_ruleset()
        if self.kubernetes_service is not None:
            sock = await asyncio.to_thread(listen_in_netns, f"{NETNS_DIR}/{self.node_netns}", *self.kubernetes_service)
            self._forwarder = ApiForwarder(sock=sock, target=self.apiserver)
            await self._forwarder.start()
        log.info("node network up", prefix=self.prefix, pod_cidr=str(self.cidr), pods=len(ipam.pods))

    def _host_routes(self) -> list[str]:
        """Every IPv4 route destination of the host, except through our own uplink."""
        routes = json_sync("listing the host's routes", "ip", "-j", "-4", "route", "show", "table", "all")
        return [str(r.get("dst")) for r in routes if r.get("dev") != self.host_uplink and r.get("dst")]

    async def _setup_node(self) -> None:
        links = await asyncio.to_thread(self._node_links)
        mac = "02:" + ":".join(f"{b:02x}" for b in hashlib.sha256(self.prefix.encode()).digest()[:5])
        batch = ["link set lo up"]
        if self.bridge not in links:
            # A fixed MAC: a bridge otherwise takes its lowest port's, and pods' ARP entries for the gateway go stale.
            batch.append(f"link add {self.bridge} address {mac} type bridge")
        batch += [f"addr replace {self.gateway}/{self.cidr.prefixlen} dev {self.bridge}", f"link set {self.bridge} up"]
        if self.kubernetes_service is not None:
            batch.append(f"addr replace {self.kubernetes_service[0]}/32 dev lo")
        await run("setting up the node netns", *self._node("-batch", "-"), stdin="\n".join(batch) + "\n")
        await run(
            "enabling forwarding in the node netns",
            "nsenter",
            f"--net={NETNS_DIR}/{self.node_netns}",
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        )

    def _node_links(self) -> set[str]:
        return {
            str(link.get("ifname")) for link in json_sync("listing the node's links", *self._node("-j", "link", "show"))
        }

    async def _setup_uplink(self, net: IPv4Network) -> None:
        host_ip, node_ip = IPv4Address(int(net.network_address) + 1), IPv4Address(int(net.network_address) + 2)
        if not os.path.exists(f"/sys/class/net/{self.host_uplink}"):
            await run(
                "making the uplink",
                *("ip", "link", "add", self.host_uplink, "type", "veth"),
                *("peer", "name", NODE_UPLINK, "netns", self.node_netns),
            )
        node = [f"addr replace {node_ip}/{net.prefixlen} dev {NODE_UPLINK}", f"link set {NODE_UPLINK} up"]
        await run("setting up the uplink in the node netns", *self._node("-batch", "-"), stdin="\n".join(node) + "\n")
        host = [
            f"addr replace {host_ip}/{net.prefixlen} dev {self.host_uplink}",
            f"link set {self.host_uplink} up",
            f"route replace {self.cidr} via {node_ip} dev {self.host_uplink}",
        ]
        await run("setting up the uplink on the host", "ip", "-batch", "-", stdin="\n".join(host) + "\n")

    async def _apply_ruleset(self) -> None:
        skip = {self.kubernetes_service} if self.kubernetes_service is not None else set()
        ruleset = nft_ruleset(self._services, skip=skip)
        if ruleset == self._ruleset:
            return
        await run(
            "applying the Services' nftables rules",
            *("nsenter", f"--net={NETNS_DIR}/{self.node_netns}", "nft", "-f", "-"),
            stdin=ruleset,
        )
        self._ruleset = ruleset

    async def stop(self) -> None:
        """Remove everything: pods' namespaces, the node netns, the uplink, the ruleset and the state files."""
        async with self._lock:
            await self._teardown()

    async def _teardown(self) -> None:
        if self._forwarder is not None:
            await self._forwarder.stop()
            self._forwarder = None
        try:
            await asyncio.to_thread(self.sweep, self.prefix)
        except SandboxError as e:
            log.warning("node network sweep incomplete", error=str(e))
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / STATE_FILE).unlink()
        shutil.rmtree(self.files_dir, ignore_errors=True)
        self._ipam = None
        self._pods.clear()

    @staticmethod
    def sweep(prefix: str) -> None:
        """Remove every kernel object carrying ``prefix`` (after a kill -9, or at the end of a test): pods'
        namespaces, the node netns with its bridge, veths and table, the host's uplink and its route. The
        state dir's files are the instance's (:meth:`stop` removes them). Raises :class:`SandboxError` naming
        what could not be removed, after trying everything."""
        sweep_prefix(validate_prefix(prefix))

    # -- pods -------------------------------------------------------------------------------------------

    def _require(self) -> Ipam:
        if self._ipam is None:
            raise SandboxError("the node network is not started")
        return self._ipam

    async def create(self, pod: Obj) -> Sandbox:
        meta = pod.get("metadata") or {}
        uid, namespace, name = meta.get("uid"), meta.get("namespace") or "default", meta.get("name") or ""
        if not uid:
            raise SandboxError("metadata.uid: a pod needs a uid for its sandbox")
        async with self._lock:
            ipam = self._require()
            addr = ipam.allocate(uid=uid, namespace=namespace, name=name)
            await self._plumb(addr)
            self._pods[uid] = pod
            hosts, resolv = self._files(addr.key)
            _write_in_place(
                hosts, hosts_file(pod=pod, pod_ip=str(addr.ip), services=self._services, domain=self.cluster_domain)
            )
            _write_in_place(resolv, resolv_conf(namespace=namespace, domain=self.cluster_domain))
        return Sandbox(
            ip=str(addr.ip),
            host_ip=str(self.gateway),
            node_name=self.node_name,
            netns=self.netns_path(uid),
            hostname=pod_hostname(pod),
            files=((str(hosts), "/etc/hosts"), (str(resolv), "/etc/resolv.conf")),
            private_tmp=True,
            env=self._env(),
        )

    def _files(self, key: str) -> tuple[Path, Path]:
        return self.files_dir / f"{key}.hosts", self.files_dir / f"{key}.resolv.conf"

    def _env(self) -> dict[str, str]:
        if self.kubernetes_service is None:
            return {}
        host, port = self.kubernetes_service
        url = f"tcp://{host}:{port}"
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            "KUBERNETES_PORT": url,
            f"KUBERNETES_PORT_{port}_TCP": url,
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    async def _plumb(self, addr: PodAddress) -> None:
        """The pod's netns with ``eth0`` addressed and routed, its peer on the bridge; idempotent."""
        ns, veth = self.netns_name(addr.uid), veth_name(addr.key)
        if not os.path.exists(f"{NETNS_DIR}/{ns}"):
            await run(f"making the network namespace of pod {addr.namespace}/{addr.name}", "ip", "netns", "add", ns)
        if veth not in await asyncio.to_thread(self._node_links):
            pod_links = await asyncio.to_thread(
                json_sync, "listing a pod's links", "ip", "-n", ns, "-j", "link", "show"
            )
            if any(link.get("ifname") == "eth0" for link in pod_links):
                await run("removing a pod's stale eth0", "ip", "-n", ns, "link", "del", "eth0")
            await run(
                f"making the veth of pod {addr.namespace}/{addr.name}",
                *self._node("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns),
            )
        node = [
            f"link set {veth} master {self.bridge}",
            f"link set {veth} type bridge_slave hairpin on",
            f"link set {veth} up",
        ]
        await run("attaching a pod's veth to the bridge", *self._node("-batch", "-"), stdin="\n".join(node) + "\n")
        inside = [
            "link set lo up",
            f"addr replace {addr.ip}/{self.cidr.prefixlen} dev eth0",
            "link set eth0 up",
            f"route replace default via {self.gateway} dev eth0",
        ]
        await run(
            f"addressing pod {addr.namespace}/{addr.name}",
            "ip",
            "-n",
            ns,
            "-batch",
            "-",
            stdin="\n".join(inside) + "\n",
        )

    async def remove(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if uid:
            async with self._lock:
                try:
                    await self._remove_uid(uid)
                except Exception as e:
                    log.warning("pod network removal failed", uid=uid, error=str(e))

    async def prune(self, keep: Collection[str]) -> None:
        """Remove every recorded pod whose uid is not in ``keep`` (a restarted agent's pods that are gone)."""
        async with self._lock:
            if self._ipam is not None:
                for uid in [u for u in self._ipam.pods if u not in keep]:
                    await self._remove_uid(uid)

    def recorded(self) -> frozenset[str]:
        """The uids of the pods holding an address (after :meth:`start`: those a previous agent left)."""
        return frozenset(self._ipam.pods) if self._ipam is not None else frozenset()

    async def _remove_uid(self, uid: str) -> None:
        key, ns = pod_key(uid), self.netns_name(uid)
        try:
            if os.path.exists(f"{NETNS_DIR}/{self.node_netns}") and veth_name(key) in await asyncio.to_thread(
                self._node_links
            ):
                await run("removing a pod's veth", *self._node("link", "del", veth_name(key)))
            if os.path.exists(f"{NETNS_DIR}/{ns}"):
                await run("removing a pod's network namespace", "ip", "netns", "delete", ns)
        except SandboxError as e:
            log.warning("pod network removal incomplete", uid=uid, error=str(e))
        if self._ipam is not None:
            self._ipam.release(uid)
        self._pods.pop(uid, None)
        for path in self._files(key):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- Services ---------------------------------------------------------------------------------------

    async def update_services(
        self,
        *,
        services: Iterable[Mapping[str, Any]],
        endpoint_slices: Iterable[Mapping[str, Any]],
        pods: Iterable[Mapping[str, Any]],
    ) -> None:
        """Rewrite every pod's hosts file and the node's ruleset for these Services and EndpointSlices (the
        cluster's, as listed); ``pods`` refreshes the pods' own view (hostname, subdomain)."""
        records = plan_services(services, endpoint_slices)
        async with self._lock:
            ipam = self._require()
            self._services = records
            for pod in pods:
                uid = (pod.get("metadata") or {}).get("uid")
                if uid in ipam.pods:
                    self._pods[uid] = pod
            await self._apply_ruleset()
            for uid, pod in self._pods.items():
                if (addr := ipam.pods.get(uid)) is not None:
                    text = hosts_file(pod=pod, pod_ip=str(addr.ip), services=records, domain=self.cluster_domain)
                    _write_in_place(self._files(addr.key)[0], text)
