"""Can this machine run these manifests? Decided before anything is created (issue 8). Pure: no I/O.

KubeRay's samples ask for things one machine may not have: GPUs and TPUs, more memory than it has,
sidecars whose programs are not installed, volumes only a cluster can provide, Services local mode does
not run, Kubernetes' own token review. Without a check up front the cluster starts and fails later (or
a job waits forever); with it ``kray apply``/``kray job run`` refuse at once, naming the field and the
numbers, and create nothing. The facts about the machine come in as a :class:`Machine` value
(:mod:`kray.cli.fit` gathers them); what only Kubernetes does (batch schedulers, queues) is reported as a
note, since it does not stop a cluster from running here.

Not refused: CPU requests (Ray's CPUs are logical; a cluster asking for more than this machine's cores
runs, just slower), Ray logical resources (``num-gpus`` in ``rayStartParams``), pip packages in a runtime
env, images (local pods run kray's own Ray).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from kray.api.structural import map_child
from kray.api.v1.raycluster import WorkerGroupSpec
from kray.controllers.common.names import auth_secret_name
from kray.controllers.raycluster.plan import desired_workers
from kray.local.environment import LocalEnvironment
from kray.local.fit_checks import Findings, check_pod, cloud_uris, known_names, quantity

RUNNABLE_KINDS = ("RayCluster", "RayJob", "RayService")
CONFIG_KINDS = ("ConfigMap", "Secret", "PersistentVolumeClaim")
AUTOSCALER_MEMORY = "512Mi"
"""KubeRay's autoscaler sidecar (``pod_parts``): part of the head pod when in-tree autoscaling is on."""
SCHEDULER_LABELS = (
    "ray.io/scheduler-name",
    "ray.io/gang-scheduling-enabled",
    "ray.io/priority-class-name",
    "volcano.sh/queue-name",
    "yunikorn.apache.org/queue",
    "yunikorn.apache.org/app-id",
    "kai.scheduler/queue",
    "kueue.x-k8s.io/queue-name",
    "kueue.x-k8s.io/priority-class",
)
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
# Ray fetches a runtime env's remote URIs with these modules (ray._private.runtime_env.protocol).
REMOTE_URI_MODULES: Mapping[str, tuple[tuple[str, ...], str]] = {
    "s3": (("boto3", "smart_open"), "smart_open[s3]"),
    "gs": (("google.cloud.storage", "smart_open"), "smart_open[gcs]"),
    "azure": (("azure.storage.blob", "azure.identity", "smart_open"), "azure-storage-blob azure-identity smart_open"),
    "abfss": (("adlfs", "azure.identity"), "adlfs azure-identity"),
    "http": (("smart_open",), "smart_open"),
    "https": (("smart_open",), "smart_open"),
}

# Runtime-env keys Ray serves with a program of the node (ray._private.runtime_env: conda_utils, image_uri).
_RUNTIME_ENV_PROGRAMS = (
    ("conda", "conda", "install Miniforge and put conda on PATH, or use pip/uv"),
    ("image_uri", "podman", "Ray runs image_uri workers with podman; use pip/uv, or install podman"),
    ("container", "podman", "Ray runs container workers with podman; use pip/uv, or install podman"),
)


@dataclass(frozen=True, slots=True)
class Machine:
    """What this machine offers the pods local mode would start."""

    memory_bytes: int
    cpus: int
    has_command: Callable[[str], bool]
    """Whether a program is found on the pods' PATH (kray's environment first, as :func:`preflight.pod_path`)."""
    has_module: Callable[[str], bool] = field(default=lambda _name: False)
    """Whether kray's Python (the pods' Python) can import a module."""
    can_mount: bool = True
    """Whether a pod can get its own mount namespace (root, or unprivileged user namespaces)."""
    extended: Mapping[str, int] = field(default_factory=dict)
    """Extended resources (``nvidia.com/gpu``...) this machine has, by name: none without device plugins."""
    existing: frozenset[tuple[str, str, str]] = frozenset()
    """(kind, namespace, name) of the ConfigMaps, Secrets, PVCs and RayClusters local mode already stores."""


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    name: str
    path: str
    message: str

    def line(self, source: str) -> str:
        """``source: Kind/name: path: message``, as ``kray validate`` prints an error."""
        return f"{source}: {self.kind}/{self.name}: {self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Fit:
    refusals: tuple[Finding, ...] = ()
    notes: tuple[Finding, ...] = ()
    missing: frozenset[tuple[str, str, str]] = frozenset()
    """(kind, namespace, name) referenced but neither in the documents nor in :attr:`Machine.existing`."""

    @property
    def ok(self) -> bool:
        return not self.refusals


def plan_fit(documents: list[dict[str, Any]], *, machine: Machine, namespace: str = "default") -> Fit:
    """Every reason this machine cannot run ``documents`` (refusals), and what it will ignore (notes)."""
    known = known_names(documents, machine.existing, namespace=namespace)
    refusals: list[Finding] = []
    notes: list[Finding] = []
    missing: set[tuple[str, str, str]] = set()
    for document in documents:
        if not isinstance(document, dict) or document.get("apiVersion") != "ray.io/v1":
            continue
        meta = _dict(document.get("metadata"))
        name = _str(meta.get("name")) or _str(meta.get("generateName")) or "<no name>"
        kind = _str(document.get("kind"))
        found = Findings(
            documents=documents, known=known, machine_commands=machine.has_command, can_mount=machine.can_mount
        )
        found.namespace = _str(meta.get("namespace")) or namespace
        found.extended = dict(machine.extended)
        _check_object(found, document, kind=kind, name=name)
        _check_memory(found, document, kind=kind, memory=machine.memory_bytes)
        _check_job(found, document, kind=kind, machine=machine)
        refusals += [Finding(kind, name, path, message) for path, message in found.refusals]
        notes += [Finding(kind, name, path, message) for path, message in found.notes]
        missing |= found.missing
    return Fit(tuple(refusals), tuple(notes), frozenset(missing))


# -- the object's pods ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodSite:
    """One pod template the object would start ``count`` pods from."""

    path: str
    template: dict[str, Any]
    count: int
    head: bool
    cluster_path: str


def cluster_specs(document: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, RayClusterSpec) of every cluster the object would create."""
    spec = _dict(document.get("spec"))
    kind = document.get("kind")
    if kind == "RayCluster":
        return [("spec", spec)]
    if kind == "RayJob" and not spec.get("clusterSelector") and isinstance(spec.get("rayClusterSpec"), dict):
        return [("spec.rayClusterSpec", spec["rayClusterSpec"])]
    if kind == "RayService" and isinstance(spec.get("rayClusterConfig"), dict):
        return [("spec.rayClusterConfig", spec["rayClusterConfig"])]
    template = _dict(spec.get("jobTemplate"))
    cron_cluster = template.get("rayClusterSpec")
    if kind == "RayCronJob" and not template.get("clusterSelector") and isinstance(cron_cluster, dict):
        return [("spec.jobTemplate.rayClusterSpec", cron_cluster)]
    return []


def pod_sites(document: Mapping[str, Any]) -> list[PodSite]:
    """Every pod template of the object, with how many pods KubeRay would start from it."""
    sites = []
    for base, cluster in cluster_specs(document):
        head = _dict(cluster.get("headGroupSpec"))
        sites.append(PodSite(f"{base}.headGroupSpec.template", _dict(head.get("template")), 1, True, base))
        for index, group in enumerate(_list(cluster.get("workerGroupSpecs"))):
            group_path = f"{base}.workerGroupSpecs[{index}]"
            count = _desired(group)
            sites.append(PodSite(f"{group_path}.template", _dict(_dict(group).get("template")), count, False, base))
    spec = _dict(document.get("spec"))
    runs_submitter = not LocalEnvironment.submits_over_http and spec.get("submissionMode") in (None, "K8sJobMode")
    if document.get("kind") == "RayJob" and runs_submitter and isinstance(spec.get("submitterPodTemplate"), dict):
        sites.append(PodSite("spec.submitterPodTemplate", spec["submitterPodTemplate"], 1, False, "spec"))
    return sites


def _desired(group: Any) -> int:
    """KubeRay's desired pods of a worker group (replicas clamped, times numOfHosts; 0 when suspended)."""
    try:
        return desired_workers(WorkerGroupSpec.model_validate(group))
    except (ValidationError, TypeError, ValueError):
        return 0  # validation reports the group; it starts no pod


def _check_object(found: Findings, document: dict[str, Any], *, kind: str, name: str) -> None:
    if kind not in RUNNABLE_KINDS:
        runs = f"{', '.join(RUNNABLE_KINDS[:-1])} and {RUNNABLE_KINDS[-1]}"
        found.refuse("kind", f"local mode runs {runs} objects; {kind} does not run locally yet")
    labels = {**_dict(_dict(document.get("metadata")).get("labels"))}
    for key in SCHEDULER_LABELS:
        if key in labels:
            found.note(
                map_child("metadata.labels", key), "batch scheduling and queues are Kubernetes'; ignored locally"
            )
    if kind == "RayCluster" and name != "<no name>":
        found.provided.add(("Secret", auth_secret_name(name)))  # local mode makes the cluster's token Secret
    for site in pod_sites(document):
        check_pod(found, site.path, site.template)
    for base, cluster in cluster_specs(document):
        _check_cluster(found, base, cluster, document=document, name=name)


def _check_cluster(found: Findings, base: str, cluster: dict[str, Any], *, document: dict[str, Any], name: str) -> None:
    auth = _dict(cluster.get("authOptions"))
    if auth.get("enableK8sTokenAuth") is True:
        found.refuse(
            f"{base}.authOptions.enableK8sTokenAuth",
            "Ray validates these tokens with a Kubernetes API server (TokenReview); local mode has none. "
            "Local clusters always use Ray token auth (`kray dashboard` prints the token)",
        )
    if isinstance(auth.get("secretName"), str):
        found.require("Secret", auth["secretName"], f"{base}.authOptions.secretName")
    groups = [
        (f"{base}.headGroupSpec", _dict(cluster.get("headGroupSpec"))),
        *((f"{base}.workerGroupSpecs[{i}]", _dict(g)) for i, g in enumerate(_list(cluster.get("workerGroupSpecs")))),
    ]
    for group_path, group in groups:
        params = _dict(group.get("rayStartParams"))
        if str(params.get("enable-resource-isolation", "")).lower() == "true":
            found.refuse(
                map_child(f"{group_path}.rayStartParams", "enable-resource-isolation"),
                "Ray's resource isolation takes a writable cgroup v2 hierarchy per node (on Kubernetes, each pod's "
                "own); the nodes of a local cluster share this machine's cgroups",
            )
        for key, value in params.items():
            for uri in cloud_uris(value):
                found.note(map_child(f"{group_path}.rayStartParams", str(key)), _cloud_note(uri))
    autoscaler = _dict(cluster.get("autoscalerOptions"))
    if cluster.get("enableInTreeAutoscaling") is True:
        found.check_resources(f"{base}.autoscalerOptions.resources", autoscaler.get("resources"))
        found.check_env(f"{base}.autoscalerOptions", autoscaler)
        if autoscaler.get("version") == "v1":
            found.note(
                f"{base}.autoscalerOptions.version",
                "Ray's v1 autoscaler tells nodes apart by IP address, and every local pod is 127.0.0.1: it adds "
                "workers but never finds one idle, so the group does not scale down here; v2 does (and so does no "
                "version: Ray 2.60 then runs v2)",
            )
    collector = _dict(_dict(cluster.get("historyServerOptions")).get("collectorOptions"))
    if collector:
        found.refuse(
            f"{base}.historyServerOptions.collectorOptions",
            f"the history collector is an image ({collector.get('image')}) local mode cannot run; "
            "local mode keeps job history itself (`kray get jobs`)",
        )
    _check_redis(found, base, cluster, document=document)


def _check_redis(found: Findings, base: str, cluster: dict[str, Any], *, document: dict[str, Any]) -> None:
    options = _dict(cluster.get("gcsFaultToleranceOptions"))
    for key in ("redisPassword", "redisUsername"):
        found.check_value_from(f"{base}.gcsFaultToleranceOptions.{key}.valueFrom", _dict(options.get(key)))
    addresses: list[tuple[str, str]] = []
    if isinstance(options.get("redisAddress"), str):
        addresses.append((f"{base}.gcsFaultToleranceOptions.redisAddress", options["redisAddress"]))
    annotations = _dict(_dict(document.get("metadata")).get("annotations"))
    if str(annotations.get("ray.io/ft-enabled", "")).lower() == "true":
        head = _dict(_dict(_dict(cluster.get("headGroupSpec")).get("template")).get("spec"))
        containers = _list(head.get("containers"))
        for index, item in enumerate(_list(_dict(containers[0] if containers else {}).get("env"))):
            env = _dict(item)
            if env.get("name") == "RAY_REDIS_ADDRESS" and isinstance(env.get("value"), str):
                path = f"{base}.headGroupSpec.template.spec.containers[0].env[{index}].value"
                addresses.append((path, env["value"]))
    for path, address in addresses:
        for host in _redis_hosts(address):
            reason = _unreachable_redis(host, found)
            if reason:
                found.refuse(
                    path,
                    f"{reason}: run Redis on this machine and point the address at 127.0.0.1:<port>, "
                    "or drop GCS fault tolerance",
                )


def _redis_hosts(address: str) -> Iterator[str]:
    for part in address.split(","):
        text = part.strip().split("://", 1)[-1].rsplit("@", 1)[-1]
        host = text[1 : text.find("]")] if text.startswith("[") else text.rsplit(":", 1)[0] if ":" in text else text
        if host:
            yield host


def _unreachable_redis(host: str, found: Findings) -> str | None:
    if host in _LOCAL_HOSTS or re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", host):
        return None
    service = host.split(".", 1)[0]
    served = found.defined("Service", service)
    if served:
        workloads = [f"{d['kind']}/{d['metadata']['name']}" for d in found.workloads_named(service)]
        behind = f", served by {', '.join(workloads)}," if workloads else ""
        return (
            f'redis host "{host}" is Service/{service} of this file{behind} which local mode does not run '
            "(it runs Ray pods only), and Service names do not resolve on this machine"
        )
    if host.endswith((".svc", ".svc.cluster.local", ".cluster.local")):
        return f'redis host "{host}" is a Kubernetes Service name, which does not resolve on this machine'
    return None


# -- memory ---------------------------------------------------------------------------------------------


def _check_memory(found: Findings, document: dict[str, Any], *, kind: str, memory: int) -> None:
    """The object's pods together need more memory than this machine has: refused at the biggest group."""
    total, pods = 0, 0
    biggest: tuple[int, str, int, int] | None = None  # (group total, path, per pod, count)
    for site in pod_sites(document):
        per_pod, path = pod_memory(site)
        if site.head:
            cluster = dict(cluster_specs(document)).get(site.cluster_path) or {}
            if cluster.get("enableInTreeAutoscaling") is True:
                per_pod += _autoscaler_memory(_dict(cluster.get("autoscalerOptions")))
        total += per_pod * site.count
        pods += site.count
        if site.count and (biggest is None or per_pod * site.count > biggest[0]):
            biggest = (per_pod * site.count, path, per_pod, site.count)
    if biggest is None or total <= memory:
        return
    _, path, per_pod, count = biggest
    found.refuse(
        path,
        f"needs {format_bytes(total)} of memory over {pods} pod{'s' * (pods != 1)} "
        f"(here {format_bytes(per_pod)} x {count}), this machine has {format_bytes(memory)}",
    )


def pod_memory(site: PodSite) -> tuple[int, str]:
    """A pod's memory request (requests, else limits, as the apiserver defaults them; init containers run
    before the others, so a pod needs the larger of its biggest init container and its containers' sum), and
    the path of its largest container's figure."""
    spec = _dict(site.template.get("spec"))
    total, largest, path = 0, -1, f"{site.path}.spec.containers"
    for index, container in enumerate(_list(spec.get("containers"))):
        amount, key = _container_memory(container)
        total += amount
        if amount > largest:
            largest, path = amount, f"{site.path}.spec.containers[{index}].resources.{key}[memory]"
    init = max((_container_memory(c)[0] for c in _list(spec.get("initContainers"))), default=0)
    return max(total, init), path


def _container_memory(container: Any) -> tuple[int, str]:
    resources = _dict(_dict(container).get("resources"))
    for key in ("requests", "limits"):
        value = _dict(resources.get(key)).get("memory")
        if value is not None:
            return _bytes(value), key
    return 0, "requests"


def _autoscaler_memory(options: dict[str, Any]) -> int:
    resources = _dict(options.get("resources"))
    if not resources:
        return _bytes(AUTOSCALER_MEMORY)
    return _container_memory({"resources": resources})[0]


def _bytes(value: Any) -> int:
    amount = quantity(value)
    return max(0, math.ceil(amount)) if amount is not None else 0


def format_bytes(amount: int) -> str:
    """``40Gi``, ``23.4Gi``, ``512Mi``: binary units, one decimal at most."""
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if amount >= size:
            text = f"{amount / size:.1f}".removesuffix(".0")
            return f"{text}{unit}"
    return f"{amount}"


# -- jobs -----------------------------------------------------------------------------------------------


def _check_job(found: Findings, document: dict[str, Any], *, kind: str, machine: Machine) -> None:
    spec = _dict(document.get("spec"))
    base = "spec"
    if kind == "RayCronJob":
        spec, base = _dict(spec.get("jobTemplate")), "spec.jobTemplate"
    elif kind != "RayJob":
        return
    selector = _dict(spec.get("clusterSelector"))
    wanted = selector.get("ray.io/cluster")
    if isinstance(wanted, str) and not found.has("RayCluster", wanted):
        found.missing.add(("RayCluster", found.namespace, wanted))
        found.refuse(
            map_child(f"{base}.clusterSelector", "ray.io/cluster"),
            f'RayCluster "{wanted}" is neither in the file nor in namespace {found.namespace}: create it first',
        )
    for uri in cloud_uris(spec.get("entrypoint")):
        found.note(f"{base}.entrypoint", _cloud_note(uri))
    _check_runtime_env(found, f"{base}.runtimeEnvYAML", spec.get("runtimeEnvYAML"), machine=machine)
    gpus = spec.get("entrypointNumGpus")
    if isinstance(gpus, int | float) and gpus > 0 and not _cluster_has_gpus(document):
        found.refuse(
            f"{base}.entrypointNumGpus",
            f"the entrypoint needs {gpus} GPU, and no node of the cluster has one (rayStartParams num-gpus); "
            "it would wait forever",
        )


def _cluster_has_gpus(document: dict[str, Any]) -> bool:
    if not cluster_specs(document):
        return True  # clusterSelector: the cluster is someone else's
    for _, cluster in cluster_specs(document):
        groups = [_dict(cluster.get("headGroupSpec")), *map(_dict, _list(cluster.get("workerGroupSpecs")))]
        for group in groups:
            params = _dict(group.get("rayStartParams"))
            try:
                if float(str(params.get("num-gpus", 0))) > 0:
                    return True
            except ValueError:
                continue
    return False


def _check_runtime_env(found: Findings, path: str, text: Any, *, machine: Machine) -> None:
    if not isinstance(text, str):
        return
    try:
        env = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # Ray's to reject
    env = _dict(env)
    for key, program, how in _RUNTIME_ENV_PROGRAMS:
        if env.get(key) and not machine.has_command(program):
            found.refuse(path, f"a runtime env with {key} needs `{program}` on this machine, which has none: {how}")
    remote = [env.get("working_dir"), *_list(env.get("py_modules"))]
    for uri in remote:
        if not isinstance(uri, str) or "://" not in uri:
            continue
        scheme = uri.split("://", 1)[0].lower()
        scheme = "azure" if scheme in {"az", "azure"} else scheme
        modules, install = REMOTE_URI_MODULES.get(scheme, ((), ""))
        missing = [m for m in modules if not machine.has_module(m)]
        if missing:
            found.refuse(
                path,
                f"Ray fetches {uri} with {', '.join(modules)}, which kray's Python lacks "
                f"({', '.join(missing)}): pip install {install} into it",
            )
        elif scheme not in {"http", "https"}:
            found.note(path, _cloud_note(uri))


def _cloud_note(uri: str) -> str:
    return (
        f"{uri}: local pods use this machine's own cloud credentials (environment, ~/.aws, gcloud), "
        "not the pod's Kubernetes ServiceAccount"
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
