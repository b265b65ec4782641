"""Hostile and broken input to ``validate_bytes`` and ``kray validate``: errors, never exceptions.

Why: ``kray validate`` is the first thing a user points at a file, often the wrong file. Whatever it
is (a list, a binary, a 4 MB log, a YAML alias bomb, a typo in ``kind``), the answer must be a
FieldError with a message that says what is wrong and where, within a bounded time and memory, and
never a Python traceback. The hypothesis tests throw random damage at valid manifests and random
bytes/text at the reader and check exactly that contract.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kray.api.errors import ManifestError
from kray.api.manifest import (
    MAX_EXPANDED_NODES,
    MAX_FILE_BYTES,
    Document,
    Report,
    parse_object,
    validate_bytes,
    validate_document,
)
from kray.cli.main import app

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "kuberay-samples"


def _container(name: str) -> dict[str, Any]:
    return {"name": name, "image": "rayproject/ray:2.52.0", "env": [{"name": "A", "value": "b"}]}


CLUSTER_SPEC: dict[str, Any] = {
    "rayVersion": "2.52.0",
    "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [_container("ray-head")]}}},
    "workerGroupSpecs": [
        {
            "groupName": "small",
            "replicas": 1,
            "minReplicas": 1,
            "maxReplicas": 3,
            "rayStartParams": {"num-cpus": "1"},
            "labels": {"zone": "a"},
            "template": {"spec": {"containers": [_container("ray-worker")]}},
        }
    ],
}
RAYCLUSTER: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "demo", "annotations": {"ray.io/ft-enabled": "false"}},
    "spec": CLUSTER_SPEC,
}
RAYJOB: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"name": "job", "labels": {"app": "x"}},
    "spec": {
        "entrypoint": "python -c 'print(1)'",
        "runtimeEnvYAML": "pip:\n  - requests\n",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 10,
        "deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteSelf"}},
        "rayClusterSpec": CLUSTER_SPEC,
    },
}
RAYCLUSTER_TEXT = yaml.safe_dump(RAYCLUSTER, sort_keys=False)


def only_outcome(report: Report) -> Any:
    assert len(report.outcomes) == 1, report.outcomes
    return report.outcomes[0]


def check_contract(report: Report) -> None:
    """validate_bytes' promise: every document is valid, skipped, or has errors that say something."""
    assert report.outcomes
    for outcome in report.outcomes:
        if outcome.errors:
            for error in outcome.errors:
                assert isinstance(error.message, str)
                assert error.message.strip(), outcome
                assert isinstance(error.path, str)
        else:
            assert (outcome.obj is not None) != (outcome.skipped is not None), outcome


def _alias_bomb(levels: int = 9, width: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return ("\n".join(lines) + "\n").encode()


# (bytes, expected error path, message fragments)
BAD_INPUT = [
    pytest.param(b"- apiVersion: ray.io/v1\n- kind: RayJob\n", "", ["must be a mapping", "got array"], id="list"),
    pytest.param(b"just a string\n", "", ["must be a mapping", 'got string "just a string"'], id="scalar-string"),
    pytest.param(b"42\n", "", ["must be a mapping", "got integer 42"], id="scalar-int"),
    pytest.param(
        RAYCLUSTER_TEXT.replace("ray.io/v1", "ray.io/v2").encode(),
        "apiVersion",
        ['unknown apiVersion "ray.io/v2"', 'expected "ray.io/v1"'],
        id="api-version-v2",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("ray.io/v1", "ray.io/vl").encode(),
        "apiVersion",
        ['unknown apiVersion "ray.io/vl"'],
        id="api-version-typo",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("ray.io/v1", "apps/v1").encode(),
        "apiVersion",
        ['"apps/v1" is not a ray.io API version'],
        id="api-version-other-group",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("apiVersion: ray.io/v1\n", "").encode(),
        "apiVersion",
        ["required field is missing"],
        id="api-version-missing",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("kind: RayCluster", "kind: RayClustr").encode(),
        "kind",
        ['unknown kind "RayClustr"', '(did you mean "RayCluster"?)'],
        id="kind-typo",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("kind: RayCluster", "kind: raycluster").encode(),
        "kind",
        ['(did you mean "RayCluster"?)'],
        id="kind-lowercase",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("kind: RayCluster\n", "").encode(),
        "kind",
        ["required field is missing", "RayCluster, RayJob"],
        id="kind-missing",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("maxReplicas: 3", "maxReplicas: three").encode(),
        "spec.workerGroupSpecs[0].maxReplicas",
        ['expected integer, got string "three"'],
        id="wrong-type-string-for-int",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("rayStartParams: {}", "rayStartParams: [a, b]", 1).encode(),
        "spec.headGroupSpec.rayStartParams",
        ["expected object, got array"],
        id="wrong-type-list-for-map",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("replicas: 1\n", "replicas: 99999999999\n").encode(),
        "spec.workerGroupSpecs[0].replicas",
        ["99999999999 does not fit in int32"],
        id="int32-overflow",
    ),
    pytest.param(
        b"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: x}\nspec: {rayVersion: '2.52.0'}\n",
        "spec.headGroupSpec",
        ["required field is missing"],
        id="missing-head-group-spec",
    ),
    pytest.param(
        b"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {labels: {a: b}}\nspec: {}\n",
        "metadata.name",
        ["required field is missing"],
        id="missing-name",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("workerGroupSpecs:", "workerGroupSpec:").encode(),
        "spec.workerGroupSpec",
        ['unknown field "workerGroupSpec"', '(did you mean "workerGroupSpecs"?)'],
        id="unknown-field-did-you-mean",
    ),
    pytest.param(
        RAYCLUSTER_TEXT.replace("groupName: small", "groupName: small\n    minReplica: 1").encode(),
        "spec.workerGroupSpecs[0].minReplica",
        ['(did you mean "minReplicas"?)'],
        id="unknown-nested-field-did-you-mean",
    ),
    pytest.param(
        b"apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: j}\nspec: {submissionMode: sidecarmode}\n",
        "spec.submissionMode",
        ['"sidecarmode" is not one of', '(did you mean "SidecarMode"?)'],
        id="enum-did-you-mean",
    ),
    pytest.param(
        b"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: x, labels: {1: a}}\nspec: {}\n",
        "metadata.labels",
        ["field names must be strings, got integer 1"],
        id="non-string-label-key",
    ),
    pytest.param(
        b"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: 2024-01-01}\nspec: {}\n",
        "metadata.name",
        ["expected string, got date"],
        id="date-as-name",
    ),
    pytest.param(b"#" * (4 * 1024 * 1024), "", ["4.0 MiB", "over 3 MiB are refused"], id="4-mb-file"),
    pytest.param(b"a" * (MAX_FILE_BYTES + 1), "", ["over 3 MiB are refused"], id="one-byte-over-limit"),
    pytest.param(b"apiVersion: ray.io/v1\x00\x01\x02kind", "", ["binary file, not YAML"], id="binary-nul"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "", ["binary file"], id="binary-png-header"),
    pytest.param(
        "apiVersion: ray.io/v1\n".encode("utf-16"),
        "",
        ["binary file"],
        id="utf-16",
    ),
    pytest.param(b"apiVersion: \xff\xfe ray.io/v1\n", "", ["not UTF-8 text (byte 12 is invalid)"], id="invalid-utf-8"),
    pytest.param(b"kind: RayJob\nname: caf\xe9\n", "", ["not UTF-8 text"], id="latin-1"),
    pytest.param(b"", "", ["empty: no manifest found"], id="empty-file"),
    pytest.param(b"   \n\n  \n", "", ["empty"], id="whitespace-only"),
    pytest.param(b"# a comment\n# another\n---\n# and more\n", "", ["empty: no manifest found"], id="comments-only"),
    pytest.param(b"---\n---\n...\n", "", ["empty"], id="empty-documents"),
    pytest.param(_alias_bomb(), "", ["expands to over", "alias bomb"], id="billion-laughs"),
    pytest.param(b"[" * 10000, "", ["YAML nesting is too deep"], id="deep-flow-sequences"),
    pytest.param(b"[" * 10000 + b"]" * 10000, "", ["YAML nesting is too deep"], id="deep-closed-sequences"),
    pytest.param(b"{a: " * 5000 + b"1" + b"}" * 5000, "", ["YAML nesting is too deep"], id="deep-flow-mappings"),
    pytest.param(
        b"apiVersion: ray.io/v1\nkind: RayCluster\nmetadata:\n  name: x\n spec: [\n",
        "",
        ["invalid YAML at line 5"],
        id="bad-indentation",
    ),
    pytest.param(
        b"apiVersion: ray.io/v1\nkind: RayJob\nspec:\n\tentrypoint: x\n",
        "",
        ["invalid YAML at line 4"],
        id="tab-indent",
    ),
    pytest.param(b"a: [1, 2\nb: 3\n", "", ["invalid YAML at line"], id="unclosed-flow"),
    pytest.param(b'a: "unterminated\n', "", ["invalid YAML at line"], id="unterminated-quote"),
    pytest.param(b"a: *missing\n", "", ["invalid YAML at line 1", "undefined alias"], id="undefined-alias"),
    pytest.param(b"a: !!python/object/apply:os.system ['true']\n", "", ["invalid YAML at line 1"], id="python-tag"),
    pytest.param(b"? [a, b]\n: c\n", "", ["invalid YAML", "unhashable key"], id="unhashable-key"),
    pytest.param(b"a: \x07bell\n", "", ["invalid YAML"], id="control-character"),
]


@pytest.mark.parametrize(("data", "path", "fragments"), BAD_INPUT)
def test_bad_input_gives_a_clear_error(data: bytes, path: str, fragments: list[str]) -> None:
    # CPU time, not wall time: the bound catches a parser that blows up on crafted input, whatever else
    # runs on the machine (a loaded 2-core box doubled the wall time of the deep-nesting cases).
    started = time.process_time()
    report = validate_bytes(data, source="bad.yaml")
    elapsed = time.process_time() - started
    assert elapsed < 2.0, f"took {elapsed:.2f}s of CPU"
    check_contract(report)
    outcome = only_outcome(report)
    assert not report.ok
    assert outcome.errors
    matching = [e for e in outcome.errors if e.path == path and all(f in e.message for f in fragments)]
    assert matching, [str(e) for e in outcome.errors]


def test_alias_bomb_is_refused_quickly_even_when_small() -> None:
    data = _alias_bomb(levels=12, width=10)
    assert len(data) < 2000
    started = time.process_time()
    report = validate_bytes(data, source="bomb.yaml")
    assert time.process_time() - started < 2.0  # CPU time: the bomb's expansion, not the machine's load
    assert f"over {MAX_EXPANDED_NODES} nodes" in only_outcome(report).errors[0].message


def test_shared_aliases_within_the_budget_are_fine() -> None:
    """Anchors are legitimate YAML: a small shared template expands well under the budget."""
    text = RAYCLUSTER_TEXT.replace("rayStartParams: {}", "rayStartParams: &params {}").replace(
        "rayStartParams:\n      num-cpus: '1'", "rayStartParams: *params"
    )
    assert "*params" in text
    report = validate_bytes(text.encode(), source="anchors.yaml")
    assert report.ok, [str(e) for o in report.outcomes for e in o.errors]


def test_utf8_bom_is_accepted() -> None:
    report = validate_bytes(b"\xef\xbb\xbf" + RAYCLUSTER_TEXT.encode(), source="bom.yaml")
    assert report.ok
    assert only_outcome(report).label == "RayCluster/demo"


def test_file_level_errors_carry_the_source_once() -> None:
    report = validate_bytes(b"\x00", source="dir/picture.yaml")
    outcome = only_outcome(report)
    assert outcome.source == "dir/picture.yaml"
    assert outcome.errors[0].message == "binary file, not YAML"


def test_other_apis_are_skipped_not_failed() -> None:
    data = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b}\n"
    outcome = only_outcome(validate_bytes(data, source="cm.yaml"))
    assert outcome.errors == ()
    assert outcome.skipped is not None
    assert "not a ray.io resource" in outcome.skipped


def test_each_document_of_a_stream_is_judged_on_its_own() -> None:
    data = b"\n---\n".join(
        [RAYCLUSTER_TEXT.encode(), b"- not\n- a\n- manifest\n", b"kind: RayJob\napiVersion: ray.io/v1\n"]
    )
    report = validate_bytes(data, source="multi.yaml")
    check_contract(report)
    assert [o.index for o in report.outcomes] == [0, 1, 2]
    assert [o.ok for o in report.outcomes] == [True, False, False]
    assert "must be a mapping" in report.outcomes[1].errors[0].message


def test_yaml_error_in_a_later_document_fails_the_whole_file() -> None:
    data = RAYCLUSTER_TEXT.encode() + b"---\na: [\n"
    outcome = only_outcome(validate_bytes(data, source="broken.yaml"))
    assert outcome.errors[0].message.startswith("invalid YAML at line")


def test_parse_object_raises_only_manifest_error() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_object(
            {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"}, "spec": {"backoffLimit": "x"}}
        )
    assert [e.path for e in caught.value.errors] == ["spec.backoffLimit"]
    with pytest.raises(ManifestError, match=r"not a ray\.io resource"):
        parse_object({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})


# --- hypothesis: random damage never raises -------------------------------------------------------

KEYS = [
    "apiVersion", "kind", "metadata", "name", "spec", "headGroupSpec", "workerGroupSpecs", "template",
    "containers", "env", "value", "rayStartParams", "minReplicas", "maxReplicas", "groupName", "labels",
    "restartPolicy", "volumeMounts", "mountPath", "autoscalerOptions", "version", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "backend", "authOptions", "mode", "deletionStrategy", "deletionRules",
    "condition", "policy", "jobStatus", "onSuccess", "clusterSelector", "ray.io/cluster", "submissionMode",
    "runtimeEnvYAML", "networkPolicy", "tlsOptions", "upgradeStrategy", "type", "priority", "",
]  # fmt: skip
WORDS = [
    "", "ray.io/v1", "RayCluster", "RayJob", "RayService", "RayCronJob", "v1", "true", "1", "-1", "v2", "token",
    "rocksdb", "redis", "2.52.0", "2.56.0", "SidecarMode", "InteractiveMode", "DeleteCluster", "DeleteWorkers",
    "SUCCEEDED", "Failed", "RAY_enable_autoscaler_v2", "RAY_REDIS_ADDRESS", "Never", "Always", "[", "{a: ",
    "pip: [", "*/5 * * * *", "TZ=UTC", "5m", "-5m", "ray.io/ft-enabled",
]  # fmt: skip

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)


def _load_sample(name: str) -> dict[str, Any]:
    """The first ray.io document of one of KubeRay's samples (read in place, never copied)."""
    docs = yaml.safe_load_all((SAMPLES / name).read_text())
    return next(d for d in docs if isinstance(d, dict) and d.get("apiVersion") == "ray.io/v1")


SEEDS = [RAYCLUSTER, RAYJOB, _load_sample("ray-job.sample.yaml"), _load_sample("ray-service.sample.yaml")]


def test_fuzz_seeds_are_valid() -> None:
    """Damage is only meaningful relative to a manifest that was valid before it."""
    for seed in SEEDS:
        outcome = validate_document(Document("seed.yaml", 0, seed))
        assert outcome.ok, [str(e) for e in outcome.errors]
        assert outcome.obj is not None


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def damaged_manifests(draw: st.DrawFn) -> Any:
    """A valid seed with 1-3 random changes: a value replaced, a key dropped, or a key added."""
    manifest: Any = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(manifest)))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if not path:
            if action == "replace":
                manifest = draw(JSON_VALUES)
            continue
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        if action == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif action == "drop":
            del parent[path[-1]]
        else:
            target = parent[path[-1]]
            if isinstance(target, dict):
                target[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = draw(JSON_VALUES)
            elif isinstance(target, list):
                target.append(draw(JSON_VALUES))
    return manifest


YAML_TOKENS = [
    "apiVersion: ray.io/v1\n", "kind: RayJob\n", "kind: RayCluster\n", "metadata:\n", "  name: x\n", "spec:\n",
    "  ", "- ", ": ", "[", "]", "{", "}", ",", "&a ", "*a", "*b", "!!str ", "!!binary ", "!!python/name:os ", "? ",
    "---\n", "...\n", "\n", "#", "'", '"', "|\n", ">\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "!x ", "\t", "~",
    "1e999", "0x1F", "2024-01-01", "<<: *a\n", "\\", "\ufeff", "\x85", "\u2028", "null", "=",
]  # fmt: skip
YAML_TEXT = st.lists(st.sampled_from(YAML_TOKENS) | st.text(max_size=5), max_size=40).map("".join)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(damaged_manifests())
def test_damaged_manifests_never_raise(manifest: Any) -> None:
    check_contract(Report([validate_document(Document("fuzz.yaml", 0, manifest))]))
    data = yaml.safe_dump(manifest).encode()
    check_contract(validate_bytes(data, source="fuzz.yaml"))


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    check_contract(validate_bytes(data, source="fuzz.bin"))


@SETTINGS
@given(YAML_TEXT)
def test_random_yaml_text_never_raises(text: str) -> None:
    check_contract(validate_bytes(text.encode("utf-8", "surrogatepass"), source="fuzz.yaml"))


runner = CliRunner()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        damaged_manifests().map(lambda m: yaml.safe_dump(m).encode()),
        st.binary(max_size=200),
        YAML_TEXT.map(str.encode),
    )
)
def test_cli_never_prints_a_traceback(data: bytes) -> None:
    report = validate_bytes(data, source="<stdin>")
    result = runner.invoke(app, ["validate", "-f", "-"], input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    failed = any(o.errors for o in report.outcomes)
    assert result.exit_code == (2 if failed else 0), result.output
    if failed:
        assert "<stdin>" in result.stderr
