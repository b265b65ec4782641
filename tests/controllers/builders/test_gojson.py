"""Go's JSON and string quoting, as KubeRay embeds them in commands."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kray._ray.gojson import go_float, go_json, go_quote, yaml_to_data


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4.0, "4"),
        (0.5, "0.5"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (123456789.125, "123456789.125"),
        (1.5e-6, "0.0000015"),
    ],
)
def test_go_float(value: float, text: str) -> None:
    assert go_float(value) == text


def test_go_json_sorts_keys_and_escapes_html() -> None:
    assert go_json({"b": 1.0, "a": ["<&>", None, True], "c": {"z": 1, "y": 2}}) == (
        '{"a":["\\u003c\\u0026\\u003e",null,true],"b":1,"c":{"y":2,"z":1}}'
    )
    assert go_json({1: "x", None: "y"}) == '{"1":"x","null":"y"}'
    assert go_json({False: 0.25}) == '{"false":0.25}'


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("a", '"a"'),
        ('{"a":1}', '"{\\"a\\":1}"'),
        ("tab\there", '"tab\\there"'),
        ("é", '"é"'),
        ("\x01", '"\\x01"'),
        ("back\\slash", '"back\\\\slash"'),
        ("\u2028", '"\\u2028"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.text(max_size=5)
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=8,
    )
)
def test_go_json_is_json_with_the_same_meaning(value: object) -> None:
    # Go prints integral floats below 1e21 without an exponent; read numbers back as floats to compare.
    assert json.loads(go_json(value), parse_int=float) == json.loads(json.dumps(value), parse_int=float)


def test_yaml_timestamps_stay_strings() -> None:
    assert yaml_to_data("when: 2024-01-01") == {"when": "2024-01-01"}
