"""Refresh kray's vendored Kubernetes OpenAPI data from the Go module proxy.

Why: kray's CRDs embed Kubernetes types (chiefly ``PodTemplateSpec``) whose schemas must come from
Kubernetes' own published OpenAPI v3 documents, not from hand-written copies. This script downloads
the ``k8s.io/kubernetes`` module zip at the pinned version from the Go module proxy, checks it
against the Go checksum database (served through the same proxy), reads the OpenAPI v3 documents
under ``api/openapi-spec/v3/`` and writes ONE trimmed, deterministic data file,
``kray/api/k8s/openapi-<version>.json``: the transitive closure of ``ROOT_DEFINITIONS``, with
``description`` fields dropped and ``$ref``s rewritten to ``#/definitions/<name>``.

Version choice: the pin is the newest Kubernetes release the module proxy serves (v1.37.2 when this was
written; see ``GOTOOLCHAIN=local go list -m -versions k8s.io/kubernetes``). KubeRay v1.7 builds against
k8s.io/api v0.36.0; a newer minor only adds fields, so every manifest valid for KubeRay stays valid
for kray, and users get the fields of the current Kubernetes release.

The version lives in one constant, ``KUBERNETES_VERSION`` in ``kray/api/k8s/schema.py``. Running with
``--version`` rewrites that constant and removes the stale data file, so the two never disagree.

Usage: ``.venv/bin/python hack/refresh_k8s_openapi.py [--version v1.37.2]``. Running it twice
produces identical bytes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO / "kray" / "api" / "k8s"
SCHEMA_MODULE = PACKAGE_DIR / "schema.py"
VERSION_LINE = re.compile(r'^KUBERNETES_VERSION = "(?P<version>v[0-9]+\.[0-9]+\.[0-9]+)"$', re.MULTILINE)

MODULE = "k8s.io/kubernetes"
PROXY = "https://proxy.golang.org"
SPEC_DIR = "api/openapi-spec/v3"
# The documents holding the root definitions below. meta.v1.Condition lives in api__v1 too.
DOCUMENTS = ("api__v1_openapi.json", "apis__networking.k8s.io__v1_openapi.json")
REF_PREFIX = "#/components/schemas/"
OUT_REF_PREFIX = "#/definitions/"

ROOT_DEFINITIONS = (
    "io.k8s.api.core.v1.EnvFromSource",
    "io.k8s.api.core.v1.EnvVar",
    "io.k8s.api.core.v1.EnvVarSource",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.PodTemplateSpec",
    "io.k8s.api.core.v1.ResourceRequirements",
    "io.k8s.api.core.v1.SecurityContext",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.VolumeMount",
    "io.k8s.api.networking.v1.IngressTLS",
    "io.k8s.api.networking.v1.NetworkPolicyEgressRule",
    "io.k8s.api.networking.v1.NetworkPolicyIngressRule",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Condition",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
)

CHUNK = 1 << 20


def pinned_version() -> str:
    """The version in kray/api/k8s/schema.py's KUBERNETES_VERSION constant."""
    match = VERSION_LINE.search(SCHEMA_MODULE.read_text(encoding="utf-8"))
    if match is None:
        raise SystemExit(f"no KUBERNETES_VERSION constant found in {SCHEMA_MODULE}")
    return match["version"]


def download(url: str, *, dest: Path) -> None:
    """Stream ``url`` to ``dest`` (the module zip is ~20 MB; never held in memory whole)."""
    with urllib.request.urlopen(url, timeout=120) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out, CHUNK)


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def expected_zip_hash(*, proxy: str, version: str) -> str:
    """The module's ``h1:`` hash as the Go checksum database records it (via the proxy)."""
    lookup = fetch_text(f"{proxy}/sumdb/sum.golang.org/lookup/{MODULE}@{version}")
    for line in lookup.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == MODULE and fields[1] == version:
            return fields[2]
    raise SystemExit(f"checksum database has no zip hash for {MODULE}@{version}")


def zip_hash(archive: zipfile.ZipFile) -> str:
    """Go's dirhash Hash1 over a module zip: what go.sum and the checksum database record."""
    summary = hashlib.sha256()
    for name in sorted(archive.namelist()):
        digest = hashlib.sha256(archive.read(name)).hexdigest()
        summary.update(f"{digest}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode("ascii")


def read_schemas(archive: zipfile.ZipFile, *, version: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Merge ``components.schemas`` of DOCUMENTS; also return the names two documents define differently."""
    merged: dict[str, dict[str, Any]] = {}
    conflicting: set[str] = set()
    for document in DOCUMENTS:
        spec = json.loads(archive.read(f"{MODULE}@{version}/{SPEC_DIR}/{document}"))
        for name, schema in spec["components"]["schemas"].items():
            if merged.setdefault(name, schema) != schema:
                conflicting.add(name)
    return merged, conflicting


def ref_name(ref: str) -> str:
    """``X`` from ``#/components/schemas/X`` (upstream) or ``#/definitions/X`` (the vendored file)."""
    for prefix in (REF_PREFIX, OUT_REF_PREFIX):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    raise SystemExit(f"unsupported $ref {ref!r}")


def refs(node: Any) -> Iterator[str]:
    """Every definition name that ``node`` references through ``$ref``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield ref_name(value)
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def closure(schemas: dict[str, dict[str, Any]], *, roots: tuple[str, ...]) -> list[str]:
    """The sorted transitive closure of ``roots`` under ``$ref``."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise SystemExit(f"definition {name} is not in {', '.join(DOCUMENTS)}")
        seen.add(name)
        pending.extend(refs(schemas[name]))
    return sorted(seen)


def trim(node: Any) -> Any:
    """Drop ``description``s and point ``$ref``s at this file's ``definitions``."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "description":
                continue
            if key == "$ref":
                out[key] = OUT_REF_PREFIX + ref_name(value)
            elif key == "properties":
                out[key] = {name: trim(prop) for name, prop in value.items()}
            else:
                out[key] = trim(value)
        return out
    if isinstance(node, list):
        return [trim(item) for item in node]
    return node


def build_data(archive: zipfile.ZipFile, *, version: str, hash_: str) -> dict[str, Any]:
    schemas, conflicting = read_schemas(archive, version=version)
    names = closure(schemas, roots=ROOT_DEFINITIONS)
    if ambiguous := conflicting.intersection(names):
        raise SystemExit(f"defined differently by two OpenAPI documents: {', '.join(sorted(ambiguous))}")
    return {
        "kubernetesVersion": version,
        "source": {
            "module": f"{MODULE}@{version}",
            "moduleZipHash": hash_,
            "documents": [f"{SPEC_DIR}/{document}" for document in DOCUMENTS],
            "roots": list(ROOT_DEFINITIONS),
            "note": (
                "Generated by hack/refresh_k8s_openapi.py: the transitive closure of the roots, from the "
                "documents' components.schemas, with every description field removed and $ref rewritten "
                "to #/definitions/<name>. Do not edit by hand."
            ),
        },
        "definitions": {name: trim(schemas[name]) for name in names},
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_outputs(data: dict[str, Any], *, version: str) -> Path:
    """Write the data file, remove stale ones, and keep the KUBERNETES_VERSION constant in step."""
    target = PACKAGE_DIR / f"openapi-{version}.json"
    target.write_text(render(data), encoding="utf-8")
    for stale in sorted(PACKAGE_DIR.glob("openapi-*.json")):
        if stale != target:
            stale.unlink()
    source = SCHEMA_MODULE.read_text(encoding="utf-8")
    updated = VERSION_LINE.sub(f'KUBERNETES_VERSION = "{version}"', source, count=1)
    if updated != source:
        SCHEMA_MODULE.write_text(updated, encoding="utf-8")
    return target


def refresh(*, version: str, proxy: str) -> Path:
    try:
        return fetch_and_write(version=version, proxy=proxy)
    except urllib.error.HTTPError as error:
        raise SystemExit(
            f"{error.url}: HTTP {error.code}; is {MODULE}@{version} served? "
            f"(GOTOOLCHAIN=local go list -m -versions {MODULE})"
        ) from error


def fetch_and_write(*, version: str, proxy: str) -> Path:
    hash_ = expected_zip_hash(proxy=proxy, version=version)
    with tempfile.TemporaryDirectory(prefix="kray-k8s-openapi-") as tmp:
        zip_path = Path(tmp) / "module.zip"
        download(f"{proxy}/{MODULE}/@v/{version}.zip", dest=zip_path)
        with zipfile.ZipFile(zip_path) as archive:
            actual = zip_hash(archive)
            if actual != hash_:
                raise SystemExit(f"{MODULE}@{version} zip hash {actual} != checksum database {hash_}")
            data = build_data(archive, version=version, hash_=hash_)
    return write_outputs(data, version=version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", default=pinned_version(), help="k8s.io/kubernetes version (vX.Y.Z)")
    parser.add_argument("--proxy", default=PROXY, help="Go module proxy base URL")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"v[0-9]+\.[0-9]+\.[0-9]+", args.version):
        parser.error(f"--version must look like v1.37.2, got {args.version!r}")
    target = refresh(version=args.version, proxy=args.proxy.rstrip("/"))
    print(f"wrote {target.relative_to(REPO)} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
