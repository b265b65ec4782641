"""Ray's autoscaler's requests, sent to the real kube-apiserver and to kray's local Kubernetes API.

Each test sends the HTTP requests ``KubernetesHttpApiClient`` (Ray 2.60, ``ray/autoscaler/_private/kuberay/
node_provider.py``) sends -- ``requests`` with ``Authorization: Bearer``, ``Content-type`` for patches, ``verify=``
the CA file -- and asserts what the autoscaler reads of the answers. The ``kube`` side is the reference: the
expected codes, Status reasons and resourceVersion behaviour are the real apiserver's (with the admin token,
as RBAC is not what is compared here); the ``local`` side is :func:`kray.local.server.kube_api.build_kube_app`
over TLS with the cluster's own token (:mod:`kray.local.server.kube_tokens`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import requests

from kray._kube.store import KubeStore
from kray.local.server.kube_tokens import ensure_cluster_token
from kray.local.store import EmbeddedSettings, open_embedded_store
from kray.store import NAMESPACE, POD, RAYCLUSTER, Obj, Store
from tests.local.kube_api_support import serving_kube_api
from tests.store.support import IMAGE, eventually, gone, raycluster

CLUSTER = "rc"


@dataclass(frozen=True)
class Api:
    """Where the autoscaler would talk, with its credentials, and the store behind it (for setup)."""

    base: str
    token: str
    ca: str
    namespace: str
    store: Store

    def url(self, path: str) -> str:
        """``url_from_resource``: pods under ``/api/v1``, rayclusters under ``/apis/ray.io/v1``."""
        group = "/api/v1" if path.startswith("pods") else "/apis/ray.io/v1"
        return f"{self.base}{group}/namespaces/{self.namespace}/{path}"

    async def get(self, path: str, *, token: str | None = None) -> requests.Response:
        headers = {"Authorization": "Bearer " + (self.token if token is None else token)}
        return await asyncio.to_thread(requests.get, self.url(path), headers=headers, timeout=30, verify=self.ca)

    async def patch(
        self, path: str, payload: Any, content_type: str = "application/json-patch+json"
    ) -> requests.Response:
        headers = {"Authorization": "Bearer " + self.token, "Content-type": content_type}
        return await asyncio.to_thread(
            requests.patch, self.url(path), json.dumps(payload), headers=headers, timeout=30, verify=self.ca
        )


def pod(name: str, namespace: str, cluster: str, kind: str = "worker") -> Obj:
    labels = {"ray.io/cluster": cluster, "ray.io/node-type": kind, "ray.io/group": "small"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "ray-worker", "image": IMAGE}]},
    }


@pytest_asyncio.fixture(
    params=[pytest.param("local", id="local"), pytest.param("kube", id="kube", marks=pytest.mark.k8s)]
)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    if request.param == "kube":
        plane = request.getfixturevalue("k8s_control_plane")
        request.getfixturevalue("ray_crds")
        namespace = request.getfixturevalue("k8s_namespace")
        store = KubeStore.from_kubeconfig(plane.kubeconfig)
        try:
            await store.create(RAYCLUSTER, raycluster(CLUSTER, namespace))
            yield Api(plane.server, plane.token, str(plane.ca_file), namespace, store)
        finally:
            await store.close()
        return
    async for served in _local(tmp_path):
        yield served


async def _local(tmp_path: Path) -> AsyncIterator[Api]:
    """kray's Kubernetes API over TLS on 127.0.0.1 (port 0) on a fresh embedded store, in this event loop."""
    store = await open_embedded_store(tmp_path / "store.db", settings=EmbeddedSettings(poll_interval=0.1))
    namespace = f"t-{secrets.token_hex(3)}"
    await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    cluster = await store.create(RAYCLUSTER, raycluster(CLUSTER, namespace))
    token = await ensure_cluster_token(store, cluster)
    try:
        async with serving_kube_api(store=store, tls_dir=tmp_path / "tls") as api:
            yield Api(api.url, token, str(api.ca_cert), namespace, store)
    finally:
        await store.close()


def rv(body: Obj) -> str:
    return str(body["metadata"]["resourceVersion"])


async def test_get_raycluster_and_missing_is_404_status(api: Api) -> None:
    got = await api.get(f"rayclusters/{CLUSTER}")
    assert got.status_code == 200
    body = got.json()
    assert (body["kind"], body["apiVersion"], body["metadata"]["name"]) == ("RayCluster", "ray.io/v1", CLUSTER)
    assert body["spec"]["workerGroupSpecs"][0]["groupName"] == "small"
    assert rv(body)


async def test_json_patch_replace_replicas_and_workers_to_delete(api: Api) -> None:
    before = (await api.get(f"rayclusters/{CLUSTER}")).json()
    payload = [
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": ["w-1"]}},
    ]
    patched = await api.patch(f"rayclusters/{CLUSTER}", payload)
    assert patched.status_code == 200, patched.text
    group = patched.json()["spec"]["workerGroupSpecs"][0]
    assert (group["replicas"], group["scaleStrategy"]) == (3, {"workersToDelete": ["w-1"]})
    assert rv(patched.json()) != rv(before)
    again = (await api.get(f"rayclusters/{CLUSTER}")).json()
    assert again["spec"]["workerGroupSpecs"][0]["replicas"] == 3
    assert rv(again) == rv(patched.json())
    # safe_to_scale's clean-up: workersToDelete back to [].
    cleared = await api.patch(
        f"rayclusters/{CLUSTER}",
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": []}}],
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["spec"]["workerGroupSpecs"][0]["scaleStrategy"] == {"workersToDelete": []}


async def test_json_patch_unchanged_keeps_resource_version(api: Api) -> None:
    before = (await api.get(f"rayclusters/{CLUSTER}")).json()
    same = await api.patch(
        f"rayclusters/{CLUSTER}", [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1}]
    )
    assert same.status_code == 200, same.text
    assert rv(same.json()) == rv(before)


async def test_json_patch_resource_version_test_guards_the_finalizer(api: Api) -> None:
    """v2's idle Delete policy: ``test /metadata/resourceVersion`` then ``add /metadata/finalizers``."""
    before = (await api.get(f"rayclusters/{CLUSTER}")).json()
    finalizer = "ray.io/idle-termination-cleanup"
    guarded = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv(before)},
        {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
    ]
    bump = [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2}]
    assert (await api.patch(f"rayclusters/{CLUSTER}", bump)).status_code == 200
    stale = await api.patch(f"rayclusters/{CLUSTER}", guarded)
    assert stale.status_code == 422, stale.text
    assert (stale.json()["kind"], stale.json()["reason"]) == ("Status", "Invalid")
    current = rv((await api.get(f"rayclusters/{CLUSTER}")).json())
    guarded[0]["value"] = current
    added = await api.patch(f"rayclusters/{CLUSTER}", guarded)
    assert added.status_code == 200, added.text
    assert added.json()["metadata"]["finalizers"] == [finalizer]
    appended = await api.patch(
        f"rayclusters/{CLUSTER}",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv(added.json())},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "x.io/second"},
        ],
    )
    assert appended.status_code == 200, appended.text
    assert appended.json()["metadata"]["finalizers"] == [finalizer, "x.io/second"]
    await api.patch(f"rayclusters/{CLUSTER}", [{"op": "remove", "path": "/metadata/finalizers"}])


async def test_merge_patch_and_its_resource_version_conflict(api: Api) -> None:
    before = (await api.get(f"rayclusters/{CLUSTER}")).json()
    merged = await api.patch(
        f"rayclusters/{CLUSTER}", {"spec": {"suspend": True}}, content_type="application/merge-patch+json"
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["spec"]["suspend"] is True
    assert rv(merged.json()) != rv(before)
    stale = await api.patch(
        f"rayclusters/{CLUSTER}",
        {"metadata": {"resourceVersion": rv(before)}, "spec": {"suspend": False}},
        content_type="application/merge-patch+json",
    )
    assert stale.status_code == 409, stale.text
    assert (stale.json()["kind"], stale.json()["reason"], stale.json()["code"]) == ("Status", "Conflict", 409)


async def test_strategic_merge_patch_of_a_raycluster_is_415(api: Api) -> None:
    refused = await api.patch(
        f"rayclusters/{CLUSTER}", {"spec": {"suspend": True}}, content_type="application/strategic-merge-patch+json"
    )
    assert refused.status_code == 415, refused.text
    assert (refused.json()["kind"], refused.json()["reason"]) == ("Status", "UnsupportedMediaType")


async def test_missing_raycluster_is_404_for_get_and_patch(api: Api) -> None:
    # Orphan: the cluster's own credentials outlive it here (else they go with it, and the answer is 401).
    await api.store.delete(RAYCLUSTER, CLUSTER, namespace=api.namespace, propagation="Orphan")
    await eventually(lambda: gone(api.store, RAYCLUSTER, CLUSTER, api.namespace), what="the RayCluster gone")
    for answer in (
        await api.get(f"rayclusters/{CLUSTER}"),
        await api.patch(f"rayclusters/{CLUSTER}", [{"op": "replace", "path": "/spec/suspend", "value": True}]),
        await api.patch(f"rayclusters/{CLUSTER}", {"spec": {"suspend": True}}, "application/merge-patch+json"),
    ):
        assert answer.status_code == 404, answer.text
        assert (answer.json()["kind"], answer.json()["reason"], answer.json()["code"]) == ("Status", "NotFound", 404)


async def test_list_pods_by_cluster_label_and_get_head_pod(api: Api) -> None:
    """``get_node_data``: the head pod's resourceVersion, then the cluster's pods at least that new."""
    for made in (
        pod("rc-head", api.namespace, CLUSTER, "head"),
        pod("rc-worker-a", api.namespace, CLUSTER),
        pod("other-worker", api.namespace, "other"),
    ):
        await api.store.create(POD, made)
    head = await api.get("pods/rc-head")
    assert head.status_code == 200, head.text
    assert head.json()["metadata"]["name"] == "rc-head"
    selector = requests.utils.quote(f"ray.io/cluster={CLUSTER}")  # type: ignore[attr-defined]
    for path in (
        f"pods?labelSelector={selector}",
        f"pods?labelSelector={selector}&resourceVersion={rv(head.json())}&resourceVersionMatch=NotOlderThan",
    ):
        listed = await api.get(path)
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert (body["kind"], body["apiVersion"]) == ("PodList", "v1")
        assert int(body["metadata"]["resourceVersion"]) >= int(rv(head.json()))
        assert sorted(p["metadata"]["name"] for p in body["items"]) == ["rc-head", "rc-worker-a"]
        assert all("deletionTimestamp" not in p["metadata"] for p in body["items"])
        assert all(p["metadata"]["labels"]["ray.io/cluster"] == CLUSTER for p in body["items"])
    missing = await api.get("pods/rc-nothing")
    assert missing.status_code == 404, missing.text
    assert (missing.json()["kind"], missing.json()["reason"]) == ("Status", "NotFound")


async def test_without_a_valid_token_is_401_and_anonymous_is_403(api: Api) -> None:
    """A token the server does not know is 401; no token at all is the anonymous user, who may do nothing."""
    anonymous = await api.get(f"rayclusters/{CLUSTER}", token="")
    assert anonymous.status_code == 403, anonymous.text
    assert (anonymous.json()["kind"], anonymous.json()["reason"]) == ("Status", "Forbidden")
    for token in ("not-a-token", api.token + "x", "kray-as.a.b.c"):
        refused = await api.get(f"rayclusters/{CLUSTER}", token=token)
        assert refused.status_code == 401, refused.text
        assert (refused.json()["kind"], refused.json()["reason"], refused.json()["code"]) == (
            "Status",
            "Unauthorized",
            401,
        )


async def test_json_patch_of_a_missing_group_is_422_and_changes_nothing(api: Api) -> None:
    before = (await api.get(f"rayclusters/{CLUSTER}")).json()
    refused = await api.patch(
        f"rayclusters/{CLUSTER}",
        [
            {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2},
            {"op": "replace", "path": "/spec/workerGroupSpecs/3/replicas", "value": 2},
        ],
    )
    assert refused.status_code == 422, refused.text
    assert (refused.json()["kind"], refused.json()["reason"]) == ("Status", "Invalid")
    after = (await api.get(f"rayclusters/{CLUSTER}")).json()
    assert rv(after) == rv(before)
    assert after["spec"]["workerGroupSpecs"][0]["replicas"] == 1


async def test_delete_raycluster_then_404(api: Api) -> None:
    """v2's idle ``Delete`` policy: 200 (or 202) with a JSON body; a second DELETE is the 404 it counts as done."""
    headers = {"Authorization": "Bearer " + api.token}
    url = api.url(f"rayclusters/{CLUSTER}")
    deleted = await asyncio.to_thread(requests.delete, url, headers=headers, timeout=30, verify=api.ca)
    assert deleted.status_code in (200, 202), deleted.text
    assert isinstance(deleted.json(), dict)
    await eventually(lambda: gone(api.store, RAYCLUSTER, CLUSTER, api.namespace), what="the RayCluster gone")
    if api.token.startswith("kray-as."):
        return  # locally the token went with its cluster (its Secret is owned by it): 401, checked elsewhere
    again = await asyncio.to_thread(requests.delete, url, headers=headers, timeout=30, verify=api.ca)
    assert again.status_code == 404, again.text
    assert (again.json()["kind"], again.json()["reason"]) == ("Status", "NotFound")
