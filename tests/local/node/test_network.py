"""The node agent's pod network on the real kernel: pods in their own netns reach each other, themselves and
each other through ClusterIPs, the host through the uplink, the apiserver through the relay; a restarted agent
adopts what it left; a new one sweeps it; stop leaves nothing (every test's teardown asserts it).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kray.local.node.network import NodeNetwork
from kray.local.sandbox import SandboxError
from tests.local.node.conftest import Servers, dial, host_routes, in_netns, leftovers, make_network, pod

CLUSTER_IP = "10.96.77.7"


def service(name: str, cluster_ip: str, *ports: dict[str, Any], namespace: str = "ns1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"clusterIP": cluster_ip, "ports": list(ports)}}


def endpoint_slice(
    svc: str, ports: list[dict[str, Any]], *endpoints: tuple[str, bool], namespace: str = "ns1"
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{svc}-abc", "namespace": namespace, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints],
    }


async def test_pods_reach_each_other_and_the_host_reaches_them(network: NodeNetwork, servers: Servers) -> None:
    a, b = pod("a"), pod("b", hostname="bee")
    sa, sb = await network.create(a), await network.create(b)
    assert sa.ip != sb.ip
    assert {sa.ip, sb.ip} < set(map(str, network.cidr.hosts()))
    assert sb.host_ip == str(network.gateway)
    assert sb.node_name == "n1"
    assert sb.private_tmp
    assert sb.netns == f"/run/netns/{network.prefix}-{b['metadata']['uid'][:12]}"
    assert os.path.exists(sb.netns)
    assert sb.hostname == "bee"
    assert sa.hostname == "a"
    assert [dst for _, dst in sb.files] == ["/etc/hosts", "/etc/resolv.conf"]
    servers.start(sb.netns or "", 8080, "from-b")
    assert await asyncio.to_thread(dial, sa.netns, sb.ip, 8080) == "from-b"
    assert await asyncio.to_thread(dial, None, sb.ip, 8080) == "from-b"  # the host, through the uplink
    # create() again is the same sandbox (the agent adopts a pod by creating it again).
    assert await network.create(b) == sb
    await network.remove(b)
    assert not os.path.exists(sb.netns or "")
    assert (await asyncio.to_thread(dial, sa.netns, sb.ip, 8080, timeout=1)).startswith("ERROR")


async def test_cluster_ip_balances_over_ready_endpoints_hairpin_included(
    network: NodeNetwork, servers: Servers
) -> None:
    a, b = pod("a"), pod("b")
    sa, sb = await network.create(a), await network.create(b)
    servers.start(sa.netns or "", 8080, "a")
    servers.start(sb.netns or "", 8080, "b")
    svc = service("web", CLUSTER_IP, {"name": "http", "port": 80, "targetPort": "web"})
    # The targetPort is the slice's port named like the Service port (8080), not the Service's 80.
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    await network.update_services(
        services=[svc], endpoint_slices=[endpoint_slice("web", ports, (sa.ip, True), (sb.ip, True))], pods=[a, b]
    )
    seen = {await asyncio.to_thread(dial, sa.netns, CLUSTER_IP, 80) for _ in range(16)}
    assert seen == {"a", "b"}, f"pod a through the ClusterIP reached {seen} (a itself needs hairpin)"
    # Only b ready: every connection goes to b.
    await network.update_services(
        services=[svc], endpoint_slices=[endpoint_slice("web", ports, (sa.ip, False), (sb.ip, True))], pods=[a, b]
    )
    assert {await asyncio.to_thread(dial, sa.netns, CLUSTER_IP, 80) for _ in range(6)} == {"b"}
    # None ready: refused at once (a TCP reset), as kube-proxy does.
    await network.update_services(services=[svc], endpoint_slices=[endpoint_slice("web", ports)], pods=[a, b])
    started = time.monotonic()
    answer = await asyncio.to_thread(dial, sa.netns, CLUSTER_IP, 80, timeout=0)
    assert "ConnectionRefusedError" in answer, answer
    assert time.monotonic() - started < 5, answer


def lookup(sandbox_files: tuple[tuple[str, str], ...], netns: str, *names: str) -> subprocess.CompletedProcess[str]:
    """``getent ahostsv4`` in the pod's netns with its hosts file and resolv.conf bound as the launcher does."""
    binds = " && ".join(f"mount --bind {src} {dst}" for src, dst in sandbox_files)
    script = f'{binds} && exec getent ahostsv4 "$@"'
    argv = in_netns(netns, "unshare", "-m", "sh", "-c", script, "getent", *names)
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)


async def test_hosts_file_resolves_services_and_unknown_names_fail_fast(network: NodeNetwork) -> None:
    a, b = pod("a"), pod("b", hostname="head", subdomain="hl")
    sa, sb = await network.create(a), await network.create(b)
    hosts = Path(sa.files[0][0])
    inode = hosts.stat().st_ino
    slice_ports = [{"name": "", "port": 6379, "protocol": "TCP"}]
    await network.update_services(
        services=[
            service("hl", "None", {"port": 6379}),
            service("web", CLUSTER_IP, {"port": 80}, namespace="ns2"),
        ],
        endpoint_slices=[endpoint_slice("hl", slice_ports, (sa.ip, True), (sb.ip, False))],
        pods=[a, b],
    )
    assert hosts.stat().st_ino == inode, "the hosts file must be rewritten in place (it is bind-mounted)"
    done = await asyncio.to_thread(lookup, sa.files, sa.netns or "", "hl.ns1.svc.cluster.local")
    assert done.returncode == 0, done
    assert {line.split()[0] for line in done.stdout.splitlines()} == {sa.ip}, done
    for name, ip in [("hl", sa.ip), ("web.ns2", CLUSTER_IP), ("web.ns2.svc.cluster.local", CLUSTER_IP)]:
        done = await asyncio.to_thread(lookup, sa.files, sa.netns or "", name)
        assert done.stdout.split()[:1] == [ip], f"{name}: {done}"
    own = await asyncio.to_thread(lookup, sb.files, sb.netns or "", "head.hl.ns1.svc.cluster.local")
    assert own.stdout.split()[:1] == [sb.ip], own
    # `web` alone is another namespace's Service: unknown here, and refused at once (no DNS timeout).
    started = time.monotonic()
    done = await asyncio.to_thread(lookup, sa.files, sa.netns or "", "web")
    assert done.returncode != 0, done
    assert time.monotonic() - started < 5, done


async def test_apiserver_relay_reaches_the_host_loopback_server(prefix: str, pod_cidr: str, tmp_path: Path) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"apiserver:" + await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    net = make_network(
        prefix, pod_cidr, tmp_path / "net", apiserver=("127.0.0.1", port), kubernetes_service=("10.96.0.1", 443)
    )
    await net.start()
    try:
        p = pod("a")
        sandbox = await net.create(p)
        assert sandbox.env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
        assert sandbox.env["KUBERNETES_SERVICE_PORT"] == "443"
        assert sandbox.env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
        # The `kubernetes` Service as the apiserver lists it: its ClusterIP stays the relay's, never DNAT'd.
        kube = service("kubernetes", "10.96.0.1", {"name": "https", "port": 443}, namespace="default")
        slices = [
            endpoint_slice("kubernetes", [{"name": "https", "port": 6443}], ("192.0.2.99", True), namespace="default")
        ]
        await net.update_services(services=[kube], endpoint_slices=slices, pods=[p])
        script = (
            "import socket; c = socket.create_connection(('10.96.0.1', 443), timeout=10); c.sendall(b'ping');"
            " c.shutdown(socket.SHUT_WR); print(c.recv(100).decode())"
        )
        argv = in_netns(sandbox.netns or "", "python3", "-c", script)
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert out.decode().strip() == "apiserver:ping", err.decode()
    finally:
        await net.stop()
        server.close()


async def test_restarted_agent_adopts_its_pods(prefix: str, pod_cidr: str, tmp_path: Path, servers: Servers) -> None:
    first = make_network(prefix, pod_cidr, tmp_path / "net")
    await first.start()
    p = pod("a")
    sandbox = await first.create(p)
    servers.start(sandbox.netns or "", 8080, "still-here")
    netns_inode = os.stat(sandbox.netns or "").st_ino
    # The agent is killed -9: nothing of `first` runs any more, its objects stay.
    second = make_network(prefix, pod_cidr, tmp_path / "net")
    try:
        await second.start()
        assert second.recorded() == {p["metadata"]["uid"]}
        again = await second.create(p)
        assert again == sandbox
        assert os.stat(again.netns or "").st_ino == netns_inode
        assert await asyncio.to_thread(dial, None, sandbox.ip, 8080) == "still-here"
        await second.prune(keep=())
        assert not second.recorded()
        assert not os.path.exists(sandbox.netns or "")
    finally:
        await second.stop()
    assert not (tmp_path / "net" / "network.json").exists()
    assert not any((tmp_path / "net").iterdir())


async def test_new_agent_sweeps_what_a_killed_one_left(prefix: str, pod_cidr: str, tmp_path: Path) -> None:
    first = make_network(prefix, pod_cidr, tmp_path / "first")
    await first.start()
    await first.create(pod("a"))
    await first.create(pod("b"))
    assert len(leftovers(prefix)) >= 5  # 3 netns, the uplink and its route
    # Killed -9; a new agent with a fresh state dir knows none of them: all swept, then its own made.
    second = make_network(prefix, pod_cidr, tmp_path / "second")
    await second.start()
    try:
        left = sorted(x for x in leftovers(prefix) if not x.startswith("route 100."))  # the uplink's link net
        assert left == sorted([f"netns {prefix}-node", f"link {prefix}up", f"route {pod_cidr}"])
    finally:
        await second.stop()
    # And the static sweep alone after another kill.
    third = make_network(prefix, pod_cidr, tmp_path / "third")
    await third.start()
    await third.create(pod("c"))
    await asyncio.to_thread(NodeNetwork.sweep, prefix)
    assert leftovers(prefix) == []


async def test_overlapping_pod_cidr_is_refused_and_nothing_is_made(prefix: str, tmp_path: Path) -> None:
    taken = next(n for n in host_routes() if 8 <= n.prefixlen <= 29)
    net = make_network(prefix, str(taken.supernet(new_prefix=min(taken.prefixlen, 24))), tmp_path / "net")
    with pytest.raises(SandboxError, match="overlaps the host's routes"):
        await net.start()
    assert leftovers(prefix) == []


AGENT = """
import asyncio, sys
from pathlib import Path
from kray.local.node.network import NodeNetwork

async def main():
    net = NodeNetwork(prefix=sys.argv[1], pod_cidr=sys.argv[2], state_dir=Path(sys.argv[3]), apiserver=("127.0.0.1", 1),
                      kubernetes_service=("10.96.0.1", 443), node_name="n1")
    await net.start()
    sandbox = await net.create({"metadata": {"uid": sys.argv[4], "name": "a", "namespace": "ns1"}})
    print("IP", sandbox.ip, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_an_agent_killed_9_is_adopted_by_its_successor(
    prefix: str, pod_cidr: str, tmp_path: Path, servers: Servers
) -> None:
    uid = pod("a")["metadata"]["uid"]
    argv = [sys.executable, "-c", AGENT, prefix, pod_cidr, str(tmp_path / "net"), uid]
    agent = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert agent.stdout is not None
    # Bounded: the agent prints its pod's IP or dies (EOF ends the loop).
    ip = next((line.split()[1] for line in agent.stdout if line.startswith("IP ")), "")
    agent.kill()
    agent.wait(timeout=10)
    assert ip, "the agent died before creating its pod"
    netns = f"/run/netns/{prefix}-{uid[:12]}"
    servers.start(netns, 8080, "survived")
    successor = make_network(
        prefix, pod_cidr, tmp_path / "net", apiserver=("127.0.0.1", 1), kubernetes_service=("10.96.0.1", 443)
    )
    try:
        await successor.start()  # the dead agent's relay port is free again: its socket went with it
        sandbox = await successor.create(pod("a") | {"metadata": {"uid": uid, "name": "a", "namespace": "ns1"}})
        assert sandbox.ip == ip
        assert await asyncio.to_thread(dial, None, ip, 8080) == "survived"
    finally:
        await successor.stop()


async def test_without_uplink_the_host_is_untouched(prefix: str, pod_cidr: str, tmp_path: Path) -> None:
    net = make_network(prefix, pod_cidr, tmp_path / "net", uplink=False)
    await net.start()
    try:
        p = pod("a")
        await net.create(p)
        assert sorted(leftovers(prefix)) == [f"netns {net.netns_name(p['metadata']['uid'])}", f"netns {prefix}-node"]
    finally:
        await net.stop()
