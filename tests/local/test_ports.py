"""The port allocator: bind-tested, outside Ray's worker range, and agreed on across processes."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kray.local import errors, ports


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_free_port_is_bindable() -> None:
    assert bindable(ports.free_port())


def test_default_range_avoids_worker_and_ephemeral_ports(tmp_path: Path) -> None:
    allocator = ports.PortAllocator(tmp_path)
    block = allocator.allocate(10, owner="cluster-a")
    low, _ = ports.ephemeral_range()
    assert len(set(block)) == 10
    for port in block:
        assert ports.DEFAULT_LOW <= port < low
        assert port not in ports.RAY_WORKER_PORTS
        assert bindable(port)
    assert allocator.reservations() == dict.fromkeys(block, "cluster-a")


def test_worker_range_is_always_excluded(tmp_path: Path) -> None:
    allocator = ports.PortAllocator(tmp_path, low=9990, high=20000, rng=random.Random(0))
    block = allocator.allocate(10, owner="x")  # 13 candidates: 9990-10001 and 20000
    assert all(p < 10002 or p > 19999 for p in block)
    assert len(set(block)) == 10


# Ports no local cluster draws from (they take 20000 up to the ephemeral range, or above it) and no port-0
# bind gets: below Ray's worker range. Tests with a fixed window of their own work there, so neither a
# cluster starting elsewhere on the machine nor this module running twice at once takes their ports.
QUIET = range(1024, ports.RAY_WORKER_PORTS.start)


def free_window(size: int) -> int:
    """The first port of ``size`` consecutive free ports in :data:`QUIET`, at a random place."""
    low, high = ports.ephemeral_range()
    firsts = [f for f in range(QUIET.start, QUIET.stop - size + 1, size) if f + size <= low or f > high]
    random.shuffle(firsts)
    for first in firsts:
        window = range(first, first + size)
        # Ports other tests of this process still hold count as taken too.
        if all(ports.port_is_free(p) and p not in ports._in_process for p in window):
            return first
    raise AssertionError(f"no {size} consecutive free ports between {QUIET.start} and {QUIET.stop - 1}")


def test_test_windows_are_where_no_cluster_draws() -> None:
    default = ports.PortAllocator(Path("/nonexistent"))._candidates
    assert not set(QUIET) & set(default)
    assert not set(QUIET) & set(range(ports.ephemeral_range()[0], ports.ephemeral_range()[1] + 1))


def test_a_bound_port_is_skipped(tmp_path: Path) -> None:
    taken = free_window(4)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", taken))
        busy.listen()
        allocator = ports.PortAllocator(tmp_path, low=taken, high=taken + 3)
        block = allocator.allocate(2, owner="x")
    assert taken not in block


def test_a_port_bound_on_loopback_only_is_skipped(tmp_path: Path) -> None:
    # Ray binds some ports on 127.0.0.1 and others on every address: both must count as taken.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert not ports.port_is_free(taken)


def test_exhaustion_raises_and_keeps_nothing(tmp_path: Path) -> None:
    low = free_window(5)
    allocator = ports.PortAllocator(tmp_path, low=low, high=low + 4)
    first = allocator.allocate(3, owner="a")
    with pytest.raises(errors.PortsExhausted):
        allocator.allocate(3, owner="b")
    assert set(allocator.reservations()) == set(first)  # b's partial claim was rolled back


def test_release_frees_only_the_owners_ports(tmp_path: Path) -> None:
    low = free_window(20)
    allocator = ports.PortAllocator(tmp_path, low=low, high=low + 19)
    a = allocator.allocate(4, owner="a")
    b = allocator.allocate(4, owner="b")
    assert not set(a) & set(b)
    assert allocator.release("a") == sorted(a)
    assert set(allocator.reservations()) == set(b)
    assert allocator.release("a") == []
    again = allocator.allocate(16, owner="c")  # a's ports are usable again
    assert set(a) <= set(again)


def test_allocators_sharing_a_state_dir_agree(tmp_path: Path) -> None:
    low = free_window(10)
    one = ports.PortAllocator(tmp_path, low=low, high=low + 9, rng=random.Random(1))
    block = one.allocate(5, owner="one")
    # Forget this process's in-memory set, as another process would not have it: the files must suffice.
    ports._in_process.difference_update(block)
    two = ports.PortAllocator(tmp_path, low=low, high=low + 9, rng=random.Random(1))
    assert not set(block) & set(two.allocate(5, owner="two"))


CONCURRENT = """
    import json, sys
    from pathlib import Path
    from kray.local.ports import PortAllocator
    low = int(sys.argv[3])
    allocator = PortAllocator(Path(sys.argv[1]), low=low, high=low + 159)
    print(json.dumps([allocator.allocate(5, owner=sys.argv[2]) for _ in range(10)]))
"""


def test_concurrent_processes_never_hand_out_the_same_port(tmp_path: Path) -> None:
    code = textwrap.dedent(CONCURRENT)
    low = free_window(160)  # 150 of 160 ports are handed out: all must be free of other processes
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), f"p{i}", str(low)], stdout=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    handed_out: list[int] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        handed_out += [port for block in json.loads(out) for port in block]
    assert len(handed_out) == 150
    assert len(set(handed_out)) == 150
    reservations = ports.PortAllocator(tmp_path, low=low, high=low + 159).reservations()
    assert sorted(reservations) == sorted(handed_out)


def test_bad_arguments(tmp_path: Path) -> None:
    allocator = ports.PortAllocator(tmp_path, low=9000, high=9010)  # never reaches a port
    with pytest.raises(ValueError, match="count"):
        allocator.allocate(0, owner="x")
    with pytest.raises(ValueError, match="owner"):
        allocator.allocate(1, owner="")
    with pytest.raises(ValueError, match="no usable ports"):
        ports.PortAllocator(tmp_path, low=10005, high=10010)
