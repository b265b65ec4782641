"""The ``kray`` command starts without importing what the command does not use.

Why: every ``kray`` invocation (and every CLI subprocess of the test suite) paid ~3 s importing pydantic's
API models, the pod runner, Ray's dashboard client, httpx2 and yaml before parsing its arguments, because
``kray.cli.main`` registers every command and each command module imported its whole implementation. Typer
needs only the command functions' signatures, so command modules import their implementation inside the
functions that use it. This test runs each case in a fresh interpreter and lists the heavy modules it loaded:
deterministic, unlike a timing bound, and it names the module a new eager import pulled in
(``python -X importtime -c "import kray.cli.main"`` then shows through which import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "pydantic",
    "kray.api.v1",
    "kray.api.crd",
    "kray.api.manifest",
    "kray.api.rules",
    "kray.controllers",
    "kray.runtime",
    "kray.operator",
    "kray.local.podrunner",
    "kray.local.history",
    "kray.local.fit",
    "kray.local.config",
    "kray.local.documents",
    "kray.local.server",
    "kray.local.node",
    "kray._ray",
    "kray._kube",
    "kray.dev.controlplane",
    "kray.dev.binaries",
    "kray.dev.detached",
    "kray.cli.documents",
    "httpx2",
    "lightkube",
    "yaml",
    "structlog",
    "psutil",
    "asyncio",
    "ssl",
)
"""Packages (with their submodules) that only some commands use, each costing 0.05-1 s to import."""

PROBE = """
import json, sys
argv = json.loads(sys.argv[1])
from kray.cli.main import app
if argv:
    try:
        app(argv, prog_name="kray")
    except SystemExit:
        pass
with open(sys.argv[2], "w") as out:
    json.dump(sorted(sys.modules), out)
"""


def loaded_heavy(argv: list[str], tmp_path: Path) -> list[str]:
    listing = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), str(listing)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"probe failed ({done.returncode}): {done.stderr[-2000:]}"
    modules = json.loads(listing.read_text())
    heavy = {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}
    # the outermost of each: ``kray._ray``, not its every submodule
    return sorted(m for m in heavy if not any(m.startswith(other + ".") for other in heavy))


TYPER_RUNS_WITH = ("pydantic",)
"""Typer (0.29) builds pydantic TypeAdapters for a command's parameters once it runs or helps a subcommand, so
pydantic itself loads (~0.1 s) for all but ``kray`` and ``kray --help``; kray's models (kray.api.v1, the costly
part) still must not."""


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        ([], ()),
        (["--help"], ()),
        (["job", "run", "--help"], TYPER_RUNS_WITH),
        (["job", "submit", "--help"], TYPER_RUNS_WITH),
        (["get", "--help"], TYPER_RUNS_WITH),
        (["dev", "node", "--help"], TYPER_RUNS_WITH),
        (["server", "--help"], TYPER_RUNS_WITH),
        (["version"], TYPER_RUNS_WITH),
        (["get", "nosuchkind"], TYPER_RUNS_WITH),  # exits 2 before it needs the server
    ],
    ids=lambda value: ("import" if not value else " ".join(value)) if isinstance(value, list) else "",
)
def test_cheap_commands_import_no_heavy_module(argv: list[str], allowed: tuple[str, ...], tmp_path: Path) -> None:
    heavy = [m for m in loaded_heavy(argv, tmp_path) if m not in allowed]
    assert not heavy, f"`kray {' '.join(argv)}` imported {heavy}: import them inside the commands that use them"


def test_validate_still_loads_the_models(tmp_path: Path) -> None:
    """The probe sees real imports: a command that needs the models has them (else the test above proves nothing)."""
    manifest = tmp_path / "cluster.yaml"
    manifest.write_text("apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: c}\nspec: {}\n")
    heavy = loaded_heavy(["validate", "-q", "-f", str(manifest)], tmp_path)
    assert {"pydantic", "kray.api.manifest"} <= set(heavy), heavy
