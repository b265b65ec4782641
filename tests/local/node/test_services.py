"""The Services planner (pure): hosts files, resolv.conf and the nftables ruleset from Services and
EndpointSlices as the apiserver returns them. Rulesets are checked by the real ``nft`` (``-c``: parsed and
validated by the kernel, never committed) in a throwaway network namespace (``unshare -n``).
"""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kray.local.node.services import hosts_file, nft_ruleset, plan_services, pod_hostname, resolv_conf


def svc(name: str, cluster_ip: str, *ports: dict[str, Any], namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": list(ports), **spec},
    }


def eps(
    service: str, ports: list[dict[str, Any]], *endpoints: dict[str, Any], namespace: str = "ns1"
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{service}-x", "namespace": namespace, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": list(endpoints),
    }


def ep(ip: str, *, ready: bool | None = True, hostname: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    if hostname:
        out["hostname"] = hostname
    return out


def nft_check(ruleset: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", "-"],
        input=ruleset,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


POD = {"metadata": {"name": "raycluster-head-abc", "namespace": "ns1"}, "spec": {"subdomain": "raycluster-headless"}}


def test_hosts_file_is_the_kubelets_plus_every_service_name_form() -> None:
    records = plan_services(
        [
            svc("head", "10.96.0.20", {"name": "gcs", "port": 6379}),
            svc("raycluster-headless", "None", {"port": 6379}),
            svc("api", "10.96.0.30", {"port": 80}, namespace="other"),
            svc("ext", "", type="ExternalName", externalName="example.com"),
        ],
        [
            eps(
                "raycluster-headless",
                [{"port": 6379}],
                ep("10.244.0.3", hostname="raycluster-head-abc"),
                ep("10.244.0.4", ready=False),
                ep("10.244.0.5", ready=None),  # no condition: ready
            )
        ],
    )
    assert hosts_file(pod=POD, pod_ip="10.244.0.3", services=records) == (
        "# Kubernetes-managed hosts file (kray node agent).\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.244.0.3\traycluster-head-abc.raycluster-headless.ns1.svc.cluster.local\traycluster-head-abc\n"
        "10.96.0.20\thead.ns1.svc.cluster.local\thead.ns1.svc\thead.ns1\thead\n"
        "10.244.0.3\traycluster-headless.ns1.svc.cluster.local\traycluster-headless.ns1.svc\traycluster-headless.ns1"
        "\traycluster-headless\n"
        "10.244.0.3\traycluster-head-abc.raycluster-headless.ns1.svc.cluster.local"
        "\traycluster-head-abc.raycluster-headless.ns1.svc\traycluster-head-abc.raycluster-headless.ns1"
        "\traycluster-head-abc.raycluster-headless\n"
        "10.244.0.5\traycluster-headless.ns1.svc.cluster.local\traycluster-headless.ns1.svc\traycluster-headless.ns1"
        "\traycluster-headless\n"
        "10.96.0.30\tapi.other.svc.cluster.local\tapi.other.svc\tapi.other\n"
    )


def test_resolv_conf_and_hostname() -> None:
    assert resolv_conf(namespace="ns1", domain="k.local").splitlines()[1:] == [
        "search ns1.svc.k.local svc.k.local k.local",
        "nameserver 127.0.0.1",
        "options ndots:5 attempts:1",
    ]
    assert pod_hostname({"metadata": {"name": "x" * 70}}) == "x" * 63
    assert pod_hostname({"metadata": {"name": "p"}, "spec": {"hostname": "h"}}) == "h"


def test_ruleset_dnats_by_named_target_port_rejects_without_endpoints_and_skips_the_apiserver() -> None:
    records = plan_services(
        [
            svc("one", "10.96.0.11", {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}),
            svc("two", "10.96.0.12", {"port": 8265}),
            svc("none", "10.96.0.13", {"name": "a", "port": 1}),
            svc("kubernetes", "10.96.0.1", {"name": "https", "port": 443}, namespace="default"),
        ],
        [
            eps(
                "one",
                [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
                ep("10.244.0.2"),
            ),
            eps("two", [{"port": 8265}], ep("10.244.0.3"), ep("10.244.0.2"), ep("10.244.0.9", ready=False)),
            eps("none", [{"name": "b", "port": 1}], ep("10.244.0.2")),  # no slice port named "a"
            eps("kubernetes", [{"name": "https", "port": 6443}], ep("192.0.2.2"), namespace="default"),
        ],
    )
    ruleset = nft_ruleset(records, skip={("10.96.0.1", 443)})
    rules = [line.strip() for line in ruleset.splitlines() if line.strip().startswith("ip daddr")]
    assert rules == [
        'ip daddr 10.96.0.13 tcp dport 1 reject with tcp reset comment "ns1/none:a"',
        'ip daddr 10.96.0.11 tcp dport 80 dnat ip to 10.244.0.2:8080 comment "ns1/one:http"',
        'ip daddr 10.96.0.11 udp dport 53 dnat ip to 10.244.0.2:5353 comment "ns1/one:dns"',
        "ip daddr 10.96.0.12 tcp dport 8265 dnat ip addr . port to numgen random mod 2 map"
        ' { 0 : 10.244.0.2 . 8265, 1 : 10.244.0.3 . 8265 } comment "ns1/two:8265"',
    ]
    assert "ct status dnat masquerade" in ruleset
    assert ruleset.startswith("table ip kray\ndelete table ip kray\n")  # one transaction replacing the table
    done = nft_check(ruleset)
    assert done.returncode == 0, done.stderr


names = st.text("abcdefgh", min_size=1, max_size=6)
ips = st.integers(2, 250).map(lambda i: f"10.244.0.{i}")


@st.composite
def cluster(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services, slices = [], []
    for i, name in enumerate(draw(st.lists(names, max_size=6, unique=True))):
        namespace = draw(st.sampled_from(["ns1", "ns2"]))
        headless = draw(st.booleans())
        port_names = draw(st.lists(names, max_size=3, unique=True)) or [""]
        ports = [
            {"name": n, "port": draw(st.integers(1, 65535)), "protocol": draw(st.sampled_from(["TCP", "UDP", "SCTP"]))}
            for n in port_names
        ]
        services.append(svc(name, "None" if headless else f"10.96.1.{i + 1}", *ports, namespace=namespace))
        for _ in range(draw(st.integers(0, 2))):
            slice_ports = [
                {**p, "port": draw(st.integers(1, 65535))} for p in ports if draw(st.booleans()) or len(ports) == 1
            ]
            endpoints = [
                ep(ip, ready=draw(st.sampled_from([True, False, None]))) for ip in draw(st.lists(ips, max_size=4))
            ]
            slices.append(eps(name, slice_ports, *endpoints, namespace=namespace))
    return services, slices


@settings(max_examples=40, deadline=None)
@given(cluster())
def test_planned_rulesets_are_valid_nft_and_dnat_only_to_ready_endpoints(
    state: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    services, slices = state
    records = plan_services(services, slices)
    ready: dict[tuple[str, str], set[str]] = {}
    for s in slices:
        key = (s["metadata"]["namespace"], s["metadata"]["labels"]["kubernetes.io/service-name"])
        for e in s["endpoints"]:
            if e.get("conditions", {}).get("ready") is not False:
                ready.setdefault(key, set()).update(e["addresses"])
    for record in records:
        for rule in record.ports:
            assert {ip for ip, _ in rule.endpoints} <= ready.get((record.namespace, record.name), set())
        if record.cluster_ip is None:
            assert {ip for ip, _ in record.addresses} == ready.get((record.namespace, record.name), set())
    hosts = hosts_file(pod={"metadata": {"name": "p", "namespace": "ns1"}}, pod_ip="10.244.0.1", services=records)
    for line in hosts.splitlines()[8:]:
        ip, *aliases = line.split("\t")
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.0.0.0/8")
        assert all(a.count(".") >= 1 or a in {r.name for r in records if r.namespace == "ns1"} for a in aliases)
    done = nft_check(nft_ruleset(records))
    assert done.returncode == 0, done.stderr
