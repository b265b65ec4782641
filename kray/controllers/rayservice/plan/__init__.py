"""The RayService planner (pure): observed snapshot in, actions and status out. See :mod:`.machine`.

The reconcile built on it (store and dashboard I/O) does, per RayService:

1. Gather an :class:`Observed`: the RayService; every RayCluster labelled
   ``ray.io/originated-from-crd=RayService, ray.io/originated-from-cr-name=<rs>`` as a
   :class:`ClusterView` (annotations, status, head pod with its ``ray.io/serve`` label and the answer of
   ``GET :<serve port>/-/healthz``, the Serve config it cached for that cluster); the ``ray.io/cluster``
   selector of ``<rs>-head-svc`` and of the serve Service; the ready serve endpoints; the last plan's
   deletion schedule; ``now``; five random characters; the operator :class:`Settings`.
2. For each name of :func:`serve_targets`, ``GET /api/serve/applications/?api_type=declarative`` (cached and
   spaced) into ``ClusterView.serve_details`` (or ``serve_error``), then call :func:`plan`.
3. Execute ``Plan.actions`` in order, stopping at the first failure (requeue); record their events.
   On a successful :class:`PutServeConfig` cache ``cache_as`` for its cluster; drop cached configs of
   clusters not in ``Plan.keep_serve_configs``; keep ``Plan.deletion_schedule`` for the next call.
4. Write ``Plan.status`` when not None (the status subresource), record ``Plan.events``, requeue after
   ``Plan.requeue_after`` seconds (None: only on the next watch event).

The reconcile holds no other state: the deletion schedule and the Serve config cache are its only memory,
as KubeRay's two in-memory maps are.
"""

from kray.controllers.rayservice.plan.clusters import cluster_hash, incremental_enabled, zero_downtime_enabled
from kray.controllers.rayservice.plan.machine import head_ready, plan, serve_targets
from kray.controllers.rayservice.plan.model import (
    DEFAULT_DELETION_DELAY,
    FINALIZER,
    REQUEUE,
    Action,
    AddFinalizer,
    ClusterView,
    CreateCluster,
    DeleteCluster,
    DeleteServices,
    EnsureClusterServeService,
    EnsureGateway,
    EnsureHeadService,
    EnsureHTTPRoute,
    EnsureServeService,
    HeadPod,
    Observed,
    Plan,
    PutServeConfig,
    RemoveFinalizer,
    SetHeadServeLabel,
    Settings,
    UpdateClusterInPlace,
)

__all__ = [
    "DEFAULT_DELETION_DELAY",
    "FINALIZER",
    "REQUEUE",
    "Action",
    "AddFinalizer",
    "ClusterView",
    "CreateCluster",
    "DeleteCluster",
    "DeleteServices",
    "EnsureClusterServeService",
    "EnsureGateway",
    "EnsureHTTPRoute",
    "EnsureHeadService",
    "EnsureServeService",
    "HeadPod",
    "Observed",
    "Plan",
    "PutServeConfig",
    "RemoveFinalizer",
    "SetHeadServeLabel",
    "Settings",
    "UpdateClusterInPlace",
    "cluster_hash",
    "head_ready",
    "incremental_enabled",
    "plan",
    "serve_targets",
    "zero_downtime_enabled",
]
