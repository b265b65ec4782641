"""JSON merge patch (RFC 7386): the ``application/merge-patch+json`` the store's ``patch`` accepts.

Objects merge key by key, ``null`` deletes a key, anything else (lists included) replaces the target
value. Used by the embedded store; the Kubernetes adapter sends the patch to the API server, which
applies the same rules.
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied. Neither argument is modified; unchanged subtrees of
    ``target`` are shared with the result, so treat the result as read-only or copy it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
