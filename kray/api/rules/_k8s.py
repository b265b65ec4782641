"""Kubernetes' name and label syntax checks (apimachinery ``util/validation``), and pod helpers."""

from __future__ import annotations

import re
from typing import Any

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def dns1035_label_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not DNS1035_LABEL.match(value):
        problems.append(
            "must consist of lower case alphanumeric characters or '-', start with an alphabetic "
            "character, and end with an alphanumeric character"
        )
    return problems


def dns1123_label_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not DNS1123_LABEL.match(value):
        problems.append(
            "must consist of lower case alphanumeric characters or '-', and must start and end with an "
            "alphanumeric character"
        )
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """Label keys: an optional DNS-1123 subdomain prefix and a name of at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    problems = []
    if slash:
        if not prefix:
            problems.append("prefix part must be non-empty")
        elif len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix):
            problems.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not QUALIFIED_NAME.match(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return problems


def label_value_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not LABEL_VALUE.match(value):
        problems.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        )
    return problems


def pod_spec(template: dict[str, Any]) -> dict[str, Any]:
    spec = template.get("spec")
    return spec if isinstance(spec, dict) else {}


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    found = pod_spec(template).get("containers")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def env_var(container: dict[str, Any], name: str) -> dict[str, Any] | None:
    for entry in container.get("env") or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def parse_version(text: str) -> tuple[int, ...] | None:
    """``2.52.0`` (or ``v2.52``) as a tuple; None when it is not a version (apimachinery ParseGeneric)."""
    match = re.fullmatch(r"v?([0-9]{1,9})\.([0-9]{1,9})(?:\.([0-9]{1,9}))?([-+].*)?", text.strip())
    if not match:
        return None
    return tuple(int(part) for part in match.groups()[:3] if part is not None)
