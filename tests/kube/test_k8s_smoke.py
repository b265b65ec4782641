"""Smoke suite proving the test control plane is a real Kubernetes: the apiserver persists and validates
objects (including the ray.io CRDs' structural schema), the controller-manager garbage-collects
dependents, runs Jobs and EndpointSlices, and watches resume across an apiserver restart.

The restart test is last in the file on purpose: it briefly takes the shared apiserver away.
"""

from __future__ import annotations

import ipaddress
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from lightkube import ApiError, Client, KubeConfig, codecs
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kray.dev.controlplane import SERVICE_CIDR, ControlPlane
from kray.dev.procs import wait_until

pytestmark = pytest.mark.k8s


def _gone(fetch: Callable[[], object]) -> bool:
    try:
        fetch()
    except ApiError as exc:
        if exc.status.code == 404:
            return True
        raise
    return False


def test_namespace_pod_service_endpointslice(k8s_client: Client, k8s_namespace: str) -> None:
    assert k8s_client.get(Namespace, k8s_namespace).status.phase == "Active"
    pod = codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": k8s_namespace, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
        }
    )
    created = k8s_client.create(pod)
    assert created.metadata.uid
    assert created.spec.serviceAccountName == "default"  # ServiceAccount admission ran
    svc = codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": k8s_namespace},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    got = k8s_client.create(svc)
    assert ipaddress.ip_address(got.spec.clusterIP) in ipaddress.ip_network(SERVICE_CIDR)
    assert k8s_client.get(Service, "web", namespace=k8s_namespace).spec.ports[0].port == 80

    def slice_exists() -> bool:  # made by the controller-manager's EndpointSlice controller
        found = k8s_client.list(EndpointSlice, namespace=k8s_namespace, labels={"kubernetes.io/service-name": "web"})
        return len(list(found)) == 1

    wait_until(slice_exists, timeout=60, what="the EndpointSlice of Service web")
    assert k8s_client.get(Pod, "web", namespace=k8s_namespace).status.phase == "Pending"


def test_raycluster_roundtrip(
    ray_crds: list[str], k8s_client: Client, k8s_namespace: str, RayCluster: Any, raycluster: Any
) -> None:
    assert "rayclusters.ray.io" in ray_crds
    k8s_client.create(RayCluster.from_dict(raycluster("rc", k8s_namespace)))
    back = k8s_client.get(RayCluster, "rc", namespace=k8s_namespace)
    workers = back["spec"]["workerGroupSpecs"]
    assert workers[0]["groupName"] == "small"
    assert workers[0]["replicas"] == 1
    assert back["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"] == "ray-head"


@pytest.mark.parametrize(
    ("mutate", "field_path"),
    [
        (lambda m: m["spec"]["workerGroupSpecs"][0].update(replicas="abc"), "spec.workerGroupSpecs[0].replicas"),
        (lambda m: m["spec"].pop("headGroupSpec"), "spec.headGroupSpec"),
    ],
    ids=["replicas-not-int", "missing-headGroupSpec"],
)
def test_malformed_raycluster_rejected_with_field_path(
    ray_crds: list[str],
    k8s_client: Client,
    k8s_namespace: str,
    RayCluster: Any,
    raycluster: Any,
    mutate: Callable[[dict[str, Any]], object],
    field_path: str,
) -> None:
    manifest = raycluster("bad", k8s_namespace)
    mutate(manifest)
    with pytest.raises(ApiError) as info:
        k8s_client.create(RayCluster.from_dict(manifest))
    assert info.value.status.code == 422, info.value.status.message
    assert field_path in info.value.status.message
    assert _gone(lambda: k8s_client.get(RayCluster, "bad", namespace=k8s_namespace))


def test_deleting_owner_garbage_collects_dependents(
    ray_crds: list[str], k8s_client: Client, k8s_namespace: str, RayCluster: Any, raycluster: Any
) -> None:
    owner = k8s_client.create(RayCluster.from_dict(raycluster("owner", k8s_namespace)))
    ref = OwnerReference(
        apiVersion="ray.io/v1", kind="RayCluster", name="owner", uid=owner.metadata.uid, controller=True
    )
    for i in range(2):
        meta = ObjectMeta(name=f"dep-{i}", namespace=k8s_namespace, ownerReferences=[ref])
        k8s_client.create(ConfigMap(metadata=meta, data={"i": str(i)}))
    k8s_client.create(ConfigMap(metadata=ObjectMeta(name="bystander", namespace=k8s_namespace)))

    k8s_client.delete(RayCluster, "owner", namespace=k8s_namespace)

    def dependents_gone() -> bool:
        return all(_gone(lambda n=f"dep-{i}": k8s_client.get(ConfigMap, n, namespace=k8s_namespace)) for i in range(2))

    wait_until(dependents_gone, timeout=90, what="the garbage collector to delete dep-0 and dep-1")
    assert k8s_client.get(ConfigMap, "bystander", namespace=k8s_namespace).metadata.name == "bystander"


def test_job_creates_its_pod(k8s_client: Client, k8s_namespace: str) -> None:
    job = codecs.from_dict(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once", "namespace": k8s_namespace},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}
                },
            },
        }
    )
    created = k8s_client.create(job)
    pods: list[Pod] = []

    def pod_created() -> bool:
        pods[:] = k8s_client.list(Pod, namespace=k8s_namespace, labels={"batch.kubernetes.io/job-name": "once"})
        return len(pods) == 1

    wait_until(pod_created, timeout=60, what="the Job controller to create the pod of Job once")
    owner = pods[0].metadata.ownerReferences[0]
    assert (owner.kind, owner.uid) == ("Job", created.metadata.uid)
    # The Job controller records `active` in a status write after creating the pod: wait for it too.
    wait_until(
        lambda: k8s_client.get(Job, "once", namespace=k8s_namespace).status.active == 1,
        timeout=30,
        what="Job once to report its pod as active",
    )


def test_watch_resumes_after_apiserver_restart(
    k8s_control_plane: ControlPlane, k8s_client: Client, k8s_namespace: str
) -> None:
    """A watcher that resumes from its last resourceVersion sees events made after a real restart.

    Findings this encodes: the restarted apiserver answers the stale resourceVersion with 410 Gone (its
    new watch cache starts later), so the client relists, as informers do; and lightkube 1.0.1's
    ``Client.watch`` raises connection errors from (re)sending the request without consulting
    ``on_error``, so resuming needs the outer loop below.
    """
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    interruptions: list[str] = []
    stop = threading.Event()
    watcher = Client(KubeConfig.from_file(k8s_control_plane.kubeconfig))

    def run() -> None:
        rv: str | None = None
        while not stop.is_set():
            try:
                for op, obj in watcher.watch(
                    ConfigMap, namespace=k8s_namespace, labels={"w": "1"}, resource_version=rv
                ):
                    rv = obj.metadata.resourceVersion
                    events.put((op, obj.metadata.name))
                    if stop.is_set():
                        return
            except ApiError as exc:
                interruptions.append(f"ApiError {exc.status.code}")
                if exc.status.code == 410:  # too old resource version: relist
                    rv = None
            except httpx2.HTTPError as exc:
                interruptions.append(type(exc).__name__)
                time.sleep(0.2)

    thread = threading.Thread(target=run, name="watch", daemon=True)
    thread.start()

    def create(name: str) -> None:
        k8s_client.create(ConfigMap(metadata=ObjectMeta(name=name, namespace=k8s_namespace, labels={"w": "1"})))

    def wait_added(name: str) -> None:
        while True:
            op, got = events.get(timeout=60)
            if (op, got) == ("ADDED", name):
                return

    try:
        create("before")
        wait_added("before")
        k8s_control_plane.restart_apiserver()
        create("after")
        wait_added("after")
    finally:
        stop.set()
        create("wake")  # an event unblocks the stream read so the thread sees `stop`
        thread.join(timeout=10)
        watcher.close()
    assert interruptions, "the watch stream was never interrupted, so the restart proved nothing"
    assert not thread.is_alive()
    k8s_control_plane.assert_running()
