"""Fixtures for the node agent's network: a unique prefix and pod CIDR per test, and processes in pod netns.

Every test names its kernel objects with its own prefix (``kt<6 hex>``) and picks a pod CIDR that overlaps
no host route, so concurrent runs never collide; teardown asserts nothing carrying the prefix is left
(network namespaces, host links, host routes), then sweeps whatever was, so one failure does not leak.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kray.local.node.netcmd import json_sync
from kray.local.node.network import NodeNetwork

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(sys.argv[2].encode()); c.close()
"""

CLIENT = """
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        with socket.create_connection((host, port), timeout=2) as c:
            print(c.recv(100).decode()); break
    except OSError as e:
        if time.monotonic() > deadline:
            print(f"ERROR {type(e).__name__}: {e}"); break
        time.sleep(0.05)
"""


def leftovers(prefix: str) -> list[str]:
    """Everything in the host's view carrying ``prefix``: netns, links and routes."""
    found = [
        f"netns {n}"
        for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
        if n.startswith(f"{prefix}-")
    ]
    links = json_sync("listing the host's links", "ip", "-j", "link", "show")
    found += [f"link {link['ifname']}" for link in links if link["ifname"].startswith(prefix)]
    routes = json_sync("listing the host's routes", "ip", "-j", "route", "show")
    found += [f"route {r['dst']}" for r in routes if str(r.get("dev", "")).startswith(prefix)]
    return found


def host_routes() -> list[ipaddress.IPv4Network]:
    routes = json_sync("listing the host's routes", "ip", "-j", "-4", "route", "show", "table", "all")
    return [ipaddress.IPv4Network(r["dst"], strict=False) for r in routes if r["dst"] != "default"]


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"kt{secrets.token_hex(3)}"
    yield name
    left = leftovers(name)
    NodeNetwork.sweep(name)
    assert not left, f"left behind by the test: {left}"
    assert not leftovers(name), f"left even after a sweep: {leftovers(name)}"


@pytest.fixture
def pod_cidr() -> str:
    """A /24 of 10.200.0.0/13 that no host route overlaps."""
    taken = host_routes()
    for _ in range(100):
        net = ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.200.0.0")) + random.randrange(2048) * 256, 24))
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise AssertionError(f"no free /24 in 10.200.0.0/13; host routes: {taken}")


def make_network(prefix: str, pod_cidr: str, state_dir: Path, **kw: Any) -> NodeNetwork:
    defaults: dict[str, Any] = {"apiserver": ("127.0.0.1", 1), "kubernetes_service": None, "node_name": "n1"}
    return NodeNetwork(prefix=prefix, pod_cidr=pod_cidr, state_dir=state_dir, **(defaults | kw))


@pytest.fixture
async def network(prefix: str, pod_cidr: str, tmp_path: Path) -> AsyncIterator[NodeNetwork]:
    net = make_network(prefix, pod_cidr, tmp_path / "net")
    await net.start()
    try:
        yield net
    finally:
        await net.stop()


def in_netns(netns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net={netns}", *argv]


class Servers:
    """TCP servers in pod netns answering a fixed text; killed at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, netns: str, port: int, reply: str) -> None:
        proc = subprocess.Popen(
            in_netns(netns, sys.executable, "-c", SERVER, str(port), reply), stdout=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the server prints at once or dies (EOF)
        assert line.strip() == "listening", f"server in {netns} did not start: {line!r}, exit {proc.poll()}"


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    for proc in s.procs:
        proc.kill()
        proc.wait(timeout=10)


def dial(netns: str | None, host: str, port: int, *, timeout: float = 10) -> str:
    """What a server answers to a client in ``netns`` (None: the host), or ``ERROR ...``."""
    argv = [sys.executable, "-c", CLIENT, host, str(port), str(timeout)]
    done = subprocess.run(
        in_netns(netns, *argv) if netns else argv, check=False, capture_output=True, text=True, timeout=timeout + 20
    )
    return done.stdout.strip() or f"ERROR no output: {done.stderr.strip()}"


def pod(name: str, namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "uid": secrets.token_hex(16)}, "spec": dict(spec)}
