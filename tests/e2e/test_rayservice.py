"""RayService upgrades under load on Kubernetes: kray's operator, real Ray Serve, traffic through the serve Service.

``examples/rayservice.yaml`` (the Serve app that answers its ``version`` and ``build``, code in a ConfigMap) runs
on the e2e cluster with its worker group at 0 (the deployment asks for no CPU, so Serve runs on the 1-CPU head:
half the processes on a 2-core machine). It must reach Ready -- the RayService's Ready condition, every app
RUNNING, and ``serve-versions-serve-svc`` with a ready endpoint -- and then, one RayService for both steps, go
through

1. a Serve-config-only update (``user_config.version`` v1 -> v2: in place, the same cluster), and
2. a ``NewCluster`` upgrade of the cluster spec (``APP_BUILD`` a -> b: a pending cluster, then the Service's
   selector switches to it and the old cluster goes),

each under a constant paced request loop (>= 20 requests/s, bounded in time) with zero failed requests, and the
new version answering after it. The loop runs inside a prober pod's network namespace (the test's own pod, in
its own Kubernetes namespace) and reaches Serve only as any other pod would: the Service's DNS name (the pod's
hosts file) and its ClusterIP (the agent's nftables forwarding to the EndpointSlices' ready pods).

Incremental upgrades (``NewClusterWithIncrementalUpgrade``) are not run here: on Kubernetes they need Gateway API
objects (a Gateway and weighted HTTPRoutes) that kray's operator does not create yet; local mode runs them
(``tests/local_mode/test_lm_serve_upgrades.py``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from lightkube.resources.core_v1 import ConfigMap, Pod
from lightkube.types import PatchType

from kray.dev.pytest_plugin import fresh_namespace
from kray.local.volumes import join_argv
from tests.e2e.support import E2E, RayService, container_pid, get_obj, pods, service_endpoints
from tests.local.node.agent_helpers import wait_for
from tests.serve_example import EXAMPLE, set_build, set_version

# The package's cluster fixture (~700 s of bounded waits under load) counts in the first test's budget; then
# Ready 240 s, the prober 60 s, each upgrade 240 s, teardown 120 s.
pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(2100)]

NAME = "serve-versions"
SERVE_SVC = f"{NAME}-serve-svc"
RATE = 25.0
LOAD_LIMIT = 300.0  # the in-pod loop stops by itself after this, whatever happens to the test

# Run in the prober pod: a paced open loop (one GET each 1/rate s whatever the latency), one JSON line per
# answer; stops at a line on stdin or after `limit` seconds. Standard library only, no proxy.
LOAD = r"""
import json, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, rate, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
stop, lock = threading.Event(), threading.Lock()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
def one(i):
    began = time.monotonic()
    try:
        with opener.open(url, timeout=30) as r:
            out = {"ok": r.status == 200, "body": r.read().decode()}
    except Exception as e:
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out.update(i=i, ms=round(1000 * (time.monotonic() - began), 1))
    with lock:
        print(json.dumps(out), flush=True)
with ThreadPoolExecutor(32) as pool:
    t0 = next_at = time.monotonic()
    i = 0
    while not stop.is_set() and time.monotonic() - t0 < limit:
        pool.submit(one, i)
        i += 1
        next_at += 1 / rate
        stop.wait(max(0.0, next_at - time.monotonic()))
with lock:
    print(json.dumps({"sent": i, "seconds": time.monotonic() - t0}), flush=True)
"""


# -- the RayService ---------------------------------------------------------------------------------------


def example(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The example's ConfigMap and RayService, worker group at 0, in ``namespace``."""
    config_map, service = yaml.safe_load_all(EXAMPLE.read_text())
    for obj in (config_map, service):
        obj["metadata"]["namespace"] = namespace
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group.update(replicas=0, minReplicas=0)
    # KubeRay's default is 60 s; 10 s leaves kube-proxy's (here the agent's nftables) switch time to settle.
    service["spec"]["rayClusterDeletionDelaySeconds"] = 10
    return config_map, service


def prober_pod(namespace: str) -> dict[str, Any]:
    """A plain pod that only waits: the request loop runs joined into its network namespace."""
    container = {"name": "prober", "image": "rayproject/ray:2.60.0", "command": ["sleep", "3600"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "prober", "namespace": namespace},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
    }


# -- the load, from inside the prober pod -------------------------------------------------------------------


@dataclass
class Load:
    """The in-pod loop (:data:`LOAD`) as a joined process; its answers read as they come."""

    e2e: E2E
    prober: tuple[str, str]  # namespace, pod
    url: str
    rate: float = RATE
    answers: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _proc: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def __enter__(self) -> Load:
        pid = container_pid(self.e2e.client, *self.prober, "prober")
        argv = ["python", "-c", LOAD, self.url, str(self.rate), str(LOAD_LIMIT)]
        self._proc = subprocess.Popen(
            join_argv(python=sys.executable, pid=pid, argv=argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            record = json.loads(line)
            with self._lock:
                if "sent" in record:
                    self.summary = record
                    continue
                self.latencies.append(float(record["ms"]))
                if record["ok"]:
                    self.answers.append(json.loads(record["body"]))
                else:
                    self.failures.append(str(record.get("error")))

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        assert self._reader is not None
        self._proc.stdin.write("stop\n")
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)  # the last requests finish within their own 30 s bound
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._reader.join(10)
        err = self._proc.stderr.read() if self._proc.stderr else ""
        assert self.summary, f"the in-pod loop ended without its summary (exit {self._proc.returncode}): {err[-2000:]}"

    @property
    def sent(self) -> int:
        return int(self.summary.get("sent", len(self.answers) + len(self.failures)))

    @property
    def achieved_rate(self) -> float:
        return self.sent / max(1e-9, float(self.summary.get("seconds", 0.0)))

    def latency_ms(self, quantile: float) -> float:
        with self._lock:
            ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else float("nan")

    def last(self, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.answers[-count:])

    def answering(self, want: dict[str, str]) -> bool:
        recent = self.last(10)
        return len(recent) == 10 and all({k: r.get(k) for k in want} == want for r in recent)

    def brief(self) -> str:
        with self._lock:
            done = len(self.answers) + len(self.failures)
            return f"{len(self.failures)} failed of {done} answered, last failures {self.failures[-2:]}"


# -- what the cluster shows -----------------------------------------------------------------------------------


@dataclass
class Serving:
    e2e: E2E
    namespace: str
    prober: tuple[str, str]
    url: str

    def get(self) -> dict[str, Any]:
        found = get_obj(self.e2e.client, RayService, NAME, self.namespace)
        assert found is not None, f"RayService {NAME} is gone"
        return found

    def status(self) -> dict[str, Any]:
        return dict(self.get().get("status") or {})

    def active(self) -> str:
        return str((self.status().get("activeServiceStatus") or {}).get("rayClusterName") or "")

    def settled(self) -> bool:
        """Ready, every active app RUNNING, no pending cluster, and the serve Service's ready endpoints are the
        active cluster's pods (so the Service sends nothing to a cluster on its way out)."""
        found = self.status()
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in found.get("conditions") or ())
        active = found.get("activeServiceStatus") or {}
        apps = (active.get("applicationStatuses") or {}).values()
        running = bool(apps) and all(a.get("status") == "RUNNING" for a in apps)
        idle = not (found.get("pendingServiceStatus") or {}).get("rayClusterName")
        cluster = active.get("rayClusterName") or ""
        endpoints = [name for name, ok in service_endpoints(self.e2e.client, self.namespace, SERVE_SVC) if ok]
        behind = bool(endpoints) and all(name.startswith(f"{cluster}-") for name in endpoints)
        return ready and running and idle and behind

    def seen(self, load: Load | None = None) -> str:
        """What a failed wait reports: conditions, both sides, the serve Service's endpoints, pods, answers."""
        found = self.status()
        sides = {
            side: {
                "cluster": entry.get("rayClusterName"),
                "apps": {n: a.get("status") for n, a in (entry.get("applicationStatuses") or {}).items()},
            }
            for side in ("activeServiceStatus", "pendingServiceStatus")
            for entry in [found.get(side) or {}]
        }
        out: dict[str, Any] = {
            "conditions": {c.get("type"): (c.get("status"), c.get("reason")) for c in found.get("conditions") or ()},
            **sides,
            "numServeEndpoints": found.get("numServeEndpoints"),
            "serve Service endpoints": service_endpoints(self.e2e.client, self.namespace, SERVE_SVC),
            "head serve labels": {
                p["metadata"]["name"]: p["metadata"].get("labels", {}).get("ray.io/serve")
                for p in pods(self.e2e.client, self.namespace, **{"ray.io/node-type": "head"})
            },
        }
        if load is not None:
            out["last answers"] = load.last(3)
            out["load"] = load.brief()
        return self.e2e.report(self.namespace, json.dumps(out, indent=1, default=str))

    def patch(self, change: Callable[[dict[str, Any]], None]) -> None:
        spec = self.get()["spec"]
        change(spec)
        patch = {"spec": {"serveConfigV2": spec["serveConfigV2"], "rayClusterConfig": spec["rayClusterConfig"]}}
        self.e2e.client.patch(RayService, NAME, patch, namespace=self.namespace, patch_type=PatchType.MERGE)

    def upgrade(self, what: str, change: Callable[[dict[str, Any]], None], want: dict[str, str]) -> Load:
        """``change`` the RayService's spec under load; wait until it settled and ``want`` answers."""
        t0 = time.monotonic()
        with Load(self.e2e, self.prober, self.url) as load:
            wait_for(lambda: len(load.last(20)) == 20, timeout=30, what=f"{what}: answers before the change",
                     seen=lambda: self.seen(load))  # fmt: skip
            generation = self.get()["metadata"]["generation"]
            self.patch(change)
            wait_for(
                lambda: self.get()["metadata"]["generation"] > generation and self.settled() and load.answering(want),
                timeout=240,
                what=f"{what}: settled with {want} answering through {SERVE_SVC}",
                seen=lambda: self.seen(load),
                every=0.5,
            )
            print(f"{what}: settled in {time.monotonic() - t0:.1f}s")
            time.sleep(2)  # answers after the switch, on the new version only
        return load


def http_ok(serving: Serving) -> tuple[bool, str]:
    """One GET from the prober through the serve Service: whether it answered 200, and what it said."""
    probe = (
        "import urllib.request as u, sys; print(u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=5).read())"
    )
    pid = container_pid(serving.e2e.client, *serving.prober, "prober")
    done = subprocess.run(
        join_argv(python=sys.executable, pid=pid, argv=["python", "-c", probe, serving.url]),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode == 0, (done.stdout or done.stderr)[-300:]


@pytest.fixture(scope="module")
def serving(e2e: E2E) -> Iterator[Serving]:
    t0 = time.monotonic()
    with (
        fresh_namespace(e2e.client, f"e2e-serve-{secrets.token_hex(2)}") as namespace,
        fresh_namespace(e2e.client, f"e2e-client-{secrets.token_hex(2)}") as other,
    ):
        config_map, service = example(namespace)
        e2e.create(config_map)
        e2e.create(service)
        e2e.create(prober_pod(other))
        url = f"http://{SERVE_SVC}.{namespace}.svc.cluster.local:8000/"
        found = Serving(e2e, namespace, (other, "prober"), url)
        try:
            wait_for(found.settled, timeout=240, what=f"RayService {NAME} Ready with {SERVE_SVC} endpoints",
                     seen=found.seen, every=1.0)  # fmt: skip
            wait_for(
                lambda: (get_obj(e2e.client, Pod, "prober", other) or {}).get("status", {}).get("podIP"),
                timeout=60,
                what="the prober pod Running",
                seen=lambda: e2e.report(other),
            )
            last: dict[str, str] = {}

            def answers() -> bool:
                ok, last["said"] = http_ok(found)
                return ok

            wait_for(answers, timeout=60, what=f"a 200 from {url} in the prober", seen=lambda: last, every=1.0)
            print(f"Ready and answering in {time.monotonic() - t0:.1f}s: {last['said'].strip()}")
            yield found
        finally:
            e2e.client.delete(RayService, NAME, namespace=namespace)
            wait_for(
                lambda: (
                    not pods(e2e.client, namespace, **{"ray.io/is-ray-node": "yes"})
                    and get_obj(e2e.client, RayService, NAME, namespace) is None
                ),
                timeout=120,
                what=f"RayService {NAME} and its pods gone",
                seen=lambda: e2e.report(namespace),
            )
            e2e.client.delete(ConfigMap, config_map["metadata"]["name"], namespace=namespace)


def check(load: Load, want: dict[str, str]) -> None:
    p50, p99 = load.latency_ms(0.5), load.latency_ms(0.99)
    print(
        f"{load.sent} sent at {load.achieved_rate:.1f}/s, {len(load.failures)} failed, "
        f"p50 {p50:.1f} ms p99 {p99:.1f} ms, last {load.last(1)}"
    )
    assert load.achieved_rate >= 20, f"{load.achieved_rate:.1f} requests/s"
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"
    assert load.sent == len(load.answers), f"{load.sent} sent, {len(load.answers)} answered"
    assert load.answering(want), f"the last answers: {load.last(10)}"


def test_1_serve_config_update_in_place(serving: Serving) -> None:
    cluster = serving.active()
    load = serving.upgrade("serve config v1 -> v2", lambda spec: set_version(spec, "v2"), {"version": "v2"})
    check(load, {"version": "v2", "build": "a"})
    assert serving.active() == cluster, "a Serve-config-only update must stay on the same cluster"


def test_2_new_cluster_upgrade(serving: Serving) -> None:
    old = serving.active()
    load = serving.upgrade("NewCluster a -> b", lambda spec: set_build(spec, "b"), {"build": "b"})
    check(load, {"version": "v2", "build": "b"})
    assert serving.active() != old, "a cluster spec change must bring a new cluster"
    builds = {str(a.get("build")) for a in load.answers}
    assert builds == {"a", "b"}, f"answers before and after the switch: {sorted(builds)}"
