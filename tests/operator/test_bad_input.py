"""Over 1,000 malformed RayClusters and RayJobs through the real apiserver: each ends with an Event or a
status naming the broken field, the operator never crashes, and valid clusters next to them still get ready.

Why: a custom resource is user input the operator cannot refuse at the door. KubeRay's CRDs validate
what a schema can express, but a cluster may run CRDs with validation off (or old ones), and the
schema cannot express KubeRay's cross-field rules. Whatever arrives, one bad object must cost one
Event/status -- never a crashed worker, a dead informer, or a queue stuck in backoff for the others.

Two planes:

* a DEDICATED control plane with "validation off" ray.io CRDs (same names and versions as
  ``kray crds``, schema ``{type: object, x-kubernetes-preserve-unknown-fields: true}``) takes the
  CRs only such a CRD admits (:func:`tests.operator.bad_crs.unchecked_crs`);
* the session plane, with the strict CRDs, takes the schema-valid nonsense
  (:func:`tests.operator.bad_crs.schema_valid_crs`).

The CRs are generated up front by hypothesis (a ``@given`` function that collects its examples), each
with the field path its one mutation broke. A mutation kray's own validator still accepts (a dropped
``minReplicas`` that autoscaling makes optional) is no bad input and is left out (``assume``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kray._kube.store import KubeStore
from kray.api.crd import crd
from kray.api.manifest import Document, validate_document
from kray.dev import kwok
from kray.dev.binaries import Binaries
from kray.dev.controlplane import ControlPlane, Options
from kray.store import EVENT, NAMESPACE, RAYCLUSTER, RAYJOB, SERVICE_ACCOUNT, Obj, Resource
from kray.store.errors import Conflict, Invalid, NotFound
from tests.operator.bad_crs import BadCR, schema_valid_crs, unchecked_crs, with_name
from tests.operator.support import KrayOperator, eventually, running_operator

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

UNCHECKED = 800  # through the validation-off CRDs
SCHEMA_VALID = 250  # through the strict CRDs
NESTING_HEADROOM = 30_000
"""Python's json needs a recursion level per nesting level; the apiserver admits up to 10,000."""
NODE = Resource("v1", "Node", "nodes", namespaced=False, status_subresource=True)
CRD = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "raycluster.yaml").read_text())
QUEUE_METRICS = ("workqueue_depth", "controller_runtime_active_workers", "controller_runtime_reconcile_total")
REASONS = {"InvalidRayClusterSpec", "InvalidRayJobSpec"}


def collect(strategy: st.SearchStrategy[BadCR], count: int) -> list[BadCR]:
    """``count`` bad CRs drawn by hypothesis (kept, not checked: the operator checks them)."""
    found: list[BadCR] = []

    @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(cr: BadCR) -> None:
        outcome = validate_document(Document("generated", 0, with_name(cr, name="probe", namespace="probe")))
        assume(not outcome.ok)
        found.append(cr)

    gather()
    return found


@pytest.fixture(scope="module", autouse=True)
def nesting_headroom() -> Iterator[None]:
    """This process encodes and decodes the deeply nested CRs too."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, NESTING_HEADROOM))
    yield
    sys.setrecursionlimit(before)


def permissive_crd(kind: str) -> dict[str, Any]:
    """``kray crds``' CRD with validation off: any JSON under the root, status subresource kept."""
    found = copy.deepcopy(crd(kind))
    for version in found["spec"]["versions"]:
        version["schema"] = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return found


@pytest.fixture(scope="module")
def permissive_plane(k8s_binaries: Binaries) -> Iterator[tuple[ControlPlane, str]]:
    """A plane of its own (validation off must not leak into other tests): CRDs, a namespace, a kwok node."""
    namespace = "bad-input"

    async def prepare(plane: ControlPlane) -> None:
        async with KubeStore.from_kubeconfig(plane.kubeconfig) as store:
            for kind in ("RayCluster", "RayJob", "RayService"):  # the operator watches all three
                await store.create(CRD, permissive_crd(kind))
            await store.create(NAMESPACE, {"metadata": {"name": namespace}})
            await store.create(NODE, kwok.node_manifest(f"kwok-{secrets.token_hex(3)}"))

            async def ready() -> bool:
                plurals = ("rayclusters", "rayjobs", "rayservices")
                crds = [await store.get(CRD, f"{p}.ray.io", namespace=None) for p in plurals]
                established = all(
                    any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions(c))
                    for c in crds
                )
                try:
                    await store.get(SERVICE_ACCOUNT, "default", namespace=namespace)
                except NotFound:
                    return False
                return established

            await eventually(ready, timeout=60, what="permissive CRDs Established and ServiceAccount default")

    with ControlPlane(binaries=k8s_binaries, options=Options(scheduler=True)) as plane:
        plane.start_kwok()
        asyncio.run(prepare(plane))
        yield plane, namespace


def conditions(obj: Obj) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


@pytest.mark.timeout(540)
async def test_crs_written_with_validation_off_each_end_with_a_report_naming_the_field(
    permissive_plane: tuple[ControlPlane, str], tmp_path: Path
) -> None:
    plane, namespace = permissive_plane
    crs = collect(unchecked_crs(), UNCHECKED)
    await run_bad_input(kubeconfig=plane.kubeconfig, namespace=namespace, crs=crs, log_dir=tmp_path, strict=False)


@pytest.mark.timeout(600)
async def test_schema_valid_nonsense_through_the_strict_crds_ends_with_a_report_naming_the_field(
    k8s_control_plane: Any, ray_crds: Any, k8s_namespace: str, kwok_nodes: Any, tmp_path: Path
) -> None:
    kwok_nodes(1)
    crs = collect(schema_valid_crs(), SCHEMA_VALID)
    await run_bad_input(
        kubeconfig=Path(k8s_control_plane.kubeconfig), namespace=k8s_namespace, crs=crs, log_dir=tmp_path, strict=True
    )


async def test_a_watch_reads_strings_with_line_separators_json_does_not_escape(
    permissive_plane: tuple[ControlPlane, str],
) -> None:
    """Regression: KubeStore split watch lines like ``str.splitlines`` (at U+0085 too), and the informer
    of the kind died on the half object; every later object of that kind was never reconciled."""
    plane, namespace = permissive_plane
    odd = "a\x85b\u2028c\u2029d\x1ce"
    async with KubeStore.from_kubeconfig(plane.kubeconfig) as store:
        listed = await store.list(RAYJOB, namespace=namespace)
        stream = store.watch(RAYJOB, namespace=namespace, resource_version=listed.resource_version)
        name = f"odd-{secrets.token_hex(3)}"
        await store.create(RAYJOB, {"metadata": {"name": name, "namespace": namespace}, "spec": {"entrypoint": odd}})
        async with asyncio.timeout(30):
            async for event in stream:
                if event.object["metadata"]["name"] == name:
                    assert event.object["spec"]["entrypoint"] == odd
                    break
        await store.delete(RAYJOB, name, namespace=namespace)


# ---- the run -------------------------------------------------------------------------------------------


@dataclass
class Submitted:
    cr: BadCR
    name: str
    manifest: dict[str, Any]
    refused: str | None = None
    reports: list[str] = field(default_factory=list)

    @property
    def resource(self) -> Resource:
        return RAYCLUSTER if self.cr.kind == "RayCluster" else RAYJOB


async def run_bad_input(*, kubeconfig: Path, namespace: str, crs: list[BadCR], log_dir: Path, strict: bool) -> None:
    started = time.monotonic()
    manifests = [
        (cr, with_name(cr, name=f"{'rc' if cr.kind == 'RayCluster' else 'rj'}-{index:04d}", namespace=namespace))
        for index, cr in enumerate(crs)
    ]
    submitted = [Submitted(cr, manifest["metadata"]["name"], manifest) for cr, manifest in manifests]
    valid = [f"valid-{i}" for i in range(3)]
    async with KubeStore.from_kubeconfig(kubeconfig) as store:
        with running_operator(
            kubeconfig=kubeconfig,
            log_dir=log_dir,
            namespaces=[namespace],
            extra=["--enable-leader-election=false", "--reconcile-concurrency", "2"],
        ) as operator:
            # Valid clusters first, amid and after the bad ones: none may wait for them.
            third = len(submitted) // 3
            batches = [submitted[:third], submitted[third : 2 * third], submitted[2 * third :]]
            for name, batch in zip(valid, batches, strict=True):
                await store.create(RAYCLUSTER, {**EXAMPLE, "metadata": {"name": name, "namespace": namespace}})
                await create_all(store, batch)
            created_at = time.monotonic()
            await wait_ready(store, namespace, valid, operator)
            pending = [s for s in submitted if s.refused is None]
            await wait_for_reports(store, namespace, pending, operator)
            done_at = time.monotonic()
            check_operator_health(operator)
    how = check_reports(submitted, strict=strict)
    mutations = Counter(s.cr.mutation + (" + garbage status" if s.cr.status is not None else "") for s in submitted)
    refused = Counter(s.cr.mutation for s in submitted if s.refused is not None)
    sys.stderr.write(
        f"\n{len(submitted)} bad CRs {dict(mutations)}; refused by the apiserver: {dict(refused)}; path named: "
        f"{dict(how)}; created in {created_at - started:.0f}s, all reported {done_at - created_at:.0f}s later\n"
    )


async def create_all(store: KubeStore, batch: list[Submitted]) -> None:
    gate = asyncio.Semaphore(8)

    async def one(item: Submitted) -> None:
        async with gate:
            try:
                created = await store.create(item.resource, item.manifest)
            except Invalid as error:
                item.refused = str(error)
                return
            for _ in range(5):  # the operator may have written a status first
                if item.cr.status is None:
                    return
                try:
                    await store.replace_status(item.resource, {**created, "status": item.cr.status})
                    return
                except Conflict:
                    created = await store.get(item.resource, item.name, namespace=created["metadata"]["namespace"])
            raise AssertionError(f"could not write the garbage status of {item.name}: it kept changing")

    await asyncio.gather(*(one(item) for item in batch))


async def wait_ready(store: KubeStore, namespace: str, names: list[str], operator: KrayOperator) -> None:
    """The valid clusters become ready while the bad ones are being handled (2 minutes at most)."""
    deadline = time.monotonic() + 120
    states: dict[str, Any] = {}
    while time.monotonic() < deadline and operator.process.poll() is None:
        for name in names:
            status = (await store.get(RAYCLUSTER, name, namespace=namespace)).get("status") or {}
            states[name] = status.get("state") or [c.get("reason") for c in conditions({"status": status})]
        if all(state == "ready" for state in states.values()):
            return
        await asyncio.sleep(1)
    raise AssertionError(f"valid RayClusters not ready: {states}; operator log:\n{operator.tail()}")


async def wait_for_reports(store: KubeStore, namespace: str, pending: list[Submitted], operator: KrayOperator) -> None:
    """Until every CR has an Invalid* Event or a ValidationFailed status (3 minutes at most)."""
    by_key: dict[tuple[Any, Any], Submitted] = {(s.cr.kind, s.name): s for s in pending}
    deadline = time.monotonic() + 180
    missing: list[Submitted] = pending
    while time.monotonic() < deadline:
        for item in pending:
            item.reports.clear()
        for event in (await store.list(EVENT, namespace=namespace)).items:
            involved = event.get("involvedObject") or {}
            about = by_key.get((involved.get("kind"), involved.get("name")))
            if about is not None and event.get("reason") in REASONS:
                about.reports.append(f"Event {event['reason']}: {event.get('message')}")
        for job in (await store.list(RAYJOB, namespace=namespace)).items:
            status: dict[str, Any] = job["status"] if isinstance(job.get("status"), dict) else {}
            about = by_key.get(("RayJob", job["metadata"]["name"]))
            if about is not None and status.get("jobDeploymentStatus") == "ValidationFailed":
                about.reports.append(f"status ValidationFailed: {status.get('message')}")
        missing = [s for s in pending if not s.reports]
        if not missing:
            return
        if operator.process.poll() is not None:
            break
        await asyncio.sleep(2)
    shown = "\n".join(describe(s) for s in missing[:5])
    alive = operator.process.poll() is None
    queues = [line for line in operator.metrics().splitlines() if line.startswith(QUEUE_METRICS)] if alive else []
    raise AssertionError(
        f"{len(missing)} of {len(pending)} bad CRs got no Invalid* Event nor ValidationFailed status "
        f"(operator {'alive' if alive else 'exited ' + str(operator.process.returncode)}); by mutation: "
        f"{dict(Counter(s.cr.mutation for s in missing))}; first ones:\n{shown}\noperator queues:\n"
        + "\n".join(queues)
        + f"\noperator log:\n{operator.tail()}"
    )


def check_operator_health(operator: KrayOperator) -> None:
    assert operator.process.poll() is None, f"kray operator exited {operator.process.returncode}:\n{operator.tail()}"
    text = operator.log.read_text(errors="replace")
    assert "Traceback" not in text, "the operator logged a Python traceback:\n" + traceback_excerpt(text)
    failed = [r for r in operator.log_lines() if r.get("event") in {"reconcile.failed", "informer.handler_failed"}]
    assert not failed, f"{len(failed)} reconciles raised instead of reporting; first: {failed[:3]}"
    status, _ = operator.get("/metrics", port=operator.metrics_port)
    assert status == 200, f"/metrics answered {status} with the bad CRs in the cache"


def check_reports(submitted: list[Submitted], *, strict: bool) -> Counter[str]:
    """Every CR's report names its broken field; returns how (``exact``, ``below``, ``ancestor``) per CR."""
    wrong, how = [], Counter[str]()
    for item in submitted:
        # Only a strict CRD may refuse a CR (its CEL rules twin KubeRay's); then the refusal names the field.
        reports = [item.refused] if item.refused is not None and strict else item.reports
        # A garbage status is a second problem; the validator may stop at it before it reaches the spec's
        # (a null is only refused by the model, after the schema check found the status wrong).
        paths = [item.cr.path] + (["status"] if item.cr.status is not None else [])
        named = sorted(filter(None, (names_path(report, path) for report in reports for path in paths)))
        if named:
            how[named[0]] += 1
        else:
            wrong.append(describe(item))
        invalid_events = sum(report.startswith("Event ") for report in item.reports)
        if invalid_events > 3:  # one per reconcile, and nothing changes the CR: a hot loop otherwise
            wrong.append(f"{invalid_events} Invalid* Events (a reconcile loop?):\n{describe(item)}")
    assert not wrong, f"{len(wrong)} of {len(submitted)} CRs not reported right:\n" + "\n".join(wrong[:8])
    return how


def names_path(message: str, path: str) -> str | None:
    """How ``message`` names ``path``: ``exact``, ``below`` (a field under it), or ``ancestor`` (a problem
    reported AT a parent, as when the parent itself has the wrong type); None when it does not."""
    for delimiter in (":", " ", ";"):
        if f"{path}{delimiter}" in message or message.endswith(path):
            return "exact"
    if f"{path}." in message or f"{path}[" in message:
        return "below"
    ancestors = [path[:i] for i, char in enumerate(path) if char in ".[" and i > 0]
    return "ancestor" if any(f"{ancestor}: " in message for ancestor in ancestors) else None


def describe(item: Submitted) -> str:
    manifest = json.dumps(item.manifest, default=str)
    manifest = manifest if len(manifest) < 1500 else manifest[:1500] + f"... ({len(manifest)} chars)"
    reports = [r if len(r) < 600 else r[:600] + "..." for r in item.reports] or ["(none)"]
    refused = f"\n  refused by the apiserver: {item.refused[:600]}" if item.refused else ""
    return (
        f"- {item.cr.kind} {item.name} ({item.cr.mutation}, from {item.cr.seed})\n  expected path: {item.cr.path[:300]}"
        f"{refused}\n  got: {reports}\n  CR: {manifest}"
    )


def traceback_excerpt(text: str) -> str:
    at = text.index("Traceback")
    return text[max(0, at - 500) : at + 2500]
