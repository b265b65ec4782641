"""Differential scenarios: the same changes made to a running cluster under both operators.

Each scenario applies a base manifest to a namespace KubeRay's operator watches and to one kray's
watches, waits until both are quiet, then makes the same change in both (scale, workersToDelete,
suspend and resume, delete or fail a pod, change the spec, admit a suspended RayJob) and compares
the statuses and the objects after every step. Differences must be listed in docs/compatibility.md
exactly as for the samples (same lists, same both-way check).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray.dev.compare import Difference, compare, judge, judge_self
from tests.differential.harness import Api, Case, apply_case, side_by_side, snapshot, wait_quiet
from tests.differential.test_samples import listed_differences

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = yaml.safe_load((ROOT / "examples" / "raycluster.yaml").read_text())
CLUSTER["metadata"] = {"name": "scenario"}
CLUSTER["spec"]["workerGroupSpecs"][0]["replicas"] = 2
JOB_FILE = [
    d for d in yaml.safe_load_all((ROOT.parent / "shared" / "kuberay-samples" / "ray-job.sample.yaml").read_text()) if d
]
JOB = next(d for d in JOB_FILE if d["kind"] == "RayJob")
SERVICE = yaml.safe_load((ROOT.parent / "shared" / "kuberay-samples" / "ray-service.sample.yaml").read_text())
SERVICE["metadata"] = {"name": "scenario-svc"}
SERVICE["spec"]["rayClusterDeletionDelaySeconds"] = 0  # the replaced cluster goes at once, not 60 s later


Action = Callable[[Api, str], None]


def patch(body: dict[str, Any], *, kind: str = "rayclusters", name: str = "scenario") -> Action:
    def act(api: Api, namespace: str) -> None:
        api.client.patch(
            f"/apis/ray.io/v1/namespaces/{namespace}/{kind}/{name}",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()

    return act


def worker_pods(api: Api, namespace: str) -> list[dict[str, Any]]:
    pods = api.client.get(
        f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": "ray.io/node-type=worker"}
    ).json()["items"]
    # By replica index: the same pod in every namespace (creation order ties within a second).
    return sorted(pods, key=lambda p: int(p["metadata"]["labels"].get("ray.io/worker-group-replica-index", "0")))


def delete_pod(node_type: str) -> Action:
    def act(api: Api, namespace: str) -> None:
        pods = (
            worker_pods(api, namespace)
            if node_type == "worker"
            else api.client.get(
                f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": f"ray.io/node-type={node_type}"}
            ).json()["items"]
        )
        assert pods, f"no {node_type} pod in {namespace}"
        api.client.delete(f"/api/v1/namespaces/{namespace}/pods/{pods[0]['metadata']['name']}").raise_for_status()

    return act


def fail_worker(api: Api, namespace: str) -> None:
    pod = worker_pods(api, namespace)[0]
    status = {"status": {"phase": "Failed", "reason": "Evicted", "message": "scenario"}}
    api.client.patch(
        f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status",
        content=json.dumps(status).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    ).raise_for_status()


def delete_named_worker(api: Api, namespace: str) -> None:
    name = worker_pods(api, namespace)[0]["metadata"]["name"]
    patch(with_group(replicas=1, scaleStrategy={"workersToDelete": [name]}))(api, namespace)


def with_group(**changes: Any) -> dict[str, Any]:
    return {"spec": {"workerGroupSpecs": [{**CLUSTER["spec"]["workerGroupSpecs"][0], **changes}]}}


@dataclass(frozen=True)
class Scenario:
    name: str
    base: dict[str, Any]
    steps: tuple[Action, ...]


def suspended_job() -> dict[str, Any]:
    job = copy.deepcopy(JOB)
    job["metadata"] = {"name": "scenario-job"}
    job["spec"]["suspend"] = True
    job["spec"]["shutdownAfterJobFinishes"] = True  # a RayJob may be suspended only then
    return job


def new_cluster_spec(api: Api, namespace: str) -> None:
    """A cluster spec change (not replicas, not an appended group): KubeRay prepares a new pending cluster
    (rayservice_controller.go shouldPrepareNewCluster) -- the first one never serves on kwok, so this is the
    pending-replaced-by-pending path: same naming, labels and annotations, the old one deleted."""
    head = copy.deepcopy(SERVICE["spec"]["rayClusterConfig"]["headGroupSpec"])
    head["rayStartParams"] = {**head.get("rayStartParams", {}), "num-cpus": "1"}
    patch({"spec": {"rayClusterConfig": {"headGroupSpec": head}}}, kind="rayservices", name="scenario-svc")(
        api, namespace
    )


SCENARIOS = (
    Scenario("scale-up", CLUSTER, (patch(with_group(replicas=4)),)),
    Scenario("scale-down", CLUSTER, (patch(with_group(replicas=1)),)),
    Scenario("workers-to-delete", CLUSTER, (delete_named_worker,)),
    Scenario("suspend-and-resume", CLUSTER, (patch({"spec": {"suspend": True}}), patch({"spec": {"suspend": False}}))),
    Scenario("delete-a-worker-pod", CLUSTER, (delete_pod("worker"),)),
    Scenario("delete-the-head-pod", CLUSTER, (delete_pod("head"),)),
    Scenario("a-worker-pod-fails", CLUSTER, (fail_worker,)),
    Scenario("spec-change", CLUSTER, (patch(with_group(rayStartParams={"num-cpus": "1"})),)),
    Scenario("group-suspended", CLUSTER, (patch(with_group(suspend=True)),)),
    Scenario(
        "rayjob-admitted-after-suspend",
        suspended_job(),
        (patch({"spec": {"suspend": False}}, kind="rayjobs", name="scenario-job"),),
    ),
    Scenario("rayservice-new-cluster", SERVICE, (new_cluster_spec,)),
)


def selected_scenarios(items: list[pytest.Item]) -> set[str]:
    """The scenarios the selected tests look at (``-k "rayservice or itself"``: that one and the self-check of
    it); every one when no scenario's test is selected (the self-check alone judges them all)."""
    functions = [i for i in items if isinstance(i, pytest.Function) and i.module is not None]
    mine = [i for i in functions if i.module.__name__ == __name__]
    labels = [str(i.callspec.params["label"]) for i in mine if hasattr(i, "callspec")]
    return {label.split("@")[0] for label in labels} or {s.name for s in SCENARIOS}


@dataclass
class Run:
    differences: dict[str, list[Difference]] = field(default_factory=dict)
    self_differences: list[Difference] = field(default_factory=list)


@pytest.fixture(scope="module")
def run(
    k8s_control_plane: Any,
    k8s_client: Any,
    ray_crds: Any,
    k8s_binaries: Any,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Run]:
    api = Api(server=k8s_control_plane.server, token=k8s_control_plane.token, ca_file=k8s_control_plane.ca_file)
    chosen = selected_scenarios(request.session.items)
    scenarios = [s for s in SCENARIOS if s.name in chosen]
    cases = {s.name: Case(name=s.name, documents=[copy.deepcopy(s.base)]) for s in scenarios}
    roles = ("kuberay", "kray", "kuberay-again")
    shorts = {"kuberay": "kr", "kray": "kx", "kuberay-again": "k2"}

    def namespace_for(case: Case, role: str) -> str:
        return f"s-{shorts[role]}-{re.sub('[^a-z0-9]+', '-', case.name)[:30]}"

    try:
        with side_by_side(
            plane=k8s_control_plane,
            binaries=k8s_binaries,
            api=api,
            k8s_client=k8s_client,
            log_dir=tmp_path_factory.mktemp("scenarios"),
            cases=cases.values(),
            namespace_for=namespace_for,
            node_names="kwok-scn",
            nodes=[{"cpu": "1000", "memory": "8Ti", "pods": "1000"}] * 2,
        ) as namespaces:
            for case in cases.values():
                for role in roles:
                    assert not apply_case(api, case, role)
            result = Run()
            quiet, waited = wait_quiet(api, namespaces, quiet_for=8.0, timeout=180.0)
            assert quiet, f"the base manifests never settled ({waited:.0f}s)"
            steps = max(len(s.steps) for s in scenarios)
            for step in range(steps):
                for scenario in scenarios:
                    if step < len(scenario.steps):
                        for role in roles:
                            scenario.steps[step](api, cases[scenario.name].namespaces[role])
                quiet, waited = wait_quiet(api, namespaces, quiet_for=35.0 if step == steps - 1 else 8.0, timeout=240.0)
                assert quiet, f"step {step + 1} never settled ({waited:.0f}s)"
                for scenario in scenarios:
                    if step < len(scenario.steps):
                        case = cases[scenario.name]
                        shots = {role: snapshot(api, case, role) for role in roles}
                        label = f"{scenario.name}@{step + 1}"
                        result.differences[label] = compare(scenario.name, shots["kuberay"], shots["kray"])
                        result.self_differences += compare(label, shots["kuberay"], shots["kuberay-again"])
            yield result
    finally:
        api.close()


def _report(differences: list[Difference]) -> str:
    return "\n".join(d.line() for d in differences[:60])


def test_kuberay_against_itself_shows_no_difference(run: Run) -> None:
    """Nothing but KubeRay's documented nondeterminism (the ``sometimes`` entries) may differ."""
    deliberate, _ = listed_differences()
    verdict = judge_self(run.self_differences, deliberate)
    assert not verdict.unexplained, _report(verdict.unexplained)


@pytest.mark.parametrize("label", [f"{s.name}@{i + 1}" for s in SCENARIOS for i in range(len(s.steps))])
def test_kray_reacts_as_kuberay_does(run: Run, label: str) -> None:
    deliberate, gaps = listed_differences()
    verdict = judge(run.differences[label], deliberate + gaps)
    assert not verdict.unexplained, f"not in docs/compatibility.md:\n{_report(verdict.unexplained)}"
