"""Worker pods: names and labels, the ``wait-gcs-ready`` init container, worker env, probes, options."""

from __future__ import annotations

from typing import Any

import pytest

from kray.api.v1 import RayCluster
from kray.controllers.common.options import PodBuildOptions
from kray.controllers.common.pod import build_worker_pod
from tests.controllers.builders.support import cluster_from_dict, container, env_map, minimal_spec, worker_group

FQDN = "c-head-svc.default.svc.cluster.local"


def cluster_with(group: dict[str, Any] | None = None, **spec: Any) -> RayCluster:
    return cluster_from_dict(minimal_spec(workers=[group or worker_group()], **spec))


def worker(
    group: dict[str, Any] | None = None, *, options: PodBuildOptions | None = None, index: int = 0, **spec: Any
) -> dict[str, Any]:
    cluster = cluster_with(group, **spec)
    assert cluster.spec.worker_group_specs
    kwargs: dict[str, Any] = {"options": options} if options else {}
    return build_worker_pod(cluster=cluster, group=cluster.spec.worker_group_specs[0], replica_index=index, **kwargs)


def ray(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_metadata() -> None:
    template = {"metadata": {"name": "fixed", "labels": {"x": "1"}}, "spec": {"containers": [container()]}}
    pod = worker(worker_group("gpu", template=template), index=3)
    meta = pod["metadata"]
    assert meta["generateName"] == "c-gpu-worker-"
    assert "name" not in meta
    assert "annotations" not in meta
    assert meta["labels"] == {
        "x": "1",
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": "c",
        "ray.io/node-type": "worker",
        "ray.io/group": "gpu",
        "ray.io/identifier": "c-worker",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
        "ray.io/worker-group-replica-index": "3",
    }
    assert meta["ownerReferences"][0]["kind"] == "RayCluster"


def test_multi_host_labels() -> None:
    cluster = cluster_with(worker_group(numOfHosts=4))
    group = (cluster.spec.worker_group_specs or [])[0]
    with pytest.raises(ValueError, match="replica_name"):
        build_worker_pod(cluster=cluster, group=group, replica_index=1)
    pod = build_worker_pod(cluster=cluster, group=group, replica_index=1, replica_name="wg-x7k2p", host_index=2)
    labels = pod["metadata"]["labels"]
    assert labels["ray.io/worker-group-replica-name"] == "wg-x7k2p"
    assert labels["ray.io/replica-host-index"] == "2"
    plain = build_worker_pod(
        cluster=cluster, group=group, replica_index=1, options=PodBuildOptions(multi_host_indexing=False)
    )
    assert not any(key.startswith("ray.io/worker-group-replica") for key in plain["metadata"]["labels"])


def test_command_and_env() -> None:
    pod = worker()
    args = ray(pod)["args"][0]
    assert args.startswith(f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; ray start  --address={FQDN}:6379 ")
    env = ray(pod)["env"]
    assert [e["name"] for e in env] == [
        "FQ_RAY_IP",
        "RAY_IP",
        "RAY_CLUSTER_NAME",
        "RAY_CLUSTER_NAMESPACE",
        "RAY_CLOUD_INSTANCE_ID",
        "RAY_NODE_TYPE_NAME",
        "KUBERAY_GEN_RAY_START_CMD",
        "RAY_PORT",
        "RAY_ADDRESS",
        "RAY_USAGE_STATS_KUBERAY_IN_USE",
        "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE",
    ]
    values = env_map(ray(pod))
    assert (values["FQ_RAY_IP"], values["RAY_IP"]) == (FQDN, "c-head-svc")
    assert values["RAY_ADDRESS"] == f"{FQDN}:6379"


def test_worker_uses_head_port_param() -> None:
    pod = worker(head={"rayStartParams": {"port": "6390"}})
    assert f"--address={FQDN}:6390" in ray(pod)["args"][0]
    assert env_map(ray(pod))["RAY_PORT"] == "6390"
    assert f"--address {FQDN}:6390 " in pod["spec"]["initContainers"][0]["args"][0]


def test_wait_gcs_ready_init_container() -> None:
    user_env = [{"name": "MY", "value": "1"}]
    mounts = [{"name": "data", "mountPath": "/data"}]
    fields: dict[str, Any] = {
        "env": user_env,
        "volumeMounts": mounts,
        "imagePullPolicy": "Always",
        "securityContext": {"runAsUser": 1},
    }
    group = worker_group(
        template={"spec": {"initContainers": [{"name": "mine", "image": "x"}], "containers": [container(**fields)]}}
    )
    pod = worker(group)
    mine, init = pod["spec"]["initContainers"]
    assert env_map(mine) == {"FQ_RAY_IP": FQDN, "RAY_IP": "c-head-svc"}
    assert init["name"] == "wait-gcs-ready"
    assert init["image"] == "rayproject/ray:2.52.0"
    assert init["imagePullPolicy"] == "Always"
    assert init["securityContext"] == {"runAsUser": 1}
    assert init["command"] == ["/bin/bash", "-c", "--"]
    assert env_map(init) == {"MY": "1", "FQ_RAY_IP": FQDN, "RAY_IP": "c-head-svc"}
    assert init["volumeMounts"] == mounts
    assert init["resources"]["limits"] == init["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}
    script = init["args"][0]
    assert script.startswith("\n\t\t\t\t\tSECONDS=0\n")
    assert f"if ray health-check --address {FQDN}:6379 > /dev/null 2>&1; then" in script
    assert f"if ray health-check --address {FQDN}:6379; then" in script
    assert script.endswith("\t\t\t\t\tdone\n\t\t\t\t")


def test_init_container_injection_can_be_disabled() -> None:
    pod = worker(options=PodBuildOptions(enable_init_container_injection=False))
    assert "initContainers" not in pod["spec"]


def test_auth_reaches_wait_gcs_ready_but_not_user_init_containers() -> None:
    group = worker_group(template={"spec": {"initContainers": [{"name": "mine"}], "containers": [container()]}})
    pod = worker(group, authOptions={"mode": "token"})
    mine, init = pod["spec"]["initContainers"]
    assert "RAY_AUTH_MODE" not in env_map(mine)
    assert env_map(init)["RAY_AUTH_MODE"] == "token"
    assert env_map(ray(pod))["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "c", "key": "auth_token"}}


def test_worker_probes() -> None:
    probe = ray(worker())["livenessProbe"]
    assert probe["exec"]["command"][2] == (
        "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success"
    )
    assert probe["timeoutSeconds"] == 2
    assert ray(worker(rayVersion="2.53.0"))["readinessProbe"]["httpGet"]["port"] == 52365


@pytest.mark.parametrize("version", ["2.52.0", "2.53.0"])
def test_rayservice_worker_readiness_checks_the_serve_proxy(version: str) -> None:
    group = worker_group(
        template={"spec": {"containers": [container(ports=[{"name": "serve", "containerPort": 9000}])]}}
    )
    labels = {"ray.io/originated-from-crd": "RayService"}
    cluster = cluster_from_dict(minimal_spec(workers=[group], rayVersion=version), labels=labels)
    pod = build_worker_pod(cluster=cluster, group=(cluster.spec.worker_group_specs or [])[0], replica_index=0)
    ready = ray(pod)["readinessProbe"]
    assert "httpGet" not in ready
    assert ready["failureThreshold"] == 1
    assert ready["exec"]["command"][2].endswith(
        "&& wget --tries 1 -T 10 -q -O- http://localhost:9000/-/healthz | grep success"
    )
    assert pod["metadata"]["labels"]["ray.io/serve"] == "true"


def test_gcs_ft_worker_reconnect_timeout() -> None:
    pod = worker(gcsFaultToleranceOptions={"redisAddress": "r:1"})
    assert env_map(ray(pod))["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"
    assert "annotations" not in pod["metadata"]


def test_autoscaler_v2_workers_never_restart() -> None:
    pod = worker(enableInTreeAutoscaling=True, autoscalerOptions={"version": "v2"})
    assert pod["spec"]["restartPolicy"] == "Never"
    assert "restartPolicy" not in worker(enableInTreeAutoscaling=True)["spec"]


def test_group_resources_and_labels() -> None:
    pod = worker(worker_group(resources={"cpu": "4", "TPU": "8"}, labels={"zone": "a"}))
    args = ray(pod)["args"][0]
    assert "--num-cpus=4" in args
    assert "--resources='{\"TPU\":8}'" in args
    assert "--labels=zone=a" in args
    assert pod["metadata"]["labels"]["zone"] == "a"


def test_worker_sidecars_and_default_envs() -> None:
    options = PodBuildOptions(worker_sidecar_containers=({"name": "side"},), default_container_envs=({"name": "E"},))
    pod = worker(options=options)
    assert pod["spec"]["containers"][-1] == {"name": "side"}
    assert ray(pod)["env"][0] == {"name": "E"}


def test_local_head_host_keeps_ip_whole() -> None:
    pod = worker(options=PodBuildOptions(head_host="127.0.0.1"))
    values = env_map(ray(pod))
    assert (values["FQ_RAY_IP"], values["RAY_IP"], values["RAY_ADDRESS"]) == (
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1:6379",
    )
