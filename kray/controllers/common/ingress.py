"""The head Ingress KubeRay creates for ``headGroupSpec.enableIngress`` (``common/ingress.go``, v1.7).

It exposes the Ray dashboard of ``<cluster>-head-svc`` outside the cluster. Users customise it through
the RayCluster itself: every cluster annotation is copied onto the Ingress (ingress controllers read
their settings from annotations), except ``kubernetes.io/ingress.class`` which becomes
``spec.ingressClassName``; ``headGroupSpec.ingressOptions`` (v1.7) sets host, path, path type and TLS.
"""

from __future__ import annotations

from kray._ray.start import NodeType
from kray.api.v1 import API_VERSION, RayCluster
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import JSON, controller_reference, deep_copy
from kray.controllers.common.names import check_label, head_service_name, identifier, ingress_name
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions
from kray.controllers.common.service import service_ports

__all__ = ["DEFAULT_INGRESS_PATH", "DEFAULT_INGRESS_PATH_TYPE", "build_head_ingress"]

DEFAULT_INGRESS_PATH = "/"
DEFAULT_INGRESS_PATH_TYPE = "Prefix"


def build_head_ingress(*, cluster: RayCluster, options: PodBuildOptions = DEFAULT_OPTIONS) -> JSON:
    """``BuildIngressForHeadService``: one rule, one path, to the head Service's dashboard port."""
    name = cluster.metadata.name or ""
    uid = cluster.metadata.uid
    if not name or not uid:
        raise ValueError("the RayCluster needs metadata.name and metadata.uid")
    head = cluster.spec.head_group_spec
    service = (head.head_service or {}).get("metadata") or {}
    ingress_options = head.ingress_options
    annotations = {k: v for k, v in (cluster.metadata.annotations or {}).items() if k != keys.INGRESS_CLASS}
    path_type = DEFAULT_INGRESS_PATH_TYPE
    path = DEFAULT_INGRESS_PATH
    if ingress_options is not None:
        path = ingress_options.path or DEFAULT_INGRESS_PATH
        if ingress_options.path_type is not None:
            path_type = str(ingress_options.path_type)
    dashboard = service_ports(cluster, options=options).get("dashboard", options.ports.dashboard)
    rule: JSON = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {
                        "service": {
                            "name": head_service_name(name, override=service.get("name") or None),
                            "port": {"number": dashboard},
                        }
                    },
                }
            ]
        }
    }
    spec: JSON = {"rules": [rule]}
    if ingress_options is not None and ingress_options.host:
        rule["host"] = ingress_options.host
    if ingress_options is not None and ingress_options.tls:
        spec["tls"] = [deep_copy(tls) for tls in ingress_options.tls]
    ingress_class = (cluster.metadata.annotations or {}).get(keys.INGRESS_CLASS)
    if ingress_class is not None:
        spec["ingressClassName"] = ingress_class
    metadata: JSON = {
        "name": ingress_name(name),
        "namespace": cluster.metadata.namespace or "",
        "labels": {
            keys.RAY_CLUSTER: name,
            keys.RAY_IDENTIFIER: check_label(identifier(name, NodeType.HEAD)),
            keys.APP_NAME: keys.APPLICATION_NAME,
            keys.CREATED_BY: keys.COMPONENT_NAME,
        },
        "ownerReferences": [controller_reference(api_version=API_VERSION, kind="RayCluster", name=name, uid=uid)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec}
