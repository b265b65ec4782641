"""The operator's Kubernetes permissions: the one declaration the Helm chart and ``kray install`` render.

Why here: RBAC drifts silently. A verb the code needs but the chart lacks shows up as a 403 in
production; a verb the chart grants but nothing uses is privilege nobody reviewed. So every grant is
declared once, next to the reason the code needs it, and ``tests/install/`` proves both directions
against a real apiserver: the operator runs under exactly these rules (a missing verb is a 403), and
the apiserver's audit log lists what it used (a granted verb never used fails, unless it is listed in
:data:`NOT_OBSERVABLE` with the reason an audit log cannot show it).

Scope: :data:`OPERATOR_RULES` go in a ClusterRole (every namespace) or in one Role per watched
namespace; :data:`LEADER_ELECTION_RULES` go in a Role in the operator's own namespace.
The chart's ``templates/_rules.tpl`` is generated from this module (``python -m kray.operator.rbac``)
and a test fails when it is stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kray.controllers.common.rbac import AUTOSCALER_RULES

__all__ = [
    "LEADER_ELECTION_RULES",
    "NOT_OBSERVABLE",
    "OPERATOR_RULES",
    "Grant",
    "Permission",
    "render_rules_template",
    "rules",
]


@dataclass(frozen=True, slots=True)
class Permission:
    """Verbs on one resource (``plural`` or ``plural/subresource``) of one API group, and why."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One (group, resource, verb): the unit the audit log reports and the test compares."""

    group: str
    resource: str
    verb: str


_INFORMER = ("list", "watch")  # the informers' list+watch (kray/operator/manager.py)

_USED: tuple[Permission, ...] = (
    Permission(
        "ray.io",
        "rayclusters",
        (*_INFORMER, "create", "update", "delete"),
        "informer (reads come from its cache); RayJob creates its cluster, resizes it (update), "
        "deletes it; Redis-cleanup finalizer add/remove (update)",
    ),
    Permission("ray.io", "rayclusters/status", ("update",), "RayCluster status writes"),
    Permission(
        "ray.io",
        "rayjobs",
        (*_INFORMER, "update", "delete"),
        "informer (reads come from its cache); finalizer removal (update); "
        "DeleteSelf / DELETE_RAYJOB_CR_AFTER_JOB_FINISHES",
    ),
    Permission("ray.io", "rayjobs/status", ("update",), "RayJob status writes"),
    Permission(
        "ray.io",
        "rayservices",
        (*_INFORMER, "update"),
        "informer (reads come from its cache); finalizer add/remove (update)",
    ),
    Permission("ray.io", "rayservices/status", ("update",), "RayService status writes"),
    Permission(
        "discovery.k8s.io",
        "endpointslices",
        _INFORMER,
        "informer: numServeEndpoints counts the ready pods of the serve Service's EndpointSlices",
    ),
    Permission(
        "",
        "pods",
        (*_INFORMER, "create", "delete"),
        "informer and per-cluster lists; head/worker creation; scale-down, suspend, Redis cleanup",
    ),
    Permission(
        "",
        "services",
        (*_INFORMER, "create", "update", "delete"),
        "informer (reads come from its cache); head/headless/serve Services; <rayjob>-head-svc re-pointed (update); "
        "<rayservice>-head-svc and its serve Service re-pointed (update), deleted on suspend",
    ),
    Permission("", "secrets", ("get", "create"), "the auth token Secret: created for a cluster, read by RayJob"),
    Permission("", "events", ("create",), "KubeRay's Events on RayClusters and RayJobs"),
    Permission("", "serviceaccounts", ("get", "create"), "the autoscaler's ServiceAccount"),
    Permission("rbac.authorization.k8s.io", "roles", ("get", "create"), "the autoscaler's Role"),
    Permission("rbac.authorization.k8s.io", "rolebindings", ("get", "create"), "the autoscaler's RoleBinding"),
    Permission("networking.k8s.io", "ingresses", ("get", "create"), "the head Ingress (enableIngress)"),
    Permission(
        "gateway.networking.k8s.io",
        "gateways",
        ("get", "create", "update", "delete"),
        "NewClusterWithIncrementalUpgrade: <rayservice>-gateway (read for its readiness, spec replaced when the "
        "gatewayClassName changes), deleted on suspend",
    ),
    Permission(
        "gateway.networking.k8s.io",
        "httproutes",
        ("get", "create", "update", "delete"),
        "NewClusterWithIncrementalUpgrade: <rayservice>-httproute (read for its readiness, spec replaced as the "
        "traffic weights step), deleted on suspend",
    ),
    Permission(
        "batch",
        "jobs",
        (*_INFORMER, "create", "delete"),
        "informer (reads come from its cache); K8sJobMode submitter Job (create, delete on suspend/retry); "
        "Redis cleanup Job",
    ),
)

_OWNER_REFERENCES = (
    "OwnerReferencesPermissionEnforcement admission (on by default in OpenShift): setting blockOwnerDeletion "
    "on a child's ownerReference requires `update` on the owner's finalizers subresource. Admission asks the "
    "authorizer directly, so no request for it reaches the audit log."
)
_FINALIZERS: tuple[Permission, ...] = (
    Permission("ray.io", "rayclusters/finalizers", ("update",), _OWNER_REFERENCES),
    Permission("ray.io", "rayjobs/finalizers", ("update",), _OWNER_REFERENCES),
    Permission("ray.io", "rayservices/finalizers", ("update",), _OWNER_REFERENCES),
)

_ESCALATION = (
    "RBAC escalation prevention: the operator creates the autoscaler Role (kray/controllers/common/rbac.py "
    "AUTOSCALER_RULES) and may only grant what it holds itself (it has no `escalate` verb)."
)


def _autoscaler_permissions() -> tuple[Permission, ...]:
    out = []
    for rule in AUTOSCALER_RULES:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.append(Permission(group, resource, tuple(rule["verbs"]), _ESCALATION))
    return tuple(out)


def _merge(permissions: Iterable[Permission]) -> tuple[Permission, ...]:
    """One Permission per (group, resource), verbs in first-seen order, reasons joined."""
    merged: dict[tuple[str, str], Permission] = {}
    for p in permissions:
        key = (p.group, p.resource)
        if key in merged:
            old = merged[key]
            verbs = tuple(dict.fromkeys((*old.verbs, *p.verbs)))
            why = old.why if set(p.verbs) <= set(old.verbs) else f"{old.why}; {p.why}"
            merged[key] = Permission(p.group, p.resource, verbs, why)
        else:
            merged[key] = p
    return tuple(merged.values())


OPERATOR_RULES: tuple[Permission, ...] = _merge((*_USED, *_FINALIZERS, *_autoscaler_permissions()))
"""Everything the controllers do in the namespaces they watch."""

LEADER_ELECTION_RULES: tuple[Permission, ...] = (
    Permission("coordination.k8s.io", "leases", ("get", "create", "update"),
               "the ray-operator-leader Lease (kray/runtime/leader.py: read, create once, renew/take over)"),
)  # fmt: skip
"""In the operator's own namespace only. No Events: kray's elector records none."""


def _grants(permissions: Iterable[Permission]) -> set[Grant]:
    return {Grant(p.group, p.resource, v) for p in permissions for v in p.verbs}


NOT_OBSERVABLE: dict[Grant, str] = {
    **dict.fromkeys(_grants(_FINALIZERS), _OWNER_REFERENCES),
    **dict.fromkeys(_grants(_autoscaler_permissions()) - _grants(_USED), _ESCALATION),
}
"""Grants the operator's own requests never show: each is needed by an apiserver-side check instead."""


def grants(permissions: Iterable[Permission]) -> set[Grant]:
    """Every (group, resource, verb) the permissions allow."""
    return _grants(permissions)


def rules(permissions: Iterable[Permission]) -> list[dict[str, list[str]]]:
    """PolicyRules, one per (group, resource), sorted for stable output."""
    ordered = sorted(permissions, key=lambda p: (p.group, p.resource))
    return [{"apiGroups": [p.group], "resources": [p.resource], "verbs": sorted(p.verbs)} for p in ordered]


def _yaml_rules(permissions: Iterable[Permission]) -> list[str]:
    lines = ["rules:"]
    for rule in rules(permissions):
        lines.append(f'- apiGroups: ["{rule["apiGroups"][0]}"]')
        lines.append(f"  resources: [{rule['resources'][0]}]")
        lines.append(f"  verbs: [{', '.join(rule['verbs'])}]")
    return lines


def render_rules_template() -> str:
    """The chart's ``templates/_rules.tpl``: named templates holding the rules above."""
    out = [
        "{{/* GENERATED by `python -m kray.operator.rbac` from kray/operator/rbac.py: do not edit. */}}",
        '{{- define "kray-operator.rules" }}',
        *_yaml_rules(OPERATOR_RULES),
        "{{- end }}",
        '{{- define "kray-operator.leaderElectionRules" }}',
        *_yaml_rules(LEADER_ELECTION_RULES),
        "{{- end }}",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).resolve().parents[2] / "charts" / "kray-operator" / "templates" / "_rules.tpl"
    target.write_text(render_rules_template())
    print(f"wrote {target}")
