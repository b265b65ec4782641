"""Where a controller runs: what differs between a Kubernetes cluster and one machine.

The controllers are written once. The few things that depend on the place — how pods reach the
head, which ports they use, how the control plane reaches a cluster's dashboard — go through a
:class:`ClusterEnvironment`. :class:`KubernetesEnvironment` is KubeRay's behaviour; local mode's
environment lives in :mod:`kray.local.environment` (ports and addresses, in one visible place).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kray.api.v1.raycluster import RayCluster
from kray.controllers.common._k8s import find_container_port
from kray.controllers.common.names import fqdn, head_service_name
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions
from kray.store import Obj, Resource, Store

ENDPOINT_SLICE = Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ClusterEnvironment(Protocol):
    force_token_auth: bool
    """Give every cluster Ray token auth, whatever its authOptions say (local mode's default)."""

    submits_over_http: bool
    """The RayJob controller submits every job itself over the dashboard's REST API (HTTPMode's way),
    whatever ``submissionMode`` says: no submitter Job, no sidecar. Same outcome, no submitter pod."""

    rayjob_head_service: bool
    """The RayJob controller keeps a ``<rayjob>-head-svc`` Service pointed at its cluster's head."""

    async def prepare(self, *, store: Store, cluster: Obj) -> Obj | None:
        """Record what this place needs on the cluster before pods exist (e.g. ports).

        Returns the updated cluster object when it changed it (the reconcile then starts over).
        """
        ...

    def pod_options(self, cluster: RayCluster) -> PodBuildOptions: ...

    def customize_pod(self, *, cluster: RayCluster, pod: Obj, head: bool, auth_secret: str | None) -> Obj: ...

    def customize_service(self, *, cluster: RayCluster, service: Obj) -> Obj: ...

    def dashboard_address(self, *, cluster: RayCluster, head_service: Mapping[str, Any] | None) -> str | None:
        """``host:port`` of the cluster's dashboard, as the control plane reaches it (None: not known yet)."""
        ...

    def release(self, *, namespace: str, name: str) -> None:
        """Forget what was reserved for a cluster that is gone."""
        ...

    def serve_proxy_address(self, *, cluster: RayCluster, head_pod: Mapping[str, Any]) -> str | None:
        """``host:port`` of the head pod's Serve proxy, as the control plane reaches it (None: not known yet)."""
        ...

    def serve_config(self, *, cluster: RayCluster, config: Mapping[str, Any]) -> dict[str, Any]:
        """The Serve config to PUT to this cluster's dashboard (where the proxies must listen here)."""
        ...

    async def serve_endpoints(self, *, store: Store, service: Mapping[str, Any]) -> int:
        """Ready pods behind a serve Service: KubeRay's ``numServeEndpoints``."""
        ...


class KubernetesEnvironment:
    """KubeRay's behaviour: Services by DNS name, fixed ports, auth only when asked for, submitters
    (K8sJobMode's batch Job, SidecarMode's container) as the RayJob asks."""

    force_token_auth = False
    submits_over_http = False
    rayjob_head_service = True

    def __init__(self, options: PodBuildOptions = DEFAULT_OPTIONS) -> None:
        self.options = options

    async def prepare(self, *, store: Store, cluster: Obj) -> Obj | None:
        return None

    def pod_options(self, cluster: RayCluster) -> PodBuildOptions:
        return self.options

    def customize_pod(self, *, cluster: RayCluster, pod: Obj, head: bool, auth_secret: str | None) -> Obj:
        return pod

    def customize_service(self, *, cluster: RayCluster, service: Obj) -> Obj:
        return service

    def dashboard_address(self, *, cluster: RayCluster, head_service: Mapping[str, Any] | None) -> str | None:
        """KubeRay's ``FetchHeadServiceURL``: the head Service (custom name honoured) and its ``dashboard``
        port; None while that Service does not exist or names no such port."""
        if head_service is None:
            return None
        port = next(
            (
                p.get("port")
                for p in (head_service.get("spec") or {}).get("ports") or ()
                if p.get("name") == "dashboard"
            ),
            None,
        )
        if port is None:
            return None
        namespace = cluster.metadata.namespace or "default"
        service = cluster_head_service_name(cluster)
        return f"{fqdn(service, namespace, cluster_domain=self.options.cluster_domain)}:{int(port)}"

    def release(self, *, namespace: str, name: str) -> None:
        return None

    def serve_proxy_address(self, *, cluster: RayCluster, head_pod: Mapping[str, Any]) -> str | None:
        """KubeRay's ``updateHeadPodServeLabel``: the pod IP and the head container's ``serve`` port (8000)."""
        ip = (head_pod.get("status") or {}).get("podIP")
        if not ip:
            return None
        containers = (head_pod.get("spec") or {}).get("containers") or [{}]
        return f"{ip}:{find_container_port(containers[0], 'serve', self.options.ports.serve)}"

    def serve_config(self, *, cluster: RayCluster, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    async def serve_endpoints(self, *, store: Store, service: Mapping[str, Any]) -> int:
        """``calculateNumServeEndpointsFromSlices``: unique pod UIDs of the ready endpoints of the Service's
        EndpointSlices (a dual-stack pod is in two slices, counted once)."""
        meta = service.get("metadata") or {}
        slices = await store.list(
            ENDPOINT_SLICE,
            namespace=meta.get("namespace"),
            label_selector=f"{SERVICE_NAME_LABEL}={meta.get('name')}",
        )
        ready: set[str] = set()
        for endpoint_slice in slices.items:
            for endpoint in endpoint_slice.get("endpoints") or ():
                uid = (endpoint.get("targetRef") or {}).get("uid")
                if (endpoint.get("conditions") or {}).get("ready") is True and uid:
                    ready.add(str(uid))
        return len(ready)


def cluster_head_service_name(cluster: RayCluster) -> str:
    """The cluster's head Service: ``headGroupSpec.headService.metadata.name`` or ``<cluster>-head-svc``."""
    custom = cluster.spec.head_group_spec.head_service
    override = ((custom or {}).get("metadata") or {}).get("name") or None
    return head_service_name(cluster.metadata.name or "", override=override)
