"""The node's address plan: pod IPs from the pod CIDR, the uplink's link net, and the names derived from them.

Why persisted: a restarted agent (even after a kill -9) must give a running pod the same IP and find its
network namespace again, so every allocation is written (atomically: a temp file renamed over the old one)
to a JSON file in the agent's state dir before the pod's sandbox exists. Addresses go round-robin through
the CIDR, so a released IP is not handed out again at once (a stale ARP or conntrack entry would point a new
pod's traffic at an old pod's). The decisions here are pure; only :class:`Ipam` touches the file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from kray.local.sandbox import SandboxError

__all__ = [
    "LINK_RANGE",
    "Ipam",
    "PodAddress",
    "choose_link_net",
    "overlapping",
    "parse_pod_cidr",
    "pod_key",
    "validate_prefix",
]

LINK_RANGE = IPv4Network("100.64.0.0/10")
"""Where uplink link nets (/30s) come from: shared address space, never a host's LAN or a pod CIDR here."""
_PREFIX = re.compile(r"[a-z][a-z0-9]{0,10}")
_UID_HEX = re.compile(r"[^0-9a-f]")


def validate_prefix(prefix: str) -> str:
    """The prefix names every kernel object (``<prefix>-node``, ``<prefix>up``): short and without ``-``, so
    ``<prefix>-...`` never matches another prefix's objects and the host's uplink name fits in 15 chars."""
    if not _PREFIX.fullmatch(prefix):
        raise SandboxError(f"prefix: expected 1-11 lowercase letters or digits starting with a letter, got {prefix!r}")
    return prefix


def pod_key(uid: str) -> str:
    """12 hex digits naming a pod's objects (its netns, its veth): the uid's first ones, else a digest of it."""
    hexes = _UID_HEX.sub("", uid.lower())
    return hexes[:12] if len(hexes) >= 12 else hashlib.sha256(uid.encode()).hexdigest()[:12]


def parse_pod_cidr(cidr: str) -> IPv4Network:
    """An IPv4 network with room for the gateway and at least one pod."""
    try:
        net = IPv4Network(cidr, strict=True)
    except ValueError as e:
        raise SandboxError(f"pod_cidr: expected an IPv4 network like 10.244.0.0/24, got {cidr!r} ({e})") from None
    if net.prefixlen > 29:
        raise SandboxError(f"pod_cidr: {cidr} is too small (at most /29: a gateway and pods)")
    return net


def overlapping(net: IPv4Network, routes: Iterable[str]) -> list[str]:
    """The route destinations (``ip route``'s ``dst``) that overlap ``net``; the default route does not count."""
    found = []
    for dst in routes:
        if dst == "default":
            continue
        try:
            other = IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if other.prefixlen > 0 and net.overlaps(other):
            found.append(dst)
    return found


def choose_link_net(prefix: str, taken: Iterable[IPv4Network]) -> IPv4Network:
    """A /30 of :data:`LINK_RANGE` overlapping nothing in ``taken``: the prefix's hash picks where to start, so
    agents with different prefixes (concurrent tests) start far apart."""
    taken = list(taken)
    count = 1 << (30 - LINK_RANGE.prefixlen)
    start = int.from_bytes(hashlib.sha256(prefix.encode()).digest()[:4], "big") % count
    base = int(LINK_RANGE.network_address)
    for i in range(count):
        net = IPv4Network((base + ((start + i) % count) * 4, 30))
        if not any(net.overlaps(t) for t in taken):
            return net
    raise SandboxError(f"no free /30 in {LINK_RANGE} for the node's uplink")


@dataclass(frozen=True, slots=True)
class PodAddress:
    uid: str
    ip: IPv4Address
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return pod_key(self.uid)


class Ipam:
    """Pod IPs of one pod CIDR, persisted in ``path`` (the gateway is the CIDR's first address)."""

    def __init__(self, *, path: Path, cidr: IPv4Network) -> None:
        self.path = path
        self.cidr = cidr
        self.gateway = IPv4Address(int(cidr.network_address) + 1)
        self.pods: dict[str, PodAddress] = {}
        self.uplink: IPv4Network | None = None
        self._last = int(self.gateway)
        self._load()

    def _load(self) -> None:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise SandboxError(f"{self.path}: unreadable address state ({e})") from None
        if data.get("pod_cidr") != str(self.cidr):
            # Another pod CIDR: its pods' addresses mean nothing here (the caller sweeps their namespaces).
            return
        for uid, rec in dict(data.get("pods") or {}).items():
            ip = ipaddress.ip_address(rec["ip"])
            if isinstance(ip, IPv4Address) and ip in self.cidr:
                self.pods[uid] = PodAddress(uid=uid, ip=ip, namespace=rec["namespace"], name=rec["name"])
        if data.get("uplink"):
            self.uplink = IPv4Network(data["uplink"])
        self._last = int(data.get("last") or self._last)

    def save(self) -> None:
        data = {
            "pod_cidr": str(self.cidr),
            "uplink": str(self.uplink) if self.uplink else None,
            "last": self._last,
            "pods": {p.uid: {"ip": str(p.ip), "namespace": p.namespace, "name": p.name} for p in self.pods.values()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def allocate(self, *, uid: str, namespace: str, name: str) -> PodAddress:
        """The pod's address: the one it has, else the next free one after the last handed out (saved)."""
        if (have := self.pods.get(uid)) is not None:
            return have
        used = {int(p.ip) for p in self.pods.values()}
        first, last = int(self.gateway) + 1, int(self.cidr.broadcast_address) - 1
        size = last - first + 1
        for i in range(size):
            candidate = first + (self._last - first + 1 + i) % size
            if candidate not in used:
                break
        else:
            raise SandboxError(f"pod CIDR {self.cidr} is full ({size} pods)")
        self._last = candidate
        self.pods[uid] = addr = PodAddress(uid=uid, ip=IPv4Address(candidate), namespace=namespace, name=name)
        self.save()
        return addr

    def release(self, uid: str) -> PodAddress | None:
        gone = self.pods.pop(uid, None)
        if gone is not None:
            self.save()
        return gone
