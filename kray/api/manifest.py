"""Read manifests safely and validate them completely: the one entry point for user input.

Pipeline per document: YAML (size, encoding and alias-bomb limits) → apiVersion/kind routing →
structural check against the published CRD schema (types, required fields, enums, unknown fields)
→ pydantic model → KubeRay's controller-side rules. Every stage collects all its problems; a
document is either a typed object or a :class:`~kray.api.errors.ManifestError` listing them, and
nothing here ever raises anything else for bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import yaml
from pydantic import ValidationError

from kray.api.crd import crd, model_schema
from kray.api.errors import FieldError, ManifestError, shorten
from kray.api.rules import FeatureGates, check_raycluster, check_raycronjob, check_rayjob, check_rayservice
from kray.api.structural import check, describe, suggest
from kray.api.v1 import API_VERSION, GROUP, KINDS, RayCluster, RayCronJob, RayJob, RayObject, RayService
from kray.api.v1._base import ObjectMeta

MAX_FILE_BYTES = 3 * 1024 * 1024
"""Kubernetes stores an object in at most 1.5 MiB of etcd; a file twice that is not a manifest."""
MAX_EXPANDED_NODES = 200_000
"""YAML aliases may share subtrees; past this many expanded nodes a document is an alias bomb."""


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document of a source: its position and parsed content (None when empty)."""

    source: str
    index: int
    content: Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of validating one document: an object, or the errors, or a skip reason."""

    source: str
    index: int
    kind: str
    name: str
    obj: RayObject | None = None
    errors: tuple[FieldError, ...] = ()
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def label(self) -> str:
        return f"{self.kind or '<no kind>'}/{self.name or '<no name>'}"


@dataclass(slots=True)
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and all(o.ok for o in self.outcomes)

    def objects(self) -> list[RayObject]:
        return [o.obj for o in self.outcomes if o.obj is not None]


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, as ``kubectl --validate=strict`` does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shorten(key)}", key_node.start_mark
                )
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_text(data: bytes) -> str:
    """Decode a manifest file, refusing what is too large or not text."""
    if len(data) > MAX_FILE_BYTES:
        size = len(data) / (1024 * 1024)
        raise ManifestError([FieldError("", f"file is {size:.1f} MiB; manifests over 3 MiB are refused")])
    if b"\x00" in data:
        raise ManifestError([FieldError("", "binary file, not YAML")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ManifestError([FieldError("", f"not UTF-8 text (byte {error.start} is invalid)")]) from None


def load_documents(text: str, *, source: str) -> list[Document]:
    """All documents of a YAML stream; raises ManifestError (with line numbers) on YAML errors."""
    documents = []
    try:
        for index, content in enumerate(yaml.load_all(text, Loader=_BoundedLoader)):
            _ensure_bounded(content, index=index)
            documents.append(Document(source, index, content))
    except yaml.YAMLError as error:
        raise ManifestError([FieldError("", _yaml_message(error))]) from None
    except RecursionError:
        raise ManifestError([FieldError("", "YAML nesting is too deep")]) from None
    if all(d.content is None for d in documents):
        raise ManifestError([FieldError("", "empty: no manifest found")])
    return [d for d in documents if d.content is not None]


def _yaml_message(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"


def _ensure_bounded(content: Any, *, index: int) -> None:
    budget = MAX_EXPANDED_NODES
    stack = [content]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise ManifestError(
                [
                    FieldError(
                        "",
                        f"document {index + 1} expands to over {MAX_EXPANDED_NODES} nodes "
                        "(a YAML alias bomb?); refused",
                    )
                ]
            )
        if isinstance(node, dict):
            stack.extend(node.values())
            stack.extend(node.keys())
        elif isinstance(node, list):
            stack.extend(node)


@cache
def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@lru_cache(maxsize=1)
def _metadata_schema() -> dict[str, Any]:
    return model_schema(ObjectMeta)


def validate_document(doc: Document, *, gates: FeatureGates | None = None) -> Outcome:
    """Validate one parsed document completely; never raises for bad input."""
    gates = gates or FeatureGates()
    content = doc.content
    if not isinstance(content, dict):
        message = f"a manifest must be a mapping with apiVersion, kind and metadata, got {describe(content)}"
        return Outcome(doc.source, doc.index, "", "", errors=(FieldError("", message),))
    raw_kind = content.get("kind")
    kind = raw_kind if isinstance(raw_kind, str) else ""
    meta = content.get("metadata")
    raw_name = meta.get("name") if isinstance(meta, dict) else None
    name = raw_name if isinstance(raw_name, str) else ""
    routing = _route(content, kind=kind)
    if routing is not None:
        errors, skipped = routing
        return Outcome(doc.source, doc.index, kind, name, errors=tuple(errors), skipped=skipped)
    errors = [e for e in check(content, _schema(kind)) if e.path not in {"apiVersion", "kind"}]
    errors += check(meta, _metadata_schema(), path="metadata")
    if content.get("spec") is None:
        errors.append(FieldError("spec", "required field is missing"))
    if not isinstance(meta, dict) or not (meta.get("name") or meta.get("generateName")):
        errors.append(FieldError("metadata.name", "required field is missing"))
    if errors:
        return Outcome(doc.source, doc.index, kind, name, errors=tuple(errors))
    try:
        obj = KINDS[kind].model_validate(content)
    except ValidationError as error:
        return Outcome(doc.source, doc.index, kind, name, errors=tuple(_from_pydantic(error)))
    return Outcome(doc.source, doc.index, kind, name, obj=obj, errors=tuple(check_rules(obj, gates=gates)))


def check_rules(obj: RayObject, *, gates: FeatureGates) -> list[FieldError]:
    """KubeRay's controller-side rules for any ray.io object."""
    if isinstance(obj, RayCluster):
        return check_raycluster(obj, gates=gates)
    if isinstance(obj, RayJob):
        return check_rayjob(obj, gates=gates)
    if isinstance(obj, RayService):
        return check_rayservice(obj, gates=gates)
    assert isinstance(obj, RayCronJob)
    return check_raycronjob(obj, gates=gates)


def _route(content: dict[str, Any], *, kind: str) -> tuple[list[FieldError], str | None] | None:
    """None when the document is a ray.io/v1 kind we validate; else its errors or a skip reason."""
    api_version = content.get("apiVersion")
    if not isinstance(api_version, str) or not api_version:
        return [FieldError("apiVersion", f'required field is missing; expected "{API_VERSION}"')], None
    if not kind:
        return [FieldError("kind", f"required field is missing; expected one of {', '.join(KINDS)}")], None
    group = api_version.rpartition("/")[0]
    if group == GROUP or difflib.SequenceMatcher(None, api_version, API_VERSION).ratio() >= 0.8:
        if api_version != API_VERSION:
            served = api_version == f"{GROUP}/v1alpha1"
            hint = " (v1alpha1 is still served by Kubernetes, but kray reads ray.io/v1)" if served else ""
            message = f'unknown apiVersion "{api_version}"; expected "{API_VERSION}"{hint}'
            return [FieldError("apiVersion", message)], None
        if kind not in KINDS:
            message = f'unknown kind "{kind}" in {API_VERSION}; expected one of {", ".join(KINDS)}'
            return [FieldError("kind", message + suggest(kind, list(KINDS)))], None
        return None
    if kind in KINDS:
        return [
            FieldError("apiVersion", f'"{api_version}" is not a ray.io API version; expected "{API_VERSION}"')
        ], None
    return [], f"not a ray.io resource ({api_version} {kind}); not validated by kray"


def _from_pydantic(error: ValidationError) -> Iterator[FieldError]:
    for item in error.errors(include_url=False):
        path = ""
        for part in item["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
        yield FieldError(path, item["msg"])


def validate_text(text: str, *, source: str, gates: FeatureGates | None = None) -> Report:
    """Validate every document of a YAML stream; YAML-level problems become one failed outcome."""
    try:
        documents = load_documents(text, source=source)
    except ManifestError as error:
        return Report([Outcome(source, 0, "", "", errors=error.errors)])
    return Report([validate_document(d, gates=gates) for d in documents])


def validate_bytes(data: bytes, *, source: str, gates: FeatureGates | None = None) -> Report:
    try:
        text = read_text(data)
    except ManifestError as error:
        return Report([Outcome(source, 0, "", "", errors=error.errors)])
    return validate_text(text, source=source, gates=gates)


def parse_object(content: dict[str, Any], *, gates: FeatureGates | None = None) -> RayObject:
    """A validated ray.io object from a parsed manifest, or ManifestError with every problem."""
    outcome = validate_document(Document("<object>", 0, content), gates=gates)
    if outcome.errors or outcome.obj is None:
        raise ManifestError(outcome.errors or [FieldError("", outcome.skipped or "not a ray.io object")])
    return outcome.obj
