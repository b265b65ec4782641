"""The Job that empties a deleted cluster's GCS storage namespace in external Redis (KubeRay ``buildRedisCleanupJob``).

With GCS fault tolerance on Redis, a RayCluster's metadata outlives its pods in Redis. KubeRay guards
deletion with the finalizer ``ray.io/gcs-ft-redis-cleanup-finalizer`` and, once the head pod is gone, runs
this Job: the head pod's Ray container (same image, same Redis address and credentials env) running Ray's
own ``cleanup_redis_storage``. Best effort: no retries, five minutes at most, no GPU.
"""

from __future__ import annotations

from kray._ray.start import bash_command
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import JSON, deep_copy, env_exists, env_list, env_value, resources
from kray.controllers.common.names import redis_cleanup_job_name

__all__ = ["REDIS_CLEANUP_ACTIVE_DEADLINE", "build_redis_cleanup_job"]

REDIS_CLEANUP_ACTIVE_DEADLINE = 300
_HELP = (
    'echo "To get more information about manually deleting the storage namespace in Redis and removing the '
    "RayCluster's finalizer, please check "
    "https://docs.ray.io/en/master/cluster/kubernetes/user-guides/kuberay-gcs-ft.html "
    'for more details." && '
)
_SCRIPT_HEAD = (
    'python -c "from ray._private.gcs_utils import cleanup_redis_storage; '
    "from urllib.parse import urlparse; "
    "import os; "
    "import sys; "
    "redis_address = os.getenv('RAY_REDIS_ADDRESS', '').split(',')[0]; "
    "redis_address = redis_address if '://' in redis_address else 'redis://' + redis_address; "
    "parsed = urlparse(redis_address); "
)
_CLEANUP = (
    "sys.exit(1) if not cleanup_redis_storage(host=parsed.hostname, port=parsed.port, {username}"
    "password=os.getenv('REDIS_PASSWORD', parsed.password or ''), use_ssl=parsed.scheme=='rediss', "
    "storage_namespace=os.getenv('RAY_external_storage_namespace')) else None\""
)
_USERNAME = "username=os.getenv('REDIS_USERNAME', parsed.username), "


def build_redis_cleanup_job(*, head_pod: JSON, cluster: str, login_shell: bool = False) -> JSON:
    """The ``<cluster>-redis-cleanup`` Job, from the head pod KubeRay would create (``head_pod`` is not changed)."""
    pod = deep_copy(head_pod)
    metadata = pod["metadata"]
    metadata["labels"][keys.RAY_NODE_TYPE] = keys.REDIS_CLEANUP_NODE_TYPE
    spec = pod["spec"]
    ray = spec["containers"][0]
    spec["containers"] = [ray]
    ray["command"] = bash_command(login_shell=login_shell)
    username = _USERNAME if env_exists(ray, "REDIS_USERNAME") else ""
    ray["args"] = [_HELP + _SCRIPT_HEAD + _CLEANUP.format(username=username)]
    ray.pop("livenessProbe", None)
    ray.pop("readinessProbe", None)
    env_list(ray).extend(
        [env_value("RAY_redis_db_connect_retries", "120"), env_value("RAY_redis_db_connect_wait_milliseconds", "500")]
    )
    fixed = {"cpu": "200m", "memory": "256Mi"}
    ray["resources"] = resources(limits=fixed, requests=fixed)
    spec["restartPolicy"] = "Never"
    owner = metadata.get("ownerReferences") or []
    template_metadata = {k: v for k, v in metadata.items() if k not in ("ownerReferences", "namespace")}
    template_metadata.pop("generateName", None)
    template_metadata.pop("name", None)
    job_metadata: JSON = {
        "name": redis_cleanup_job_name(cluster),
        "namespace": metadata.get("namespace", ""),
        "labels": dict(metadata["labels"]),
        "ownerReferences": owner,
    }
    if metadata.get("annotations"):
        job_metadata["annotations"] = dict(metadata["annotations"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": REDIS_CLEANUP_ACTIVE_DEADLINE,
            "template": {"metadata": template_metadata, "spec": spec},
        },
    }
