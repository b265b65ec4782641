"""Building blocks of the RayService planner tests: manifests, cluster views, and a small world that
applies a plan's effects (clusters, Services, the Serve config cache, the status) the way the reconcile
would, so a test can run reconcile after reconcile without processes or a store."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from kray.api.v1.rayservice import RayService
from kray.controllers.rayservice.plan import (
    FINALIZER,
    AddFinalizer,
    ClusterView,
    CreateCluster,
    DeleteCluster,
    DeleteServices,
    EnsureHeadService,
    EnsureServeService,
    HeadPod,
    Observed,
    Plan,
    PutServeConfig,
    RemoveFinalizer,
    SetHeadServeLabel,
    Settings,
    UpdateClusterInPlace,
    plan,
    serve_targets,
)

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
CONTAINER = {"name": "ray-head", "image": "rayproject/ray:2.46.0", "ports": [{"name": "serve", "containerPort": 8000}]}
HEAD = {"rayStartParams": {}, "template": {"spec": {"containers": [CONTAINER]}}}
WORKER = {
    "groupName": "small",
    "replicas": 1,
    "minReplicas": 1,
    "maxReplicas": 5,
    "rayStartParams": {},
    "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.46.0"}]}},
}
SERVE_CONFIG = "applications:\n  - name: fruit\n    import_path: fruit.app\n    route_prefix: /fruit\n"
READY_HEAD = {
    "state": "ready",
    "conditions": [
        {
            "type": "HeadPodReady",
            "status": "True",
            "reason": "HeadPodRunningAndReady",
            "message": "",
            "lastTransitionTime": "2026-11-25T11:00:00Z",
        }
    ],
}


def cluster_spec(**changes: Any) -> dict[str, Any]:
    return {"rayVersion": "2.46.0", "headGroupSpec": copy.deepcopy(HEAD), "workerGroupSpecs": [dict(WORKER)], **changes}


def manifest(
    *,
    status: Mapping[str, Any] | None = None,
    serve_config: str = SERVE_CONFIG,
    cluster: Mapping[str, Any] | None = None,
    finalizers: bool = True,
    deleting: bool = False,
    annotations: Mapping[str, str] | None = None,
    generation: int = 1,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "demo", "namespace": "default", "uid": "uid-1", "generation": generation}
    if finalizers:
        meta["finalizers"] = [FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T12:00:00Z"
    if annotations:
        meta["annotations"] = dict(annotations)
    body = {"serveConfigV2": serve_config, "rayClusterConfig": dict(cluster or cluster_spec()), **spec}
    out: dict[str, Any] = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": meta, "spec": body}
    if status is not None:
        out["status"] = dict(status)
    return out


def service(**kwargs: Any) -> RayService:
    return RayService.model_validate(manifest(**kwargs))


def apps(*statuses: str) -> dict[str, Any]:
    """Serve's instance details with one application per status (named app0, app1, ...)."""
    return {"applications": {f"app{i}": {"status": s, "deployments": {}} for i, s in enumerate(statuses)}}


def cluster_for(svc: RayService, name: str, **view: Any) -> ClusterView:
    """A cluster exactly as the planner would have created it for ``svc`` now, head up and ready."""
    from kray.controllers.rayservice.plan.clusters import cluster_body

    body = cluster_body(svc, name, settings=Settings())
    defaults: dict[str, Any] = {
        "annotations": body["metadata"]["annotations"],
        "status": READY_HEAD,
        "head_pod": HeadPod(serve_label="true", proxy_healthy=True),
    }
    return ClusterView(name=name, **{**defaults, **view})


def kinds(p: Plan) -> list[str]:
    return [type(a).__name__ for a in p.actions]


def condition(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    assert status is not None
    found = [c for c in status.get("conditions") or () if c["type"] == type_]
    assert found, f"no {type_} condition in {status.get('conditions')}"
    return {k: found[0][k] for k in ("status", "reason", "message")}


@dataclasses.dataclass
class World:
    """What a reconcile would see and change. Clusters come up (head ready, proxy healthy) when
    ``heads_up``; Serve reports each deployed app ``app_state``."""

    manifest: dict[str, Any]
    now: datetime = T0
    heads_up: bool = True
    app_state: str = "RUNNING"
    settings: Settings = dataclasses.field(default_factory=Settings)
    clusters: dict[str, ClusterView] = dataclasses.field(default_factory=dict)
    deployed: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    cache: dict[str, str] = dataclasses.field(default_factory=dict)
    head_service: str | None = None
    serve_service: str | None = None
    schedule: dict[str, datetime] = dataclasses.field(default_factory=dict)
    capacity: dict[str, int | None] = dataclasses.field(default_factory=dict)
    """The ``target_capacity`` each cluster's Serve runs at (its last PUT's; None: full, none given)."""
    suffixes: Iterator[str] = dataclasses.field(default_factory=lambda: (f"s{i:04d}" for i in range(10**6)))
    gone: bool = False

    def observe(self) -> Observed:
        svc = RayService.model_validate(self.manifest)
        clusters = {
            name: dataclasses.replace(c, cached_serve_config=self.cache.get(name)) for name, c in self.clusters.items()
        }
        base = Observed(
            service=svc,
            now=self.now,
            clusters=clusters,
            head_service_cluster=self.head_service,
            serve_service_cluster=self.serve_service,
            num_serve_endpoints=self._endpoints(),
            deletion_schedule=dict(self.schedule),
            random_suffix=next(self.suffixes),
            settings=self.settings,
        )
        asked = {
            name: {"applications": {a: {"status": self.app_state} for a in self.deployed.get(name, [])}}
            for name in serve_targets(base)
        }
        clusters = {n: dataclasses.replace(c, serve_details=asked.get(n)) for n, c in clusters.items()}
        return dataclasses.replace(base, clusters=clusters)

    def _endpoints(self) -> int:
        target = self.serve_service
        if target is None or target not in self.clusters or self.app_state != "RUNNING":
            return 0
        return 1 if self.deployed.get(target) else 0

    def step(self) -> Plan:
        p = plan(self.observe())
        self.apply(p)
        return p

    def apply(self, p: Plan) -> None:
        meta = self.manifest["metadata"]
        for action in p.actions:
            match action:
                case AddFinalizer():
                    meta.setdefault("finalizers", []).append(FINALIZER)
                case RemoveFinalizer():
                    meta["finalizers"] = [f for f in meta.get("finalizers", []) if f != FINALIZER]
                    self.gone = True
                case CreateCluster(name=name, body=body):
                    assert name not in self.clusters, f"{name} created twice"
                    self.clusters[name] = self._new_cluster(name, body)
                case UpdateClusterInPlace(name=name, body=body):
                    old = self.clusters[name]
                    self.clusters[name] = dataclasses.replace(old, annotations=body["metadata"]["annotations"])
                case DeleteCluster(name=name):
                    self.clusters.pop(name, None)
                    self.deployed.pop(name, None)
                    self.capacity.pop(name, None)
                case SetHeadServeLabel(cluster=name, value=value):
                    head = self.clusters[name].head_pod
                    assert head is not None
                    self.clusters[name] = dataclasses.replace(
                        self.clusters[name], head_pod=dataclasses.replace(head, serve_label=value)
                    )
                case PutServeConfig(cluster=name, config=config, cache_as=cache_as):
                    self.deployed[name] = [a["name"] for a in config.get("applications") or ()]
                    self.capacity[name] = config.get("target_capacity")
                    if cache_as is not None:
                        self.cache[name] = cache_as
                case EnsureHeadService(cluster=name):
                    self.head_service = name
                case EnsureServeService(cluster=name):
                    self.serve_service = name
                case DeleteServices():
                    self.head_service = self.serve_service = None
        for name in list(self.cache):
            if name not in p.keep_serve_configs:
                del self.cache[name]
        self.schedule = dict(p.deletion_schedule)
        if p.status is not None:
            self.manifest["status"] = copy.deepcopy(dict(p.status))

    def _new_cluster(self, name: str, body: Mapping[str, Any]) -> ClusterView:
        if not self.heads_up:
            return ClusterView(name=name, annotations=body["metadata"]["annotations"])
        head = HeadPod(serve_label=None, proxy_healthy=True)
        return ClusterView(name=name, annotations=body["metadata"]["annotations"], status=READY_HEAD, head_pod=head)

    def run(self, reconciles: int, *, tick: float = 2.0) -> list[Plan]:
        plans = []
        for _ in range(reconciles):
            plans.append(self.step())
            self.now += timedelta(seconds=tick)
        return plans

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.manifest.get("status") or {})

    def active(self) -> str | None:
        return (self.status.get("activeServiceStatus") or {}).get("rayClusterName")

    def pending(self) -> str | None:
        return (self.status.get("pendingServiceStatus") or {}).get("rayClusterName")


def serve_yaml(*names: str) -> str:
    return yaml.safe_dump({"applications": [{"name": n, "import_path": f"{n}.app"} for n in names]})
