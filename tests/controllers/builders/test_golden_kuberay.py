"""kray's builders against what KubeRay's own operator sent, per sample: the independent golden test.

The files in ``golden/kuberay/`` are the request bodies of the create calls KubeRay's operator v1.5.0
made for a sample on a real apiserver (``hack/kuberay_goldens.py`` writes them; each header says how and
when). Here kray's builders make the same objects, with names, uids and suffixes that normalise to the
same tokens, both sides go through :func:`normalise_golden`, and every difference
(:func:`kray.dev.compare.diff_values`) must be explained by an entry of ``docs/compatibility.md`` -- the
same list and judge as the differential suite, so v1.5 → v1.7 changes pass through their ``rewrite``
entries. No apiserver: this runs in well under a second.

Normalisation (one rule for both sides, also what the golden files hold):

* :func:`kray.dev.compare.normalise`: namespace → ``<ns>``; uids, timestamps, IPs, generated 5-letter
  suffixes → tokens; ``uid``/``resourceVersion``/``creationTimestamp``/``namespace`` and owner uids dropped.
* ``status``: the apiserver ignores it in a create (every kind here has a status subresource).
* A Service's ports are sorted by name: KubeRay appends its default ports from a Go map, in random order.
* Go's serialisation artefacts: a ``null``, ``{}`` or ``[]`` value means the same to the apiserver as an
  absent field, so it is dropped everywhere (``creationTimestamp: null``, ``resources: {}``, ``status: {}``,
  ``template.metadata: {}``) -- except ``emptyDir: {}``, which chooses a volume's type. Dropping works
  bottom-up (a map left empty by the drop goes too). A Service port's ``targetPort: 0`` is
  Go's zero IntOrString, which the apiserver reads as unset (it defaults it to ``port``): dropped too.

Compared (not stored): a created custom resource gets its CRD's defaults on both sides first
(:func:`as_created`), as the apiserver adds them on create. KubeRay v1.5.0 copies a RayJob's
``rayClusterSpec`` through Go types that lack v1.7 fields (worker ``priority``, CRD default 0): it sends
none, kray copies the stored 0, and the stored RayClusters are the same -- not a difference anyone sees.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest
import yaml

from kray.api.manifest import parse_object
from kray.api.v1 import RayCluster, RayJob
from kray.controllers.common import labels as keys
from kray.controllers.common.ingress import build_head_ingress
from kray.controllers.common.names import (
    fqdn,
    head_service_name,
    headless_service_name,
    rayjob_cluster_name,
    rayjob_job_id,
)
from kray.controllers.common.pod import build_head_pod, build_worker_pod
from kray.controllers.common.rbac import (
    build_autoscaler_role,
    build_autoscaler_role_binding,
    build_autoscaler_service_account,
    head_service_account_name,
    user_named_service_account,
)
from kray.controllers.common.service import (
    build_head_service,
    build_headless_worker_service,
    build_owner_head_service,
)
from kray.controllers.common.submitter import build_rayjob_cluster, build_submitter_job
from kray.dev.compare import Deliberate, Difference, diff_values, judge, normalise
from tests.controllers.builders.support import GOLDEN, sample_document, with_server_fields
from tests.differential.test_samples import listed_differences

GOLDEN_DIR = GOLDEN / "kuberay"
ROOT = GOLDEN.parents[3]
SAMPLES = (
    "ray-cluster.sample.yaml",
    "ray-cluster.complete.yaml",
    "ray-cluster.autoscaler.yaml",
    "ray-cluster.auth.yaml",
    "ray-cluster.overwrite-command.yaml",
    "ray-cluster.head-command.yaml",
    "ray-cluster.tpu-v4-multihost.yaml",
    "ray-cluster.custom-head-service.yaml",
    "ray-cluster.external-redis.yaml",
    "ray-job.sample.yaml",
    "ray-job.sidecar-mode.yaml",
)
NAMESPACE = "kray-golden"
UID, RAYJOB_CLUSTER_UID = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
CLUSTER_SUFFIX, JOB_SUFFIX, REPLICA_SUFFIX = "b9q4r", "m2x7z", "k5w8t"  # KubeRay's alphabet: they scrub to <rand>
KEPT_EMPTY = frozenset({"emptyDir"})
ZERO_IS_UNSET = frozenset({"targetPort"})
"""Go's zero IntOrString serialises as ``0`` even when unset; the apiserver reads 0 as "not given"."""
SINGLE = {"RayCluster": "rayCluster", "ServiceAccount": "serviceAccount", "Role": "role", "RoleBinding": "roleBinding",
          "Ingress": "ingress"}  # fmt: skip


# ---- the normalisation (hack/kuberay_goldens.py writes the goldens with it) -------------------------
def drop_go_zero(value: Any) -> Any:
    """``value`` without Go's serialisation artefacts (the rule in the module docstring)."""
    if isinstance(value, dict):
        out = {}
        for key, raw in value.items():
            item = drop_go_zero(raw)
            if item is None or (item in ({}, []) and key not in KEPT_EMPTY) or (item == 0 and key in ZERO_IS_UNSET):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [drop_go_zero(item) for item in value]
    return value


def normalise_golden(obj: Mapping[str, Any], *, namespace: str) -> dict[str, Any]:
    """One created object as the goldens hold it (rule in the module docstring)."""
    clean = drop_go_zero(json.loads(json.dumps(obj)))
    clean.pop("status", None)
    if clean.get("kind") == "Service" and "ports" in clean.get("spec", {}):
        clean["spec"]["ports"].sort(key=lambda port: str(port.get("name", "")))
    return dict(drop_go_zero(normalise(str(clean.get("kind", "")), clean, namespace=namespace)))


def file_objects(objects: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Objects (normalised) filed by role: headPod, workerPods by group, headService, services, ..."""
    out: dict[str, Any] = {}

    def put(key: str, obj: Mapping[str, Any]) -> None:
        if key in out:
            raise ValueError(f"two objects for {key}: {out[key]['metadata']} and {obj['metadata']}")
        out[key] = dict(obj)

    for obj in objects:
        kind, meta = obj["kind"], obj.get("metadata") or {}
        labels, name = meta.get("labels") or {}, str(meta.get("name", ""))
        if kind == "Pod" and labels.get(keys.RAY_NODE_TYPE) == "head":
            put("headPod", obj)
        elif kind == "Pod":
            out.setdefault("workerPods", {}).setdefault(labels.get(keys.RAY_GROUP, ""), []).append(dict(obj))
        elif kind == "Service" and labels.get(keys.RAY_NODE_TYPE) == "head" and keys.RAY_CLUSTER in labels:
            put("headService", obj)
        elif kind == "Job" and any(r.get("kind") == "RayJob" for r in meta.get("ownerReferences") or ()):
            put("submitterJob", obj)
        elif kind in SINGLE:
            put(SINGLE[kind], obj)
        else:
            out.setdefault(f"{kind[0].lower()}{kind[1:]}s", {})[name] = dict(obj)
    for pods in (out.get("workerPods") or {}).values():
        pods.sort(key=_replica_order)
    return out


def _replica_order(pod: Mapping[str, Any]) -> tuple[int, int]:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return int(labels.get(keys.WORKER_REPLICA_INDEX, 0)), int(labels.get(keys.REPLICA_HOST_INDEX, 0))


# ---- kray's side ------------------------------------------------------------------------------------
def _cluster(doc: Mapping[str, Any], *, uid: str) -> RayCluster:
    obj = parse_object(with_server_fields(dict(doc), uid=uid, namespace=NAMESPACE))
    assert isinstance(obj, RayCluster)
    return obj


def cluster_objects(cluster: RayCluster) -> list[dict[str, Any]]:
    """What KubeRay's RayCluster controller creates for a new cluster, built by kray's builders."""
    out: list[dict[str, Any]] = []
    if cluster.spec.autoscaling_enabled():
        if user_named_service_account(cluster) != head_service_account_name(cluster):
            out.append(build_autoscaler_service_account(cluster=cluster))
        out += [build_autoscaler_role(cluster=cluster), build_autoscaler_role_binding(cluster=cluster)]
    if cluster.spec.head_group_spec.enable_ingress:
        out.append(build_head_ingress(cluster=cluster))
    out.append(build_head_service(cluster=cluster))
    if any(group.num_of_hosts > 1 for group in cluster.spec.worker_group_specs or ()):
        out.append(build_headless_worker_service(cluster=cluster))
        assert out[-1]["metadata"]["name"] == headless_service_name(cluster.metadata.name or "")
    out.append(build_head_pod(cluster=cluster))
    for group in cluster.spec.worker_group_specs or ():
        if group.suspend:
            continue
        replicas = group.replicas if group.replicas is not None else 0
        replicas = max(min(replicas, group.max_replicas or replicas), group.min_replicas or 0)
        for index in range(replicas):
            for host in range(group.num_of_hosts):
                multi = group.num_of_hosts > 1
                out.append(build_worker_pod(
                    cluster=cluster, group=group, replica_index=index, host_index=host,
                    replica_name=f"{group.group_name}-{REPLICA_SUFFIX}" if multi else None,
                ))  # fmt: skip
    return out


def rayjob_objects(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The RayCluster a new RayJob creates, that cluster's objects, and (K8sJobMode) the submitter Job."""
    raw = with_server_fields(dict(doc), uid=UID, namespace=NAMESPACE)
    rayjob = parse_object(raw)
    assert isinstance(rayjob, RayJob)
    name = rayjob.metadata.name or ""
    cluster_name, job_id = rayjob_cluster_name(name, CLUSTER_SUFFIX), rayjob_job_id(name, JOB_SUFFIX)
    sidecar = rayjob.spec.submission_mode.value == "SidecarMode"
    made = build_rayjob_cluster(rayjob=rayjob, raw=raw, name=cluster_name, job_id=job_id, sidecar=sidecar)
    cluster = _cluster(made, uid=RAYJOB_CLUSTER_UID)
    owner_service = build_owner_head_service(owner_kind="RayJob", owner_name=name, owner_uid=UID, cluster=cluster)
    out = [made, *cluster_objects(cluster), owner_service]
    if rayjob.spec.submission_mode.value == "K8sJobMode":
        dashboard = f"{fqdn(head_service_name(cluster_name), NAMESPACE)}:8265"
        out.append(build_submitter_job(rayjob=rayjob, cluster=cluster, job_id=job_id, dashboard_url=dashboard))
    return out


def kray_files(sample: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """kray's objects for ``doc``, the sample's Ray object as the apiserver stored it (CRD defaults applied,
    as both operators read it) -- the golden's ``input``."""
    assert doc["metadata"]["name"] == sample_document(sample)["metadata"]["name"]
    made = cluster_objects(_cluster(doc, uid=UID)) if doc["kind"] == "RayCluster" else rayjob_objects(doc)
    return file_objects(normalise_golden(obj, namespace=NAMESPACE) for obj in made)


# ---- the comparison ---------------------------------------------------------------------------------
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CRDS = {"RayCluster": ROOT / "config" / "crd" / "ray.io_rayclusters.yaml"}


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.load(CRDS[kind].read_text(), Loader=LOADER)
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return dict(version["schema"]["openAPIV3Schema"])


def with_crd_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with the defaults of its structural schema filled in, as the apiserver does on create."""
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if key not in out and "default" in sub:
                out[key] = json.loads(json.dumps(sub["default"]))
            if key in out:
                out[key] = with_crd_defaults(out[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            out = {
                k: v if k in (schema.get("properties") or {}) else with_crd_defaults(v, extra) for k, v in out.items()
            }
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_crd_defaults(item, schema["items"]) for item in value]
    return value


def as_created(obj: dict[str, Any]) -> dict[str, Any]:
    """A custom resource as the apiserver stores it: its CRD's defaults added (both sides alike)."""
    kind = str(obj.get("kind", ""))
    return dict(with_crd_defaults(obj, crd_schema(kind))) if kind in CRDS else obj


def _flat(files: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, value in files.items():
        if isinstance(value, dict) and "kind" in value:
            yield key, value
        elif isinstance(value, dict):
            for sub, item in value.items():
                items = item if isinstance(item, list) else [item]
                for i, obj in enumerate(items):
                    yield (f"{key}.{sub}[{i}]" if isinstance(item, list) else f"{key}.{sub}"), obj


def differences(sample: str, kuberay: Mapping[str, Any], kray: Mapping[str, Any]) -> list[Difference]:
    left, right = dict(_flat(kuberay)), dict(_flat(kray))
    out = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        kind = str((a or b or {}).get("kind", ""))
        if a is None or b is None:
            out.append(Difference(sample, kind, key, "(object)", a, b))
        else:
            pairs = diff_values(as_created(a), as_created(b))
            out += [Difference(sample, kind, key, path, x, y) for path, x, y in pairs]
    return out


def unexplained(found: Iterable[Difference], entries: list[Deliberate]) -> list[Difference]:
    """The differences no entry explains. A map present on one side only is judged whole first, then
    key by key: the apiserver keeps such a map alive with keys of its own (a Job's pod template labels),
    so the differential suite sees those keys one by one and its entries name them."""
    out = []
    for difference in found:
        if judge([difference], entries).unexplained == []:
            continue
        present = difference.kray if difference.kuberay is None else difference.kuberay
        if difference.path == "(object)" or (difference.kuberay is None) == (difference.kray is None):
            out.append(difference)
        elif isinstance(present, dict) and present:
            left = difference.kuberay is not None
            out += unexplained(
                [dataclasses.replace(difference, path=f"{difference.path}.{key}", kuberay=value if left else None,
                                     kray=None if left else value) for key, value in present.items()],
                entries,
            )  # fmt: skip
        else:
            out.append(difference)
    return out


def load_golden(sample: str) -> dict[str, Any]:
    path = GOLDEN_DIR / sample
    assert path.exists(), f"{path} missing: run .venv/bin/python hack/kuberay_goldens.py {sample}"
    golden = yaml.load(path.read_text(), Loader=LOADER)
    assert set(golden) == {"input", "created"}, sorted(golden)
    return dict(golden)


def listed() -> list[Deliberate]:
    deliberate, gaps = listed_differences()
    return deliberate + gaps


@pytest.mark.parametrize("sample", SAMPLES)
def test_kray_builds_what_kuberay_sent(sample: str) -> None:
    golden = load_golden(sample)
    found = unexplained(differences(sample, golden["created"], kray_files(sample, golden["input"])), listed())
    report = "\n".join(d.line() for d in found)
    assert not found, f"{len(found)} difference(s) not in docs/compatibility.md:\n{report}"


def test_goldens_are_kuberays() -> None:
    """Each golden file says it came from KubeRay's operator, and holds at least a head pod and Service."""
    for sample in SAMPLES:
        text = (GOLDEN_DIR / sample).read_text()
        assert text.startswith("# KubeRay's operator v1.5.0"), sample
        assert "hack/kuberay_goldens.py" in text.splitlines()[1], sample
        created = load_golden(sample)["created"]
        assert {"headPod", "headService"} <= set(created), (sample, sorted(created))


def test_normalisation_drops_go_zero_values_but_keeps_empty_dir() -> None:
    obj = {"kind": "Pod", "metadata": {"name": "p", "creationTimestamp": None, "namespace": "n1"},
           "spec": {"containers": [{"name": "c", "resources": {}, "args": ["x -n n1"]}],
                    "volumes": [{"name": "v", "emptyDir": {}}]}, "status": {}}  # fmt: skip
    assert normalise_golden(obj, namespace="n1") == {
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "args": ["x -n <ns>"]}], "volumes": [{"name": "v", "emptyDir": {}}]},
    }


def test_an_unlisted_difference_is_reported() -> None:
    golden = load_golden("ray-cluster.sample.yaml")
    kray = kray_files("ray-cluster.sample.yaml", golden["input"])
    kray["headPod"]["spec"]["containers"][0]["image"] = "rayproject/ray:0.0.1"
    found = unexplained(differences("ray-cluster.sample.yaml", golden["created"], kray), listed())
    assert [(d.name, d.path, d.kray) for d in found] == [
        ("headPod", "spec.containers[name=ray-head].image", "rayproject/ray:0.0.1")
    ]
