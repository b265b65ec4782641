"""Environment variables and volumes KubeRay injects into Ray pods: addresses, auth, GCS fault tolerance, TLS.

Ray and its tools read these names (``RAY_ADDRESS`` for ``ray.init()``, ``RAY_AUTH_TOKEN`` for token
auth, ``RAY_external_storage_namespace`` for GCS FT), so both names and order follow KubeRay. Where
KubeRay checks for an existing variable the user's value wins; where it appends blindly, so do we.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from kray._ray.start import NodeType
from kray.api.v1 import RayCluster
from kray.api.v1.enums import AuthMode, GcsFaultToleranceBackend
from kray.api.v1.raycluster import AuthOptions
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import (
    JSON,
    append_env,
    append_env_if_absent,
    append_mount,
    append_volume,
    env_field_ref,
    env_value,
    has_mount_named,
    has_volume,
)
from kray.controllers.common.names import auth_secret_name, gcs_pvc_name, service_from_fqdn, tls_secret_name

LOCAL_HOST = "127.0.0.1"
AUTH_TOKEN_SECRET_KEY = "auth_token"
RAY_TOKEN_VOLUME = "ray-token"
RAY_TOKEN_MOUNT_PATH = "/var/run/secrets/ray.io/serviceaccount"
TLS_VOLUME = "ray-tls"
TLS_MOUNT_PATH = "/etc/ray/tls"
GCS_STORAGE_VOLUME = "gcs-storage"
GCS_STORAGE_PATH = "/data/gcs"
WORKER_GCS_RECONNECT_TIMEOUT_S = "600"


def ray_ip(head_host: str) -> str:
    """``RAY_IP`` (deprecated): the head Service's name, i.e. the first label of its FQDN.

    An IP address (local mode) is kept whole rather than cut at its first dot.
    """
    try:
        ipaddress.ip_address(head_host)
    except ValueError:
        return service_from_fqdn(head_host)
    return head_host


def set_init_container_env(container: JSON, *, head_host: str) -> None:
    """Every init container learns where the head is: ``FQ_RAY_IP`` and ``RAY_IP``."""
    append_env(container, env_value("FQ_RAY_IP", head_host), env_value("RAY_IP", ray_ip(head_host)))


def set_ray_container_env(
    container: JSON,
    *,
    node_type: NodeType,
    head_host: str,
    port: str,
    start_line: str,
    creator: str,
    kuberay_version: str,
    default_envs: tuple[Mapping[str, Any], ...] = (),
) -> None:
    """``setContainerEnvVars``: the variables every Ray container gets, in KubeRay's order."""
    for default in default_envs:
        append_env_if_absent(container, dict(default))
    host = LOCAL_HOST
    if node_type is NodeType.WORKER:
        host = head_host
        append_env(container, env_value("FQ_RAY_IP", head_host), env_value("RAY_IP", ray_ip(head_host)))
    append_env(
        container,
        env_field_ref("RAY_CLUSTER_NAME", f"metadata.labels['{keys.RAY_CLUSTER}']"),
        env_field_ref("RAY_CLUSTER_NAMESPACE", "metadata.namespace"),
        env_field_ref("RAY_CLOUD_INSTANCE_ID", "metadata.name"),
        env_field_ref("RAY_NODE_TYPE_NAME", f"metadata.labels['{keys.RAY_GROUP}']"),
        env_value("KUBERAY_GEN_RAY_START_CMD", start_line),
    )
    append_env_if_absent(container, env_value("RAY_PORT", port))
    if creator == "RayService":
        append_env_if_absent(container, env_value("RAY_timeout_ms_task_wait_for_death_info", "0"))
        append_env_if_absent(container, env_value("RAY_gcs_server_request_timeout_seconds", "5"))
        append_env_if_absent(container, env_value("RAY_SERVE_KV_TIMEOUT_S", "5"))
    append_env_if_absent(container, env_value("RAY_ADDRESS", f"{host}:{port}"))
    append_env_if_absent(container, env_value("RAY_USAGE_STATS_KUBERAY_IN_USE", "1"))
    if node_type is NodeType.HEAD:
        tags = f"kuberay_version={kuberay_version};kuberay_crd={creator}"
        append_env(container, env_value("RAY_USAGE_STATS_EXTRA_TAGS", tags))
    append_env_if_absent(container, env_value("RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1"))


def auth_enabled(cluster: RayCluster) -> bool:
    options = cluster.spec.auth_options
    return options is not None and options.mode is AuthMode.TOKEN


def k8s_auth_enabled(options: AuthOptions | None) -> bool:
    return options is not None and bool(options.enable_k8s_token_auth)


def set_token_auth_env(container: JSON, *, cluster: str, options: AuthOptions | None) -> None:
    """``SetContainerTokenAuthEnvVars``: ``RAY_AUTH_MODE=token`` plus the token (Secret) or the SA token mount."""
    append_env_if_absent(container, env_value("RAY_AUTH_MODE", "token"))
    if k8s_auth_enabled(options):
        append_env_if_absent(container, env_value("RAY_ENABLE_K8S_TOKEN_AUTH", "true"))
        if not has_mount_named(container, RAY_TOKEN_VOLUME):
            append_mount(container, {"name": RAY_TOKEN_VOLUME, "mountPath": RAY_TOKEN_MOUNT_PATH, "readOnly": True})
        return
    secret = auth_secret_name(cluster, override=options.secret_name if options is not None else None)
    token = {"secretKeyRef": {"name": secret, "key": AUTH_TOKEN_SECRET_KEY}}
    append_env_if_absent(container, {"name": "RAY_AUTH_TOKEN", "valueFrom": token})


def configure_token_auth(pod_spec: JSON, *, cluster: RayCluster) -> None:
    """``configureTokenAuth``: the Ray container and ``wait-gcs-ready`` get auth env; k8s auth adds the token volume."""
    options = cluster.spec.auth_options
    set_token_auth_env(pod_spec["containers"][0], cluster=cluster.metadata.name or "", options=options)
    if k8s_auth_enabled(options) and not has_volume(pod_spec, RAY_TOKEN_VOLUME):
        token = {"serviceAccountToken": {"path": "token"}}
        append_volume(pod_spec, {"name": RAY_TOKEN_VOLUME, "projected": {"sources": [token]}})
    for init in pod_spec.get("initContainers") or ():
        if init.get("name") == "wait-gcs-ready":
            set_token_auth_env(init, cluster=cluster.metadata.name or "", options=options)


def ft_enabled(cluster: RayCluster) -> bool:
    annotations = cluster.metadata.annotations or {}
    legacy = annotations.get(keys.FT_ENABLED, "").lower() == "true"
    return legacy or cluster.spec.gcs_fault_tolerance_options is not None


def configure_gcs_ft(template: JSON, *, cluster: RayCluster, node_type: NodeType) -> dict[str, str]:
    """``configureGCSFaultTolerance``; returns the ``rayStartParams`` it forces on the head."""
    annotations = template["metadata"].setdefault("annotations", {})
    enabled = ft_enabled(cluster)
    if node_type is NodeType.HEAD:
        annotations[keys.FT_ENABLED] = "true" if enabled else "false"
    if not enabled:
        return {}
    container = template["spec"]["containers"][0]
    if node_type is NodeType.WORKER:
        timeout = env_value("RAY_gcs_rpc_server_reconnect_timeout_s", WORKER_GCS_RECONNECT_TIMEOUT_S)
        append_env_if_absent(container, timeout)
        return {}
    options = cluster.spec.gcs_fault_tolerance_options
    if options is not None and options.backend is GcsFaultToleranceBackend.ROCKSDB:
        append_env_if_absent(container, env_value("RAY_gcs_storage", "rocksdb"))
        append_env_if_absent(container, env_value("RAY_gcs_storage_path", GCS_STORAGE_PATH))
        mount: JSON = {"name": GCS_STORAGE_VOLUME, "mountPath": GCS_STORAGE_PATH}
        if options.storage is not None and options.storage.sub_path:
            mount["subPath"] = options.storage.sub_path
        append_mount(container, mount)
        claim_name = options.storage.claim_name if options.storage is not None else None
        claim = gcs_pvc_name(cluster.metadata.name or "", claim_name=claim_name)
        append_volume(template["spec"], {"name": GCS_STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
        return {}
    namespace = cluster.metadata.uid or ""
    namespace = (cluster.metadata.annotations or {}).get(keys.EXTERNAL_STORAGE_NAMESPACE, namespace)
    if options is not None and options.external_storage_namespace:
        namespace = options.external_storage_namespace
    annotations[keys.EXTERNAL_STORAGE_NAMESPACE] = namespace
    append_env_if_absent(container, env_value("RAY_external_storage_namespace", namespace))
    forced: dict[str, str] = {}
    if options is None:
        password = (cluster.spec.head_group_spec.ray_start_params or {}).get("redis-password")
        if password is not None:
            append_env_if_absent(container, env_value("REDIS_PASSWORD", password))
        return forced
    append_env(container, env_value("RAY_REDIS_ADDRESS", options.redis_address or ""))
    for name, param, credential in (
        ("REDIS_USERNAME", "redis-username", options.redis_username),
        ("REDIS_PASSWORD", "redis-password", options.redis_password),
    ):
        if credential is not None:
            forced[param] = f"${name}"
            variable: JSON = {"name": name}
            if credential.value:
                variable["value"] = credential.value
            if credential.value_from is not None:
                variable["valueFrom"] = credential.value_from
            append_env(container, variable)
    return forced


def tls_enabled(cluster: RayCluster) -> bool:
    options = cluster.spec.tls_options
    return options is not None and bool(options.enabled)


def set_container_tls(container: JSON) -> None:
    """``SetContainerTLSConfig``: Ray's TLS variables and the certificate mount, each only once."""
    for name, value in (
        ("RAY_USE_TLS", "1"),
        ("RAY_TLS_SERVER_CERT", f"{TLS_MOUNT_PATH}/tls.crt"),
        ("RAY_TLS_SERVER_KEY", f"{TLS_MOUNT_PATH}/tls.key"),
        ("RAY_TLS_CA_CERT", f"{TLS_MOUNT_PATH}/ca.crt"),
    ):
        append_env_if_absent(container, env_value(name, value))
    mounts = container.get("volumeMounts") or ()
    if not any(m.get("name") == TLS_VOLUME or m.get("mountPath") == TLS_MOUNT_PATH for m in mounts):
        append_mount(container, {"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True})


def tls_volume(cluster: str, node_type: NodeType) -> JSON:
    return {"name": TLS_VOLUME, "secret": {"secretName": tls_secret_name(cluster, node_type)}}
