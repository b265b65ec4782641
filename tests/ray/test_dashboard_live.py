"""The dashboard client against a real Ray head with token auth, started and stopped by kray's process kit.

One head serves the whole module (it takes seconds to start). It binds only ports from kray's allocator:
every port Ray would otherwise default (GCS, dashboard, agent HTTP/gRPC, metrics, node/object manager,
runtime-env agent, client server) is passed, and the dashboard's and autoscaler's metrics servers, which
otherwise take the fixed ports 44227 and 44217 on 0.0.0.0, get theirs through the environment. Its
``--temp-dir`` is short and unique, so the last test can prove no process of this head survives.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from kray._ray import errors
from kray._ray.dashboard import AsyncDashboardClient, DashboardClient, JobInfo, JobStatus, JobSubmission
from kray.local import procs
from kray.local.ports import PortAllocator
from kray.local.probe_checks import HttpGetAction, http_get

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).parent / "ray"
T = TypeVar("T")


@dataclass(frozen=True)
class RayHead:
    url: str
    token: str
    handle: procs.ProcessHandle
    temp_dir: Path
    log: Path
    ports: dict[str, int]
    seconds_to_healthy: float

    def client(self, *, token: str | None = "<own>", timeout: float = 10.0) -> DashboardClient:
        return DashboardClient(self.url, token=self.token if token == "<own>" else token, timeout=timeout)


def wait_until(fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(0.1)


PORT_NAMES = (
    "gcs",
    "dashboard",
    "client_server",
    "agent_http",
    "agent_grpc",
    "metrics_export",
    "node_manager",
    "object_manager",
    "runtime_env_agent",
    "dashboard_metrics",
    "autoscaler_metrics",
)


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    if not RAY.exists():
        pytest.fail(
            f"`ray` is not installed next to this Python ({RAY} is missing): this test needs a real Ray head. "
            "Install it with `scripts/bootstrap`, or `pip install 'kray[local]'` in this environment.",
            pytrace=False,
        )
    state = tmp_path_factory.mktemp("ray-state")
    allocator = PortAllocator(state)
    ports = dict(zip(PORT_NAMES, allocator.allocate(len(PORT_NAMES), owner="live-head"), strict=True))
    token = secrets.token_urlsafe(32)
    temp_dir = Path(tempfile.mkdtemp(prefix="kray-", dir="/tmp"))  # Ray's socket paths must stay short
    log = state / "head.log"
    argv = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--port={ports['gcs']}", f"--dashboard-port={ports['dashboard']}",
        f"--ray-client-server-port={ports['client_server']}",
        f"--dashboard-agent-listen-port={ports['agent_http']}", f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
        f"--metrics-export-port={ports['metrics_export']}", f"--node-manager-port={ports['node_manager']}",
        f"--object-manager-port={ports['object_manager']}", f"--runtime-env-agent-port={ports['runtime_env_agent']}",
        "--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "DASHBOARD_METRIC_PORT": str(ports["dashboard_metrics"]),
        "AUTOSCALER_METRIC_PORT": str(ports["autoscaler_metrics"]),
        # On SIGTERM the head drains for up to 30 s while jobs hold workers; keep teardown short.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "2",
    }
    started = time.monotonic()
    handle = procs.spawn(argv=argv, env=env, cwd=temp_dir, log_path=log)
    try:
        url = f"http://127.0.0.1:{ports['dashboard']}"
        with DashboardClient(url, timeout=2) as probe:

            def healthy() -> bool:
                if not handle.is_alive():
                    raise AssertionError(f"ray start exited ({handle.poll()}):\n{procs.tail(log, 30)}")
                return probe.gcs_healthz()

            wait_until(healthy, bool, timeout=90, what="gcs_healthz")
        seconds_to_healthy = time.monotonic() - started
        # KubeRay's readiness probe also asks the raylet through the agent; submissions need the agent.
        raylet = HttpGetAction(port=ports["agent_http"], path="/api/local_raylet_healthz")
        wait_until(lambda: asyncio.run(http_get(raylet, timeout=2)).ok, bool, timeout=60, what="raylet healthz")
        print(f"\nray head: healthy {seconds_to_healthy:.2f}s, agent ready {time.monotonic() - started:.2f}s")
        yield RayHead(url, token, handle, temp_dir, log, ports, seconds_to_healthy)
    finally:
        procs.terminate_tree(handle, grace=20)  # a no-op when the last test already did it
        allocator.release("live-head")
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_status(client: DashboardClient, job_id: str, *statuses: JobStatus, timeout: float = 60) -> JobInfo:
    return wait_until(
        lambda: client.get_job(job_id), lambda info: info.status in statuses, timeout=timeout, what=f"{statuses}"
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_head_is_healthy(head: RayHead) -> None:
    with head.client() as client:
        assert client.gcs_healthz()
        version = client.version()
    assert version.ray_version == "2.60.0"
    assert version.version == "4"


def test_requests_without_the_right_token_are_refused(head: RayHead) -> None:
    with head.client(token=None) as anonymous:
        assert anonymous.gcs_healthz()  # exempt from auth, like in KubeRay's probes
        with pytest.raises(errors.DashboardAuthError) as missing:
            anonymous.version()
        with pytest.raises(errors.DashboardAuthError):
            anonymous.submit_job(JobSubmission(entrypoint="echo never", submission_id=unique("anon")))
    with head.client(token="not-the-token") as wrong, pytest.raises(errors.DashboardAuthError) as invalid:
        wrong.list_jobs()
    assert (missing.value.status, invalid.value.status) == (401, 403)
    assert "Missing authentication token" in str(missing.value)


def test_job_lifecycle(head: RayHead) -> None:
    job_id = unique("hello")
    with head.client() as client:
        started = time.monotonic()
        assert client.submit_job(JobSubmission(entrypoint="echo hello-from-kray", submission_id=job_id)) == job_id
        with pytest.raises(errors.JobAlreadyExists) as duplicate:
            client.submit_job(JobSubmission(entrypoint="echo again", submission_id=job_id))
        info = wait_for_status(client, job_id, JobStatus.SUCCEEDED, JobStatus.FAILED)
        print(f"\ntrivial job: submit to SUCCEEDED {time.monotonic() - started:.2f}s")
        assert info.status is JobStatus.SUCCEEDED
        assert (info.submission_id, info.entrypoint, info.driver_exit_code) == (job_id, "echo hello-from-kray", 0)
        assert info.start_time is not None
        assert info.end_time is not None
        assert info.end_time >= info.start_time
        assert "hello-from-kray" in client.get_job_logs(job_id)
        assert job_id in {job.submission_id for job in client.list_jobs()}
        assert client.delete_job(job_id) is True
        with pytest.raises(errors.JobNotFound):
            client.get_job(job_id)
    assert duplicate.value.status == 500  # what Ray 2.60 answers for a used submission id


@pytest.mark.asyncio
async def test_tail_follows_the_output(head: RayHead) -> None:
    job_id = unique("tail")
    code = "import time\nfor i in range(3):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.5)"
    async with AsyncDashboardClient(head.url, token=head.token, timeout=10) as client:
        await client.submit_job(JobSubmission(entrypoint=f'python -c "{code}"', submission_id=job_id))

        async def follow() -> str:
            return "".join([chunk async for chunk in client.tail_job_logs(job_id)])

        text = await asyncio.wait_for(follow(), timeout=60)
        assert (await client.get_job(job_id)).status is JobStatus.SUCCEEDED
    assert all(f"tick {i}" in text for i in range(3)), text


def test_failing_entrypoint_ends_failed(head: RayHead) -> None:
    job_id = unique("fail")
    with head.client() as client:
        client.submit_job(JobSubmission(entrypoint="echo about-to-fail; exit 3", submission_id=job_id))
        info = wait_for_status(client, job_id, JobStatus.SUCCEEDED, JobStatus.FAILED)
        assert info.status is JobStatus.FAILED
        assert info.message
        assert "exit code 3" in info.message
        assert (info.error_type, info.driver_exit_code) == ("JOB_ENTRYPOINT_COMMAND_ERROR", 3)
        assert "about-to-fail" in client.get_job_logs(job_id)


def test_stop_a_long_job(head: RayHead) -> None:
    job_id = unique("long")
    with head.client() as client:
        client.submit_job(JobSubmission(entrypoint="sleep 300", submission_id=job_id))
        wait_for_status(client, job_id, JobStatus.RUNNING)
        assert client.stop_job(job_id) is True
        info = wait_for_status(client, job_id, JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED)
        assert info.status is JobStatus.STOPPED
        assert info.message == "Job was intentionally stopped."
        # (A second stop_job answers True until the job's supervisor actor has exited: Ray's "stopped"
        # means "the supervisor was alive", not "the job was running".)


def test_unknown_jobs(head: RayHead) -> None:
    with head.client() as client:
        for op in (client.get_job, client.get_job_logs, client.stop_job, client.delete_job):
            with pytest.raises(errors.JobNotFound) as caught:
                op("no-such-job")
            assert caught.value.job_id == "no-such-job"

    async def tail() -> None:
        async with AsyncDashboardClient(head.url, token=head.token) as client:
            async for _ in client.tail_job_logs("no-such-job"):
                pass

    with pytest.raises(errors.JobNotFound):
        asyncio.run(asyncio.wait_for(tail(), timeout=30))


def listening(pids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids and conn.laddr:
            ip, port = conn.laddr
            found.add((ip, port))
    return found


def test_the_head_binds_only_ports_it_was_given(head: RayHead) -> None:
    pids = [head.handle.pid, *(p.pid for p in psutil.Process(head.handle.pid).children(recursive=True))]
    bound = listening(pids)
    given = set(head.ports.values())
    assert ("127.0.0.1", head.ports["dashboard"]) in bound
    assert not [address for address in bound if address[1] == head.ports["dashboard"] and address[0] != "127.0.0.1"]
    # Everything else is either ours or a worker's (Ray's worker range, 10002-19999).
    assert {port for _, port in bound} - given <= set(range(10002, 20000)), sorted(bound)


def test_terminate_tree_leaves_no_process_behind(head: RayHead) -> None:
    marker = unique("kray-marker")
    with head.client() as client:
        job_id = client.submit_job(JobSubmission(entrypoint=f"sleep 300 && echo {marker}"))
        wait_for_status(client, job_id, JobStatus.RUNNING)
    # The job's shell runs in its own session, outside the head's process group.
    driver = wait_until(
        lambda: [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])],
        bool,
        timeout=30,
        what="the job's driver process",
    )
    assert os.getsid(driver[0].pid) != head.handle.pid

    result = procs.terminate_tree(head.handle, grace=20)
    print(f"\nterminate_tree: {result.elapsed:.2f}s, {len(result.signalled)} processes, SIGKILLed {len(result.killed)}")
    assert result.survivors == ()
    assert not head.handle.is_alive()
    leftovers = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        tags = (proc.info["environ"] or {}).get(procs.TAG_ENV, "").split()
        if str(head.temp_dir) in cmdline or marker in cmdline or head.handle.tag in tags:
            leftovers.append((proc.pid, cmdline[:100]))
    assert leftovers == []
