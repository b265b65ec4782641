"""Names of the objects KubeRay creates, with its exact shortening rules.

Users and tools find KubeRay's objects by name (``<cluster>-head-svc`` is the address every client
uses), so each rule is reproduced, quirks included: ``check_name`` keeps the *last* 50 characters,
pod ``generateName`` prefixes keep the *first* 50. Random suffixes are arguments, never generated
here, so every function is deterministic.
"""

from __future__ import annotations

import unicodedata

from kray._ray.start import NodeType

MAX_NAME = 50
"""63 minus the longest pod suffix KubeRay appends (``-worker-`` and 5 random characters)."""
MAX_LABEL = 63
RANDOM_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters of Kubernetes' ``rand.String`` (what KubeRay's random suffixes are drawn from)."""
DEFAULT_CLUSTER_DOMAIN = "cluster.local"


def _replace_leading(text: str, *, digits: bool) -> str:
    if not text:
        return text
    category = unicodedata.category(text[0])
    if (digits and category == "Nd") or category.startswith("P"):
        return "r" + text[1:]
    return text


def check_name(name: str) -> str:
    """``CheckName``: keep the last 50 characters; a leading digit or punctuation becomes ``r``."""
    if len(name) > MAX_NAME:
        name = name[len(name) - MAX_NAME :]
    return _replace_leading(_replace_leading(name, digits=True), digits=False)


def check_label(value: str) -> str:
    """``CheckLabel``: keep the last 63 characters; a leading punctuation character becomes ``r``."""
    if len(value) > MAX_LABEL:
        value = value[len(value) - MAX_LABEL :]
    return _replace_leading(value, digits=False)


def identifier(cluster: str, node_type: NodeType) -> str:
    """``<cluster>-head`` / ``<cluster>-worker`` (the ``ray.io/identifier`` label, before ``check_label``)."""
    return f"{cluster}-{node_type}"


def pod_generate_name(prefix: str, node_type: NodeType) -> str:
    """``PodGenerateName``: ``<prefix[:50]>-<type>-``, lower-cased (the API server appends 5 characters)."""
    return f"{prefix[:MAX_NAME]}-{node_type}-".lower()


def head_pod_generate_name(cluster: str) -> str:
    return pod_generate_name(cluster, NodeType.HEAD)


def deterministic_head_pod_name(cluster: str) -> str:
    """The head pod's fixed name when the operator sets ``ENABLE_DETERMINISTIC_HEAD_POD_NAME=true``."""
    return head_pod_generate_name(cluster).removesuffix("-")


def worker_pod_generate_name(cluster: str, group: str) -> str:
    return pod_generate_name(f"{cluster}-{group}", NodeType.WORKER)


def head_service_name(cluster: str, *, override: str | None = None) -> str:
    """``<cluster>-head-svc``, or ``headGroupSpec.headService.metadata.name``.

    Never shortened: KubeRay stopped passing Service names through ``CheckName`` in v1.4 (the 53-character
    cluster name limit keeps ``<cluster>-serve-svc`` within 63)."""
    return override or f"{cluster}-head-svc"


def owner_head_service_name(owner: str) -> str:
    """The head Service a RayJob or RayService keeps pointing at its current cluster: ``<owner>-head-svc``."""
    return f"{owner}-head-svc"


def headless_service_name(cluster: str) -> str:
    """The headless Service of multi-host worker groups."""
    return f"{cluster}-headless"


def serve_service_name(owner: str) -> str:
    """``<owner>-serve-svc`` (a RayCluster with ``ray.io/enable-serve-service``, or a RayService); never shortened."""
    return f"{owner}-serve-svc"


def serve_service_label(owner: str) -> str:
    """The ``ray.io/serve`` label value of serve Services: ``<owner>-serve``."""
    return f"{owner}-serve"


def ingress_name(cluster: str) -> str:
    """The head Ingress: ``<cluster>-head-ingress`` (passed through ``check_name`` when created)."""
    return check_name(f"{cluster}-head-ingress")


def autoscaler_role_name(cluster: str) -> str:
    """The autoscaler's Role and RoleBinding: ``<cluster>`` through ``check_name``."""
    return check_name(cluster)


def redis_cleanup_job_name(cluster: str) -> str:
    """The GCS fault-tolerance Redis cleanup Job: ``<cluster>-redis-cleanup``, kept within 63 by ``check_label``."""
    return check_label(f"{cluster}-redis-cleanup")


def replica_group_name(group: str, suffix: str) -> str:
    """``ray.io/worker-group-replica-name`` of a multi-host replica: ``<group>-<5 random>``."""
    return f"{group}-{suffix}"


def fqdn(service: str, namespace: str, *, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """``<service>.<namespace>.svc.<cluster-domain>``."""
    return f"{service}.{namespace}.svc.{cluster_domain}"


def service_from_fqdn(address: str) -> str:
    """The first DNS label (``RAY_IP``, kept by KubeRay for backward compatibility)."""
    return address.split(".", maxsplit=1)[0]


def autoscaler_service_account_name(cluster: str, *, head_service_account: str | None = None) -> str:
    """The head's ``serviceAccountName`` when autoscaling: the template's own, else ``<cluster>``."""
    return check_name(head_service_account or cluster)


def auth_secret_name(cluster: str, *, override: str | None = None) -> str:
    """The Secret holding ``auth_token``: ``authOptions.secretName`` or ``<cluster>``."""
    return override or check_name(cluster)


def gcs_pvc_name(cluster: str, *, claim_name: str | None = None) -> str:
    return claim_name or f"{cluster}-gcs-pvc"


def tls_secret_name(cluster: str, node_type: NodeType) -> str:
    """cert-manager's Secret for a node type: ``ray-head-secret-<cluster>`` / ``ray-worker-secret-<cluster>``."""
    return f"ray-{node_type}-secret-{cluster}"


def generated_name(owner: str, suffix: str) -> str:
    """``<owner>-<suffix>``: RayJob cluster names and job ids, RayService cluster names (suffix: 5 random)."""
    return f"{owner}-{suffix}"


def rayjob_cluster_name(rayjob: str, suffix: str) -> str:
    return generated_name(rayjob, suffix)


def rayjob_job_id(rayjob: str, suffix: str) -> str:
    return generated_name(rayjob, suffix)


def rayjob_submitter_job_name(rayjob: str) -> str:
    """The submitter ``batch/v1`` Job has the RayJob's own name."""
    return rayjob
