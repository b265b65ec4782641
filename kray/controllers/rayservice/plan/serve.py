"""Serve on one cluster: is it ready, what to report, when to PUT the config again, and the body to PUT.

KubeRay's ``getAndCheckServeStatus``, ``checkIfNeedSubmitServeApplications`` and
``updateServeDeployment``: a cluster is ready to take traffic iff it has at least one application and
every application is ``RUNNING``; the config is PUT when none was cached for the cluster, when the
cluster reports no application (its head restarted without GCS fault tolerance), or when
``serveConfigV2`` differs from the cached one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from kray.api.v1.enums import ApplicationStatus
from kray.controllers.rayservice.plan.model import DEFAULT_SERVE_APP_NAME


class ServeConfigError(ValueError):
    """``serveConfigV2`` is not a YAML mapping."""


def app_statuses(details: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``applicationStatuses`` from Serve's instance details: status, message and deployment statuses."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in (details.get("applications") or {}).items():
        app: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        deployments = {
            dep_name: _without_empty({"status": dep.get("status"), "message": dep.get("message")})
            for dep_name, dep in (app.get("deployments") or {}).items()
            if isinstance(dep, Mapping)
        }
        entry = _without_empty({"status": app.get("status"), "message": app.get("message")})
        if deployments:
            entry["serveDeploymentStatuses"] = deployments
        out[name or DEFAULT_SERVE_APP_NAME] = entry
    return out


def _without_empty(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}


def is_ready(apps: Mapping[str, Mapping[str, Any]]) -> bool:
    """At least one application, and every one ``RUNNING``."""
    return bool(apps) and all(app.get("status") == ApplicationStatus.RUNNING.value for app in apps.values())


def needs_submit(*, cached: str | None, desired: str, apps: Mapping[str, Any]) -> tuple[bool, str]:
    """``checkIfNeedSubmitServeApplications``: (PUT again?, KubeRay's reason)."""
    if not cached:
        return True, "Nothing has been cached for the cluster."
    if not apps:
        return True, (
            "No Serve application found in the RayCluster. "
            "A possible reason is that the head Pod crashed and GCS FT was not enabled."
        )
    if cached != desired:
        return True, "Current V2 Serve config doesn't match cached Serve config."
    return False, "Current V2 Serve config matches cached Serve config."


def serve_config_json(config_v2: str, *, target_capacity: int | None = None) -> dict[str, Any]:
    """``serveConfigV2`` (YAML) as the JSON object PUT to the dashboard, plus ``target_capacity`` if given."""
    try:
        loaded = yaml.safe_load(config_v2) if config_v2 else {}
    except yaml.YAMLError as error:
        raise ServeConfigError(f"spec.serveConfigV2: not valid YAML: {error}") from error
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ServeConfigError(f"spec.serveConfigV2: expected a mapping, got {type(loaded).__name__}")
    config: dict[str, Any] = dict(loaded)
    if target_capacity is not None:
        config["target_capacity"] = target_capacity
    return config
