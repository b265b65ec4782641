"""Running ``kray dev node`` as a real process against the session control plane, and reading what it did.

Why a process: the agent is tested as it is run (its CLI, its signals, kill -9 and restart). Each test module
gets its own node name and state dir; every wait is bounded and fails with what it last saw.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Lease"]

import psutil
from lightkube import ApiError, Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod

from kray.dev.controlplane import ControlPlane
from kray.local.podrunner import HOME_ENV

KRAY = str(Path(sys.executable).parent / "kray")


def node_name() -> str:
    return f"kn-{secrets.token_hex(3)}"


class AgentProcess:
    """``kray dev node`` for one node; :meth:`start` again after :meth:`kill` or :meth:`stop`."""

    def __init__(self, *, plane: ControlPlane, name: str, state_dir: Path, args: tuple[str, ...] = ()) -> None:
        self.plane = plane
        self.name = name
        self.state_dir = state_dir
        self.args = args
        self.log = state_dir.parent / f"{name}.agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        argv = [KRAY, "dev", "node", "--kubeconfig", str(self.plane.kubeconfig), "--name", self.name]
        argv += ["--state-dir", str(self.state_dir), *self.args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRAY_")}
        env["KUBECONFIG"] = str(self.plane.kubeconfig)  # the agent's own: never a pod's
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return self

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        return ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, *, timeout: float = 60) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the agent did not stop within {timeout}s of SIGTERM; log:\n{self.tail()}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def alive(pid: int) -> bool:
    """Running, not a zombie (a pod process of a killed agent is reaped by whoever adopted the orphan)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def state_dir_processes(state_dir: Path) -> list[int]:
    """Live processes carrying this state dir (every pod process of the agent)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(HOME_ENV) == str(state_dir) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
    return found


def wait_for(
    check: Callable[[], Any], *, timeout: float, what: str, seen: Callable[[], Any], every: float = 0.2
) -> Any:
    """``check()``'s first truthy value; fails with ``seen()`` (what it last saw) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen:\n{seen()}")
        time.sleep(every)


def pod_manifest(
    name: str,
    namespace: str,
    node: str,
    command: list[str],
    *,
    restart: str = "Always",
    probe: dict[str, Any] | None = None,
    grace: int = 5,
    automount: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """A pod bound to ``node``; ``fields`` go into its container (``env``, ``livenessProbe``...)."""
    container: dict[str, Any] = {"name": "main", "image": "python:3", "command": command, **fields}
    if probe is not None:
        container["readinessProbe"] = probe
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": grace,
            "automountServiceAccountToken": automount,
            "containers": [container],
        },
    }


def get_pod(client: Client, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return client.get(Pod, name, namespace=namespace).to_dict()  # type: ignore[no-any-return]
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise


def condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or ():
        if entry.get("type") == kind:
            return str(entry.get("status"))
    return None


@contextlib.contextmanager
def node_removed(client: Client, name: str) -> Iterator[None]:
    """Delete the Node (and with it its Lease) after the test."""
    try:
        yield
    finally:
        with contextlib.suppress(ApiError):
            client.delete(Node, name)
