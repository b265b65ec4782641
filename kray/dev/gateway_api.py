"""The Gateway API CRDs for tests: ``sigs.k8s.io/gateway-api`` at the version KubeRay v1.5.0 depends on.

Why from the Go module: KubeRay's operator imports ``sigs.k8s.io/gateway-api/apis/v1`` at v1.4.0 (its
``go.mod``), and the module ships the CRDs it was generated with (``config/crd/standard/*.yaml``), so the
test plane serves exactly the schema both operators are written against. ``go mod download`` fetches it
from the Go module proxy like the other Go-built test binaries (``hack/k8s/build.sh``) and keeps it in the
Go module cache, outside the repository, keyed by version: the second run is an offline lookup.
Failures raise :class:`~kray.dev.binaries.BuildError` with go's own output; nothing is skipped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kray.dev.binaries import BuildError

MODULE = "sigs.k8s.io/gateway-api"
VERSION = "v1.4.0"
"""KubeRay v1.5.0's ``ray-operator/go.mod`` requirement."""
DOWNLOAD_TIMEOUT = 600.0


def module_dir(*, version: str = VERSION, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """The extracted module in the Go module cache, downloaded first when absent."""
    argv = ["go", "mod", "download", "-json", f"{MODULE}@{version}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"`{' '.join(argv)}` could not run: {error}") from error
    try:
        answer = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        answer = {}
    if done.returncode != 0 or not answer.get("Dir"):
        detail = answer.get("Error") or done.stderr.strip() or done.stdout.strip()
        raise BuildError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {detail}")
    return Path(answer["Dir"])


def crd_files(*, version: str = VERSION) -> list[Path]:
    """The standard channel's CRD manifests (Gateway and HTTPRoute among them)."""
    directory = module_dir(version=version) / "config" / "crd" / "standard"
    files = sorted(directory.glob("gateway.networking.k8s.io_*.yaml"))
    names = {f.name.removeprefix("gateway.networking.k8s.io_").removesuffix(".yaml") for f in files}
    if not {"gateways", "httproutes"} <= names:
        raise BuildError(f"{directory} lacks the Gateway/HTTPRoute CRDs; found {sorted(names)}")
    return files
