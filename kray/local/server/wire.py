"""The wire format of the local API, shared by the server and its client. Pure.

URLs follow the Kubernetes API (``/apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>[/status]]``,
``/api/v1/...`` for the core group) so the paths read the same as on a cluster; errors travel as a
Kubernetes ``Status`` object and map back to the same :mod:`kray.store.errors` on the client.
"""

from __future__ import annotations

from typing import Any

from kray.api.errors import FieldError
from kray.store import RESOURCES, Resource
from kray.store.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    StoreError,
    Unavailable,
)

_BY_REASON: dict[str, tuple[type[StoreError], int]] = {
    "NotFound": (NotFound, 404),
    "AlreadyExists": (AlreadyExists, 409),
    "Conflict": (Conflict, 409),
    "Invalid": (Invalid, 422),
    "Gone": (Gone, 410),
    "Forbidden": (Forbidden, 403),
    "ServiceUnavailable": (Unavailable, 503),
}


def collection_path(resource: Resource, namespace: str | None) -> str:
    root = f"/apis/{resource.api_version}" if resource.group else f"/api/{resource.version}"
    if resource.namespaced and namespace is not None:
        return f"{root}/namespaces/{namespace}/{resource.plural}"
    return f"{root}/{resource.plural}"


def object_path(resource: Resource, name: str, namespace: str | None) -> str:
    return f"{collection_path(resource, namespace)}/{name}"


def resource_by_path(group: str, version: str, plural: str) -> Resource | None:
    api_version = f"{group}/{version}" if group else version
    return next((r for r in RESOURCES if r.api_version == api_version and r.plural == plural), None)


def status_body(error: StoreError) -> tuple[dict[str, Any], int]:
    """A Kubernetes ``Status`` for a store error, and its HTTP code."""
    for reason, (kind, code) in _BY_REASON.items():
        if type(error) is kind:
            body: dict[str, Any] = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": str(error),
                "code": code,
            }
            if isinstance(error, Invalid):
                body["details"] = {
                    "causes": [{"field": e.path, "message": e.message, "reason": e.rule} for e in error.errors]
                }
            return body, code
    return {"kind": "Status", "status": "Failure", "reason": "InternalError", "message": str(error), "code": 500}, 500


def error_from_status(body: dict[str, Any], code: int) -> StoreError:
    reason = str(body.get("reason", ""))
    message = str(body.get("message", f"HTTP {code}"))
    kind = _BY_REASON.get(reason, (StoreError, code))[0]
    if kind is Invalid:
        causes = (body.get("details") or {}).get("causes") or []
        return Invalid(
            message,
            [
                FieldError(str(c.get("field", "")), str(c.get("message", "")), str(c.get("reason", "schema")))
                for c in causes
            ],
        )
    return kind(message)
