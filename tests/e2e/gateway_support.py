"""A real Gateway API implementation on the e2e cluster: Traefik, serving the Gateway and HTTPRoute that kray's operator
makes for a ``NewClusterWithIncrementalUpgrade`` RayService.

Why Traefik: the operator only writes the objects (``<rs>-gateway``, ``<rs>-httproute`` with the traffic split as
backendRef weights); a Gateway controller must accept them, report their status (what the operator's readiness
checks read) and route by the weights. Traefik v3.6 is built on ``sigs.k8s.io/gateway-api`` v1.4.0, the CRDs
:mod:`kray.dev.gateway_api` installs and KubeRay v1.5.0 is written against, and builds from the Go module proxy
(``hack/k8s/build.sh traefik``) into the same cache as the control plane.

What :func:`traefik_gateway` installs, as a cluster admin would: the standard channel's CRDs; a ServiceAccount with
a ClusterRole for what Traefik's ``kubernetesgateway`` provider lists, watches and writes the status of; the
GatewayClass ``traefik`` (:data:`GATEWAY_CLASS`); a one-replica Deployment running the cached binary as a pod on
the node agent (each pod its own network namespace, its ServiceAccount token mounted, as a kubelet gives it); and
a ClusterIP Service ``traefik`` (port 80, the entrypoint ``web`` that Gateway listeners on port 80 bind to) that
clients reach by DNS name like any other Service. The Gateway's status address is that ClusterIP.

Traefik's settings that matter to the tests: ``--providers.providersThrottleDuration=100ms`` (default 2 s) is
how long Traefik holds a new dynamic configuration before it applies it -- it writes a route's status when it
*reads* the route, and routes by it only once applied, so a short throttle keeps the weights a test reads and the
weights requests meet close in time; access logs in JSON on stdout (the container log) say which backend each
request went to and what it answered, for a failed request's post-mortem.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from kray.dev.binaries import TRAEFIK, Binaries
from kray.dev.gateway_api import crd_files
from kray.dev.pytest_plugin import fresh_namespace
from kray.local.podrunner import pod_dir
from tests.e2e.support import E2E
from tests.local.node.agent_helpers import wait_for

GATEWAY_CLASS = "traefik"
CONTROLLER_NAME = "traefik.io/gateway-controller"
"""What Traefik's provider claims GatewayClasses by (its default ``controllerName``)."""
SERVICE = "traefik"
WEB_PORT = 80
"""The entrypoint ``web``: Traefik binds a Gateway listener to the entrypoint whose address ends in its port,
and kray's operator (as KubeRay) makes the listener on port 80."""
PING_PORT = 8080
"""Traefik's own entrypoint ``traefik``, where ``--ping`` answers (the readiness probe)."""
THROTTLE = "100ms"

GatewayClass = create_global_resource("gateway.networking.k8s.io", "v1", "GatewayClass", "gatewayclasses")

_GATEWAY_GROUP = "gateway.networking.k8s.io"
_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["services", "secrets", "configmaps"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {
        "apiGroups": [_GATEWAY_GROUP],
        "resources": [
            "gatewayclasses",
            "gateways",
            "httproutes",
            "grpcroutes",
            "referencegrants",
            "backendtlspolicies",
        ],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": [_GATEWAY_GROUP],
        "resources": [
            "gatewayclasses/status",
            "gateways/status",
            "httproutes/status",
            "grpcroutes/status",
            "backendtlspolicies/status",
        ],
        "verbs": ["update"],
    },
]
"""What the provider (pkg/provider/kubernetes/gateway/client.go, v3.6.12) watches -- the standard channel only,
no TCP/TLS routes -- and whose status it updates."""


@dataclass(frozen=True)
class Traefik:
    """The running Gateway controller."""

    namespace: str
    cluster_ip: str

    @property
    def url(self) -> str:
        """Where a pod sends requests for any Gateway listening on port 80."""
        return f"http://{SERVICE}.{self.namespace}.svc.cluster.local/"


def install_crds(e2e: E2E) -> None:
    """The Gateway API CRDs (standard channel, v1.4.0), applied server-side and Established."""
    files = crd_files()
    args = [arg for f in files for arg in ("-f", str(f))]
    e2e.kubectl("apply", "--server-side", "--field-manager=kray-e2e", *args, timeout=120)
    names = [f"{f.name.removeprefix(f'{_GATEWAY_GROUP}_').removesuffix('.yaml')}.{_GATEWAY_GROUP}" for f in files]
    e2e.kubectl("wait", "--for=condition=Established", *(f"crd/{n}" for n in names), "--timeout=60s", timeout=90)


def _deployment(*, namespace: str, account: str, binary: Path, cluster_ip: str) -> dict[str, Any]:
    args = [
        f"--entryPoints.web.address=:{WEB_PORT}",
        f"--entryPoints.traefik.address=:{PING_PORT}",
        "--ping=true",
        "--providers.kubernetesgateway=true",
        f"--providers.kubernetesgateway.statusAddress.ip={cluster_ip}",
        f"--providers.providersThrottleDuration={THROTTLE}",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
        "--accesslog=true",
        "--accesslog.format=json",
    ]
    probe = {
        "httpGet": {"path": "/ping", "port": PING_PORT},
        "periodSeconds": 1,
        "failureThreshold": 3,
    }
    container = {
        "name": "traefik",
        "image": "traefik:v3.6.12",  # the node agent runs the command on the host: the cached binary
        "command": [str(binary)],
        "args": args,
        "ports": [
            {"name": "web", "containerPort": WEB_PORT},
            {"name": "admin", "containerPort": PING_PORT},
        ],
        "readinessProbe": probe,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }
    labels = {"app": SERVICE}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": account,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [container],
                },
            },
        },
    }


def _service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": SERVICE},
            "ports": [{"name": "web", "port": WEB_PORT, "targetPort": "web"}],
        },
    }


def traefik_pods(e2e: E2E, namespace: str) -> list[dict[str, Any]]:
    return [p.to_dict() for p in e2e.client.list(Pod, namespace=namespace, labels={"app": SERVICE})]


def _ready_on_agent(e2e: E2E, namespace: str) -> bool:
    """One Traefik pod, Ready, on the node agent (a real process, not a kwok pod that only claims to run)."""
    found = traefik_pods(e2e, namespace)
    if len(found) != 1:
        return False
    pod = found[0]
    assert pod["spec"].get("nodeName") in (None, e2e.node), f"Traefik landed on {pod['spec']['nodeName']}"
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def gateway_class(e2e: E2E) -> dict[str, Any]:
    return dict(e2e.client.get(GatewayClass, GATEWAY_CLASS).to_dict())  # type: ignore[no-untyped-call]


def class_accepted(e2e: E2E) -> bool:
    found = gateway_class(e2e)
    conditions = (found.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions)


def traefik_log(e2e: E2E, namespace: str, *, lines: int = 30) -> str:
    tails = [
        f"--- {p['metadata']['name']}:\n{e2e.container_log(namespace, p['metadata']['name'], 'traefik', lines=lines)}"
        for p in traefik_pods(e2e, namespace)
    ]
    return "\n".join(tails) or "(no Traefik pod)"


def access_log_errors(e2e: E2E, namespace: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """The access log's requests that Traefik did not answer 200 (start time, status, the backend it picked)."""
    out: list[dict[str, Any]] = []
    for pod in traefik_pods(e2e, namespace):
        path = pod_dir(e2e.state_dir, namespace, pod["metadata"]["name"]) / "traefik.log"
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and "DownstreamStatus" in entry and entry["DownstreamStatus"] != 200:
                        keep = ("StartUTC", "Duration", "DownstreamStatus", "OriginStatus", "ServiceURL", "RouterName")
                        out.append({k: entry.get(k) for k in keep})
    return out[-limit:]


@contextlib.contextmanager
def traefik_gateway(e2e: E2E, binaries: Binaries) -> Iterator[Traefik]:
    """Traefik as the cluster's Gateway controller for class ``traefik`` until the block ends (then removed)."""
    binary = binaries.peer(TRAEFIK)
    t0 = time.monotonic()
    install_crds(e2e)
    suffix = secrets.token_hex(2)
    role = f"kray-e2e-traefik-{suffix}"
    with fresh_namespace(e2e.client, f"e2e-traefik-{suffix}") as namespace:
        account = "traefik"
        e2e.create({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": account, "namespace": namespace}})  # fmt: skip
        e2e.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
                    "rules": _RULES})  # fmt: skip
        e2e.create({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        })  # fmt: skip
        e2e.create({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": GATEWAY_CLASS}, "spec": {"controllerName": CONTROLLER_NAME}})  # fmt: skip
        try:
            e2e.create(_service(namespace))
            spec = e2e.client.get(Service, SERVICE, namespace=namespace).spec
            cluster_ip = str(spec.clusterIP if spec is not None else "")
            assert cluster_ip not in ("", "None"), f"Service {namespace}/{SERVICE} has no ClusterIP: {spec}"
            e2e.create(_deployment(namespace=namespace, account=account, binary=binary, cluster_ip=cluster_ip))
            wait_for(
                lambda: _ready_on_agent(e2e, namespace),
                timeout=90,
                what="the Traefik pod Ready (its /ping) on the node agent",
                seen=lambda: e2e.report(namespace, traefik_log(e2e, namespace)),
            )
            wait_for(
                lambda: class_accepted(e2e),
                timeout=60,
                what=f"GatewayClass {GATEWAY_CLASS} Accepted by Traefik",
                seen=lambda: f"{gateway_class(e2e)}\n{traefik_log(e2e, namespace)}",
            )
            e2e.notes.append(f"Traefik ready in {time.monotonic() - t0:.1f}s")
            yield Traefik(namespace=namespace, cluster_ip=cluster_ip)
        finally:
            with contextlib.suppress(ApiError):
                e2e.client.delete(Deployment, SERVICE, namespace=namespace)
            wait_for(
                lambda: not traefik_pods(e2e, namespace),
                timeout=60,
                what="the Traefik pod gone",
                seen=lambda: e2e.report(namespace),
            )
            for kind, name in ((GatewayClass, GATEWAY_CLASS), (ClusterRoleBinding, role), (ClusterRole, role)):
                with contextlib.suppress(ApiError):
                    e2e.client.delete(kind, name)
            with contextlib.suppress(ApiError):
                e2e.client.delete(ServiceAccount, account, namespace=namespace)
