"""The head pod: metadata, command, env vars, volumes, probes, autoscaler sidecar, auth, GCS FT, options."""

from __future__ import annotations

from typing import Any

import pytest

from kray._ray.start import RayPorts
from kray.controllers.common.options import PodBuildOptions
from kray.controllers.common.pod import build_head_pod, creator_kind, head_host
from tests.controllers.builders.support import (
    UID,
    cluster_from_dict,
    container,
    env_map,
    minimal_spec,
    sample_cluster,
)


def head(spec: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    cluster = cluster_from_dict(spec or minimal_spec(), **kwargs)
    return build_head_pod(cluster=cluster)


def ray(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]  # type: ignore[no-any-return]


def head_with(container_fields: dict[str, Any], **head_fields: Any) -> dict[str, Any]:
    template = {"spec": {"containers": [container("ray-head", **container_fields)]}}
    return head(minimal_spec(head={"template": template, **head_fields}))


def test_metadata() -> None:
    pod = head()
    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
    meta = pod["metadata"]
    assert meta["generateName"] == "c-head-"
    assert "name" not in meta
    assert meta["namespace"] == "default"
    assert meta["annotations"] == {"ray.io/ft-enabled": "false"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "name": "c",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["ray.io/group"] == "headgroup"


def test_owner_uid_is_required() -> None:
    cluster = cluster_from_dict(minimal_spec()).model_copy(deep=True)
    cluster.metadata.uid = None
    with pytest.raises(ValueError, match="uid"):
        build_head_pod(cluster=cluster)
    assert build_head_pod(cluster=cluster, owner_uid="u")["metadata"]["ownerReferences"][0]["uid"] == "u"


def test_template_labels_and_group_labels_are_merged() -> None:
    template = {"metadata": {"labels": {"a": "1", "b": "1"}}, "spec": {"containers": [container()]}}
    pod = head(minimal_spec(head={"template": template, "labels": {"b": "2", "ray.io/group": "x"}}))
    labels = pod["metadata"]["labels"]
    assert (labels["a"], labels["b"], labels["ray.io/group"]) == ("1", "2", "headgroup")
    assert "--labels=b=2,ray.io/group=x" in env_map(ray(pod))["KUBERAY_GEN_RAY_START_CMD"]


def test_input_is_not_mutated() -> None:
    cluster = sample_cluster("ray-cluster.autoscaler.yaml")
    before = cluster.model_dump()
    build_head_pod(cluster=cluster)
    assert cluster.model_dump() == before


def test_head_env_order_and_values() -> None:
    env = ray(head())["env"]
    assert [e["name"] for e in env] == [
        "RAY_CLUSTER_NAME",
        "RAY_CLUSTER_NAMESPACE",
        "RAY_CLOUD_INSTANCE_ID",
        "RAY_NODE_TYPE_NAME",
        "KUBERAY_GEN_RAY_START_CMD",
        "RAY_PORT",
        "RAY_ADDRESS",
        "RAY_USAGE_STATS_KUBERAY_IN_USE",
        "RAY_USAGE_STATS_EXTRA_TAGS",
        "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE",
    ]
    values = env_map(ray(head()))
    assert values["RAY_ADDRESS"] == "127.0.0.1:6379"
    assert values["RAY_USAGE_STATS_EXTRA_TAGS"] == "kuberay_version=v1.7.0;kuberay_crd=RayCluster"
    assert values["RAY_CLUSTER_NAME"] == {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}


def test_user_env_wins_where_kuberay_checks() -> None:
    user_env = [
        {"name": "RAY_PORT", "value": "1"},
        {"name": "RAY_ADDRESS", "value": "x:1"},
        {"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "0"},
        {"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "0"},
    ]
    values = env_map(ray(head_with({"env": user_env})))
    assert {k: values[k] for k in ("RAY_PORT", "RAY_ADDRESS")} == {"RAY_PORT": "1", "RAY_ADDRESS": "x:1"}
    assert values["RAY_USAGE_STATS_KUBERAY_IN_USE"] == "0"


def test_head_port_param_sets_ray_port_and_address() -> None:
    values = env_map(ray(head(minimal_spec(head={"rayStartParams": {"port": "6380"}}))))
    assert (values["RAY_PORT"], values["RAY_ADDRESS"]) == ("6380", "127.0.0.1:6380")


def test_shm_volume_sized_from_limit_else_request() -> None:
    pod = head_with({"resources": {"limits": {"memory": "0.5Gi"}, "requests": {"memory": "256Mi"}}})
    assert pod["spec"]["volumes"] == [{"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}]
    assert ray(pod)["volumeMounts"] == [{"name": "shared-mem", "mountPath": "/dev/shm"}]
    pod = head_with({"resources": {"requests": {"memory": "1000Mi"}}})
    assert pod["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1000Mi"}
    assert head()["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory"}


def test_shm_skipped_when_mounted_or_plasma_directory() -> None:
    mounted = head_with({"volumeMounts": [{"name": "mine", "mountPath": "/dev/shm"}]})
    assert "volumes" not in mounted["spec"]
    plasma = head(minimal_spec(head={"rayStartParams": {"plasma-directory": "/plasma"}}))
    assert "volumes" not in plasma["spec"]
    assert "volumeMounts" not in ray(plasma)


def test_metrics_port_added_unless_named() -> None:
    assert ray(head())["ports"] == [{"name": "metrics", "containerPort": 8080}]
    own = head_with({"ports": [{"name": "metrics", "containerPort": 9999}]})
    assert ray(own)["ports"] == [{"name": "metrics", "containerPort": 9999}]


def test_user_command_is_prepended() -> None:
    pod = head_with({"command": ["pip install x"]})
    assert ray(pod)["command"] == ["/bin/bash", "-c", "--"]
    assert ray(pod)["args"][0].startswith(" pip install x  && ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ")


@pytest.mark.parametrize("where", ["cluster", "template"])
def test_overwrite_annotation_leaves_command_alone(where: str) -> None:
    fields: dict[str, Any] = {"command": ["/bin/bash", "-c"], "args": ["echo hi; $KUBERAY_GEN_RAY_START_CMD"]}
    annotation = {"ray.io/overwrite-container-cmd": "True"}
    template: dict[str, Any] = {"spec": {"containers": [container(**fields)]}}
    if where == "template":
        template["metadata"] = {"annotations": annotation}
    pod = head(minimal_spec(head={"template": template}), annotations=annotation if where == "cluster" else None)
    assert ray(pod)["command"] == ["/bin/bash", "-c"]
    assert ray(pod)["args"] == ["echo hi; $KUBERAY_GEN_RAY_START_CMD"]
    assert env_map(ray(pod))["KUBERAY_GEN_RAY_START_CMD"].startswith("ray start --head ")
    if where == "cluster":
        assert pod["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"


def test_existing_ray_start_command_is_left_alone() -> None:
    pod = head_with({"command": ["ray start --head --block"]})
    assert ray(pod)["command"] == ["ray start --head --block"]
    assert "args" not in ray(pod)


@pytest.mark.parametrize(
    ("version", "http"),
    [
        ("2.53.0", True),
        ("2.54.1", True),
        ("2.53", True),
        ("v2.60.0", True),
        ("3.0.0", True),
        ("2.52.0", False),
        (None, False),
        ("nightly", False),
        ("2.53.0rc1", True),
    ],
)
def test_probe_kind_depends_on_ray_version(version: str | None, http: bool) -> None:
    spec = minimal_spec(rayVersion=version) if version else minimal_spec()
    probe = ray(head(spec))["livenessProbe"]
    if http:
        assert probe["httpGet"] == {"path": "/api/healthz", "port": 52365}
    else:
        assert probe["exec"]["command"][0:2] == ["bash", "-c"]


def test_head_probe_thresholds_and_ports() -> None:
    spec = minimal_spec(head={"rayStartParams": {"dashboard-agent-listen-port": "1234", "dashboard-port": "9000"}})
    live, ready = ray(head(spec))["livenessProbe"], ray(head(spec))["readinessProbe"]
    command = (
        "wget --tries 1 -T 2 -q -O- http://localhost:1234/api/local_raylet_healthz | grep success && "
        "wget --tries 1 -T 10 -q -O- http://localhost:9000/api/gcs_healthz | grep success"
    )
    assert live == {
        "exec": {"command": ["bash", "-c", command]},
        "initialDelaySeconds": 30,
        "timeoutSeconds": 5,
        "periodSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": 120,
    }
    assert ready["initialDelaySeconds"] == 10
    assert ready["failureThreshold"] == 10
    assert ready["timeoutSeconds"] == 5


def test_user_probes_are_kept_and_injection_can_be_disabled() -> None:
    pod = head_with({"livenessProbe": {"tcpSocket": {"port": 1}}})
    assert ray(pod)["livenessProbe"] == {"tcpSocket": {"port": 1}}
    assert "readinessProbe" in ray(pod)
    cluster = cluster_from_dict(minimal_spec())
    plain = build_head_pod(cluster=cluster, options=PodBuildOptions(enable_probes_injection=False))
    assert "livenessProbe" not in ray(plain)
    assert "readinessProbe" not in ray(plain)


def autoscaling_spec(**options: Any) -> dict[str, Any]:
    return (
        minimal_spec(enableInTreeAutoscaling=True, autoscalerOptions=options)
        if options
        else minimal_spec(enableInTreeAutoscaling=True)
    )


def test_autoscaler_sidecar() -> None:
    pod = head(autoscaling_spec())
    scaler = pod["spec"]["containers"][1]
    assert scaler["name"] == "autoscaler"
    assert scaler["image"] == "rayproject/ray:2.52.0"
    assert scaler["command"] == ["/bin/bash", "-c", "--"]
    assert scaler["args"] == [
        "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
    ]
    assert list(env_map(scaler)) == [
        "RAY_CLUSTER_NAME",
        "RAY_CLUSTER_NAMESPACE",
        "RAY_HEAD_POD_NAME",
        "KUBERAY_CRD_VER",
        "KUBERAY_GEN_AUTOSCALER_START_CMD",
    ]
    assert scaler["resources"]["limits"] == scaler["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert scaler["imagePullPolicy"] == "IfNotPresent"
    assert scaler["volumeMounts"] == [{"name": "ray-logs", "mountPath": "/tmp/ray"}]
    assert {"name": "ray-logs", "mountPath": "/tmp/ray"} in ray(pod)["volumeMounts"]
    assert {"name": "ray-logs", "emptyDir": {}} in pod["spec"]["volumes"]
    assert pod["spec"]["serviceAccountName"] == "c"
    assert "--no-monitor" in ray(pod)["args"][0]


def test_autoscaler_keeps_users_service_account() -> None:
    template = {"spec": {"serviceAccountName": "mine", "containers": [container()]}}
    pod = head(minimal_spec(head={"template": template}, enableInTreeAutoscaling=True))
    assert pod["spec"]["serviceAccountName"] == "mine"


def test_autoscaler_options() -> None:
    options = {
        "image": "img",
        "imagePullPolicy": "Always",
        "resources": {"limits": {"cpu": "1"}},
        "env": [{"name": "X", "value": "1"}],
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        "securityContext": {"runAsUser": 1000},
        "command": ["sh"],
        "args": ["-c", "run"],
    }
    scaler = head(autoscaling_spec(**options))["spec"]["containers"][1]
    assert (scaler["image"], scaler["imagePullPolicy"], scaler["resources"]) == (
        "img",
        "Always",
        {"limits": {"cpu": "1"}},
    )
    assert scaler["env"][-1] == {"name": "X", "value": "1"}
    assert scaler["envFrom"] == [{"configMapRef": {"name": "cm"}}]
    assert scaler["volumeMounts"][0] == {"name": "v", "mountPath": "/v"}
    assert scaler["securityContext"] == {"runAsUser": 1000}
    assert (scaler["command"], scaler["args"]) == (["sh"], ["-c", "run"])


@pytest.mark.parametrize(
    ("version", "value", "never"), [("v2", "true", True), ("v1", "false", False), (None, None, False)]
)
def test_autoscaler_version(version: str | None, value: str | None, never: bool) -> None:
    pod = head(autoscaling_spec(version=version) if version else autoscaling_spec())
    assert env_map(ray(pod)).get("RAY_enable_autoscaler_v2") == value
    assert (pod["spec"].get("restartPolicy") == "Never") is never


def test_token_auth() -> None:
    pod = head(minimal_spec(authOptions={"mode": "token"}, enableInTreeAutoscaling=True))
    token = {"secretKeyRef": {"name": "c", "key": "auth_token"}}
    for each in pod["spec"]["containers"]:
        values = env_map(each)
        assert values["RAY_AUTH_MODE"] == "token"
        assert values["RAY_AUTH_TOKEN"] == token
    custom = head(minimal_spec(authOptions={"mode": "token", "secretName": "s"}))
    assert env_map(ray(custom))["RAY_AUTH_TOKEN"]["secretKeyRef"]["name"] == "s"
    assert "RAY_AUTH_MODE" not in env_map(ray(head(minimal_spec(authOptions={"mode": "disabled"}))))


def test_kubernetes_token_auth() -> None:
    pod = head(minimal_spec(authOptions={"mode": "token", "enableK8sTokenAuth": True}))
    values = env_map(ray(pod))
    assert values["RAY_ENABLE_K8S_TOKEN_AUTH"] == "true"
    assert "RAY_AUTH_TOKEN" not in values
    assert {"name": "ray-token", "mountPath": "/var/run/secrets/ray.io/serviceaccount", "readOnly": True} in ray(pod)[
        "volumeMounts"
    ]
    assert {"name": "ray-token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}} in pod["spec"][
        "volumes"
    ]


def test_gcs_ft_redis() -> None:
    options = {
        "redisAddress": "redis:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "r", "key": "p"}}},
        "redisUsername": {"value": "u"},
    }
    pod = head(minimal_spec(gcsFaultToleranceOptions=options))
    assert pod["metadata"]["annotations"]["ray.io/ft-enabled"] == "true"
    assert pod["metadata"]["annotations"]["ray.io/external-storage-namespace"] == UID
    values = env_map(ray(pod))
    assert values["RAY_external_storage_namespace"] == UID
    assert values["RAY_REDIS_ADDRESS"] == "redis:6379"
    assert values["REDIS_USERNAME"] == "u"
    assert values["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "r", "key": "p"}}
    args = ray(pod)["args"][0]
    assert "--redis-password=$REDIS_PASSWORD" in args
    assert "--redis-username=$REDIS_USERNAME" in args


def test_gcs_ft_storage_namespace_precedence() -> None:
    annotated = head(
        minimal_spec(gcsFaultToleranceOptions={"redisAddress": "r:1"}),
        annotations={"ray.io/external-storage-namespace": "from-annotation"},
    )
    assert env_map(ray(annotated))["RAY_external_storage_namespace"] == "from-annotation"
    optioned = head(minimal_spec(gcsFaultToleranceOptions={"redisAddress": "r:1", "externalStorageNamespace": "opt"}))
    assert env_map(ray(optioned))["RAY_external_storage_namespace"] == "opt"


def test_gcs_ft_legacy_annotation() -> None:
    spec = minimal_spec(head={"rayStartParams": {"redis-password": "pw"}})
    pod = head(spec, annotations={"ray.io/ft-enabled": "true"})
    values = env_map(ray(pod))
    assert values["REDIS_PASSWORD"] == "pw"
    assert "RAY_REDIS_ADDRESS" not in values


def test_gcs_ft_rocksdb() -> None:
    options = {"backend": "rocksdb", "storage": {"subPath": "sub"}}
    pod = head(minimal_spec(gcsFaultToleranceOptions=options))
    values = env_map(ray(pod))
    assert (values["RAY_gcs_storage"], values["RAY_gcs_storage_path"]) == ("rocksdb", "/data/gcs")
    assert {"name": "gcs-storage", "mountPath": "/data/gcs", "subPath": "sub"} in ray(pod)["volumeMounts"]
    assert {"name": "gcs-storage", "persistentVolumeClaim": {"claimName": "c-gcs-pvc"}} in pod["spec"]["volumes"]


def test_tls() -> None:
    pod = head(minimal_spec(tlsOptions={"enabled": True}))
    values = env_map(ray(pod))
    assert values["RAY_USE_TLS"] == "1"
    assert values["RAY_TLS_CA_CERT"] == "/etc/ray/tls/ca.crt"
    assert {"name": "ray-tls", "secret": {"secretName": "ray-head-secret-c"}} in pod["spec"]["volumes"]
    assert pod["spec"]["initContainers"][0]["name"] == "wait-for-tls-ip-san"


def test_rayservice_head() -> None:
    labels = {"ray.io/originated-from-crd": "RayService", "ray.io/originated-from-cr-name": "svc"}
    cluster = cluster_from_dict(minimal_spec(), labels=labels)
    assert creator_kind(cluster) == "RayService"
    pod = build_head_pod(cluster=cluster)
    assert pod["metadata"]["labels"]["ray.io/serve"] == "false"
    values = env_map(ray(pod))
    assert values["RAY_USAGE_STATS_EXTRA_TAGS"].endswith("kuberay_crd=RayService")
    assert values["RAY_timeout_ms_task_wait_for_death_info"] == "0"
    assert values["RAY_gcs_server_request_timeout_seconds"] == values["RAY_SERVE_KV_TIMEOUT_S"] == "5"


def test_operator_options() -> None:
    options = PodBuildOptions(
        deterministic_head_pod_name=True,
        enable_login_shell=True,
        kuberay_version="v9",
        default_container_envs=({"name": "A", "value": "1"}, {"name": "RAY_PORT", "value": "9"}),
        default_pod_labels={"team": "t", "ray.io/cluster": "ignored"},
        default_pod_annotations={"note": "n"},
        head_sidecar_containers=({"name": "fluentbit", "image": "fb"},),
    )
    pod = build_head_pod(cluster=cluster_from_dict(minimal_spec()), options=options, recreate_hash="h")
    meta = pod["metadata"]
    assert meta["name"] == "c-head"
    assert "generateName" not in meta
    assert ray(pod)["command"] == ["/bin/bash", "-lc", "--"]
    values = env_map(ray(pod))
    assert (values["A"], values["RAY_PORT"]) == ("1", "9")
    assert values["RAY_USAGE_STATS_EXTRA_TAGS"].startswith("kuberay_version=v9;")
    assert meta["labels"]["team"] == "t"
    assert meta["labels"]["ray.io/cluster"] == "c"
    assert meta["annotations"]["note"] == "n"
    assert meta["annotations"]["ray.io/upgrade-strategy-recreate-hash"] == "h"
    assert meta["annotations"]["ray.io/kuberay-version"] == "v9"
    assert pod["spec"]["containers"][-1] == {"name": "fluentbit", "image": "fb"}


def test_local_mode_moves_ports_and_head_address() -> None:
    options = PodBuildOptions(head_host="127.0.0.1", ports=RayPorts(gcs=16379, metrics=18080, dashboard_agent=15365))
    cluster = cluster_from_dict(minimal_spec())
    assert head_host(cluster, options=options) == "127.0.0.1"
    pod = build_head_pod(cluster=cluster, options=options)
    values = env_map(ray(pod))
    assert values["RAY_PORT"] == "16379"
    assert "--metrics-export-port=18080" in values["KUBERAY_GEN_RAY_START_CMD"]
    assert {"name": "metrics", "containerPort": 18080} in ray(pod)["ports"]
    assert "15365" in ray(pod)["livenessProbe"]["exec"]["command"][2]


def test_head_host_uses_custom_service_name_and_domain() -> None:
    spec = minimal_spec(head={"headService": {"metadata": {"name": "custom"}}})
    cluster = cluster_from_dict(spec)
    assert head_host(cluster) == "custom.default.svc.cluster.local"
    assert head_host(cluster, options=PodBuildOptions(cluster_domain="x.y")) == "custom.default.svc.x.y"
