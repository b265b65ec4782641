"""Label and annotation keys KubeRay reads and writes, and the labels every Ray pod carries.

Other tools select KubeRay's objects by these exact keys and values (the Ray autoscaler lists pods
by ``ray.io/cluster`` and maps ``ray.io/group`` to node types; dashboards filter on
``app.kubernetes.io/created-by``), so they are constants here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

from kray._ray.start import NodeType
from kray.controllers.common.names import check_label, identifier

# Labels.
RAY_NODE = "ray.io/is-ray-node"
RAY_CLUSTER = "ray.io/cluster"
RAY_NODE_TYPE = "ray.io/node-type"
RAY_GROUP = "ray.io/group"
RAY_IDENTIFIER = "ray.io/identifier"
APP_NAME = "app.kubernetes.io/name"
CREATED_BY = "app.kubernetes.io/created-by"
ORIGINATED_FROM_CR_NAME = "ray.io/originated-from-cr-name"
ORIGINATED_FROM_CRD = "ray.io/originated-from-crd"
SERVE = "ray.io/serve"
HEADLESS_WORKER_SVC = "ray.io/headless-worker-svc"
WORKER_REPLICA_INDEX = "ray.io/worker-group-replica-index"
WORKER_REPLICA_NAME = "ray.io/worker-group-replica-name"
REPLICA_HOST_INDEX = "ray.io/replica-host-index"
JOB_SUBMISSION_MODE = "ray.io/job-submission-mode"

# Annotations.
OVERWRITE_CONTAINER_CMD = "ray.io/overwrite-container-cmd"
FT_ENABLED = "ray.io/ft-enabled"
EXTERNAL_STORAGE_NAMESPACE = "ray.io/external-storage-namespace"
ENABLE_SERVE_SERVICE = "ray.io/enable-serve-service"
KUBERAY_VERSION = "ray.io/kuberay-version"
UPGRADE_STRATEGY_RECREATE_HASH = "ray.io/upgrade-strategy-recreate-hash"
HASH_WITHOUT_REPLICAS = "ray.io/hash-without-replicas-and-workers-to-delete"
NUM_WORKER_GROUPS = "ray.io/num-worker-groups"
DISABLE_PROVISIONED_HEAD_RESTART = "ray.io/disable-provisioned-head-restart"
GCS_FT_DELETION_TIMEOUT = "ray.io/gcs-ft-deletion-timeout"
INITIALIZING_TIMEOUT = "ray.io/initializing-timeout"
INGRESS_CLASS = "kubernetes.io/ingress.class"
"""Copied from the RayCluster to the Ingress's ``spec.ingressClassName`` (never to its annotations)."""

# Finalizers.
GCS_FT_REDIS_CLEANUP_FINALIZER = "ray.io/gcs-ft-redis-cleanup-finalizer"

# Values.
APPLICATION_NAME = "kuberay"
COMPONENT_NAME = "kuberay-operator"
REDIS_CLEANUP_NODE_TYPE = "redis-cleanup"
"""The ``ray.io/node-type`` of the GCS fault-tolerance Redis cleanup Job and its pod."""
HEAD_GROUP = "headgroup"
"""The ``ray.io/group`` value of head pods."""

NON_OVERRIDABLE = frozenset({RAY_NODE_TYPE, RAY_GROUP, RAY_CLUSTER})
"""Pod labels a user's template cannot change (KubeRay silently keeps its own values)."""


def pod_labels(
    *, node_type: NodeType, cluster: str, group: str, user: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``labelPod``: the 7 standard labels, then the user's labels except the non-overridable keys."""
    labels = {
        RAY_NODE: "yes",
        RAY_CLUSTER: cluster,
        RAY_NODE_TYPE: str(node_type),
        RAY_GROUP: group,
        RAY_IDENTIFIER: check_label(identifier(cluster, node_type)),
        APP_NAME: APPLICATION_NAME,
        CREATED_BY: COMPONENT_NAME,
    }
    labels.update({k: v for k, v in (user or {}).items() if k not in NON_OVERRIDABLE})
    return labels


def originated_from(*, kind: str, name: str) -> dict[str, str]:
    """Labels tying a child object to the RayJob or RayService it was made for."""
    return {ORIGINATED_FROM_CR_NAME: name, ORIGINATED_FROM_CRD: kind}
