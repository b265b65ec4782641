"""Kubernetes label selectors: parse the string form once, then match label maps.

The grammar is apimachinery's ``labels.Parse``: requirements joined by ``,`` (AND), each one of
``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``, ``key in (a,b)``,
``key notin (a,b)``, ``key>1``, ``key<1``. ``!=`` and ``notin`` also match objects without the
key. Keys and values are checked with the label rules, so a selector the API server refuses is
refused here too (:class:`~kray.store.errors.Invalid`, path ``labelSelector``) — the embedded store
and a real server agree on which watches and lists are valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from kray.api.errors import FieldError
from kray.store.errors import Invalid
from kray.store.meta import is_label_value, is_qualified_name

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[^\s!=(),<>]+)")


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = ">"
    LESS_THAN = "<"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case Operator.EQUALS | Operator.IN:
                return present and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.GREATER_THAN | Operator.LESS_THAN:
                try:
                    have, bound = int(str(value)), int(self.values[0])
                except ValueError:
                    return False
                return have > bound if self.operator is Operator.GREATER_THAN else have < bound

    def __str__(self) -> str:
        match self.operator:
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator.value} ({','.join(self.values)})"
            case _:
                return f"{self.key}{self.operator.value}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class Selector:
    """All requirements must hold; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __call__(self, labels: Mapping[str, str] | None) -> bool:
        """A selector is its own matcher: ``parse_selector(s)(labels)``."""
        return self.matches(labels)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


EVERYTHING = Selector()


def parse_selector(text: str | None) -> Selector:
    """The :class:`Selector` of a label selector string; ``Invalid`` when the API server would refuse it."""
    if text is None or not text.strip():
        return EVERYTHING
    tokens = _tokenize(text)
    requirements: list[Requirement] = []
    position = 0
    while True:
        requirement, position = _requirement(tokens, position, text)
        requirements.append(requirement)
        if position == len(tokens):
            return Selector(tuple(requirements))
        if tokens[position] != ",":
            raise _invalid(text, f"found '{tokens[position]}', expected: ','")
        position += 1


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        found = _TOKEN.match(text, position)
        if found is None:  # pragma: no cover - every non-space character starts some token
            raise _invalid(text, f"unexpected character at {position}")
        tokens.append(found.group(1))
        position = found.end()
    return tokens


def _requirement(tokens: list[str], position: int, text: str) -> tuple[Requirement, int]:
    def at(index: int) -> str | None:
        return tokens[index] if index < len(tokens) else None

    if at(position) == "!":
        key = _key(at(position + 1), text)
        return Requirement(key, Operator.DOES_NOT_EXIST), position + 2
    key = _key(at(position), text)
    op = at(position + 1)
    if op is None or op == ",":
        return Requirement(key, Operator.EXISTS), position + 1
    if op in ("=", "==", "!="):
        value = at(position + 2)
        if value is None or value == ",":
            value, end = "", position + 2  # ``a=`` selects the empty value
        else:
            end = position + 3
        operator = Operator.NOT_EQUALS if op == "!=" else Operator.EQUALS
        return Requirement(key, operator, (_value(value, text),)), end
    if op in ("in", "notin"):
        values, end = _value_set(tokens, position + 2, text)
        return Requirement(key, Operator.IN if op == "in" else Operator.NOT_IN, values), end
    if op in (">", "<"):
        value = at(position + 2)
        if value is None or not re.fullmatch(r"-?[0-9]+", value):
            raise _invalid(text, f"for '{op}', the value must be an integer, got {value!r}")
        operator = Operator.GREATER_THAN if op == ">" else Operator.LESS_THAN
        return Requirement(key, operator, (value,)), position + 3
    raise _invalid(text, f"found '{op}', expected: '=', '!=', '==', 'in', 'notin', '<', '>' or ','")


def _value_set(tokens: list[str], position: int, text: str) -> tuple[tuple[str, ...], int]:
    if position >= len(tokens) or tokens[position] != "(":
        raise _invalid(text, "expected '(' after 'in' or 'notin'")
    values: list[str] = []
    current = ""
    position += 1
    while position < len(tokens):
        token = tokens[position]
        if token == ")":
            values.append(_value(current, text))  # ``in ()`` is the set {""}, as in apimachinery
            return tuple(dict.fromkeys(values)), position + 1
        if token == ",":
            values.append(_value(current, text))
            current = ""
        elif current:
            raise _invalid(text, f"found '{token}', expected: ',' or ')'")
        else:
            current = token
        position += 1
    raise _invalid(text, "found end of input, expected: ')'")


def _key(token: str | None, text: str) -> str:
    if token is None or not is_qualified_name(token):
        raise _invalid(text, f"invalid label key {token!r}: must be a qualified name ([prefix/]name)")
    return token


def _value(token: str, text: str) -> str:
    if not is_label_value(token):
        raise _invalid(text, f"invalid label value {token!r}: must be a valid label value")
    return token


def _invalid(text: str, reason: str) -> Invalid:
    return Invalid(f"invalid label selector {text!r}: {reason}", [FieldError("labelSelector", reason)])
