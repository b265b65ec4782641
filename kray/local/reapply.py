"""What ``kray apply`` writes over an object that exists: kubectl's three-way merge, not a replacement.

Replacing the stored metadata with the manifest's dropped what others had set — kray's port annotation
among them, so a re-applied RayCluster got new ports while its pods kept the old ones. Like ``kubectl
apply``, each applied object carries the manifest it came from (:data:`LAST_APPLIED`); a re-apply sets
what the new manifest sets, removes what the previous one set and this one no longer does, and keeps
everything else (controllers' labels and annotations, kray's ``kray.io/*``). Maps merge key by key,
lists are replaced whole (JSON merge patch, as kubectl does for custom resources). A Secret's last-applied
copy names its keys but not their values. Pure: no I/O.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kray.api.errors import FieldError
from kray.store import Obj
from kray.store.merge import merge_patch

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SERVER_ONLY = ("status",)


def applied(obj: Obj) -> Obj:
    """``obj`` as created by ``kray apply``: carrying its own last-applied configuration."""
    out = copy.deepcopy(obj)
    for field in _SERVER_ONLY:
        out.pop(field, None)
    record = copy.deepcopy(out)
    record["metadata"].get("annotations", {}).pop(LAST_APPLIED, None)
    if record.get("kind") == "Secret" and isinstance(record.get("data"), dict):
        record["data"] = dict.fromkeys(record["data"], "")  # keys only: the values stay out of annotations
    annotations = out["metadata"].setdefault("annotations", {})
    annotations[LAST_APPLIED] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return out


def last_applied(current: Obj) -> Obj:
    """The configuration the previous apply recorded ({} when none, or when it cannot be read)."""
    text = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        found = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def three_way_patch(original: Any, modified: dict[str, Any], current: Any) -> dict[str, Any]:
    """A JSON merge patch taking ``current`` to ``modified``, deleting only what ``original`` set.

    Keys of ``modified`` that ``current`` lacks or holds differently are set; keys of ``original`` that
    ``modified`` dropped are deleted (maps key by key, so keys set by others survive); the rest is kept."""
    original = original if isinstance(original, dict) else {}
    current = current if isinstance(current, dict) else {}
    patch: dict[str, Any] = {}
    for key, was in original.items():
        if key in modified or key not in current:
            continue
        if isinstance(was, dict) and isinstance(current[key], dict):
            removed = three_way_patch(was, {}, current[key])
            if removed:
                patch[key] = removed
        else:
            patch[key] = None
    for key, value in modified.items():
        have = current.get(key)
        if isinstance(value, dict) and isinstance(have, dict):
            nested = three_way_patch(original.get(key), value, have)
            if nested:
                patch[key] = nested
        elif key not in current or value != have:
            patch[key] = value
    return patch


def plan_update(current: Obj, desired: Obj) -> Obj | None:
    """The object to replace ``current`` with so that it is ``desired`` as applied; None when nothing changes."""
    modified = applied(desired)
    patch = three_way_patch(last_applied(current), modified, current)
    if not patch:
        return None
    merged: Obj = merge_patch(current, patch)
    merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    return copy.deepcopy(merged)


def immutable_errors(current: Obj, merged: Obj) -> list[FieldError]:
    """What the API server refuses in an update of an immutable ConfigMap or Secret."""
    if current.get("kind") not in {"ConfigMap", "Secret"} or current.get("immutable") is not True:
        return []
    errors = [
        FieldError(field, "Forbidden: field is immutable when `immutable` is set")
        for field in ("data", "binaryData")
        if (current.get(field) or {}) != (merged.get(field) or {})
    ]
    if merged.get("immutable") is not True:
        errors.append(FieldError("immutable", "Forbidden: field is immutable when `immutable` is set"))
    return errors
