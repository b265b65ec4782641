"""Service-account tokens for a node's pods: the kubelet's TokenRequests, for projected ``serviceAccountToken``
volumes (the ``kube-api-access-*`` volume the ServiceAccount admission plugin adds to every pod).

Each token is bound to its pod (the apiserver refuses it once the pod is gone) and kept until 80 % of its
life has passed, as the kubelet's token manager keeps it; a container started after that gets a new one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from kray.local.volume_spec import VolumePending
from kray.store import Obj
from kray.store.errors import StoreError

__all__ = ["PodTokens", "TokenRequester"]

REFRESH_FRACTION = 0.8


class TokenRequester(Protocol):
    """:meth:`kray._kube.store.KubeStore.request_token`."""

    async def request_token(
        self,
        *,
        namespace: str,
        service_account: str,
        audiences: Sequence[str],
        expiration_seconds: int,
        pod: Obj | None = None,
    ) -> tuple[str, str]: ...


class PodTokens:
    """A :class:`kray.local.volumes.TokenSource` over the apiserver's TokenRequest."""

    def __init__(self, *, requester: TokenRequester) -> None:
        self.requester = requester
        self._cache: dict[tuple[str, str, int], tuple[str, float]] = {}

    async def token(self, *, pod: Obj, audience: str | None, expiration_seconds: int) -> str:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("uid") or ""), audience or "", expiration_seconds)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        namespace = meta.get("namespace") or "default"
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        try:
            token, _ = await self.requester.request_token(
                namespace=namespace,
                service_account=account,
                audiences=[audience] if audience else [],
                expiration_seconds=expiration_seconds,
                pod=pod,
            )
        except StoreError as error:
            raise VolumePending(f'cannot get a token for serviceaccount "{namespace}/{account}": {error}') from None
        self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        self._cache[key] = (token, now + REFRESH_FRACTION * expiration_seconds)
        return token
