"""KubeRay's own sample manifests (../shared/kuberay-samples, written by others) validate under kray.

Where KubeRay v1.7 itself would reject a sample with its default feature gates, the test names the
rule, and asserts our error names that same rule and field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kray.api.manifest import validate_bytes
from kray.api.rules import FeatureGates
from tests.api.conftest import SAMPLES

KUBERAY_REJECTS: dict[str, tuple[str, str]] = {
    # sample: (rule KubeRay applies, field path of our error)
    "ray-cluster.embedded-gcs-ft.yaml": (
        "FeatureGate/GCSFaultToleranceEmbeddedStorage",
        "spec.gcsFaultToleranceOptions.backend",
    ),
    "ray-cluster.historyserver.yaml": ("FeatureGate/RayClusterHistoryServer", "spec.historyServerOptions"),
    "ray-cluster.mtls.yaml": ("FeatureGate/RayClusterMTLS", "spec.tlsOptions"),
    "ray-cluster.network-policy-deny-all.yaml": ("FeatureGate/RayClusterNetworkPolicy", "spec.networkPolicy"),
}
"""Samples for alpha features: KubeRay's validation refuses them unless their (default-off) gate is on."""

FILES = sorted(SAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_sample_validates_or_is_rejected_by_the_rule_kuberay_applies(path: Path) -> None:
    report = validate_bytes(path.read_bytes(), source=path.name)
    rejected = [o for o in report.outcomes if o.errors]
    if path.name in KUBERAY_REJECTS:
        rule, field = KUBERAY_REJECTS[path.name]
        (outcome,) = rejected
        assert [(e.rule, e.path) for e in outcome.errors] == [(rule, field)]
        assert "feature gate" in outcome.errors[0].message
    else:
        assert rejected == [], [str(e) for o in rejected for e in o.errors]
    for outcome in report.outcomes:
        assert (outcome.obj is not None) or outcome.skipped or outcome.errors


@pytest.mark.parametrize("name", sorted(KUBERAY_REJECTS))
def test_gated_samples_are_valid_once_their_gate_is_on(name: str) -> None:
    rule, _ = KUBERAY_REJECTS[name]
    gate = rule.removeprefix("FeatureGate/")
    report = validate_bytes((SAMPLES / name).read_bytes(), source=name, gates=FeatureGates.parse(f"{gate}=true"))
    assert report.ok


def test_other_apis_in_sample_files_are_skipped_not_failed() -> None:
    report = validate_bytes((SAMPLES / "ray-job.sample.yaml").read_bytes(), source="ray-job.sample.yaml")
    kinds = {o.kind: o for o in report.outcomes}
    assert kinds["ConfigMap"].skipped
    assert kinds["ConfigMap"].ok
    assert kinds["RayJob"].obj is not None
