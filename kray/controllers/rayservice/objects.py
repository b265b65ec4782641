"""The Kubernetes objects a RayService reads and writes beside its clusters: Services, head pods, the token.

KubeRay's ``BuildHeadServiceForRayService``/``BuildServeService`` (``common/service.go``) and
``reconcileServices`` (``rayservice_controller.go``): ``<rs>-head-svc`` is the cluster's head Service
renamed and relabelled; the serve Service (``<rs>-serve-svc``, or ``spec.serveService``) selects the
cluster's pods labelled ``ray.io/serve=true`` and has only the ``serve`` port. Both are owned by the
RayService. An existing Service is touched only when its ``ray.io/cluster`` selector must move, and
then only its ``spec`` (keeping the ClusterIP, immutable once assigned).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from kray.api.v1 import API_VERSION, RayCluster
from kray.api.v1.rayservice import RayService
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import controller_reference
from kray.controllers.common.names import auth_secret_name, owner_head_service_name, serve_service_label
from kray.controllers.common.names import serve_service_name as default_serve_service_name
from kray.controllers.common.service import NoServePortError, build_owner_head_service, service_ports
from kray.controllers.environment import ClusterEnvironment
from kray.store import POD, SECRET, SERVICE, Obj, Store
from kray.store.errors import NotFound

RAYSERVICE_KIND = "RayService"


async def get_or_none(store: Store, resource: Any, name: str, namespace: str) -> Obj | None:
    try:
        return await store.get(resource, name, namespace=namespace)
    except NotFound:
        return None


def serve_service_name(service: RayService) -> str:
    """``spec.serveService.metadata.name`` when set, else ``<rs>-serve-svc``."""
    name = ((service.spec.serve_service or {}).get("metadata") or {}).get("name")
    return str(name or default_serve_service_name(service.metadata.name or ""))


def selected_cluster(service_obj: Mapping[str, Any] | None) -> str | None:
    """The ``ray.io/cluster`` a Service selects (None: no Service)."""
    if service_obj is None:
        return None
    return str(((service_obj.get("spec") or {}).get("selector") or {}).get(keys.RAY_CLUSTER) or "")


async def head_pod(store: Store, namespace: str, cluster: str) -> Obj | None:
    """``GetRayClusterHeadPod``: the cluster's head pod, if exactly one exists (KubeRay errs on more)."""
    selector = f"{keys.RAY_CLUSTER}={cluster},{keys.RAY_NODE_TYPE}=head"
    pods = (await store.list(POD, namespace=namespace, label_selector=selector)).items
    return pods[0] if len(pods) == 1 else None


async def token(store: Store, environment: ClusterEnvironment, cluster: RayCluster) -> str | None:
    """The cluster's Ray auth token (its Secret), when the cluster uses token auth here."""
    if not (cluster.spec.auth_enabled() or environment.force_token_auth):
        return None
    options = cluster.spec.auth_options
    name = auth_secret_name(cluster.metadata.name or "", override=options.secret_name if options else None)
    secret = await get_or_none(store, SECRET, name, cluster.metadata.namespace or "default")
    data = ((secret or {}).get("data") or {}).get("auth_token")
    return base64.b64decode(data).decode() if data else None


def _owner(service: RayService) -> dict[str, Any]:
    meta = service.metadata
    return controller_reference(api_version=API_VERSION, kind=RAYSERVICE_KIND, name=meta.name or "", uid=meta.uid or "")


def build_head_service(service: RayService, cluster: RayCluster, environment: ClusterEnvironment) -> Obj:
    """``BuildHeadServiceForRayService``: the cluster's head Service as ``<rs>-head-svc``, owned by the RayService."""
    meta = service.metadata
    built = build_owner_head_service(
        owner_kind=RAYSERVICE_KIND,
        owner_name=meta.name or "",
        owner_uid=meta.uid or "",
        cluster=cluster,
        options=environment.pod_options(cluster),
    )
    built["metadata"]["namespace"] = meta.namespace or "default"
    return environment.customize_service(cluster=cluster, service=built)


def build_serve_service(service: RayService, cluster: RayCluster, environment: ClusterEnvironment) -> Obj:
    """``BuildServeService`` for a RayService (not incremental). Raises NoServePortError as KubeRay errs."""
    meta = service.metadata
    name = meta.name or ""
    labels = {**keys.originated_from(kind=RAYSERVICE_KIND, name=name), keys.SERVE: serve_service_label(name)}
    selector = {keys.RAY_CLUSTER: cluster.metadata.name or "", keys.SERVE: "true"}
    ports = service_ports(cluster, options=environment.pod_options(cluster))
    serve_ports = [{"name": "serve", "port": ports["serve"]}] if "serve" in ports else []
    service_type = service.spec.ray_cluster_config.head_group_spec.service_type or ""
    custom = service.spec.serve_service
    if custom is None:
        if not serve_ports:
            raise NoServePortError(
                "Please specify the port named 'serve' in the Ray head container; "
                "otherwise, the Kubernetes service for Ray Serve will not be created."
            )
        spec: dict[str, Any] = {"selector": selector, "ports": serve_ports}
        if service_type:
            spec["type"] = service_type
        built: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": default_serve_service_name(name), "labels": labels},
            "spec": spec,
        }
    else:
        built = {"apiVersion": "v1", "kind": "Service", **copy.deepcopy(custom)}
        metadata, spec = built.setdefault("metadata", {}), built.setdefault("spec", {})
        spec["selector"] = selector  # the user's selector and labels never win
        user_serve = [{"name": "serve", "port": p["port"]} for p in spec.get("ports") or () if p.get("name") == "serve"]
        defined_in_head = any(p.get("name") == "serve" for p in _head_container(cluster).get("ports") or ())
        if defined_in_head and serve_ports:
            spec["ports"] = serve_ports
        elif user_serve:
            spec["ports"] = user_serve[:1]
        elif serve_ports:
            spec["ports"] = serve_ports
        else:
            raise NoServePortError(
                "Please specify the port named 'serve' in the Ray head container or in RayService.Spec.ServeService"
            )
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
        metadata["name"] = metadata.get("name") or default_serve_service_name(name)
        if not spec.get("type") and service_type:
            spec["type"] = service_type
    built["metadata"]["namespace"] = meta.namespace or "default"
    built["metadata"]["ownerReferences"] = [_owner(service)]
    return environment.customize_service(cluster=cluster, service=built)


def build_cluster_serve_service(service: RayService, cluster: RayCluster, environment: ClusterEnvironment) -> Obj:
    """``BuildServeService`` of an incremental upgrade (``reconcilePerClusterServeService``): named and labelled
    after the cluster (``<cluster>-serve-svc``), ``spec.serveService`` ignored, owned by the RayCluster."""
    name = cluster.metadata.name or ""
    labels = {**keys.originated_from(kind=RAYSERVICE_KIND, name=name), keys.SERVE: serve_service_label(name)}
    ports = service_ports(cluster, options=environment.pod_options(cluster))
    if "serve" not in ports:
        raise NoServePortError(
            "Please specify the port named 'serve' in the Ray head container; "
            "otherwise, the Kubernetes service for Ray Serve will not be created."
        )
    spec: dict[str, Any] = {
        "selector": {keys.RAY_CLUSTER: name, keys.SERVE: "true"},
        "ports": [{"name": "serve", "port": ports["serve"]}],
    }
    if service_type := service.spec.ray_cluster_config.head_group_spec.service_type:
        spec["type"] = service_type
    owner = controller_reference(api_version=API_VERSION, kind="RayCluster", name=name, uid=cluster.metadata.uid or "")
    built: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": default_serve_service_name(name),
            "namespace": service.metadata.namespace or "default",
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": spec,
    }
    return environment.customize_service(cluster=cluster, service=built)


def _head_container(cluster: RayCluster) -> Mapping[str, Any]:
    containers = (cluster.spec.head_group_spec.template.get("spec") or {}).get("containers") or [{}]
    return containers[0]  # type: ignore[no-any-return]


def serve_port(cluster: RayCluster) -> int:
    """``GetServePort``: the head container's port named ``serve``, else Serve's default 8000."""
    for port in _head_container(cluster).get("ports") or ():
        if port.get("name") == "serve" and port.get("containerPort"):
            return int(port["containerPort"])
    return 8000


def head_service_name(service: RayService) -> str:
    return owner_head_service_name(service.metadata.name or "")


async def ensure_service(store: Store, wanted: Obj) -> str | None:
    """Create ``wanted``, or move an existing one's ``spec`` to it (ClusterIP kept). Returns the Event reason
    (``CreatedService``/``UpdatedService``), None when the Service already selected that cluster."""
    meta = wanted["metadata"]
    current = await get_or_none(store, SERVICE, meta["name"], meta["namespace"])
    if current is None:
        await store.create(SERVICE, wanted)
        return "CreatedService"
    if selected_cluster(current) == selected_cluster(wanted):
        return None
    spec = copy.deepcopy(wanted["spec"])
    cluster_ip = (current.get("spec") or {}).get("clusterIP")
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    await store.replace(SERVICE, {**current, "spec": spec})
    return "UpdatedService"
