"""KubeRay v1.7's feature gates (reference §6.2), because some fields are only valid behind one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class FeatureGates:
    """Gate values; the defaults are KubeRay v1.7's. Field names are the gate names in snake case."""

    RayClusterStatusConditions: bool = True
    RayJobDeletionPolicy: bool = True
    RayMultiHostIndexing: bool = True
    RayServiceIncrementalUpgrade: bool = True
    RayCronJob: bool = False
    SidecarSubmitterRestart: bool = False
    RayClusterNetworkPolicy: bool = False
    GCSFaultToleranceEmbeddedStorage: bool = False
    RayClusterMTLS: bool = False
    RayClusterHistoryServer: bool = False
    KubernetesWAS: bool = False

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def all_enabled(cls) -> FeatureGates:
        return cls(**dict.fromkeys(cls.names(), True))

    def with_overrides(self, overrides: Mapping[str, bool]) -> FeatureGates:
        unknown = sorted(set(overrides) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown feature gate(s): {', '.join(unknown)}; known: {', '.join(self.names())}")
        return replace(self, **overrides)

    @classmethod
    def parse(cls, text: str) -> FeatureGates:
        """``Name=true,Other=false`` as ``--feature-gates`` takes it."""
        overrides: dict[str, bool] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep or value.lower() not in {"true", "false"}:
                raise ValueError(f'feature gate "{item}": expected Name=true or Name=false')
            overrides[name.strip()] = value.lower() == "true"
        return cls().with_overrides(overrides)
