"""Local mode's ClusterEnvironment: ports and addresses for clusters that share one machine.

Cluster-wide ports are reserved once per cluster and recorded on the RayCluster (annotation
``kray.io/local-ports``) so a restarted server finds them again; per-node ports are reserved per pod
and recorded on the pod (``kray.io/node-ports``, released when the pod is gone). The rewriting
itself is :mod:`kray.local.adjust`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kray._ray.start import RayPorts
from kray.api.v1.raycluster import RayCluster
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions
from kray.local.adjust import LOCAL_HOST, ClusterPorts, NodePorts, adjust_head_service, adjust_pod
from kray.local.podrunner import FINALIZER as POD_FINALIZER
from kray.local.ports import PortAllocator
from kray.store import RAYCLUSTER, Obj, Store

PORTS_ANNOTATION = "kray.io/local-ports"
NODE_PORTS_ANNOTATION = "kray.io/node-ports"
PORT_OWNER_ANNOTATION = "kray.io/port-owner"


def cluster_owner(namespace: str, name: str) -> str:
    return f"cluster/{namespace}/{name}"


class LocalEnvironment:
    force_token_auth = True

    def __init__(self, *, ports: PortAllocator, options: PodBuildOptions = DEFAULT_OPTIONS) -> None:
        self.ports = ports
        self.options = options

    async def prepare(self, *, store: Store, cluster: Obj) -> Obj | None:
        meta = cluster["metadata"]
        annotations = meta.get("annotations") or {}
        if PORTS_ANNOTATION in annotations:
            return None
        owner = cluster_owner(meta["namespace"], meta["name"])
        chosen = ClusterPorts(*self.ports.allocate(len(ClusterPorts.names()), owner=owner))
        updated = {
            **cluster,
            "metadata": {**meta, "annotations": {**annotations, PORTS_ANNOTATION: chosen.as_annotation()}},
        }
        return await store.replace(RAYCLUSTER, updated)

    def cluster_ports(self, cluster: RayCluster) -> ClusterPorts:
        text = (cluster.metadata.annotations or {}).get(PORTS_ANNOTATION)
        if not text:
            raise RuntimeError(f"RayCluster {cluster.metadata.name} has no {PORTS_ANNOTATION} yet")
        return ClusterPorts.from_annotation(text)

    def pod_options(self, cluster: RayCluster) -> PodBuildOptions:
        ports = self.cluster_ports(cluster)
        ray_ports = RayPorts(gcs=ports.gcs, dashboard=ports.dashboard, client=ports.client, serve=ports.serve)
        return replace(self.options, head_host=LOCAL_HOST, ports=ray_ports)

    def customize_pod(self, *, cluster: RayCluster, pod: Obj, head: bool, auth_secret: str | None) -> Obj:
        owner = f"pod/{cluster.metadata.namespace}/{uuid.uuid4().hex[:12]}"
        agent, metrics = self.ports.allocate(2, owner=owner)
        node = NodePorts(agent=agent, metrics=metrics)
        adjusted = adjust_pod(
            pod,
            head=head,
            cluster=self.cluster_ports(cluster),
            node=node,
            auth_secret=auth_secret or f"{cluster.metadata.name}",
            temp_dir=str(self.ray_temp_dir(cluster)),
        )
        metadata = adjusted.setdefault("metadata", {})
        annotations = metadata.setdefault("annotations", {})
        annotations[NODE_PORTS_ANNOTATION] = f"agent={agent},metrics={metrics}"
        annotations[PORT_OWNER_ANNOTATION] = owner
        metadata["finalizers"] = [*(metadata.get("finalizers") or []), POD_FINALIZER]
        return adjusted

    def ray_temp_dir(self, cluster: RayCluster) -> Path:
        """The cluster's own Ray temp dir (its nodes share it, no other cluster does).

        Short, because Ray's Unix socket paths (``<temp dir>/session_<date>_<pid>/sockets/plasma_store.N``)
        must stay under 108 bytes; the parent is private to this user.
        """
        root = Path(tempfile.gettempdir()) / f"kray-{os.getuid()}"
        root.mkdir(mode=0o700, exist_ok=True)
        return root / (cluster.metadata.uid or cluster.metadata.name or "cluster").replace("-", "")[:12]

    def customize_service(self, *, cluster: RayCluster, service: Obj) -> Obj:
        return adjust_head_service(service, cluster=self.cluster_ports(cluster))

    def dashboard_address(self, *, cluster: RayCluster, head_service: Mapping[str, Any] | None) -> str:
        return f"{LOCAL_HOST}:{self.cluster_ports(cluster).dashboard}"

    def release(self, *, namespace: str, name: str) -> None:
        self.ports.release(cluster_owner(namespace, name))
