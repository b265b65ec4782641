"""The pure parts of the store: label-selector parsing, JSON merge patch (RFC 7386's examples),
metadata helpers and the embedded store's deletion planning."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kray.local.store import strategy
from kray.store import meta
from kray.store.errors import Invalid
from kray.store.merge import merge_patch
from kray.store.selectors import Operator, Requirement, parse_selector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=b", [Requirement("a", Operator.EQUALS, ("b",))]),
        ("a == b", [Requirement("a", Operator.EQUALS, ("b",))]),
        ("a!=b", [Requirement("a", Operator.NOT_EQUALS, ("b",))]),
        ("a in (x, y)", [Requirement("a", Operator.IN, ("x", "y"))]),
        ("a notin (x)", [Requirement("a", Operator.NOT_IN, ("x",))]),
        ("a in ()", [Requirement("a", Operator.IN, ("",))]),  # apimachinery: the set {""}
        ("example.com/a", [Requirement("example.com/a", Operator.EXISTS)]),
        ("!a", [Requirement("a", Operator.DOES_NOT_EXIST)]),
        ("a=", [Requirement("a", Operator.EQUALS, ("",))]),
        ("a>1,b<2", [Requirement("a", Operator.GREATER_THAN, ("1",)), Requirement("b", Operator.LESS_THAN, ("2",))]),
        (" a , !b ", [Requirement("a", Operator.EXISTS), Requirement("b", Operator.DOES_NOT_EXIST)]),
    ],
)
def test_parse_selector(text: str, expected: list[Requirement]) -> None:
    assert list(parse_selector(text).requirements) == expected


@pytest.mark.parametrize(
    "text", ["a b", "a in x", "a in (x", "a in (x y)", "=b", "a=b c", "a>x", "!", "a,", "-a=b", "a=-b", "a==(b)"]
)
def test_malformed_selectors(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_selector(text)
    assert [error.path for error in caught.value.errors] == ["labelSelector"]


def test_selector_matching_and_round_trip() -> None:
    selector = parse_selector("app in (web,db), tier!=back, !canary, rank>1")
    assert selector({"app": "web", "rank": "2"})
    assert not selector({"app": "web", "rank": "2", "canary": ""})
    assert not selector({"app": "web", "tier": "back", "rank": "2"})
    assert not selector({"app": "web", "rank": "x"})
    assert parse_selector(str(selector)) == selector
    assert parse_selector(None)(None)


# RFC 7386, appendix A
RFC_7386: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7386)
def test_merge_patch_rfc7386(target: Any, patch: Any, expected: Any) -> None:
    before = repr(target)
    assert merge_patch(target, patch) == expected
    assert repr(target) == before  # the target is not modified


def test_generate_name() -> None:
    name = meta.generate_name("x" * 70, choice=random.Random(1).choice)
    assert len(name) == 63
    assert name.startswith("x" * 58)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a", True), ("example.com/a-b_c.d", True), ("a/", False), ("/a", False), ("A_b", True), ("-a", False)],
)
def test_qualified_names(value: str, ok: bool) -> None:
    assert meta.is_qualified_name(value) is ok


def _obj(**metadata: Any) -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", **metadata}}


def test_plan_delete() -> None:
    now = "2026-01-01T00:00:00Z"
    assert strategy.plan_delete(kind="ConfigMap", stored=_obj(), propagation="Background", now=now) is None
    held = strategy.plan_delete(kind="ConfigMap", stored=_obj(finalizers=["x.io/f"]), propagation="Background", now=now)
    assert held is not None
    assert held["metadata"]["deletionTimestamp"] == now
    assert held["metadata"]["deletionGracePeriodSeconds"] == 0
    foreground = strategy.plan_delete(kind="ConfigMap", stored=_obj(), propagation="Foreground", now=now)
    assert foreground is not None
    assert foreground["metadata"]["finalizers"] == ["foregroundDeletion"]
    switched = strategy.plan_delete(kind="ConfigMap", stored=foreground, propagation="Orphan", now="later")
    assert switched is not None
    assert switched["metadata"]["finalizers"] == ["orphan"]
    assert switched["metadata"]["deletionTimestamp"] == now  # the first deletion time stays
    assert strategy.plan_delete(kind="ConfigMap", stored=switched, propagation="Orphan", now=now) is switched
    with pytest.raises(Invalid):
        strategy.plan_delete(kind="ConfigMap", stored=_obj(), propagation="Sideways", now=now)  # type: ignore[arg-type]
