"""Building blocks shared by every ray.io/v1 model.

The models are the single source of truth for three things: parsing manifests, dumping them back
unchanged, and generating the CRD schemas. Field annotations therefore carry schema markers
(:class:`Schema`, :class:`K8sType`) that the CRD generator in :mod:`kray.api.crd` reads; pydantic
ignores them. Defaults on a field are CRD defaults (the API server applies them), so a field without
a CRD default is ``X | None = None`` here, exactly as Go's ``omitempty`` pointers are in KubeRay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: Annotated metadata must be hashable
class Schema:
    """Extra OpenAPI keywords merged into the generated schema of a field.

    ``required`` lists the field in its parent's ``required`` even when it has a default
    (controller-gen does this for fields such as ``minReplicas``).
    """

    extra: Mapping[str, Any] = field(default_factory=dict)
    required: bool = False
    opaque: bool = False
    """When true, ``extra`` is the whole schema and the field's type is not walked."""


@dataclass(frozen=True, slots=True)
class K8sType:
    """Marks a field whose schema is a Kubernetes type, taken from the vendored OpenAPI document."""

    definition: str


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

Int32 = Annotated[int, Schema({"format": "int32"})]
Int64 = Annotated[int, Schema({"format": "int64"})]
Time = Annotated[str, Schema({"format": "date-time"})]
"""RFC 3339 timestamps stay strings, so a manifest round-trips byte for byte."""

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[
    int | str,
    Schema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

PodTemplateSpec = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.PodTemplateSpec")]
"""A full Kubernetes PodTemplateSpec, kept as plain data: every field survives a round trip."""
Service = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.Service")]
ResourceRequirements = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.ResourceRequirements")]
SecurityContext = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.SecurityContext")]
EnvVar = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.EnvVar")]
EnvFromSource = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.EnvFromSource")]
EnvVarSource = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.EnvVarSource")]
VolumeMount = Annotated[dict[str, Any], K8sType("io.k8s.api.core.v1.VolumeMount")]
IngressTLS = Annotated[dict[str, Any], K8sType("io.k8s.api.networking.v1.IngressTLS")]
NetworkPolicyIngressRule = Annotated[dict[str, Any], K8sType("io.k8s.api.networking.v1.NetworkPolicyIngressRule")]
NetworkPolicyEgressRule = Annotated[dict[str, Any], K8sType("io.k8s.api.networking.v1.NetworkPolicyEgressRule")]


class KubeModel(BaseModel):
    """Base of every API struct: camelCase JSON names, unknown fields refused, dumps by alias."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        serialize_by_alias=True,
        use_enum_values=False,
        validate_default=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as the user wrote it: only fields that were set, JSON types, camelCase keys."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class OwnerReference(KubeModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(KubeModel):
    """Kubernetes ObjectMeta: every field of metav1.ObjectMeta, so none is dropped."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None


def int32_bounds() -> tuple[int, int]:
    """The inclusive range of a Go int32, which the schema validator enforces for ``format: int32``."""
    return _INT32_MIN, _INT32_MAX
