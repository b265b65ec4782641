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
from kray.controllers.common.names import fqdn, head_service_name
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions
from kray.store import Obj, Store


class ClusterEnvironment(Protocol):
    force_token_auth: bool
    """Give every cluster Ray token auth, whatever its authOptions say (local mode's default)."""

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


class KubernetesEnvironment:
    """KubeRay's behaviour: Services by DNS name, fixed ports, auth only when asked for."""

    force_token_auth = False

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
        name = cluster.metadata.name or ""
        service = head_service_name(name)
        port = self.options.ports.dashboard
        for entry in ((head_service or {}).get("spec") or {}).get("ports") or ():
            if entry.get("name") == "dashboard":
                port = int(entry.get("port", port))
        namespace = cluster.metadata.namespace or "default"
        return f"{fqdn(service, namespace, cluster_domain=self.options.cluster_domain)}:{port}"

    def release(self, *, namespace: str, name: str) -> None:
        return None
