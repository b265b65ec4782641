"""kray's Kubernetes API for Ray's autoscaler: per-cluster tokens, TLS, JSON patch; and Ray's own client against it.

What the real apiserver answers is compared in ``tests/store/test_autoscaler_contract.py``; here are the parts
that are kray's own: a cluster's token reaches only its cluster (KubeRay's Role is namespace-wide, kray is
narrower), tokens go with their Secret, the server's certificate verifies only with its own CA, and
``KubernetesHttpApiClient`` / ``KubeRayNodeProvider`` from the installed Ray work against it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import requests

from kray.local.paths import LocalPaths
from kray.local.server.json_patch import PatchError, apply_json_patch
from kray.local.server.kube_tls import ensure_serving_tls
from kray.local.server.kube_tokens import ensure_cluster_token, token_secret_name
from kray.local.server.launcher import ensure_server, stop_server
from kray.local.store import EmbeddedSettings, open_embedded_store
from kray.store import NAMESPACE, POD, RAYCLUSTER, SECRET, Obj, Store
from tests.local.kube_api_support import serving_kube_api

IMAGE = "rayproject/ray:2.52.0"


def raycluster(name: str, namespace: str) -> Obj:
    limits = {"cpu": "1", "memory": "1Gi"}  # the autoscaler derives its node types from these
    template = {"spec": {"containers": [{"name": "ray", "image": IMAGE, "resources": {"limits": limits}}]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": template},
            "workerGroupSpecs": [
                {
                    "groupName": "small",
                    "replicas": 1,
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "rayStartParams": {},
                    "template": template,
                }
            ],
        },
    }


def pod(name: str, namespace: str, cluster: str, kind: str) -> Obj:
    labels = {
        "ray.io/cluster": cluster,
        "ray.io/node-type": kind,
        "ray.io/group": "headgroup" if kind == "head" else "small",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "ray", "image": IMAGE}]},
    }


@dataclass(frozen=True)
class Served:
    base: str
    ca: Path
    store: Store
    namespace: str
    tokens: dict[str, str]

    def get(self, path: str, token: str) -> requests.Response:
        return requests.get(
            f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10, verify=self.ca
        )

    def patch(self, path: str, token: str, payload: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "Content-type": "application/json-patch+json"}
        return requests.patch(f"{self.base}{path}", json.dumps(payload), headers=headers, timeout=10, verify=self.ca)


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """Clusters ``a`` and ``b`` (namespace ``ns``) and ``c`` (namespace ``other``), with pods, tokens, and the API."""
    store = await open_embedded_store(tmp_path / "store.db", settings=EmbeddedSettings(poll_interval=0.1))
    ns = f"t-{secrets.token_hex(3)}"
    tokens: dict[str, str] = {}
    for namespace, cluster in ((ns, "a"), (ns, "b"), ("other", "c")):
        if namespace == "other" or cluster == "a":
            await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        created = await store.create(RAYCLUSTER, raycluster(cluster, namespace))
        tokens[cluster] = await ensure_cluster_token(store, created)
        for made in (
            pod(f"{cluster}-head", namespace, cluster, "head"),
            pod(f"{cluster}-worker", namespace, cluster, "worker"),
        ):
            stored = await store.create(POD, made)
            # As the pod runner reports a started pod (the apiserver would at least say phase Pending).
            running = {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "containerStatuses": [{"name": "ray", "state": {"running": {}}}],
            }
            await store.replace_status(POD, {**stored, "status": running})
    try:
        async with serving_kube_api(store=store, tls_dir=tmp_path / "tls") as api:
            yield Served(api.url, api.ca_cert, store, ns, tokens)
    finally:
        await store.close()


def rc(namespace: str, name: str) -> str:
    return f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters/{name}"


def pods(namespace: str, cluster: str | None) -> str:
    query = f"?labelSelector=ray.io%2Fcluster%3D{cluster}" if cluster else ""
    return f"/api/v1/namespaces/{namespace}/pods{query}"


async def test_a_token_reaches_only_its_own_cluster(served: Served) -> None:
    a, ns = served.tokens["a"], served.namespace
    replicas = [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2}]
    own = [
        await asyncio.to_thread(served.get, rc(ns, "a"), a),
        await asyncio.to_thread(served.patch, rc(ns, "a"), a, replicas),
        await asyncio.to_thread(served.get, pods(ns, "a"), a),
        await asyncio.to_thread(served.get, f"/api/v1/namespaces/{ns}/pods/a-head", a),
    ]
    assert [r.status_code for r in own] == [200, 200, 200, 200]
    assert sorted(p["metadata"]["name"] for p in own[2].json()["items"]) == ["a-head", "a-worker"]
    foreign = [
        await asyncio.to_thread(served.get, rc(ns, "b"), a),  # same namespace, other cluster
        await asyncio.to_thread(served.patch, rc(ns, "b"), a, replicas),
        await asyncio.to_thread(served.get, rc("other", "c"), a),  # other namespace
        await asyncio.to_thread(served.get, pods(ns, "b"), a),
        await asyncio.to_thread(served.get, pods(ns, None), a),  # every pod of the namespace
        await asyncio.to_thread(served.get, f"/api/v1/namespaces/{ns}/pods/b-head", a),
        await asyncio.to_thread(served.get, pods("other", "a"), a),
    ]
    assert [r.status_code for r in foreign] == [403] * len(foreign)
    assert {(r.json()["kind"], r.json()["reason"]) for r in foreign} == {("Status", "Forbidden")}
    b = await served.store.get(RAYCLUSTER, "b", namespace=ns)
    assert b["spec"]["workerGroupSpecs"][0]["replicas"] == 1


async def test_a_token_is_good_while_its_secret_holds_it(served: Served) -> None:
    ns, a = served.namespace, served.tokens["a"]
    cluster = await served.store.get(RAYCLUSTER, "a", namespace=ns)
    assert await ensure_cluster_token(served.store, cluster) == a  # made once, then read back
    forged = a.rsplit(".", 1)[0] + ".forged"
    assert (await asyncio.to_thread(served.get, rc(ns, "a"), forged)).status_code == 401
    assert (
        await asyncio.to_thread(served.get, rc(ns, "a"), served.tokens["b"].replace(".b.", ".a.", 1))
    ).status_code == 401
    await served.store.delete(SECRET, token_secret_name("a"), namespace=ns)
    revoked = await asyncio.to_thread(served.get, rc(ns, "a"), a)
    assert revoked.status_code == 401
    assert revoked.json()["reason"] == "Unauthorized"


async def test_the_certificate_verifies_only_with_the_servers_own_ca(served: Served, tmp_path: Path) -> None:
    host, port = served.base.removeprefix("https://").split(":")
    trusted = ssl.create_default_context(cafile=str(served.ca))

    def handshake() -> None:
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            trusted.wrap_socket(raw, server_hostname=host),
        ):
            pass

    await asyncio.to_thread(handshake)
    stranger = ensure_serving_tls(tmp_path / "another")
    assert stranger.ca_cert.read_bytes() != served.ca.read_bytes()
    assert ensure_serving_tls(tmp_path / "another") == stranger  # kept, not regenerated
    assert stranger.ca_cert.read_bytes() == ensure_serving_tls(tmp_path / "another").ca_cert.read_bytes()
    with pytest.raises(requests.exceptions.SSLError):
        await asyncio.to_thread(
            requests.get, f"{served.base}{rc(served.namespace, 'a')}", timeout=5, verify=str(stranger.ca_cert)
        )
    assert oct(os.stat(served.ca.parent / "tls.key").st_mode & 0o777) == "0o600"


def test_json_patch_operations_follow_rfc_6902() -> None:
    """RFC 6902 appendix A's examples (A.1, A.2, A.3, A.6, A.7, A.8, A.9, A.10, A.16)."""
    assert apply_json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "foo": "bar",
        "baz": "qux",
    }
    assert apply_json_patch({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]
    }
    assert apply_json_patch({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}]) == {"foo": "bar"}
    moved = apply_json_patch(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
    )
    assert moved == {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    assert apply_json_patch(
        {"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}]
    ) == {"foo": ["all", "cows", "eat", "grass"]}
    document = {"baz": "qux", "foo": ["a", 2, "c"]}
    assert (
        apply_json_patch(
            document, [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]
        )
        == document
    )
    with pytest.raises(PatchError):
        apply_json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    with pytest.raises(PatchError):
        apply_json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])
    assert apply_json_patch({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]) == {
        "foo": ["bar", ["abc", "def"]]
    }
    assert apply_json_patch({"/": 1, "~": 2}, [{"op": "copy", "from": "/~1", "path": "/~0"}]) == {"/": 1, "~": 1}
    with pytest.raises(PatchError):  # a failing operation rejects the whole patch; the input is untouched
        apply_json_patch(document, [{"op": "remove", "path": "/baz"}, {"op": "remove", "path": "/foo/3"}])
    assert document == {"baz": "qux", "foo": ["a", 2, "c"]}


RAY_CLIENT = textwrap.dedent(
    """
    import json, sys
    from ray.autoscaler._private.kuberay import node_provider
    from ray.autoscaler._private.kuberay.autoscaling_config import AutoscalingConfigProducer
    from ray.autoscaler.batching_node_provider import ScaleRequest

    node_provider.IN_CLUSTER_TOKEN_PATH = sys.argv[1]
    namespace = sys.argv[2]
    config = AutoscalingConfigProducer("a", namespace)()
    provider = node_provider.KubeRayNodeProvider(config["provider"], "a")
    nodes = provider.get_node_data()
    provider.submit_scale_request(ScaleRequest(desired_num_workers={"small": 3}, workers_to_delete=set()))
    after = provider.k8s_api_client.get("rayclusters/a")
    print(json.dumps({
        "types": sorted(config["available_node_types"]),
        "nodes": {name: [data.kind, data.type, data.status] for name, data in sorted(nodes.items())},
        "replicas": after["spec"]["workerGroupSpecs"][0]["replicas"],
    }))
    """
)


async def test_rays_own_kuberay_client_reads_and_patches_through_it(served: Served, tmp_path: Path) -> None:
    """The installed Ray's ``KubeRayNodeProvider`` (v1) with a token file and CA file, as the sidecar would."""
    token_file = tmp_path / "token"
    token_file.write_text(served.tokens["a"])
    host, port = served.base.removeprefix("https://").split(":")
    env = {
        **os.environ,
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "RAY_KUBERAY_CA_CERT_PATH": str(served.ca),
        "RAY_HEAD_POD_NAME": "a-head",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RAY_CLIENT, str(token_file), served.namespace,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["types"] == ["headgroup", "small"]
    assert seen["nodes"] == {
        "a-head": ["head", "headgroup", "up-to-date"],
        "a-worker": ["worker", "small", "up-to-date"],
    }
    assert seen["replicas"] == 3
    stored = await served.store.get(RAYCLUSTER, "a", namespace=served.namespace)
    assert stored["spec"]["workerGroupSpecs"][0]["replicas"] == 3


async def test_the_local_server_serves_it_over_tls_beside_its_own_api(tmp_path: Path) -> None:
    """``kray server`` (the daemon) listens for it on another loopback port, written to ``server.json``."""
    paths = LocalPaths(tmp_path / "home")
    info = await asyncio.to_thread(ensure_server, paths, timeout=60)
    try:
        written = json.loads(paths.server_info.read_text())
        url, ca = written["kube_api_url"], written["kube_api_ca"]
        assert url.startswith("https://127.0.0.1:")
        assert url != info.url
        assert Path(ca) == paths.home / "kube-api" / "ca.crt"
        refused = await asyncio.to_thread(
            requests.get, f"{url}/apis/ray.io/v1/namespaces/default/rayclusters/x", timeout=10, verify=ca
        )
        assert (refused.status_code, refused.json()["reason"]) == (403, "Forbidden")  # anonymous
        with pytest.raises(requests.exceptions.ConnectionError):  # TLS only
            await asyncio.to_thread(requests.get, url.replace("https://", "http://") + "/healthz", timeout=10)
    finally:
        stopping = time.monotonic()
        await asyncio.to_thread(stop_server, paths)
    # A served TLS connection must not hold the stop for asyncio's 30 s SSL shutdown timeout.
    assert time.monotonic() - stopping < 10
    assert not paths.server_info.exists()
    # Running head pods keep the address in their autoscaler's environment: a restarted server serves it there.
    await asyncio.to_thread(ensure_server, paths, timeout=60)
    try:
        assert json.loads(paths.server_info.read_text())["kube_api_url"] == url
    finally:
        await asyncio.to_thread(stop_server, paths)
