"""Run KubeRay's own operator (Go, built by ``hack/k8s/build.sh kuberay``) against a test control plane.

Why: kray claims KubeRay compatibility, so the reference implementation must be runnable beside it on the
same real kube-apiserver -- to check that kray's generated CRDs serve KubeRay's operator and, later, to
diff the objects both operators create from one manifest. The module proxy serves the ray-operator module
at v1.5.0 (not kray's v1.7 reference), so two v1.7 behaviours that are alpha gates in v1.5.0 are switched
on by default (:data:`DEFAULT_GATES`); the remaining differences are listed in
``shared/reference/kuberay-v1.5-to-v1.7.md``.

The process is run like the control-plane components (:mod:`kray.dev.procs`): its own session, PDEATHSIG
when tied to the parent, output in a log file, SIGTERM then SIGKILL of the whole group on stop. It binds
only 127.0.0.1 ports. "Started" means more than /healthz (which answers before any informer has synced):
every controller must also have logged "Starting workers", i.e. its caches -- including the ray.io
informers on kray's CRDs -- synced.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kray.dev.binaries import KUBERAY_OPERATOR, Binaries
from kray.dev.procs import ManagedProcess, ProcessSpec, StartupError, free_port, log_tail, wait_until

# v1.7 has both gates beta and on; v1.5.0 has them alpha and off (see the module docstring).
DEFAULT_GATES: Mapping[str, bool] = {"RayMultiHostIndexing": True, "RayJobDeletionPolicy": True}
# The kinds v1.5.0 runs a controller for. Its log lines name them by logger ("controllers.RayCluster");
# controller-runtime's own key would be "controller": "raycluster" (accepted too, for other versions).
CONTROLLERS = ("RayCluster", "RayJob", "RayService")
# KubeRay's own default (configapi.DefaultReconcileConcurrency), passed explicitly so runs are comparable.
DEFAULT_RECONCILE_CONCURRENCY = 1


@dataclass(frozen=True)
class KubeRayOptions:
    """How to run the operator.

    ``namespaces``: watched namespaces; empty means every namespace (KubeRay's default). ``gates``: the
    ``--feature-gates`` value. ``env``: extra environment (e.g. ``RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV``),
    on top of ours. ``metrics``: serve controller-runtime metrics on a free port (else ``--metrics-addr=0``).
    ``extra_args`` go last, so they override ours (Go's flag package keeps the last value).
    """

    namespaces: tuple[str, ...] = ()
    gates: Mapping[str, bool] = field(default_factory=lambda: dict(DEFAULT_GATES))
    env: Mapping[str, str] = field(default_factory=dict)
    reconcile_concurrency: int = DEFAULT_RECONCILE_CONCURRENCY
    metrics: bool = True
    extra_args: tuple[str, ...] = ()
    tie_to_parent: bool = True
    start_timeout: float = 60.0
    stop_timeout: float = 15.0


def gates_arg(gates: Mapping[str, bool]) -> str:
    """``A=true,B=false`` in a stable order (the operator parses it with component-base's feature gate)."""
    return ",".join(f"{name}={str(on).lower()}" for name, on in sorted(gates.items()))


def operator_argv(
    *, binary: Path, kubeconfig: Path, options: KubeRayOptions, probe_port: int, metrics_port: int | None
) -> tuple[str, ...]:
    """The command line (flag names as declared in ray-operator v1.5.0 ``main.go``)."""
    for ns in options.namespaces:
        if not ns or "," in ns:
            raise ValueError(f"invalid namespace {ns!r} for --watch-namespace")
    argv = [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--enable-leader-election=false",
        f"--metrics-addr={'0' if metrics_port is None else f'127.0.0.1:{metrics_port}'}",
        f"--health-probe-bind-address=127.0.0.1:{probe_port}",
        f"--reconcile-concurrency={options.reconcile_concurrency}",
        "--log-stdout-encoder=json",  # the start wait parses "Starting workers" lines
    ]
    if options.namespaces:
        argv.append(f"--watch-namespace={','.join(options.namespaces)}")
    if options.gates:
        argv.append(f"--feature-gates={gates_arg(options.gates)}")
    return (*argv, *options.extra_args)


def _http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _controller_kind(entry: dict[str, object]) -> str:
    logger = str(entry.get("logger", ""))
    if logger.startswith("controllers."):
        return logger.removeprefix("controllers.")
    kind = str(entry.get("controllerKind") or entry.get("controller") or "")
    return next((k for k in CONTROLLERS if k.lower() == kind.lower()), kind)


def started_controllers(log: Path) -> set[str]:
    """Kinds whose controllers' caches synced: controller-runtime logs "Starting workers" once each."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return set()
    found: set[str] = set()
    for line in text.splitlines():
        if "Starting workers" not in line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == "Starting workers":
            found.add(_controller_kind(entry))
    return found


class KubeRayOperator:
    """KubeRay's operator process against the apiserver of ``kubeconfig`` (a test plane's or a detached
    plane's). Context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        kubeconfig: Path,
        binaries: Binaries,
        log_dir: Path,
        options: KubeRayOptions | None = None,
        name: str = "kuberay-operator",
    ) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binaries.peer(KUBERAY_OPERATOR)
        self.options = options or KubeRayOptions()
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.probe_port = 0
        self.metrics_port: int | None = None
        self.startup_seconds = 0.0
        self._proc: ManagedProcess | None = None

    # ---- public values -------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} not started")
        return self._proc.pid

    @property
    def healthz_url(self) -> str:
        return f"http://127.0.0.1:{self.probe_port}/healthz"

    @property
    def metrics_url(self) -> str | None:
        return None if self.metrics_port is None else f"http://127.0.0.1:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def log_tail(self, *, lines: int = 40) -> str:
        return log_tail(self.log, lines=lines)

    def assert_running(self) -> None:
        if self._proc is None:
            raise StartupError(f"{self.name} not started")
        if not self._proc.alive():
            raise StartupError(self._proc.describe_exit())

    # ---- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> KubeRayOperator:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self) -> KubeRayOperator:
        """Launch, then wait for /healthz and every controller's synced caches; stops it on failure."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started (pid {self._proc.pid})")
        if not os.access(self.binary, os.X_OK):
            raise StartupError(f"{self.binary} is not executable; build it with `hack/k8s/build.sh kuberay`")
        t0 = time.monotonic()
        self.probe_port = free_port()
        self.metrics_port = free_port() if self.options.metrics else None
        argv = operator_argv(
            binary=self.binary,
            kubeconfig=self.kubeconfig,
            options=self.options,
            probe_port=self.probe_port,
            metrics_port=self.metrics_port,
        )
        # KUBECONFIG too: a developer's own KUBECONFIG must never leak in through a code path that reads it.
        env = {"KUBECONFIG": str(self.kubeconfig), **self.options.env}
        self._proc = ManagedProcess(
            ProcessSpec(self.name, argv, self.log, env=env), tie_to_parent=self.options.tie_to_parent
        )
        try:
            self._wait_started()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after ``stop_timeout``. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop(timeout=self.options.stop_timeout)

    # ---- internals ------------------------------------------------------------------------------------
    def _wait_started(self) -> None:
        proc = self._proc
        assert proc is not None
        seen: set[str] = set()

        def check(probe: bool) -> bool:
            if not proc.alive():
                raise StartupError(proc.describe_exit())
            if probe:
                return _http_ok(self.healthz_url)
            seen.update(started_controllers(self.log))
            return seen.issuperset(CONTROLLERS)

        def detail() -> str:
            return f"controllers with synced caches: {sorted(seen) or 'none'}; log {self.log}:\n{self.log_tail()}"

        deadline = time.monotonic() + self.options.start_timeout
        wait_until(lambda: check(True), timeout=self.options.start_timeout, what=self.healthz_url, detail=detail)
        wait_until(
            lambda: check(False),
            timeout=max(deadline - time.monotonic(), 1.0),
            what=f"{self.name} controllers {', '.join(CONTROLLERS)} to sync their caches and start workers",
            detail=detail,
        )
