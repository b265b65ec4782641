"""A K8sJobMode RayJob run by KubeRay's light-weight submitter, where every mode is submitted over HTTP (local mode).

Its entrypoint and options are the ``/submitter`` program's arguments, not the RayJob's (KubeRay's sample
``ray-job.light-weight-submitter.yaml`` has no ``spec.entrypoint``): the request must be the one that program
would send, or the job runs an empty entrypoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kray.api.v1 import RayJob
from kray.controllers.common.submitter import SubmitterError, build_http_submit_request
from tests.controllers.builders.support import UID, minimal_spec

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "kuberay-samples" / "ray-job.light-weight-submitter.yaml"


def job(**spec: Any) -> RayJob:
    body = {"rayClusterSpec": minimal_spec(rayVersion="2.52.0"), **spec}
    metadata = {"name": "job", "namespace": "default", "uid": UID}
    return RayJob.model_validate({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": metadata, "spec": body})


def submitter(*args: str, command: tuple[str, ...] = ("/submitter",)) -> dict[str, Any]:
    container = {"name": "submitter", "image": "quay.io/kuberay/submitter:v1.5.1", "command": list(command)}
    return {"spec": {"restartPolicy": "Never", "containers": [{**container, "args": list(args)}]}}


def test_kuberay_sample_submits_the_submitters_entrypoint_and_runtime_env() -> None:
    document = next(d for d in yaml.safe_load_all(SAMPLE.read_text()) if d and d.get("kind") == "RayJob")
    document["metadata"].update(namespace="default", uid=UID)
    body = build_http_submit_request(rayjob=RayJob.model_validate(document), job_id="sub-1")
    assert body == {
        "entrypoint": "python /home/ray/samples/sample_code.py",
        "submission_id": "sub-1",
        "runtime_env": {"pip": ["requests==2.26.0", "pendulum==2.1.2"], "env_vars": {"counter_name": "test_counter"}},
    }


def test_every_flag_in_both_spellings() -> None:
    template = submitter(
        '--metadata-json={"team": "a"}',
        "--entrypoint-num-cpus",
        "1.5",
        "--entrypoint-num-gpus=0",
        "--entrypoint-resources",
        '{"r": 2}',
        "--",
        "python",
        "-c",
        "print(1)",
    )
    body = build_http_submit_request(rayjob=job(submitterPodTemplate=template), job_id="")
    assert body == {
        "entrypoint": "python -c print(1)",
        "metadata": {"team": "a"},
        "entrypoint_num_cpus": 1.5,
        "entrypoint_num_gpus": 0.0,
        "entrypoint_resources": {"r": 2.0},
    }


def test_other_jobs_keep_their_own_request() -> None:
    with_entrypoint = job(entrypoint="python x.py", submitterPodTemplate=submitter("--", "python", "y.py"))
    assert build_http_submit_request(rayjob=with_entrypoint, job_id="i")["entrypoint"] == "python x.py"
    other_program = job(entrypoint="python x.py", submitterPodTemplate=submitter("a", command=("/bin/sh", "-c")))
    assert build_http_submit_request(rayjob=other_program, job_id="i")["entrypoint"] == "python x.py"
    http_mode = job(submissionMode="HTTPMode", entrypoint="python z.py", submitterPodTemplate=submitter("--", "w"))
    assert build_http_submit_request(rayjob=http_mode, job_id="")["entrypoint"] == "python z.py"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--runtime-env-json", "{not json", "--", "x"), "--runtime-env-json is not valid JSON"),
        (("--entrypoint-num-cpus=many", "--", "x"), "--entrypoint-num-cpus is not a number"),
        (("--verbose", "--", "x"), "unknown flag --verbose"),
        (("--metadata-json",), "--metadata-json needs a value"),
    ],
)
def test_arguments_the_submitter_would_reject(args: tuple[str, ...], says: str) -> None:
    with pytest.raises(SubmitterError, match=says):
        build_http_submit_request(rayjob=job(submitterPodTemplate=submitter(*args)), job_id="i")
