"""The pieces KubeRay adds to Ray pods: the autoscaler sidecar, init containers, probes, emptyDir volumes.

Each piece is a fact users depend on: the autoscaler sidecar's command and env are what the Ray
autoscaler expects; the probes decide when KubeRay thinks a node is healthy; ``/dev/shm`` sizes
Ray's object store. The literal scripts and thresholds below are KubeRay's, kept verbatim.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from kray._ray.quantity import QuantityError, format_quantity, parse_quantity
from kray._ray.start import NodeType, RayPorts, bash_command
from kray.api.v1.raycluster import AutoscalerOptions
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import (
    JSON,
    append_mount,
    append_volume,
    deep_copy,
    env_field_ref,
    env_value,
    find_container_port,
    has_volume,
    mounted_at,
    resources,
)
from kray.controllers.common.pod_env import TLS_MOUNT_PATH, TLS_VOLUME

AUTOSCALER_CONTAINER = "autoscaler"
AUTOSCALER_START_COMMAND = (
    "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
)
WAIT_GCS_READY = "wait-gcs-ready"
WAIT_FOR_TLS = "wait-for-tls-ip-san"
SHARED_MEMORY_VOLUME = "shared-mem"
SHARED_MEMORY_PATH = "/dev/shm"
RAY_LOGS_VOLUME = "ray-logs"
RAY_LOGS_PATH = "/tmp/ray"
UNIFIED_HEALTH_PATH = "/api/healthz"
UNIFIED_HEALTH_MIN_RAY = (2, 53, 0)

# Probe settings (KubeRay utils/constant.go).
READINESS = {"initialDelaySeconds": 10, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 10}
LIVENESS = {"initialDelaySeconds": 30, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 120}
PROBE_TIMEOUT = {NodeType.HEAD: 5, NodeType.WORKER: 2}
SERVE_READINESS_FAILURE_THRESHOLD = 1


def autoscaler_container(*, image: str | None, options: AutoscalerOptions | None) -> JSON:
    """``BuildAutoscalerContainer`` before ``autoscalerOptions`` are merged (see :func:`merge_autoscaler_options`)."""
    container: JSON = {"name": AUTOSCALER_CONTAINER}
    if image:
        container["image"] = image
    container["command"] = bash_command()
    container["args"] = [AUTOSCALER_START_COMMAND]
    container["env"] = [
        env_field_ref("RAY_CLUSTER_NAME", f"metadata.labels['{keys.RAY_CLUSTER}']"),
        env_field_ref("RAY_CLUSTER_NAMESPACE", "metadata.namespace"),
        env_field_ref("RAY_HEAD_POD_NAME", "metadata.name"),
        env_value("KUBERAY_CRD_VER", "v1"),
        env_value("KUBERAY_GEN_AUTOSCALER_START_CMD", AUTOSCALER_START_COMMAND),
    ]
    fixed = {"cpu": "500m", "memory": "512Mi"}
    container["resources"] = resources(limits=fixed, requests=fixed)
    container["imagePullPolicy"] = "IfNotPresent"
    return container


def merge_autoscaler_options(container: JSON, options: AutoscalerOptions | None) -> None:
    """``mergeAutoscalerOverrides``: replace resources/image/policy/securityContext/command/args, append env/mounts."""
    if options is None:
        return
    if options.resources is not None:
        container["resources"] = deep_copy(options.resources)
    if options.image is not None:
        container["image"] = options.image
    if options.image_pull_policy is not None:
        container["imagePullPolicy"] = options.image_pull_policy
    for field, extra in (("env", options.env), ("envFrom", options.env_from), ("volumeMounts", options.volume_mounts)):
        if extra:
            container.setdefault(field, []).extend(deep_copy(item) for item in extra)
    if options.security_context is not None:
        container["securityContext"] = deep_copy(options.security_context)
    if options.command:
        container["command"] = list(options.command)
    if options.args:
        container["args"] = list(options.args)


_WAIT_GCS_SCRIPT = """
\t\t\t\t\tSECONDS=0
\t\t\t\t\twhile true; do
\t\t\t\t\t\tif (( SECONDS <= 120 )); then
\t\t\t\t\t\t\tif ray health-check --address {address} > /dev/null 2>&1; then
\t\t\t\t\t\t\t\techo "GCS is ready."
\t\t\t\t\t\t\t\tbreak
\t\t\t\t\t\t\tfi
\t\t\t\t\t\t\techo "$SECONDS seconds elapsed: Waiting for GCS to be ready."
\t\t\t\t\t\telse
\t\t\t\t\t\t\tif ray health-check --address {address}; then
\t\t\t\t\t\t\t\techo "GCS is ready. Any error messages above can be safely ignored."
\t\t\t\t\t\t\t\tbreak
\t\t\t\t\t\t\tfi
\t\t\t\t\t\t\techo "$SECONDS seconds elapsed: Still waiting for GCS to be ready. For troubleshooting, \
refer to the FAQ at https://docs.ray.io/en/master/cluster/kubernetes/troubleshooting.html."
\t\t\t\t\t\tfi
\t\t\t\t\t\tsleep 5
\t\t\t\t\tdone
\t\t\t\t"""


def wait_gcs_ready_container(ray_container: Mapping[str, Any], *, head_host: str, port: str, login_shell: bool) -> JSON:
    """The worker init container that blocks until ``ray health-check`` reaches the head's GCS.

    It copies the Ray container's env and mounts *as they are now* (before KubeRay adds its own),
    so TLS settings that point at mounted files work for the health check too.
    """
    container: JSON = {"name": WAIT_GCS_READY}
    if ray_container.get("image"):
        container["image"] = ray_container["image"]
    container["command"] = bash_command(login_shell=login_shell)
    container["args"] = [_WAIT_GCS_SCRIPT.format(address=f"{head_host}:{port}")]
    if ray_container.get("env"):
        container["env"] = copy.deepcopy(ray_container["env"])
    fixed = {"cpu": "200m", "memory": "256Mi"}
    container["resources"] = resources(limits=fixed, requests=fixed)
    if ray_container.get("volumeMounts"):
        container["volumeMounts"] = copy.deepcopy(ray_container["volumeMounts"])
    if ray_container.get("imagePullPolicy"):
        container["imagePullPolicy"] = ray_container["imagePullPolicy"]
    if ray_container.get("securityContext") is not None:
        container["securityContext"] = deep_copy(ray_container["securityContext"])
    return container


_WAIT_TLS_SCRIPT = """CERT="{cert}"
if [ -z "${{POD_IP}}" ]; then
  POD_IP=$(hostname -i 2>/dev/null | awk '{{print $1}}')
fi
if ! command -v openssl >/dev/null 2>&1; then
  echo "openssl not found; cannot verify IP SAN" >&2
  exit 1
fi
echo "Waiting for TLS cert to include IP SAN for ${{POD_IP}}..."
while true; do
  if openssl x509 -in "${{CERT}}" -noout -text 2>/dev/null | grep -qE "IP Address:${{POD_IP}}([^0-9.]|$)"; then
    echo "TLS cert now includes IP SAN for ${{POD_IP}}"
    exit 0
  fi
  echo "IP SAN for ${{POD_IP}} not yet in cert, retrying in 5s..."
  sleep 5
done"""


def wait_for_tls_container(ray_container: Mapping[str, Any]) -> JSON:
    """The mTLS init container that waits until cert-manager put the pod's IP into its certificate."""
    container: JSON = {"name": WAIT_FOR_TLS}
    if ray_container.get("image"):
        container["image"] = ray_container["image"]
    container["command"] = ["sh", "-c"]
    container["args"] = [_WAIT_TLS_SCRIPT.format(cert=f"{TLS_MOUNT_PATH}/tls.crt")]
    container["env"] = [env_field_ref("POD_IP", "status.podIP")]
    fixed = {"cpu": "50m", "memory": "64Mi"}
    container["resources"] = resources(limits=fixed, requests=fixed)
    container["volumeMounts"] = [{"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True}]
    if ray_container.get("imagePullPolicy"):
        container["imagePullPolicy"] = ray_container["imagePullPolicy"]
    if ray_container.get("securityContext") is not None:
        container["securityContext"] = deep_copy(ray_container["securityContext"])
    return container


def add_empty_dir(pod_spec: JSON, container: JSON, *, name: str, path: str, memory: bool) -> None:
    """``addEmptyDir``: mount an emptyDir at ``path`` unless something is mounted there already.

    A memory-backed volume is limited to the container's memory limit (else request), in canonical form.
    """
    if mounted_at(container, path):
        return
    if not has_volume(pod_spec, name):
        empty_dir: JSON = {}
        if memory:
            empty_dir["medium"] = "Memory"
            size = _memory_limit_or_request(container)
            if size is not None:
                empty_dir["sizeLimit"] = size
        append_volume(pod_spec, {"name": name, "emptyDir": empty_dir})
    append_mount(container, {"name": name, "mountPath": path})


def _memory_limit_or_request(container: Mapping[str, Any]) -> Any:
    spec = container.get("resources") or {}
    for kind in ("limits", "requests"):
        value = (spec.get(kind) or {}).get("memory")
        if value is not None:
            try:
                return format_quantity(parse_quantity(value))
            except QuantityError:
                return value
    return None


def supports_unified_health_check(ray_version: str | None) -> bool:
    """Ray ≥ 2.53.0 answers one HTTP health endpoint (KubeRay parses versions leniently, as Go's ``ParseGeneric``)."""
    match = re.match(r"\s*v?([0-9]+(?:\.[0-9]+)+)", ray_version or "")
    if match is None:
        return False
    parts = [int(p) for p in match.group(1).split(".")]
    parts += [0] * (len(UNIFIED_HEALTH_MIN_RAY) - len(parts))
    return tuple(parts) >= UNIFIED_HEALTH_MIN_RAY


def _wget(timeout: int, port: int, path: str) -> str:
    return f"wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"


def add_probes(
    container: JSON,
    *,
    node_type: NodeType,
    creator: str,
    params: Mapping[str, str],
    ray_version: str | None,
    ports: RayPorts,
) -> None:
    """``initLivenessAndReadinessProbe``: default probes for a Ray container that has none of its own."""
    agent_port = _port_param(params, "dashboard-agent-listen-port", ports.dashboard_agent)
    commands = [_wget(2, agent_port, "api/local_raylet_healthz")]
    if node_type is NodeType.HEAD:
        commands.append(_wget(10, _port_param(params, "dashboard-port", ports.dashboard), "api/gcs_healthz"))
    unified = supports_unified_health_check(ray_version)

    def handler() -> JSON:
        if unified:
            return {"httpGet": {"path": UNIFIED_HEALTH_PATH, "port": agent_port}}
        return {"exec": {"command": ["bash", "-c", " && ".join(commands)]}}

    timeout = PROBE_TIMEOUT[node_type]
    if container.get("livenessProbe") is None:
        container["livenessProbe"] = _probe(handler(), LIVENESS, timeout)
    if container.get("readinessProbe") is None:
        readiness = _probe(handler(), READINESS, timeout)
        if creator == "RayService" and node_type is NodeType.WORKER:
            serve_port = find_container_port(container, "serve", ports.serve)
            serve = [*commands, _wget(10, serve_port, "-/healthz")]
            readiness = _probe({"exec": {"command": ["bash", "-c", " && ".join(serve)]}}, READINESS, timeout)
            readiness["failureThreshold"] = SERVE_READINESS_FAILURE_THRESHOLD
        container["readinessProbe"] = readiness


def _probe(handler: JSON, settings: Mapping[str, int], timeout: int) -> JSON:
    probe = dict(handler)
    probe["initialDelaySeconds"] = settings["initialDelaySeconds"]
    probe["timeoutSeconds"] = timeout
    for key in ("periodSeconds", "successThreshold", "failureThreshold"):
        probe[key] = settings[key]
    return probe


def _port_param(params: Mapping[str, str], key: str, default: int) -> int:
    """A port from ``rayStartParams`` if it parses as an int32, else the default."""
    raw = params.get(key, "")
    if re.fullmatch(r"[+-]?[0-9]+", raw) is None:
        return default
    port = int(raw)
    return port if -(2**31) <= port < 2**31 else default


def add_metrics_port(container: JSON, *, port: int) -> None:
    """Expose ``metrics`` on the Ray container for Prometheus, unless a port of that name exists."""
    if not any(p.get("name") == "metrics" for p in container.get("ports") or ()):
        container.setdefault("ports", []).append({"name": "metrics", "containerPort": port})


def share_ray_logs(pod_spec: JSON, *containers: JSON) -> None:
    """The autoscaler reads Ray's logs: both containers mount one ``/tmp/ray`` emptyDir."""
    for container in containers:
        add_empty_dir(pod_spec, container, name=RAY_LOGS_VOLUME, path=RAY_LOGS_PATH, memory=False)


__all__ = [
    "AUTOSCALER_CONTAINER",
    "WAIT_GCS_READY",
    "add_empty_dir",
    "add_metrics_port",
    "add_probes",
    "autoscaler_container",
    "merge_autoscaler_options",
    "share_ray_logs",
    "supports_unified_health_check",
    "wait_for_tls_container",
    "wait_gcs_ready_container",
]
