"""The ``ray start`` command KubeRay generates for a head or worker container, flag for flag.

The generated line is part of KubeRay's contract: it is the container's command, it is exported as
``KUBERAY_GEN_RAY_START_CMD`` for users who run it themselves, and its flags decide what Ray sees
(CPUs, memory, GPUs, custom resources, labels). The steps below run in KubeRay's order, because
"only if absent" rules depend on what earlier steps set:

1. group ``resources`` override ``num-cpus``/``memory``/``num-gpus``/``resources``; group ``labels`` set ``labels``;
2. defaults: head ``dashboard-host``; worker ``address``; both ``metrics-export-port``,
   ``dashboard-agent-listen-port``; ``block=true`` always;
3. operator-forced params (``no-monitor`` with autoscaling, Redis credentials with GCS FT);
4. container resources fill ``num-cpus`` (limit, else request, rounded up), ``memory`` (limit),
   ``num-gpus`` and TPU/Neuron ``resources`` when still absent.

Ports are parameters (:class:`RayPorts`) so that local mode can move them in one visible place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kray._ray.gojson import go_json
from kray._ray.quantity import QuantityError, parse_quantity

__all__ = [
    "EXPLICIT_BOOL_FLAGS",
    "ULIMIT_COMMAND",
    "NodeType",
    "RayPorts",
    "bash_command",
    "container_command",
    "head_port",
    "is_gpu_resource_key",
    "ray_start_line",
    "ray_start_params",
    "render_flags",
]

ULIMIT_COMMAND = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"
EXPLICIT_BOOL_FLAGS = frozenset({"log-color", "include-dashboard", "include-log-monitor"})
"""Flags whose ``false`` must reach ``ray start`` as ``--flag=false`` instead of being dropped."""
ACCELERATOR_RESOURCES = {"aws.amazon.com/neuroncore": "neuron_cores", "google.com/tpu": "TPU"}
"""Container resources KubeRay passes to Ray as custom resources (first one found, in key order)."""
_MIG_KEY = re.compile(r"nvidia\.com/mig-\d+g\.\d+gb$")


class NodeType(StrEnum):
    HEAD = "head"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class RayPorts:
    """Ray's default ports as KubeRay assumes them; each is used when ``rayStartParams`` and the
    container's named ports say nothing else."""

    gcs: int = 6379
    """GCS server (``--port``); workers and ``RAY_ADDRESS`` point here."""
    dashboard: int = 8265
    """Dashboard and Job Submission API (``--dashboard-port``, container port ``dashboard``)."""
    client: int = 10001
    """Ray Client (``ray://``; container port ``client``)."""
    metrics: int = 8080
    """Prometheus metrics (``--metrics-export-port``, container port ``metrics``)."""
    dashboard_agent: int = 52365
    """Dashboard agent (``--dashboard-agent-listen-port``); the health probes call it."""
    serve: int = 8000
    """Ray Serve HTTP proxy (container port ``serve``)."""


def render_flags(params: Mapping[str, str]) -> str:
    """``convertParamMap``: sorted keys, each as `` --key `` / `` --key=value `` (note the spaces)."""
    flags = []
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in EXPLICIT_BOOL_FLAGS:
            if value.lower() == "true":
                flags.append(f" --{key} ")
        else:
            flags.append(f" --{key}={value} ")
    return "".join(flags)


def ray_start_line(*, node_type: NodeType, params: Mapping[str, str]) -> str:
    """The generated command without the ``ulimit`` prefix (the value of ``KUBERAY_GEN_RAY_START_CMD``)."""
    head = "--head " if node_type is NodeType.HEAD else ""
    return f"ray start {head}{render_flags(params)}"


def head_port(params: Mapping[str, str] | None, *, ports: RayPorts = RayPorts()) -> str:
    """The port workers and drivers connect to: the head's ``port`` param, else the GCS default."""
    return (params or {}).get("port", str(ports.gcs))


def is_gpu_resource_key(key: str) -> bool:
    """``nvidia.com/gpu``-style keys (ending in ``gpu``) and NVIDIA MIG slices."""
    return key.endswith("gpu") or _MIG_KEY.search(key) is not None


def ray_start_params(
    *,
    node_type: NodeType,
    params: Mapping[str, str] | None,
    container_resources: Mapping[str, Any] | None,
    head_address: str,
    group_resources: Mapping[str, str] | None = None,
    group_labels: Mapping[str, str] | None = None,
    forced: Mapping[str, str] | None = None,
    ports: RayPorts = RayPorts(),
) -> dict[str, str]:
    """The complete ``rayStartParams`` KubeRay renders, from the user's params and the container.

    ``head_address`` is ``<host>:<port>`` of the GCS (workers only; ignored for the head).
    ``forced`` params overwrite whatever is there (``no-monitor``, ``redis-password``).
    """
    result = dict(params or {})
    _apply_group_resources(result, group_resources or {})
    if group_labels:
        result["labels"] = ",".join(f"{k}={group_labels[k]}" for k in sorted(group_labels))
    if node_type is NodeType.WORKER:
        result.setdefault("address", head_address)
    else:
        result.setdefault("dashboard-host", "0.0.0.0")
    result.setdefault("metrics-export-port", str(ports.metrics))
    result["block"] = "true"
    result.setdefault("dashboard-agent-listen-port", str(ports.dashboard_agent))
    result.update(forced or {})
    _apply_container_resources(result, container_resources or {})
    return result


def _apply_group_resources(params: dict[str, str], resources: Mapping[str, str]) -> None:
    """``updateRayStartParamsResources``: group resources win over rayStartParams."""
    custom: dict[str, float] = {}
    for name in sorted(resources):
        try:
            quantity = parse_quantity(resources[name])
        except QuantityError:
            continue  # KubeRay logs and skips what it cannot parse
        lowered = name.lower()
        if lowered == "cpu":
            params["num-cpus"] = str(quantity.value())
        elif lowered == "memory":
            params["memory"] = str(quantity.value())
        elif is_gpu_resource_key(lowered):
            params["num-gpus"] = str(quantity.value())
        else:
            custom[name] = quantity.as_float()
    if custom:
        params["resources"] = f"'{go_json(custom)}'"


def _apply_container_resources(params: dict[str, str], resources: Mapping[str, Any]) -> None:
    """``generateRayStartCommand``'s resource-derived params, each only when absent."""
    limits: Mapping[str, Any] = resources.get("limits") or {}
    requests: Mapping[str, Any] = resources.get("requests") or {}
    if "num-cpus" not in params:
        cpu = _nonzero(limits.get("cpu")) or _nonzero(requests.get("cpu"))
        if cpu is not None:
            params["num-cpus"] = str(cpu)
    if "memory" not in params and (memory := _nonzero(limits.get("memory"))) is not None:
        params["memory"] = str(memory)
    if limits:
        _apply_accelerators(params, limits)


def _apply_accelerators(params: dict[str, str], limits: Mapping[str, Any]) -> None:
    """``addWellKnownAcceleratorResources``: first GPU key → ``num-gpus``; first TPU/Neuron → ``resources``."""
    try:
        custom = _parse_resources_param(params.get("resources"))
    except ValueError:
        return  # KubeRay gives up on all accelerators when the user's resources JSON is unreadable
    accelerator_done = any(name in custom for name in ACCELERATOR_RESOURCES.values())
    for key in sorted(limits):
        value = _quantity(limits[key])
        if value is None or value.is_zero():
            continue
        if "num-gpus" not in params and is_gpu_resource_key(key):
            params["num-gpus"] = str(value.value())
        ray_name = ACCELERATOR_RESOURCES.get(key)
        if not accelerator_done and ray_name is not None:
            custom[ray_name] = value.as_float()
            params["resources"] = f"'{go_json(custom)}'"
            accelerator_done = True


def _parse_resources_param(raw: str | None) -> dict[str, float]:
    if raw is None:
        return {}
    loaded = json.loads(raw.strip("'\"` "))
    if not isinstance(loaded, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in loaded.values()
    ):
        raise ValueError("resources must be a JSON object of numbers")
    return {str(k): float(v) for k, v in loaded.items()}


def _quantity(raw: Any) -> Any:
    try:
        return parse_quantity(raw)
    except (QuantityError, TypeError, AttributeError):
        return None


def _nonzero(raw: Any) -> int | None:
    quantity = _quantity(raw) if raw is not None else None
    return None if quantity is None or quantity.is_zero() else int(quantity.value())


def bash_command(*, options: str = "", login_shell: bool = False) -> list[str]:
    """``GetContainerCommand``: ``/bin/bash -c --`` (``-lc`` with ``ENABLE_LOGIN_SHELL``; ``-ce`` with ``e``)."""
    return ["/bin/bash", f"-{'l' if login_shell else ''}c{options}", "--"]


def container_command(
    *,
    command: Sequence[str] | None,
    args: Sequence[str] | None,
    start_line: str,
    overwrite: bool,
    login_shell: bool = False,
) -> tuple[list[str], list[str]] | None:
    """The Ray container's new ``command`` and ``args``, or None when KubeRay leaves them untouched.

    Untouched when ``ray.io/overwrite-container-cmd`` is ``"true"`` or the user's command already
    contains ``ray start``; otherwise the user's command (if any) runs first: ``<user> && <generated>``.
    """
    user = "".join(f" {part} " for part in command or ()) + "".join(f" {part} " for part in args or ())
    if overwrite or "ray start" in user:
        return None
    generated = f"{ULIMIT_COMMAND}; {start_line}"
    return bash_command(login_shell=login_shell), [f"{user} && {generated}" if user else generated]
