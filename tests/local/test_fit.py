"""What this machine cannot run is refused before anything starts, naming the field (issue 8): the pure planner.

Why: a KubeRay sample asking for a GPU, a Service local mode skips, or a sidecar whose program is not
installed used to start a cluster that failed later (or a job that waited forever). These pin every check
of :mod:`kray.local.fit` with hand-made documents, the shell-script reading of :mod:`kray.local.shell_commands`,
and facts read from KubeRay's own samples (never a golden file of kray's output).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kray.local.fit import Fit, Machine, format_bytes, plan_fit
from kray.local.shell_commands import container_programs, script_programs

GI = 2**30
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "kuberay-samples"
COMMANDS = frozenset({"sh", "bash", "/bin/sh", "/bin/bash", "cp", "cat", "python", "ray", "openssl", "sleep"})


def machine(**overrides: Any) -> Machine:
    fields: dict[str, Any] = {"memory_bytes": 16 * GI, "cpus": 2, "has_command": COMMANDS.__contains__}
    return Machine(**{**fields, **overrides})


def ray_container(name: str = "ray", memory: str | None = "1Gi", **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": "rayproject/ray:2.52.0", **extra}
    if memory is not None:
        container["resources"] = {"requests": {"cpu": "1", "memory": memory}}
    return container


def cluster(*, head: list[dict[str, Any]] | None = None, workers: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": head or [ray_container()]}}},
            "workerGroupSpecs": [
                {
                    "groupName": "w",
                    "replicas": workers,
                    "minReplicas": 0,
                    "maxReplicas": 10,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [ray_container()]}},
                }
            ],
            **spec,
        },
    }


def head_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["headGroupSpec"]["template"]["spec"]
    return spec


def refused(fit: Fit) -> dict[str, str]:
    return {r.path: r.message for r in fit.refusals}


HEAD = "spec.headGroupSpec.template.spec"


# -- kinds ------------------------------------------------------------------------------------------------


def test_a_kind_local_mode_does_not_run_is_refused_naming_kind() -> None:
    document = {"apiVersion": "ray.io/v1", "kind": "RayCronJob", "metadata": {"name": "x"}, "spec": {}}
    assert refused(plan_fit([document], machine=machine())) == {
        "kind": "local mode runs RayCluster, RayJob and RayService objects; RayCronJob does not run locally yet"
    }


def test_a_plain_cluster_fits() -> None:
    assert plan_fit([cluster()], machine=machine()) == Fit()


# -- containers besides Ray -------------------------------------------------------------------------------


def test_a_sidecar_without_a_command_cannot_run_an_image_entrypoint() -> None:
    document = cluster(head=[ray_container(), {"name": "fluentbit", "image": "fluent/fluent-bit:3.2.2"}])
    assert refused(plan_fit([document], machine=machine())) == {
        f"{HEAD}.containers[1].command": 'container "fluentbit" has no command: local mode cannot run an '
        "image's entrypoint (image fluent/fluent-bit:3.2.2)"
    }


def test_a_sidecar_runs_only_when_its_program_is_on_this_machine() -> None:
    sidecar = {"name": "redis", "command": ["sh", "-c", "redis-server /etc/redis.conf"]}
    document = cluster(head=[ray_container(), sidecar])
    message = refused(plan_fit([document], machine=machine()))[f"{HEAD}.containers[1].command"]
    assert message.startswith('container "redis" runs redis-server, which is not on this machine')
    assert plan_fit([document], machine=machine(has_command=(COMMANDS | {"redis-server"}).__contains__)).ok


def test_an_init_container_script_may_run_files_of_its_own_volumes() -> None:
    init = {
        "name": "tls",
        "command": ["/bin/sh", "-c", "cp -R /etc/ca/tls /etc/ray && /etc/gen/tls/gencert_head.sh"],
        "volumeMounts": [{"name": "gen", "mountPath": "/etc/gen/tls"}],
    }
    document = cluster()
    head_spec(document)["initContainers"] = [init]
    head_spec(document)["volumes"] = [{"name": "gen", "emptyDir": {}}]
    assert plan_fit([document], machine=machine()).ok
    init["volumeMounts"] = []
    assert refused(plan_fit([document], machine=machine())) == {
        f"{HEAD}.initContainers[0].command": 'container "tls" runs /etc/gen/tls/gencert_head.sh, which is not '
        "on this machine (pods find programs in kray's environment, then on PATH): install it, or remove "
        "the container"
    }


def test_the_script_in_args_is_named_by_args() -> None:
    sidecar = {"name": "s", "command": ["/bin/bash", "-lc", "--"], "args": ["until nc -z x 1; do sleep 1; done"]}
    document = cluster(head=[ray_container(), sidecar])
    assert list(refused(plan_fit([document], machine=machine()))) == [f"{HEAD}.containers[1].args"]


@pytest.mark.parametrize(
    ("script", "programs"),
    [
        ("cp -R /a /b && /gen.sh", ["cp", "/gen.sh"]),
        ("redis-server /usr/local/etc/redis/redis.conf", ["redis-server"]),
        ("ulimit -n 65536; echo head; $KUBERAY_GEN_RAY_START_CMD", []),
        ("A=1 B=2 env-prog --flag | tee out || true", ["env-prog", "tee"]),
        ('ARCH=$(uname -m)\nsudo wget -O /x "https://h/${ARCH}/runsc"', ["uname", "sudo"]),
        ("f() { helper; }\nf\nfunction g { other; }\ng", ["helper", "other"]),
        ('if [ "$?" = "0" ]; then\n  break\nelse\n  retry-it\nfi', ["retry-it"]),
        ("for i in 1 2 3; do echo $i; done; while true; do sleep 1; done", ["sleep"]),
        ('case "$1" in\n  start|begin) run-it ;;\n  *) echo no ;;\nesac', ["run-it"]),
        ("arr=(one two three)\necho $((1 + 2))\n(( i++ ))", []),
        ("cat > /x <<EOF\n[ req ]\ndefault_bits = 2048\nEOF\nopenssl req -new", ["cat", "openssl"]),
        ("cat <<-'END'\n\tnot-a-command here\n\tEND\n", ["cat"]),
        ('python -c "\nimport ray\nray.init()\n"\nexec redis-server', ["python", "redis-server"]),
        ("ray health-check 2>/dev/null >&2 < /in; ./local.sh; . ./env.sh", ["ray"]),
        ("# a comment\nlog-shipper --out x # trailing", ["log-shipper"]),
        ("echo 'unbalanced", []),
        ("`backticks`; $(hostname -f); ${VAR}; cmd-with-$VAR", ["hostname"]),
    ],
)
def test_script_programs_reads_the_commands_a_shell_script_runs(script: str, programs: list[str]) -> None:
    assert script_programs(script) == programs


def test_samples_shell_scripts_name_real_programs_only() -> None:
    """Every sh -c script of KubeRay's samples yields only words that are command names in the script."""
    for path in sorted(SAMPLES.glob("*.yaml")):
        for container in _containers(list(yaml.safe_load_all(path.read_text()))):
            programs, _ = container_programs(container)
            for program in programs:
                words = " ".join([*(container.get("command") or []), *(container.get("args") or [])])
                assert re.search(rf"(^|[\s;&|(]){re.escape(program.name)}(\s|$|;)", words), (path.name, program)


# -- resources ---------------------------------------------------------------------------------------------


def test_an_extended_resource_this_machine_lacks_is_refused_with_the_numbers() -> None:
    resources = {"limits": {"nvidia.com/gpu": 1, "memory": "1Gi"}, "requests": {"cpu": "1"}}
    worker = ray_container(memory=None, resources=resources)
    document = cluster()
    document["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"] = [worker]
    path = "spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits[nvidia.com/gpu]"
    assert refused(plan_fit([document], machine=machine())) == {path: "requests 1, this machine has none"}
    assert plan_fit([document], machine=machine(extended={"nvidia.com/gpu": 1})).ok
    assert refused(plan_fit([document], machine=machine(extended={"nvidia.com/gpu": 0}))) == {
        path: "requests 1, this machine has none"
    }


def test_native_resources_and_hugepages_are_not_extended() -> None:
    resources = {"requests": {"cpu": "64", "ephemeral-storage": "1Ti", "hugepages-2Mi": "1Gi", "memory": "1Gi"}}
    assert plan_fit([cluster(head=[ray_container(memory=None, resources=resources)])], machine=machine()).ok


def test_memory_of_every_pod_together_is_refused_at_the_biggest_group() -> None:
    document = cluster(workers=3)
    group = document["spec"]["workerGroupSpecs"][0]
    group["numOfHosts"] = 2
    group["template"]["spec"]["containers"] = [ray_container(memory=None, resources={"limits": {"memory": "4Gi"}})]
    path = "spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits[memory]"
    assert refused(plan_fit([document], machine=machine(memory_bytes=int(23.4 * GI)))) == {
        path: "needs 25Gi of memory over 7 pods (here 4Gi x 6), this machine has 23.4Gi"
    }
    group["maxReplicas"] = 2  # KubeRay clamps replicas into [min, max]
    assert plan_fit([document], machine=machine(memory_bytes=int(23.4 * GI))).ok
    group["suspend"] = True
    assert plan_fit([document], machine=machine(memory_bytes=2 * GI)).ok


def test_an_init_container_bigger_than_the_containers_sets_the_pod_memory() -> None:
    document = cluster(workers=0)
    head_spec(document)["initContainers"] = [ray_container("init", memory="20Gi", command=["ray", "--version"])]
    assert list(refused(plan_fit([document], machine=machine()))) == [
        f"{HEAD}.containers[0].resources.requests[memory]"
    ]


def test_a_rayjob_counts_its_cluster_and_no_submitter_pod() -> None:
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "j"},
        "spec": {
            "entrypoint": "python x.py",
            "rayClusterSpec": cluster(workers=2)["spec"],
            "submitterPodTemplate": {"spec": {"containers": [ray_container(memory="100Gi", command=["x"])]}},
        },
    }
    assert plan_fit([job], machine=machine(memory_bytes=3 * GI)).ok
    fit = plan_fit([job], machine=machine(memory_bytes=2 * GI))
    assert [(r.kind, r.name, r.message) for r in fit.refusals] == [
        ("RayJob", "j", "needs 3Gi of memory over 3 pods (here 1Gi x 2), this machine has 2Gi")
    ]
    assert fit.refusals[0].path.startswith("spec.rayClusterSpec.workerGroupSpecs[0].")


def test_in_tree_autoscaling_adds_the_autoscaler_container_to_the_head() -> None:
    document = cluster(workers=0, enableInTreeAutoscaling=True)
    assert plan_fit([document], machine=machine(memory_bytes=GI + 512 * 2**20)).ok
    assert not plan_fit([document], machine=machine(memory_bytes=GI + 511 * 2**20)).ok


def test_the_v1_autoscaler_is_a_note_v2_and_no_version_are_not() -> None:
    """Ray's v1 ``LoadMetrics`` keys nodes by IP (``monitor.py``: ``resource_message.node_ip_address``)."""
    for version, noted in (("v1", True), ("v2", False), (None, False)):
        options = {} if version is None else {"version": version}
        fit = plan_fit([cluster(enableInTreeAutoscaling=True, autoscalerOptions=options)], machine=machine())
        assert fit.ok
        assert [n.path for n in fit.notes] == (["spec.autoscalerOptions.version"] if noted else []), version


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (40 * GI, int(23.4 * GI), 512 * 2**20, 12 * 2**40, 7)] == [
        "40Gi",
        "23.4Gi",
        "512Mi",
        "12Ti",
        "7",
    ]


# -- Kubernetes-only features ----------------------------------------------------------------------------


def test_ray_tls_is_refused_naming_the_env_entry() -> None:
    document = cluster()
    head_spec(document)["containers"][0]["env"] = [{"name": "A", "value": "b"}, {"name": "RAY_USE_TLS", "value": "1"}]
    message = refused(plan_fit([document], machine=machine()))[f"{HEAD}.containers[0].env[1]"]
    assert "this machine's network address" in message
    head_spec(document)["containers"][0]["env"][1]["value"] = "0"
    assert plan_fit([document], machine=machine()).ok


def test_kubernetes_token_review_is_refused() -> None:
    document = cluster(authOptions={"mode": "token", "enableK8sTokenAuth": True})
    assert list(refused(plan_fit([document], machine=machine()))) == ["spec.authOptions.enableK8sTokenAuth"]
    assert plan_fit([cluster(authOptions={"mode": "token"})], machine=machine()).ok


def test_redis_behind_a_service_of_the_file_is_refused_naming_what_is_missing() -> None:
    document = cluster(gcsFaultToleranceOptions={"redisAddress": "redis://redis:6379"})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis"}, "spec": {}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis"}, "spec": {}}
    message = refused(plan_fit([document, service, deployment], machine=machine()))[
        "spec.gcsFaultToleranceOptions.redisAddress"
    ]
    assert message.startswith('redis host "redis" is Service/redis of this file, served by Deployment/redis,')
    local = cluster(gcsFaultToleranceOptions={"redisAddress": "127.0.0.1:6380"})
    assert plan_fit([local, service], machine=machine()).ok


def test_the_legacy_ft_annotation_reads_ray_redis_address() -> None:
    document = cluster()
    document["metadata"]["annotations"] = {"ray.io/ft-enabled": "true"}
    head_spec(document)["containers"][0]["env"] = [{"name": "RAY_REDIS_ADDRESS", "value": "redis.ns.svc:6379"}]
    assert list(refused(plan_fit([document], machine=machine()))) == [f"{HEAD}.containers[0].env[0].value"]


def test_resource_isolation_is_refused() -> None:
    document = cluster()
    document["spec"]["headGroupSpec"]["rayStartParams"] = {"enable-resource-isolation": "true"}
    assert list(refused(plan_fit([document], machine=machine()))) == [
        "spec.headGroupSpec.rayStartParams[enable-resource-isolation]"
    ]


def test_batch_scheduler_labels_are_notes_not_refusals() -> None:
    document = cluster()
    document["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "q", "ray.io/gang-scheduling-enabled": "true"}
    head_spec(document)["schedulerName"] = "volcano"
    fit = plan_fit([document], machine=machine())
    assert fit.ok
    assert {n.path for n in fit.notes} == {
        "metadata.labels[kueue.x-k8s.io/queue-name]",
        "metadata.labels[ray.io/gang-scheduling-enabled]",
        f"{HEAD}.schedulerName",
    }


# -- cloud storage ----------------------------------------------------------------------------------------


def test_a_runtime_env_uri_needs_the_module_ray_fetches_it_with() -> None:
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "j"},
        "spec": {"entrypoint": "python -m app", "runtimeEnvYAML": "working_dir: gs://bucket/app.zip\n"},
    }
    job["spec"]["rayClusterSpec"] = cluster()["spec"]
    message = refused(plan_fit([job], machine=machine()))["spec.runtimeEnvYAML"]
    assert message.startswith("Ray fetches gs://bucket/app.zip with google.cloud.storage, smart_open")
    fit = plan_fit([job], machine=machine(has_module=lambda _name: True))
    assert fit.ok
    assert [n.path for n in fit.notes] == ["spec.runtimeEnvYAML"]  # this machine's credentials, said once


@pytest.mark.parametrize(
    ("env", "program"),
    [("conda: {dependencies: [numpy]}", "conda"), ("image_uri: rayproject/ray:2.60.0", "podman")],
)
def test_a_runtime_env_served_by_a_missing_program_is_refused(env: str, program: str) -> None:
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "j"},
        "spec": {"entrypoint": "python -m app", "runtimeEnvYAML": env, "rayClusterSpec": cluster()["spec"]},
    }
    message = refused(plan_fit([job], machine=machine()))["spec.runtimeEnvYAML"]
    assert f"needs `{program}` on this machine" in message
    assert plan_fit([job], machine=machine(has_command=(COMMANDS | {program}).__contains__)).ok


def test_cloud_uris_elsewhere_are_notes() -> None:
    document = cluster()
    head_spec(document)["containers"][0]["env"] = [{"name": "DATA", "value": "s3://bucket/data"}]
    fit = plan_fit([document], machine=machine())
    assert fit.ok
    assert [n.path for n in fit.notes] == [f"{HEAD}.containers[0].env[0].value"]


# -- volumes and references ------------------------------------------------------------------------------


def test_volumes_local_mode_cannot_mount_are_refused() -> None:
    document = cluster()
    head_spec(document)["volumes"] = [{"name": "ok", "emptyDir": {}}, {"name": "b", "csi": {"driver": "gcsfuse"}}]
    message = refused(plan_fit([document], machine=machine()))[f"{HEAD}.volumes[1]"]
    assert message.startswith("a csi volume cannot be mounted on this machine; local mode mounts configMap, secret")


def test_references_must_be_in_the_file_or_the_store() -> None:
    document = cluster()
    document["metadata"]["namespace"] = "team"
    head = head_spec(document)
    head["volumes"] = [
        {"name": "code", "configMap": {"name": "code"}},
        {"name": "maybe", "configMap": {"name": "maybe", "optional": True}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "p", "projected": {"sources": [{"secret": {"name": "p"}}, {"serviceAccountToken": {"path": "t"}}]}},
    ]
    head["containers"][0]["envFrom"] = [{"secretRef": {"name": "env"}}]
    head["containers"][0]["env"] = [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "c", "key": "auth_token"}}},  # the cluster's own
        {"name": "U", "valueFrom": {"configMapKeyRef": {"name": "code", "key": "k"}}},
    ]
    assert refused(plan_fit([document], machine=machine())) == {
        f"{HEAD}.containers[0].env[1].valueFrom.configMapKeyRef.name": 'configmap "code" is neither in the file '
        "nor in namespace team",
        f"{HEAD}.containers[0].envFrom[0].secretRef.name": 'secret "env" is neither in the file nor in namespace team',
        f"{HEAD}.volumes[0].configMap.name": 'configmap "code" is neither in the file nor in namespace team',
        f"{HEAD}.volumes[2].persistentVolumeClaim.claimName": 'persistentvolumeclaim "data" is neither in the file '
        "nor in namespace team",
        f"{HEAD}.volumes[3].projected.sources[0].secret.name": 'secret "p" is neither in the file nor in namespace '
        "team",
        f"{HEAD}.volumes[3].projected.sources[1].serviceAccountToken": "ServiceAccount tokens are issued by a "
        "Kubernetes API server; local mode has none",
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code", "namespace": "team"}}
    stored = frozenset({("Secret", "team", "env"), ("Secret", "team", "p"), ("PersistentVolumeClaim", "team", "data")})
    fit = plan_fit([configmap, document], machine=machine(existing=stored))
    assert list(refused(fit)) == [f"{HEAD}.volumes[3].projected.sources[1].serviceAccountToken"]
    assert fit.missing == frozenset()
    elsewhere = plan_fit([document], machine=machine(existing=frozenset({("Secret", "other", "env")})))
    assert ("Secret", "team", "env") in elsewhere.missing


def test_without_mount_namespaces_a_pod_with_volume_mounts_is_refused() -> None:
    document = cluster()
    head_spec(document)["containers"][0]["volumeMounts"] = [{"name": "logs", "mountPath": "/tmp/ray"}]
    head_spec(document)["volumes"] = [{"name": "logs", "emptyDir": {}}]
    assert plan_fit([document], machine=machine()).ok
    message = refused(plan_fit([document], machine=machine(can_mount=False)))[f"{HEAD}.containers[0].volumeMounts[0]"]
    assert "enable unprivileged user namespaces" in message


def test_a_cluster_selector_needs_the_cluster() -> None:
    job = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j", "namespace": "default"}}
    job["spec"] = {"entrypoint": "python x.py", "clusterSelector": {"ray.io/cluster": "shared"}}
    assert list(refused(plan_fit([job], machine=machine()))) == ["spec.clusterSelector[ray.io/cluster]"]
    assert plan_fit([job], machine=machine(existing=frozenset({("RayCluster", "default", "shared")}))).ok


def test_an_entrypoint_asking_for_gpus_no_node_has_would_wait_forever() -> None:
    job = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"}}
    job["spec"] = {"entrypoint": "python x.py", "entrypointNumGpus": 0.5, "rayClusterSpec": cluster()["spec"]}
    assert list(refused(plan_fit([job], machine=machine()))) == ["spec.entrypointNumGpus"]
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"] = {"num-gpus": "2"}  # Ray's logical GPUs
    assert plan_fit([job], machine=machine()).ok


# -- robustness -----------------------------------------------------------------------------------------

_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30), st.floats())
_value = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_container = st.fixed_dictionaries(
    {},
    optional={
        "name": _value,
        "command": st.one_of(st.lists(st.text(max_size=200), max_size=4), _value),
        "args": st.one_of(st.lists(st.text(max_size=200), max_size=3), _value),
        "resources": st.one_of(
            st.fixed_dictionaries({"requests": st.dictionaries(st.sampled_from(["memory", "x.io/y"]), _value)}),
            _value,
        ),
        "env": _value,
        "envFrom": _value,
        "volumeMounts": _value,
    },
)


@settings(max_examples=150, deadline=None)
@given(containers=st.lists(st.one_of(_container, _value), max_size=4), volumes=_value, replicas=_value)
def test_the_planner_never_raises_and_its_findings_are_bounded(
    containers: list[Any], volumes: Any, replicas: Any
) -> None:
    document = cluster()
    head_spec(document)["containers"] = [ray_container(), *containers]
    head_spec(document)["initContainers"] = containers
    head_spec(document)["volumes"] = volumes
    document["spec"]["workerGroupSpecs"][0]["replicas"] = replicas
    fit = plan_fit([document, copy.deepcopy(document)], machine=machine())
    assert len(fit.refusals) <= 2 * (8 * (2 * len(containers) + 1) + 50)
    assert all(r.path for r in fit.refusals)


# -- KubeRay's samples ----------------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def _containers(documents: list[Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"containers", "initContainers"} and isinstance(value, list):
                    found.extend(v for v in value if isinstance(v, dict))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(documents)
    return found


def _resolve(document: Any, path: str) -> Any:
    """The value at a refusal's path (``a.b[0].c[key]``); KeyError when the path names nothing."""
    node = document
    for name, index, key in re.findall(r"([^.\[\]]+)|\[(\d+)\]|\[([^\]]+)\]", path):
        node = node[name] if name else node[int(index)] if index else node[key]
    return node


SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml"))


def test_the_samples_are_there() -> None:
    assert len(SAMPLE_FILES) >= 80, SAMPLES


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_kuberay_samples(path: Path) -> None:
    documents = _documents(path)
    fit = plan_fit(documents, machine=machine(memory_bytes=16 * GI))
    by_name = {(d.get("kind"), (d.get("metadata") or {}).get("name")): d for d in documents}
    for refusal in fit.refusals:
        document = by_name[(refusal.kind, refusal.name)]
        parent = refusal.path.rsplit(".", 1)[0] if refusal.path.endswith(".command") else refusal.path
        _resolve(document, parent)  # every refusal names a field the sample has
    paths = [r.path for r in fit.refusals]
    for document in documents:
        if document.get("kind") == "RayCronJob":  # RayServices run locally (issue 10); RayCronJobs do not yet
            assert "kind" in paths
        for container in _containers([document]):
            for key in ("limits", "requests"):
                for resource in (container.get("resources") or {}).get(key) or {}:
                    if resource in {"nvidia.com/gpu", "google.com/tpu", "amd.com/gpu"}:
                        assert any(p.endswith(f"[{resource}]") for p in paths), (resource, paths)
    if path.name in {"ray-job.sample.yaml", "ray-cluster.sample.yaml"}:
        assert fit.ok, fit.refusals
    for document in documents:  # Ray TLS: refused at the env entry that turns it on
        for template in _group_templates(document):
            for c, container in enumerate((template.get("spec") or {}).get("containers") or []):
                for e, env in enumerate(container.get("env") or []):
                    if env.get("name") == "RAY_USE_TLS" and env.get("value") == "1":
                        assert any(p.endswith(f"containers[{c}].env[{e}]") for p in paths), paths
    for document in documents:
        for template in _group_templates(document):
            spec = template.get("spec") or {}
            for container in [*(spec.get("containers") or [])[1:], *(spec.get("initContainers") or [])]:
                if not container.get("command") and not container.get("args"):  # the image's entrypoint
                    assert any(f'container "{container["name"]}" has no command' in r.message for r in fit.refusals)


def _group_templates(node: Any) -> list[dict[str, Any]]:
    """The pod templates of every head and worker group in a document."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "headGroupSpec" and isinstance(value, dict):
                found.append(value.get("template") or {})
            if key == "workerGroupSpecs" and isinstance(value, list):
                found.extend(g.get("template") or {} for g in value if isinstance(g, dict))
            found.extend(_group_templates(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_group_templates(item))
    return found


@settings(max_examples=300, deadline=None)
@given(script=st.text(alphabet=st.sampled_from(list("ab-/$()|&;<>'\"`\n #={}[]*c")), max_size=120))
def test_script_programs_never_raises_and_names_only_words_of_the_script(script: str) -> None:
    unquoted = script.replace("'", "").replace('"', "")  # the shell's quote removal: 'a'a runs aa
    for program in script_programs(script):
        assert program in unquoted
