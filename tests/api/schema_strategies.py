"""Hypothesis strategies that generate JSON values conforming to a structural OpenAPI schema.

Used to fuzz the models with manifests of every shape the CRD allows: whatever the schema admits,
the models must load and dump back unchanged, and our checker must accept.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_FORMAT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)


def from_schema(schema: dict[str, Any], *, depth: int = 0, max_depth: int = 6) -> st.SearchStrategy[Any]:
    if schema.get("x-kubernetes-int-or-string"):
        strings = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else _TEXT
        return st.one_of(st.integers(-(2**31), 2**31 - 1), strings)
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return _TEXT.filter(lambda s: len(s) >= schema.get("minLength", 0))
    if kind == "integer":
        low, high = _FORMAT_BOUNDS.get(schema.get("format", ""), (-(2**31), 2**31 - 1))
        return st.integers(max(low, schema.get("minimum", low)), min(high, schema.get("maximum", high)))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        if depth >= max_depth:
            return st.just([])
        items = from_schema(schema.get("items", {"type": "string"}), depth=depth + 1, max_depth=max_depth)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=2)
    if kind == "object":
        return _object(schema, depth=depth, max_depth=max_depth)
    return st.just({})


def _object(schema: dict[str, Any], *, depth: int, max_depth: int) -> st.SearchStrategy[Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        if depth >= max_depth:
            return st.just({})
        values = from_schema(additional, depth=depth + 1, max_depth=max_depth)
        return st.dictionaries(st.text("abcdefgh-", min_size=1, max_size=6), values, max_size=2)
    required = set(schema.get("required", ()))
    mandatory = {
        k: from_schema(v, depth=depth + 1, max_depth=max_depth) for k, v in properties.items() if k in required
    }
    if depth >= max_depth:
        return st.fixed_dictionaries(mandatory)
    optional = {
        k: from_schema(v, depth=depth + 1, max_depth=max_depth) for k, v in properties.items() if k not in required
    }
    return st.fixed_dictionaries(mandatory, optional=optional)
