"""TCP ports for local clusters: free now, and still ours when Ray binds them seconds later.

A Ray node binds about ten ports (GCS, dashboard, dashboard agent HTTP and gRPC, metrics, node and
object manager, runtime-env agent, client server), several of them on *all* interfaces, plus one per
worker from ``--min-worker-port``..``--max-worker-port`` (10002-19999 by default). Several local clusters
run side by side, so every one of these must be chosen, not left to Ray's defaults. A port is only
handed out when it is

- outside Ray's worker range (workers of any cluster may take any of those) and outside the kernel's
  ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``, where outgoing connections and
  "port 0" binds draw from, so a port found free there can be taken before Ray binds it);
  the default range is therefore 20000 up to the start of the ephemeral range;
- bindable right now on the wildcard address (IPv4, and IPv6 when available), without SO_REUSEADDR;
- not reserved in this process (a set, for allocators with different state dirs), and
- not reserved by any other kray process sharing the state dir: a reservation is a file
  ``<state_dir>/ports/<port>`` created with O_EXCL, holding the owner's name.

Reservations last until :meth:`PortAllocator.release` (a pod keeps its ports across restarts, as a pod
keeps its IP). Allocation starts at a random place in the range, so allocators that share nothing rarely
collide either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import socket
import threading
from pathlib import Path

from kray.local import errors

RAY_WORKER_PORTS = range(10002, 20000)
"""Ray's default worker port range (``--min-worker-port`` 10002, ``--max-worker-port`` 19999)."""

DEFAULT_LOW = 20000
_EPHEMERAL_FALLBACK = (32768, 60999)

_in_process: set[int] = set()
_in_process_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free on ``host`` right now (from the ephemeral range: use it at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (inclusive)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _EPHEMERAL_FALLBACK


def port_is_free(port: int) -> bool:
    """True if ``port`` can be bound on every address now (IPv4 wildcard, and IPv6 wildcard if supported)."""
    families = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::"))
    for family, address in families:
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        with s:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    continue  # IPv6 compiled in but not configured
                return False
    return True


class PortAllocator:
    """Hands out ports in blocks, reserved by owner under ``state_dir`` so kray processes agree."""

    def __init__(
        self, state_dir: Path, *, low: int = DEFAULT_LOW, high: int | None = None, rng: random.Random | None = None
    ) -> None:
        if high is None:
            ephemeral_low, ephemeral_high = ephemeral_range()
            high = ephemeral_low - 1
            if high < low + 1000:  # the ephemeral range starts low: use the ports above it instead
                low, high = ephemeral_high + 1, 65535
        excluded = set(RAY_WORKER_PORTS)
        self._candidates = [p for p in range(max(low, 1024), min(high, 65535) + 1) if p not in excluded]
        if not self._candidates:
            raise ValueError(f"no usable ports between {low} and {high}")
        self._dir = state_dir / "ports"
        self._rng = rng or random.Random()
        self._lock = threading.Lock()

    def allocate(self, count: int, *, owner: str) -> tuple[int, ...]:
        """``count`` distinct ports reserved for ``owner``. Raises :class:`PortsExhausted` if there are none."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if not owner or "\n" in owner:
            raise ValueError("owner must be a non-empty single-line string")
        self._dir.mkdir(parents=True, exist_ok=True)
        taken: list[int] = []
        with self._lock:
            start = self._rng.randrange(len(self._candidates))
            for i in range(len(self._candidates)):
                port = self._candidates[(start + i) % len(self._candidates)]
                if self._try_claim(port, owner):
                    taken.append(port)
                    if len(taken) == count:
                        return tuple(taken)
            for port in taken:
                self._unclaim(port)
        raise errors.PortsExhausted(f"no {count} free ports between {self._candidates[0]} and {self._candidates[-1]}")

    def release(self, owner: str) -> list[int]:
        """Drop every reservation of ``owner``; returns the ports released."""
        released = [port for port, who in self.reservations().items() if who == owner]
        with self._lock:
            for port in released:
                self._unclaim(port)
        return sorted(released)

    def reservations(self) -> dict[int, str]:
        """Port → owner for every reservation in the state dir (to prune owners that no longer exist)."""
        found: dict[int, str] = {}
        with contextlib.suppress(FileNotFoundError):
            for path in self._dir.iterdir():
                if path.name.isdigit():
                    with contextlib.suppress(FileNotFoundError):
                        found[int(path.name)] = path.read_text().strip()
        return found

    def _try_claim(self, port: int, owner: str) -> bool:
        with _in_process_lock:
            if port in _in_process:
                return False
            _in_process.add(port)
        if port_is_free(port):
            try:
                fd = os.open(self._dir / str(port), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(owner + "\n")
                return True
        with _in_process_lock:
            _in_process.discard(port)
        return False

    def _unclaim(self, port: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._dir / str(port)).unlink()
        with _in_process_lock:
            _in_process.discard(port)
