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

Incremental upgrades (``NewClusterWithIncrementalUpgrade``: a Gateway and a weighted HTTPRoute, served by Traefik)
run in ``test_rayservice_incremental.py``; the load loop (``serve_load.py``) is the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube.types import PatchType

from tests.e2e.serve_load import NAME, Load, check, example, example_with_prober, wait_answering
from tests.e2e.support import E2E, RayService, get_obj, pods, service_endpoints
from tests.local.node.agent_helpers import wait_for
from tests.serve_example import set_build, set_version

# The package's cluster fixture (~700 s of bounded waits under load) counts in the first test's budget; then
# Ready 240 s, the prober 60 s, each upgrade 240 s, teardown 120 s.
pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(2100)]

SERVE_SVC = f"{NAME}-serve-svc"
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


@pytest.fixture(scope="module")
def serving(e2e: E2E) -> Iterator[Serving]:
    t0 = time.monotonic()
    with example_with_prober(e2e, prefix="e2e-serve", objects=example) as (namespace, prober):
        url = f"http://{SERVE_SVC}.{namespace}.svc.cluster.local:8000/"
        found = Serving(e2e, namespace, prober, url)
        wait_for(found.settled, timeout=240, what=f"RayService {NAME} Ready with {SERVE_SVC} endpoints",
                 seen=found.seen, every=1.0)  # fmt: skip
        said = wait_answering(e2e, prober, url, seen=found.seen)
        print(f"Ready and answering in {time.monotonic() - t0:.1f}s: {said}")
        yield found


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
