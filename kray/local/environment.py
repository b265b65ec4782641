"""Local mode's ClusterEnvironment: ports and addresses for clusters that share one machine.

Cluster-wide ports — the head node's agent and metrics ports among them, so the head Service's
``metrics`` endpoint is known before a head pod exists and survives its replacement — are reserved once
per cluster and recorded on the RayCluster (annotation ``kray.io/local-ports``) so a restarted server
finds them again; they are released with the cluster. A worker's node ports are reserved per pod and
recorded on the pod (``kray.io/node-ports``, and ``kray.io/port-owner``, whose ports the pod runner
releases when the pod is gone); the head pod records its (cluster) node ports but owns none. Each pod
also records its cluster's Ray temp dir (``kray.io/ray-temp-dir``) for the runner to delete after the
cluster's last pod: the head's ``--temp-dir``, each worker's being its own directory inside it
(:func:`worker_temp_dir`). The rewriting itself is :mod:`kray.local.adjust`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kray._ray.start import RayPorts
from kray.api.v1.raycluster import RayCluster
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions
from kray.local.adjust import LOCAL_HOST, ClusterPorts, KubeApiAccess, NodePorts, adjust_head_service, adjust_pod
from kray.local.paths import ray_temp_root
from kray.local.podrunner import FINALIZER as POD_FINALIZER
from kray.local.podrunner import PORT_OWNER_ANNOTATION, RAY_TEMP_DIR_ANNOTATION
from kray.local.ports import PortAllocator
from kray.local.server.kube_tokens import ensure_cluster_token, token_secret_name
from kray.store import POD, RAYCLUSTER, Obj, Store

PORTS_ANNOTATION = "kray.io/local-ports"
NODE_PORTS_ANNOTATION = "kray.io/node-ports"


@dataclass(frozen=True, slots=True)
class KubeApiEndpoint:
    """The local server's Kubernetes API (``server.json``'s ``kube_api_url``/``kube_api_ca``), for autoscalers."""

    host: str
    port: int
    ca_cert: Path


def cluster_owner(namespace: str, name: str) -> str:
    return f"cluster/{namespace}/{name}"


def worker_temp_dir(cluster_temp_dir: Path, *, pod_id: str) -> Path:
    """A worker pod's own Ray temp dir, inside its cluster's (so it goes with the cluster's).

    Every node of a cluster shares the head's session name, and Ray keeps a node's runtime envs in
    ``<temp dir>/<session>/runtime_resources``: nodes sharing a temp dir share it, and each node's runtime env
    agent then creates, garbage-collects and, after a failed attempt, deletes the other's ``pip`` virtualenvs
    and ``working_dir`` packages under its processes (a job's workers fail with ``No module named 'ray'``).
    On Kubernetes every pod has its own ``/tmp/ray``; ``ray start --temp-dir`` may be given per node.
    Short: Ray's socket paths below it must stay under 108 bytes.
    """
    return cluster_temp_dir / f"w{pod_id[:6]}"


class LocalEnvironment:
    force_token_auth = True
    submits_over_http = True  # every submission mode submits over HTTP (docs/local-mode.md)
    rayjob_head_service = False  # nothing reaches a cluster by Service name on one machine

    def __init__(
        self,
        *,
        ports: PortAllocator,
        options: PodBuildOptions = DEFAULT_OPTIONS,
        kube_api: KubeApiEndpoint | None = None,
    ) -> None:
        self.ports = ports
        self.options = options
        self.kube_api = kube_api
        """None: no Kubernetes API is served, and head pods run without KubeRay's autoscaler container."""

    async def prepare(self, *, store: Store, cluster: Obj) -> Obj | None:
        """Reserve the cluster's ports once; an annotation from an older kray gets only the ports it lacks.

        An autoscaling cluster also gets its autoscaler's service-account Secret (token, CA, namespace) before
        any head pod can mount it; owned by the RayCluster, it goes with it.
        """
        if self.kube_api is not None and (cluster.get("spec") or {}).get("enableInTreeAutoscaling"):
            await ensure_cluster_token(store, cluster, ca_cert=self.kube_api.ca_cert.read_text())
        meta = cluster["metadata"]
        annotations = meta.get("annotations") or {}
        known = ClusterPorts.parse_annotation(annotations.get(PORTS_ANNOTATION) or "")
        missing = [name for name in ClusterPorts.names() if name not in known]
        if not missing:
            return None
        owner = cluster_owner(meta["namespace"], meta["name"])
        chosen = dict(zip(missing, self.ports.allocate(len(missing), owner=owner), strict=True))
        ports = ClusterPorts(**known, **chosen)
        updated = {
            **cluster,
            "metadata": {**meta, "annotations": {**annotations, PORTS_ANNOTATION: ports.as_annotation()}},
        }
        return await store.replace(RAYCLUSTER, updated)

    def cluster_ports(self, cluster: RayCluster) -> ClusterPorts:
        text = (cluster.metadata.annotations or {}).get(PORTS_ANNOTATION)
        if not text:
            raise RuntimeError(f"RayCluster {cluster.metadata.name} has no {PORTS_ANNOTATION} yet")
        try:
            return ClusterPorts.from_annotation(text)
        except ValueError as error:
            raise RuntimeError(f"RayCluster {cluster.metadata.name}: {error}") from None

    def pod_options(self, cluster: RayCluster) -> PodBuildOptions:
        ports = self.cluster_ports(cluster)
        ray_ports = RayPorts(gcs=ports.gcs, dashboard=ports.dashboard, client=ports.client, serve=ports.serve)
        return replace(self.options, head_host=LOCAL_HOST, ports=ray_ports)

    def customize_pod(self, *, cluster: RayCluster, pod: Obj, head: bool, auth_secret: str | None) -> Obj:
        ports = self.cluster_ports(cluster)
        owner: str | None = None
        temp_dir = self.ray_temp_dir(cluster)
        node_temp_dir = temp_dir
        if head:
            node = ports.head_node  # the cluster's: released with the cluster, never with a head pod
        else:
            pod_id = uuid.uuid4().hex[:12]
            owner = f"pod/{cluster.metadata.namespace}/{pod_id}"
            agent, metrics = self.ports.allocate(2, owner=owner)
            node = NodePorts(agent=agent, metrics=metrics)
            node_temp_dir = worker_temp_dir(temp_dir, pod_id=pod_id)
        adjusted = adjust_pod(
            pod,
            head=head,
            cluster=ports,
            node=node,
            auth_secret=auth_secret or f"{cluster.metadata.name}",
            temp_dir=str(node_temp_dir),
            kube_api=self._kube_access(cluster) if head else None,
        )
        metadata = adjusted.setdefault("metadata", {})
        annotations = metadata.setdefault("annotations", {})
        annotations[NODE_PORTS_ANNOTATION] = f"agent={node.agent},metrics={node.metrics}"
        annotations.pop(PORT_OWNER_ANNOTATION, None)  # whatever the template says: the runner would release it
        if owner is not None:
            annotations[PORT_OWNER_ANNOTATION] = owner
        annotations[RAY_TEMP_DIR_ANNOTATION] = str(temp_dir)
        metadata["finalizers"] = [*(metadata.get("finalizers") or []), POD_FINALIZER]
        return adjusted

    def _kube_access(self, cluster: RayCluster) -> KubeApiAccess | None:
        if self.kube_api is None:
            return None
        secret = token_secret_name(cluster.metadata.name or "")
        return KubeApiAccess(host=self.kube_api.host, port=self.kube_api.port, secret=secret)

    def ray_temp_dir(self, cluster: RayCluster) -> Path:
        """The cluster's own Ray temp dir: the head's, and the parent of its workers' (no other cluster's).

        Short, because Ray's Unix socket paths (``<temp dir>/session_<date>_<pid>/sockets/plasma_store.N``)
        must stay under 108 bytes; the parent is private to this user.
        """
        root = ray_temp_root()
        root.mkdir(mode=0o700, exist_ok=True)
        return root / (cluster.metadata.uid or cluster.metadata.name or "cluster").replace("-", "")[:12]

    def customize_service(self, *, cluster: RayCluster, service: Obj) -> Obj:
        return adjust_head_service(service, cluster=self.cluster_ports(cluster))

    def dashboard_address(self, *, cluster: RayCluster, head_service: Mapping[str, Any] | None) -> str | None:
        text = (cluster.metadata.annotations or {}).get(PORTS_ANNOTATION) or ""
        dashboard = ClusterPorts.parse_annotation(text).get("dashboard")
        # None until prepare() reserved the ports (a RayJob may look at its new cluster first); only the
        # dashboard port is read, so an annotation not yet upgraded still answers.
        return None if dashboard is None else f"{LOCAL_HOST}:{dashboard}"

    def release(self, *, namespace: str, name: str) -> None:
        self.ports.release(cluster_owner(namespace, name))

    def serve_proxy_address(self, *, cluster: RayCluster, head_pod: Mapping[str, Any]) -> str | None:
        """The cluster's own serve port on loopback (every proxy of the cluster binds it, SO_REUSEPORT)."""
        text = (cluster.metadata.annotations or {}).get(PORTS_ANNOTATION) or ""
        serve = ClusterPorts.parse_annotation(text).get("serve")
        return None if serve is None else f"{LOCAL_HOST}:{serve}"

    def serve_config(self, *, cluster: RayCluster, config: Mapping[str, Any]) -> dict[str, Any]:
        """Serve's proxies listen on the cluster's serve port, on loopback: KubeRay's clusters each have their
        own 8000 (Serve's default) on their own pod IPs; here every cluster shares one host."""
        http = dict(config.get("http_options") or {})
        http["host"] = LOCAL_HOST
        http["port"] = self.cluster_ports(cluster).serve
        return {**config, "http_options": http}

    async def serve_endpoints(self, *, store: Store, service: Mapping[str, Any]) -> int:
        """No EndpointSlices here: the ready pods the Service's selector matches, as the EndpointSlice
        controller would list them."""
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            return 0
        meta = service.get("metadata") or {}
        text = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        pods = await store.list(POD, namespace=meta.get("namespace"), label_selector=text)
        return sum(1 for pod in pods.items if _ready(pod) and not pod["metadata"].get("deletionTimestamp"))


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
