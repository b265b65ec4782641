"""The chart's RBAC is exactly what ``kray operator`` needs, proven on a real apiserver from both sides.

``kray operator`` runs with a token of the chart's ServiceAccount (TokenRequest API) and only the RBAC
objects ``helm template`` renders, on a private control plane whose apiserver writes an audit log of
that ServiceAccount's requests and enforces ownerReference permissions (OpenShift's default). It
drives ``rbac_workload.yaml`` through every child kind and verb path. Then:

* too little: no request was refused (a 403 in the audit log or the operator's log fails);
* too much: every granted (group, resource, verb) appears in the audit log, or is listed in
  :data:`kray.operator.rbac.NOT_OBSERVABLE` with the apiserver-side check that needs it -- and each of
  those is probed: a ServiceAccount holding everything *but* that grant is refused by that check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray._kube.store import KubeStore
from kray.controllers.common.rbac import AUTOSCALER_RULES
from kray.dev import gateway_api, kwok
from kray.dev.binaries import HELM, Binaries
from kray.dev.controlplane import ControlPlane, Options
from kray.dev.procs import wait_until
from kray.operator.rbac import NOT_OBSERVABLE, OPERATOR_RULES, Grant, Permission, grants, rules
from kray.store import GATEWAY, HTTPROUTE, JOB, POD, RAYCLUSTER, RAYJOB, RAYSERVICE, SERVICE, Obj
from kray.store.errors import Conflict, NotFound
from tests.install.support import by_kind, helm_template
from tests.operator.support import eventually, running_operator

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(3240)]

RELEASE_NS = "kray-system"
SA = "kray-operator"
SA_USER = f"system:serviceaccount:{RELEASE_NS}:{SA}"
LEASE_UPDATE = ("coordination.k8s.io", "leases", "update")
WORKLOAD = yaml.safe_load_all((Path(__file__).parent / "rbac_workload.yaml").read_text())
MANIFESTS = {doc["metadata"]["name"]: doc for doc in WORKLOAD}


# ---- a private control plane with an audit log -------------------------------------------------------
@pytest.fixture(scope="module")
def audited_plane(k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    root = tmp_path_factory.mktemp("audit")
    policy = root / "policy.yaml"
    policy.write_text(
        yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata", "users": [SA_USER]}, {"level": "None"}],
        })
    )  # fmt: skip
    args = (
        f"--audit-policy-file={policy}",
        f"--audit-log-path={root / 'audit.log'}",
        "--audit-log-format=json",
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
    )
    with ControlPlane(binaries=k8s_binaries, options=Options(extra_apiserver_args=args)) as plane:
        plane.start_kwok()
        yield plane


class Api:
    """Raw HTTPS calls with one bearer token (admin, the operator's ServiceAccount, or a probe's)."""

    def __init__(self, plane: ControlPlane, token: str) -> None:
        self.server = plane.server
        self.token = token
        self.ctx = ssl.create_default_context(cafile=str(plane.ca_file))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, context=self.ctx, timeout=30) as response:
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        assert status < 300, f"{method} {path} -> {status}: {out}"
        return out

    def apply(self, obj: Obj) -> None:
        """Create, or replace when it exists (the tests own these objects)."""
        path = _collection(obj)
        status, out = self.call("POST", path, obj)
        if status == 409:
            current = self.ok("GET", f"{path}/{obj['metadata']['name']}")
            self.ok("PUT", f"{path}/{obj['metadata']['name']}", {**obj, "metadata": {**obj["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"]}})  # fmt: skip
            return
        assert status < 300, f"create {obj['kind']} {obj['metadata']['name']} -> {status}: {out}"

    def token_for(self, namespace: str, account: str) -> str:
        """A ServiceAccount token from the TokenRequest API (as the kubelet mounts one)."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
        out = self.ok("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", body)
        return str(out["status"]["token"])


def _collection(obj: Obj) -> str:
    group_version, kind = obj["apiVersion"], obj["kind"]
    plural = {"ServiceAccount": "serviceaccounts", "Namespace": "namespaces", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
              "CustomResourceDefinition": "customresourcedefinitions", "Node": "nodes"}[kind]  # fmt: skip
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    namespace = obj["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def write_kubeconfig(plane: ControlPlane, token: str, path: Path) -> Path:
    ca = base64.b64encode(plane.ca_file.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": plane.server, "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": RELEASE_NS}}],
    }))  # fmt: skip
    return path


def install_chart(admin: Api, helm: Path) -> list[Obj]:
    """The chart's CRDs and RBAC objects (not its Deployment: the operator runs here as a process)."""
    docs = helm_template(helm, namespace=RELEASE_NS)
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NS}})
    for crd in by_kind(docs, "CustomResourceDefinition"):
        admin.apply(crd)
    applied = [d for d in docs if d["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                                 "RoleBinding"}]  # fmt: skip
    assert {d["kind"] for d in docs} - {d["kind"] for d in applied} == {
        "CustomResourceDefinition", "Deployment", "Service"}  # fmt: skip
    for doc in applied:
        admin.apply(doc)

    def established() -> bool:
        for crd in by_kind(docs, "CustomResourceDefinition"):
            got = admin.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
            conditions = (got.get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    wait_until(established, timeout=60, what="the chart's CRDs to be Established")
    return docs


def namespace_with_default_sa(admin: Api, name: str) -> None:
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_until(lambda: admin.call("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
               timeout=60, what=f"ServiceAccount {name}/default")  # fmt: skip


# ---- the audit log ------------------------------------------------------------------------------------
def audited(plane: ControlPlane) -> list[dict[str, Any]]:
    log = Path(
        next(a for a in plane.options.extra_apiserver_args if a.startswith("--audit-log-path=")).split("=", 1)[1]
    )
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def used_grants(events: list[dict[str, Any]]) -> set[Grant]:
    out = set()
    for event in events:
        if event.get("user", {}).get("username") != SA_USER or "objectRef" not in event:
            continue
        ref = event["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.add(Grant(ref.get("apiGroup", ""), resource, event["verb"]))
    return out


# ---- driving the workload -----------------------------------------------------------------------------
def manifest(name: str, namespace: str) -> Obj:
    doc = copy.deepcopy(MANIFESTS[name])
    doc["metadata"]["namespace"] = namespace
    return doc


async def field(store: KubeStore, resource: Any, name: str, namespace: str, *path: str) -> Any:
    try:
        value: Any = await store.get(resource, name, namespace=namespace)
    except NotFound:
        return None
    for key in path:
        value = (value or {}).get(key)
    return value


async def gone(store: KubeStore, resource: Any, name: str, namespace: str) -> bool:
    return await field(store, resource, name, namespace) is None


async def patch_spec(store: KubeStore, resource: Any, name: str, namespace: str, spec: dict[str, Any]) -> None:
    for _ in range(10):
        current = await store.get(resource, name, namespace=namespace)
        with contextlib.suppress(Conflict):  # the operator wrote in between: read again
            await store.replace(resource, {**current, "spec": {**current["spec"], **spec}})
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"could not update {name}: 10 conflicts in a row")


async def drive_workload(store: KubeStore, ns: str) -> None:
    # full: autoscaler RBAC, Ingress, auth Secret, serve/headless Services, multi-host pods; then suspend.
    await store.create(RAYCLUSTER, manifest("full", ns))
    await store.create(RAYCLUSTER, manifest("ft", ns))
    await store.create(RAYJOB, manifest("job1", ns))
    await store.create(RAYJOB, manifest("job2", ns))

    async def ready(name: str) -> Any:
        return await field(store, RAYCLUSTER, name, ns, "status", "state") == "ready" or None

    await eventually(lambda: ready("full"), timeout=180, what="RayCluster full ready")
    for kind, name in ((SERVICE, "full-serve-svc"), (SERVICE, "full-headless")):
        assert await field(store, kind, name, ns), f"{name} was not created"
    await patch_spec(store, RAYCLUSTER, "full", ns, {"suspend": True})

    async def no_pods() -> Any:
        pods = await store.list(POD, namespace=ns, label_selector="ray.io/cluster=full")
        return not pods.items or None

    await eventually(no_pods, timeout=120, what="RayCluster full's pods deleted on suspend")

    # ft: Redis cleanup finalizer; deleting it runs the cleanup Job (kwok completes it), then it goes.
    async def has_finalizer() -> Any:
        return bool(await field(store, RAYCLUSTER, "ft", ns, "metadata", "finalizers")) or None

    await eventually(has_finalizer, timeout=120, what="RayCluster ft's Redis cleanup finalizer")
    await store.delete(RAYCLUSTER, "ft", namespace=ns)
    await eventually(lambda: gone(store, RAYCLUSTER, "ft", ns), timeout=180, what="RayCluster ft deleted after cleanup")

    # job1: Running with its submitter Job, suspended (cluster and Job deleted), resumed (new cluster).
    async def running(name: str) -> Any:
        status = await field(store, RAYJOB, name, ns, "status") or {}
        if status.get("jobDeploymentStatus") != "Running":
            return None
        return await field(store, JOB, name, ns) and status

    first = await eventually(lambda: running("job1"), timeout=240, what="RayJob job1 Running with its submitter")
    await patch_spec(store, RAYJOB, "job1", ns, {"suspend": True})

    seen: dict[str, Any] = {}

    async def suspended() -> Any:
        seen["status"] = await field(store, RAYJOB, "job1", ns, "status")
        seen["cluster"] = await field(store, RAYCLUSTER, first["rayClusterName"], ns, "metadata", "name")
        seen["submitter"] = await field(store, JOB, "job1", ns, "metadata", "name")
        return (seen["status"] or {}).get("jobDeploymentStatus") == "Suspended" or None

    try:
        await eventually(suspended, timeout=180, what="RayJob job1 Suspended")
    except AssertionError as error:
        raise AssertionError(f"{error}; job1 and its children: {seen}") from None
    await patch_spec(store, RAYJOB, "job1", ns, {"suspend": False})

    async def repointed() -> Any:
        status = await running("job1")
        if not status or status.get("rayClusterName") == first["rayClusterName"]:
            return None
        target = await field(store, SERVICE, "job1-head-svc", ns, "spec", "selector")
        return (target or {}).get("ray.io/cluster") == status["rayClusterName"] or None

    await eventually(repointed, timeout=240, what="RayJob job1 running again with job1-head-svc on its new cluster")

    # job2: its deadline fails it; the DeleteSelf rule deletes it.
    await eventually(lambda: gone(store, RAYJOB, "job2", ns), timeout=180, what="RayJob job2 deleted by its rule")
    await drive_rayservice(store, ns)
    await drive_incremental(store, ns)


async def drive_rayservice(store: KubeStore, ns: str) -> None:
    """svc: finalizer and status (rayservices update, rayservices/status), its pending cluster; suspended, the
    RayService's head Service is deleted (services delete); then deleted (finalizer released)."""
    await store.create(RAYSERVICE, manifest("svc", ns))

    async def pending() -> Any:
        status = await field(store, RAYSERVICE, "svc", ns, "status", "pendingServiceStatus") or {}
        name = status.get("rayClusterName")
        return name and await field(store, RAYCLUSTER, name, ns, "metadata", "name")

    cluster = await eventually(pending, timeout=180, what="RayService svc's pending RayCluster")
    # No Ray runs on kwok, so Serve never answers, no cluster gets ready to serve and the RayService makes no
    # Services of its own: svc-head-svc stands in for the one a serving cluster gets (owned by the RayService,
    # selecting its cluster, as rayservice_controller.go reconcileServices makes it).
    owner = await store.get(RAYSERVICE, "svc", namespace=ns)
    reference = {"apiVersion": "ray.io/v1", "kind": "RayService", "name": "svc", "uid": owner["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    await store.create(SERVICE, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc-head-svc", "namespace": ns, "ownerReferences": [reference]},
        "spec": {"selector": {"ray.io/cluster": cluster}, "ports": [{"name": "dashboard", "port": 8265}]},
    })  # fmt: skip
    await patch_spec(store, RAYSERVICE, "svc", ns, {"suspend": True})

    async def suspended() -> Any:
        service_gone = await gone(store, SERVICE, "svc-head-svc", ns)
        return (service_gone and await gone(store, RAYCLUSTER, cluster, ns)) or None

    await eventually(suspended, timeout=180, what="RayService svc suspended: its cluster and head Service deleted")
    await store.delete(RAYSERVICE, "svc", namespace=ns)
    await eventually(lambda: gone(store, RAYSERVICE, "svc", ns), timeout=120, what="RayService svc deleted")


def install_gateway_crds(admin: Api) -> None:
    """The Gateway API CRDs (KubeRay v1.5.0's gateway-api v1.4.0), as a cluster running incremental upgrades has."""
    names = []
    for path in gateway_api.crd_files():
        for crd in yaml.safe_load_all(path.read_text()):
            if isinstance(crd, dict):
                admin.apply(crd)
                names.append(crd["metadata"]["name"])

    def established() -> bool:
        for name in names:
            got = admin.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if not any(c["type"] == "Established" and c["status"] == "True" for c in got["status"]["conditions"] or ()):
                return False
        return True

    wait_until(established, timeout=60, what="the Gateway API CRDs to be Established")


async def drive_incremental(store: KubeStore, ns: str) -> None:
    """inc: its Gateway (gateways get, create), the per-cluster serve Service of its cluster; once that cluster is
    active (set here by hand: no Ray on kwok) its HTTPRoute (httproutes get, create); a new gatewayClassName
    (gateways update); a new cluster spec, whose pending cluster joins the route (httproutes update); suspended,
    both go (gateways, httproutes delete)."""
    await store.create(RAYSERVICE, manifest("inc", ns))
    await eventually(lambda: field(store, GATEWAY, "inc-gateway", ns, "spec"), timeout=120, what="inc-gateway")

    async def pending() -> Any:
        name = (await field(store, RAYSERVICE, "inc", ns, "status", "pendingServiceStatus") or {}).get("rayClusterName")
        return name and await field(store, SERVICE, f"{name}-serve-svc", ns, "metadata", "name") and name

    first = await eventually(pending, timeout=180, what="inc's pending cluster and its own serve Service")
    for _ in range(20):  # promote it, as the Serve readiness kwok cannot give would
        current = await store.get(RAYSERVICE, "inc", namespace=ns)
        status = {**current.get("status", {}), "activeServiceStatus": {"rayClusterName": first},
                  "pendingServiceStatus": {}}  # fmt: skip
        with contextlib.suppress(Conflict):
            await store.replace_status(RAYSERVICE, {**current, "status": status})
            break
        await asyncio.sleep(0.3)

    async def backends(count: int) -> Any:
        rules = await field(store, HTTPROUTE, "inc-httproute", ns, "spec", "rules") or [{}]
        refs = rules[0].get("backendRefs") or []
        return len(refs) == count or None

    await eventually(lambda: backends(1), timeout=120, what="inc-httproute to its active cluster")
    options = {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": {
        "gatewayClassName": "other", "stepSizePercent": 10, "intervalSeconds": 30, "maxSurgePercent": 10}}  # fmt: skip
    await patch_spec(store, RAYSERVICE, "inc", ns, {"upgradeStrategy": options})

    async def reclassed() -> Any:
        return await field(store, GATEWAY, "inc-gateway", ns, "spec", "gatewayClassName") == "other" or None

    await eventually(reclassed, timeout=120, what="inc-gateway with the new gatewayClassName")
    spec = copy.deepcopy((await store.get(RAYSERVICE, "inc", namespace=ns))["spec"]["rayClusterConfig"])
    spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = "rayproject/ray:2.59.0"
    await patch_spec(store, RAYSERVICE, "inc", ns, {"rayClusterConfig": spec})
    await eventually(lambda: backends(2), timeout=180, what="inc-httproute with the new pending cluster")
    await patch_spec(store, RAYSERVICE, "inc", ns, {"suspend": True})

    async def suspended() -> Any:
        return (await gone(store, GATEWAY, "inc-gateway", ns) and await gone(store, HTTPROUTE, "inc-httproute", ns)
                and await gone(store, RAYCLUSTER, first, ns)) or None  # fmt: skip

    await eventually(suspended, timeout=180, what="inc suspended: its Gateway, HTTPRoute and clusters deleted")
    await store.delete(RAYSERVICE, "inc", namespace=ns)
    await eventually(lambda: gone(store, RAYSERVICE, "inc", ns), timeout=120, what="RayService inc deleted")


# ---- probes for the grants no audit log shows ----------------------------------------------------------
def probe_is_refused(plane: ControlPlane, admin: Api, grant: Grant, ns: str) -> str:
    """A ServiceAccount with every operator rule but ``grant`` attempts what needs it; returns the refusal."""
    name = f"probe-{secrets.token_hex(3)}"
    held = [
        Permission(p.group, p.resource, tuple(v for v in p.verbs if Grant(p.group, p.resource, v) != grant), "")
        for p in OPERATOR_RULES
    ]
    held = [p for p in held if p.verbs]
    admin.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
    admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
                 "rules": rules(held)})  # fmt: skip
    admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": name},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                 "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})  # fmt: skip
    probe = Api(plane, admin.token_for(ns, name))
    owner = admin.ok("GET", f"/apis/ray.io/v1/namespaces/{ns}/rayclusters/full")
    if grant.resource.endswith("/finalizers"):
        kinds = {"rayjobs": "RayJob", "rayservices": "RayService", "rayclusters": "RayCluster"}
        kind = kinds[grant.resource.split("/")[0]]
        reference = {"apiVersion": "ray.io/v1", "kind": kind, "name": "x", "uid": owner["metadata"]["uid"],
                     "controller": True, "blockOwnerDeletion": True}  # fmt: skip
        path = f"/api/v1/namespaces/{ns}/services?dryRun=All"
        body: Obj = {"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": ns, "ownerReferences": [reference]},
                     "spec": {"ports": [{"port": 80}]}}  # fmt: skip
        marker = "cannot set blockOwnerDeletion"
    else:
        path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles?dryRun=All"
        body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": ns}, "rules": [dict(r) for r in AUTOSCALER_RULES]}  # fmt: skip
        marker = "attempting to grant RBAC permissions not currently held"
    deadline = time.monotonic() + 30
    last: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:  # the authorizer's cache learns the new binding within a second or so
        last = probe.call("POST", path, body)
        if last[0] == 403 and marker in str(last[1]):
            return str(last[1]["message"])
        time.sleep(0.5)
    raise AssertionError(f"without {grant} the probe was not refused by that check; last: {last}")


# ---- the test --------------------------------------------------------------------------------------------
async def test_operator_runs_on_exactly_the_charts_rbac(
    audited_plane: ControlPlane, k8s_binaries: Binaries, tmp_path: Path
) -> None:
    plane = audited_plane
    admin = Api(plane, plane.token)
    docs = await asyncio.to_thread(install_chart, admin, k8s_binaries.tool(HELM))
    await asyncio.to_thread(install_gateway_crds, admin)
    (cluster_role,) = by_kind(docs, "ClusterRole")
    granted = grants(OPERATOR_RULES)
    assert cluster_role["rules"] == rules(OPERATOR_RULES)
    ns = f"t-rbac-{secrets.token_hex(3)}"
    await asyncio.to_thread(namespace_with_default_sa, admin, ns)
    for i in range(2):
        admin.apply(kwok.node_manifest(f"kwok-rbac-{i}"))
    kubeconfig = write_kubeconfig(plane, admin.token_for(RELEASE_NS, SA), tmp_path / "operator.kubeconfig")
    store = KubeStore.from_kubeconfig(plane.kubeconfig)
    try:
        # Leader election on its own (a loaded machine can starve a renewal and end a long run): acquire,
        # renew, release on SIGTERM. Then the workload, without election, so only RBAC can fail it.
        election = ["--enable-leader-election=true", f"--leader-election-namespace={RELEASE_NS}"]
        with running_operator(kubeconfig=kubeconfig, log_dir=tmp_path, namespaces=[], extra=election) as operator:

            async def renewed() -> Any:
                updates = [g for g in used_grants(audited(plane)) if g == Grant(*LEASE_UPDATE)]
                return updates or None

            await eventually(renewed, timeout=60, what="a Lease renewal by the operator")
            assert operator.terminate() == 0, operator.tail()
            log = operator.log.read_text()
        with running_operator(
            kubeconfig=kubeconfig, log_dir=tmp_path, namespaces=[], extra=["--enable-leader-election=false"]
        ) as operator:
            try:
                await drive_workload(store, ns)
            except AssertionError as error:
                raise AssertionError(f"{error}\noperator log:\n{operator.tail()}") from None
            assert operator.terminate() == 0, operator.tail()
            log += operator.log.read_text()
        assert "forbidden" not in log.lower(), f"the operator was refused:\n{operator.tail()}"

        events = [e for e in audited(plane) if e.get("user", {}).get("username") == SA_USER]
        refused = [e for e in events if e.get("responseStatus", {}).get("code") == 403]
        assert not refused, f"requests refused: {[(e['verb'], e['requestURI']) for e in refused]}"
        used = used_grants(events)
        leader = {g for g in used if g.resource == "leases"}
        assert leader == {Grant("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
        used -= leader
        assert used <= granted, f"used but not granted (impossible without a 403): {sorted(used - granted)}"
        unused = granted - used - set(NOT_OBSERVABLE)
        assert not unused, f"granted but never used (drop them from kray/operator/rbac.py): {sorted(unused)}"
        overlap = used & set(NOT_OBSERVABLE)
        assert not overlap, f"listed as not observable but seen in the audit log (move them): {sorted(overlap)}"

        refusals = {}
        for grant in sorted(NOT_OBSERVABLE):
            refusals[grant] = await asyncio.to_thread(probe_is_refused, plane, admin, grant, ns)
        assert set(refusals) == set(NOT_OBSERVABLE)
    finally:
        await store.close()
        with contextlib.suppress(Exception):
            admin.call("DELETE", f"/api/v1/namespaces/{ns}")
