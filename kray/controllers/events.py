"""Kubernetes Events for user-visible transitions, as KubeRay records them (reason strings kept)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import structlog

from kray.store import EVENT, Obj, Store
from kray.store.errors import StoreError

log = structlog.get_logger(__name__)


async def record(*, store: Store, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
    """Create a core/v1 Event about ``involved``; failures are logged, never raised (events are best effort)."""
    meta = involved.get("metadata") or {}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'object')}.{secrets.token_hex(8)}",
            "namespace": meta.get("namespace"),
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await store.create(EVENT, event)
    except StoreError as error:
        log.info("event.not_recorded", reason=reason, error=str(error))
