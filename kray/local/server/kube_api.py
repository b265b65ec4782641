"""The part of the Kubernetes API that Ray's autoscaler uses, served by the local server over TLS.

KubeRay runs Ray's autoscaler beside the head (``enableInTreeAutoscaling``); it reads the RayCluster and its
pods and patches the RayCluster. Locally kray serves exactly those requests from the embedded store, with
the apiserver's answers, so the autoscaler runs unchanged. What it sends (Ray 2.60,
``ray/autoscaler/_private/kuberay/node_provider.py`` ``KubernetesHttpApiClient`` and ``url_from_resource``,
used by v1's ``KubeRayNodeProvider``/``AutoscalingConfigProducer`` and v2's ``KubeRayProvider``):

Finding the server: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT_HTTPS`` (defaults
``https://kubernetes.default:443``; an ``http://`` host raises ValueError, so TLS is required). Every
request carries ``Authorization: Bearer <token>`` read from ``/var/run/secrets/kubernetes.io/
serviceaccount/token`` (re-read every minute) and verifies the server with ``requests``' ``verify=`` the
CA file ``/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`` (``$RAY_KUBERAY_CA_CERT_PATH`` overrides;
``$RAY_KUBERAY_CLIENT_CERT_PATH``/``_KEY_PATH`` would add a client certificate: not served here). Timeout
``$KUBERAY_REQUEST_TIMEOUT_S`` (60). Any answer but 200 (202 for DELETE) raises ``HTTPError``; 200 bodies are
parsed as JSON. The group version is ``$KUBERAY_CRD_VER`` (``v1``).

1. ``GET /apis/ray.io/v1/namespaces/{ns}/rayclusters/{name}`` -- every loop (v1, v2) and v1's config producer.
2. ``GET /api/v1/namespaces/{ns}/pods/{head}`` -- only when ``$RAY_HEAD_POD_NAME`` is set: reads
   ``metadata.resourceVersion``.
3. ``GET /api/v1/namespaces/{ns}/pods?labelSelector=ray.io%2Fcluster%3D{name}`` plus, after (2),
   ``&resourceVersion={rv}&resourceVersionMatch=NotOlderThan``: reads ``metadata.resourceVersion`` and
   ``items[].metadata.{name,labels,deletionTimestamp}``, ``items[].status.{podIP,containerStatuses[0].state}``.
4. ``PATCH .../rayclusters/{name}`` ``Content-type: application/json-patch+json``: ``replace`` of
   ``/spec/workerGroupSpecs/{i}/replicas`` and ``/spec/workerGroupSpecs/{i}/scaleStrategy``
   (``{"workersToDelete": [...]}``, also ``[]`` to clear); v2's idle ``Delete`` policy sends ``test
   /metadata/resourceVersion`` + ``add /metadata/finalizers[/-]`` (a failed test must be 422).
5. ``PATCH .../rayclusters/{name}`` ``Content-type: application/merge-patch+json`` ``{"spec":
   {"idleSuspend": true}}`` -- v2's idle ``Suspend`` policy.
6. ``DELETE .../rayclusters/{name}`` -- v2's idle ``Delete`` policy (404 counts as done).
7. v2's in-place pod resize (IPPR), only when the RayCluster asks for it: ``PATCH pods/{name}/resize``
   (JSON patch) and ``PATCH pods/{name}`` (``application/strategic-merge-patch+json``). Not served (404).

Authorization is per cluster, narrower than KubeRay's namespace-wide Role (``common/rbac.go``): a token
from :mod:`kray.local.server.kube_tokens` reaches only its RayCluster and the pods labelled
``ray.io/cluster=<its name>``; otherwise 403. As on the apiserver, an unknown token is 401 and no token at all
is the anonymous user: 403. Errors are ``Status`` objects; tokens are never logged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kray.local.server.json_patch import PatchError, apply_json_patch
from kray.local.server.kube_tokens import ClusterIdentity, identify
from kray.local.server.wire import status_body
from kray.store import POD, RAYCLUSTER, Obj, Store
from kray.store.errors import Conflict, StoreError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
PATCH_RETRIES = 5
"""Attempts of a JSON patch against a RayCluster that others keep writing (the apiserver retries too)."""


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return JSONResponse(body, status_code=code)


def _forbidden(identity: ClusterIdentity, verb: str, plural: str, namespace: str, name: str = "") -> JSONResponse:
    what = f'{plural} "{name}"' if name else plural
    return _status(
        403,
        "Forbidden",
        f"{what} is forbidden: the token of RayCluster {identity.namespace}/{identity.name} cannot {verb} "
        f"{plural} in the namespace {namespace!r}",
    )


def _selects_cluster(selector: str, cluster: str) -> bool:
    """Whether ``selector`` requires ``ray.io/cluster=<cluster>`` (so it lists only that cluster's pods)."""
    terms = {term.replace(" ", "").replace("==", "=") for term in selector.split(",")}
    return f"ray.io/cluster={cluster}" in terms


def build_kube_app(*, store: Store) -> Starlette:
    async def answer(request: Request, handle: Any) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if not token.strip():
                # No credentials: the apiserver's anonymous user, whom no Role grants anything.
                return _status(403, "Forbidden", f'User "system:anonymous" cannot {request.method} {request.url.path}')
            identity = await identify(store, token.strip()) if scheme.lower() == "bearer" else None
            if identity is None:
                return _status(401, "Unauthorized", "Unauthorized")
            result: Response = await handle(identity)
            return result
        except StoreError as error:
            body, code = status_body(error)
            return JSONResponse({**body, "apiVersion": "v1", "metadata": {}}, status_code=code)

    async def raycluster(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]

        async def handle(identity: ClusterIdentity) -> Response:
            if (namespace, name) != (identity.namespace, identity.name):
                return _forbidden(identity, request.method.lower(), "rayclusters", namespace, name)
            if request.method == "GET":
                return JSONResponse(await store.get(RAYCLUSTER, name, namespace=namespace))
            if request.method == "DELETE":
                await store.delete(RAYCLUSTER, name, namespace=namespace)
                return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
            return await _patch(store, request, namespace=namespace, name=name)

        return await answer(request, handle)

    async def pods(request: Request) -> Response:
        namespace = request.path_params["namespace"]

        async def handle(identity: ClusterIdentity) -> Response:
            selector = request.query_params.get("labelSelector", "")
            if namespace != identity.namespace or not _selects_cluster(selector, identity.name):
                return _forbidden(identity, "list", "pods", namespace)
            listed = await store.list(POD, namespace=namespace, label_selector=selector)
            return JSONResponse(
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": listed.resource_version},
                    "items": listed.items,
                }
            )

        return await answer(request, handle)

    async def pod(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]

        async def handle(identity: ClusterIdentity) -> Response:
            if namespace != identity.namespace:
                return _forbidden(identity, "get", "pods", namespace, name)
            found = await store.get(POD, name, namespace=namespace)
            if ((found.get("metadata") or {}).get("labels") or {}).get("ray.io/cluster") != identity.name:
                return _forbidden(identity, "get", "pods", namespace, name)
            return JSONResponse(found)

        return await answer(request, handle)

    return Starlette(
        routes=[
            Route(
                "/apis/ray.io/v1/namespaces/{namespace}/rayclusters/{name}",
                raycluster,
                methods=["GET", "PATCH", "DELETE"],
            ),
            Route("/api/v1/namespaces/{namespace}/pods", pods, methods=["GET"]),
            Route("/api/v1/namespaces/{namespace}/pods/{name}", pod, methods=["GET"]),
        ]
    )


async def _patch(store: Store, request: Request, *, namespace: str, name: str) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in {JSON_PATCH, MERGE_PATCH}:
        return _status(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH}, {MERGE_PATCH}",
        )
    try:
        body = await request.json()
    except ValueError:
        return _status(400, "BadRequest", "the request body is not JSON")
    if content_type == MERGE_PATCH:
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "a merge patch must be a JSON object")
        return JSONResponse(await store.patch(RAYCLUSTER, name, namespace=namespace, patch=body))
    for _ in range(PATCH_RETRIES):
        current = await store.get(RAYCLUSTER, name, namespace=namespace)
        try:
            patched: Obj = apply_json_patch(current, body)
        except PatchError as error:
            return _status(422, "Invalid", str(error))
        try:
            return JSONResponse(await store.replace(RAYCLUSTER, patched))
        except Conflict:
            # The patch itself asked for another resourceVersion: a real conflict, as on the apiserver.
            if (patched.get("metadata") or {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise
        await asyncio.sleep(0)
    return _status(409, "Conflict", f'Operation cannot be fulfilled on rayclusters.ray.io "{name}": try again')
