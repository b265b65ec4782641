"""Small helpers over Kubernetes JSON (plain dicts), shared by the builders.

Pod templates stay plain dicts end to end, so every field a user wrote survives untouched; these
helpers are the few questions the builders ask of them (does this env var exist, which port is
named ``dashboard``), answered the way KubeRay's Go helpers answer them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]


def deep_copy(value: Mapping[str, Any]) -> JSON:
    return copy.deepcopy(dict(value))


def env_list(container: JSON) -> list[JSON]:
    """The container's ``env``, created empty when missing (the caller appends to it)."""
    env: list[JSON] | None = container.get("env")
    if env is None:
        env = container["env"] = []
    return env


def env_exists(container: Mapping[str, Any], name: str) -> bool:
    return any(var.get("name") == name for var in container.get("env") or ())


def env_value(name: str, value: str) -> JSON:
    """A literal variable; an empty value is left out, as Go's ``omitempty`` does."""
    return {"name": name, "value": value} if value else {"name": name}


def env_field_ref(name: str, field_path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def append_env(container: JSON, *variables: JSON) -> None:
    env_list(container).extend(variables)


def append_env_if_absent(container: JSON, variable: JSON) -> None:
    """Add a variable unless the user already set one of that name (the user's value wins)."""
    if not env_exists(container, variable["name"]):
        append_env(container, variable)


def find_container_port(container: Mapping[str, Any], name: str, default: int) -> int:
    """``FindContainerPort``: the number of the port called ``name``, else ``default``."""
    for port in container.get("ports") or ():
        if port.get("name") == name:
            return int(port["containerPort"])
    return default


def mounted_at(container: Mapping[str, Any], path: str) -> bool:
    return any(mount.get("mountPath") == path for mount in container.get("volumeMounts") or ())


def has_mount_named(container: Mapping[str, Any], name: str) -> bool:
    return any(mount.get("name") == name for mount in container.get("volumeMounts") or ())


def has_volume(pod_spec: Mapping[str, Any], name: str) -> bool:
    return any(volume.get("name") == name for volume in pod_spec.get("volumes") or ())


def append_volume(pod_spec: JSON, volume: JSON) -> None:
    pod_spec.setdefault("volumes", []).append(volume)


def append_mount(container: JSON, mount: JSON) -> None:
    container.setdefault("volumeMounts", []).append(mount)


def controller_reference(*, api_version: str, kind: str, name: str, uid: str) -> JSON:
    """``SetControllerReference``: the owner that garbage-collects this object and is enqueued on its events."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def resources(*, limits: Mapping[str, str], requests: Mapping[str, str]) -> JSON:
    return {"limits": dict(limits), "requests": dict(requests)}
