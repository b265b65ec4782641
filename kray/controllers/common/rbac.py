"""The autoscaler's ServiceAccount, Role and RoleBinding, as KubeRay creates them (``common/rbac.go``).

The Ray autoscaler sidecar talks to the API server with the head pod's ServiceAccount: it lists and
patches pods and patches the RayCluster's replicas and ``workersToDelete``. Without these three objects
the head pod names a ServiceAccount nobody created and never starts, so they are created before any pod.
Names and rules are KubeRay's (tools and users look them up by ``<cluster>``).
"""

from __future__ import annotations

from kray.api.v1 import API_VERSION, RayCluster
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import JSON, controller_reference
from kray.controllers.common.names import autoscaler_role_name, autoscaler_service_account_name

__all__ = [
    "AUTOSCALER_RULES",
    "build_autoscaler_role",
    "build_autoscaler_role_binding",
    "build_autoscaler_service_account",
    "head_service_account_name",
    "user_named_service_account",
]

AUTOSCALER_RULES: tuple[JSON, ...] = (
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]},
    {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "patch"]},
)
"""What the autoscaler does: read and label pods, resize them in place (autoscaler v2), scale the cluster."""


def user_named_service_account(cluster: RayCluster) -> str | None:
    """The head template's own ``serviceAccountName`` (the user must create that one), or None."""
    spec = cluster.spec.head_group_spec.template.get("spec") or {}
    return spec.get("serviceAccountName") or None


def head_service_account_name(cluster: RayCluster) -> str:
    """``GetHeadGroupServiceAccountName`` clipped by ``CheckName``: the template's account, else ``<cluster>``."""
    return autoscaler_service_account_name(_name(cluster), head_service_account=user_named_service_account(cluster))


def build_autoscaler_service_account(*, cluster: RayCluster) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(cluster, head_service_account_name(cluster)),
    }


def build_autoscaler_role(*, cluster: RayCluster) -> JSON:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(cluster, autoscaler_role_name(_name(cluster))),
        "rules": [dict(rule) for rule in AUTOSCALER_RULES],
    }


def build_autoscaler_role_binding(*, cluster: RayCluster) -> JSON:
    name = _name(cluster)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(cluster, autoscaler_role_name(name)),
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": head_service_account_name(cluster),
                "namespace": cluster.metadata.namespace or "",
            }
        ],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": autoscaler_role_name(name)},
    }


def _metadata(cluster: RayCluster, name: str) -> JSON:
    cluster_name = _name(cluster)
    uid = cluster.metadata.uid
    if not uid:
        raise ValueError("the RayCluster has no metadata.uid")
    return {
        "name": name,
        "namespace": cluster.metadata.namespace or "",
        "labels": {
            keys.RAY_CLUSTER: cluster_name,
            keys.APP_NAME: keys.APPLICATION_NAME,
            keys.CREATED_BY: keys.COMPONENT_NAME,
        },
        "ownerReferences": [
            controller_reference(api_version=API_VERSION, kind="RayCluster", name=cluster_name, uid=uid)
        ],
    }


def _name(cluster: RayCluster) -> str:
    if not cluster.metadata.name:
        raise ValueError("the RayCluster has no metadata.name")
    return cluster.metadata.name
