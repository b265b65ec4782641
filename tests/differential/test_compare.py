"""The differential judge's pure half: what normalisation hides, and what it must never hide."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kray.dev.compare import Deliberate, Difference, Snapshot, compare, diff_values, glob, judge, judge_self, normalise

NS_A, NS_B = "diff-a-x1", "diff-b-x1"


def pod(namespace: str, suffix: str, *, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"demo-head-{suffix}",
            "generateName": "demo-head-",
            "namespace": namespace,
            "uid": f"uid-{suffix}",
            "resourceVersion": "123" if suffix == "bcdfg" else "456",
            "creationTimestamp": "2026-11-30T05:00:00Z",
            "ownerReferences": [{"kind": "RayCluster", "name": "demo", "uid": "u1", "controller": True}],
        },
        "spec": {
            "nodeName": "kwok-1",
            "volumes": [{"name": f"kube-api-access-{suffix}"}, {"name": "shared-mem"}],
            "containers": [
                {
                    "name": "ray-head",
                    "env": env
                    if env is not None
                    else [{"name": "FQ_RAY_IP", "value": f"demo-head-svc.{namespace}.svc"}],
                    "volumeMounts": [{"name": f"kube-api-access-{suffix}", "mountPath": "/var/run/x"}],
                }
            ],
        },
        "status": {"podIP": "10.0.0.7", "phase": "Running"},
    }


def test_two_runs_of_one_operator_compare_equal() -> None:
    left = Snapshot(NS_A, {"Pod": [pod(NS_A, "bcdfg")]})
    right = Snapshot(NS_B, {"Pod": [pod(NS_B, "x2z9q")]})
    assert compare("sample", left, right) == []


def test_a_real_difference_is_reported_by_name_not_by_list_position() -> None:
    extra = [{"name": "A", "value": "1"}, {"name": "FQ_RAY_IP", "value": f"demo-head-svc.{NS_B}.svc"}]
    left = Snapshot(NS_A, {"Pod": [pod(NS_A, "bcdfg")]})
    right = Snapshot(NS_B, {"Pod": [pod(NS_B, "x2z9q", env=extra)]})
    (difference,) = compare("sample", left, right)
    assert difference.path == "spec.containers[name=ray-head].env[name=A]"
    assert (difference.kuberay, difference.kray) == (None, {"name": "A", "value": "1"})


def test_a_missing_object_and_a_different_count_are_differences() -> None:
    left = Snapshot(NS_A, {"Pod": [pod(NS_A, "bcdfg"), pod(NS_A, "bcdfh")]})
    right = Snapshot(NS_B, {"Pod": [pod(NS_B, "x2z9q")]})
    assert [d.path for d in compare("s", left, right)] == ["(count)"]


def test_namespace_is_hidden_only_as_a_whole_word() -> None:
    obj = {"metadata": {"name": "n"}, "data": {"x": f"{NS_A}-suffix", "y": f"svc.{NS_A}.svc"}}
    clean = normalise("ConfigMap", obj, namespace=NS_A)
    assert clean["data"] == {"x": f"{NS_A}-suffix", "y": "svc.<ns>.svc"}


def test_the_deliberate_list_is_checked_both_ways() -> None:
    seen = [
        Difference("s", "Pod", "demo-head-<rand>", "spec.containers[name=ray-head].args[0]", "ulimit -n 65536; x", "y")
    ]
    used = Deliberate(
        id="ulimit", why="v1.7", kind="Pod", path="spec.containers[*].args[0]", kuberay='"ulimit -n 65536;*'
    )
    stale = Deliberate(id="gone", why="fixed since", kind="Service")
    verdict = judge(seen, [used, stale])
    assert verdict.unexplained == []
    assert [d.id for d in verdict.unused] == ["gone"]
    assert not verdict.passed
    assert judge(seen, [stale]).unexplained == seen


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=12,
)


@given(json_values, json_values)
def test_diff_is_empty_exactly_when_equal(left: Any, right: Any) -> None:
    assert (diff_values(left, right) == []) == (left == right)
    assert diff_values(left, copy.deepcopy(left)) == []


def test_a_rewrite_entry_explains_one_change_and_nothing_else() -> None:
    entry = Deliberate(id="ulimit", why="v1.7", rewrite=(("ulimit -n 65536;", "ulimit -n ${X:-65536};"),))
    same_rest = Difference(
        "s", "Pod", "p", "args[0]", "ulimit -n 65536; ray start --a", "ulimit -n ${X:-65536}; ray start --a"
    )
    other_rest = Difference(
        "s", "Pod", "p", "args[0]", "ulimit -n 65536; ray start --a", "ulimit -n ${X:-65536}; ray start --b"
    )
    assert entry.matches(same_rest)
    assert not entry.matches(other_rest)


def test_glob_patterns() -> None:
    assert glob("spec.containers[name=*].args[0]", "spec.containers[name=ray-head].args[0]")
    assert not glob("spec.containers[*]", "spec.containers.x")
    assert glob("ray-cluster.{mtls,historyserver}.yaml", "ray-cluster.mtls.yaml")
    assert not glob("ray-cluster.{mtls,historyserver}.yaml", "ray-cluster.tls.yaml")
    assert glob('{"port": 1, "x": *}', '{"port": 1, "x": 2}'), "JSON braces are literal"
    assert glob('{(absent),"0"}', '"0"')
    assert glob('{(absent),"0"}', "(absent)")


def test_a_sometimes_entry_may_go_unseen() -> None:
    flaky = Deliberate(id="random", why="KubeRay picks any pod", kind="Pod", sometimes=True)
    assert judge([], [flaky]).passed
    assert not judge([], [Deliberate(id="always", why="x", kind="Pod")]).passed


def test_an_operator_against_itself_may_show_its_nondeterminism_either_way_round() -> None:
    race = Deliberate(id="race", why="x", kind="Event", path="reason=Failed*", kray="(absent)", sometimes=True)
    first_only = Difference("s@1", "Event", "RayService/a", "reason=FailedToCreate", "FailedToCreate", None)
    second_only = Difference("s@1", "Event", "RayService/a", "reason=FailedToCreate", None, "FailedToCreate")
    other = Difference("s@1", "Event", "RayService/a", "reason=Created", None, "Created")
    assert judge([second_only], [race]).unexplained == [second_only], "one way round only, against kray"
    assert judge_self([first_only, second_only], [race]).unexplained == []
    assert judge_self([second_only, other], [race]).unexplained == [other]
    always = Deliberate(id="always", why="x", kind="Event", path="reason=Failed*")
    assert judge_self([second_only], [always]).unexplained == [second_only], "only sometimes entries explain"
