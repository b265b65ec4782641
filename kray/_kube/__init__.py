"""kray's Kubernetes client layer: the plain API-server adapter of the :class:`~kray.store.Store` port.

Controllers never import lightkube or httpx2; they take a Store. :class:`~kray._kube.store.KubeStore`
speaks the API server's REST protocol directly with the authenticated httpx2 client lightkube builds
from a kubeconfig, and translates every failure into :mod:`kray.store.errors` at one edge
(:mod:`kray._kube.errors`).
"""
