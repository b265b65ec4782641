"""Ray's own autoscaler (``ray kuberay-autoscaler``, v1 and v2) scaling clusters made by kray's operator on the node
agent, with real Ray: KubeRay's ``ray-cluster.autoscaler.yaml`` and ``ray-cluster.autoscaler-v2.yaml``.

What is KubeRay's and Ray's here, and checked as such: the sidecar reads the RayCluster and its pods through the
apiserver with the head pod's ServiceAccount token (the Role KubeRay's ``common/rbac.go`` grants), and patches the
group's ``replicas`` to scale up and ``replicas`` + ``scaleStrategy.workersToDelete`` to scale down
(``node_provider.py``/``cloud_provider.py``); the operator creates and deletes pods for that, and never removes a
worker of its own accord while autoscaling is on (``reconcilePods``: no random deletion with autoscaling).
``upscalingMode`` is Ray's ``upscaling_speed`` (``autoscaling_config.py``: Conservative 1, Default/Aggressive
1000): v1 keeps at most ``max(5, speed * running)`` nodes of a type pending (``resource_demand_scheduler.py``),
v2 requests at most ``ceil(speed * max(running, 1))`` a loop (``reconciler.py::_compute_to_launch``).

A second group ``parked`` (Ray resource ``parked``, no CPU, a nodeSelector no node has) measures the upscaling
limits without running Ray in the pods it asks for: its pods stay Pending, which the autoscaler counts as pending
nodes. Every RayCluster and Pod change is recorded by watches for the whole test.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from kray.local.podrunner import pod_dir
from tests.e2e.autoscaling import GROUP, IDLE_SECONDS, PARKED, PARKED_TASKS, TASKS, Cluster, autoscaling_cluster
from tests.e2e.support import E2E, container_pid, pods
from tests.local.node.agent_helpers import wait_for

# The package fixture (control plane, node agent, operator: ~700 s of bounded waits under load) counts in the
# first test's budget.
pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(2100)]

# The v1 sample names no version: under KubeRay, Ray >= 2.47's `ray start --head` then turns v2 on
# (scripts.py: RAY_enable_autoscaler_v2 defaults to 1 when RAY_CLOUD_INSTANCE_ID and RAY_NODE_TYPE_NAME are set),
# so the test's copy pins `version: v1` (KubeRay then sets RAY_enable_autoscaler_v2=false on the head).
V1 = "ray-cluster.autoscaler.yaml"
V2 = "ray-cluster.autoscaler-v2.yaml"
PARKED_DEMAND = {"v1": 7, "v2": 3}


# -- the checks both versions share ------------------------------------------------------------------------------


def check_version(cluster: Cluster, version: str) -> None:
    """The head's RAY_enable_autoscaler_v2 (KubeRay's) and the monitor Ray ran for it (v2 logs its instance
    manager, ``instance_manager.py``; v1 never does)."""
    head = cluster.e2e.client.get(Pod, cluster.head(), namespace=cluster.namespace).to_dict()
    env = {e["name"]: e.get("value") for e in head["spec"]["containers"][0].get("env") or ()}
    assert env.get("RAY_enable_autoscaler_v2") == ("true" if version == "v2" else "false"), env
    log = pod_dir(cluster.e2e.state_dir, cluster.namespace, cluster.head()) / "autoscaler.log"
    assert ("instance_manager.py" in log.read_text(errors="replace")) == (version == "v2"), log.read_text()[-3000:]


def check_rbac(cluster: Cluster) -> None:
    """KubeRay's ServiceAccount, Role and RoleBinding (``common/rbac.go``: names ``<cluster>``, its labels, owned
    by the RayCluster) and autoscaler container (``BuildAutoscalerContainer`` with the sample's options)."""
    client, ns, name = cluster.e2e.client, cluster.namespace, cluster.name
    uid = cluster.obj()["metadata"]["uid"]
    account = client.get(ServiceAccount, name, namespace=ns).to_dict()
    role = client.get(Role, name, namespace=ns).to_dict()
    binding = client.get(RoleBinding, name, namespace=ns).to_dict()
    labels = {
        "ray.io/cluster": name,
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    for obj in (account, role, binding):
        assert obj["metadata"]["labels"] == labels, obj["metadata"]
    assert [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]] == [
        ([""], ["pods"], ["get", "list", "watch", "patch"]),
        ([""], ["pods/resize"], ["patch"]),
        (["ray.io"], ["rayclusters"], ["get", "patch"]),
    ], role
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": ns}], binding
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, binding
    for obj in (account, role, binding):
        owners = [(o["kind"], o["name"], o["uid"], o.get("controller")) for o in obj["metadata"]["ownerReferences"]]
        assert owners == [("RayCluster", name, uid, True)], obj["metadata"]
    head = pods(client, ns, **{"ray.io/node-type": "head"})[0]
    assert head["spec"]["serviceAccountName"] == name, head["spec"]
    sidecar = next(c for c in head["spec"]["containers"] if c["name"] == "autoscaler")
    start = "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
    assert (sidecar["command"], sidecar["args"]) == (["/bin/bash", "-c", "--"], [start]), sidecar
    assert [e["name"] for e in sidecar["env"]] == [
        "RAY_CLUSTER_NAME",
        "RAY_CLUSTER_NAMESPACE",
        "RAY_HEAD_POD_NAME",
        "KUBERAY_CRD_VER",
        "KUBERAY_GEN_AUTOSCALER_START_CMD",
    ], sidecar["env"]
    fixed = {"cpu": "500m", "memory": "512Mi"}
    assert sidecar["resources"] == {"limits": fixed, "requests": fixed}, sidecar
    assert sidecar["imagePullPolicy"] == "IfNotPresent", sidecar


def scale_up_and_run(cluster: Cluster, *, tasks: int, seconds: float) -> subprocess.Popen[str]:
    """Tasks needing ``tasks`` CPUs (the head has none): the autoscaler must raise replicas, kray make the pods and
    Ray start on them. Returns the driver once Ray sees the new workers (or it is done: short tasks may end
    before a poll sees the second worker join; the idle timeout keeps both workers for the checks after)."""
    driver = cluster.driver(TASKS, str(tasks), str(seconds))

    def up() -> bool:
        if driver.poll() not in (None, 0):
            raise AssertionError(f"the driver exited {driver.returncode}: {driver.stderr and driver.stderr.read()}")
        if cluster.recorder.history(GROUP)[-1][0] != tasks:
            return False
        return driver.poll() == 0 or len(cluster.worker_node_ids()) == tasks

    wait_for(
        up,
        timeout=240,
        what=f"{tasks} workers asked for by the autoscaler and seen by Ray",
        seen=cluster.report,
        every=2,
    )
    return driver


def ran_on_new_workers(cluster: Cluster, ids: list[str], count: int) -> set[str]:
    """Every task ran on one of the ``count`` new workers (Ray's node ids of their pods, not the head's); the
    workers' pod names."""

    def listed() -> dict[str, str] | None:
        found = cluster.worker_node_ids()
        return found if len(found) == count else None

    node_ids: dict[str, str] = wait_for(
        listed,
        timeout=60,
        what=f"Ray to list the {count} new workers",
        seen=cluster.report,
        every=1,
    )
    assert ids, "the driver returned no task"
    assert set(ids) <= set(node_ids.values()), f"tasks ran on {ids}; the new workers are {node_ids}"
    return set(node_ids)


def finish(cluster: Cluster, driver: subprocess.Popen[str], *, timeout: float) -> list[str]:
    try:
        out, err = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        driver.kill()
        out, err = driver.communicate()
        raise AssertionError(f"the driver did not finish in {timeout}s:\n{err[-2000:]}\n{cluster.report()}") from None
    assert driver.returncode == 0, f"the driver exited {driver.returncode}:\n{out}\n{err[-3000:]}"
    return list(json.loads(out.strip().splitlines()[-1]))


def scaled_down(cluster: Cluster, workers: set[str]) -> None:
    """After ``idleTimeoutSeconds`` idle the group is back at minReplicas (0), each worker removed after the
    autoscaler named it in ``workersToDelete``."""
    recorder = cluster.recorder

    def down() -> bool:
        left = pods(cluster.e2e.client, cluster.namespace, **{"ray.io/group": GROUP})
        return not left and recorder.history(GROUP)[-1][0] == 0

    wait_for(down, timeout=IDLE_SECONDS + 120, what="the group back at minReplicas 0", seen=cluster.report, every=1)
    for pod in workers:
        assert recorder.named_for_deletion(GROUP, pod) is not None, f"{pod} never in workersToDelete: {recorder.seen()}"
    assert not recorder.unrequested_deletions(GROUP), recorder.unrequested_deletions(GROUP)
    assert not recorder.errors, recorder.errors


def parked_replicas(cluster: Cluster) -> list[int]:
    return [replicas for replicas, _ in cluster.recorder.history(PARKED)]


def hold(cluster: Cluster, seconds: float, check: Any, what: str) -> None:
    """``check()`` stays true for ``seconds`` (several autoscaler loops: Ray's default interval is 5 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), f"{what} no longer holds:\n{cluster.report()}"
        time.sleep(1)


# -- the tests ---------------------------------------------------------------------------------------------------


def test_v1_scales_up_survives_an_autoscaler_restart_and_idles_down(e2e: E2E, namespace: str) -> None:
    t0 = time.monotonic()
    with autoscaling_cluster(e2e, namespace, V1, upscaling="Conservative", version="v1") as cluster:
        check_rbac(cluster)
        assert cluster.recorder.history(GROUP)[-1] == (0, ()), cluster.recorder.seen()
        print(f"ready at {time.monotonic() - t0:.1f}s")

        driver = scale_up_and_run(cluster, tasks=2, seconds=30)
        workers = cluster.recorder.workers(GROUP)
        print(f"scaled up at {time.monotonic() - t0:.1f}s: {workers}")

        # The autoscaler's process dies; the agent restarts its container (restartPolicy Always, v1's head).
        head = cluster.head()
        pid = container_pid(e2e.client, namespace, head, "autoscaler")
        subprocess.run(["kill", "-KILL", str(pid)], check=True, timeout=10)

        def restarted() -> bool:
            status = e2e.client.get(Pod, head, namespace=namespace).status
            restarts = {c.name: c.restartCount for c in (status.containerStatuses or [])} if status else {}
            return (
                restarts.get("autoscaler", 0) >= 1 and container_pid(e2e.client, namespace, head, "autoscaler") != pid
            )

        wait_for(restarted, timeout=60, what="the autoscaler container restarted", seen=cluster.report, every=1)
        ids = finish(cluster, driver, timeout=120)
        assert ran_on_new_workers(cluster, ids, 2) == workers, cluster.recorder.seen()
        # Restarted, the autoscaler keeps the two workers: none added, none removed while they were busy.
        assert cluster.recorder.workers(GROUP) == workers, cluster.recorder.seen()
        assert not cluster.recorder.deleted, cluster.recorder.seen()
        check_version(cluster, "v1")
        print(f"tasks done at {time.monotonic() - t0:.1f}s on {ids}")

        # Conservative (upscaling_speed 1): at most max(5, 1 * running) parked nodes pending at once.
        parked = cluster.driver(PARKED_TASKS, str(PARKED_DEMAND["v1"]))
        try:
            scaled_down(cluster, workers)
            print(f"scaled down at {time.monotonic() - t0:.1f}s")
            wait_for(
                lambda: parked_replicas(cluster)[-1] == 5,
                timeout=60,
                what="parked replicas 5",
                seen=cluster.report,
                every=1,
            )
            hold(cluster, 12, lambda: max(parked_replicas(cluster)) == 5, "Conservative's 5 pending")
            cluster.patch_options(upscalingMode="Aggressive")
            wait_for(
                lambda: parked_replicas(cluster)[-1] == PARKED_DEMAND["v1"],
                timeout=60,
                what=f"parked replicas {PARKED_DEMAND['v1']} once Aggressive",
                seen=cluster.report,
                every=1,
            )
        finally:
            parked.kill()
            parked.communicate()
        print(f"whole test {time.monotonic() - t0:.1f}s")


def test_v2_scales_up_at_once_and_idles_down_conservative_one_by_one(e2e: E2E, namespace: str) -> None:
    t0 = time.monotonic()
    with autoscaling_cluster(e2e, namespace, V2, upscaling="Default") as cluster:
        check_rbac(cluster)
        print(f"ready at {time.monotonic() - t0:.1f}s")

        driver = scale_up_and_run(cluster, tasks=2, seconds=10)
        # Default (upscaling_speed 1000): both asked for in one patch.
        steps = [replicas for replicas, _ in cluster.recorder.history(GROUP)]
        assert steps[:2] == [0, 2], f"Default should ask for both workers at once: {steps}"
        ids = finish(cluster, driver, timeout=120)
        workers = ran_on_new_workers(cluster, ids, 2)
        assert cluster.recorder.workers(GROUP) == workers, cluster.recorder.seen()
        check_version(cluster, "v2")
        print(f"tasks done at {time.monotonic() - t0:.1f}s on {ids}")

        cluster.patch_options(upscalingMode="Conservative")
        time.sleep(6)  # one autoscaler loop reads the new mode before the demand arrives
        parked = cluster.driver(PARKED_TASKS, str(PARKED_DEMAND["v2"]))
        try:
            scaled_down(cluster, workers)
            print(f"scaled down at {time.monotonic() - t0:.1f}s")
            wait_for(
                lambda: parked_replicas(cluster)[-1] == PARKED_DEMAND["v2"],
                timeout=90,
                what=f"parked replicas {PARKED_DEMAND['v2']}",
                seen=cluster.report,
                every=1,
            )
            # Conservative (upscaling_speed 1, none running): one more a loop.
            assert parked_replicas(cluster) == list(range(PARKED_DEMAND["v2"] + 1)), cluster.recorder.seen()
        finally:
            parked.kill()
            parked.communicate()
        print(f"whole test {time.monotonic() - t0:.1f}s")
