"""RayClusters on one machine: status, scaling, suspend, two at once, jobs on an existing cluster, hygiene."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx2
import pytest

from kray.local.environment import PORTS_ANNOTATION
from kray.store import RAYCLUSTER, RAYJOB, Obj

from .conftest import Local, alive, annotations, condition, raycluster, rayjob, settle, status, wait_for

pytestmark = pytest.mark.slow

SHARED = "lm-a"


@pytest.fixture(scope="module")
def shared(local: Local) -> str:
    """A 1-CPU head + one 1-CPU worker, shared by the module; ``ready`` puts it back in that shape."""
    local.create(RAYCLUSTER, raycluster(SHARED))
    local.wait_cluster_ready(SHARED)
    return SHARED


def shape(cluster: Obj) -> tuple[bool, int, object]:
    """What tests change on the shared cluster: suspend, the worker replicas, the workers to delete."""
    group = cluster["spec"]["workerGroupSpecs"][0]
    return bool(cluster["spec"].get("suspend")), group.get("replicas"), group.get("scaleStrategy")


KNOWN_SHAPE = (False, 1, None)


def restore(cluster: Obj) -> None:
    cluster["spec"]["suspend"] = False
    cluster["spec"]["workerGroupSpecs"][0]["replicas"] = 1
    cluster["spec"]["workerGroupSpecs"][0].pop("scaleStrategy", None)


@pytest.fixture
def ready(local: Local, shared: str) -> str:
    """The shared cluster in its known shape and ready, whatever a test before this one (failing or not) left."""
    current = local.get(RAYCLUSTER, shared)
    if current is None or current["metadata"].get("deletionTimestamp"):
        local.wait_gone(RAYCLUSTER, shared)
        local.create(RAYCLUSTER, raycluster(shared))
    elif shape(current) != KNOWN_SHAPE:
        local.update(RAYCLUSTER, shared, restore)
    local.wait_cluster_ready(shared)
    return shared


@pytest.fixture
def second(local: Local, shared: str) -> str:
    """A second cluster, created when a test needs it and it does not exist (one test deletes it)."""
    current = local.get(RAYCLUSTER, "lm-b")
    if current is None or current["metadata"].get("deletionTimestamp"):
        local.wait_gone(RAYCLUSTER, "lm-b")
        local.create(RAYCLUSTER, raycluster("lm-b"))
    local.wait_cluster_ready("lm-b")
    return "lm-b"


def ports_of(cluster: Obj) -> dict[str, int]:
    text = annotations(cluster)[PORTS_ANNOTATION]
    return {k: int(v) for k, v in (part.split("=") for part in text.split(","))}


def test_cluster_status_is_kuberays(local: Local, ready: str) -> None:
    cluster = local.get(RAYCLUSTER, ready)
    assert cluster is not None
    st = status(cluster)
    assert st["state"] == "ready"
    assert condition(cluster, "HeadPodReady") == "True"
    assert condition(cluster, "RayClusterProvisioned") == "True"
    assert condition(cluster, "RayClusterSuspended") == "False"
    assert st["readyWorkerReplicas"] == st["availableWorkerReplicas"] == st["desiredWorkerReplicas"] == 1
    assert st["desiredCPU"] == "2"
    assert st["desiredMemory"] == "2Gi"
    ports = ports_of(cluster)
    assert st["endpoints"]["gcs-server"] == str(ports["gcs"])
    assert st["endpoints"]["dashboard"] == str(ports["dashboard"])
    assert st["endpoints"]["client"] == str(ports["client"])
    head = next(p for p in local.live_pods(ready) if p["metadata"]["labels"]["ray.io/node-type"] == "head")
    assert st["head"]["podIP"] == "127.0.0.1"
    assert st["head"]["podName"] == head["metadata"]["name"]
    assert st["head"]["serviceName"] == f"{ready}-head-svc"
    # KubeRay lists the head Service's target ports: metrics is where the head really exports them.
    node = dict(part.split("=") for part in annotations(head)["kray.io/node-ports"].split(","))
    assert st["endpoints"]["metrics"] == node["metrics"] == str(ports["head_metrics"])
    assert "kray.io/port-owner" not in annotations(head)  # the cluster owns the head's node ports
    # The dashboard really is there, on the advertised port, behind the cluster's token.
    assert local.ray_jobs(ready) is not None


@pytest.mark.timeout(720)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_two_clusters_run_side_by_side_on_distinct_ports(local: Local, ready: str, second: str) -> None:
    a, b = local.get(RAYCLUSTER, ready), local.get(RAYCLUSTER, second)
    assert a is not None
    assert b is not None
    assert status(a)["state"] == status(b)["state"] == "ready"
    ports_a, ports_b = set(ports_of(a).values()), set(ports_of(b).values())
    assert not ports_a & ports_b, (ports_a, ports_b)
    for cluster in (ready, second):
        code = f"import ray; ray.init(); print('ran on', ray.get_runtime_context().get_node_id()[:8], '{cluster}')"
        local.create(RAYJOB, rayjob(f"{cluster}-job", f'python -c "{code}"', selector=cluster))
    for cluster in (ready, second):
        done = local.wait_job(f"{cluster}-job", {"Complete", "Failed"}, timeout=60)
        assert status(done)["jobStatus"] == "SUCCEEDED", status(done).get("message")
        assert status(done)["rayClusterName"] == cluster
        submission = status(done)["jobId"]
        assert [j["status"] for j in local.ray_jobs(cluster) if j["submission_id"] == submission] == ["SUCCEEDED"]


@pytest.mark.timeout(780)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_scale_up_down_and_workers_to_delete(local: Local, ready: str) -> None:
    def replicas(count: int) -> None:
        local.update(RAYCLUSTER, ready, lambda c: c["spec"]["workerGroupSpecs"][0].update(replicas=count))

    replicas(2)
    cluster = local.wait_cluster_ready(ready, workers=2)
    assert status(cluster)["desiredWorkerReplicas"] == 2
    assert status(cluster)["desiredCPU"] == "3"
    replicas(1)
    local.wait_cluster_ready(ready, workers=1)
    wait_for(lambda: len(local.workers(ready)) == 1, timeout=30, what="one worker pod left")

    victim = local.workers(ready)[0]["metadata"]["name"]
    victim_processes = local.pod_processes(local.workers(ready))
    assert victim_processes
    local.update(
        RAYCLUSTER,
        ready,
        lambda c: c["spec"]["workerGroupSpecs"][0].update(scaleStrategy={"workersToDelete": [victim]}),
    )
    try:
        wait_for(
            lambda: [p for p in local.workers(ready) if p["metadata"]["name"] != victim],
            timeout=30,
            what="a replacement worker",
        )
        wait_for(lambda: victim not in {p["metadata"]["name"] for p in local.pods(ready)}, timeout=30, what="victim")
        assert settle(lambda: [p.pid for p in victim_processes if alive(p)], timeout=20) == []
        local.wait_cluster_ready(ready, workers=1)
        assert [p["metadata"]["name"] for p in local.workers(ready)] != [victim]
    finally:
        local.update(RAYCLUSTER, ready, lambda c: c["spec"]["workerGroupSpecs"][0].pop("scaleStrategy", None))


def test_suspend_and_resume_a_cluster(local: Local, ready: str) -> None:
    processes = local.pod_processes(local.live_pods(ready))
    local.update(RAYCLUSTER, ready, lambda c: c["spec"].update(suspend=True))
    try:
        seen_suspending = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cluster = local.get(RAYCLUSTER, ready)
            seen_suspending = seen_suspending or condition(cluster, "RayClusterSuspending") == "True"
            if condition(cluster, "RayClusterSuspended") == "True":
                break
            time.sleep(0.2)
        assert condition(cluster, "RayClusterSuspended") == "True", status(cluster)
        assert condition(cluster, "RayClusterSuspending") == "False"
        assert seen_suspending, "the cluster went to Suspended without passing through Suspending"
        assert status(cluster)["state"] == "suspended"
        assert local.pods(ready) == []
        # Suspended means the Ray processes are gone, not only the pod objects.
        assert [p.pid for p in processes if alive(p)] == []
    finally:
        local.update(RAYCLUSTER, ready, lambda c: c["spec"].update(suspend=False))
    resumed = local.wait_cluster_ready(ready, workers=1)
    assert condition(resumed, "RayClusterSuspended") == "False"
    assert condition(resumed, "HeadPodReady") == "True"


@pytest.mark.timeout(700)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_failing_job_reports_exit_code_and_last_log_lines(local: Local, ready: str) -> None:
    code = "import sys; print('last words before exit 3'); sys.exit(3)"
    path = local.manifest(rayjob("lm-fail", f'python -c "{code}"', selector=ready))
    run = local.kray("job", "run", "-f", str(path), timeout=300)
    assert run.returncode == 1, run.stderr
    assert "last words before exit 3" in run.stdout  # the driver log was streamed
    job = local.get(RAYJOB, "lm-fail")
    st = status(job)
    assert st["jobDeploymentStatus"] == "Failed"
    assert st["jobStatus"] == "FAILED"
    assert st["reason"] == "AppFailed"
    assert "exit code 3" in st["message"], st["message"]
    assert "last words before exit 3" in st["message"], st["message"]
    assert "AppFailed" in run.stderr
    assert "exit code 3" in run.stderr


def test_missing_entrypoint_fails_with_a_clear_message(local: Local, ready: str) -> None:
    local.create(RAYJOB, rayjob("lm-noent", "kray-no-such-program --flag", selector=ready))
    job = local.wait_job("lm-noent", {"Complete", "Failed"}, timeout=60)
    st = status(job)
    assert st["jobDeploymentStatus"] == "Failed"
    assert st["jobStatus"] == "FAILED"
    assert "kray-no-such-program" in st["message"], st["message"]
    assert "not found" in st["message"], st["message"]


def test_active_deadline_fails_the_job_and_stops_the_ray_job(local: Local, ready: str) -> None:
    local.create(RAYJOB, rayjob("lm-deadline", "sleep 600", selector=ready, activeDeadlineSeconds=15))
    running = local.wait_job("lm-deadline", {"Running"}, timeout=30)
    started = time.monotonic()
    submission = status(running)["jobId"]
    job = local.wait_job("lm-deadline", {"Failed", "Complete"}, timeout=60)
    st = status(job)
    assert st["jobDeploymentStatus"] == "Failed"
    assert st["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds" in st["message"]
    assert time.monotonic() - started < 30

    def stopped() -> list[str]:
        return [j["status"] for j in local.ray_jobs(ready) if j["submission_id"] == submission]

    assert wait_for(lambda: stopped() == ["STOPPED"] and stopped(), timeout=30, what="the Ray job STOPPED")


def test_crash_looping_worker_shows_crash_loop_back_off(local: Local) -> None:
    template = {
        "metadata": {"annotations": {"ray.io/overwrite-container-cmd": "true"}},
        "spec": {
            "containers": [
                {
                    "name": "ray-worker",
                    "image": "rayproject/ray:2.60.0",
                    "command": ["bash", "-c", "exit 1"],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                }
            ]
        },
    }
    local.create(RAYCLUSTER, raycluster("lm-crash", worker_template=template))
    try:

        def backing_off() -> Obj | None:
            for pod in local.workers("lm-crash"):
                for container in (pod.get("status") or {}).get("containerStatuses") or ():
                    if (container.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
                        return pod
            return None

        pod = wait_for(backing_off, timeout=60, what="the worker in CrashLoopBackOff")
        container = pod["status"]["containerStatuses"][0]
        assert container["restartCount"] >= 1
        assert "back-off" in container["state"]["waiting"]["message"]
        cluster = local.get(RAYCLUSTER, "lm-crash")
        assert status(cluster).get("state") != "ready"
        assert "readyWorkerReplicas" not in status(cluster), "0 is omitted, as KubeRay writes it"
        described = local.kray("describe", "cluster", "lm-crash")
        assert described.returncode == 0, described.stderr
        crash_line = next(line for line in described.stdout.splitlines() if pod["metadata"]["name"] in line)
        # `kray job run` says so too while it waits for the cluster.
        from kray.cli.jobs import _phase_line

        progress = _phase_line({"status": {"jobDeploymentStatus": "Initializing"}}, cluster, local.pods("lm-crash"))
        assert "CrashLoopBackOff" in progress, progress
        assert "CrashLoopBackOff" in crash_line, described.stdout
        assert "back-off" in crash_line, described.stdout
    finally:
        local.delete(RAYCLUSTER, "lm-crash")


def test_delete_cluster_leaves_no_ray_process(local: Local, second: str) -> None:
    pods = local.live_pods(second)
    processes = local.pod_processes(pods)
    assert len(processes) >= 4, processes  # ray start, gcs_server, raylet, ... for the head and the worker
    deleted = local.kray("delete", "cluster", second)
    assert deleted.returncode == 0, deleted.stderr
    assert local.get(RAYCLUSTER, second) is None
    assert local.pods(second) == []
    # `kray delete` waits for the cluster, which (Foreground) waits for its pods, which wait for their processes.
    assert [p.pid for p in processes if alive(p)] == []
    assert local.pod_processes(pods) == []


def test_every_port_of_a_cluster_refuses_unauthenticated_requests(local: Local, ready: str) -> None:
    from .security import grpc_call, http_status, listening, probe

    cluster = local.get(RAYCLUSTER, ready)
    assert cluster is not None
    ports = ports_of(cluster)
    pids = {p.pid for p in local.pod_processes(local.live_pods(ready))}
    found = listening(pids)
    assert ports["gcs"] in found, found
    assert ports["dashboard"] in found, found
    verdicts = {port: probe(host, port) for port, host in sorted(found.items())}
    report = "\n".join(
        f"  {v.port:>5} {v.host:<15} {v.kind:<7} refused={v.refused} {v.detail}" for v in verdicts.values()
    )

    # The dashboard and the GCS, explicitly (and that the right token does get in).
    dashboard = verdicts[ports["dashboard"]]
    assert (dashboard.kind, dashboard.refused) == ("http", True), report
    token = local.cluster_token(ready)
    auth = {"x-ray-authorization": f"Bearer {token}"}
    assert http_status("127.0.0.1", ports["dashboard"], headers=auth) == 200
    assert http_status("127.0.0.1", ports["dashboard"], path="/api/gcs_healthz") == 200  # allowed to stay open
    gcs = verdicts[ports["gcs"]]
    assert (gcs.kind, gcs.refused) == ("grpc", True), report
    cluster_id = "/ray.rpc.NodeInfoGcsService/GetClusterId"
    assert grpc_call("127.0.0.1", ports["gcs"], cluster_id, None).name == "UNAUTHENTICATED"
    assert grpc_call("127.0.0.1", ports["gcs"], cluster_id, "wrong").name == "UNAUTHENTICATED"
    assert grpc_call("127.0.0.1", ports["gcs"], cluster_id, token).name == "OK"

    # Every other port refuses too, except Ray's Prometheus exporters (read-only metrics, no auth in Ray):
    # the head's dashboard and autoscaler metrics ports and each node's --metrics-export-port.
    metrics = {ports["dashboard_metrics"], ports["autoscaler_metrics"]}
    for pod in local.live_pods(ready):
        node = dict(part.split("=") for part in annotations(pod)["kray.io/node-ports"].split(","))
        metrics.add(int(node["metrics"]))
    open_ports = {port for port, v in verdicts.items() if not v.refused}
    assert open_ports <= metrics, f"ports that let an unauthenticated request in:\n{report}"
    for port in open_ports & set(found):
        page = http_status(found[port], port, path="/metrics")
        assert page == 200, f"{port} is open but is not a metrics exporter:\n{report}"
    print(f"\n{len(verdicts)} listening ports of {ready}:\n{report}")


def test_the_kray_server_api_is_local_and_needs_its_token(local: Local) -> None:
    import httpx2
    import psutil

    info = local.info or local.start()
    listens = [c for c in psutil.Process(info.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listens
    assert {c.laddr.ip for c in listens} == {"127.0.0.1"}, listens
    path = f"{info.url}/apis/ray.io/v1/namespaces/default/rayclusters"
    assert httpx2.get(path, timeout=5).status_code == 401
    assert httpx2.get(path, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert httpx2.get(path, headers={"Authorization": f"Bearer {info.token}"}, timeout=5).status_code == 200
    assert local.paths.token.stat().st_mode & 0o777 == 0o600


@pytest.mark.timeout(660)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_kray_dashboard_prints_a_url_that_works_with_the_printed_token_file(local: Local, ready: str) -> None:
    shown = local.kray("dashboard", ready)
    assert shown.returncode == 0, shown.stderr
    fields = dict(re.findall(r"^(Dashboard|Ray client|Token file):\s+(.+)$", shown.stdout, flags=re.MULTILINE))
    url = fields["Dashboard"]
    token_file = Path(fields["Token file"].removesuffix(" (mode 0600)"))
    assert url == f"http://127.0.0.1:{status(local.get(RAYCLUSTER, ready))['endpoints']['dashboard']}"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert token == local.cluster_token(ready)
    assert token not in shown.stdout  # the path is printed, never the secret
    assert httpx2.get(f"{url}/api/jobs/", timeout=10).status_code == 401
    answered = httpx2.get(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answered.status_code == 200
    listed = local.kray("get", "clusters", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    clusters = {c["metadata"]["name"]: c for c in json.loads(listed.stdout)["items"]}
    assert clusters[ready]["status"]["state"] == "ready"
