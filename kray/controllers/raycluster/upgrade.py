"""The spec hash behind ``upgradeStrategy: Recreate`` (``ray.io/upgrade-strategy-recreate-hash`` on the head). Pure.

KubeRay records a hash of the RayCluster spec on every head pod it creates and, for ``Recreate``
clusters, deletes every pod once the spec's hash no longer matches. Fields that change without
meaning a new cluster are left out: the scale (``replicas``, ``minReplicas``, ``maxReplicas``,
``workersToDelete`` — the autoscaler writes them), pod ``tolerations`` and ``schedulingGates``
(written by queueing systems such as Kueue), and ``upgradeStrategy`` itself.

The value has KubeRay's shape (SHA-1, base32hex, 32 characters) but is computed over kray's
canonical JSON (sorted keys), not Go's struct-order JSON, so it differs from the value KubeRay
writes for the same spec: a head pod created by KubeRay is not recognised as up to date.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

_TEMPLATE_FIELDS = ("tolerations", "schedulingGates")
_SCALE_FIELDS = ("replicas", "minReplicas", "maxReplicas")


def recreate_hash(spec: Mapping[str, Any]) -> str:
    """The hash of a RayCluster ``spec`` (JSON, camelCase) without its scale and scheduling fields."""
    trimmed: dict[str, Any] = copy.deepcopy(dict(spec))
    trimmed.pop("upgradeStrategy", None)
    _trim_template(trimmed.get("headGroupSpec") or {})
    for group in trimmed.get("workerGroupSpecs") or ():
        for field in _SCALE_FIELDS:
            group.pop(field, None)
        strategy = group.get("scaleStrategy")
        if isinstance(strategy, dict):
            strategy.pop("workersToDelete", None)
            if not strategy:  # Go marshals the empty struct either way: absent and {} are one spec
                group.pop("scaleStrategy")
        _trim_template(group)
    text = json.dumps(trimmed, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).digest()
    return base64.b32hexencode(digest).decode()


def _trim_template(group: dict[str, Any]) -> None:
    pod_spec = (group.get("template") or {}).get("spec")
    if isinstance(pod_spec, dict):
        for field in _TEMPLATE_FIELDS:
            pod_spec.pop(field, None)
