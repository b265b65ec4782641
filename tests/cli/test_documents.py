"""The documents of a manifest besides ray.io objects, and what a re-apply writes: the pure parts.

Why: a Secret dropped silently left ``authOptions.secretName`` pointing at nothing, and a re-apply that
replaced the metadata wholesale dropped kray's port annotation. These pin what is stored (normalized as the
API server stores it), what is refused (every error naming its field, nothing created: exit 2 before the
server is even asked), the install order, kubectl's namespace rule and the three-way merge.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kray.cli.documents import namespace_table
from kray.cli.main import app
from kray.local import documents as docs
from kray.local.documents import Planned
from kray.local.reapply import LAST_APPLIED, applied, immutable_errors, last_applied, plan_update, three_way_patch
from kray.store import CONFIGMAP, NAMESPACE, RAYCLUSTER, SECRET

runner = CliRunner()


def secret(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, **fields}


def configmap(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code"}, **fields}


def messages(content: dict[str, Any]) -> list[str]:
    return [str(error) for error in docs.core_errors(content)]


# -- checks ------------------------------------------------------------------------------------------------


def test_a_configmap_value_that_is_not_a_string_is_named_with_a_hint() -> None:
    assert messages(configmap(data={"retries": 5, "ok": "yes"})) == [
        'data.retries: expected string, got integer (quote it: "5")'
    ]


def test_a_secret_value_that_is_not_base64_is_named() -> None:
    assert messages(secret(data={"auth_token": "plain text!"})) == [
        "data.auth_token: Invalid value: not valid base64 (put plain text under stringData)"
    ]


def test_metadata_name_missing_unknown_fields_and_bad_keys_are_each_named() -> None:
    content = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "date": {}, "data": {"bad key": "x"}}
    assert messages(content) == [
        "metadata.name: Required value: name or generateName is required",
        'date: unknown field "date"',
        "data.bad key: Invalid value: a key must consist of alphanumerics, '-', '_' or '.'",
    ]


def test_a_claim_needs_access_modes_and_a_size() -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": {}}
    assert [e.path for e in docs.core_errors(claim)] == ["spec.accessModes", "spec.resources.requests.storage"]
    claim["spec"] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}}
    assert docs.core_errors(claim) == []


def test_a_document_namespace_must_be_a_label() -> None:
    content = configmap()
    content["metadata"]["namespace"] = "Team_A"
    assert [e.path for e in docs.core_errors(content)] == ["metadata.namespace"]


# -- normalized as the API server stores it ------------------------------------------------------------------


def test_string_data_is_merged_into_data_and_wins() -> None:
    stored = docs.normalized(secret(data={"a": "b2xk", "b": "Yg=="}, stringData={"a": "new"}))
    assert stored == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "token"},
        "data": {"a": base64.b64encode(b"new").decode(), "b": "Yg=="},
        "type": "Opaque",
    }


def test_base64_split_over_lines_is_accepted_and_stored_on_one_line() -> None:
    wrapped = "aGVsbG8g\nd29ybGQ=\n"  # a YAML literal block, as KubeRay's TLS sample writes its certificate
    assert docs.core_errors(secret(data={"ca.crt": wrapped})) == []
    assert docs.normalized(secret(data={"ca.crt": wrapped}))["data"] == {"ca.crt": "aGVsbG8gd29ybGQ="}


# -- order, namespaces, skipped kinds ------------------------------------------------------------------------


def planned(resource: Any, name: str, namespace: str | None = "default") -> Planned:
    meta: dict[str, Any] = {"name": name}
    if namespace and resource.namespaced:
        meta["namespace"] = namespace
    return Planned(resource, {"kind": resource.kind, "metadata": meta})


def test_install_order_is_namespaces_then_what_pods_use_then_ray_objects() -> None:
    items = [planned(RAYCLUSTER, "c"), planned(CONFIGMAP, "m"), planned(SECRET, "s"), planned(NAMESPACE, "n")]
    assert [p.label for p in docs.install_order(items)] == ["namespace/n", "secret/s", "configmap/m", "raycluster/c"]


def test_namespaces_needed_skips_declared_ones() -> None:
    items = [planned(NAMESPACE, "a"), planned(CONFIGMAP, "m", "a"), planned(SECRET, "s", "b")]
    assert docs.namespaces_needed(items) == ["b"]


def test_a_document_namespace_conflicting_with_the_flag_is_kubectls_error() -> None:
    obj = configmap()
    obj["metadata"]["namespace"] = "a"
    error = docs.resolve_namespace(obj, CONFIGMAP, flag="b")
    assert error is not None
    assert error.path == "metadata.namespace"
    assert error.message == (
        'the namespace from the provided object "a" does not match the namespace "b". '
        "You must pass '--namespace=a' to perform this operation."
    )
    assert docs.resolve_namespace(obj, CONFIGMAP, flag=None) is None
    assert obj["metadata"]["namespace"] == "a"
    other = configmap()
    assert docs.resolve_namespace(other, CONFIGMAP, flag=None) is None
    assert other["metadata"]["namespace"] == "default"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("Deployment", "local mode does not run Deployments"),
        ("NetworkPolicy", "local mode does not run NetworkPolicies"),
        ("Ingress", "local mode does not run Ingresses"),
        ("Role", "local mode does not use RBAC objects (one machine, one user)"),
        ("RayCronJob", "local mode runs RayClusters, RayJobs and RayServices"),
    ],
)
def test_skip_reasons(kind: str, reason: str) -> None:
    assert docs.skip_reason(kind) == reason


# -- re-apply: kubectl's three-way merge ------------------------------------------------------------------


def test_three_way_patch_sets_new_keys_removes_dropped_ones_and_keeps_others() -> None:
    original = {"metadata": {"annotations": {"team": "a", "old": "x"}}, "spec": {"replicas": 1}}
    modified = {"metadata": {"annotations": {"team": "b"}}, "spec": {"replicas": 2}}
    current = {
        "metadata": {"annotations": {"team": "a", "old": "x", "kray.io/local-ports": "gcs=1"}},
        "spec": {"replicas": 1, "suspend": False},
    }
    assert three_way_patch(original, modified, current) == {
        "metadata": {"annotations": {"old": None, "team": "b"}},
        "spec": {"replicas": 2},
    }


def test_a_map_the_manifest_no_longer_has_loses_only_the_keys_it_had_set() -> None:
    original = {"metadata": {"labels": {"app": "x"}}}
    current = {"metadata": {"labels": {"app": "x", "ray.io/cluster": "c"}}}
    assert three_way_patch(original, {"metadata": {}}, current) == {"metadata": {"labels": {"app": None}}}


def test_reapply_keeps_others_annotations_and_records_the_manifest() -> None:
    first = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"a": "1"}}}
    current = applied(first)
    current["metadata"]["annotations"]["kray.io/ports"] = "gcs=1"
    current["metadata"]["resourceVersion"] = "7"
    second = {**first, "metadata": {"name": "c", "annotations": {"b": "2"}}, "data": {"k": "v"}}
    merged = plan_update(current, second)
    assert merged is not None
    notes = merged["metadata"]["annotations"]
    assert {k: v for k, v in notes.items() if k != LAST_APPLIED} == {"b": "2", "kray.io/ports": "gcs=1"}
    assert last_applied(merged) == {**second, "metadata": {"name": "c", "annotations": {"b": "2"}}}
    assert merged["data"] == {"k": "v"}
    assert merged["metadata"]["resourceVersion"] == "7"
    assert plan_update(merged, second) is None


def test_a_secrets_last_applied_copy_names_keys_not_values() -> None:
    record = json.loads(
        applied(docs.normalized(secret(stringData={"auth_token": "s3cret"})))["metadata"]["annotations"][LAST_APPLIED]
    )
    assert record["data"] == {"auth_token": ""}


def test_an_immutable_configmap_refuses_new_data() -> None:
    current = {**configmap(data={"a": "1"}), "immutable": True}
    assert [e.path for e in immutable_errors(current, {**current, "data": {"a": "2"}})] == ["data"]
    assert immutable_errors(current, current) == []


# -- the CLI: everything or nothing ----------------------------------------------------------------------


def test_apply_refuses_the_whole_file_naming_every_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRAY_HOME", str(tmp_path / "home"))
    bad = [
        secret(data={"auth_token": "not base64!"}),
        configmap(data={"n": 1}),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"labels": {"a": "b"}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis"}},
    ]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(bad))
    result = runner.invoke(app, ["apply", "-f", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert (
        f"{path}: Secret/token: data.auth_token: Invalid value: not valid base64 (put plain text under stringData)"
        in lines
    )
    assert f'{path}: ConfigMap/code: data.n: expected string, got integer (quote it: "1")' in lines
    assert any("ServiceAccount/<no name>: metadata.name: Required value" in line for line in lines), lines
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir()), "the server was started"


def test_a_file_of_only_skipped_kinds_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRAY_HOME", str(tmp_path / "home"))
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis"}}))
    result = runner.invoke(app, ["apply", "-f", str(path)])
    assert result.exit_code == 2
    assert "deployment/redis skipped: local mode does not run Deployments" in result.stderr
    assert "nothing to store" in result.stderr


def test_namespace_table_is_kubectls() -> None:
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    items = [
        {"metadata": {"name": "team-a", "creationTimestamp": "2026-01-01T00:09:30Z"}, "status": {"phase": "Active"}},
        {"metadata": {"name": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Active"}},
    ]
    assert namespace_table(items, now=now).splitlines() == [
        "NAME      STATUS   AGE",
        "default   Active   10m",
        "team-a    Active   30s",
    ]
