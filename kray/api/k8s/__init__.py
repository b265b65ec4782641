"""Kubernetes' own schemas for the Kubernetes types that kray's CRDs embed.

Why: a RayCluster carries whole PodTemplateSpecs and Services, and their schemas must match what the
Kubernetes release we target publishes, field for field. So the upstream OpenAPI v3 data is vendored
here at a pinned version (``openapi-<version>.json``, refreshed by ``hack/refresh_k8s_openapi.py``)
and :mod:`kray.api.k8s.schema` turns a definition from it into a structural schema for a CRD.
"""
