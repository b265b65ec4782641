"""Local mode's only changes to a KubeRay pod: ports, addresses, token auth and startup waits (kray/local/adjust.py)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kray.controllers.common.pod import build_worker_pod
from kray.local.adjust import ClusterPorts, KubeApiAccess, NodePorts, adjust_head_service, adjust_pod, adjust_ray_start

CLUSTER = ClusterPorts(
    gcs=30001,
    dashboard=30002,
    client=30003,
    serve=30004,
    dashboard_metrics=30005,
    autoscaler_metrics=30006,
    head_agent=30007,
    head_metrics=30008,
)
NODE = NodePorts(agent=31001, metrics=31002)
HEAD_LINE = (
    "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start --head  --block  --dashboard-agent-listen-port=52365 "
    " --dashboard-host=0.0.0.0  --metrics-export-port=8080  --num-cpus=1 "
)
WORKER_LINE = (
    "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start  --address=c-head-svc.default.svc.cluster.local:6379 "
    " --block  --dashboard-agent-listen-port=52365  --metrics-export-port=8080  --num-cpus=1 "
)


def test_head_line_gets_local_ports_and_loopback_addresses() -> None:
    line = adjust_ray_start(HEAD_LINE, head=True, cluster=CLUSTER, node=NODE)
    for flag in (
        "--port=30001",
        "--dashboard-port=30002",
        "--ray-client-server-port=30003",
        "--dashboard-agent-listen-port=31001",
        "--metrics-export-port=31002",
        "--dashboard-host=127.0.0.1",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--block",
    ):
        assert flag in line
    assert "0.0.0.0" not in line
    assert "52365" not in line


def test_worker_line_points_at_the_local_head() -> None:
    line = adjust_ray_start(WORKER_LINE, head=False, cluster=CLUSTER, node=NODE)
    assert "--address=127.0.0.1:30001" in line
    assert "svc.cluster.local" not in line
    assert "--dashboard-port" not in line


def test_user_commands_without_ray_start_are_untouched() -> None:
    assert adjust_ray_start("python serve.py", head=True, cluster=CLUSTER, node=NODE) == "python serve.py"


def pod(*, head: bool, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container = {
        "name": "ray",
        "command": ["/bin/bash", "-c", "--"],
        "args": [HEAD_LINE if head else WORKER_LINE],
        "env": env or [{"name": "RAY_ADDRESS", "value": "c-head-svc.default.svc.cluster.local:6379"}],
        "ports": [{"name": "dashboard", "containerPort": 8265}, {"name": "metrics", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/api/healthz", "port": 52365}},
        "livenessProbe": {
            "exec": {"command": ["bash", "-c", "wget -q -O- http://localhost:52365/api/local_raylet_healthz"]}
        },
    }
    return {"metadata": {"name": "p"}, "spec": {"containers": [container]}}


def env_of(adjusted: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in adjusted["spec"]["containers"][0]["env"]}


def test_every_pod_gets_token_auth_from_the_cluster_secret_even_if_the_manifest_says_nothing() -> None:
    env = env_of(adjust_pod(pod(head=True), head=True, cluster=CLUSTER, node=NODE, auth_secret="c"))
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "c", "key": "auth_token"}}
    assert env["RAY_ADDRESS"] == "127.0.0.1:30001"
    assert env["DASHBOARD_METRIC_PORT"] == "30005"
    assert env["AUTOSCALER_METRIC_PORT"] == "30006"


def test_probes_and_container_ports_follow_the_moved_ports() -> None:
    adjusted = adjust_pod(pod(head=True), head=True, cluster=CLUSTER, node=NODE, auth_secret="c")
    container = adjusted["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["port"] == 31001
    assert "localhost:31001" in container["livenessProbe"]["exec"]["command"][2]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"dashboard": 30002, "metrics": 31002}


def test_the_input_pod_is_not_mutated() -> None:
    original = pod(head=False)
    adjust_pod(original, head=False, cluster=CLUSTER, node=NODE, auth_secret="c")
    assert original == pod(head=False)


def test_head_service_targets_the_local_ports() -> None:
    service = {
        "spec": {
            "ports": [
                {"name": "gcs-server", "port": 6379, "targetPort": 6379},
                {"name": "dashboard", "port": 8265, "targetPort": 8265},
            ]
        }
    }
    ports = adjust_head_service(service, cluster=CLUSTER)["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(30001, 30001), (30002, 30002)]


def test_cluster_ports_round_trip_through_their_annotation() -> None:
    assert ClusterPorts.from_annotation(CLUSTER.as_annotation()) == CLUSTER


def test_head_service_metrics_and_agent_target_the_heads_cluster_ports() -> None:
    # status.endpoints lists these target ports: metrics must be where the head really exports them.
    service = {
        "spec": {
            "ports": [
                {"name": "metrics", "port": 8080, "targetPort": 8080},
                {"name": "dashboard-agent", "port": 52365, "targetPort": 52365},
                {"name": "serve", "port": 8000, "targetPort": 8000},
                {"name": "custom", "port": 9999, "targetPort": "named"},
            ]
        }
    }
    ports = adjust_head_service(service, cluster=CLUSTER)["spec"]["ports"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in ports} == {
        "metrics": (30008, 30008),
        "dashboard-agent": (30007, 30007),
        "serve": (30004, 30004),
        "custom": (9999, "named"),
    }


def test_the_head_runs_on_the_clusters_head_node_ports() -> None:
    line = adjust_ray_start(HEAD_LINE, head=True, cluster=CLUSTER, node=CLUSTER.head_node)
    assert "--metrics-export-port=30008" in line
    assert "--dashboard-agent-listen-port=30007" in line


def test_an_older_annotation_parses_to_what_it_has_and_is_not_a_full_set() -> None:
    old = "gcs=1,dashboard=2,client=3,serve=4,dashboard_metrics=5,autoscaler_metrics=6"
    assert ClusterPorts.parse_annotation(old) == {
        "gcs": 1,
        "dashboard": 2,
        "client": 3,
        "serve": 4,
        "dashboard_metrics": 5,
        "autoscaler_metrics": 6,
    }
    with pytest.raises(ValueError, match="head_agent, head_metrics"):
        ClusterPorts.from_annotation(old)
    assert ClusterPorts.parse_annotation("gcs=x,,bogus=7,=3,dashboard=12 ") == {"dashboard": 12}


def _cluster(readiness: dict[str, Any] | None = None) -> Any:
    from kray.api.v1 import RayCluster

    container: dict[str, Any] = {"name": "ray", "image": "rayproject/ray:2.60.0"}
    if readiness is not None:
        container["readinessProbe"] = readiness
    template = {"spec": {"containers": [container]}}
    return RayCluster.model_validate(
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": "c", "namespace": "default", "uid": "u-1"},
            "spec": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {"rayStartParams": {}, "template": template},
                "workerGroupSpecs": [
                    {
                        "groupName": "g",
                        "replicas": 1,
                        "minReplicas": 0,
                        "maxReplicas": 1,
                        "rayStartParams": {},
                        "template": template,
                    }
                ],
            },
        }
    )


def _built(readiness: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    from kray.controllers.common.pod import build_head_pod, build_worker_pod

    cluster = _cluster(readiness)
    head = adjust_pod(
        build_head_pod(cluster=cluster), head=True, cluster=CLUSTER, node=CLUSTER.head_node, auth_secret="c"
    )
    worker = adjust_pod(
        build_worker_pod(cluster=cluster, group=cluster.spec.worker_group_specs[0], replica_index=0),
        head=False,
        cluster=CLUSTER,
        node=NODE,
        auth_secret="c",
    )
    return head, worker


def test_kubernetes_sized_waits_are_sized_for_a_machine() -> None:
    head, worker = _built()
    for pod, agent in ((head, CLUSTER.head_agent), (worker, NODE.agent)):
        ray = pod["spec"]["containers"][0]
        readiness, liveness = ray["readinessProbe"], ray["livenessProbe"]
        # Probed after 1 s (every second until it first succeeds: RunnerSettings), then KubeRay's 10 x 5 s.
        assert (readiness["initialDelaySeconds"], readiness["periodSeconds"], readiness["failureThreshold"]) == (
            1,
            5,
            10,
        )
        assert readiness["httpGet"] == {"path": "/api/healthz", "port": agent}
        # Liveness (which kills) keeps KubeRay's timing.
        assert (liveness["initialDelaySeconds"], liveness["periodSeconds"], liveness["failureThreshold"]) == (
            30,
            5,
            120,
        )
    (wait,) = worker["spec"]["initContainers"]
    script = "\n".join(wait["args"])
    assert "\tsleep 1\n" in script
    assert "sleep 5" not in script


def test_a_readiness_probe_the_manifest_sets_keeps_its_timing() -> None:
    own = {"httpGet": {"path": "/ready", "port": 9000}, "initialDelaySeconds": 30, "periodSeconds": 10}
    head, worker = _built(readiness=own)
    for pod in (head, worker):
        assert pod["spec"]["containers"][0]["readinessProbe"] == own


def test_kuberays_autoscaler_sidecar_is_left_out_and_other_sidecars_stay() -> None:
    autoscaler = {
        "name": "autoscaler",
        "command": ["/bin/bash", "-lc", "--"],
        "args": ["ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME)"],
        "env": [{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "ray kuberay-autoscaler"}],
    }
    shipper = {"name": "autoscaler-logs", "command": ["sh", "-c", "tail -F /tmp/ray/session_latest/logs/x"]}
    manifest = pod(head=True)
    manifest["spec"]["containers"] += [autoscaler, shipper]
    adjusted = adjust_pod(manifest, head=True, cluster=CLUSTER, node=NODE, auth_secret="c")
    assert [c["name"] for c in adjusted["spec"]["containers"]] == [
        manifest["spec"]["containers"][0]["name"],
        "autoscaler-logs",
    ]


KUBE_API = KubeApiAccess(host="127.0.0.1", port=30100, secret="c-kray-autoscaler-token")


def _autoscaling_head(options: dict[str, Any]) -> dict[str, Any]:
    """KubeRay's head pod (kray's builder) of an autoscaling cluster, as local mode adjusts it."""
    from kray.api.v1 import RayCluster
    from kray.controllers.common.pod import build_head_pod

    document = _cluster().model_dump(by_alias=True, exclude_none=True)
    document["spec"].update(enableInTreeAutoscaling=True, autoscalerOptions=options)
    built = build_head_pod(cluster=RayCluster.model_validate(document))
    return adjust_pod(built, head=True, cluster=CLUSTER, node=CLUSTER.head_node, auth_secret="c", kube_api=KUBE_API)


def test_kuberays_autoscaler_runs_against_the_local_kube_api_with_a_service_account_volume() -> None:
    options = {
        "idleTimeoutSeconds": 15,
        "upscalingMode": "Aggressive",
        "env": [{"name": "MY_SETTING", "value": "1"}],
        "resources": {"limits": {"cpu": "300m", "memory": "300Mi"}, "requests": {"cpu": "300m", "memory": "300Mi"}},
    }
    head = _autoscaling_head(options)
    ray, autoscaler = head["spec"]["containers"]
    assert autoscaler["name"] == "autoscaler"
    assert autoscaler["args"] == [
        "ray kuberay-autoscaler --gcs-address 127.0.0.1:30001 "
        "--cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
    ]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in autoscaler["env"]}
    assert {name: env[name] for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")} == {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "30100",
    }
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "30100"
    assert env["AUTOSCALER_METRIC_PORT"] == str(CLUSTER.autoscaler_metrics)
    assert (env["RAY_AUTH_MODE"], env["RAY_AUTH_TOKEN"]) == (
        "token",
        {"secretKeyRef": {"name": "c", "key": "auth_token"}},
    )
    assert env["MY_SETTING"] == "1"  # autoscalerOptions.env, as KubeRay appends it
    assert autoscaler["resources"] == options["resources"]
    mount = {
        "name": "kray-kube-api-access",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    assert mount in autoscaler["volumeMounts"]
    assert {"name": "kray-kube-api-access", "secret": {"secretName": KUBE_API.secret}} in head["spec"]["volumes"]
    assert "--no-monitor" in ray["args"][0]  # the head's own monitor stays off: the sidecar is the autoscaler


def test_an_autoscaler_command_that_names_its_gcs_is_left_alone() -> None:
    command = ["ray kuberay-autoscaler --gcs-address 10.0.0.1:6379 --cluster-name c --cluster-namespace default"]
    head = _autoscaling_head({"args": command})
    assert head["spec"]["containers"][1]["args"] == command


def test_an_overridden_command_running_kuberays_generated_one_gets_the_local_gcs() -> None:
    """``ray-cluster.autoscaler-v2-overwrite-cmd.yaml``: ``args`` run ``$KUBERAY_GEN_AUTOSCALER_START_CMD``."""
    args = ["echo 'Starting autoscaler...'; $KUBERAY_GEN_AUTOSCALER_START_CMD"]
    autoscaler = _autoscaling_head({"command": ["/bin/bash", "-lc", "--"], "args": args})["spec"]["containers"][1]
    assert autoscaler["args"] == args
    assert autoscaler["command"] == ["/bin/bash", "-c", "--"]  # a login shell's profile would reset PATH
    env = {e["name"]: e.get("value") for e in autoscaler["env"]}
    assert env["KUBERAY_GEN_AUTOSCALER_START_CMD"].startswith("ray kuberay-autoscaler --gcs-address 127.0.0.1:30001 ")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["/bin/bash", "-lc", "--"], ["/bin/bash", "-c", "--"]),
        (["bash", "-l", "-c", "echo -l"], ["bash", "-c", "echo -l"]),
        (["sh", "--login", "-ec", "x -l"], ["sh", "-ec", "x -l"]),
        (["python", "-lc"], ["python", "-lc"]),
        (["/bin/bash", "-c", "--"], ["/bin/bash", "-c", "--"]),
    ],
)
def test_a_login_shell_runs_as_a_plain_one_keeping_the_pods_path(command: list[str], expected: list[str]) -> None:
    manifest = pod(head=True)
    manifest["spec"]["containers"][0]["command"] = command
    adjusted = adjust_pod(manifest, head=True, cluster=CLUSTER, node=NODE, auth_secret="c")
    assert adjusted["spec"]["containers"][0]["command"] == expected


def test_wait_gcs_ready_runs_ray_health_check_only_once_the_gcs_port_accepts(tmp_path: Path) -> None:
    """KubeRay's loop, as adjusted, run by bash: ``ray`` (here a recorder on PATH) is not started while the head's
    GCS port refuses connections, and once it accepts, one health check ends the wait."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]  # bound, not listening yet: connections are refused
    cluster = dataclasses.replace(CLUSTER, gcs=port)
    worker = adjust_pod(
        build_worker_pod(cluster=_cluster(None), group=_cluster(None).spec.worker_group_specs[0], replica_index=0),
        head=False,
        cluster=cluster,
        node=NODE,
        auth_secret="c",
    )
    (wait,) = worker["spec"]["initContainers"]
    calls = tmp_path / "calls"
    stub = tmp_path / "bin" / "ray"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    stub.chmod(0o755)
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    script = subprocess.Popen(["bash", "-c", "\n".join(wait["args"])], env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)  # two and a half turns of the loop with the port closed
        assert not calls.exists(), f"ray health-check ran while the GCS port refused: {calls.read_text()}"
        listener.listen()
        out, _ = script.communicate(timeout=15)
    finally:
        script.kill()
        listener.close()
    assert script.returncode == 0, out
    assert "GCS is ready." in out
    assert calls.read_text().splitlines() == [f"health-check --address 127.0.0.1:{port}"]
