"""Head and worker pods exactly as KubeRay builds them from a RayCluster (``common/pod.go`` + the controller).

KubeRay builds a pod in two phases and so do we, because later steps read what earlier ones wrote:

1. *template* (``DefaultHeadPodTemplate`` / ``DefaultWorkerPodTemplate``): names, labels, annotations,
   the ``wait-gcs-ready`` init container (a snapshot of the user's Ray container), the autoscaler
   sidecar, GCS fault tolerance, the ``metrics`` port, auth and TLS wiring, operator sidecars;
2. *pod* (``BuildPod``): ``/dev/shm`` and shared-log volumes, the ``ray start`` command, the env vars
   every Ray container gets, default probes; then the controller reference and operator defaults.

``containers[0]`` is the Ray container. Inputs are never mutated; every call returns fresh JSON.
"""

from __future__ import annotations

from collections.abc import Mapping

from kray._ray.start import NodeType, container_command, head_port, ray_start_line, ray_start_params
from kray.api.v1 import API_VERSION, RayCluster, WorkerGroupSpec
from kray.api.v1.enums import AutoscalerVersion
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import JSON, append_env, append_volume, controller_reference, deep_copy, env_value
from kray.controllers.common.names import (
    autoscaler_service_account_name,
    deterministic_head_pod_name,
    fqdn,
    head_pod_generate_name,
    head_service_name,
    worker_pod_generate_name,
)
from kray.controllers.common.options import DEFAULT_OPTIONS, PodBuildOptions
from kray.controllers.common.pod_env import (
    TLS_VOLUME,
    auth_enabled,
    configure_gcs_ft,
    configure_token_auth,
    set_container_tls,
    set_init_container_env,
    set_ray_container_env,
    set_token_auth_env,
    tls_enabled,
    tls_volume,
)
from kray.controllers.common.pod_parts import (
    AUTOSCALER_CONTAINER,
    SHARED_MEMORY_PATH,
    SHARED_MEMORY_VOLUME,
    WAIT_FOR_TLS,
    WAIT_GCS_READY,
    add_empty_dir,
    add_metrics_port,
    add_probes,
    autoscaler_container,
    merge_autoscaler_options,
    share_ray_logs,
    wait_for_tls_container,
    wait_gcs_ready_container,
)

__all__ = ["DEFAULT_OPTIONS", "PodBuildOptions", "build_head_pod", "build_worker_pod", "creator_kind", "head_host"]


def head_host(cluster: RayCluster, *, options: PodBuildOptions = DEFAULT_OPTIONS) -> str:
    """Where the head is reached from other pods: ``options.head_host``, else the head Service's FQDN."""
    if options.head_host is not None:
        return options.head_host
    service = cluster.spec.head_group_spec.head_service or {}
    override = (service.get("metadata") or {}).get("name") or None
    name = head_service_name(_name(cluster), override=override)
    return fqdn(name, _namespace(cluster), cluster_domain=options.cluster_domain)


def creator_kind(cluster: RayCluster) -> str:
    """The CRD that created the cluster (``ray.io/originated-from-crd``): RayJob, RayService or RayCluster."""
    kind = (cluster.metadata.labels or {}).get(keys.ORIGINATED_FROM_CRD, "")
    return kind if kind in ("RayJob", "RayService") else "RayCluster"


def build_head_pod(
    *,
    cluster: RayCluster,
    options: PodBuildOptions = DEFAULT_OPTIONS,
    owner_uid: str | None = None,
    recreate_hash: str | None = None,
) -> JSON:
    """The head pod to create. ``owner_uid`` defaults to the cluster's UID; ``recreate_hash`` (set by the
    caller for ``upgradeStrategy: Recreate``) is recorded with the KubeRay version in annotations."""
    spec, head = cluster.spec, cluster.spec.head_group_spec
    name, host = _name(cluster), head_host(cluster, options=options)
    port = head_port(head.ray_start_params, ports=options.ports)
    template = deep_copy(head.template)
    metadata, pod_spec = template.setdefault("metadata", {}), template["spec"]
    if options.deterministic_head_pod_name:
        metadata["name"] = deterministic_head_pod_name(name)
    else:
        metadata["generateName"] = head_pod_generate_name(name)
    metadata["namespace"] = _namespace(cluster)
    user_labels = {**(metadata.get("labels") or {}), **(head.labels or {})}
    metadata["labels"] = keys.pod_labels(node_type=NodeType.HEAD, cluster=name, group=keys.HEAD_GROUP, user=user_labels)
    _propagate_overwrite_annotation(metadata, cluster)
    ray = pod_spec["containers"][0]
    forced: dict[str, str] = {}
    autoscaling = bool(spec.enable_in_tree_autoscaling)
    if autoscaling:
        forced["no-monitor"] = "true"
        account = pod_spec.get("serviceAccountName") or None
        pod_spec["serviceAccountName"] = autoscaler_service_account_name(name, head_service_account=account)
        autoscaler = autoscaler_container(image=ray.get("image"), options=spec.autoscaler_options)
        if auth_enabled(cluster):
            set_token_auth_env(autoscaler, cluster=name, options=spec.auth_options)
        if tls_enabled(cluster):
            set_container_tls(autoscaler)
        merge_autoscaler_options(autoscaler, spec.autoscaler_options)
        pod_spec["containers"].append(autoscaler)
        version = _autoscaler_version(cluster)
        if version is not None:
            append_env(
                ray, env_value("RAY_enable_autoscaler_v2", "true" if version is AutoscalerVersion.V2 else "false")
            )
        if version is AutoscalerVersion.V2:
            pod_spec["restartPolicy"] = "Never"
    forced.update(configure_gcs_ft(template, cluster=cluster, node_type=NodeType.HEAD))
    _finish_template(template, cluster=cluster, node_type=NodeType.HEAD, options=options)
    pod_spec["containers"].extend(deep_copy(c) for c in options.head_sidecar_containers)
    params = ray_start_params(
        node_type=NodeType.HEAD,
        params=head.ray_start_params,
        container_resources=ray.get("resources"),
        head_address=f"{host}:{port}",
        group_resources=head.resources,
        group_labels=head.labels,
        forced=forced,
        ports=options.ports,
    )
    pod = _build_pod(
        template, cluster=cluster, node_type=NodeType.HEAD, params=params, host=host, port=port, options=options
    )
    if recreate_hash is not None:
        annotations = pod["metadata"].setdefault("annotations", {})
        annotations[keys.UPGRADE_STRATEGY_RECREATE_HASH] = recreate_hash
        annotations[keys.KUBERAY_VERSION] = options.kuberay_version
    return _finish_pod(pod, cluster=cluster, owner_uid=owner_uid, options=options)


def build_worker_pod(
    *,
    cluster: RayCluster,
    group: WorkerGroupSpec,
    replica_index: int,
    replica_name: str | None = None,
    host_index: int = 0,
    options: PodBuildOptions = DEFAULT_OPTIONS,
    owner_uid: str | None = None,
) -> JSON:
    """A worker pod of ``group``. ``replica_index`` is the ``ray.io/worker-group-replica-index`` label;
    multi-host groups (``numOfHosts > 1``) also need ``replica_name`` (``<group>-<5 random>``) and ``host_index``."""
    name, host = _name(cluster), head_host(cluster, options=options)
    port = head_port(cluster.spec.head_group_spec.ray_start_params, ports=options.ports)
    template = deep_copy(group.template)
    metadata, pod_spec = template.setdefault("metadata", {}), template["spec"]
    metadata["generateName"] = worker_pod_generate_name(name, group.group_name)
    metadata["namespace"] = _namespace(cluster)
    ray = pod_spec["containers"][0]
    if options.enable_init_container_injection:
        init = wait_gcs_ready_container(ray, head_host=host, port=port, login_shell=options.enable_login_shell)
        pod_spec.setdefault("initContainers", []).append(init)
    metadata.pop("name", None)
    user_labels = {**(metadata.get("labels") or {}), **(group.labels or {})}
    labels = keys.pod_labels(node_type=NodeType.WORKER, cluster=name, group=group.group_name, user=user_labels)
    if options.multi_host_indexing:
        labels[keys.WORKER_REPLICA_INDEX] = str(replica_index)
        if group.num_of_hosts > 1:
            if replica_name is None:
                raise ValueError(f"worker group {group.group_name!r} has numOfHosts > 1: a replica_name is required")
            labels[keys.WORKER_REPLICA_NAME] = replica_name
            labels[keys.REPLICA_HOST_INDEX] = str(host_index)
    metadata["labels"] = labels
    _propagate_overwrite_annotation(metadata, cluster)
    configure_gcs_ft(template, cluster=cluster, node_type=NodeType.WORKER)
    if cluster.spec.enable_in_tree_autoscaling and _autoscaler_version(cluster) is AutoscalerVersion.V2:
        pod_spec["restartPolicy"] = "Never"
    _finish_template(template, cluster=cluster, node_type=NodeType.WORKER, options=options)
    pod_spec["containers"].extend(deep_copy(c) for c in options.worker_sidecar_containers)
    params = ray_start_params(
        node_type=NodeType.WORKER,
        params=group.ray_start_params,
        container_resources=ray.get("resources"),
        head_address=f"{host}:{port}",
        group_resources=group.resources,
        group_labels=group.labels,
        ports=options.ports,
    )
    pod = _build_pod(
        template, cluster=cluster, node_type=NodeType.WORKER, params=params, host=host, port=port, options=options
    )
    return _finish_pod(pod, cluster=cluster, owner_uid=owner_uid, options=options)


def _finish_template(template: JSON, *, cluster: RayCluster, node_type: NodeType, options: PodBuildOptions) -> None:
    """The template steps shared by head and worker after GCS FT: metrics port, auth, TLS."""
    pod_spec = template["spec"]
    add_metrics_port(pod_spec["containers"][0], port=options.ports.metrics)
    if auth_enabled(cluster):
        configure_token_auth(pod_spec, cluster=cluster)
    if tls_enabled(cluster):
        if not any(v.get("name") == TLS_VOLUME for v in pod_spec.get("volumes") or ()):
            append_volume(pod_spec, tls_volume(_name(cluster), node_type))
        set_container_tls(pod_spec["containers"][0])
        inits = pod_spec.setdefault("initContainers", [])
        for init in inits:
            if init.get("name") == WAIT_GCS_READY:
                set_container_tls(init)
        if not any(init.get("name") == WAIT_FOR_TLS for init in inits):
            inits.insert(0, wait_for_tls_container(pod_spec["containers"][0]))


def _build_pod(
    template: JSON,
    *,
    cluster: RayCluster,
    node_type: NodeType,
    params: Mapping[str, str],
    host: str,
    port: str,
    options: PodBuildOptions,
) -> JSON:
    """``BuildPod``: volumes, the generated command, env vars and probes of the Ray container."""
    metadata, pod_spec = template["metadata"], template["spec"]
    creator = creator_kind(cluster)
    if creator == "RayService":
        metadata["labels"][keys.SERVE] = "false" if node_type is NodeType.HEAD else "true"
    ray = pod_spec["containers"][0]
    if "plasma-directory" not in params:
        add_empty_dir(pod_spec, ray, name=SHARED_MEMORY_VOLUME, path=SHARED_MEMORY_PATH, memory=True)
    if node_type is NodeType.HEAD and cluster.spec.enable_in_tree_autoscaling:
        autoscaler = next(c for c in pod_spec["containers"] if c.get("name") == AUTOSCALER_CONTAINER)
        share_ray_logs(pod_spec, ray, autoscaler)
    start_line = ray_start_line(node_type=node_type, params=params)
    overwrite = (metadata.get("annotations") or {}).get(keys.OVERWRITE_CONTAINER_CMD, "").lower() == "true"
    command = container_command(
        command=ray.get("command"),
        args=ray.get("args"),
        start_line=start_line,
        overwrite=overwrite,
        login_shell=options.enable_login_shell,
    )
    if command is not None:
        ray["command"], ray["args"] = command
    for init in pod_spec.get("initContainers") or ():
        set_init_container_env(init, head_host=host)
    set_ray_container_env(
        ray,
        node_type=node_type,
        head_host=host,
        port=port,
        start_line=start_line,
        creator=creator,
        kuberay_version=options.kuberay_version,
        default_envs=options.default_container_envs,
    )
    if options.enable_probes_injection:
        add_probes(
            ray,
            node_type=node_type,
            creator=creator,
            params=params,
            ray_version=cluster.spec.ray_version,
            ports=options.ports,
        )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def _finish_pod(pod: JSON, *, cluster: RayCluster, owner_uid: str | None, options: PodBuildOptions) -> JSON:
    """The controller reference to the cluster, then the operator's default labels and annotations."""
    uid = owner_uid or cluster.metadata.uid
    if not uid:
        raise ValueError("the RayCluster has no metadata.uid and no owner_uid was given")
    metadata = pod["metadata"]
    owner = controller_reference(api_version=API_VERSION, kind="RayCluster", name=_name(cluster), uid=uid)
    metadata["ownerReferences"] = [owner]
    for field, defaults in (("labels", options.default_pod_labels), ("annotations", options.default_pod_annotations)):
        for key, value in defaults.items():
            metadata.setdefault(field, {}).setdefault(key, value)
    if not metadata.get("annotations"):
        metadata.pop("annotations", None)
    return pod


def _propagate_overwrite_annotation(metadata: JSON, cluster: RayCluster) -> None:
    """``initTemplateAnnotations``: the cluster's ``ray.io/overwrite-container-cmd: "true"`` reaches its pods."""
    annotations = metadata.setdefault("annotations", {})
    if (cluster.metadata.annotations or {}).get(keys.OVERWRITE_CONTAINER_CMD, "").lower() == "true":
        annotations[keys.OVERWRITE_CONTAINER_CMD] = "true"


def _autoscaler_version(cluster: RayCluster) -> AutoscalerVersion | None:
    options = cluster.spec.autoscaler_options
    return None if options is None else options.version


def _name(cluster: RayCluster) -> str:
    if not cluster.metadata.name:
        raise ValueError("the RayCluster has no metadata.name")
    return cluster.metadata.name


def _namespace(cluster: RayCluster) -> str:
    if not cluster.metadata.namespace:
        raise ValueError("the RayCluster has no metadata.namespace")
    return cluster.metadata.namespace
