"""Render the chart with the test helm, and compare manifests the way the install tests need.

Helm is built by ``hack/k8s/build.sh helm`` (cached with the control-plane binaries), so the tests
that use it carry the ``k8s`` marker: the pytest plugin builds what is missing before they run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kray-operator"

# Labels that name the tool that applied the objects; everything else must be equal.
TOOL_LABELS = ("app.kubernetes.io/managed-by",)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def helm_template(
    helm: Path, *, namespace: str, values: dict[str, Any] | None = None, crds: bool = True
) -> list[dict[str, Any]]:
    """``helm template`` of the chart (release ``kray-operator``) as a list of objects."""
    argv = [str(helm), "template", "kray-operator", str(CHART), "--namespace", namespace]
    if crds:
        argv.append("--include-crds")
    for key, value in (values or {}).items():
        argv += ["--set-json", f"{key}={json.dumps(value)}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"helm template failed ({out.returncode}):\n{out.stderr}"
    return [d for d in yaml.load_all(out.stdout, Loader=LOADER) if d]


def normalised(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects without the tool labels, sorted by (kind, namespace, name)."""
    out = []
    for original in docs:
        doc = json.loads(json.dumps(original))
        labels = doc.get("metadata", {}).get("labels") or {}
        for key in TOOL_LABELS:
            labels.pop(key, None)
        out.append(doc)
    return sorted(out, key=lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]
