"""The differential run: KubeRay's operator and kray's, side by side on one control plane.

Each case (a sample file) is applied twice — once to a namespace only KubeRay's operator watches,
once to one only kray's watches — and, for the self-check, a second time to another KubeRay
namespace. After both operators have gone quiet, every namespace is snapshotted: the objects the
operators created (everything but what the case applied and what Kubernetes makes in every
namespace), the status, labels, annotations and finalizers of the applied ``ray.io`` objects, and the
Events. :mod:`kray.dev.compare` then diffs the snapshots.

Documents are applied with server-side apply through discovery, so any kind the apiserver serves
works; a document of a kind it does not serve (Kueue, Volcano, Gateway API CRDs) or a cluster-scoped
one is skipped and reported, identically for both operators.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml

from kray.dev import kwok
from kray.dev.compare import Snapshot, normalise_status
from kray.dev.kuberay import DEFAULT_GATES, KubeRayOperator, KubeRayOptions
from kray.dev.pytest_plugin import let_ray_objects_go
from tests.operator.support import start_kray_operator

RAY_KINDS = frozenset({"RayCluster", "RayJob", "RayService", "RayCronJob"})
SNAPSHOT_KINDS = (
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("batch/v1", "Job"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("ray.io/v1", "RayCluster"),
    ("ray.io/v1", "RayJob"),
    ("ray.io/v1", "RayService"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)
GATES = {**DEFAULT_GATES, "RayServiceIncrementalUpgrade": True}
"""KubeRay's gates here: v1.7's defaults, so also ``RayServiceIncrementalUpgrade`` (alpha and off in v1.5.0, beta
and on in v1.7 and in kray): ``NewClusterWithIncrementalUpgrade`` samples are then judged with their Gateway API
objects (the session plane serves the Gateway API CRDs, fixture ``gateway_crds``)."""
# What Kubernetes itself creates in every namespace.
BUILTIN = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        group, _, version = self.api_version.rpartition("/")
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class Api:
    """A small synchronous client for the test plane: discovery, server-side apply, list."""

    def __init__(self, *, server: str, token: str, ca_file: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca_file))
        self.client = httpx2.Client(
            base_url=server, verify=context, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self._kinds: dict[tuple[str, str], Kind | None] = {}

    def close(self) -> None:
        self.client.close()

    def kind(self, api_version: str, kind: str) -> Kind | None:
        key = (api_version, kind)
        if key not in self._kinds:
            group, _, version = api_version.rpartition("/")
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            response = self.client.get(path)
            found = None
            if response.status_code == 200:
                for resource in response.json().get("resources", []):
                    if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                        found = Kind(api_version, kind, resource["name"], bool(resource.get("namespaced")))
            self._kinds[key] = found
        return self._kinds[key]

    def apply(self, kind: Kind, namespace: str, document: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """Server-side apply ``document`` into ``namespace``: (the object's name, an error text)."""
        body = json.loads(json.dumps(document))
        body.setdefault("metadata", {})["namespace"] = namespace
        name = body["metadata"].get("name")
        if not name:  # generateName: a plain create
            created = self.client.post(kind.path(namespace), content=json.dumps(body).encode(),
                                       headers={"Content-Type": "application/json"})  # fmt: skip
            if created.status_code >= 300:
                return None, f"{created.status_code}: {created.text[:300]}"
            return str(created.json()["metadata"]["name"]), None
        response = self.client.patch(
            kind.path(namespace, name),
            params={"fieldManager": "differential", "force": "true"},
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if response.status_code >= 300:
            return None, f"{response.status_code}: {response.json().get('message', response.text)[:300]}"
        return str(name), None

    def list(self, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
        """The objects of ``kind`` in ``namespace`` (None: in every namespace)."""
        response = self.client.get(kind.path(namespace))
        response.raise_for_status()
        return list(response.json().get("items", []))

    def create_namespace(self, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kray.dev/test": "true"}},
        }
        self.client.post("/api/v1/namespaces", json=body).raise_for_status()

    def delete_namespace(self, name: str) -> None:
        self.client.delete(f"/api/v1/namespaces/{name}")

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """The operators' Events: those about ray.io objects. Kubernetes' own (the scheduler's, the Job
        controller's, the apiserver's ClusterIP repair loop's, which fires at random) are left out; what
        they are about is compared as objects."""
        core = self.client.get(f"/api/v1/namespaces/{namespace}/events").json().get("items", [])
        new = self.client.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events").json().get("items", [])
        seen = {e["metadata"]["uid"] for e in core}
        events = list(core) + [e for e in new if e["metadata"]["uid"] not in seen]
        return [e for e in events if _about_ray(e)]


@dataclass
class Case:
    """One sample file and the namespaces it is applied to."""

    name: str
    documents: list[dict[str, Any]]
    namespaces: dict[str, str] = field(default_factory=dict)
    """role ("kuberay", "kray", "kuberay-again") → namespace."""
    applied: set[tuple[str, str]] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)


def load_case(path: Path) -> Case:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return Case(name=path.name, documents=documents)


def apply_case(api: Api, case: Case, role: str) -> list[str]:
    """Apply every document of ``case`` to its namespace for ``role``; returns errors (skips are recorded)."""
    namespace = case.namespaces[role]
    errors = []
    for document in case.documents:
        kind = api.kind(str(document.get("apiVersion", "")), str(document.get("kind", "")))
        label = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
        if kind is None or not kind.namespaced:
            if role == "kuberay":
                case.skipped.append(f"{label}: {'not served' if kind is None else 'cluster-scoped'}")
            continue
        name, error = api.apply(kind, namespace, document)
        if error is None:
            if name:
                case.applied.add((kind.kind, str(name)))
        else:
            errors.append(f"{label}: {error}")
    return errors


def fingerprint(api: Api, namespaces: Iterable[str]) -> frozenset[tuple[str, str, str, str]]:
    """(namespace, kind, name, resourceVersion) of everything the operators may still be changing.

    One LIST per kind across all namespaces, kept to ``namespaces``: a LIST per kind and namespace once a second
    was, in one suite run, 5,351 LISTs of each of the 16 kinds (the busiest requests of the session's plane)."""
    wanted = set(namespaces)
    out = set()
    for api_version, kind_name in SNAPSHOT_KINDS:
        kind = api.kind(api_version, kind_name)
        if kind is None:
            continue
        for obj in api.list(kind, None):
            meta = obj["metadata"]
            if meta.get("namespace") in wanted:
                out.add((meta["namespace"], kind_name, meta["name"], meta["resourceVersion"]))
    return frozenset(out)


def wait_quiet(api: Api, namespaces: Sequence[str], *, quiet_for: float, timeout: float) -> tuple[bool, float]:
    """Wait until nothing changed in ``namespaces`` for ``quiet_for`` seconds; (quiet?, seconds waited)."""
    start = time.monotonic()
    last = fingerprint(api, namespaces)
    since = time.monotonic()
    while time.monotonic() - start < timeout:
        time.sleep(1.0)
        now = fingerprint(api, namespaces)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_for:
            return True, time.monotonic() - start
    return False, time.monotonic() - start


def snapshot(api: Api, case: Case, role: str) -> Snapshot:
    namespace = case.namespaces[role]
    objects: dict[str, list[dict[str, Any]]] = {}
    for api_version, kind_name in SNAPSHOT_KINDS:
        kind = api.kind(api_version, kind_name)
        if kind is None:
            continue
        for obj in api.list(kind, namespace):
            name = obj["metadata"]["name"]
            if (kind_name, name) in BUILTIN:
                continue
            if (kind_name, name) in case.applied:
                if kind_name not in RAY_KINDS:
                    continue
                objects.setdefault(f"{kind_name}(applied)", []).append(_observed_cr(obj, namespace))
                continue
            objects.setdefault(kind_name, []).append(obj)
    return Snapshot(namespace=namespace, objects=objects, events=api.events(namespace))


def _observed_cr(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """What an operator did to a CR it was given: status, finalizers, labels and annotations."""
    meta = obj.get("metadata") or {}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("kubectl.kubernetes.io")
    }
    return {
        "metadata": {
            "name": meta.get("name"),
            "labels": meta.get("labels") or {},
            "annotations": annotations,
            "finalizers": meta.get("finalizers") or [],
        },
        "status": normalise_status(obj.get("status"), namespace=namespace),
    }


def _about_ray(event: dict[str, Any]) -> bool:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return str(involved.get("apiVersion", "")).startswith("ray.io/")


def new_namespace(api: Api, stem: str) -> str:
    name = f"{stem}-{secrets.token_hex(3)}"[:63].rstrip("-")
    api.create_namespace(name)
    return name


RELEASE_TIMEOUT = 90.0


def release(api: Api, k8s_client: Any, namespaces: Sequence[str]) -> None:
    """Delete the run's namespaces once no operator runs: their ``ray.io`` objects' finalizers are cleared first,
    as no operator is left to clear them, and the namespaces must be gone within RELEASE_TIMEOUT -- a namespace
    left Terminating keeps the controller-manager's namespace controller listing every kind in it, several times
    a second, for the rest of the session (measured: two thirds of a core of kube-apiserver)."""
    for namespace in namespaces:
        let_ray_objects_go(k8s_client, namespace)
        api.delete_namespace(namespace)
    deadline = time.monotonic() + RELEASE_TIMEOUT
    left = list(namespaces)
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = [n for n in left if api.client.get(f"/api/v1/namespaces/{n}").status_code != 404]
    if left:
        status = api.client.get(f"/api/v1/namespaces/{left[0]}").json().get("status") or {}
        saying = [c.get("message") for c in status.get("conditions") or () if c.get("status") == "True"]
        raise AssertionError(
            f"{len(left)} namespaces still there {RELEASE_TIMEOUT:.0f}s after deletion; {left[0]} says: {saying}"
        )


@contextlib.contextmanager
def side_by_side(
    *,
    plane: Any,
    binaries: Any,
    api: Api,
    k8s_client: Any,
    log_dir: Path,
    cases: Iterable[Case],
    namespace_for: Callable[[Case, str], str | None],
    node_names: str,
    nodes: Sequence[Mapping[str, Any]],
) -> Iterator[list[str]]:
    """Both operators on the session plane: a namespace per case and role (``namespace_for`` names its stem, or
    None to leave that role out), kwok nodes, KubeRay's operator on the ``kuberay*`` roles' namespaces and kray's
    on the ``kray`` ones; yields every namespace. On exit both operators stop and everything made is released."""
    namespaces: list[str] = []
    made_nodes: list[str] = []
    kuberay = kray = None
    try:
        watched: dict[str, list[str]] = {}
        for case in cases:
            for role in ("kuberay", "kray", "kuberay-again"):
                stem = namespace_for(case, role)
                if stem is not None:
                    case.namespaces[role] = new_namespace(api, stem)
                    namespaces.append(case.namespaces[role])
                    watched.setdefault(role, []).append(case.namespaces[role])
        plane.start_kwok()
        for i, size in enumerate(nodes):
            node = f"{node_names}-{secrets.token_hex(2)}-{i}"
            api.client.post("/api/v1/nodes", json=kwok.node_manifest(node, **size)).raise_for_status()
            made_nodes.append(node)
        kuberay = KubeRayOperator(
            kubeconfig=plane.kubeconfig,
            binaries=binaries,
            log_dir=log_dir,
            options=KubeRayOptions(
                namespaces=tuple(watched.get("kuberay", []) + watched.get("kuberay-again", [])), gates=GATES
            ),
        ).start()
        kray = start_kray_operator(
            kubeconfig=plane.kubeconfig,
            log_dir=log_dir,
            namespaces=watched.get("kray", []),
            extra=["--enable-leader-election=false"],
        )
        yield namespaces
    finally:
        if kray is not None:
            kray.kill()
        if kuberay is not None:
            kuberay.stop()
        try:
            release(api, k8s_client, namespaces)
        finally:
            for node in made_nodes:
                api.client.delete(f"/api/v1/nodes/{node}")
