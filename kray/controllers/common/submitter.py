"""How a RayJob's entrypoint reaches Ray: the K8sJobMode submitter Job, the SidecarMode container, the HTTPMode request.

The submitter script is idempotent by design and must stay so: a submitter pod may be retried
(``backoffLimit`` 2), so it first asks ``ray job status`` whether the submission id exists and only
then runs ``ray job submit --no-wait``, and always ends in ``ray job logs --follow`` so the pod's
exit code is the job's. The text is KubeRay's token for token (tokens joined by single spaces),
including Go's quoting of the JSON it embeds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kray._ray.gojson import go_json, go_quote, yaml_to_data
from kray._ray.start import bash_command
from kray.api.v1 import API_VERSION, RayCluster, RayJob
from kray.api.v1.enums import JobSubmissionMode
from kray.api.v1.raycluster import RayClusterSpec
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import (
    JSON,
    append_env,
    controller_reference,
    deep_copy,
    env_value,
    find_container_port,
)
from kray.controllers.common.names import rayjob_submitter_job_name
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions
from kray.controllers.common.pod_env import auth_enabled, set_token_auth_env

__all__ = [
    "SUBMITTER_CONTAINER",
    "SubmitterError",
    "build_http_submit_request",
    "build_rayjob_cluster",
    "build_sidecar_submitter_container",
    "build_submit_request",
    "build_submitter_job",
    "submit_command",
    "with_sidecar_submitter",
]

SUBMITTER_CONTAINER = "ray-job-submitter"
DEFAULT_BACKOFF_LIMIT = 2
GCS_HEALTH_PATH = "api/gcs_healthz"
GCS_HEALTH_TIMEOUT_SECONDS = 10
_PYTHON_HEALTH = (
    "python -c \"import urllib.request; r=urllib.request.urlopen('{url}', timeout={timeout}); "
    "exit(0 if b'success' in r.read() else 1)\""
)
_SEMVER = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")


class SubmitterError(ValueError):
    """The RayJob cannot be turned into a submission (bad runtimeEnvYAML, metadata with too old a Ray)."""


def submit_command(
    *,
    rayjob: RayJob,
    mode: JobSubmissionMode,
    job_id: str,
    dashboard_url: str = "",
    status_check: bool | None = None,
) -> list[str]:
    """``BuildJobSubmitCommand``: the script's tokens. ``dashboard_url`` is ``status.dashboardURL``
    (K8sJobMode); the sidecar talks to ``127.0.0.1`` on the head container's ``dashboard`` port.
    ``status_check`` defaults to KubeRay's choice: always in K8sJobMode, never in SidecarMode."""
    if mode is JobSubmissionMode.SIDECAR:
        port = find_container_port(_head_container(rayjob.spec.ray_cluster_spec), "dashboard", 8265)
        address, health_url = f"http://127.0.0.1:{port}", f"http://localhost:{port}/{GCS_HEALTH_PATH}"
    elif mode is JobSubmissionMode.K8S_JOB:
        address = dashboard_url if dashboard_url.startswith("http://") else f"http://{dashboard_url}"
        health_url = f"{address}/{GCS_HEALTH_PATH}"
    else:
        raise SubmitterError(f"unsupported submission mode for job submit command: {mode}")
    check = mode is JobSubmissionMode.K8S_JOB if status_check is None else status_check
    health = _PYTHON_HEALTH.format(url=health_url, timeout=GCS_HEALTH_TIMEOUT_SECONDS)
    waiting = go_quote(f"Waiting for Ray Dashboard GCS to become healthy at {address} ...")
    cmd = ["until", health, ">/dev/null", "2>&1", ";", "do", "echo", waiting, ";", "sleep", "2", ";", "done", ";"]
    if check:
        cmd += ["if", "!", "ray", "job", "status", "--address", address, job_id, ">/dev/null", "2>&1", ";", "then"]
    cmd += ["ray", "job", "submit", "--address", address]
    if check:
        cmd.append("--no-wait")
    spec = rayjob.spec
    if spec.runtime_env_yaml:
        cmd += ["--runtime-env-json", go_quote(go_json(_runtime_env(spec.runtime_env_yaml)))]
    if spec.metadata:
        _require_metadata_support(spec.ray_cluster_spec)
        cmd += ["--metadata-json", go_quote(go_json(dict(spec.metadata)))]
    if job_id:
        cmd += ["--submission-id", job_id]
    if spec.entrypoint_num_cpus and spec.entrypoint_num_cpus > 0:
        cmd += ["--entrypoint-num-cpus", f"{spec.entrypoint_num_cpus:f}"]
    if spec.entrypoint_num_gpus and spec.entrypoint_num_gpus > 0:
        cmd += ["--entrypoint-num-gpus", f"{spec.entrypoint_num_gpus:f}"]
    if spec.entrypoint_resources:
        cmd += ["--entrypoint-resources", go_quote(spec.entrypoint_resources)]
    cmd += ["--", (spec.entrypoint or "").strip(), ";"]
    if check:
        cmd += ["fi", ";", "ray", "job", "logs", "--address", address, "--follow", job_id]
    return cmd


def build_submitter_job(
    *,
    rayjob: RayJob,
    cluster: RayCluster,
    job_id: str,
    dashboard_url: str,
    owner_uid: str | None = None,
    options: PodBuildOptions = DEFAULT_OPTIONS,
) -> JSON:
    """The K8sJobMode ``batch/v1`` Job ``<rayjob>``, owned by the RayJob. ``cluster`` is the RayCluster the
    job runs on (its head image is the default submitter image; its auth settings are the submitter's)."""
    if rayjob.spec.submitter_pod_template is not None:
        template = deep_copy(rayjob.spec.submitter_pod_template)
    else:
        template = {"spec": {"containers": [_default_container(cluster.spec)], "restartPolicy": "Never"}}
    _configure(
        template["spec"]["containers"][0],
        rayjob=rayjob,
        cluster=cluster,
        mode=JobSubmissionMode.K8S_JOB,
        job_id=job_id,
        dashboard_url=dashboard_url,
        options=options,
    )
    name = rayjob.metadata.name or ""
    uid = owner_uid or rayjob.metadata.uid
    if not uid:
        raise ValueError("the RayJob has no metadata.uid and no owner_uid was given")
    config = rayjob.spec.submitter_config
    backoff = config.backoff_limit if config is not None and config.backoff_limit is not None else DEFAULT_BACKOFF_LIMIT
    labels = {**keys.originated_from(kind="RayJob", name=name), keys.CREATED_BY: keys.COMPONENT_NAME}
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}  # v1.7: on the pods too
    metadata = {
        "name": rayjob_submitter_job_name(name),
        "namespace": rayjob.metadata.namespace or "",
        "labels": dict(labels),
        "ownerReferences": [controller_reference(api_version=API_VERSION, kind="RayJob", name=name, uid=uid)],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {"backoffLimit": backoff, "template": template},
    }


def build_sidecar_submitter_container(
    *,
    rayjob: RayJob,
    cluster_spec: RayClusterSpec,
    cluster_name: str,
    job_id: str,
    dashboard_url: str = "",
    options: PodBuildOptions = DEFAULT_OPTIONS,
) -> JSON:
    """The SidecarMode ``ray-job-submitter`` container appended to the head pod template.

    KubeRay builds it while creating the cluster, when ``status.dashboardURL`` is usually still empty.
    """
    container = _default_container(cluster_spec)
    _configure(
        container,
        rayjob=rayjob,
        cluster=RayCluster.model_validate({"metadata": {"name": cluster_name}, "spec": cluster_spec}),
        mode=JobSubmissionMode.SIDECAR,
        job_id=job_id,
        dashboard_url=dashboard_url,
        options=options,
    )
    return container


def with_sidecar_submitter(*, cluster_spec: RayClusterSpec, container: Mapping[str, Any]) -> RayClusterSpec:
    """The cluster spec of a SidecarMode RayJob: the submitter appended to the head, head ``restartPolicy: Never``."""
    template = deep_copy(cluster_spec.head_group_spec.template)
    template["spec"]["containers"].append(deep_copy(container))
    template["spec"]["restartPolicy"] = "Never"
    head = cluster_spec.head_group_spec.model_copy(update={"template": template})
    return cluster_spec.model_copy(update={"head_group_spec": head})


def build_rayjob_cluster(
    *,
    rayjob: RayJob,
    raw: Mapping[str, Any],
    name: str,
    job_id: str,
    dashboard_url: str = "",
    sidecar: bool,
    options: PodBuildOptions = DEFAULT_OPTIONS,
) -> JSON:
    """The RayCluster a RayJob makes from ``spec.rayClusterSpec`` (``raw`` is the RayJob as stored, so the
    spec is copied as written): its labels and annotations plus the ``originated-from`` and submission-mode
    labels, owned by the RayJob. With ``sidecar`` (SidecarMode on Kubernetes) the head gets the submitter
    container, ``restartPolicy: Never``, and the cluster ``ray.io/disable-provisioned-head-restart``."""
    meta = raw["metadata"]
    spec = deep_copy((raw.get("spec") or {}).get("rayClusterSpec") or {})
    labels = {
        **(meta.get("labels") or {}),
        **keys.originated_from(kind="RayJob", name=meta["name"]),
        keys.JOB_SUBMISSION_MODE: rayjob.spec.submission_mode.value,
    }
    annotations = dict(meta.get("annotations") or {})
    if sidecar:
        annotations[keys.DISABLE_PROVISIONED_HEAD_RESTART] = "true"
        cluster_spec = rayjob.spec.ray_cluster_spec
        if cluster_spec is None:
            raise SubmitterError("SidecarMode needs spec.rayClusterSpec")
        container = build_sidecar_submitter_container(
            rayjob=rayjob,
            cluster_spec=cluster_spec,
            cluster_name=name,
            job_id=job_id,
            dashboard_url=dashboard_url,
            options=options,
        )
        head_spec = spec["headGroupSpec"]["template"].setdefault("spec", {})
        head_spec["containers"] = [*(head_spec.get("containers") or []), container]
        head_spec["restartPolicy"] = "Never"
    owner = controller_reference(api_version=API_VERSION, kind="RayJob", name=meta["name"], uid=meta["uid"])
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


def build_submit_request(*, rayjob: RayJob, job_id: str) -> JSON:
    """HTTPMode: the body of ``POST /api/jobs/``, leaving out what the RayJob does not set."""
    spec = rayjob.spec
    body: JSON = {"entrypoint": spec.entrypoint or ""}
    if job_id:
        body["submission_id"] = job_id
    if spec.runtime_env_yaml:
        body["runtime_env"] = _runtime_env(spec.runtime_env_yaml)
    if spec.metadata:
        body["metadata"] = dict(spec.metadata)
    if spec.entrypoint_num_cpus:
        body["entrypoint_num_cpus"] = spec.entrypoint_num_cpus
    if spec.entrypoint_num_gpus:
        body["entrypoint_num_gpus"] = spec.entrypoint_num_gpus
    if spec.entrypoint_resources:
        body["entrypoint_resources"] = _entrypoint_resources(spec.entrypoint_resources)
    return body


LIGHTWEIGHT_SUBMITTER = "/submitter"
"""The program of KubeRay's light-weight submitter image (``quay.io/kuberay/submitter``):
``/submitter [--runtime-env-json J] [--metadata-json J] [--entrypoint-resources J] [--entrypoint-num-cpus N]
[--entrypoint-num-gpus N] -- ENTRYPOINT`` POSTs the job to ``$RAY_DASHBOARD_ADDRESS`` as ``$RAY_JOB_SUBMISSION_ID``."""
_LIGHTWEIGHT_FLAGS = {
    "runtime-env-json": "runtime_env",
    "metadata-json": "metadata",
    "entrypoint-resources": "entrypoint_resources",
    "entrypoint-num-cpus": "entrypoint_num_cpus",
    "entrypoint-num-gpus": "entrypoint_num_gpus",
}


def build_http_submit_request(*, rayjob: RayJob, job_id: str) -> JSON:
    """The request a place that submits every mode over HTTP sends for this RayJob.

    HTTPMode's request, except for a K8sJobMode job whose submitter pod runs KubeRay's light-weight submitter:
    there the entrypoint and its options are that program's arguments (the RayJob has no entrypoint), so the
    request is the one that program would send.
    """
    spec = rayjob.spec
    if spec.submission_mode is not JobSubmissionMode.K8S_JOB or spec.entrypoint:
        return build_submit_request(rayjob=rayjob, job_id=job_id)
    containers = ((spec.submitter_pod_template or {}).get("spec") or {}).get("containers") or []
    if not containers:
        return build_submit_request(rayjob=rayjob, job_id=job_id)
    container = containers[0]
    command = [str(part) for part in container.get("command") or []]
    if not command or command[0] != LIGHTWEIGHT_SUBMITTER:
        return build_submit_request(rayjob=rayjob, job_id=job_id)
    body = lightweight_submitter_request([*command[1:], *(str(a) for a in container.get("args") or [])])
    return {**body, "submission_id": job_id} if job_id else body


def lightweight_submitter_request(arguments: list[str]) -> JSON:
    """What ``/submitter ARGUMENTS`` POSTs to ``/api/jobs/``; raises SubmitterError for arguments it would reject."""
    values: dict[str, str] = {}
    positional: list[str] = []
    index = 0
    while index < len(arguments):
        token = arguments[index]
        index += 1
        if token == "--":
            positional += arguments[index:]
            break
        name, sep, value = token.removeprefix("--").partition("=")
        if not token.startswith("--") or name not in _LIGHTWEIGHT_FLAGS:
            if token.startswith("-"):
                raise SubmitterError(f"{LIGHTWEIGHT_SUBMITTER}: unknown flag {token}")
            positional.append(token)
            continue
        if not sep:
            if index >= len(arguments):
                raise SubmitterError(f"{LIGHTWEIGHT_SUBMITTER}: flag --{name} needs a value")
            value, index = arguments[index], index + 1
        values[name] = value
    body: JSON = {"entrypoint": " ".join(positional)}
    for name, value in values.items():
        key = _LIGHTWEIGHT_FLAGS[name]
        if name in ("runtime-env-json", "metadata-json"):
            try:
                body[key] = json.loads(value)
            except json.JSONDecodeError as error:
                raise SubmitterError(f"{LIGHTWEIGHT_SUBMITTER}: --{name} is not valid JSON: {error}") from error
        elif name == "entrypoint-resources":
            body[key] = _entrypoint_resources(value)
        else:
            try:
                body[key] = float(value)
            except ValueError:
                raise SubmitterError(f"{LIGHTWEIGHT_SUBMITTER}: --{name} is not a number: {value!r}") from None
    return body


def _configure(
    container: JSON,
    *,
    rayjob: RayJob,
    cluster: RayCluster,
    mode: JobSubmissionMode,
    job_id: str,
    dashboard_url: str,
    options: PodBuildOptions,
) -> None:
    """``configureSubmitterContainer``: the default script unless the user gave a command, then the env."""
    check = None if mode is JobSubmissionMode.K8S_JOB else options.sidecar_submitter_restart
    tokens = submit_command(rayjob=rayjob, mode=mode, job_id=job_id, dashboard_url=dashboard_url, status_check=check)
    if not container.get("command") or mode is JobSubmissionMode.SIDECAR:
        container["command"] = bash_command(options="e", login_shell=options.enable_login_shell)
        container["args"] = [" ".join(tokens)]
    append_env(
        container,
        env_value("PYTHONUNBUFFERED", "1"),
        env_value("RAY_DASHBOARD_ADDRESS", dashboard_url),
        env_value("RAY_JOB_SUBMISSION_ID", job_id),
    )
    if auth_enabled(cluster):
        set_token_auth_env(container, cluster=cluster.metadata.name or "", options=cluster.spec.auth_options)


def _default_container(cluster_spec: RayClusterSpec) -> JSON:
    container: JSON = {"name": SUBMITTER_CONTAINER}
    image = _head_container(cluster_spec).get("image")
    if image:
        container["image"] = image
    container["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "200Mi"}}
    return container


def _head_container(cluster_spec: RayClusterSpec | None) -> Mapping[str, Any]:
    if cluster_spec is None:
        return {}
    containers = (cluster_spec.head_group_spec.template.get("spec") or {}).get("containers") or [{}]
    return containers[0]  # type: ignore[no-any-return]


def _runtime_env(text: str) -> Any:
    try:
        return yaml_to_data(text)
    except Exception as error:  # yaml.YAMLError and friends
        raise SubmitterError(f"runtimeEnvYAML is not valid YAML: {error}") from error


def _entrypoint_resources(text: str) -> dict[str, float]:
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmitterError(f"entrypointResources is not valid JSON: {error}") from error
    if not isinstance(loaded, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in loaded.values()
    ):
        raise SubmitterError("entrypointResources must be a JSON object of numbers")
    return {str(k): float(v) for k, v in loaded.items()}


def _require_metadata_support(cluster_spec: RayClusterSpec | None) -> None:
    """``--metadata-json`` exists from Ray 2.6.0; an unset rayVersion (or a cluster selector) is assumed new enough."""
    version = cluster_spec.ray_version if cluster_spec is not None else None
    if not version:
        return
    match = _SEMVER.fullmatch(version.strip())
    if match is None:
        raise SubmitterError(f"failed to parse Ray version: {version}")
    major, minor, patch = (int(part or 0) for part in match.group(1, 2, 3))
    if (major, minor, patch) < (2, 6, 0) or ((major, minor, patch) == (2, 6, 0) and match.group(4)):
        raise SubmitterError("the Ray version must be at least 2.6.0 to use the metadata field")
