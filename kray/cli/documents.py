"""Every document of a manifest file, for ``kray apply`` and ``kray job run``: read, checked, stored in order.

ray.io objects are checked by :mod:`kray.api.manifest`, the documents pods use (ConfigMaps, Secrets,
ServiceAccounts, PersistentVolumeClaims, Namespaces) by :mod:`kray.local.documents`; any error in any
document refuses the whole file (exit 2) before anything is created. Other kinds are named as skipped, one
line each. Storing creates or updates each object as ``kubectl apply`` does (:mod:`kray.local.reapply`),
creating a missing namespace on first use, and says what it did: ``configmap/code created``,
``raycluster/demo configured``, ``secret/token unchanged``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from kray.api.errors import FieldError, ManifestError
from kray.api.manifest import Outcome, load_documents, read_text, validate_document
from kray.cli.render import age, outcome_lines
from kray.local import documents as docs
from kray.local.documents import Planned
from kray.local.reapply import applied, immutable_errors, plan_update
from kray.local.server.client import HttpStore
from kray.store import NAMESPACE, Obj
from kray.store.errors import AlreadyExists, Conflict, Invalid, NotFound

EXIT_INVALID = 2
UPDATE_ATTEMPTS = 5
err = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True, slots=True)
class Manifests:
    """The documents of some files: what to store (install order), what is skipped, and all of them."""

    planned: tuple[Planned, ...]
    skipped: tuple[str, ...]
    """``deployment/redis skipped: local mode does not run Deployments``, in file order."""
    documents: tuple[Obj, ...]
    """Every document as a dict (the stored kinds normalized), in file order: what fit checks look at."""


def read_manifests(filenames: list[str], *, namespace: str | None, generate_name: bool = False) -> Manifests:
    """Every document of the files, checked; on any error print them all and exit 2 (nothing is created).

    ``namespace`` is ``-n`` when given: the namespace of documents that name none, and an error for one
    that names another (as kubectl). ``generate_name``: a RayJob may have ``metadata.generateName`` and no
    name (``kray job run`` creates, as ``kubectl create`` does; apply needs a name, as ``kubectl apply``)."""
    planned: list[Planned] = []
    skipped: list[str] = []
    documents: list[Obj] = []
    failed = False
    for name in filenames:
        source = "<stdin>" if name == "-" else name
        for outcome, item in _read_file(name, source=source, namespace=namespace, generate_name=generate_name):
            if outcome is not None:
                failed = True
                for line in outcome_lines(outcome)[1]:
                    err.print(line, highlight=False, markup=False)
            elif isinstance(item, Planned):
                planned.append(item)
                documents.append(item.obj)
            elif item is not None:
                label, content = item
                skipped.append(f"{label} skipped: {docs.skip_reason(str(content['kind']))}")
                documents.append(content)
    if failed:
        raise typer.Exit(EXIT_INVALID)
    # A RayService or RayCronJob alone is not "nothing to store": the fit check refuses it naming its kind.
    unrun = any(str(d.get("apiVersion", "")).startswith("ray.io/") for d in documents)
    if not planned and not unrun:
        for line in skipped:
            err.print(line, highlight=False, markup=False)
        _exit(f"nothing to store: {', '.join(filenames)} has no RayCluster, RayJob or document pods use")
    return Manifests(planned=tuple(docs.install_order(planned)), skipped=tuple(skipped), documents=tuple(documents))


Read = tuple[Outcome | None, Planned | tuple[str, Obj] | None]


def _read_file(name: str, *, source: str, namespace: str | None, generate_name: bool) -> list[Read]:
    data = sys.stdin.buffer.read() if name == "-" else _read_bytes(name)
    try:
        parsed = load_documents(read_text(data), source=source)
    except ManifestError as error:
        return [(Outcome(source, 0, "", "", errors=error.errors), None)]
    found: list[Read] = []
    for document in parsed:
        content = document.content
        if docs.is_stored_core(content):
            errors = docs.core_errors(content)
            found.append(_planned(document.source, document.index, content, errors, namespace=namespace))
            continue
        outcome = validate_document(document)
        if outcome.errors:
            found.append((outcome, None))
        elif outcome.obj is not None and outcome.kind in docs.RAY_KINDS:
            obj = outcome.obj.to_dict()
            named = generate_name and outcome.kind == "RayJob"
            found.append(_planned(source, document.index, obj, [], namespace=namespace, generate_name=named))
        else:
            found.append((None, (f"{outcome.kind.lower()}/{outcome.name or '<no name>'}", content)))
    return found


def _planned(
    source: str,
    index: int,
    content: Obj,
    errors: list[FieldError],
    *,
    namespace: str | None,
    generate_name: bool = False,
) -> Read:
    kind = str(content["kind"])
    meta = content.get("metadata")
    name = str(meta.get("name") or "") if isinstance(meta, dict) else ""
    generated = generate_name and isinstance(meta, dict) and bool(meta.get("generateName"))
    if not errors and not name and not generated:
        errors = [FieldError("metadata.name", "required field is missing (apply cannot use generateName)")]
    if errors:
        return Outcome(source, index, kind, name, errors=tuple(errors)), None
    resource = docs.STORED.get(kind) or docs.RAY_KINDS[kind]
    obj = docs.normalized(content) if kind in docs.STORED else content
    conflict = docs.resolve_namespace(obj, resource, flag=namespace)
    if conflict is not None:
        return Outcome(source, index, kind, name, errors=(conflict,)), None
    return None, Planned(resource, obj)


def _read_bytes(name: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except OSError as error:
        _exit(f"{name}: cannot read: {error.strerror or error}")


def _exit(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


# -- storing ---------------------------------------------------------------------------------------------


Say = Callable[[str], None]


async def ensure_namespace(store: HttpStore, namespace: str, *, say: Say) -> None:
    """Create ``namespace`` when it does not exist (a local-mode convenience), saying so."""
    try:
        await store.get(NAMESPACE, namespace, namespace=None)
        return
    except NotFound:
        pass
    try:
        await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    except AlreadyExists:
        return
    say(f"namespace/{namespace} created")


async def store_all(store: HttpStore, planned: tuple[Planned, ...] | list[Planned], *, say: Say) -> None:
    """Create or update each document in order, each namespace it needs first; one line each."""
    ready: set[str] = set()
    for item in planned:
        namespace = item.namespace
        if namespace is not None and namespace not in ready:
            await ensure_namespace(store, namespace, say=say)
            ready.add(namespace)
        say(f"{item.label} {await apply_one(store, item)}")
        if item.resource is NAMESPACE:
            ready.add(item.name)


async def apply_one(store: HttpStore, item: Planned) -> str:
    """``created``, ``configured`` or ``unchanged`` (compared as stored: after the server's defaulting)."""
    try:
        await store.create(item.resource, applied(item.obj))
        return "created"
    except AlreadyExists:
        pass
    for _ in range(UPDATE_ATTEMPTS):
        current = await store.get(item.resource, item.name, namespace=item.namespace)
        merged = plan_update(current, item.obj)
        if merged is None:
            return "unchanged"
        errors = immutable_errors(current, merged)
        if errors:
            detail = "; ".join(str(error) for error in errors)
            raise Invalid(f'{item.resource.kind} "{item.name}" is invalid: {detail}', errors)
        try:
            written = await store.replace(item.resource, merged)
        except Conflict:
            await asyncio.sleep(0.2)
            continue
        same = written["metadata"].get("resourceVersion") == current["metadata"].get("resourceVersion")
        return "unchanged" if same else "configured"
    raise Conflict(f"{item.label}: changed by others {UPDATE_ATTEMPTS} times while being applied; apply again")


# -- namespaces ------------------------------------------------------------------------------------------


def namespace_table(namespaces: list[dict[str, Any]], *, now: datetime) -> str:
    """``kubectl get namespaces``: NAME STATUS AGE, columns three spaces apart, nothing cut."""
    rows = [["NAME", "STATUS", "AGE"]]
    for item in sorted(namespaces, key=lambda n: n["metadata"]["name"]):
        meta = item["metadata"]
        phase = (item.get("status") or {}).get("phase") or (
            "Terminating" if meta.get("deletionTimestamp") else "Active"
        )
        rows.append([meta["name"], phase, age(meta.get("creationTimestamp"), now=now)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
