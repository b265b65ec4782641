"""The autoscaling samples on the e2e cluster, and what their tests watch: KubeRay's autoscaler samples as the
tests run them, a recorder of every RayCluster and worker-pod change, and drivers run in the head pod.

Why apart from the tests: the watches, the sample's edits and the in-pod drivers are the machinery; the tests
(``test_autoscaler.py``) keep only what they check.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from lightkube.types import PatchType

from kray.local.volumes import join_argv
from tests.e2e.support import E2E, SAMPLES, RayCluster, container_pid, get_obj, pods, ray_nodes
from tests.local.node.agent_helpers import wait_for

__all__ = ["GROUP", "IDLE_SECONDS", "PARKED", "PARKED_TASKS", "TASKS", "Cluster", "Recorder", "autoscaling_cluster"]

GROUP = "small-group"
PARKED = "parked"
IDLE_SECONDS = 15

# A driver in the head pod: `n` tasks of 1 CPU each, each sleeping `s` seconds, then the Ray node ids they ran on.
TASKS = """
import json, sys, time, ray
ray.init()
@ray.remote(num_cpus=1)
def work(s):
    time.sleep(s)
    return ray.get_runtime_context().get_node_id()
n, s = int(sys.argv[1]), float(sys.argv[2])
print(json.dumps(ray.get([work.remote(s) for _ in range(n)])), flush=True)
"""

# A driver whose `n` tasks only the parked group could run: it waits until told to stop (a line on stdin).
PARKED_TASKS = """
import sys, ray
ray.init()
@ray.remote(num_cpus=0, resources={"parked": 1})
def never():
    return 0
refs = [never.remote() for _ in range(int(sys.argv[1]))]
print("submitted", flush=True)
sys.stdin.readline()
"""


def autoscaling_sample(
    file: str, namespace: str, *, upscaling: str, version: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sample's RayCluster and ConfigMap: head memory 2Gi, ``idleTimeoutSeconds`` small, the mode (and the
    version, if given) set, and the ``parked`` group (see the module docstring); the rest as KubeRay ships it."""
    cluster, config_map = (copy.deepcopy(d) for d in yaml.safe_load_all((SAMPLES / file).read_text()))
    for obj in (cluster, config_map):
        obj["metadata"]["namespace"] = namespace
    spec = cluster["spec"]
    spec["autoscalerOptions"] |= {"idleTimeoutSeconds": IDLE_SECONDS, "upscalingMode": upscaling}
    if version is not None:
        spec["autoscalerOptions"]["version"] = version
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["resources"] = {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}
    parked = copy.deepcopy(spec["workerGroupSpecs"][0])
    parked |= {"groupName": PARKED, "rayStartParams": {"num-cpus": "0", "resources": '"{\\"parked\\": 1}"'}}
    parked["template"]["spec"]["nodeSelector"] = {"kray.io/e2e-parked": "nowhere"}
    spec["workerGroupSpecs"].append(parked)
    return cluster, config_map


# -- what the test watches -------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Every version of the RayCluster's worker groups and every worker pod's creation and deletion, from watches
    that run for the whole test (the autoscaler's ``workersToDelete`` lives for seconds).

    The watches are ``kubectl get --watch`` processes (list, then watch from the list's resourceVersion: no gap),
    read by threads: a process ends cleanly when told, where closing a TLS client under a reading thread does not.
    """

    e2e: E2E
    namespace: str
    name: str
    groups: list[tuple[float, dict[str, tuple[int, tuple[str, ...]]]]] = field(default_factory=list)
    created: dict[str, float] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)
    group_of: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen[str]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Recorder:
        watches = (
            (["rayclusters.ray.io", f"--field-selector=metadata.name={self.name}"], self._on_cluster),
            (["pods", "-l", "ray.io/node-type=worker"], self._on_pod),
        )
        for what, handle in watches:
            argv = [str(self.e2e.kubectl_bin), "get", *what, "-n", self.namespace, "--watch", "--output-watch-events"]
            proc = subprocess.Popen(
                [*argv, "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.e2e.env()
            )
            self._procs.append(proc)
            thread = threading.Thread(target=self._read, args=(proc, handle), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=10)

    def _read(self, proc: subprocess.Popen[str], handle: Any) -> None:
        """Events are JSON documents one after another (pretty-printed): decode each as soon as it is whole."""
        assert proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in proc.stdout:
            buffer += line
            with contextlib.suppress(ValueError):
                event, end = decoder.raw_decode(buffer := buffer.lstrip())
                buffer = buffer[end:]
                handle(str(event.get("type")), event.get("object") or {})
        if proc.poll() not in (None, 0, -15):
            self.errors.append(f"kubectl watch exited {proc.returncode}: {proc.stderr and proc.stderr.read()}")

    def _on_cluster(self, _: str, obj: dict[str, Any]) -> None:
        groups = {
            g["groupName"]: (
                int(g.get("replicas") or 0),
                tuple((g.get("scaleStrategy") or {}).get("workersToDelete") or ()),
            )
            for g in (obj.get("spec") or {}).get("workerGroupSpecs") or ()
        }
        if not self.groups or self.groups[-1][1] != groups:
            self.groups.append((time.monotonic(), groups))

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name"))
        self.group_of[name] = (meta.get("labels") or {}).get("ray.io/group", "?")
        self.created.setdefault(name, time.monotonic())
        if (kind == "DELETED" or meta.get("deletionTimestamp")) and name not in self.deleted:
            self.deleted[name] = time.monotonic()

    def history(self, group: str) -> list[tuple[int, tuple[str, ...]]]:
        """The group's (replicas, workersToDelete) as they followed one another."""
        steps: list[tuple[int, tuple[str, ...]]] = []
        for _, groups in self.groups:
            if group in groups and (not steps or steps[-1] != groups[group]):
                steps.append(groups[group])
        return steps

    def workers(self, group: str) -> set[str]:
        return {name for name, g in self.group_of.items() if g == group}

    def named_for_deletion(self, group: str, pod: str) -> float | None:
        """When ``pod`` first appeared in the group's ``workersToDelete``, or None."""
        for at, groups in self.groups:
            if pod in groups.get(group, (0, ()))[1]:
                return at
        return None

    def unrequested_deletions(self, group: str) -> list[str]:
        """Worker pods deleted without the autoscaler having named them first (what kray must never do)."""
        return [
            f"{pod} deleted at {at:.1f}, named: {self.named_for_deletion(group, pod)}"
            for pod, at in sorted(self.deleted.items())
            if self.group_of.get(pod) == group
            and ((named := self.named_for_deletion(group, pod)) is None or named > at)
        ]

    def seen(self) -> str:
        return (
            f"groups: {[g for _, g in self.groups][-8:]}; created: {sorted(self.created)}; "
            f"deleted: {sorted(self.deleted)}; watch errors: {self.errors}"
        )


@dataclass
class Cluster:
    """One autoscaling sample made by kray's operator, and what the test learns about it."""

    e2e: E2E
    namespace: str
    name: str
    recorder: Recorder

    def obj(self) -> dict[str, Any]:
        return get_obj(self.e2e.client, RayCluster, self.name, self.namespace) or {}

    def head(self) -> str:
        return str(pods(self.e2e.client, self.namespace, **{"ray.io/node-type": "head"})[0]["metadata"]["name"])

    def report(self, *extra: str) -> str:
        status = self.obj().get("status") or {}
        return self.e2e.report(self.namespace, *extra, f"recorded: {self.recorder.seen()}", f"status: {status}")

    def worker_node_ids(self) -> dict[str, str]:
        """Ray's node id of each ready worker pod of the small group, matched by IP (Ray's view, from the head)."""
        by_ip = {
            str(n["node_ip"]): str(n["node_id"])
            for n in ray_nodes(self.e2e.client, self.namespace, self.head())
            if n.get("state") == "ALIVE"
        }
        found = {}
        for pod in pods(self.e2e.client, self.namespace, **{"ray.io/group": GROUP}):
            ip = (pod.get("status") or {}).get("podIP")
            if ip in by_ip and not pod["metadata"].get("deletionTimestamp"):
                found[str(pod["metadata"]["name"])] = by_ip[ip]
        return found

    def driver(self, script: str, *args: str) -> subprocess.Popen[str]:
        """``python -c script args`` started in the head pod's Ray container (as ``kubectl exec`` would)."""
        pid = container_pid(self.e2e.client, self.namespace, self.head(), "ray-head")
        return subprocess.Popen(
            join_argv(python=sys.executable, pid=pid, argv=["python", "-c", script, *args]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def patch_options(self, **options: Any) -> None:
        self.e2e.client.patch(
            RayCluster,
            self.name,
            {"spec": {"autoscalerOptions": options}},
            namespace=self.namespace,
            patch_type=PatchType.MERGE,
        )


@contextlib.contextmanager
def autoscaling_cluster(
    e2e: E2E, namespace: str, file: str, *, upscaling: str, version: str | None = None
) -> Iterator[Cluster]:
    cluster, config_map = autoscaling_sample(file, namespace, upscaling=upscaling, version=version)
    name = cluster["metadata"]["name"]
    with Recorder(e2e, namespace, name) as recorder:
        e2e.create(config_map)
        e2e.create(cluster)
        made = Cluster(e2e, namespace, name, recorder)

        def ready() -> bool:
            return (made.obj().get("status") or {}).get("state") == "ready"

        wait_for(ready, timeout=180, what=f"RayCluster {name} ready", seen=made.report, every=1)
        yield made
