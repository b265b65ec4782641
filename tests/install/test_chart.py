"""The chart and ``kray install --print``: generated parts are fresh, both render the same objects.

What drifts without these tests: the chart's CRDs (generated from kray's models), its RBAC rules
(generated from kray/operator/rbac.py), its appVersion (kray's version), and the Python renderer
behind ``kray install --print`` (a second implementation of the chart's templates).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray._version import __version__
from kray.api.crd import ALL_KINDS, crd_filename, render_crd
from kray.dev.binaries import HELM, Binaries
from kray.operator.rbac import LEADER_ELECTION_RULES, OPERATOR_RULES, render_rules_template, rules
from tests.install.support import CHART, LOADER, by_kind, helm_template, normalised

KINDS = [model.model_fields["kind"].default for model in ALL_KINDS]


@pytest.mark.parametrize("kind", KINDS)
def test_chart_crd_is_fresh(kind: str) -> None:
    committed = CHART / "crds" / crd_filename(kind)
    assert committed.read_text() == render_crd(kind), "stale CRD: run `kray crds -o charts/kray-operator/crds`"


def test_chart_holds_exactly_the_generated_crds() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(crd_filename(k) for k in KINDS)


def test_chart_rules_are_fresh() -> None:
    committed = (CHART / "templates" / "_rules.tpl").read_text()
    assert committed == render_rules_template(), "stale RBAC rules: run `python -m kray.operator.rbac`"


def test_chart_app_version_is_krays() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def kray_install(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "kray.cli.main", "install", "--print", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.load_all(out.stdout, Loader=LOADER) if d]


def test_kray_install_needs_print_and_valid_namespaces() -> None:
    for args in ([], ["--print", "--watch-namespace", "Bad_Name"]):
        out = subprocess.run(
            [sys.executable, "-m", "kray.cli.main", "install", *args], capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ")


@pytest.fixture(scope="module")
def helm(k8s_binaries: Binaries) -> Path:
    return k8s_binaries.tool(HELM)


CASES = {
    "defaults": ([], "kray-system", {}),
    "watch-and-image": (
        ["--namespace", "ops", "--watch-namespace", "team-a,team-b", "--image", "registry.local/kray:dev"],
        "ops",
        {"watchNamespace": ["team-a", "team-b"], "image": {"repository": "registry.local/kray", "tag": "dev"}},
    ),
}


@pytest.mark.k8s
@pytest.mark.parametrize("case", CASES)
def test_kray_install_print_is_the_chart_rendered_by_helm(helm: Path, case: str) -> None:
    args, namespace, values = CASES[case]
    printed = kray_install(*args)
    namespaces = by_kind(printed, "Namespace")
    assert namespaces == [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    assert [d["kind"] for d in printed[:4]] == ["CustomResourceDefinition"] * 4, "CRDs come first"
    others = [d for d in printed if d["kind"] != "Namespace"]
    rendered = helm_template(helm, namespace=namespace, values=values)
    assert normalised(others) == normalised(rendered)


@pytest.mark.k8s
def test_helm_lint_passes(helm: Path) -> None:
    for extra in ([], ["--set", "singleNamespaceInstall=true"], ["--set-json", 'watchNamespace=["a","b"]']):
        out = subprocess.run(
            [str(helm), "lint", "--strict", str(CHART), *extra], capture_output=True, text=True, timeout=60, check=False
        )
        assert out.returncode == 0, f"helm lint {extra}:\n{out.stdout}\n{out.stderr}"


@pytest.mark.k8s
def test_cluster_wide_install_grants_the_rbac_module_rules(helm: Path) -> None:
    docs = helm_template(helm, namespace="kray-system", crds=False)
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert cluster_role["rules"] == rules(OPERATOR_RULES)
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kray-operator", "namespace": "kray-system"}]
    (leader,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "kray-operator-leader-election"]
    assert leader["metadata"]["namespace"] == "kray-system"
    assert leader["rules"] == rules(LEADER_ELECTION_RULES)
    assert not [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "kray-operator"]


@pytest.mark.k8s
@pytest.mark.parametrize(
    ("values", "watched"),
    [({"singleNamespaceInstall": True}, ["kray-system"]), ({"watchNamespace": ["a", "b"]}, ["a", "b"])],
    ids=["single-namespace", "watch-list"],
)
def test_namespaced_install_has_one_role_per_watched_namespace(
    helm: Path, values: dict[str, Any], watched: list[str]
) -> None:
    docs = helm_template(helm, namespace="kray-system", values=values, crds=False)
    assert not by_kind(docs, "ClusterRole")
    assert not by_kind(docs, "ClusterRoleBinding")
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "kray-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == watched
    assert all(r["rules"] == rules(OPERATOR_RULES) for r in roles)
    bindings = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "kray-operator"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == watched
    assert all(b["subjects"][0]["namespace"] == "kray-system" for b in bindings)
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--watch-namespace={','.join(watched)}" in args


@pytest.mark.k8s
def test_deployment_is_probed_locked_down_and_takes_the_values(helm: Path) -> None:
    values = {
        "reconcileConcurrency": 4,
        "leaderElectionEnabled": False,
        "featureGates": [{"name": "RayJobDeletionPolicy", "enabled": False}],
    }
    docs = helm_template(helm, namespace="kray-system", values=values, crds=False)
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kray-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == f"kray-operator:{__version__}"
    assert container["args"] == [
        "--reconcile-concurrency=4",
        "--feature-gates=RayJobDeletionPolicy=false",
        "--enable-leader-election=false",
        "--log-stdout-encoder=json",
        "--metrics-addr=:8080",
        "--health-probe-bind-address=:8082",
    ]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "probes": 8082}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert not [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("leader-election")]
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_command_is_the_images_entrypoint_unless_given(helm: Path) -> None:
    """A node that runs pods as processes (no images) needs the command spelled out."""
    (default,) = by_kind(helm_template(helm, namespace="kray-system", values={}, crds=False), "Deployment")
    assert "command" not in default["spec"]["template"]["spec"]["containers"][0]
    values = {"command": ["kray", "operator"]}
    (given,) = by_kind(helm_template(helm, namespace="kray-system", values=values, crds=False), "Deployment")
    assert given["spec"]["template"]["spec"]["containers"][0]["command"] == ["kray", "operator"]


def test_every_flag_the_chart_passes_is_a_kray_operator_flag() -> None:
    """The chart's args are parsed by ``kray operator`` itself (a renamed flag would crash-loop the pod)."""
    out = subprocess.run(
        [sys.executable, "-m", "kray.cli.main", "operator", "--help"], capture_output=True, text=True, timeout=60,
        check=False, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    template = (CHART / "templates" / "deployment.yaml").read_text()
    flags = set(re.findall(r"- (--[a-z-]+)=", template))
    assert flags >= {"--watch-namespace", "--metrics-addr", "--health-probe-bind-address"}
    for flag in flags:
        assert flag in out.stdout, f"kray operator --help lacks {flag}"
