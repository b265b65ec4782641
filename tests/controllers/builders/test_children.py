"""The RayCluster's other children: autoscaler RBAC (``common/rbac.go``), head Ingress (``common/ingress.go``, v1.7),
the Redis cleanup Job (``buildRedisCleanupJob``) and the multi-host worker labels (``DefaultWorkerPodTemplate``)."""

from __future__ import annotations

from kray.controllers.common.ingress import build_head_ingress
from kray.controllers.common.pod import build_head_pod, build_worker_pod
from kray.controllers.common.rbac import (
    build_autoscaler_role,
    build_autoscaler_role_binding,
    build_autoscaler_service_account,
)
from kray.controllers.common.redis_cleanup import build_redis_cleanup_job
from kray.controllers.common.service import build_headless_worker_service
from tests.controllers.builders.support import (
    NAMESPACE,
    UID,
    cluster_from_dict,
    container,
    minimal_spec,
    sample_cluster,
)

OWNER = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": "c", "uid": UID, "controller": True}
LABELS = {
    "ray.io/cluster": "c",
    "app.kubernetes.io/name": "kuberay",
    "app.kubernetes.io/created-by": "kuberay-operator",
}


def owned(obj: dict) -> dict:  # type: ignore[type-arg]
    reference = obj["metadata"]["ownerReferences"][0]
    return {k: reference[k] for k in OWNER}


def test_autoscaler_service_account_role_and_binding_are_kuberays() -> None:
    cluster = cluster_from_dict(minimal_spec(enableInTreeAutoscaling=True))
    account = build_autoscaler_service_account(cluster=cluster)
    assert account["metadata"] | {"ownerReferences": None} == {
        "name": "c",
        "namespace": NAMESPACE,
        "labels": LABELS,
        "ownerReferences": None,
    }
    assert owned(account) == OWNER
    role = build_autoscaler_role(cluster=cluster)
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]},
        {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "patch"]},
    ]
    binding = build_autoscaler_role_binding(cluster=cluster)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "c", "namespace": NAMESPACE}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "c"}
    assert owned(role) == owned(binding) == OWNER


def test_a_user_named_service_account_is_bound_and_named_on_the_head() -> None:
    head = {"rayStartParams": {}, "template": {"spec": {"serviceAccountName": "mine", "containers": [container()]}}}
    cluster = cluster_from_dict(minimal_spec(head=head, enableInTreeAutoscaling=True))
    assert build_autoscaler_role_binding(cluster=cluster)["subjects"][0]["name"] == "mine"
    assert build_head_pod(cluster=cluster)["spec"]["serviceAccountName"] == "mine"


def test_ingress_defaults_to_the_dashboard_at_root_and_takes_the_class_from_the_annotation() -> None:
    annotations = {"kubernetes.io/ingress.class": "nginx", "nginx.ingress.kubernetes.io/rewrite-target": "/$1"}
    cluster = cluster_from_dict(minimal_spec(), annotations=annotations)
    ingress = build_head_ingress(cluster=cluster)
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["metadata"]["name"] == "c-head-ingress"
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/rewrite-target": "/$1"}
    assert ingress["metadata"]["labels"]["ray.io/identifier"] == "c-head"
    assert ingress["spec"] == {
        "ingressClassName": "nginx",
        "rules": [
            {
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "c-head-svc", "port": {"number": 8265}}},
                        }
                    ]
                }
            }
        ],
    }
    assert owned(ingress) == OWNER


def test_ingress_options_set_host_path_type_and_tls() -> None:
    head = {
        "rayStartParams": {},
        "enableIngress": True,
        "ingressOptions": {
            "host": "ray.example.com",
            "path": "/c",
            "pathType": "Exact",
            "tls": [{"hosts": ["ray.example.com"], "secretName": "tls"}],
        },
        "template": {"spec": {"containers": [container(ports=[{"name": "dashboard", "containerPort": 9000}])]}},
    }
    spec = build_head_ingress(cluster=cluster_from_dict(minimal_spec(head=head)))["spec"]
    rule = spec["rules"][0]
    assert rule["host"] == "ray.example.com"
    assert rule["http"]["paths"][0]["path"] == "/c"
    assert rule["http"]["paths"][0]["pathType"] == "Exact"
    assert rule["http"]["paths"][0]["backend"]["service"]["port"] == {"number": 9000}
    assert spec["tls"] == [{"hosts": ["ray.example.com"], "secretName": "tls"}]
    assert "ingressClassName" not in spec


def test_redis_cleanup_job_runs_rays_cleanup_in_the_head_ray_container() -> None:
    cluster = sample_cluster("ray-cluster.external-redis.yaml")
    head = build_head_pod(cluster=cluster)
    job = build_redis_cleanup_job(head_pod=head, cluster=cluster.metadata.name or "")
    name = cluster.metadata.name
    assert job["metadata"]["name"] == f"{name}-redis-cleanup"
    assert job["metadata"]["labels"]["ray.io/node-type"] == "redis-cleanup"
    assert job["metadata"]["ownerReferences"][0]["uid"] == UID
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 300
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["ray.io/node-type"] == "redis-cleanup"
    assert pod["spec"]["restartPolicy"] == "Never"
    [ray] = pod["spec"]["containers"]
    assert ray["command"] == ["/bin/bash", "-c", "--"]
    assert "from ray._private.gcs_utils import cleanup_redis_storage" in ray["args"][0]
    assert "storage_namespace=os.getenv('RAY_external_storage_namespace')" in ray["args"][0]
    assert "livenessProbe" not in ray
    assert "readinessProbe" not in ray
    assert ray["resources"] == {
        "limits": {"cpu": "200m", "memory": "256Mi"},
        "requests": {"cpu": "200m", "memory": "256Mi"},
    }
    env = {e["name"]: e for e in ray["env"]}
    assert env["RAY_redis_db_connect_retries"]["value"] == "120"
    assert env["RAY_redis_db_connect_wait_milliseconds"]["value"] == "500"
    assert "RAY_REDIS_ADDRESS" in env
    assert "ray start --head" in head["spec"]["containers"][0]["args"][0], "the head pod itself is left as it was"


def test_multi_host_workers_carry_replica_name_and_host_index() -> None:
    worker = {
        "groupName": "tpu",
        "replicas": 2,
        "minReplicas": 0,
        "maxReplicas": 4,
        "numOfHosts": 2,
        "rayStartParams": {},
        "template": {"spec": {"containers": [container()]}},
    }
    cluster = cluster_from_dict(minimal_spec(workers=[worker]))
    group = cluster.spec.worker_group_specs[0]  # type: ignore[index]
    pod = build_worker_pod(cluster=cluster, group=group, replica_index=1, replica_name="tpu-b9q4r", host_index=1)
    labels = pod["metadata"]["labels"]
    assert labels["ray.io/worker-group-replica-index"] == "1"
    assert labels["ray.io/worker-group-replica-name"] == "tpu-b9q4r"
    assert labels["ray.io/replica-host-index"] == "1"
    headless = build_headless_worker_service(cluster=cluster)
    assert headless["metadata"]["name"] == "c-headless"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True


def test_recreate_hash_and_version_are_recorded_on_the_head() -> None:
    pod = build_head_pod(cluster=cluster_from_dict(minimal_spec()), recreate_hash="ABC")
    assert pod["metadata"]["annotations"]["ray.io/upgrade-strategy-recreate-hash"] == "ABC"
    assert pod["metadata"]["annotations"]["ray.io/kuberay-version"] == "v1.7.0"
