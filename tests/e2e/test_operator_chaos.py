"""kray's operator killed with -9 at random moments while 20 RayJobs run: each job runs exactly once.

Two operator replicas (the chart's Deployment scaled to 2, leader election on) run on the node agent. While 20
RayJobs (mostly HTTPMode, where the operator itself submits; a few K8sJobMode, where it makes a submitter Job)
run on one shared RayCluster, the leader -- the pod named by the ``ray-operator-leader`` Lease's holder -- has
its container's process killed with SIGKILL, several times, each at a random moment (a seeded RNG: set
``KRAY_CHAOS_SEED`` to replay a run). The node agent restarts the killed container; the standby takes over.

Then every RayJob is Complete and SUCCEEDED, and Ray's own job list on the cluster holds each RayJob's
submission id exactly once and nothing else (a job submitted twice, under the same id or another, would show);
each K8sJobMode RayJob made one submitter Job with one pod; no pod is left that should not be, and no process
of the agent's pods runs without its pod.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import psutil
import pytest
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Pod

from kray.local.containers import pod_records
from kray.local.podrunner import HOME_ENV
from kray.local.procs import TAG_ENV
from tests.e2e.support import (
    E2E,
    OPERATOR_NS,
    RayCluster,
    RayJob,
    container_pid,
    exec_in,
    get_obj,
    head_spec,
    pods,
)
from tests.local.node.agent_helpers import alive, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

OPERATOR = "kray-operator"
LEASE = "ray-operator-leader"
CLUSTER = "chaos"
JOBS = 20
K8S_JOB_MODE = {3, 10, 17}
"""The RayJobs (by index) submitted by a submitter Job (K8sJobMode); the others by the operator (HTTPMode)."""
KILLS = 3

RAY_JOBS = """
import json, urllib.request
with urllib.request.urlopen("http://127.0.0.1:8265/api/jobs/", timeout=10) as r:
    keys = ("submission_id", "status", "entrypoint", "start_time", "end_time")
    print(json.dumps([{k: j.get(k) for k in keys} for j in json.load(r)]))
"""


def operator_pods(e2e: E2E) -> list[dict[str, Any]]:
    return pods(e2e.client, OPERATOR_NS, **{"app.kubernetes.io/name": OPERATOR})


def ready_operators(e2e: E2E) -> int:
    def ready(pod: dict[str, Any]) -> bool:
        conditions = (pod.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    found = operator_pods(e2e)
    return len(found) if all(ready(p) for p in found) else -1


def scale_operator(e2e: E2E, replicas: int) -> None:
    e2e.client.patch(Deployment, OPERATOR, {"spec": {"replicas": replicas}}, namespace=OPERATOR_NS)
    wait_for(
        lambda: ready_operators(e2e) == replicas,
        timeout=90,
        what=f"{replicas} operator pods, all Ready",
        seen=lambda: e2e.report(OPERATOR_NS),
    )


@pytest.fixture
def two_operators(e2e: E2E) -> Iterator[None]:
    """The chart's Deployment at two replicas (leader election is on in the session's install), back to one after."""
    scale_operator(e2e, 2)
    try:
        yield
    finally:
        scale_operator(e2e, 1)


def head_only(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": CLUSTER, "namespace": namespace},
        "spec": head_spec(),
    }


def entrypoint(index: int) -> str:
    return f"python -c \"print('chaos job {index}')\""


def rayjob(index: int, namespace: str) -> dict[str, Any]:
    mode = "K8sJobMode" if index in K8S_JOB_MODE else "HTTPMode"
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": f"job-{index:02d}", "namespace": namespace},
        "spec": {
            "entrypoint": entrypoint(index),
            "submissionMode": mode,
            "clusterSelector": {"ray.io/cluster": CLUSTER},
        },
    }


@dataclass(frozen=True)
class Kill:
    at: float
    pod: str
    pid: int
    identity: str
    unfinished: int


def holder(e2e: E2E) -> tuple[str, float]:
    """The Lease's holder identity and when it acquired the Lease (epoch seconds; 0 when free)."""
    spec = (get_obj(e2e.client, Lease, LEASE, OPERATOR_NS) or {}).get("spec") or {}
    acquired = spec.get("acquireTime")
    moment = datetime.fromisoformat(acquired.replace("Z", "+00:00")).timestamp() if acquired else 0.0
    return str(spec.get("holderIdentity") or ""), moment


def leader_pid(e2e: E2E) -> tuple[str, str, int] | None:
    """(identity, pod, pid) of the leader whose process runs now; None while nobody leads."""
    identity, acquired = holder(e2e)
    pod = identity.split("_", 1)[0]  # <hostname>_<uuid>, and a pod's hostname is its name
    if not identity or pod not in {p["metadata"]["name"] for p in operator_pods(e2e)}:
        return None
    try:
        pid = container_pid(e2e.client, OPERATOR_NS, pod, OPERATOR)
        started = psutil.Process(pid).create_time()
    except (AssertionError, psutil.Error):
        return None
    # The Lease outlives a killed holder by its duration, and the agent restarts the container meanwhile: the
    # pod's process leads only if it started before its identity acquired the Lease.
    return (identity, pod, pid) if started <= acquired + 1 and holder(e2e)[0] == identity else None


def orphans(e2e: E2E) -> list[str]:
    """Processes of the agent's pods (its state dir in their env) whose pod is gone."""
    tags = {r.tag for p in e2e.client.list(Pod, namespace="*") for r in pod_records(p.to_dict()).values() if r.tag}
    found = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            if env.get(HOME_ENV) != str(e2e.state_dir) or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if not set(env.get(TAG_ENV, "").split()) & tags:
                found.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            continue
    return found


class Jobs:
    """The module's 20 RayJobs as last read, for waits and their failure messages."""

    def __init__(self, e2e: E2E, namespace: str) -> None:
        self.e2e = e2e
        self.namespace = namespace
        self.names = [f"job-{i:02d}" for i in range(JOBS)]
        self.last: dict[str, dict[str, Any]] = {}

    def statuses(self) -> dict[str, dict[str, Any]]:
        listed = [dict(j.to_dict()) for j in self.e2e.client.list(RayJob, namespace=self.namespace)]
        self.last = {str(j["metadata"]["name"]): dict(j.get("status") or {}) for j in listed}
        return self.last

    def unfinished(self) -> list[str]:
        found = self.statuses()
        done = {"Complete", "Failed"}
        return [n for n in self.names if (found.get(n) or {}).get("jobDeploymentStatus") not in done]

    def ray_jobs(self) -> list[dict[str, Any]]:
        """Ray's own job list on the cluster (what ``ray job list`` asks the dashboard), from inside the head."""
        head = pods(self.e2e.client, self.namespace, **{"ray.io/node-type": "head"})[0]["metadata"]["name"]
        listed = exec_in(self.e2e.client, self.namespace, head, "ray-head", ["python", "-c", RAY_JOBS])
        assert listed.returncode == 0, f"Ray's job list: exit {listed.returncode}:\n{listed.stdout}\n{listed.stderr}"
        return list(json.loads(listed.stdout))

    def seen(self) -> str:
        summary = {n: (s.get("jobDeploymentStatus"), s.get("jobStatus")) for n, s in self.last.items()}
        try:
            ray = [(j["submission_id"], j["status"]) for j in self.ray_jobs()]
        except (AssertionError, IndexError, ValueError) as error:
            ray = [("?", str(error))]
        return self.e2e.report(
            self.namespace, f"RayJobs: {summary}", f"Ray's jobs: {ray}", f"operators: {self.e2e.pods_seen(OPERATOR_NS)}"
        )


def dead(pid: int) -> bool:
    return not alive(pid)


def new_leader(e2e: E2E, killed: str) -> bool:
    found = leader_pid(e2e)
    return found is not None and found[0] != killed


def kill_leaders(e2e: E2E, jobs: Jobs, *, rng: random.Random, since: float) -> list[Kill]:
    """Up to KILLS times while RayJobs run: SIGKILL the leader's process at a random moment, then wait until
    another process leads (the standby, or the killed container restarted)."""
    kills: list[Kill] = []
    while len(kills) < KILLS and jobs.unfinished():
        wait_for(lambda: leader_pid(e2e), timeout=90, what="an operator leading", seen=jobs.seen)
        time.sleep(rng.uniform(0.5, 3.0))  # short: on a quick machine the 20 RayJobs finish ~20 s after a takeover
        leader = leader_pid(e2e)
        if leader is None:
            continue
        identity, pod, pid = leader
        left = len(jobs.unfinished())
        if not left:  # every RayJob finished during the random pause: a kill now would test nothing
            break
        os.kill(pid, signal.SIGKILL)
        kills.append(Kill(time.monotonic() - since, pod, pid, identity, left))
        print(f"killed leader {pod} pid {pid} at {kills[-1].at:.1f}s ({left} RayJobs unfinished)")
        wait_for(partial(dead, pid), timeout=10, what=f"pid {pid} gone after SIGKILL", seen=lambda: "")
        wait_for(
            partial(new_leader, e2e, identity),
            timeout=90,
            what=f"a new leader after killing {identity}",
            seen=jobs.seen,
        )
    return kills


# >= its bounded waits with the e2e session's (tests/test_suite_rules.py); a loaded 2-core machine starts Ray's 20
# job supervisors one at a time, slowly.
@pytest.mark.timeout(2400)
def test_operator_killed_repeatedly_runs_every_rayjob_exactly_once(
    e2e: E2E, namespace: str, two_operators: None
) -> None:
    t0 = time.monotonic()
    seed = int(os.environ.get("KRAY_CHAOS_SEED") or secrets.randbits(32))
    print(f"\nchaos seed {seed} (KRAY_CHAOS_SEED={seed} replays the kill schedule)")
    rng = random.Random(seed)
    restarts_before = {p["metadata"]["name"]: restart_count(p) for p in operator_pods(e2e)}

    e2e.create(head_only(namespace))
    seen: dict[str, Any] = {}

    def ready() -> bool:
        seen["rc"] = get_obj(e2e.client, RayCluster, CLUSTER, namespace)
        return ((seen["rc"] or {}).get("status") or {}).get("state") == "ready"

    wait_for(ready, timeout=240, what=f"RayCluster {CLUSTER} ready",
             seen=lambda: e2e.report(namespace, f"status: {(seen.get('rc') or {}).get('status')}"))  # fmt: skip
    print(f"cluster ready at {time.monotonic() - t0:.1f}s")

    jobs = Jobs(e2e, namespace)
    for index in range(JOBS):
        e2e.create(rayjob(index, namespace))
    t_jobs = time.monotonic()
    kills = kill_leaders(e2e, jobs, rng=rng, since=t_jobs)
    assert len(kills) >= 2, f"fewer than 2 kills while RayJobs ran: {kills}"

    wait_for(lambda: not jobs.unfinished(), timeout=480, what="every RayJob finished", seen=jobs.seen)
    print(f"{JOBS} RayJobs finished {time.monotonic() - t_jobs:.1f}s after creation, {len(kills)} kills")
    final = jobs.statuses()
    names = jobs.names
    results = {n: (final[n].get("jobDeploymentStatus"), final[n].get("jobStatus")) for n in names}
    assert set(results.values()) == {("Complete", "SUCCEEDED")}, results

    # Ray's own job list: each RayJob's submission id once, nothing else, each entrypoint run once.
    ray_jobs = jobs.ray_jobs()
    ids = collections.Counter(j["submission_id"] for j in ray_jobs)
    expected = {final[n]["jobId"] for n in names}
    assert len(expected) == JOBS, final
    assert ids == collections.Counter(expected), f"Ray ran {dict(ids)}; the RayJobs' ids: {sorted(expected)}"
    # K8sJobMode's submitter quotes the entrypoint its own way: count the jobs' own words.
    ran = collections.Counter(
        int(m.group(1)) for j in ray_jobs for m in [re.search(r"chaos job (\d+)", j["entrypoint"])] if m
    )
    assert ran == collections.Counter(range(JOBS)), f"Ray ran entrypoints {ran}"
    assert {j["status"] for j in ray_jobs} == {"SUCCEEDED"}, ray_jobs
    waits = sorted((j["end_time"] - j["start_time"]) / 1000 for j in ray_jobs)
    print(f"Ray's own job durations: min {waits[0]:.1f}s median {waits[len(waits) // 2]:.1f}s max {waits[-1]:.1f}s")

    head = pods(e2e.client, namespace, **{"ray.io/node-type": "head"})[0]["metadata"]["name"]
    # One submitter Job (one pod) per K8sJobMode RayJob; no other pod than those and the head; one cluster.
    listed_jobs = [dict(j.to_dict()) for j in e2e.client.list(Job, namespace=namespace)]
    submitters = {str(j["metadata"]["name"]): j for j in listed_jobs}
    assert set(submitters) == {f"job-{i:02d}" for i in K8S_JOB_MODE}, sorted(submitters)
    for name, job in submitters.items():
        assert (job["status"].get("succeeded"), job["status"].get("failed")) == (1, None), (name, job["status"])
    submitter_pods = {p["metadata"]["name"] for n in submitters for p in pods(e2e.client, namespace, **{"job-name": n})}
    expected_pods = {head} | submitter_pods
    assert len(expected_pods) == 1 + len(K8S_JOB_MODE), e2e.pods_seen(namespace)
    assert {p["metadata"]["name"] for p in pods(e2e.client, namespace)} == expected_pods, e2e.pods_seen(namespace)
    clusters = [c.to_dict()["metadata"]["name"] for c in e2e.client.list(RayCluster, namespace=namespace)]
    assert clusters == [CLUSTER], clusters

    # The killed containers were restarted by the agent; two operators run.
    def restarted() -> dict[str, int] | None:
        now = {p["metadata"]["name"]: restart_count(p) for p in operator_pods(e2e)}
        by_pod = collections.Counter(k.pod for k in kills)
        ok = all(now.get(pod, 0) - restarts_before.get(pod, 0) >= n for pod, n in by_pod.items())
        return now if ok and ready_operators(e2e) == 2 else None

    wait_for(restarted, timeout=90, what="each killed operator container restarted, both Ready",
             seen=lambda: e2e.report(OPERATOR_NS))  # fmt: skip

    # No process of the agent's pods without its pod.
    wait_for(lambda: not orphans(e2e), timeout=30, what="no process without its pod", seen=lambda: orphans(e2e))
    print(f"whole test {time.monotonic() - t0:.1f}s")


def restart_count(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)
