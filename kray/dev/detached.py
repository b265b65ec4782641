"""A control plane that outlives the command that started it (``kray dev k8s up`` ... ``down``).

Why: benchmark and comparison runs (the KubeRay operator, kubectl, our operator in a separate process)
just need a kubeconfig to point at, and must not re-pay startup for every run. ``up`` starts the plane
untied from its parent and records the process ids and work dir in a state file; ``down`` stops those
process groups (checking each pid still belongs to this plane, so a recycled pid is never signalled)
and removes the work dir and the state file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kray.dev.binaries import ensure_binaries
from kray.dev.controlplane import STOP_ORDER, ControlPlane, Options
from kray.dev.procs import cmdline, processes_mentioning, stop_foreign_group


@dataclass(frozen=True)
class State:
    """What ``down`` and ``env`` need to know about a detached plane."""

    workdir: Path
    kubeconfig: Path
    server: str
    pids: dict[str, int]
    bin_dir: Path | None = None

    def env(self) -> dict[str, str]:
        """KUBECONFIG, and PATH with the plane's binaries (kubectl among them) first."""
        env = {"KUBECONFIG": str(self.kubeconfig)}
        if self.bin_dir is not None:
            env["PATH"] = f"{self.bin_dir}:{os.environ.get('PATH', '')}"
        return env

    def running(self) -> dict[str, int]:
        """The recorded components that are still alive and still ours."""
        return {n: p for n, p in self.pids.items() if str(self.workdir) in cmdline(p)}


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kray" / "dev-k8s.json"


def load() -> State | None:
    try:
        raw = json.loads(state_file().read_text())
    except FileNotFoundError:
        return None
    return State(
        workdir=Path(raw["workdir"]),
        kubeconfig=Path(raw["kubeconfig"]),
        server=raw["server"],
        pids={str(k): int(v) for k, v in raw["pids"].items()},
        bin_dir=Path(raw["bin_dir"]) if raw.get("bin_dir") else None,
    )


def up(*, scheduler: bool = True, kwok: bool = False) -> tuple[State, float]:
    """Start a detached plane (or return the running one). Returns its state and startup seconds."""
    current = load()
    if current is not None and current.running():
        return current, 0.0
    if current is not None:
        down()  # stale state: clean whatever is left
    plane = ControlPlane(binaries=ensure_binaries(), options=Options(scheduler=scheduler, tie_to_parent=False))
    plane.start()
    try:
        if kwok:
            plane.start_kwok()
        state = State(plane.workdir, plane.kubeconfig, plane.server, plane.pids(), plane.binaries.bin_dir)
        path = state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"workdir": str(state.workdir), "kubeconfig": str(state.kubeconfig), "bin_dir": str(state.bin_dir)}
        path.write_text(json.dumps({**payload, "server": state.server, "pids": state.pids}, indent=2))
    except BaseException:
        plane.stop()
        raise
    return state, plane.startup_seconds


def down() -> State | None:
    """Stop the detached plane, if any; raises if a process of it survives."""
    state = load()
    if state is None:
        return None
    alive = state.running()
    for name in sorted(alive, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else -1):
        stop_foreign_group(alive[name])
    if leftovers := processes_mentioning(str(state.workdir)):
        raise RuntimeError(f"processes of {state.workdir} survived: {leftovers}")
    shutil.rmtree(state.workdir, ignore_errors=True)
    state_file().unlink(missing_ok=True)
    return state
