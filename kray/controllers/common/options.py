"""What the operator configures about the children it builds, with KubeRay's defaults.

KubeRay reads these from environment variables and its ``Configuration`` file at the moment it
builds a pod; here they are one frozen value passed to every builder, so a build is a pure function
of (object, options). Local mode changes ports and the head address *only* through this value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kray._ray.start import RayPorts
from kray.controllers.common.names import DEFAULT_CLUSTER_DOMAIN

KUBERAY_VERSION = "v1.7.0"
"""The KubeRay release kray is compatible with; Ray's usage stats and ``ray.io/kuberay-version`` report it."""


@dataclass(frozen=True)
class PodBuildOptions:
    """Operator settings that shape pods and services (env var names in KubeRay given per field)."""

    kuberay_version: str = KUBERAY_VERSION
    """Reported in ``RAY_USAGE_STATS_EXTRA_TAGS`` and the head's ``ray.io/kuberay-version`` annotation."""
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    """``CLUSTER_DOMAIN``: the DNS suffix of Service FQDNs."""
    head_host: str | None = None
    """Where workers, init containers and submitters reach the head; None means the head Service's
    FQDN ``<svc>.<ns>.svc.<cluster_domain>``. Local mode sets a loopback address here."""
    ports: RayPorts = field(default_factory=RayPorts)
    """Ray's default ports, used where ``rayStartParams`` and container ports are silent."""
    enable_probes_injection: bool = True
    """``ENABLE_PROBES_INJECTION``: add liveness/readiness probes to Ray containers that have none."""
    enable_init_container_injection: bool = True
    """``ENABLE_INIT_CONTAINER_INJECTION``: give workers the ``wait-gcs-ready`` init container."""
    enable_login_shell: bool = False
    """``ENABLE_LOGIN_SHELL``: run generated commands with ``/bin/bash -lc`` instead of ``-c``."""
    deterministic_head_pod_name: bool = False
    """``ENABLE_DETERMINISTIC_HEAD_POD_NAME``: name the head ``<cluster>-head`` instead of generating a name."""
    multi_host_indexing: bool = True
    """Feature gate ``RayMultiHostIndexing`` (beta, on): worker replica-index labels."""
    sidecar_submitter_restart: bool = False
    """Feature gate ``SidecarSubmitterRestart`` (alpha, off): the sidecar submitter checks before submitting."""
    default_container_envs: tuple[Mapping[str, Any], ...] = ()
    """``defaultContainerEnvs``: env vars added to every Ray container that does not set them."""
    default_pod_labels: Mapping[str, str] = field(default_factory=dict)
    """``defaultPodLabels``: added to every Ray pod unless the pod already has the key."""
    default_pod_annotations: Mapping[str, str] = field(default_factory=dict)
    """``defaultPodAnnotations``: added to every Ray pod unless the pod already has the key."""
    head_sidecar_containers: tuple[Mapping[str, Any], ...] = ()
    """``headSidecarContainers``: appended to every head pod."""
    worker_sidecar_containers: tuple[Mapping[str, Any], ...] = ()
    """``workerSidecarContainers``: appended to every worker pod."""
    head_cluster_ip_service: bool = False
    """``ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE``: give the head a ClusterIP Service instead of a headless one."""


DEFAULT_OPTIONS = PodBuildOptions()
