"""The Services KubeRay creates for a RayCluster: the head Service, the headless worker Service, the serve Service.

``<cluster>-head-svc`` is how everything reaches Ray (workers join its GCS port, clients use its
dashboard port), so its name, selector and ports follow KubeRay exactly: named ports of the Ray
container (unnamed ones become ``<port>-port``), or KubeRay's five defaults when the container names
none; ``metrics`` always; ``appProtocol: tcp``; sorted by name; headless with
``publishNotReadyAddresses`` unless a type other than ClusterIP is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kray._ray.start import NodeType
from kray.api.v1 import API_VERSION, RayCluster
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import JSON, controller_reference, deep_copy
from kray.controllers.common.names import (
    check_label,
    head_service_name,
    headless_service_name,
    identifier,
    owner_head_service_name,
    serve_service_label,
    serve_service_name,
)
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions

__all__ = [
    "NoServePortError",
    "build_head_service",
    "build_headless_worker_service",
    "build_owner_head_service",
    "build_serve_service",
    "head_service_labels",
    "service_ports",
]

APP_PROTOCOL = "tcp"


class NoServePortError(ValueError):
    """The head container has no port named ``serve``, so no serve Service can be built."""


def head_service_labels(cluster: RayCluster) -> dict[str, str]:
    """``HeadServiceLabels``: the labels (and selector keys) of the head Service."""
    name = cluster.metadata.name or ""
    return {
        keys.RAY_CLUSTER: name,
        keys.RAY_NODE_TYPE: str(NodeType.HEAD),
        keys.RAY_IDENTIFIER: check_label(identifier(name, NodeType.HEAD)),
        keys.APP_NAME: keys.APPLICATION_NAME,
        keys.CREATED_BY: keys.COMPONENT_NAME,
    }


def service_ports(cluster: RayCluster, *, options: PodBuildOptions = DEFAULT_OPTIONS) -> dict[str, int]:
    """``getServicePorts``: name → port, from the Ray head container or KubeRay's defaults, plus ``metrics``."""
    ports: dict[str, int] = {}
    for port in _head_container(cluster).get("ports") or ():
        number = int(port["containerPort"])
        ports[port.get("name") or f"{number}-port"] = number
    defaults = options.ports
    if not ports:
        ports = {
            "client": defaults.client,
            "gcs-server": defaults.gcs,
            "dashboard": defaults.dashboard,
            "metrics": defaults.metrics,
            "serve": defaults.serve,
        }
    ports.setdefault("metrics", defaults.metrics)
    return ports


def build_head_service(
    *, cluster: RayCluster, options: PodBuildOptions = DEFAULT_OPTIONS, owner_uid: str | None = None
) -> JSON:
    """``BuildServiceForHeadPod`` as the RayCluster controller calls it (``headServiceAnnotations``, the
    template's ``app.kubernetes.io/name``), owned by the cluster."""
    head = cluster.spec.head_group_spec
    template_labels = (head.template.get("metadata") or {}).get("labels") or {}
    user_labels = {keys.APP_NAME: template_labels[keys.APP_NAME]} if keys.APP_NAME in template_labels else {}
    service = _head_service(
        cluster, labels=user_labels, annotations=dict(cluster.spec.head_service_annotations or {}), options=options
    )
    service["metadata"]["ownerReferences"] = [_owner(cluster, owner_uid)]
    return service


def build_owner_head_service(
    *,
    owner_kind: str,
    owner_name: str,
    owner_uid: str,
    cluster: RayCluster,
    options: PodBuildOptions = DEFAULT_OPTIONS,
) -> JSON:
    """The ``<owner>-head-svc`` a RayJob or RayService keeps pointed at its current cluster's head."""
    service = _head_service(cluster, labels={}, annotations={}, options=options)
    service["metadata"]["name"] = owner_head_service_name(owner_name)
    service["metadata"]["labels"] = {
        **keys.originated_from(kind=owner_kind, name=owner_name),
        keys.RAY_NODE_TYPE: "head",
        keys.RAY_IDENTIFIER: check_label(f"{owner_name}-head"),
    }
    owner = controller_reference(api_version=API_VERSION, kind=owner_kind, name=owner_name, uid=owner_uid)
    service["metadata"]["ownerReferences"] = [owner]
    return service


def _head_service(
    cluster: RayCluster, *, labels: Mapping[str, str], annotations: Mapping[str, str], options: PodBuildOptions
) -> JSON:
    defaults = head_service_labels(cluster)
    selector = {key: labels.get(key, value) for key, value in defaults.items()}
    custom = cluster.spec.head_group_spec.head_service
    override = ((custom or {}).get("metadata") or {}).get("name") or None
    name = head_service_name(cluster.metadata.name or "", override=override)
    namespace = cluster.metadata.namespace or ""
    service_type = cluster.spec.head_group_spec.service_type or ""
    ports = [
        {"name": port_name, "appProtocol": APP_PROTOCOL, "port": number}
        for port_name, number in sorted(service_ports(cluster, options=options).items())
    ]
    if custom is not None:
        service: JSON = {"apiVersion": "v1", "kind": "Service", **deep_copy(custom)}
        metadata = service.setdefault("metadata", {})
        spec = service.setdefault("spec", {})
        spec["selector"] = dict(selector)
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
        spec["ports"] = [*(spec.get("ports") or []), *ports]
        metadata["labels"] = {**(metadata.get("labels") or {}), **selector}
        metadata["name"] = metadata.get("name") or name
        metadata["namespace"] = namespace
        if not spec.get("type") and service_type:
            spec["type"] = service_type
        return service
    metadata = {"name": name, "namespace": namespace, "labels": dict(selector)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec = {"ports": ports, "selector": dict(selector)}
    if service_type in ("", "ClusterIP") and not options.head_cluster_ip_service:
        spec["clusterIP"] = "None"
    if service_type:
        spec["type"] = service_type
    if "clusterIP" in spec:
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def build_headless_worker_service(*, cluster: RayCluster, owner_uid: str | None = None) -> JSON:
    """``<cluster>-headless``: DNS for the workers of multi-host groups (only needed when some ``numOfHosts > 1``)."""
    name = cluster.metadata.name or ""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": headless_service_name(name),
            "namespace": cluster.metadata.namespace or "",
            "labels": {keys.HEADLESS_WORKER_SVC: name},
            "ownerReferences": [_owner(cluster, owner_uid)],
        },
        "spec": {
            "selector": {keys.RAY_CLUSTER: name, keys.RAY_NODE_TYPE: "worker"},
            "clusterIP": "None",
            "type": "ClusterIP",
            "publishNotReadyAddresses": True,
        },
    }


def build_serve_service(
    *, cluster: RayCluster, options: PodBuildOptions = DEFAULT_OPTIONS, owner_uid: str | None = None
) -> JSON:
    """``<cluster>-serve-svc`` for a RayCluster annotated ``ray.io/enable-serve-service: "true"``.

    Raises :class:`NoServePortError` when the Ray head container (or the defaults) has no ``serve`` port.
    """
    name = cluster.metadata.name or ""
    ports = service_ports(cluster, options=options)
    if "serve" not in ports:
        raise NoServePortError(
            "Please specify the port named 'serve' in the Ray head container; "
            "otherwise, the Kubernetes service for Ray Serve will not be created."
        )
    spec: JSON = {"ports": [{"name": "serve", "port": ports["serve"]}], "selector": {keys.RAY_CLUSTER: name}}
    if cluster.spec.head_group_spec.service_type:
        spec["type"] = cluster.spec.head_group_spec.service_type
    metadata: JSON = {
        "name": serve_service_name(name),
        "namespace": cluster.metadata.namespace or "",
        "labels": {**keys.originated_from(kind="RayCluster", name=name), keys.SERVE: serve_service_label(name)},
        "ownerReferences": [_owner(cluster, owner_uid)],
    }
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def _head_container(cluster: RayCluster) -> Mapping[str, Any]:
    containers = (cluster.spec.head_group_spec.template.get("spec") or {}).get("containers") or [{}]
    return containers[0]  # type: ignore[no-any-return]


def _owner(cluster: RayCluster, owner_uid: str | None) -> JSON:
    uid = owner_uid or cluster.metadata.uid
    if not uid:
        raise ValueError("the RayCluster has no metadata.uid and no owner_uid was given")
    return controller_reference(api_version=API_VERSION, kind="RayCluster", name=cluster.metadata.name or "", uid=uid)
