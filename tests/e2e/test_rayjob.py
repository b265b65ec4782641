"""RayJobs run by kray's operator with real Ray on the node agent, in every submission mode.

The modes that may use an existing cluster (K8sJobMode, HTTPMode, InteractiveMode; and activeDeadlineSeconds)
share one head-only RayCluster of the module; a retried failing entrypoint and suspend/resume (with SidecarMode
and ``shutdownAfterJobFinishes`` with a TTL) need clusters of their own. What Ray itself ran is read from the
head's dashboard (``/api/jobs/``, what ``ray job list`` asks), from inside the head pod.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube.resources.batch_v1 import Job
from lightkube.types import PatchType

from kray.dev.pytest_plugin import fresh_namespace
from tests.e2e.support import E2E, RayCluster, RayJob, exec_in, get_obj, head_spec, left_of, pods, traces
from tests.local.node.agent_helpers import wait_for

# The session fixture (control plane, node agent, operator: ~700 s of bounded waits under load) counts in the
# first test's budget, and each wait here is sized for a loaded 2-core machine.
pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(2100)]

ANSWER = "import ray; ray.init(); print('answer', ray.get(ray.remote(lambda: 6 * 7).remote()))"
ENTRYPOINT = f'python -c "{ANSWER}"'
RAY_JOBS = """
import json, urllib.request
with urllib.request.urlopen("http://127.0.0.1:8265/api/jobs/", timeout=10) as r:
    print(json.dumps([{k: j.get(k) for k in ("submission_id", "status", "entrypoint")} for j in json.load(r)]))
"""


def rayjob(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"entrypoint": ENTRYPOINT, **spec},
    }


class Jobs:
    """Reading RayJobs and what Ray ran, with failure messages that say what was last seen."""

    def __init__(self, e2e: E2E, namespace: str) -> None:
        self.e2e = e2e
        self.namespace = namespace
        self.last: dict[str, Any] = {}

    def get(self, name: str) -> dict[str, Any] | None:
        found = get_obj(self.e2e.client, RayJob, name, self.namespace)
        self.last[name] = found
        return found

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.get(name) or {}).get("status") or {})

    def seen(self, name: str) -> str:
        status = (self.last.get(name) or {}).get("status")
        return self.e2e.report(self.namespace, f"RayJob {name} status: {status}")

    def wait(self, name: str, deployment: str, *, timeout: float) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("jobDeploymentStatus") == deployment else None

        found: dict[str, Any] = wait_for(
            reached, timeout=timeout, what=f"RayJob {name} {deployment}", seen=lambda: self.seen(name)
        )
        return found

    def ray_jobs(self, cluster: str) -> list[dict[str, Any]]:
        """Ray's own job list on ``cluster``'s head."""
        head = self.head(cluster)
        done = exec_in(self.e2e.client, self.namespace, head, "ray-head", ["python", "-c", RAY_JOBS])
        assert done.returncode == 0, f"the dashboard's job list: exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return list(json.loads(done.stdout))

    def head(self, cluster: str) -> str:
        heads = pods(self.e2e.client, self.namespace, **{"ray.io/cluster": cluster, "ray.io/node-type": "head"})
        assert heads, f"no head pod of {cluster}: {self.e2e.pods_seen(self.namespace)}"
        return str(heads[0]["metadata"]["name"])

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.e2e.client.patch(RayJob, name, {"spec": spec}, namespace=self.namespace, patch_type=PatchType.MERGE)


@pytest.fixture(scope="module")
def shared(e2e: E2E) -> Iterator[Jobs]:
    """A namespace with one ready head-only RayCluster ``shared``, for RayJobs that select it."""
    with fresh_namespace(e2e.client, f"e2e-jobs-{secrets.token_hex(2)}") as namespace:
        e2e.create(
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "metadata": {"name": "shared", "namespace": namespace},
                "spec": head_spec(),
            }
        )
        seen: dict[str, Any] = {}

        def ready() -> bool:
            seen["rc"] = get_obj(e2e.client, RayCluster, "shared", namespace)
            return ((seen["rc"] or {}).get("status") or {}).get("state") == "ready"

        wait_for(
            ready,
            timeout=180,
            what="RayCluster shared ready",
            seen=lambda: e2e.report(namespace, f"status: {(seen.get('rc') or {}).get('status')}"),
        )
        yield Jobs(e2e, namespace)


SELECT = {"clusterSelector": {"ray.io/cluster": "shared"}}


def test_k8s_job_mode_submitter_reaches_the_head_through_its_service(shared: Jobs) -> None:
    shared.e2e.create(rayjob("k8sjob", shared.namespace, submissionMode="K8sJobMode", **SELECT))
    status = shared.wait("k8sjob", "Complete", timeout=120)
    assert status["jobStatus"] == "SUCCEEDED", status
    job = get_obj(shared.e2e.client, Job, "k8sjob", shared.namespace)
    assert job is not None, "no submitter Job"
    assert (job.get("status") or {}).get("succeeded") == 1, f"submitter Job: {job}"
    submitters = pods(shared.e2e.client, shared.namespace, **{"job-name": "k8sjob"})
    assert submitters, "the Job controller made no submitter pod"
    log = shared.e2e.container_log(shared.namespace, submitters[0]["metadata"]["name"], "ray-job-submitter", lines=400)
    assert f"shared-head-svc.{shared.namespace}.svc.cluster.local:8265" in log, log
    assert "answer 42" in log, log
    ran = {j["submission_id"]: j["status"] for j in shared.ray_jobs("shared")}
    assert ran.get(status["jobId"]) == "SUCCEEDED", ran


def test_http_mode(shared: Jobs) -> None:
    shared.e2e.create(rayjob("httpjob", shared.namespace, submissionMode="HTTPMode", **SELECT))
    status = shared.wait("httpjob", "Complete", timeout=90)
    assert status["jobStatus"] == "SUCCEEDED", status
    assert get_obj(shared.e2e.client, Job, "httpjob", shared.namespace) is None, "HTTPMode made a submitter Job"
    ran = {j["submission_id"]: j["status"] for j in shared.ray_jobs("shared")}
    assert ran.get(status["jobId"]) == "SUCCEEDED", ran


def test_interactive_mode_runs_the_job_submitted_by_hand(shared: Jobs) -> None:
    shared.e2e.create(rayjob("interactive", shared.namespace, submissionMode="InteractiveMode", **SELECT))
    status = shared.wait("interactive", "Waiting", timeout=60)
    job_id = f"by-hand-{secrets.token_hex(3)}"
    submit = ["ray", "job", "submit", "--address", f"http://{status['dashboardURL']}", "--submission-id", job_id]
    submit += ["--no-wait", "--", "python", "-c", ANSWER]
    done = exec_in(shared.e2e.client, shared.namespace, shared.head("shared"), "ray-head", submit)
    assert done.returncode == 0, f"ray job submit exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    shared.patch("interactive", {"jobId": job_id})
    status = shared.wait("interactive", "Complete", timeout=90)
    assert (status["jobId"], status["jobStatus"]) == (job_id, "SUCCEEDED"), status


def test_active_deadline_fails_a_job_that_runs_too_long(shared: Jobs) -> None:
    job = rayjob("deadline", shared.namespace, submissionMode="HTTPMode", activeDeadlineSeconds=15, **SELECT)
    job["spec"]["entrypoint"] = "sleep 600"
    shared.e2e.create(job)
    status = shared.wait("deadline", "Failed", timeout=90)
    assert status.get("reason") == "DeadlineExceeded", status


def own_cluster_job(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return rayjob(name, namespace, rayClusterSpec=head_spec(), shutdownAfterJobFinishes=True, **spec)


def test_a_failing_entrypoint_is_retried_per_backoff_limit_then_fails(e2e: E2E, namespace: str) -> None:
    jobs = Jobs(e2e, namespace)
    job = own_cluster_job("failing", namespace, submissionMode="HTTPMode", backoffLimit=1)
    job["spec"]["entrypoint"] = "python -c \"import sys; print('failing'); sys.exit(3)\""
    e2e.create(job)
    clusters: set[str] = set()

    def failed() -> dict[str, Any] | None:
        status = jobs.status("failing")
        if status.get("rayClusterName"):
            clusters.add(status["rayClusterName"])
        # Failed with failed=1 is passing: the operator moves it on to Retrying.
        return status if status.get("jobDeploymentStatus") == "Failed" and status.get("failed") == 2 else None

    wait_for(failed, timeout=300, what="RayJob failing Failed after 2 attempts", seen=lambda: jobs.seen("failing"))
    time.sleep(3)  # no third attempt
    status = jobs.status("failing")
    assert (status["jobDeploymentStatus"], status.get("failed"), status.get("succeeded") or 0) == ("Failed", 2, 0)
    assert status["jobStatus"] == "FAILED", status
    assert len(clusters) == 2, f"each attempt runs on a new cluster; saw {clusters}"


def test_sidecar_mode_suspended_resumed_and_shut_down_after_its_ttl(e2e: E2E, namespace: str) -> None:
    jobs = Jobs(e2e, namespace)
    e2e.create(own_cluster_job("sidecar", namespace, submissionMode="SidecarMode", ttlSecondsAfterFinished=8))

    def cluster_pods() -> list[dict[str, Any]]:
        return pods(e2e.client, namespace, **{"ray.io/node-type": "head"})

    wait_for(cluster_pods, timeout=60, what="the RayJob's head pod", seen=lambda: jobs.seen("sidecar"))
    first = jobs.status("sidecar")["rayClusterName"]
    found = traces(e2e, namespace)
    jobs.patch("sidecar", {"suspend": True})
    jobs.wait("sidecar", "Suspended", timeout=60)
    wait_for(
        lambda: not pods(e2e.client, namespace) and get_obj(e2e.client, RayCluster, first, namespace) is None,
        timeout=60,
        what="no cluster and no pod while suspended",
        seen=lambda: jobs.seen("sidecar"),
    )
    assert not left_of(found), left_of(found)

    jobs.patch("sidecar", {"suspend": False})
    status = jobs.wait("sidecar", "Complete", timeout=210)
    finished = time.monotonic()
    assert status["jobStatus"] == "SUCCEEDED", status
    cluster = status["rayClusterName"]
    assert get_obj(e2e.client, RayCluster, cluster, namespace) is not None, "deleted before its TTL"
    ran = {j["submission_id"]: (j["status"], j["entrypoint"]) for j in jobs.ray_jobs(cluster)}
    assert ran.get(status["jobId"], ("", ""))[0] == "SUCCEEDED", ran
    found = traces(e2e, namespace)
    wait_for(
        lambda: get_obj(e2e.client, RayCluster, cluster, namespace) is None and not pods(e2e.client, namespace),
        timeout=60,
        what=f"RayCluster {cluster} deleted after the TTL",
        seen=lambda: jobs.seen("sidecar"),
    )
    assert time.monotonic() - finished >= 5, "the cluster went before its TTL"
    wait_for(lambda: not left_of(found), timeout=30, what="no process or netns left", seen=lambda: left_of(found))
