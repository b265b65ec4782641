"""The RayService planner's vocabulary: what the reconcile observed, the actions it may take, the plan.

Kept apart from the decisions so every part of the planner (and its tests) shares one set of frozen
values. Nothing here does I/O; the clock and the random name suffix are inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kray.api.rules.gates import FeatureGates
from kray.api.v1.rayservice import RayService
from kray.controllers.common.options import KUBERAY_VERSION

FINALIZER = "ray.io/rayservice-finalizer"
REQUEUE = 2.0
"""KubeRay's ``ServiceDefaultRequeueDuration``."""
DEFAULT_DELETION_DELAY = 60.0
"""KubeRay's ``RayClusterDeletionDelayDuration``: seconds an old cluster outlives its last use."""
DEFAULT_SERVE_APP_NAME = "default"
"""KubeRay's ``DefaultServeAppName``: what an application named ``""`` is reported as."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Operator settings, with KubeRay's defaults."""

    enable_zero_downtime: bool = True
    """``ENABLE_ZERO_DOWNTIME`` (only ``false`` disables); ``upgradeStrategy.type`` overrides it."""
    gates: FeatureGates = field(default_factory=FeatureGates)
    kuberay_version: str = KUBERAY_VERSION
    """Written as ``ray.io/kuberay-version``; an active cluster carrying another value is updated in place."""
    gateway_api: bool = False
    """Write the Gateway API objects of an incremental upgrade (Gateway, HTTPRoute, per-cluster serve
    Services): on Kubernetes. Off locally, where kray's serve address plays the Gateway's part."""


@dataclass(frozen=True, slots=True)
class HeadPod:
    """The head pod of one cluster, and what its Serve proxy answered."""

    serve_label: str | None = None
    """Its current ``ray.io/serve`` label (None: absent)."""
    proxy_healthy: bool = False
    """``GET http://<podIP>:<serve port>/-/healthz`` answered 200 (the reconcile may skip the probe
    when ``excludeHeadPodFromServeSvc`` is true: the answer is then ignored)."""


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One RayCluster owned by the RayService (labels ``ray.io/originated-from-*``), as observed."""

    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    """The RayCluster's ``status`` (JSON); its ``HeadPodReady`` condition gates the Serve calls."""
    suspend: bool | None = None
    """The RayCluster's ``spec.suspend``: kept on in-place updates (copied from the RayService only at creation)."""
    deleting: bool = False
    """``metadata.deletionTimestamp`` is set."""
    head_pod: HeadPod | None = None
    """None: no head pod exists (yet)."""
    serve_details: Mapping[str, Any] | None = None
    """``GET /api/serve/applications/?api_type=declarative`` (Serve's instance details, JSON), when asked
    (see :func:`~kray.controllers.rayservice.plan.serve_targets`); None: not asked."""
    serve_error: str | None = None
    """The dashboard was asked but did not answer (unreachable, 5xx): the reconcile stops there, as KubeRay's."""
    cached_serve_config: str | None = None
    """The ``serveConfigV2`` last PUT to this cluster (the reconcile's cache, :attr:`PutServeConfig.cache_as`)."""
    serve_port: int = 8000
    """``GetServePort``: the head container's port named ``serve`` (8000 when none): its HTTPRoute backend port."""


@dataclass(frozen=True, slots=True)
class Observed:
    service: RayService
    now: datetime
    clusters: Mapping[str, ClusterView] = field(default_factory=dict)
    """Every RayCluster labelled as this RayService's, by name."""
    head_service_cluster: str | None = None
    """The ``ray.io/cluster`` selector of ``<rs>-head-svc``; None while that Service does not exist."""
    serve_service_cluster: str | None = None
    """The ``ray.io/cluster`` selector of the serve Service; None while it does not exist."""
    num_serve_endpoints: int = 0
    """Unique ready pod UIDs in the EndpointSlices of the serve Service (``kubernetes.io/service-name``)."""
    deletion_schedule: Mapping[str, datetime] = field(default_factory=dict)
    """When each cluster that is neither active nor pending may be deleted: the last plan's
    :attr:`Plan.deletion_schedule`, kept by the reconcile (KubeRay's in-memory timestamp map)."""
    gateway_ready: bool = True
    """Incremental upgrades on Kubernetes: the ``<rs>-gateway`` Gateway is ready (``IsGatewayReady``, read from
    its status). Locally kray's serve address plays the Gateway's part and is always ready."""
    route_ready: bool = True
    """Likewise the ``<rs>-httproute`` HTTPRoute (``IsHTTPRouteReady``)."""
    random_suffix: str = "xxxxx"
    """Five lowercase alphanumerics, drawn by the caller, for a new cluster's name ``<rs>-<suffix>``."""
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True, slots=True)
class AddFinalizer:
    pass


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    pass


@dataclass(frozen=True, slots=True)
class CreateCluster:
    """Create the RayCluster ``name``; ``body`` is the whole object (metadata with owner reference, spec)."""

    name: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UpdateClusterInPlace:
    """Replace ``spec``, ``metadata.labels`` and ``metadata.annotations`` of RayCluster ``name`` by ``body``'s."""

    name: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeleteCluster:
    """Delete RayCluster ``name`` (propagation Background)."""

    name: str


@dataclass(frozen=True, slots=True)
class SetHeadServeLabel:
    """Set the ``ray.io/serve`` label of ``cluster``'s head pod to ``value`` (``"true"``/``"false"``)."""

    cluster: str
    value: str


@dataclass(frozen=True, slots=True)
class PutServeConfig:
    """``PUT /api/serve/applications/`` on ``cluster``'s dashboard with ``config`` (JSON object).

    On success the reconcile caches ``cache_as`` for ``cluster`` (nothing when None: KubeRay does not
    cache an empty ``serveConfigV2``) and passes it back as :attr:`ClusterView.cached_serve_config`.
    """

    cluster: str
    config: Mapping[str, Any]
    cache_as: str | None


@dataclass(frozen=True, slots=True)
class EnsureHeadService:
    """Create ``<rs>-head-svc`` for ``cluster``'s head, or re-point its spec there (keeping its ClusterIP)."""

    cluster: str


@dataclass(frozen=True, slots=True)
class EnsureServeService:
    """Create the serve Service (``<rs>-serve-svc`` or ``spec.serveService``) selecting
    ``{ray.io/cluster: cluster, ray.io/serve: "true"}``, or re-point its spec there."""

    cluster: str


@dataclass(frozen=True, slots=True)
class DeleteServices:
    """Suspend: delete the RayService's head and serve Services (and Gateway/HTTPRoute when any)."""


@dataclass(frozen=True, slots=True)
class EnsureClusterServeService:
    """``reconcilePerClusterServeService``: create ``<cluster>-serve-svc`` (owned by that RayCluster) when it is
    missing; an existing one is left as it is."""

    cluster: str


@dataclass(frozen=True, slots=True)
class EnsureGateway:
    """Create the Gateway ``body``, or replace its ``spec`` when it no longer holds ``body``'s (``reconcileGateway``).
    A server without the Gateway API CRDs halts the reconcile there, as KubeRay's."""

    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EnsureHTTPRoute:
    """Create the HTTPRoute ``body``, or replace its ``spec`` (its weights) when it differs (``reconcileHTTPRoute``)."""

    body: Mapping[str, Any]


Action = (
    AddFinalizer
    | RemoveFinalizer
    | CreateCluster
    | UpdateClusterInPlace
    | DeleteCluster
    | SetHeadServeLabel
    | PutServeConfig
    | EnsureHeadService
    | EnsureServeService
    | DeleteServices
    | EnsureClusterServeService
    | EnsureGateway
    | EnsureHTTPRoute
)


@dataclass(frozen=True, slots=True)
class Plan:
    status: Mapping[str, Any] | None
    """The status to write (KubeRay's JSON form, ``lastUpdateTime`` set); None: leave it as it is."""
    actions: tuple[Action, ...] = ()
    """In order; the reconcile stops at the first that fails and requeues."""
    deletion_schedule: Mapping[str, datetime] = field(default_factory=dict)
    """Keep this for the next :attr:`Observed.deletion_schedule`."""
    keep_serve_configs: frozenset[str] = frozenset()
    """Cluster names whose cached Serve config is still needed; drop the others from the cache."""
    requeue_after: float | None = REQUEUE
    events: tuple[tuple[str, str, str], ...] = ()
    """(type, reason, message) events to record. Actions' own success/failure events are the reconcile's."""
    halted: str | None = None
    """Why the reconcile stopped early (as KubeRay returns an error there): status is then None."""
