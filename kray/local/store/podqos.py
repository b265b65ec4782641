"""A Pod's QoS class, as the API server computes it on create (``status.qosClass``).

The apiserver's pod strategy sets ``status`` on create to ``{"phase": "Pending", "qosClass": ...}``
(``pkg/registry/core/pod/strategy.go`` PrepareForCreate) and clients read it before any kubelet has
written a status -- Ray's autoscaler among them. The class follows ``ComputePodQOS``
(``pkg/apis/core/helper/qos/qos.go``) on the *defaulted* pod, where a container's missing request of a
resource it limits is that limit (``pkg/apis/core/v1/defaults.go`` SetDefaults_Pod):

* only ``cpu`` and ``memory`` count, and only quantities above zero;
* no request and no limit anywhere: ``BestEffort``;
* every container (init containers included) limits both cpu and memory, and the summed requests equal
  the summed limits for every resource: ``Guaranteed``; anything else: ``Burstable``;
* pod-level ``spec.resources`` naming cpu or memory (PodLevelResources, on by default) replace the
  containers' in that computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from kray._ray.quantity import QuantityError, parse_quantity

_QOS_RESOURCES = ("cpu", "memory")


def _positive(resources: Mapping[str, Any] | None) -> dict[str, Fraction]:
    """The QoS resources of a request/limit list with a value above zero (unparsable ones count as none)."""
    out: dict[str, Fraction] = {}
    for name in _QOS_RESOURCES:
        raw = (resources or {}).get(name)
        if raw is None:
            continue
        try:
            amount = parse_quantity(raw).amount
        except QuantityError:
            continue
        if amount > 0:
            out[name] = amount
    return out


def _defaulted(resources: Mapping[str, Any] | None) -> tuple[dict[str, Fraction], dict[str, Fraction]]:
    """(requests, limits), a request missing for a limited resource being that limit."""
    limits = _positive((resources or {}).get("limits"))
    requests = {**limits, **_positive((resources or {}).get("requests"))}
    requests_raw = (resources or {}).get("requests") or {}
    for name in _QOS_RESOURCES:
        if name in requests_raw and name not in _positive(requests_raw):
            requests.pop(name, None)  # an explicit zero request stays zero
    return requests, limits


def _add(total: dict[str, Fraction], part: Mapping[str, Fraction]) -> None:
    for name, amount in part.items():
        total[name] = total.get(name, Fraction(0)) + amount


def pod_qos_class(spec: Mapping[str, Any]) -> str:
    """``Guaranteed``, ``Burstable`` or ``BestEffort`` for a pod spec (see the module docstring)."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    pod_level = spec.get("resources") or {}
    if any(name in (pod_level.get(kind) or {}) for kind in ("requests", "limits") for name in _QOS_RESOURCES):
        requests, limits = _defaulted(pod_level)
        if (pod_level.get("limits") or {}) and set(limits) != set(_QOS_RESOURCES):
            guaranteed = False
    else:
        containers: Iterable[Mapping[str, Any]] = [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]
        for container in containers:
            wanted, capped = _defaulted(container.get("resources"))
            _add(requests, wanted)
            _add(limits, capped)
            if set(capped) != set(_QOS_RESOURCES):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(limits[n] == a for n, a in requests.items()):
        return "Guaranteed"
    return "Burstable"
