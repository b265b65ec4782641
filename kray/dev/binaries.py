"""Locate the control-plane binaries (and KubeRay's operator), building them with ``hack/k8s/build.sh``
on first use.

Why: a fresh machine has no kube-apiserver; the README's one test command must still work, so the first
user builds (10-25 min cold on 2 cores) and everyone after hits the version-keyed cache in seconds. The
build script is the single source of truth for versions and the cache layout; we only run it (it returns
in well under a second when everything is cached) and stream its progress to a terminal and a log file.
Failures raise :class:`BuildError` with the script's exact output and the log path; nothing is skipped.

KubeRay's Go operator (``kuberay-operator``) and Traefik (``traefik``, the Gateway API implementation the e2e
tests route incremental upgrades through) are *peers*, not part of the control plane: they are built and cached
the same way, but a prebuilt ``KRAY_K8S_BIN_DIR`` need not have them until someone asks for one.

Overrides: ``KRAY_K8S_BIN_DIR`` (use prebuilt binaries there, never build), ``KRAY_K8S_BUILD_SCRIPT``,
``KRAY_K8S_CACHE`` (cache root, also honoured by the script), ``KRAY_K8S_BUILD_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
KUBERAY_OPERATOR = "kuberay-operator"  # ray-operator's `go install` binary, renamed by build.sh
TRAEFIK = "traefik"  # the e2e tests' Gateway API implementation (github.com/traefik/traefik/v3/cmd/traefik)
PEERS = (KUBERAY_OPERATOR, TRAEFIK)
_BUILD_TARGET = {KUBERAY_OPERATOR: "kuberay", TRAEFIK: "traefik"}  # build.sh's component per peer
HELM = "helm"  # renders charts/kray-operator in the tests; built by build.sh like the rest
TOOLS = (HELM,)
DEFAULT_BUILD_TIMEOUT = 3600.0
_QUIET = ("go: downloading ", "go: added ", "go: upgraded ", "go: finding ")  # log file only, not terminal


class BuildError(RuntimeError):
    """The binaries are missing and building them failed (message carries the exact error)."""


@dataclass(frozen=True)
class Binaries:
    """Where the five control-plane binaries (and kwok's stage files, and the peers) live."""

    bin_dir: Path

    def path(self, name: str) -> Path:
        if name not in BINARIES:
            raise KeyError(f"unknown control-plane binary {name!r}; known: {', '.join(BINARIES)}")
        return self.bin_dir / name

    @property
    def kwok_stages(self) -> Path:
        return Path(os.environ.get("KRAY_K8S_KWOK_STAGES", str(self.bin_dir.parent / "kwok-stages")))

    def missing(self) -> list[str]:
        return [n for n in BINARIES if not os.access(self.path(n), os.X_OK)]

    def peer(self, name: str) -> Path:
        """A peer operator binary; raises :class:`BuildError` (with the command that builds it) if absent."""
        if name not in PEERS:
            raise KeyError(f"unknown peer binary {name!r}; known: {', '.join(PEERS)}")
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            target = _BUILD_TARGET[name]
            raise BuildError(f"{path} is missing; build it with `hack/k8s/build.sh {target}` (or `kray dev k8s build`)")
        return path

    def tool(self, name: str) -> Path:
        """A test tool binary (helm); raises :class:`BuildError` (with the command that builds it) if absent."""
        if name not in TOOLS:
            raise KeyError(f"unknown tool binary {name!r}; known: {', '.join(TOOLS)}")
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise BuildError(f"{path} is missing; build it with `hack/k8s/build.sh {name}`")
        return path


def repo_root() -> Path:
    """The source checkout this package was imported from (``hack/`` lives there, not in the wheel)."""
    return Path(__file__).resolve().parents[2]


def build_script() -> Path:
    script = Path(os.environ.get("KRAY_K8S_BUILD_SCRIPT", str(repo_root() / "hack" / "k8s" / "build.sh")))
    if not script.is_file():
        raise BuildError(
            f"control-plane build script not found at {script}; run from a kray source checkout, "
            "or set KRAY_K8S_BIN_DIR to a directory with prebuilt etcd/kube-*/kwok binaries"
        )
    return script


def cache_root() -> Path:
    if root := os.environ.get("KRAY_K8S_CACHE"):
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "kray" / "k8s"


def build_log_path() -> Path:
    return cache_root() / "build.log"


def _run_streaming(argv: list[str], *, log: Path, echo: TextIO | None, timeout: float) -> tuple[int, str]:
    """Run argv in its own session, tee output to ``log`` and ``echo``; kill the group on timeout."""
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=60)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                tail.append(line)
                if echo is not None and not line.startswith(_QUIET):
                    echo.write(line)
                    echo.flush()
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if timed_out.is_set():
        tail.append(f"build.sh: killed after the {timeout:.0f}s build timeout (KRAY_K8S_BUILD_TIMEOUT)\n")
        rc = rc or -9
    return rc, "".join(tail)


def ensure_binaries(*, echo: TextIO | None = None, timeout: float | None = None) -> Binaries:
    """Return the cached binaries, building whatever is missing first. Raises :class:`BuildError`."""
    if prebuilt := os.environ.get("KRAY_K8S_BIN_DIR"):
        bins = Binaries(Path(prebuilt))
        if missing := bins.missing():
            raise BuildError(f"KRAY_K8S_BIN_DIR={prebuilt} lacks executable(s): {', '.join(missing)}")
        return bins
    script = build_script()
    if timeout is None:
        timeout = float(os.environ.get("KRAY_K8S_BUILD_TIMEOUT", DEFAULT_BUILD_TIMEOUT))
    log = build_log_path()
    rc, tail = _run_streaming(["bash", str(script)], log=log, echo=echo, timeout=timeout)
    if rc != 0:
        raise BuildError(
            f"building the test control plane failed ({script} exited {rc}).\n"
            f"--- last lines ---\n{tail}--- full log: {log}"
        )
    out = subprocess.run(
        ["bash", str(script), "--print-bin-dir"], capture_output=True, text=True, check=True, timeout=60
    )
    bins = Binaries(Path(out.stdout.strip()))
    if missing := bins.missing():
        raise BuildError(f"{script} succeeded but {bins.bin_dir} lacks: {', '.join(missing)} (log: {log})")
    return bins
