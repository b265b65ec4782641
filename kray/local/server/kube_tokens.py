"""Per-cluster bearer tokens for the Kubernetes API that the local server serves to Ray's autoscaler.

On Kubernetes the autoscaler authenticates with its ServiceAccount's token, and KubeRay's Role
(``common/rbac.go`` BuildRole) lets it get/list/patch the pods and RayClusters of its namespace. Locally
each RayCluster gets its own token instead, kept like the cluster's other secrets: a Secret in the cluster's
namespace owned by the RayCluster (so it goes with the cluster). The token names its cluster
(``kray-as.<namespace>.<name>.<random>``; neither name may contain a dot), so checking one costs a single
read of that Secret and a constant-time comparison. A token only ever grants its own cluster.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

from kray.store import SECRET, Obj, Store
from kray.store.errors import AlreadyExists, NotFound

_PREFIX = "kray-as"
TOKEN_KEY = "token"
"""The Secret's data key holding the token."""
CA_KEY = "ca.crt"
"""The server's CA certificate (PEM), when the Secret serves as a service-account volume."""
NAMESPACE_KEY = "namespace"


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    """Whom a token speaks for: one RayCluster."""

    namespace: str
    name: str


def token_secret_name(cluster: str) -> str:
    return f"{cluster}-kray-autoscaler-token"


def _parse(token: str) -> ClusterIdentity | None:
    parts = token.split(".", 3)
    if len(parts) != 4 or parts[0] != _PREFIX or not all(parts[1:]):
        return None
    return ClusterIdentity(namespace=parts[1], name=parts[2])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def ensure_cluster_token(store: Store, cluster: Obj, *, ca_cert: str | None = None) -> str:
    """The token of ``cluster`` (a stored RayCluster), made and stored on first use.

    With ``ca_cert`` (PEM) the Secret also holds ``ca.crt`` and ``namespace``, the other two files of a
    service-account volume: mounted at ``/var/run/secrets/kubernetes.io/serviceaccount`` it is all Ray's
    autoscaler reads to reach and trust the server. A stored Secret without them (or with another CA) gets them;
    its token stays.
    """
    meta = cluster["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    secret_name = token_secret_name(name)
    token = f"{_PREFIX}.{namespace}.{name}.{secrets.token_urlsafe(32)}"
    files = {} if ca_cert is None else {CA_KEY: _b64(ca_cert), NAMESPACE_KEY: _b64(namespace)}
    secret: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name,
            "namespace": namespace,
            "labels": {"ray.io/cluster": name},
            "ownerReferences": [
                {
                    "apiVersion": cluster["apiVersion"],
                    "kind": cluster["kind"],
                    "name": name,
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {TOKEN_KEY: _b64(token), **files},
    }
    try:
        await store.create(SECRET, secret)
        return token
    except AlreadyExists:
        stored = await store.get(SECRET, secret_name, namespace=namespace)
    data = stored.get("data") or {}
    if any(data.get(key) != value for key, value in files.items()):
        await store.patch(SECRET, secret_name, namespace=namespace, patch={"data": files})
    return base64.b64decode(data[TOKEN_KEY]).decode()


async def identify(store: Store, token: str) -> ClusterIdentity | None:
    """The cluster ``token`` was issued for, or None when it is not a current cluster token."""
    identity = _parse(token)
    if identity is None:
        return None
    try:
        stored = await store.get(SECRET, token_secret_name(identity.name), namespace=identity.namespace)
    except NotFound:
        return None
    expected = base64.b64decode((stored.get("data") or {}).get(TOKEN_KEY, ""))
    return identity if hmac.compare_digest(expected, token.encode()) else None
