"""Token auth on Kubernetes, checked port by port from another pod, as local mode checks it on one machine.

A RayCluster with ``authOptions: {mode: token}`` runs on the node agent, each pod in its own network namespace.
Every TCP port the head pod listens on (read from its own network namespace) is probed from a pod of another
Kubernetes namespace -- so the requests cross the pod network as any other tenant's would -- with local mode's
probe (``tests/local_mode/security.py``: HTTP, then one read-only method of every Ray gRPC service, without a
token and with a wrong one). Every port refuses, except Ray's Prometheus exporters (no auth in Ray); ports bound
to loopback are not reachable at all; and the cluster's token (from the Secret the operator made) gets in.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod, Secret

from kray.dev.pytest_plugin import fresh_namespace
from tests.e2e.support import E2E, REPO, RayCluster, exec_in, get_obj, head_spec, pods
from tests.local.node.agent_helpers import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CLUSTER = "auth"
# Ray's Prometheus exporters, open by Ray's design: --metrics-export-port (KubeRay's 8080), the dashboard's
# and the autoscaler's metrics ports.
METRICS = {8080, 44217, 44227}

LISTENING = """
import json, psutil
found = {}
for c in psutil.net_connections(kind="tcp"):
    if c.status == psutil.CONN_LISTEN:
        found.setdefault(str(c.laddr.port), []).append(c.laddr.ip)
print(json.dumps(found))
"""

# Run in the prober pod: local mode's probe of each port at the head's pod IP, then the token's way in.
PROBE = """
import json, socket, sys
sys.path.insert(0, sys.argv[1])
from tests.local_mode.security import grpc_call, http_status, probe
args = json.loads(sys.argv[2])
ip, token, out = args["ip"], args["token"], {"verdicts": {}, "loopback": {}}
for port in args["open"]:
    v = probe(ip, port)
    out["verdicts"][port] = {"kind": v.kind, "refused": v.refused, "detail": v.detail,
                             "metrics": http_status(ip, port, path="/metrics") if not v.refused else None}
for port in args["loopback"]:
    try:
        socket.create_connection((ip, port), timeout=3).close()
        out["loopback"][port] = "connected"
    except OSError as e:
        out["loopback"][port] = type(e).__name__
auth = {"x-ray-authorization": f"Bearer {token}"}
svc = args["service"]
cluster_id = "/ray.rpc.NodeInfoGcsService/GetClusterId"
out["with_token"] = {
    "dashboard": http_status(ip, 8265, headers=auth),
    "dashboard_by_service": http_status(svc, 8265, headers=auth),
    "dashboard_by_service_without": http_status(svc, 8265),
    "healthz_without": http_status(ip, 8265, path="/api/gcs_healthz"),
    "gcs": grpc_call(ip, 6379, cluster_id, token).name,
    "gcs_by_service": grpc_call(svc, 6379, cluster_id, token).name,
    "gcs_by_service_without": grpc_call(svc, 6379, cluster_id, None).name,
    "gcs_wrong": grpc_call(ip, 6379, cluster_id, "wrong").name,
}
print(json.dumps(out))
"""


def auth_cluster(namespace: str) -> dict[str, Any]:
    """A head-only cluster (1 CPU) with Ray token auth; the operator makes the ``auth`` Secret."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": CLUSTER, "namespace": namespace},
        "spec": {**head_spec(), "authOptions": {"mode": "token"}},
    }


def prober_pod(namespace: str) -> dict[str, Any]:
    """A plain pod that only waits: the probe runs joined into its network namespace."""
    container = {"name": "prober", "image": "rayproject/ray:2.52.0", "command": ["sleep", "600"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "prober", "namespace": namespace},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
    }


def is_loopback(host: str) -> bool:
    return host.removeprefix("::ffff:").startswith("127.") or host == "::1"


def running(e2e: E2E, namespace: str, name: str) -> bool:
    found = get_obj(e2e.client, Pod, name, namespace)
    status = (found or {}).get("status") or {}
    return status.get("phase") == "Running" and bool(status.get("podIP"))


@pytest.mark.timeout(1800)  # >= its bounded waits with the e2e session's (tests/test_suite_rules.py)
def test_every_port_refuses_another_pod_without_the_token(e2e: E2E, namespace: str) -> None:
    t0 = time.monotonic()
    e2e.create(auth_cluster(namespace))
    seen: dict[str, Any] = {}

    def ready() -> bool:
        seen["rc"] = get_obj(e2e.client, RayCluster, CLUSTER, namespace)
        return ((seen["rc"] or {}).get("status") or {}).get("state") == "ready"

    with fresh_namespace(e2e.client, f"e2e-prober-{secrets.token_hex(2)}") as other:
        e2e.create(prober_pod(other))
        wait_for(
            ready,
            timeout=240,
            what=f"RayCluster {CLUSTER} ready",
            seen=lambda: e2e.report(namespace, f"status: {(seen.get('rc') or {}).get('status')}"),
        )
        wait_for(lambda: running(e2e, other, "prober"), timeout=60, what="the prober pod Running",
                 seen=lambda: e2e.report(other))  # fmt: skip
        print(f"cluster and prober up in {time.monotonic() - t0:.1f}s")
        head = pods(e2e.client, namespace, **{"ray.io/node-type": "head"})[0]
        head_name, head_ip = head["metadata"]["name"], head["status"]["podIP"]
        prober_ip = e2e.client.get(Pod, "prober", namespace=other).status.podIP  # type: ignore[union-attr]
        assert prober_ip != head_ip, "the prober must be another pod's network namespace"

        secret = e2e.client.get(Secret, CLUSTER, namespace=namespace)
        token = base64.b64decode((secret.data or {})["auth_token"]).decode()

        listed = exec_in(e2e.client, namespace, head_name, "ray-head", ["python", "-c", LISTENING])
        assert listed.returncode == 0, f"listing the head's ports: {listed.stderr}"
        found = {int(port): ",".join(sorted(hosts)) for port, hosts in json.loads(listed.stdout).items()}
        assert {6379, 8265, 10001} <= set(found), f"the head listens on {found}"
        # Bound to loopback only: local mode probes these at 127.0.0.1; from another pod they must be unreachable.
        loopback = sorted(
            p for p, hosts in found.items() if all(h.startswith("127.") or h == "::1" for h in hosts.split(","))
        )
        reachable = sorted(set(found) - set(loopback))

        args = {"ip": head_ip, "token": token, "open": reachable, "loopback": loopback}
        args["service"] = f"{CLUSTER}-head-svc.{namespace}.svc.cluster.local"
        done = exec_in(e2e.client, other, "prober", "prober", ["python", "-c", PROBE, str(REPO), json.dumps(args)])
        assert done.returncode == 0, f"the probe exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        result = json.loads(done.stdout)
        verdicts = {int(port): v for port, v in result["verdicts"].items()}
        report = "\n".join(
            f"  {port:>5} {found[port]:<15} {v['kind']:<7} refused={v['refused']} {v['detail']}"
            for port, v in sorted(verdicts.items())
        )
        report += "\n" + "\n".join(
            f"  {port:>5} {found[int(port)]:<15} {how}" for port, how in result["loopback"].items()
        )
        print(f"\n{len(found)} listening ports of {head_name} ({head_ip}) probed from {other}/prober ({prober_ip}):")
        print(report)

        # The dashboard, the GCS and the Ray client server refuse explicitly; the right token gets in.
        assert (verdicts[8265]["kind"], verdicts[8265]["refused"]) == ("http", True), report
        assert (verdicts[6379]["kind"], verdicts[6379]["refused"]) == ("grpc", True), report
        assert (verdicts[10001]["kind"], verdicts[10001]["refused"]) == ("grpc", True), report
        assert result["with_token"] == {
            "dashboard": 200,
            "dashboard_by_service": 200,
            "dashboard_by_service_without": 401,
            "healthz_without": 200,  # allowed to stay open, as in local mode
            "gcs": "OK",
            "gcs_by_service": "OK",
            "gcs_by_service_without": "UNAUTHENTICATED",
            "gcs_wrong": "UNAUTHENTICATED",
        }, result["with_token"]

        # Every other port refuses too, except Ray's Prometheus exporters; loopback-only ports are unreachable.
        open_ports = {port for port, v in verdicts.items() if not v["refused"]}
        assert open_ports <= METRICS, f"ports that let another pod in without the token:\n{report}"
        for port in open_ports:
            assert verdicts[port]["metrics"] == 200, f"{port} is open but is not a metrics exporter:\n{report}"
        assert all(how != "connected" for how in result["loopback"].values()), report
    print(f"whole test {time.monotonic() - t0:.1f}s")
