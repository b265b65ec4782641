"""JSON text and quoted strings exactly as Go prints them, for text KubeRay embeds in shell commands.

KubeRay writes ``--resources='{"TPU":4}'`` and ``--runtime-env-json "{\\"pip\\":…}"`` with Go's
``encoding/json`` and ``strconv.Quote``. Python's defaults differ in small ways that change the
command (``4.0`` vs ``4``, ``<`` vs ``\\u003c``, key order), and the command is user-visible, so we
reproduce Go's rules: object keys sorted, no spaces, floats in shortest form (exponent only below
1e-6 or from 1e21), ``<``, ``>``, ``&``, U+2028 and U+2029 escaped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import yaml

__all__ = ["go_float", "go_json", "go_quote", "yaml_to_data"]

_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_HTML_RE = re.compile("[<>&\u2028\u2029]")


def go_float(value: float) -> str:
    """A float64 as Go's ``encoding/json`` writes it: ``4``, ``0.5``, ``1e-7``, ``1e+21``."""
    if not math.isfinite(value):
        raise ValueError(f"JSON has no representation for {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    if 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(repr(value)), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exponent = repr(value).partition("e")
    mantissa = mantissa.removesuffix(".0")
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{int(exponent.lstrip('+-'))}"


def go_json(value: Any) -> str:
    """Compact JSON as ``json.Marshal`` of Go maps/slices/scalars produces it."""
    return _HTML_RE.sub(lambda m: _HTML_ESCAPES[m.group()], _encode(value))


def _encode(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, Mapping):
        items = sorted(((_key(k), v) for k, v in value.items()), key=lambda item: item[0])
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_encode(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return go_float(key) if isinstance(key, float) else str(key)


def go_quote(text: str) -> str:
    """``strconv.Quote``: a double-quoted Go literal; printable Unicode stays, the rest is escaped."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


class _GoYAMLLoader(yaml.SafeLoader):
    """YAML as ``sigs.k8s.io/yaml`` reads it into ``interface{}``: timestamps stay strings."""


_GoYAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def yaml_to_data(text: str) -> Any:
    """Parse one YAML document the way KubeRay parses ``runtimeEnvYAML`` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_GoYAMLLoader)
