"""Launch a real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager, scheduler.

Why: kray's operator must be proven against the real apiserver (schema validation, server-side apply,
garbage collection, watches, the Job controller), and the same plane later hosts the KubeRay comparison
runs, so it writes an ordinary kubeconfig any program can use. Compared with controller-runtime's
envtest we also run kube-controller-manager (all default controllers: garbage collector, Job,
EndpointSlice, namespace, service-account ...) and, optionally, kube-scheduler and kwok. Admission is the
apiserver default (ServiceAccount included), as in a real cluster.

Everything listens on free loopback ports; every process gets its own session and lives under one temp
work dir that :meth:`ControlPlane.stop` removes.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from kray.dev import kwok, pki
from kray.dev.binaries import Binaries
from kray.dev.procs import ManagedProcess, ProcessSpec, StartupError, free_port, log_tail, wait_until

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
FAST_NODE_MONITOR = ("--node-monitor-grace-period=25s", "--node-monitor-period=2s")
"""kube-controller-manager flags: a node whose Lease is not renewed for 25 s (not the default 50 s) turns
Ready=Unknown with the unreachable taint, checked every 2 s (not 5 s), so a test can see a dead node agent.
Lease holders renew every 10 s (kubelet, ``kray dev node``, kwok at its lease duration of 40 s), so 25 s
still tolerates one renewal late by up to 15 s."""


@dataclass(frozen=True)
class Options:
    """What to run.

    ``tie_to_parent`` kills the processes if the thread that started them dies (PDEATHSIG; off for the
    detached CLI), so start and restart from a long-lived thread. ``workdir`` (default: a fresh temp dir)
    is deleted by :meth:`ControlPlane.stop`. ``extra_*_args`` are appended to that component's flags (a
    later flag wins, so they override ours), e.g. :data:`FAST_NODE_MONITOR` for kube-controller-manager.
    """

    controller_manager: bool = True
    scheduler: bool = True
    tie_to_parent: bool = True
    start_timeout: float = 90.0
    workdir: Path | None = None
    extra_apiserver_args: tuple[str, ...] = ()
    extra_controller_manager_args: tuple[str, ...] = ()


def _probe(url: str, *, ctx: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ctx is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=3) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


class ControlPlane:
    """A running control plane. Use as a context manager, or call :meth:`start` / :meth:`stop`."""

    def __init__(self, *, binaries: Binaries, options: Options | None = None) -> None:
        self.binaries = binaries
        self.options = options or Options()
        self.procs: dict[str, ManagedProcess] = {}
        self._specs: dict[str, ProcessSpec] = {}
        self._workdir: Path | None = None
        self._pki: pki.Pki | None = None
        self.apiserver_port = 0
        self._etcd_url = ""
        self.startup_seconds = 0.0

    # ---- public values -------------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("control plane not started")
        return self._workdir

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def token(self) -> str:
        if self._pki is None:
            raise RuntimeError("control plane not started")
        return self._pki.token

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def env(self) -> dict[str, str]:
        """Environment for kubeconfig-driven programs (kubectl, operators, benchmarks)."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    # ---- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        if self.options.workdir is not None:
            self.options.workdir.mkdir(parents=True, exist_ok=True)
            self._workdir = self.options.workdir
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix="kray-k8s-"))
        try:
            (self.workdir / "pki").mkdir()
            self._pki = pki.generate(directory=self.workdir / "pki", service_ip=SERVICE_IP)
            self._start_etcd()
            self.apiserver_port = free_port()
            self._write_kubeconfig()
            self.start_apiserver()
            self._start_components()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every process (clients first, etcd last), then remove the work dir. Idempotent."""
        errors: list[str] = []
        for name in sorted(self.procs, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else -1):
            try:
                self.procs.pop(name).stop()
            except Exception as exc:  # keep going: never leave the others running
                errors.append(f"{name}: {exc!r}")
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if errors:
            raise RuntimeError("stopping the control plane: " + "; ".join(errors))

    def assert_running(self) -> None:
        dead = [p.describe_exit() for p in self.procs.values() if not p.alive()]
        if dead:
            raise StartupError("control-plane component(s) died:\n" + "\n".join(dead))

    # ---- apiserver (restartable, for watch-resume tests) ----------------------------------------------
    def start_apiserver(self) -> None:
        spec = self._specs.get("kube-apiserver") or self._apiserver_spec()
        self._specs["kube-apiserver"] = spec
        self._launch(spec)
        self._wait_ready("kube-apiserver", f"{self.server}/readyz", ctx=self._ca_context(), token=self.token)

    def stop_apiserver(self) -> None:
        self.procs.pop("kube-apiserver").stop()

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, graceful) and start it again on the same port and etcd."""
        self.stop_apiserver()
        self.start_apiserver()

    def start_kwok(self) -> None:
        """Start the kwok controller (idempotent): it manages nodes labelled ``type=kwok``."""
        if "kwok" in self.procs:
            return
        port = free_port()
        spec = kwok.spec(binaries=self.binaries, kubeconfig=self.kubeconfig, workdir=self.workdir, port=port)
        self._launch(spec)
        self._wait_ready("kwok", f"http://127.0.0.1:{port}/healthz")

    # ---- internals ------------------------------------------------------------------------------------
    def _launch(self, spec: ProcessSpec) -> None:
        self.procs[spec.name] = ManagedProcess(spec, tie_to_parent=self.options.tie_to_parent)

    def _wait_ready(self, name: str, url: str, *, ctx: ssl.SSLContext | None = None, token: str | None = None) -> None:
        proc = self.procs[name]

        def ready() -> bool:
            if not proc.alive():
                raise StartupError(proc.describe_exit())
            return _probe(url, ctx=ctx, token=token)

        wait_until(
            ready,
            timeout=self.options.start_timeout,
            what=f"{name} at {url}",
            detail=lambda: f"log {proc.spec.log}:\n{log_tail(proc.spec.log)}",
        )

    def _ca_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._etcd_url = url
        argv = (
            str(self.binaries.path("etcd")),
            "--name=kray",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=kray={peer_url}",
            "--unsafe-no-fsync=true",
            "--auto-compaction-retention=1",
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        )
        self._launch(ProcessSpec("etcd", argv, self._log("etcd")))
        self._wait_ready("etcd", f"{url}/health")

    def _apiserver_spec(self) -> ProcessSpec:
        p = self._pki
        assert p is not None
        argv = (
            str(self.binaries.path("kube-apiserver")),
            f"--etcd-servers={self._etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",  # 1.37 refuses loopback endpoints for the `kubernetes` Service
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'pki'}",
            f"--tls-cert-file={p.serving_cert}",
            f"--tls-private-key-file={p.serving_key}",
            f"--client-ca-file={p.ca_cert}",
            f"--token-auth-file={p.token_file}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            # Without it, SIGTERM waits for the components' watches until our 15 s stop timeout SIGKILLs it;
            # with it, open watches are closed within 2 s and the apiserver exits in well under a second.
            "--shutdown-watch-termination-grace-period=2s",
            "--profiling=false",
            *self.options.extra_apiserver_args,
        )
        return ProcessSpec("kube-apiserver", argv, self._log("kube-apiserver"))

    def _start_components(self) -> None:
        """Controller-manager and scheduler start together, then both must report /healthz."""
        p = self._pki
        assert p is not None
        kcfg = str(self.kubeconfig)
        common = (
            f"--kubeconfig={kcfg}",
            f"--authentication-kubeconfig={kcfg}",
            f"--authorization-kubeconfig={kcfg}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--profiling=false",
        )
        waits: list[tuple[str, int]] = []
        argv: tuple[str, ...]
        if self.options.controller_manager:
            port = free_port()
            argv = (
                str(self.binaries.path("kube-controller-manager")),
                *common,
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--controllers=*",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={p.sa_key}",
                f"--root-ca-file={p.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--cluster-name=kray-dev",
                *self.options.extra_controller_manager_args,
            )
            self._launch(ProcessSpec("kube-controller-manager", argv, self._log("kube-controller-manager")))
            waits.append(("kube-controller-manager", port))
        if self.options.scheduler:
            port = free_port()
            argv = (
                str(self.binaries.path("kube-scheduler")),
                *common,
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
            )
            self._launch(ProcessSpec("kube-scheduler", argv, self._log("kube-scheduler")))
            waits.append(("kube-scheduler", port))
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs; only /healthz is probed
        for name, port in waits:
            self._wait_ready(name, f"https://127.0.0.1:{port}/healthz", ctx=insecure)

    def _write_kubeconfig(self) -> None:
        p = self._pki
        assert p is not None
        ca = base64.b64encode(p.ca_cert.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kray-dev", "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": "kray-admin", "user": {"token": p.token}}],
            "contexts": [
                {"name": "kray-dev", "context": {"cluster": "kray-dev", "user": "kray-admin", "namespace": "default"}}
            ],
            "current-context": "kray-dev",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)
