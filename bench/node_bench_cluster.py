"""The ``node`` way of ``bench/node_bench.py``: a control plane of its own, a ``kray dev node`` agent whose pods run
as processes in their own network namespaces, kray's operator installed with its chart as a pod on that node;
then RayJobs created there and followed to Complete.

Why here and not in ``kray.dev``: this is the e2e suite's cluster (``tests/e2e/conftest.py``) built for a
measurement, and it must sweep the agent's network by prefix after it stops (``kray.local``, which ``kray.dev``
may not import). Setup is timed by phase and reported apart from the jobs. Leaving the context stops the agent
with SIGTERM (it stops every pod and removes their sandboxes), then says -- and removes -- whatever was left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from lightkube import ApiError, Client, KubeConfig, codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Namespace, Node, Pod

from kray.dev.binaries import HELM, ensure_binaries
from kray.dev.controlplane import ControlPlane, Options
from kray.local.node.network import NodeNetwork
from kray.local.podrunner import HOME_ENV

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kray-operator"
KRAY = str(Path(sys.executable).parent / "kray")
OPERATOR_NS = "kray-system"
RayJob = create_namespaced_resource("ray.io", "v1", "RayJob", "rayjobs")


def free_pod_cidr() -> str:
    """A /24 of 10.200.0.0/13 that no host route overlaps (another agent's included)."""
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    )
    taken = [ipaddress.IPv4Network(r["dst"], strict=False) for r in json.loads(out.stdout) if r["dst"] != "default"]
    for _ in range(100):
        net = ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.200.0.0")) + random.randrange(2048) * 256, 24))
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise RuntimeError(f"no free /24 in 10.200.0.0/13; host routes: {taken}")


def network_leftovers(prefix: str) -> list[str]:
    found = [f"netns {n}" for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
             if n.startswith(f"{prefix}-")]  # fmt: skip
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout)
    return found + [f"link {link['ifname']}" for link in links if link["ifname"].startswith(prefix)]


def ready(obj: Any) -> bool:
    conditions = (obj.status.conditions or []) if obj.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def wait_for(
    check: Callable[[], Any], timeout: float, what: str, seen: Callable[[], Any], *, every: float = 0.2
) -> Any:
    """``check()``'s first truthy value; raises after ``timeout`` seconds saying what ``seen()`` last reported."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last saw:\n{seen()}")
        time.sleep(every)


class NodeCluster:
    """Use as a context manager: entering sets the cluster up (``setup`` seconds, by phase in ``phases``)."""

    def __init__(self, *, log: Callable[[str], None]) -> None:
        self.log = log
        self.base = Path(tempfile.mkdtemp(prefix="nbn", dir="/tmp"))
        self.state_dir = self.base / "node"
        self.prefix = f"kb{secrets.token_hex(3)}"
        self.name = f"kb-{secrets.token_hex(3)}"
        self.phases: dict[str, float] = {}
        self.setup = 0.0
        self.plane: ControlPlane | None = None
        self.client: Client | None = None
        self.agent: subprocess.Popen[bytes] | None = None

    # -- setup -------------------------------------------------------------------------------------------------
    def __enter__(self) -> NodeCluster:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop()

    def setup_phases(self) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items()) + f" (total {self.setup:.1f}s, not counted)"

    def _start(self) -> None:
        binaries = ensure_binaries(echo=sys.stderr)
        started = time.monotonic()
        self.plane = plane = ControlPlane(binaries=binaries, options=Options(scheduler=True)).start()
        self.client = client = Client(KubeConfig.from_file(plane.kubeconfig), field_manager="kray-node-bench")
        self._mark("control plane up", started)
        argv = [KRAY, "dev", "node", "--kubeconfig", str(plane.kubeconfig), "--name", self.name,
                "--state-dir", str(self.state_dir), "--pod-cidr", free_pod_cidr(), "--net-prefix", self.prefix,
                "--cpu", "16", "--memory", "64Gi"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRAY_")}
        env["KUBECONFIG"] = str(plane.kubeconfig)  # the agent's own: never a pod's
        with (self.base / "agent.log").open("ab") as out:
            self.agent = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_for(lambda: self._node_ready() or self.agent_exited(), 90, f"Node {self.name} Ready", self.agent_tail)
        if self.agent_exited():
            raise RuntimeError(f"the node agent exited {self.agent.poll()}:\n{self.agent_tail()}")
        self._mark("node Ready", started)
        helm = [str(binaries.tool(HELM)), "--kubeconfig", str(plane.kubeconfig)]
        self._run([*helm, "install", "kray-operator", str(CHART), "--namespace", OPERATOR_NS, "--create-namespace",
                   "--set", "command={kray,operator}", "--set", "logging.stdoutEncoder=json"])  # fmt: skip
        kubectl = [str(binaries.path("kubectl")), "--kubeconfig", str(plane.kubeconfig)]
        self._run([*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])
        wait_for(
            lambda: any(ready(p) for p in client.list(Pod, namespace=OPERATOR_NS)),
            120,
            "kray's operator pod Ready on the node agent",
            lambda: self.pods_seen(OPERATOR_NS) + "\n" + self.agent_tail(),
        )
        self._mark("operator Ready", started)
        self.setup = time.monotonic() - started

    def _mark(self, phase: str, started: float) -> None:
        self.phases[phase] = time.monotonic() - started
        self.log(f"node setup: {phase} at {self.phases[phase]:.1f}s")

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")

    # -- one job -----------------------------------------------------------------------------------------------
    def run(self, manifest: Callable[[str, str], dict[str, Any]], *, timeout: float) -> dict[str, float]:
        """Create ``manifest(name, namespace)`` (a RayJob) in a fresh namespace and follow it: create →
        Running (``ready``), Ray's RUNNING, Complete (``done`` = ``total``), then its cluster's pods gone."""
        assert self.client is not None
        client = self.client
        namespace, name = f"nb-{secrets.token_hex(3)}", "bench"
        client.create(Namespace(metadata={"name": namespace}))  # type: ignore[arg-type]
        times: dict[str, float] = {}
        seen: dict[str, Any] = {}
        try:
            started = time.monotonic()
            client.create(codecs.from_dict(manifest(name, namespace)))

            def complete() -> bool:
                status = dict(client.get(RayJob, name, namespace=namespace).to_dict().get("status") or {})  # type: ignore[no-untyped-call]
                seen["status"] = status
                now = time.monotonic() - started
                deployment = status.get("jobDeploymentStatus")
                if "head ready" not in times:
                    heads = client.list(Pod, namespace=namespace, labels={"ray.io/node-type": "head"})
                    if any(ready(p) for p in heads):
                        times["head ready"] = now
                if deployment in ("Running", "Complete"):
                    times.setdefault("ready", now)
                    times.setdefault("head ready", now)
                if status.get("jobStatus") in ("RUNNING", "SUCCEEDED"):
                    times.setdefault("running", now)
                if deployment in ("Failed", "ValidationFailed"):
                    raise RuntimeError(f"RayJob {namespace}/{name} {deployment}: {status}\n{self.report(namespace)}")
                return deployment == "Complete"

            wait_for(complete, timeout, f"RayJob {name} Complete", lambda: f"{seen}\n{self.report(namespace)}")
            times["done"] = times["total"] = time.monotonic() - started
            if seen["status"].get("jobStatus") != "SUCCEEDED":
                raise RuntimeError(f"RayJob {namespace}/{name} Complete but Ray says {seen['status']}")
            wait_for(lambda: not list(client.list(Pod, namespace=namespace)), 120,
                       "the job's cluster pods gone", lambda: self.pods_seen(namespace))  # fmt: skip
            times["teardown"] = time.monotonic() - started - times["done"]
        finally:
            self._remove_namespace(namespace)
        return times

    def _remove_namespace(self, namespace: str) -> None:
        assert self.client is not None
        client = self.client
        with contextlib.suppress(ApiError):
            client.delete(Namespace, namespace)

        def gone() -> bool:
            try:
                client.get(Namespace, namespace)
            except ApiError as error:
                return error.status.code == 404
            return False

        wait_for(gone, 120, f"namespace {namespace} gone", lambda: self.pods_seen(namespace))

    # -- reading -----------------------------------------------------------------------------------------------
    def _node_ready(self) -> bool:
        assert self.client is not None
        with contextlib.suppress(ApiError):
            return ready(self.client.get(Node, self.name))
        return False

    def agent_exited(self) -> bool:
        return self.agent is None or self.agent.poll() is not None

    def agent_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.base / "agent.log").read_text(errors="replace").splitlines()[-lines:])
        return "(no agent log)"

    def pods_seen(self, namespace: str) -> str:
        assert self.client is not None
        with contextlib.suppress(ApiError):
            pods = self.client.list(Pod, namespace=namespace)
            return "; ".join(f"{p.metadata.name} {p.status.phase if p.status else '?'} ready={ready(p)}"
                             for p in pods if p.metadata) or "(no pods)"  # fmt: skip
        return "(pods unreadable)"

    def report(self, namespace: str) -> str:
        return f"pods: {self.pods_seen(namespace)}\nagent log:\n{self.agent_tail(15)}"

    # -- teardown ----------------------------------------------------------------------------------------------
    def _stop(self) -> None:
        problems: list[str] = []
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                code = self.agent.wait(timeout=90)
                if code != 0:
                    problems.append(f"the node agent exited {code} on SIGTERM:\n{self.agent_tail()}")
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait(timeout=10)
                problems.append(f"the node agent ignored SIGTERM for 90s:\n{self.agent_tail()}")
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(HOME_ENV) == str(self.state_dir) and proc.status() != psutil.STATUS_ZOMBIE:
                    problems.append(f"pod process {proc.pid} {proc.name()} left; killed")
                    proc.kill()
        if left := network_leftovers(self.prefix):
            problems.append(f"network objects left: {left}; swept")
        NodeNetwork.sweep(self.prefix)
        if self.client is not None:
            self.client.close()
        if self.plane is not None:
            self.plane.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        if problems:
            raise RuntimeError("the node cluster did not stop cleanly: " + "\n".join(problems))
