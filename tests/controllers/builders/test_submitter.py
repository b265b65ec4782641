"""RayJob submission: the submit script (token for token), the submitter Job, the sidecar, the HTTP request."""

from __future__ import annotations

from typing import Any

import pytest

from kray.api.v1 import RayCluster, RayJob
from kray.api.v1.enums import JobSubmissionMode
from kray.controllers.common.options import PodBuildOptions
from kray.controllers.common.submitter import (
    SubmitterError,
    build_rayjob_cluster,
    build_sidecar_submitter_container,
    build_submit_request,
    build_submitter_job,
    submit_command,
    with_sidecar_submitter,
)
from tests.controllers.builders.support import UID, container, env_map, minimal_spec

ENTRYPOINT = "echo no quote 'single quote' \"double quote\""
ADDRESS = "http://127.0.0.1:8265"
HEALTH = (
    "python -c \"import urllib.request; r=urllib.request.urlopen('{url}', timeout=10); "
    "exit(0 if b'success' in r.read() else 1)\""
)


def rayjob(**spec: Any) -> RayJob:
    cluster_spec = spec.pop("rayClusterSpec", minimal_spec(rayVersion="2.52.0"))
    body = {"entrypoint": ENTRYPOINT, "rayClusterSpec": cluster_spec, **spec}
    metadata = {"name": "job", "namespace": "default", "uid": UID}
    return RayJob.model_validate({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": metadata, "spec": body})


def cluster_of(job: RayJob, name: str = "job-b9q4r") -> RayCluster:
    assert job.spec.ray_cluster_spec is not None
    return RayCluster.model_validate(
        {"metadata": {"name": name, "namespace": "default"}, "spec": job.spec.ray_cluster_spec}
    )


def full_job() -> RayJob:
    return rayjob(
        runtimeEnvYAML="env_vars:\n  test: test\n",
        metadata={"testKey": "testValue"},
        entrypointNumCpus=1,
        entrypointNumGpus=0.5,
        entrypointResources='{"Custom_1": 1, "Custom_2": 5.5}',
    )


OPTIONS_TOKENS = [
    "--runtime-env-json",
    '"{\\"env_vars\\":{\\"test\\":\\"test\\"}}"',
    "--metadata-json",
    '"{\\"testKey\\":\\"testValue\\"}"',
    "--submission-id",
    "testJobId",
    "--entrypoint-num-cpus",
    "1.000000",
    "--entrypoint-num-gpus",
    "0.500000",
    "--entrypoint-resources",
    '"{\\"Custom_1\\": 1, \\"Custom_2\\": 5.5}"',
]


def test_k8s_job_mode_command() -> None:
    tokens = submit_command(
        rayjob=full_job(), mode=JobSubmissionMode.K8S_JOB, job_id="testJobId", dashboard_url="127.0.0.1:8265"
    )
    assert tokens == [
        "until", HEALTH.format(url=f"{ADDRESS}/api/gcs_healthz"), ">/dev/null", "2>&1", ";",
        "do", "echo", f'"Waiting for Ray Dashboard GCS to become healthy at {ADDRESS} ..."', ";",
        "sleep", "2", ";", "done", ";",
        "if", "!", "ray", "job", "status", "--address", ADDRESS, "testJobId", ">/dev/null", "2>&1", ";", "then",
        "ray", "job", "submit", "--address", ADDRESS, "--no-wait",
        *OPTIONS_TOKENS,
        "--", ENTRYPOINT, ";", "fi", ";",
        "ray", "job", "logs", "--address", ADDRESS, "--follow", "testJobId",
    ]  # fmt: skip


def test_sidecar_mode_command_uses_the_head_dashboard_port() -> None:
    ports = [{"name": "dashboard", "containerPort": 8266}]
    spec = minimal_spec(head={"template": {"spec": {"containers": [container(ports=ports)]}}})
    job = rayjob(rayClusterSpec=spec)
    tokens = submit_command(rayjob=job, mode=JobSubmissionMode.SIDECAR, job_id="id")
    assert tokens[1] == HEALTH.format(url="http://localhost:8266/api/gcs_healthz")
    assert tokens[14:] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8266", "--submission-id", "id",
                           "--", ENTRYPOINT, ";"]  # fmt: skip
    checked = submit_command(rayjob=job, mode=JobSubmissionMode.SIDECAR, job_id="id", status_check=True)
    assert "--no-wait" in checked
    assert checked[-1] == "id"


def test_dashboard_url_scheme_is_added_once() -> None:
    job = rayjob()
    for url in ("svc:8265", "http://svc:8265"):
        tokens = submit_command(rayjob=job, mode=JobSubmissionMode.K8S_JOB, job_id="i", dashboard_url=url)
        assert "http://svc:8265" in tokens


def test_unsupported_mode() -> None:
    with pytest.raises(SubmitterError):
        submit_command(rayjob=rayjob(), mode=JobSubmissionMode.HTTP, job_id="i")


def test_runtime_env_json_is_go_json_go_quoted() -> None:
    yaml_text = "pip:\n  - requests==2.26.0\nenv_vars:\n  html: '<a&b>'\n  n: 1.0\nconda: null\n"
    tokens = submit_command(rayjob=rayjob(runtimeEnvYAML=yaml_text), mode=JobSubmissionMode.K8S_JOB, job_id="i")
    value = tokens[tokens.index("--runtime-env-json") + 1]
    assert value == (
        '"{\\"conda\\":null,\\"env_vars\\":{\\"html\\":\\"\\\\u003ca\\\\u0026b\\\\u003e\\",\\"n\\":1},'
        '\\"pip\\":[\\"requests==2.26.0\\"]}"'
    )


def test_bad_runtime_env_yaml() -> None:
    with pytest.raises(SubmitterError):
        submit_command(rayjob=rayjob(runtimeEnvYAML="a: [1"), mode=JobSubmissionMode.K8S_JOB, job_id="i")


@pytest.mark.parametrize(("version", "ok"), [("2.6.0", True), ("2.52.0", True), ("2.5.1", False), ("x.y", False)])
def test_metadata_needs_ray_2_6(version: str, ok: bool) -> None:
    job = rayjob(metadata={"k": "v"}, rayClusterSpec=minimal_spec(rayVersion=version))
    if ok:
        submit_command(rayjob=job, mode=JobSubmissionMode.K8S_JOB, job_id="i")
    else:
        with pytest.raises(SubmitterError):
            submit_command(rayjob=job, mode=JobSubmissionMode.K8S_JOB, job_id="i")


def test_submitter_job_defaults() -> None:
    job = rayjob()
    k8s_job = build_submitter_job(rayjob=job, cluster=cluster_of(job), job_id="job-m2x7z", dashboard_url="d:8265")
    assert k8s_job["apiVersion"] == "batch/v1"
    assert k8s_job["kind"] == "Job"
    assert k8s_job["metadata"]["name"] == "job"
    assert k8s_job["metadata"]["labels"] == {
        "ray.io/originated-from-cr-name": "job",
        "ray.io/originated-from-crd": "RayJob",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    assert k8s_job["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
    assert k8s_job["spec"]["backoffLimit"] == 2
    template = k8s_job["spec"]["template"]
    assert template["metadata"]["labels"] == k8s_job["metadata"]["labels"], "v1.7: the pods carry them too"
    assert template["spec"]["restartPolicy"] == "Never"
    submitter = template["spec"]["containers"][0]
    assert submitter["name"] == "ray-job-submitter"
    assert submitter["image"] == "rayproject/ray:2.52.0"
    assert submitter["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "200Mi"},
    }
    assert submitter["command"] == ["/bin/bash", "-ce", "--"]
    assert submitter["args"][0].startswith("until python -c ")
    assert " ; fi ; ray job logs --address http://d:8265 --follow job-m2x7z" in submitter["args"][0]
    assert env_map(submitter) == {
        "PYTHONUNBUFFERED": "1",
        "RAY_DASHBOARD_ADDRESS": "d:8265",
        "RAY_JOB_SUBMISSION_ID": "job-m2x7z",
    }


def test_submitter_job_user_template_and_backoff() -> None:
    template = {"spec": {"containers": [{"name": "mine", "image": "x", "command": ["run"]}], "restartPolicy": "Never"}}
    job = rayjob(submitterPodTemplate=template, submitterConfig={"backoffLimit": 5})
    k8s_job = build_submitter_job(rayjob=job, cluster=cluster_of(job), job_id="i", dashboard_url="d")
    mine = k8s_job["spec"]["template"]["spec"]["containers"][0]
    assert (mine["command"], "args" in mine) == (["run"], False)
    assert env_map(mine)["RAY_JOB_SUBMISSION_ID"] == "i"
    assert k8s_job["spec"]["backoffLimit"] == 5
    no_command = rayjob(submitterPodTemplate={"spec": {"containers": [{"name": "mine", "image": "x"}]}})
    built = build_submitter_job(rayjob=no_command, cluster=cluster_of(no_command), job_id="i", dashboard_url="d")
    assert built["spec"]["template"]["spec"]["containers"][0]["command"] == ["/bin/bash", "-ce", "--"]


def test_submitter_gets_auth_env() -> None:
    job = rayjob(rayClusterSpec=minimal_spec(authOptions={"mode": "token"}))
    k8s_job = build_submitter_job(rayjob=job, cluster=cluster_of(job), job_id="i", dashboard_url="d")
    values = env_map(k8s_job["spec"]["template"]["spec"]["containers"][0])
    assert values["RAY_AUTH_MODE"] == "token"
    assert values["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "job-b9q4r", "key": "auth_token"}}


def test_sidecar_container_and_cluster_spec() -> None:
    job = rayjob(submissionMode="SidecarMode")
    spec = job.spec.ray_cluster_spec
    assert spec is not None
    sidecar = build_sidecar_submitter_container(rayjob=job, cluster_spec=spec, cluster_name="job-b9q4r", job_id="i")
    assert sidecar["name"] == "ray-job-submitter"
    assert sidecar["command"] == ["/bin/bash", "-ce", "--"]
    assert "--no-wait" not in sidecar["args"][0]
    assert sidecar["args"][0].endswith(f"-- {ENTRYPOINT} ;")
    assert sidecar["env"][1] == {"name": "RAY_DASHBOARD_ADDRESS"}
    gated = build_sidecar_submitter_container(
        rayjob=job,
        cluster_spec=spec,
        cluster_name="c",
        job_id="i",
        options=PodBuildOptions(sidecar_submitter_restart=True),
    )
    assert "--no-wait" in gated["args"][0]
    new_spec = with_sidecar_submitter(cluster_spec=spec, container=sidecar)
    template = new_spec.head_group_spec.template["spec"]
    assert template["containers"][-1] == sidecar
    assert template["restartPolicy"] == "Never"
    assert len(spec.head_group_spec.template["spec"]["containers"]) == 1


def test_http_mode_request_body() -> None:
    assert build_submit_request(rayjob=rayjob(), job_id="") == {"entrypoint": ENTRYPOINT}
    assert build_submit_request(rayjob=full_job(), job_id="id") == {
        "entrypoint": ENTRYPOINT,
        "submission_id": "id",
        "runtime_env": {"env_vars": {"test": "test"}},
        "metadata": {"testKey": "testValue"},
        "entrypoint_num_cpus": 1,
        "entrypoint_num_gpus": 0.5,
        "entrypoint_resources": {"Custom_1": 1.0, "Custom_2": 5.5},
    }
    with pytest.raises(SubmitterError):
        build_submit_request(rayjob=rayjob(entrypointResources="[1]"), job_id="i")


def raw_of(job: RayJob) -> dict[str, Any]:
    return job.model_dump(mode="json", by_alias=True, exclude_none=True)


def test_rayjob_cluster_for_k8s_job_mode_is_the_spec_as_written() -> None:
    job = rayjob(submissionMode="K8sJobMode")
    raw = raw_of(job)
    raw["metadata"]["labels"] = {"team": "a"}
    raw["metadata"]["annotations"] = {"note": "x"}
    cluster = build_rayjob_cluster(rayjob=job, raw=raw, name="job-b9q4r", job_id="i", sidecar=False)
    assert cluster["metadata"]["labels"] == {
        "team": "a",
        "ray.io/originated-from-cr-name": "job",
        "ray.io/originated-from-crd": "RayJob",
        "ray.io/job-submission-mode": "K8sJobMode",
    }
    assert cluster["metadata"]["annotations"] == {"note": "x"}
    assert cluster["metadata"]["ownerReferences"][0]["uid"] == UID
    assert cluster["spec"] == raw["spec"]["rayClusterSpec"]


def test_rayjob_cluster_for_sidecar_mode_carries_the_submitter() -> None:
    job = rayjob(submissionMode="SidecarMode")
    cluster = build_rayjob_cluster(rayjob=job, raw=raw_of(job), name="job-b9q4r", job_id="job-m2x7z", sidecar=True)
    assert cluster["metadata"]["annotations"] == {"ray.io/disable-provisioned-head-restart": "true"}
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["restartPolicy"] == "Never"
    assert [c["name"] for c in head["containers"]][-1] == "ray-job-submitter"
    assert env_map(head["containers"][-1])["RAY_JOB_SUBMISSION_ID"] == "job-m2x7z"
