"""Services as a node's pods see them: each pod's hosts file and resolv.conf, and the node's nftables ruleset.

Why a hosts file and no DNS server: the cluster's names are few and known to the agent (it watches Services and
EndpointSlices), so the kubelet's own mechanism -- a managed ``/etc/hosts`` bound over the pod's -- is enough,
with every name form a search list would have produced written out (glibc's files backend matches literal
names only). The resolv.conf keeps the search list for tools that read it, and points at a nameserver that
refuses at once inside the pod's netns (``127.0.0.1``, nothing listens), so an unknown name fails fast
instead of timing out.

Why nftables as kube-proxy's nftables mode does it: a ClusterIP is DNAT'd in the node netns's prerouting to
one of its ready endpoints picked at random (``numgen random mod N map``), the targetPort resolved per
EndpointSlice port by name; DNAT'd traffic is masqueraded so replies come back through the node (a pod
reaching itself through its Service, hairpinned on the bridge, included); a Service port with no ready
endpoint is rejected (TCP reset, ICMP for UDP) before NAT. The whole table is replaced in one ``nft -f``
transaction, so a pod never sees half a ruleset.

Everything here is pure: plain dicts in (as the apiserver returns them), text out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HOSTS_HEADER",
    "TABLE",
    "PortRule",
    "ServiceRecord",
    "hosts_file",
    "nft_ruleset",
    "plan_services",
    "pod_hostname",
    "resolv_conf",
]

TABLE = "kray"
"""The nftables table (family ``ip``) in the node netns."""
HOSTS_HEADER = "# Kubernetes-managed hosts file (kray node agent)."
_LOCALHOST = (
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "fe00::0\tip6-mcastprefix",
    "fe00::1\tip6-allnodes",
    "fe00::2\tip6-allrouters",
)
_PROTOCOLS = ("TCP", "UDP")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class PortRule:
    """One Service port: traffic to ``cluster_ip:port/protocol`` goes to one of ``endpoints`` (ip, port)."""

    name: str
    protocol: str
    port: int
    endpoints: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    namespace: str
    name: str
    cluster_ip: str | None
    """None: headless (its names resolve to :attr:`addresses`)."""
    addresses: tuple[tuple[str, str | None], ...]
    """Ready endpoint addresses with their hostnames (the EndpointSlice controller already counts not-ready
    pods as ready for a Service with ``publishNotReadyAddresses``)."""
    ports: tuple[PortRule, ...]


def _ip_sort(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return addr.version, int(addr)


def _is_ipv4(value: object) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def _ready(endpoint: Mapping[str, Any]) -> bool:
    # A nil condition means ready (discovery.k8s.io/v1 Endpoint.conditions).
    return (endpoint.get("conditions") or {}).get("ready") is not False


def plan_services(
    services: Iterable[Mapping[str, Any]], endpoint_slices: Iterable[Mapping[str, Any]]
) -> tuple[ServiceRecord, ...]:
    """Every Service with a ClusterIP or headless, with its ready endpoints per port, sorted by namespace/name."""
    slices: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in endpoint_slices:
        meta = s.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner and s.get("addressType", "IPv4") == "IPv4":
            slices.setdefault((meta.get("namespace") or "default", owner), []).append(s)
    records = []
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name")
        cluster_ip = spec.get("clusterIP")
        if not name or spec.get("type") == "ExternalName" or not cluster_ip:
            continue
        if cluster_ip != "None" and not _is_ipv4(cluster_ip):
            continue
        own = slices.get((namespace, name), [])
        addresses: dict[str, str | None] = {}
        for s in own:
            for ep in s.get("endpoints") or []:
                if _ready(ep):
                    for ip in ep.get("addresses") or []:
                        if _is_ipv4(ip):
                            addresses.setdefault(ip, ep.get("hostname"))
        ports = []
        for sp in spec.get("ports") or []:
            protocol, port_name = sp.get("protocol") or "TCP", sp.get("name") or ""
            if protocol not in _PROTOCOLS or not isinstance(sp.get("port"), int):
                continue
            targets: set[tuple[str, int]] = set()
            for s in own:
                match = [
                    p
                    for p in s.get("ports") or []
                    if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol
                ]
                if not match or not isinstance(match[0].get("port"), int):
                    continue
                for ep in s.get("endpoints") or []:
                    if _ready(ep):
                        targets.update((ip, match[0]["port"]) for ip in ep.get("addresses") or [] if _is_ipv4(ip))
            endpoints = tuple(sorted(targets, key=lambda t: (_ip_sort(t[0]), t[1])))
            ports.append(PortRule(name=port_name, protocol=protocol, port=sp["port"], endpoints=endpoints))
        records.append(
            ServiceRecord(
                namespace=namespace,
                name=name,
                cluster_ip=None if cluster_ip == "None" else cluster_ip,
                addresses=tuple(sorted(addresses.items(), key=lambda a: _ip_sort(a[0]))),
                ports=tuple(ports),
            )
        )
    return tuple(sorted(records, key=lambda r: (r.namespace, r.name)))


def pod_hostname(pod: Mapping[str, Any]) -> str:
    """``spec.hostname``, else the pod's name, cut to 63 characters as the kubelet does."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    name = str(spec.get("hostname") or meta.get("name") or "pod")
    return name[:63].rstrip("-.") or "pod"


def _names(base: str, namespace: str, domain: str, *, own: bool) -> list[str]:
    names = [f"{base}.{namespace}.svc.{domain}", f"{base}.{namespace}.svc", f"{base}.{namespace}"]
    return [*names, base] if own else names


def hosts_file(
    *, pod: Mapping[str, Any], pod_ip: str, services: Iterable[ServiceRecord], domain: str = "cluster.local"
) -> str:
    """The pod's ``/etc/hosts``: the kubelet's lines, then every Service in each name form a search list would
    try (the short ``<svc>`` only for the pod's own namespace)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    hostname = pod_hostname(pod)
    subdomain = spec.get("subdomain")
    own_names = [f"{hostname}.{subdomain}.{namespace}.svc.{domain}", hostname] if subdomain else [hostname]
    lines = [HOSTS_HEADER, *_LOCALHOST, f"{pod_ip}\t" + "\t".join(own_names)]
    for svc in services:
        own = svc.namespace == namespace
        names = "\t".join(_names(svc.name, svc.namespace, domain, own=own))
        if svc.cluster_ip is not None:
            lines.append(f"{svc.cluster_ip}\t{names}")
            continue
        for ip, endpoint_host in svc.addresses:
            lines.append(f"{ip}\t{names}")
            if endpoint_host:
                lines.append(
                    f"{ip}\t" + "\t".join(_names(f"{endpoint_host}.{svc.name}", svc.namespace, domain, own=own))
                )
    return "\n".join(lines) + "\n"


def resolv_conf(*, namespace: str, domain: str = "cluster.local") -> str:
    """The pod's ``/etc/resolv.conf``: the cluster's search list and a nameserver that refuses at once."""
    return (
        "# Kubernetes-managed resolv.conf (kray node agent): names resolve through /etc/hosts.\n"
        f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
        "nameserver 127.0.0.1\n"
        "options ndots:5 attempts:1\n"
    )


def nft_ruleset(services: Iterable[ServiceRecord], *, skip: Collection[tuple[str, int]] = ()) -> str:
    """One ``nft -f`` transaction replacing table ``ip kray``: DNAT per ClusterIP port to its ready endpoints
    (``skip``: ClusterIP ports served otherwise, the apiserver's), reject where none is ready, masquerade."""
    dnat: list[str] = []
    reject: list[str] = []
    for svc in services:
        if svc.cluster_ip is None:
            continue
        for rule in svc.ports:
            if (svc.cluster_ip, rule.port) in skip:
                continue
            proto = rule.protocol.lower()
            match = f"ip daddr {svc.cluster_ip} {proto} dport {rule.port}"
            comment = f'comment "{svc.namespace}/{svc.name}:{rule.name or rule.port}"'
            if not rule.endpoints:
                how = "reject with tcp reset" if proto == "tcp" else "reject"
                reject.append(f"{match} {how} {comment}")
            elif len(rule.endpoints) == 1:
                ip, port = rule.endpoints[0]
                dnat.append(f"{match} dnat ip to {ip}:{port} {comment}")
            else:
                pairs = ", ".join(f"{i} : {ip} . {port}" for i, (ip, port) in enumerate(rule.endpoints))
                pick = f"numgen random mod {len(rule.endpoints)} map {{ {pairs} }}"
                dnat.append(f"{match} dnat ip addr . port to {pick} {comment}")
    body = [
        f"table ip {TABLE}",
        f"delete table ip {TABLE}",
        f"table ip {TABLE} {{",
        "\tchain svc_reject {",
        "\t\ttype filter hook prerouting priority dstnat - 10; policy accept;",
        *(f"\t\t{r}" for r in reject),
        "\t}",
        "\tchain svc_dnat {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        *(f"\t\t{r}" for r in dnat),
        "\t}",
        "\tchain svc_masquerade {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        "\t\tct status dnat masquerade",
        "\t}",
        "}",
    ]
    return "\n".join(body) + "\n"
