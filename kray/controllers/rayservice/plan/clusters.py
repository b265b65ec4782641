"""Which RayClusters a RayService needs: creation, in-place update, a new pending cluster, deletion.

KubeRay decides by two annotations it writes on every cluster it creates: a hash of the cluster
spec without the fields that change while serving (``ray.io/hash-without-replicas-and-workers-to-delete``)
and the number of worker groups (``ray.io/num-worker-groups``). Equal hash: nothing to do. Equal hash of
the spec cut to the cluster's first groups: only groups were appended, update in place. Otherwise a new
cluster (blue/green), unless zero-downtime upgrades are off. Functions of ``rayservice_controller.go``:
``shouldUpdateCluster``, ``isClusterSpecHashEqual``, ``shouldPrepareNewCluster``,
``isZeroDowntimeUpgradeEnabled``, ``constructRayClusterForRayService``, ``cleanUpRayClusterInstance``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from kray.api.v1.enums import RayServiceUpgradeType
from kray.api.v1.rayservice import RayService
from kray.controllers.common import labels as keys
from kray.controllers.common._k8s import controller_reference
from kray.controllers.raycluster.upgrade import recreate_hash
from kray.controllers.rayservice.plan.model import DEFAULT_DELETION_DELAY, ClusterView, Settings

RAYSERVICE_KIND = "RayService"


def cluster_hash(spec: Mapping[str, Any]) -> str:
    """``generateHashWithoutReplicasAndWorkersToDelete``: the RayCluster spec's hash without its scale
    (replicas, min/max, workersToDelete), pod tolerations and schedulingGates, ``upgradeStrategy`` and
    ``suspend`` (Kueue's to change). kray's canonical JSON, so the value differs from KubeRay's own."""
    trimmed = dict(spec)
    trimmed.pop("suspend", None)
    return recreate_hash(trimmed)


def _spec(service: RayService) -> dict[str, Any]:
    return service.spec.ray_cluster_config.to_dict()


def incremental_enabled(service: RayService, settings: Settings) -> bool:
    """``IsIncrementalUpgradeEnabled``: the gate is on and the type asks for it."""
    strategy = service.spec.upgrade_strategy
    return (
        settings.gates.RayServiceIncrementalUpgrade
        and strategy is not None
        and strategy.type == RayServiceUpgradeType.NEW_CLUSTER_WITH_INCREMENTAL_UPGRADE
    )


def zero_downtime_enabled(service: RayService, settings: Settings) -> bool:
    """``isZeroDowntimeUpgradeEnabled``: ``upgradeStrategy.type`` decides when set, else ``ENABLE_ZERO_DOWNTIME``."""
    strategy = service.spec.upgrade_strategy
    kind = strategy.type if strategy is not None else None
    if kind is not None:
        allowed = {RayServiceUpgradeType.NEW_CLUSTER.value}
        if settings.gates.RayServiceIncrementalUpgrade:
            allowed.add(RayServiceUpgradeType.NEW_CLUSTER_WITH_INCREMENTAL_UPGRADE.value)
        return kind in allowed
    return settings.enable_zero_downtime


def spec_hash_equal(service: RayService, cluster: ClusterView, *, partial: bool) -> bool:
    """``isClusterSpecHashEqual``; ``partial`` compares only the cluster's first ``num-worker-groups`` groups."""
    current = cluster.annotations.get(keys.HASH_WITHOUT_REPLICAS, "")
    spec = _spec(service)
    if not partial:
        return current == cluster_hash(spec)
    try:
        count = int(cluster.annotations.get(keys.NUM_WORKER_GROUPS, ""))
    except ValueError:
        return True  # KubeRay's quirk: an unreadable count counts as "only groups appended"
    groups = spec.get("workerGroupSpecs") or []
    goal = ""
    if len(groups) >= count:
        goal = cluster_hash({**spec, "workerGroupSpecs": groups[:count]})
    return current == goal


def should_update(
    service: RayService, cluster: ClusterView | None, *, active: bool, upgrading: bool, settings: Settings
) -> bool:
    """``shouldUpdateCluster``: update in place when only groups were appended (or, for the active
    cluster outside an upgrade, when another KubeRay version created it)."""
    if cluster is None:
        return False
    if active:
        if upgrading:
            return False
        if cluster.annotations.get(keys.KUBERAY_VERSION) != settings.kuberay_version:
            return True
    if spec_hash_equal(service, cluster, partial=False):
        return False
    return spec_hash_equal(service, cluster, partial=True)


def should_prepare_new(
    service: RayService,
    *,
    active: ClusterView | None,
    pending: ClusterView | None,
    pending_serving: bool,
    settings: Settings,
) -> bool:
    """``shouldPrepareNewCluster``: a first cluster, or a changed spec that cannot be applied in place."""
    if pending_serving:
        return False
    if active is None and pending is None:
        return True
    cluster = pending if pending is not None else active
    assert cluster is not None
    if spec_hash_equal(service, cluster, partial=False) or spec_hash_equal(service, cluster, partial=True):
        return False
    return zero_downtime_enabled(service, settings)


def cluster_body(
    service: RayService,
    name: str,
    *,
    settings: Settings,
    keep_suspend: bool | None = None,
    updating: bool = False,
    without_replicas: bool = False,
) -> dict[str, Any]:
    """``constructRayClusterForRayService``: labels and annotations of the RayService plus KubeRay's own.

    ``spec.suspend`` is the RayService's only at creation; an update keeps the cluster's (``keep_suspend``).
    ``without_replicas``: an incremental upgrade's pending cluster starts without ``replicas``.
    """
    meta = service.metadata
    spec = _spec(service)
    labels = {**(meta.labels or {}), **keys.originated_from(kind=RAYSERVICE_KIND, name=meta.name or "")}
    annotations = {
        **(meta.annotations or {}),
        keys.HASH_WITHOUT_REPLICAS: cluster_hash(spec),
        keys.NUM_WORKER_GROUPS: str(len(spec.get("workerGroupSpecs") or [])),
        keys.KUBERAY_VERSION: settings.kuberay_version,
    }
    body_spec = copy.deepcopy(spec)
    if updating:
        body_spec.pop("suspend", None)
        if keep_suspend is not None:
            body_spec["suspend"] = keep_suspend
    if without_replicas:
        for group in body_spec.get("workerGroupSpecs") or ():
            group.pop("replicas", None)
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if meta.namespace:
        metadata["namespace"] = meta.namespace
    if meta.uid:
        metadata["ownerReferences"] = [
            controller_reference(api_version="ray.io/v1", kind=RAYSERVICE_KIND, name=meta.name or "", uid=meta.uid)
        ]
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": metadata, "spec": body_spec}


def deletion_delay(service: RayService) -> float:
    delay = service.spec.ray_cluster_deletion_delay_seconds
    return DEFAULT_DELETION_DELAY if delay is None else float(delay)


def schedule_cleanup(
    *,
    clusters: Mapping[str, ClusterView],
    keep: frozenset[str],
    schedule: Mapping[str, datetime],
    now: datetime,
    delay: float,
) -> tuple[dict[str, datetime], tuple[str, ...]]:
    """``cleanUpRayClusterInstance``: (the new schedule, the clusters to delete now).

    A cluster that is neither active nor pending is scheduled ``delay`` seconds from the first time it
    is seen so, and deleted once that time has passed. Entries of clusters gone are dropped (KubeRay's
    map keeps them: a name is never reused, so it makes no difference).
    """
    new: dict[str, datetime] = {}
    deletions: list[str] = []
    for name in sorted(clusters):
        if name in keep:
            continue
        when = schedule.get(name)
        if when is None:
            new[name] = now + timedelta(seconds=delay)
            continue
        new[name] = when
        if now > when and not clusters[name].deleting:
            deletions.append(name)
    return new, tuple(deletions)
