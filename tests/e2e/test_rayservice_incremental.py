"""A RayService's incremental upgrade and its rollback under load, routed by a real Gateway: kray's operator, Traefik,
real Ray Serve, on the e2e cluster.

``examples/rayservice.yaml`` (worker group at 0, as in ``test_rayservice.py``) with ``upgradeStrategy:
NewClusterWithIncrementalUpgrade`` (``gatewayClassName: traefik``, 25 % steps every 5 s, surge 100 %) must reach
Ready and answer through the Gateway -- the operator's ``serve-versions-gateway`` and ``serve-versions-httproute``,
served by Traefik (``gateway_support.py``), reached by the Traefik Service's DNS name from a prober pod -- and
then, one RayService for both steps (a fresh one would cost a cluster start):

1. an incremental upgrade (``APP_BUILD`` a -> b): the HTTPRoute's weight for the new cluster steps 25, 50, 75,
   100; both builds answer meanwhile and b alone after;
2. a rollback: b -> c, and once c has half the traffic the spec goes back to b: ``RollbackInProgress`` is set,
   c's weight steps back down, b (still the active cluster) answers after,

each under the constant paced loop of ``serve_load.py`` (25 requests/s, at least 20 held) with zero failed
requests. A :class:`Timeline` records what the RayService status and the HTTPRoute said, when: the weights a test
checks, and for a failed request what the route's generation, weights and status and the clusters' target
capacities were around its start.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from kray.dev.binaries import Binaries
from tests.e2e.gateway_support import GATEWAY_CLASS, Traefik, access_log_errors, traefik_gateway, traefik_log
from tests.e2e.serve_load import NAME, Load, check, example, example_with_prober, wait_answering
from tests.e2e.support import E2E, RayService, get_obj
from tests.e2e.upgrade_timeline import Gateway, HTTPRoute, Timeline, conditions, serve_svc, snapshot
from tests.local.node.agent_helpers import wait_for
from tests.serve_example import set_build

# The upper bound of the bounded waits (tests/test_suite_rules.py): the package's cluster fixture (~700 s under
# load) and this module's (Traefik ~600 s with its namespace, the RayService Ready 300 s, the prober and a first
# answer 120 s, teardown ~400 s) may count in any test's budget; then each step's 30 + 240 (+ 240 the rollback) s.
pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(3300)]

STEP_PERCENT = 25
INTERVAL_SECONDS = 5
MAX_SURGE_PERCENT = 100
"""One replica a cluster: the pending cluster gets its whole capacity at once, then traffic moves in steps."""
ROLLBACK_AT = 2 * STEP_PERCENT
"""The rollback starts once the new cluster has this much of the traffic: two steps back to the active one."""
UPGRADE_WAIT = 240.0  # within serve_load.LOAD_LIMIT: the loop must still run when a step settles


def incremental(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    config_map, service = example(namespace)
    # KubeRay's validation: an incremental upgrade scales Serve by target_capacity, which needs the autoscaler.
    service["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = True
    service["spec"]["upgradeStrategy"] = {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "gatewayClassName": GATEWAY_CLASS,
            "stepSizePercent": STEP_PERCENT,
            "intervalSeconds": INTERVAL_SECONDS,
            "maxSurgePercent": MAX_SURGE_PERCENT,
        },
    }
    return config_map, service


# -- the RayService behind the Gateway ------------------------------------------------------------------------


@dataclass
class Serving:
    e2e: E2E
    namespace: str
    prober: tuple[str, str]
    traefik: Traefik

    def get(self) -> dict[str, Any]:
        found = get_obj(self.e2e.client, RayService, NAME, self.namespace)
        assert found is not None, f"RayService {NAME} is gone"
        return found

    def active(self) -> str:
        return str(((self.get().get("status") or {}).get("activeServiceStatus") or {}).get("rayClusterName") or "")

    def settled(self) -> bool:
        """Ready with every app RUNNING, no upgrade or rollback on, no pending cluster; the Gateway Programmed; the
        route sending everything to the active cluster, and Traefik having accepted that generation of it."""
        found = self.get()
        status, said = found.get("status") or {}, conditions(found)
        active = status.get("activeServiceStatus") or {}
        apps = (active.get("applicationStatuses") or {}).values()
        if not (
            said.get("Ready") == "True"
            and said.get("UpgradeInProgress") != "True"
            and said.get("RollbackInProgress") != "True"
            and bool(apps)
            and all(a.get("status") == "RUNNING" for a in apps)
            and not (status.get("pendingServiceStatus") or {}).get("rayClusterName")
        ):
            return False
        gateway = get_obj(self.e2e.client, Gateway, f"{NAME}-gateway", self.namespace) or {}
        if conditions(gateway).get("Programmed") != "True":
            return False
        route = snapshot(self.e2e, self.namespace, NAME).get("route") or {}
        weights = route.get("weights")
        cluster = active.get("rayClusterName")
        return weights == {serve_svc(str(cluster)): 100} and route.get("generation") in route.get("accepted_for", [])

    def seen(self, load: Load | None = None, timeline: Timeline | None = None) -> str:
        out: dict[str, Any] = {"now": snapshot(self.e2e, self.namespace, NAME)}
        gateway = get_obj(self.e2e.client, Gateway, f"{NAME}-gateway", self.namespace)
        out["gateway"] = (gateway or {}).get("status")
        route = get_obj(self.e2e.client, HTTPRoute, f"{NAME}-httproute", self.namespace)
        out["route status"] = (route or {}).get("status")
        if load is not None:
            out["last answers"] = load.last(3)
            out["load"] = load.brief()
        events = self.e2e.client.list(Event, namespace=self.namespace)
        out["events"] = [f"{e.type} {e.reason} {e.involvedObject.name}: {e.message}" for e in events][-8:]
        extra = [json.dumps(out, indent=1, default=str)]
        if timeline is not None:
            extra.append(f"timeline (last 15 changes): {[e for _, e in timeline.entries[-15:]]}")
        extra.append(f"Traefik log:\n{traefik_log(self.e2e, self.traefik.namespace, lines=15)}")
        return self.e2e.report(self.namespace, *extra)

    def failed(self, load: Load, timeline: Timeline) -> str:
        """What a failed request's post-mortem needs: the timeline around it, and what Traefik logged not 200."""
        errors = access_log_errors(self.e2e, self.traefik.namespace)
        return f"{timeline.explain(load.failures)}\nTraefik's non-200 answers: {errors}"

    def build(self) -> str:
        """The spec's ``APP_BUILD`` (the head container's)."""
        head = self.get()["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        return str(next(e["value"] for e in head.get("env") or () if e["name"] == "APP_BUILD"))

    def set_build(self, build: str) -> None:
        spec = self.get()["spec"]
        set_build(spec, build)
        patch = {"spec": {"rayClusterConfig": spec["rayClusterConfig"]}}
        self.e2e.client.patch(RayService, NAME, patch, namespace=self.namespace, patch_type=PatchType.MERGE)

    @contextlib.contextmanager
    def under_load(self, what: str) -> Iterator[tuple[Load, Timeline]]:
        """The load through the Gateway and the timeline, from 20 answers before the block to its end."""
        with (
            Timeline(self.e2e, self.namespace, NAME) as timeline,
            Load(self.e2e, self.prober, self.traefik.url) as load,
        ):
            wait_for(lambda: len(load.last(20)) == 20, timeout=30, what=f"{what}: answers before the change",
                     seen=lambda: self.seen(load, timeline))  # fmt: skip
            yield load, timeline

    def until_settled(self, what: str, *, load: Load, timeline: Timeline, extra: Callable[[], bool]) -> None:
        t0 = time.monotonic()
        wait_for(
            lambda: self.settled() and extra(),
            timeout=UPGRADE_WAIT,
            what=what,
            seen=lambda: self.seen(load, timeline),
            every=0.5,
        )
        print(f"{what}: in {time.monotonic() - t0:.1f}s")
        time.sleep(2)  # answers after the switch, on the new version only


@pytest.fixture(scope="module")
def traefik(e2e: E2E, k8s_binaries: Binaries) -> Iterator[Traefik]:
    with traefik_gateway(e2e, k8s_binaries) as running:
        yield running


@pytest.fixture(scope="module")
def serving(e2e: E2E, traefik: Traefik) -> Iterator[Serving]:
    t0 = time.monotonic()
    with example_with_prober(e2e, prefix="e2e-incr", objects=incremental) as (namespace, prober):
        found = Serving(e2e, namespace, prober, traefik)
        wait_for(found.settled, timeout=300, what=f"RayService {NAME} Ready behind its Gateway",
                 seen=found.seen, every=1.0)  # fmt: skip
        said = wait_answering(e2e, prober, traefik.url, seen=found.seen)
        print(f"Ready and answering through the Gateway in {time.monotonic() - t0:.1f}s: {said}")
        yield found


def _summary(what: str, timeline: Timeline, cluster: str) -> None:
    print(f"{what}: weights of {cluster}: {timeline.weights(cluster)}")
    print(f"{what}: active capacity {timeline.capacities('active')}; pending {timeline.capacities('pending')}")
    print("\n".join(f"  {line}" for line in timeline.moments()))


def test_1_incremental_upgrade(serving: Serving) -> None:
    old = serving.active()
    with serving.under_load("incremental a -> b") as (load, timeline):
        serving.set_build("b")
        serving.until_settled(
            "incremental a -> b: settled on a new cluster with b answering through the Gateway",
            load=load,
            timeline=timeline,
            extra=lambda: serving.active() != old and load.answering({"build": "b"}),
        )
    new = serving.active()
    _summary("incremental a -> b", timeline, new)
    check(load, {"build": "b"}, context=serving.failed(load, timeline))
    stepped = timeline.weights(new)
    assert [w for w in stepped if w] == [25, 50, 75, 100], f"the new cluster's weights as they changed: {stepped}"
    assert timeline.weights(old)[:1] == [100], f"the old cluster's weights: {timeline.weights(old)}"
    assert load.seen_values("build") == ["a", "b"], f"builds answering, in order: {load.seen_values('build')}"


def test_2_rollback_midway(serving: Serving) -> None:
    """From whatever build is active (b after test 1; a when run alone) to c and back."""
    active, build = serving.active(), serving.build()
    what = f"rollback {build} -> c -> {build}"
    with serving.under_load(what) as (load, timeline):
        serving.set_build("c")
        wait_for(
            lambda: timeline.pending_weight() >= ROLLBACK_AT and "c" in load.seen_values("build"),
            timeout=UPGRADE_WAIT,
            what=f"{what}: the new cluster (build c) taking {ROLLBACK_AT}% of the traffic",
            seen=lambda: serving.seen(load, timeline),
            every=0.2,
        )
        pending = str(snapshot(serving.e2e, serving.namespace, NAME)["pending"][0])
        serving.set_build(build)
        serving.until_settled(
            f"{what}: settled back on the active cluster with {build} answering through the Gateway",
            load=load,
            timeline=timeline,
            extra=lambda: load.answering({"build": build}),
        )
    _summary(what, timeline, pending)
    check(load, {"build": build}, context=serving.failed(load, timeline))
    assert serving.active() == active, "a rollback keeps the active cluster"
    assert timeline.condition_seen("RollbackInProgress"), "RollbackInProgress was never True"
    weights = timeline.weights(pending)
    peak = weights.index(max(weights))
    assert max(weights) >= ROLLBACK_AT, f"{pending}'s weights: {weights}"
    assert weights[peak:] == sorted(weights[peak:], reverse=True), f"{pending}'s weights after the revert: {weights}"
    assert load.seen_values("build") == [build, "c"], f"builds answering, in order: {load.seen_values('build')}"
