"""RayService upgrades under load with real Ray Serve, locally: no request fails, the new version answers.

One RayService (``examples/rayservice.yaml``'s, the example app that says its ``version`` and ``build``) is
taken through four upgrades in order, each under a constant paced request loop (>= 20 requests/s, bounded
in time) through the RayService's local serve address:

1. a Serve-config-only update (``user_config.version`` v1 -> v2, in place on the running cluster);
2. a ``NewCluster`` upgrade of the cluster spec (``APP_BUILD`` a -> b: a new cluster, then the switch);
3. a ``NewClusterWithIncrementalUpgrade`` (b -> c: capacity and traffic stepped between two clusters);
4. a rollback (c -> d started, reverted to c once traffic reached d: back to the c cluster).

Each must end with zero failed requests (any non-200 or transport error) and every answer after it from
the new version. The worker group is scaled to 0 (the deployment asks for no CPU, so Serve runs on the
head): half the processes on a 2-core machine.

The serve address: :func:`serve_address`, the one kray's server reserves for the RayService and writes in
its ``kray.io/serve-address`` annotation (:mod:`kray.local.serve_routes`): every request goes through kray's
server, routed from the RayService's status (the active cluster's Serve proxy; during an incremental
upgrade both clusters by ``trafficRoutedPercent``).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import pytest
import yaml

from kray.local import serve_routes as routes
from kray.local.serve_routes import SERVE_ADDRESS_ANNOTATION
from kray.store import RAYCLUSTER, RAYSERVICE, Obj
from tests.serve_example import EXAMPLE, set_build, set_version

from .conftest import Local, condition, status, wait_for

# Above every test's bounded waits (the module fixture's setup, inside the first test's, is the largest).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1000)]

NAME = "serve-versions"
RATE = 25.0
# Measured on 2 cores: Ready ~20 s after apply, the slowest upgrade (incremental) ~45 s; a rollback took 228 s with
# the machine at load ~13 (bench/serve_upgrade_bench.py).
READY_TIMEOUT = 120.0
UPGRADE_TIMEOUT = 240.0


# -- the serve address -------------------------------------------------------------------------------------


def serve_address(local: Local, name: str, namespace: str = "default") -> str:
    """The RayService's local serve address: kray's server reserves it and writes it into the annotation
    ``kray.io/serve-address`` (``127.0.0.1:<port>``, :mod:`kray.local.serve_routes`)."""

    def reserved() -> str | None:
        return routes.serve_address(local.get(RAYSERVICE, name, namespace) or {})

    found = wait_for(reserved, timeout=30, what=f"{SERVE_ADDRESS_ANNOTATION} on RayService {namespace}/{name}")
    return f"http://{found}"


# -- the load ----------------------------------------------------------------------------------------------


@dataclass
class Load:
    """Paced GETs (open loop: one every ``1/rate`` s whatever the latency), answers counted by body."""

    url: str
    rate: float = RATE
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    answers: list[tuple[float, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)
        self.stopped = time.monotonic()

    @property
    def achieved_rate(self) -> float:
        return self.sent / max(1e-9, self.stopped - self.started)

    def _run(self) -> None:
        local = threading.local()

        def one() -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx2.Client(timeout=30.0, trust_env=False)
            began = time.monotonic()
            try:
                response = client.get(self.url + "/")
            except httpx2.HTTPError as error:
                outcome: str | None = f"{type(error).__name__}: {error}"
            else:
                outcome = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
                body = response.text if response.status_code == 200 else ""
            with self._lock:
                self.latencies.append(time.monotonic() - began)
                if outcome is None:
                    self.answers.append((time.monotonic(), body))
                else:
                    self.failures.append(outcome)

        with ThreadPoolExecutor(max_workers=16) as pool:
            next_at = time.monotonic()
            while not self._stop.is_set():
                pool.submit(one)
                self.sent += 1
                next_at += 1.0 / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def latency_ms(self, quantile: float) -> float:
        with self._lock:
            ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else float("nan")

    def last(self, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return [yaml.safe_load(body) for _, body in self.answers[-count:]]


# -- the RayService ---------------------------------------------------------------------------------------


def example() -> tuple[Obj, Obj]:
    config_map, service = yaml.safe_load_all(EXAMPLE.read_text())
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group.update(replicas=0, minReplicas=0)
    service["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = True  # incremental upgrades need it
    return config_map, service


def rayservice(local: Local) -> Obj:
    found = local.get(RAYSERVICE, NAME)
    assert found is not None
    return found


def settled(local: Local) -> Obj | None:
    """Ready, no pending cluster, every app RUNNING, no rollback in progress."""
    service = rayservice(local)
    found = status(service)
    active = found.get("activeServiceStatus") or {}
    apps = active.get("applicationStatuses") or {}
    running = bool(apps) and all(a.get("status") == "RUNNING" for a in apps.values())
    idle = not (found.get("pendingServiceStatus") or {}).get("rayClusterName")
    ok = (
        condition(service, "Ready") == "True"
        and running
        and idle
        and condition(service, "RollbackInProgress") != "True"
    )
    return service if ok else None


def answers_with(load: Load, want: dict[str, str]) -> bool:
    recent = load.last(10)
    return len(recent) == 10 and all({k: r.get(k) for k in want} == want for r in recent)


def _side(local: Local, entry: dict[str, Any]) -> dict[str, Any]:
    apps = entry.get("applicationStatuses") or {}
    cluster = entry.get("rayClusterName")
    found = cast("list[Obj]", local.pods(cluster)) if cluster else []  # conftest's `list` is Local.list there
    pods = {p["metadata"]["name"]: status(p).get("phase") for p in found}
    return {
        "cluster": cluster,
        "state": status(local.get(RAYCLUSTER, cluster)).get("state") if cluster else None,
        "pods": pods,
        "apps": {name: app.get("status") for name, app in apps.items()},
        "capacity": entry.get("targetCapacity"),
        "traffic": entry.get("trafficRoutedPercent"),
    }


def seen(local: Local, load: Load | None = None) -> dict[str, Any]:
    """What a failed wait reports: the RayService's conditions and both sides, and the last answers."""
    service = local.get(RAYSERVICE, NAME)
    found = status(service)
    out: dict[str, Any] = {
        "conditions": {c.get("type"): (c.get("status"), c.get("reason")) for c in found.get("conditions") or ()},
        "active": _side(local, found.get("activeServiceStatus") or {}),
        "pending": _side(local, found.get("pendingServiceStatus") or {}),
    }
    if load is not None:
        out["last answers"] = load.last(3)
        out["failures"] = f"{len(load.failures)} of {load.sent}, last {load.failures[-2:]}"
    return out


def wait_until(probe: Callable[[], object], *, timeout: float, what: str, report: Callable[[], object]) -> None:
    """Poll ``probe`` each 0.5 s until truthy; after ``timeout`` fail with ``report()`` (what it last saw)."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {report()!r}")
        time.sleep(0.5)


@dataclass
class Scenario:
    local: Local
    address: str
    results: dict[str, Load] = field(default_factory=dict)

    def upgrade(
        self,
        what: str,
        change: Callable[[dict[str, Any]], None],
        want: dict[str, str],
        *,
        rate: float = RATE,
        timeout: float = UPGRADE_TIMEOUT,
    ) -> Load:
        """Apply ``change`` to the RayService spec under load; wait until it settled and ``want`` answers."""
        with Load(self.address, rate=rate) as load:
            time.sleep(2)
            before = rayservice(self.local)
            self.local.update(RAYSERVICE, NAME, lambda obj: change(obj["spec"]))
            wait_until(
                lambda: rayservice(self.local) != before and settled(self.local) and answers_with(load, want),
                timeout=timeout,
                what=f"{what}: settled with {want} answering",
                report=lambda: seen(self.local, load),
            )
            time.sleep(2)
        self.results[what] = load
        return load


@pytest.fixture(scope="module")
def scenario(local: Local) -> Iterator[Scenario]:
    path = local.manifests / "rayservice.yaml"
    path.write_text(yaml.safe_dump_all(example(), sort_keys=False))
    applied = local.kray("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    try:
        wait_until(
            lambda: settled(local), timeout=READY_TIMEOUT, what=f"RayService {NAME} Ready", report=lambda: seen(local)
        )
        url = serve_address(local, NAME)
        printed = f"rayservice/{NAME} serve address: {url}"
        assert printed in applied.stdout, f"kray apply printed {applied.stdout!r}, not {printed!r}"
        wait_until(lambda: answer(url)[0], timeout=30, what=f"a 200 at {url}", report=lambda: answer(url)[1])
        yield Scenario(local, url)
    finally:
        local.delete(RAYSERVICE, NAME)
        local.wait_gone(RAYSERVICE, NAME, timeout=60)


def answer(url: str) -> tuple[bool, str]:
    """Whether the serve address answers 200, and what it said (or the error): a failed wait reports it."""
    try:
        response = httpx2.get(url + "/", timeout=10, trust_env=False)
    except httpx2.HTTPError as error:
        return False, f"{type(error).__name__}: {error}"
    return response.status_code == 200, f"{response.status_code}: {response.text[:200]}"


def check(load: Load, want: dict[str, str]) -> None:
    p50, p99 = load.latency_ms(0.50), load.latency_ms(0.99)
    rate, failed = f"{load.achieved_rate:.1f}/s", len(load.failures)
    print(f"{load.sent} sent at {rate}, {failed} failed, p50 {p50:.1f} ms p99 {p99:.1f} ms")
    assert load.achieved_rate >= 20, f"{load.achieved_rate:.1f} requests/s"
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"
    assert answers_with(load, want), f"the last answers: {load.last(10)}"


def test_1_serve_config_update_in_place(scenario: Scenario) -> None:
    cluster = status(rayservice(scenario.local))["activeServiceStatus"]["rayClusterName"]
    load = scenario.upgrade("serve config v1 -> v2", lambda spec: set_version(spec, "v2"), {"version": "v2"})
    check(load, {"version": "v2", "build": "a"})
    assert status(rayservice(scenario.local))["activeServiceStatus"]["rayClusterName"] == cluster


def test_2_new_cluster_upgrade(scenario: Scenario) -> None:
    old = status(rayservice(scenario.local))["activeServiceStatus"]["rayClusterName"]
    load = scenario.upgrade("NewCluster a -> b", lambda spec: set_build(spec, "b"), {"build": "b"})
    check(load, {"version": "v2", "build": "b"})
    assert status(rayservice(scenario.local))["activeServiceStatus"]["rayClusterName"] != old


def incremental(spec: dict[str, Any], build: str) -> None:
    spec["upgradeStrategy"] = {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "gatewayClassName": "kray-local",
            "maxSurgePercent": 100,
            "stepSizePercent": 25,
            "intervalSeconds": 2,
        },
    }
    set_build(spec, build)


def test_3_incremental_upgrade(scenario: Scenario) -> None:
    old = status(rayservice(scenario.local))["activeServiceStatus"]["rayClusterName"]
    load = scenario.upgrade("incremental b -> c", lambda spec: incremental(spec, "c"), {"build": "c"})
    check(load, {"version": "v2", "build": "c"})
    final = status(rayservice(scenario.local))["activeServiceStatus"]
    assert final["rayClusterName"] != old
    assert (final.get("targetCapacity"), final.get("trafficRoutedPercent")) == (100, 100)
    builds = {a.get("build") for a in (yaml.safe_load(b) for _, b in load.answers)}
    assert builds == {"b", "c"}


def test_4_rollback(scenario: Scenario) -> None:
    service = rayservice(scenario.local)
    active = status(service)["activeServiceStatus"]["rayClusterName"]
    spec = copy.deepcopy(service["spec"])
    with Load(scenario.address) as load:
        time.sleep(2)
        scenario.local.update(RAYSERVICE, NAME, lambda obj: set_build(obj["spec"], "d"))

        def d_has_traffic() -> bool:
            pending = status(rayservice(scenario.local)).get("pendingServiceStatus") or {}
            return int(pending.get("trafficRoutedPercent") or 0) > 0

        report = lambda: seen(scenario.local, load)  # noqa: E731
        wait_until(d_has_traffic, timeout=UPGRADE_TIMEOUT, what="traffic to the d cluster", report=report)
        scenario.local.update(RAYSERVICE, NAME, lambda obj: obj.update(spec=spec))
        wait_until(
            lambda: condition(rayservice(scenario.local), "RollbackInProgress") == "True" or settled(scenario.local),
            timeout=30,
            what="RollbackInProgress",
            report=report,
        )
        wait_until(
            lambda: settled(scenario.local) and answers_with(load, {"build": "c"}),
            timeout=UPGRADE_TIMEOUT,
            what="rolled back to c",
            report=report,
        )
        time.sleep(2)
    scenario.results["rollback d -> c"] = load
    check(load, {"version": "v2", "build": "c"})
    assert status(rayservice(scenario.local))["activeServiceStatus"]["rayClusterName"] == active
    builds = {a.get("build") for a in (yaml.safe_load(b) for _, b in load.answers)}
    assert "d" in builds, "the d cluster took traffic before the rollback"
