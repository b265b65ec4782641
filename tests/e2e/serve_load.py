"""The constant request loop the RayService upgrade tests run against Serve, from inside a pod, and its verdict;
and what it runs in and against: a plain prober pod, and ``examples/rayservice.yaml`` sized for the e2e node.

Why in a pod: the loop must reach Serve as any other pod does -- a Service's DNS name (the pod's hosts file) and
its ClusterIP (the agent's nftables), or a Gateway's -- so it runs joined into a plain pod's network namespace.

Why keep-alive connections: a first version opened a connection per request with urllib and reached only 15.6
of 25 requests/s in CI while the other lane ran Ray on the same 2 cores. Here each worker thread keeps one
``http.client`` connection and sends its requests on it. A request that fails on a reused connection counts as
failed, like any other (no retry: a retry would hide exactly the failures the tests look for). A connection is
reopened after :data:`CONNECTION_MAX_AGE` seconds: a connection is pinned to the backend chosen when it opened
(conntrack for a ClusterIP, as kube-proxy), and a client that kept it for ever would keep talking to a cluster
the RayService retired -- every real client pool bounds that; this one reopens within 2 s, while a retired
cluster goes ``rayClusterDeletionDelaySeconds`` (10 s here) after the switch.

The loop is open: one request each ``1/rate`` s whatever the latency (a slow answer does not slow the load), each
on the first free worker; a request's latency counts from its scheduled time, so queueing behind slow answers
shows. Every answer is one JSON line with its wall-clock start (``at``, the host's clock: pods are processes on
this machine), which a failure report lines up against what the cluster's objects said at that time.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from lightkube.resources.core_v1 import ConfigMap, Pod

from kray.dev.pytest_plugin import fresh_namespace
from kray.local.volumes import join_argv
from tests.e2e.support import E2E, RayService, container_pid, get_obj, pods
from tests.local.node.agent_helpers import wait_for
from tests.serve_example import EXAMPLE

NAME = "serve-versions"
"""The example RayService's name (``examples/rayservice.yaml``)."""
RATE = 25.0
MIN_RATE = 20.0
"""What the tests promise: at least this many requests/s, sent and answered."""
LOAD_LIMIT = 300.0  # the in-pod loop stops by itself after this, whatever happens to the test
CONNECTION_MAX_AGE = 2.0
WORKERS = 8

# Run in the pod: standard library only, no proxy. Stops at a line on stdin or after `limit` seconds.
LOAD = r"""
import http.client, json, queue, sys, threading, time
from urllib.parse import urlsplit
url, rate, limit, max_age = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
workers = int(sys.argv[5])
parts = urlsplit(url)
host, port, path = parts.hostname, parts.port or 80, parts.path or "/"
stop, lock, ticks = threading.Event(), threading.Lock(), queue.SimpleQueue()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
def emit(record):
    line = json.dumps(record)
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
def work():
    conn, opened, used = None, 0.0, 0
    while True:
        tick = ticks.get()
        if tick is None:
            break
        i, due, at = tick
        now = time.monotonic()
        if conn is not None and now - opened > max_age:
            conn.close()
            conn = None
        reused = conn is not None
        try:
            if conn is None:
                conn, opened, used = http.client.HTTPConnection(host, port, timeout=30), now, 0
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
            out = {"ok": response.status == 200, "status": response.status, "body": body}
            used += 1
            if response.will_close:
                conn.close()
                conn = None
        except Exception as e:
            out = {"ok": False, "error": f"{type(e).__name__}: {e}", "used": used}
            if conn is not None:
                conn.close()
            conn = None
        out.update(i=i, at=round(at, 3), reused=reused, ms=round(1000 * (time.monotonic() - due), 1))
        emit(out)
threads = [threading.Thread(target=work) for _ in range(workers)]
for t in threads:
    t.start()
t0 = next_at = time.monotonic()
wall0 = time.time()
i = 0
while not stop.is_set() and time.monotonic() - t0 < limit:
    ticks.put((i, next_at, wall0 + (next_at - t0)))
    i += 1
    next_at += 1 / rate
    stop.wait(max(0.0, next_at - time.monotonic()))
seconds = time.monotonic() - t0
for _ in threads:
    ticks.put(None)
for t in threads:
    t.join()
emit({"sent": i, "seconds": seconds, "drained": time.monotonic() - t0})
"""


# -- what the load runs in and against ------------------------------------------------------------------------


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


def prober_get(e2e: E2E, prober: tuple[str, str], url: str) -> tuple[bool, str]:
    """One GET of ``url`` from the prober pod (namespace, name): whether it answered 200, and what it said."""
    probe = (
        "import urllib.request as u, sys; print(u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=5).read())"
    )
    pid = container_pid(e2e.client, *prober, "prober")
    done = subprocess.run(
        join_argv(python=sys.executable, pid=pid, argv=["python", "-c", probe, url]),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode == 0, (done.stdout or done.stderr)[-300:]


def wait_answering(e2e: E2E, prober: tuple[str, str], url: str, *, seen: Callable[[], str]) -> str:
    """Wait for the prober pod to run and for ``url`` to answer 200 from it; what it answered."""
    namespace, name = prober
    wait_for(
        lambda: (get_obj(e2e.client, Pod, name, namespace) or {}).get("status", {}).get("podIP"),
        timeout=60,
        what="the prober pod Running",
        seen=lambda: e2e.report(namespace),
    )
    last: dict[str, str] = {}

    def answers() -> bool:
        ok, last["said"] = prober_get(e2e, prober, url)
        return ok

    wait_for(answers, timeout=60, what=f"a 200 from {url} in the prober", seen=lambda: f"{last}\n{seen()}",
             every=1.0)  # fmt: skip
    return last["said"].strip()


@contextlib.contextmanager
def example_with_prober(
    e2e: E2E, *, prefix: str, objects: Callable[[str], tuple[dict[str, Any], dict[str, Any]]]
) -> Iterator[tuple[str, tuple[str, str]]]:
    """``objects(namespace)`` (the example's ConfigMap and RayService) created in a fresh namespace, and the prober
    pod in another: (the RayService's namespace, the prober). After: the RayService and its pods gone, then the
    ConfigMap, then both namespaces."""
    with (
        fresh_namespace(e2e.client, f"{prefix}-{secrets.token_hex(2)}") as namespace,
        fresh_namespace(e2e.client, f"e2e-client-{secrets.token_hex(2)}") as other,
    ):
        config_map, service = objects(namespace)
        e2e.create(config_map)
        e2e.create(service)
        e2e.create(prober_pod(other))
        try:
            yield namespace, (other, "prober")
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


# -- the load, from inside the prober pod -------------------------------------------------------------------


@dataclass
class Load:
    """The in-pod loop (:data:`LOAD`) as a joined process; its answers read as they come."""

    e2e: E2E
    prober: tuple[str, str]  # namespace, pod
    url: str
    container: str = "prober"
    rate: float = RATE
    answers: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    reused: int = 0
    """Requests sent on a connection an earlier request had used."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _proc: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def __enter__(self) -> Load:
        pid = container_pid(self.e2e.client, *self.prober, self.container)
        argv = ["python", "-c", LOAD, self.url, str(self.rate), str(LOAD_LIMIT), str(CONNECTION_MAX_AGE), str(WORKERS)]
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
                self.reused += bool(record.get("reused"))
                if record["ok"]:
                    self.answers.append({**json.loads(record["body"]), "_at": record["at"]})
                else:
                    self.failures.append(record)

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
        """Requests answered (failures included) per second, from the first one sent until the last answer: a
        loop whose workers fall behind its pace answers its backlog late, and that lowers this rate."""
        with self._lock:
            answered = len(self.answers) + len(self.failures)
        return answered / max(1e-9, float(self.summary.get("drained", 0.0)))

    def latency_ms(self, quantile: float) -> float:
        with self._lock:
            ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else float("nan")

    def last(self, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: v for k, v in a.items() if k != "_at"} for a in self.answers[-count:]]

    def answering(self, want: dict[str, str]) -> bool:
        recent = self.last(10)
        return len(recent) == 10 and all({k: r.get(k) for k in want} == want for r in recent)

    def seen_values(self, key: str) -> list[str]:
        """The distinct values of ``key`` in the answers, in the order they first appeared."""
        with self._lock:
            return list(dict.fromkeys(str(a.get(key)) for a in self.answers))

    def brief(self) -> str:
        with self._lock:
            done = len(self.answers) + len(self.failures)
            return f"{len(self.failures)} failed of {done} answered, last failures {self.failures[-2:]}"

    def report(self) -> str:
        p50, p99 = self.latency_ms(0.5), self.latency_ms(0.99)
        return (
            f"{self.sent} sent ({self.reused} on a reused connection), answered at {self.achieved_rate:.1f}/s, "
            f"{len(self.failures)} failed, "
            f"p50 {p50:.1f} ms p99 {p99:.1f} ms, last {self.last(1)}"
        )


def check(load: Load, want: dict[str, str], *, context: str = "") -> None:
    """The tests' verdict on a step: the rate held, nothing failed, everything answered, ``want`` answers last.
    ``context`` (what the cluster's objects said around the failures) joins a failure's message."""
    print(load.report())
    assert load.achieved_rate >= MIN_RATE, f"{load.achieved_rate:.1f} requests/s (want >= {MIN_RATE}): {load.report()}"
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}\n{context}"
    assert load.sent == len(load.answers), f"{load.sent} sent, {len(load.answers)} answered"
    assert load.answering(want), f"the last answers: {load.last(10)}"
