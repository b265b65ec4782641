"""A container's environment resolved as the kubelet does it (expected values from Kubernetes' documented behaviour).

``$(VAR)`` expands variables defined earlier (env entries in order, after envFrom); ``$$`` escapes; an
undefined ``$(X)`` stays as written; envFrom keys get the prefix; Secret data is base64-decoded;
resourceFieldRef is the quantity divided by ``divisor`` (default 1), rounded up; a missing required
key is the kubelet's CreateContainerConfigError.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kray.local.podenv import EnvError, expand_args, resolve_env
from kray.local.store import open_embedded_store
from kray.store import CONFIGMAP, NAMESPACE, SECRET, Store

POD = {"metadata": {"name": "p-1", "namespace": "ns", "uid": "u-1", "labels": {"app": "demo"}}, "spec": {}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_embedded_store(tmp_path / "store.db")
    await opened.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}}
    await opened.create(CONFIGMAP, {**configmap, "data": {"MODE": "fast", "N": "3"}})
    await opened.create(SECRET, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
                                 "data": {"PASSWORD": b64("hunter2")}})  # fmt: skip
    try:
        yield opened
    finally:
        await opened.close()


async def env_of(store: Store, **container: Any) -> dict[str, str]:
    return await resolve_env(store=store, pod=POD, container=container)


async def test_expansion_uses_earlier_variables_escapes_and_leaves_unknown_ones(store: Store) -> None:
    env = await env_of(store, env=[
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-b"},
        {"name": "ESCAPED", "value": "$$(A)"},
        {"name": "DOLLARS", "value": "cost $$5"},
        {"name": "UNKNOWN", "value": "$(NOPE)/x"},
        {"name": "LATER", "value": "$(C)"},  # C is defined after: not expanded
        {"name": "C", "value": "c"},
        {"name": "PLAIN", "value": "$A and $(A"},  # only $(NAME) is a reference
    ])  # fmt: skip
    assert env == {"A": "a", "B": "a-b", "ESCAPED": "$(A)", "DOLLARS": "cost $5", "UNKNOWN": "$(NOPE)/x",
                   "LATER": "$(C)", "C": "c", "PLAIN": "$A and $(A"}  # fmt: skip
    assert expand_args(["--mode=$(A)", "$$(A)", "$(MISSING)"], env) == ["--mode=a", "$(A)", "$(MISSING)"]


async def test_value_from_configmap_secret_field_and_resource(store: Store) -> None:
    resources = {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "2", "memory": "1500Mi"}}
    env = await env_of(store, resources=resources, env=[
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "MODE"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "PASSWORD"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
        {"name": "MEM_GI", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Gi"}}},
        {"name": "GREETING", "value": "$(POD_NAME) in $(MODE) mode"},
    ])  # fmt: skip
    assert env == {
        "MODE": "fast", "PASSWORD": "hunter2", "POD_NAME": "p-1", "POD_NS": "ns", "APP": "demo",
        "POD_IP": "127.0.0.1", "CPU": "1", "CPU_M": "500", "MEM": "1073741824", "MEM_MI": "1500",
        "MEM_GI": "2", "GREETING": "p-1 in fast mode",
    }  # fmt: skip


async def test_env_from_with_prefix_and_env_overriding_it(store: Store) -> None:
    env = await env_of(store, envFrom=[{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "s"}}],
                       env=[{"name": "CM_N", "value": "override $(CM_MODE)"}])  # fmt: skip
    assert env == {"CM_MODE": "fast", "CM_N": "override fast", "PASSWORD": "hunter2"}


async def test_optional_references_may_be_missing_required_ones_may_not(store: Store) -> None:
    env = await env_of(store, envFrom=[{"configMapRef": {"name": "absent", "optional": True}}], env=[
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": True}}},
        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
    ])  # fmt: skip
    assert env == {"X": "", "Y": ""}
    with pytest.raises(EnvError, match="'cm' has no key 'nope'"):
        await env_of(store, env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope"}}}])
    with pytest.raises(EnvError, match="'absent' not found"):
        await env_of(store, envFrom=[{"secretRef": {"name": "absent"}}])
