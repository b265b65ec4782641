"""Where one RayService's requests go: a table of backends (Serve proxies) with weights, picked per request.

Why per request: a client's keep-alive connection must not pin it to a cluster, or a blue/green switch
would wait for every client to reconnect. Why weights: an incremental upgrade moves traffic in steps, as
KubeRay's HTTPRoute ``backendRefs[].weight`` does on Kubernetes; weight 0 drains a backend (no new
requests; requests already sent to it finish there). A table is a frozen value swapped whole, so a
request sees either the old table or the new one, never half of each.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backend:
    """A Serve proxy at ``address`` (``host:port``, ``[v6]:port``) taking ``weight`` parts of new requests."""

    address: str
    weight: int = 1

    def __post_init__(self) -> None:
        self.host_port()  # validates
        if self.weight < 0:
            raise ValueError(f"backend {self.address}: weight {self.weight} is negative")

    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"backend address {self.address!r} is not host:port")
        return host, int(port)


@dataclass(frozen=True, slots=True)
class RouteTable:
    backends: tuple[Backend, ...] = ()
    _live: tuple[Backend, ...] = field(init=False, repr=False, compare=False)
    _bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)  # cumulative weights of _live

    def __post_init__(self) -> None:
        addresses = [b.address for b in self.backends]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"backend addresses repeat: {addresses}")
        live = tuple(b for b in self.backends if b.weight > 0)
        object.__setattr__(self, "_live", live)
        object.__setattr__(self, "_bounds", tuple(itertools.accumulate(b.weight for b in live)))

    @classmethod
    def of(cls, backends: Sequence[Backend]) -> RouteTable:
        return cls(tuple(backends))

    @property
    def routable(self) -> frozenset[str]:
        """Addresses that may get new requests (weight > 0)."""
        return frozenset(b.address for b in self._live)

    def pick(self, rng: random.Random) -> Backend | None:
        """A backend with probability weight / total weight; None when none has weight."""
        if not self._live:
            return None
        if len(self._live) == 1:
            return self._live[0]
        return self._live[bisect.bisect_right(self._bounds, rng.randrange(self._bounds[-1]))]

    def pick_other(self, address: str, rng: random.Random) -> Backend | None:
        """A backend other than ``address`` (for the one retry after a failed connect), by weight."""
        return RouteTable(tuple(b for b in self._live if b.address != address)).pick(rng)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
