"""A RayJob status in the form KubeRay writes it, so the two operators' objects read the same.

KubeRay writes the whole ``RayJobStatus`` Go struct: its string and int fields are ``omitempty``
(so ``jobStatus`` is absent while the Ray job is NEW, whose value is ""), but ``rayJobInfo`` and
``rayClusterStatus`` are structs, which ``omitempty`` never omits: every RayJob status carries
``rayJobInfo`` ({} before the dashboard reported times) and ``rayClusterStatus`` (an empty
RayClusterStatus when no copy was taken, as after a new attempt). ``succeeded``/``failed`` are
pointers, written whenever set, 0 included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kray.controllers.raycluster.status import kuberay_json as cluster_status_json

_POINTERS = frozenset({"succeeded", "failed"})
"""``*int32`` fields: a 0 is a value, only an unset pointer (None) is left out."""


def kuberay_json(status: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` with KubeRay's serialisation rules applied (idempotent)."""
    out: dict[str, Any] = {}
    for key, value in status.items():
        if key == "rayJobInfo":
            continue
        if key == "rayClusterStatus":
            out[key] = cluster_status_json(value if isinstance(value, Mapping) else {})
        elif key in _POINTERS:
            if value is not None:
                out[key] = value
        elif value not in (None, "", 0, {}, []):
            out[key] = value
    info = status.get("rayJobInfo")
    info = info if isinstance(info, Mapping) else {}
    out["rayJobInfo"] = {k: v for k, v in info.items() if v not in (None, "")}
    out.setdefault("rayClusterStatus", cluster_status_json({}))
    return out
