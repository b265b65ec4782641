"""Check a JSON value against a structural OpenAPI schema, the way the API server does.

kray validates manifests against the very schema it publishes in its CRDs, so a manifest accepted
locally is accepted by a real API server and vice versa. Unlike the API server, which prunes or
rejects unknown fields depending on the client, we always treat them as errors (as
``kubectl --validate=strict``) and suggest the closest known name.

CEL rules (``x-kubernetes-validations``) are not interpreted here: each one has a Python twin in
:mod:`kray.api.rules`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from kray.api.errors import FieldError

_FORMAT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def check(value: Any, schema: Mapping[str, Any], *, path: str = "") -> list[FieldError]:
    """Every way ``value`` breaks ``schema``; empty when it conforms."""
    errors: list[FieldError] = []
    _check(value, schema, path, errors)
    return errors


def describe(value: Any) -> str:
    """A short, safe rendering of a value for an error message."""
    kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'{kind} "{shown}"'
    if isinstance(value, bool | int | float):
        return f"{kind} {value!r}"
    return kind


def child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def map_child(path: str, key: str) -> str:
    return f"{path}[{key}]"


def suggest(word: str, choices: list[str]) -> str:
    """`` (did you mean "x"?)`` when a choice is close to ``word``, else ``""``."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not match:
        lowered = {choice.lower(): choice for choice in choices}
        if word.lower() in lowered:
            match = [lowered[word.lower()]]
    return f' (did you mean "{match[0]}"?)' if match else ""


def _check(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    if value is None:
        return  # null is "unset" for the API server's defaulting and pruning
    if schema.get("x-kubernetes-int-or-string"):
        _check_int_or_string(value, schema, path, errors)
        return
    expected = schema.get("type")
    if expected == "object":
        _check_object(value, schema, path, errors)
    elif expected == "array":
        _check_array(value, schema, path, errors)
    elif expected == "string":
        _check_string(value, schema, path, errors)
    elif expected == "integer":
        _check_integer(value, schema, path, errors)
    elif expected == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(FieldError(path, f"expected number, got {describe(value)}"))
        else:
            _check_bounds(value, schema, path, errors)
    elif expected == "boolean" and not isinstance(value, bool):
        errors.append(FieldError(path, f"expected boolean, got {describe(value)}"))


def _check_object(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, dict):
        errors.append(FieldError(path, f"expected object, got {describe(value)}"))
        return
    properties: Mapping[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    # An object schema that declares nothing (``metadata`` in a CRD) is owned by someone else.
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False) or not (properties or additional)
    for key, item in value.items():
        if not isinstance(key, str):
            errors.append(FieldError(path, f"field names must be strings, got {describe(key)}"))
        elif key in properties:
            _check(item, properties[key], child(path, key), errors)
        elif isinstance(additional, Mapping):
            _check(item, additional, map_child(path, key), errors)
        elif not preserve and not additional:
            hint = suggest(key, sorted(properties))
            errors.append(FieldError(child(path, key), f'unknown field "{key}"{hint}'))
    for name in schema.get("required", ()):
        if value.get(name) is None and "default" not in properties.get(name, {}):
            errors.append(FieldError(child(path, name), "required field is missing"))


def _check_array(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, list):
        errors.append(FieldError(path, f"expected array, got {describe(value)}"))
        return
    minimum = schema.get("minItems")
    if minimum is not None and len(value) < minimum:
        errors.append(FieldError(path, f"must have at least {minimum} item(s), got {len(value)}"))
    items = schema.get("items")
    if items:
        for index, item in enumerate(value):
            _check(item, items, child(path, index), errors)


def _check_string(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, str):
        errors.append(FieldError(path, f"expected string, got {describe(value)}"))
        return
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        allowed = ", ".join(f'"{choice}"' for choice in enum)
        hint = suggest(value, [str(choice) for choice in enum])
        errors.append(FieldError(path, f'"{value}" is not one of {allowed}{hint}'))
    min_length = schema.get("minLength")
    if min_length is not None and len(value) < min_length:
        errors.append(FieldError(path, f"must be at least {min_length} character(s) long"))
    pattern = schema.get("pattern")
    if pattern is not None and not _compiled(pattern).search(value):
        errors.append(FieldError(path, f'"{value}" does not match the expected format {pattern}'))


def _check_integer(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(path, f"expected integer, got {describe(value)}"))
        return
    bounds = _FORMAT_BOUNDS.get(schema.get("format", ""))
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        errors.append(FieldError(path, f"{value} does not fit in {schema['format']}"))
        return
    _check_bounds(value, schema, path, errors)


def _check_bounds(value: float, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    minimum = schema.get("minimum")
    if minimum is not None and value < minimum:
        errors.append(FieldError(path, f"{value} is less than the minimum {minimum}"))
    maximum = schema.get("maximum")
    if maximum is not None and value > maximum:
        errors.append(FieldError(path, f"{value} is greater than the maximum {maximum}"))


def _check_int_or_string(value: Any, schema: Mapping[str, Any], path: str, errors: list[FieldError]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        errors.append(FieldError(path, f"expected integer or string, got {describe(value)}"))
        return
    pattern = schema.get("pattern")
    if isinstance(value, str) and pattern is not None and not _compiled(pattern).search(value):
        errors.append(FieldError(path, f'"{value}" is not a valid quantity'))


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def with_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """A copy of ``value`` with nulls dropped and the schema's defaults filled in, as the API server
    does before it validates and stores an object (so the embedded store and a real one agree)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, Mapping) else None)
            if item is None and not (sub or {}).get("nullable"):
                continue  # the API server drops nulls of non-nullable fields
            out[key] = with_defaults(item, sub) if sub is not None else item
        for key, sub in properties.items():
            if key not in out and "default" in sub:
                out[key] = sub["default"]
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [with_defaults(item, schema["items"]) for item in value]
    return value
