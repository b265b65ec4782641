"""Resolve a container's environment as the kubelet would: values, fieldRefs, Secrets, ConfigMaps.

Reads the Secrets and ConfigMaps it needs from the store; the result is a plain dict merged over
the machine's own environment by the pod runner. Kubernetes' ``$(VAR)`` references are expanded.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from typing import Any

from kray._ray.quantity import parse_quantity
from kray.local.sandbox import LOCAL_POD_IP, Sandbox
from kray.store import CONFIGMAP, SECRET, Obj, Store
from kray.store.errors import NotFound

__all__ = ["LOCAL_POD_IP", "EnvError", "expand_args", "pod_fields", "resolve_env"]


class EnvError(Exception):
    """A required Secret/ConfigMap key is missing (the kubelet's CreateContainerConfigError)."""


def _field(pod: Obj, path: str, sandbox: Sandbox | None) -> str:
    meta = pod.get("metadata") or {}
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    return str(pod_fields(pod, sandbox=sandbox).get(path, ""))


def pod_fields(pod: Obj, *, sandbox: Sandbox | None = None) -> dict[str, Any]:
    """The fieldRef paths a pod answers besides labels and annotations (env and downwardAPI volumes): its
    addresses are its sandbox's (local mode's, ``127.0.0.1``, without one); ``spec.nodeName`` the pod's own
    when it names one (bound by a scheduler), else the sandbox's."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    where = sandbox or Sandbox(ip=LOCAL_POD_IP)
    return {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName") or where.node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": where.ip,
        "status.hostIP": where.host_ip,
        "status.podIPs": where.ip,
    }


async def _key(store: Store, *, kind: str, namespace: str, ref: Mapping[str, Any]) -> str | None:
    resource = SECRET if kind == "secret" else CONFIGMAP
    try:
        obj = await store.get(resource, str(ref.get("name", "")), namespace=namespace)
    except NotFound:
        if ref.get("optional"):
            return None
        raise EnvError(f"{kind} {ref.get('name')!r} not found") from None
    key = str(ref.get("key", ""))
    if kind == "secret":
        data = obj.get("data") or {}
        if key in data:
            return base64.b64decode(data[key]).decode()
        if key in (obj.get("stringData") or {}):
            return str(obj["stringData"][key])
    elif key in (obj.get("data") or {}):
        return str(obj["data"][key])
    if ref.get("optional"):
        return None
    raise EnvError(f"{kind} {ref.get('name')!r} has no key {key!r}")


async def resolve_env(
    *, store: Store, pod: Obj, container: Mapping[str, Any], sandbox: Sandbox | None = None
) -> dict[str, str]:
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    env: dict[str, str] = {}
    for source in container.get("envFrom") or ():
        prefix = str(source.get("prefix", ""))
        for kind in ("configMapRef", "secretRef"):
            ref = source.get(kind)
            if not ref:
                continue
            resource = CONFIGMAP if kind == "configMapRef" else SECRET
            try:
                obj = await store.get(resource, str(ref.get("name", "")), namespace=namespace)
            except NotFound:
                if ref.get("optional"):
                    continue
                raise EnvError(f"{kind} {ref.get('name')!r} not found") from None
            for key, raw in (obj.get("data") or {}).items():
                env[prefix + key] = base64.b64decode(raw).decode() if resource is SECRET else str(raw)
    for entry in container.get("env") or ():
        name = str(entry.get("name", ""))
        if "value" in entry:
            env[name] = _expand(str(entry.get("value") or ""), env)
            continue
        source = entry.get("valueFrom") or {}
        value: str | None = None
        if "fieldRef" in source:
            value = _field(pod, str(source["fieldRef"].get("fieldPath", "")), sandbox)
        elif "secretKeyRef" in source:
            value = await _key(store, kind="secret", namespace=namespace, ref=source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = await _key(store, kind="configmap", namespace=namespace, ref=source["configMapKeyRef"])
        elif "resourceFieldRef" in source:
            value = _resource_field(container, source["resourceFieldRef"])
        if value is not None:
            env[name] = value
        elif name not in env:
            env[name] = ""
    return env


def _resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """The kubelet's value: the quantity divided by ``divisor`` (default 1), rounded up to an integer."""
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is None:
        return ""
    divisor = parse_quantity(ref.get("divisor") or "1").amount
    return str(math.ceil(parse_quantity(value).amount / divisor))


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes); unknown references stay as written."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", repl, value)


def expand_args(args: list[str], env: Mapping[str, str]) -> list[str]:
    return [_expand(a, env) for a in args]
