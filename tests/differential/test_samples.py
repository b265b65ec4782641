"""The differential suite: KubeRay's own operator (v1.5.0, built from its Go module) is the judge.

Every sample of ``shared/kuberay-samples`` with a RayCluster, RayJob or RayService is applied (with the other
documents of its file) to a namespace KubeRay's operator watches and to one kray's operator watches;
once both are quiet, every object each created is compared. A test per sample passes when each
difference found is listed in ``docs/compatibility.md`` — as deliberate (with its reason) or as an
open gap (a kray bug being fixed) — and the lists are checked the other way too: an entry no longer
seen fails, so a fixed gap must leave the list.

KubeRay's operator against itself in two namespaces must show no difference at all: the proof that
normalisation hides nothing real.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray.dev.compare import Deliberate, Difference, compare, judge, judge_self, load_deliberate
from tests.differential.harness import Api, Case, apply_case, load_case, side_by_side, snapshot, wait_quiet

# The module fixture (two operators, ~60 samples, until quiet) counts against the first test's timeout.
pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "kuberay-samples"
COMPATIBILITY = ROOT / "docs" / "compatibility.md"
SELF_CHECK = (
    "ray-cluster.sample.yaml",
    "ray-cluster.autoscaler.yaml",
    "ray-job.sample.yaml",
    "ray-cluster.complete.yaml",
    "ray-service.sample.yaml",
)
COMPARED_KINDS = {"RayCluster", "RayJob", "RayService"}
QUIET_FOR = 35.0
"""Seconds without a change before comparing: longer than KubeRay's 30 s submitter grace period, the
longest timer both operators start from a sample here (a shorter quiet window caught one operator
before its timer fired and the other after)."""
NOT_YET = {"RayCronJob"}
"""RayCronJob samples join once kray's controller for them exists. RayService samples are compared as far as kwok
allows: their pods never run, so Serve never answers and a RayService stays with its first cluster pending (no
head/serve Service of its own, no application status); what both operators make until then is compared."""
REFUSED_BY_THE_APISERVER = {
    "ray-service.high-throughput-gemma4.yaml": "RayService/ray-gemma4-e2b-it: ",
}
"""Samples the apiserver itself refuses, for both operators alike (the error starts so): this one has
``workerGroupSpecs[0].template.metadata:`` with no value, a null the CRD's schema rejects."""
WHOLE_RUN = {"test_both_operators_went_quiet", "test_every_listed_difference_is_still_seen"}
"""Tests that need every sample run: selecting any of them runs them all."""


def compared_samples() -> list[Path]:
    out = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        kinds = {d.get("kind") for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)}
        if kinds & COMPARED_KINDS and not kinds & NOT_YET:
            out.append(path)
    return out


def listed_differences() -> tuple[list[Deliberate], list[Deliberate]]:
    """(deliberate, open gaps): the two YAML blocks of docs/compatibility.md the suite reads."""
    text = COMPATIBILITY.read_text()
    blocks = {}
    for marker in ("deliberate", "open-gaps"):
        found = re.search(rf"<!-- differential:{marker} -->\s*```yaml\n(.*?)```", text, flags=re.DOTALL)
        assert found, f"docs/compatibility.md lacks the <!-- differential:{marker} --> yaml block"
        blocks[marker] = load_deliberate(yaml.safe_load(found.group(1)) or [])
    return blocks["deliberate"], blocks["open-gaps"]


def selected_samples(items: list[pytest.Item]) -> set[str]:
    """The samples the selected tests look at (``-k ray-service`` runs only those); every one when a selected
    test judges the whole run."""
    functions = [item for item in items if isinstance(item, pytest.Function) and item.module is not None]
    mine = [item for item in functions if item.module.__name__ == __name__]
    if any(item.originalname in WHOLE_RUN for item in mine):
        return {path.name for path in compared_samples()}
    return {str(item.callspec.params["sample"]) for item in mine if hasattr(item, "callspec")}


@dataclass
class Run:
    cases: dict[str, Case]
    differences: dict[str, list[Difference]] = field(default_factory=dict)
    self_differences: dict[str, list[Difference]] = field(default_factory=dict)
    apply_errors: dict[str, list[str]] = field(default_factory=dict)
    quiet: bool = True
    waited: float = 0.0


def _stem(name: str, role: str) -> str:
    short = re.sub(r"[^a-z0-9]+", "-", name.removesuffix(".yaml").lower()).strip("-")[:40].strip("-")
    return f"d-{role}-{short}"


@pytest.fixture(scope="module")
def run(
    k8s_control_plane: Any,
    k8s_client: Any,
    ray_crds: Any,
    gateway_crds: Any,
    k8s_binaries: Any,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Run]:
    api = Api(server=k8s_control_plane.server, token=k8s_control_plane.token, ca_file=k8s_control_plane.ca_file)
    chosen = selected_samples(request.session.items)
    cases = {path.name: load_case(path) for path in compared_samples() if path.name in chosen}
    roles = {"kuberay": "kr", "kray": "kx", "kuberay-again": "k2"}

    def namespace_for(case: Case, role: str) -> str | None:
        if role == "kuberay-again" and case.name not in SELF_CHECK:
            return None
        return _stem(case.name, roles[role])

    try:
        with side_by_side(
            plane=k8s_control_plane,
            binaries=k8s_binaries,
            api=api,
            k8s_client=k8s_client,
            log_dir=tmp_path_factory.mktemp("differential"),
            cases=cases.values(),
            namespace_for=namespace_for,
            node_names="kwok-diff",
            nodes=[{"cpu": "2000", "memory": "16Ti", "pods": "1000", "gpus": 64}] * 4,
        ) as namespaces:
            result = Run(cases=cases)
            for case in cases.values():
                for role in case.namespaces:
                    errors = apply_case(api, case, role)
                    if errors:
                        result.apply_errors.setdefault(case.name, []).extend(f"{role}: {e}" for e in errors)
            result.quiet, result.waited = wait_quiet(api, namespaces, quiet_for=QUIET_FOR, timeout=300.0)
            for case in cases.values():
                shots = {role: snapshot(api, case, role) for role in case.namespaces}
                result.differences[case.name] = compare(case.name, shots["kuberay"], shots["kray"])
                if "kuberay-again" in shots:
                    result.self_differences[case.name] = compare(case.name, shots["kuberay"], shots["kuberay-again"])
            dump = os.environ.get("KRAY_DIFFERENTIAL_DUMP")
            if dump:  # every difference as JSON lines, for working through them
                with open(dump, "w") as out:
                    for found in (*result.differences.values(), *result.self_differences.values()):
                        for d in found:
                            out.write(json.dumps(dataclasses.asdict(d), default=str) + "\n")
            yield result
    finally:
        api.close()


def _report(differences: list[Difference]) -> str:
    return "\n".join(d.line() for d in differences[:60]) + (
        f"\n... {len(differences) - 60} more" if len(differences) > 60 else ""
    )


def test_both_operators_went_quiet(run: Run) -> None:
    assert run.quiet, f"objects were still changing after {run.waited:.0f}s"
    unexpected = {
        sample: [
            e
            for e in errors
            if not (e.split(": ", 1)[1].startswith(REFUSED_BY_THE_APISERVER.get(sample, "\0")) and "Invalid value" in e)
        ]
        for sample, errors in run.apply_errors.items()
    }
    assert not any(unexpected.values()), unexpected


@pytest.mark.parametrize("sample", SELF_CHECK)
def test_kuberay_against_itself_shows_no_difference(run: Run, sample: str) -> None:
    """Nothing but KubeRay's documented nondeterminism (the ``sometimes`` entries) may differ."""
    deliberate, _ = listed_differences()
    verdict = judge_self(run.self_differences[sample], deliberate)
    assert not verdict.unexplained, _report(verdict.unexplained)


@pytest.mark.parametrize("sample", [p.name for p in compared_samples()])
def test_kray_does_what_kuberay_does(run: Run, sample: str) -> None:
    deliberate, gaps = listed_differences()
    verdict = judge(run.differences[sample], deliberate + gaps)
    assert not verdict.unexplained, (
        f"{len(verdict.unexplained)} difference(s) not in docs/compatibility.md:\n{_report(verdict.unexplained)}"
    )


def test_every_listed_difference_is_still_seen(run: Run) -> None:
    deliberate, gaps = listed_differences()
    everything = [d for found in run.differences.values() for d in found]
    verdict = judge(everything, deliberate + gaps)
    assert not verdict.unused, "listed in docs/compatibility.md but no longer seen (remove them): " + ", ".join(
        d.id for d in verdict.unused
    )
