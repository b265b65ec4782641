"""``kray install --print``: the operator's install manifests, for ``kubectl apply`` without Helm.

Why a second renderer next to ``charts/kray-operator``: clusters without Helm still deserve the exact
objects the chart makes. The two cannot drift: ``tests/install/`` compares this output with
``helm template`` of the chart at the same values, and the RBAC rules of both come from
:mod:`kray.operator.rbac`. Only the chart's default values are rendered here, plus the three knobs
below; anything else is the chart's job.

The output also holds the Namespace (``kubectl apply`` does not create it; ``helm install
--create-namespace`` does), and the CRDs first, so one ``kubectl apply --server-side -f -`` works.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kray._version import __version__

NAME = "kray-operator"
RELEASE = "kray-operator"
DEFAULT_NAMESPACE = "kray-system"
DEFAULT_IMAGE = f"kray-operator:{__version__}"
CHART_VERSION = "0.1.0"
DEFAULT_GATES = (("RayClusterStatusConditions", True), ("RayJobDeletionPolicy", True), ("RayMultiHostIndexing", True))
RBAC_API = "rbac.authorization.k8s.io/v1"

JSON = dict[str, Any]


def _labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/managed-by": "kray",
        "helm.sh/chart": f"{NAME}-{CHART_VERSION}",
    }


def _selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": RELEASE}


def _meta(name: str, namespace: str | None = None) -> JSON:
    meta: JSON = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = _labels()
    return meta


def _binding(kind: str, name: str, namespace: str | None, *, subject_namespace: str) -> JSON:
    return {
        "apiVersion": RBAC_API,
        "kind": f"{kind}Binding",
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": subject_namespace}],
    }


def _rbac(namespace: str, watch: tuple[str, ...]) -> list[JSON]:
    from kray.operator.rbac import LEADER_ELECTION_RULES, OPERATOR_RULES, rules

    docs: list[JSON] = []
    if watch:
        for ns in watch:
            docs.append({"apiVersion": RBAC_API, "kind": "Role", "metadata": _meta(NAME, ns),
                         "rules": rules(OPERATOR_RULES)})  # fmt: skip
            docs.append(_binding("Role", NAME, ns, subject_namespace=namespace))
    else:
        docs.append({"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": _meta(NAME),
                     "rules": rules(OPERATOR_RULES)})  # fmt: skip
        docs.append(_binding("ClusterRole", NAME, None, subject_namespace=namespace))
    leader = f"{NAME}-leader-election"
    docs.append({"apiVersion": RBAC_API, "kind": "Role", "metadata": _meta(leader, namespace),
                 "rules": rules(LEADER_ELECTION_RULES)})  # fmt: skip
    docs.append(_binding("Role", leader, namespace, subject_namespace=namespace))
    return docs


def _deployment(namespace: str, watch: tuple[str, ...], image: str) -> JSON:
    args = [f"--watch-namespace={','.join(watch)}"] if watch else []
    args += [
        "--reconcile-concurrency=1",
        "--feature-gates=" + ",".join(f"{name}={str(on).lower()}" for name, on in DEFAULT_GATES),
        "--enable-leader-election=true",
        "--log-stdout-encoder=json",
        "--metrics-addr=:8080",
        "--health-probe-bind-address=:8082",
    ]

    def probe(path: str, initial: int) -> JSON:
        return {"httpGet": {"path": path, "port": "probes"}, "initialDelaySeconds": initial,
                "periodSeconds": 5, "failureThreshold": 5}  # fmt: skip

    container = {
        "name": NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [
            {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
            {"name": "probes", "containerPort": 8082, "protocol": "TCP"},
        ],
        "livenessProbe": probe("/healthz", 10),
        "readinessProbe": probe("/readyz", 5),
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector()},
            "template": {
                "metadata": {"labels": _selector()},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def manifests(
    *, namespace: str = DEFAULT_NAMESPACE, watch: tuple[str, ...] = (), image: str = DEFAULT_IMAGE
) -> list[JSON]:
    """Every object of an install: CRDs, Namespace, ServiceAccount, RBAC, Deployment, metrics Service."""
    import copy

    from kray.api.crd import ALL_KINDS, crd

    docs: list[JSON] = [crd(model.model_fields["kind"].default) for model in ALL_KINDS]
    docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)})
    docs.extend(_rbac(namespace, watch))
    docs.append({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}],
            "selector": _selector(),
        },
    })  # fmt: skip
    docs.append(_deployment(namespace, watch, image))
    return copy.deepcopy(docs)  # the CRD dicts may be shared module state


def install(
    print_: Annotated[
        bool, typer.Option("--print", help="Print the manifests as YAML (the only mode, for now).")
    ] = False,
    namespace: Annotated[str, typer.Option(help="Namespace of the operator.")] = DEFAULT_NAMESPACE,
    watch_namespace: Annotated[
        str, typer.Option(help="Comma-separated namespaces to watch (namespaced Roles); empty: all (a ClusterRole).")
    ] = "",
    image: Annotated[str, typer.Option(help="Operator image.")] = DEFAULT_IMAGE,
) -> None:
    """Print the operator's install manifests (the Helm chart's objects at its default values).

    Apply them with [bold]kray install --print | kubectl apply --server-side -f -[/bold].
    """
    import sys

    import yaml

    from kray.operator.config import OperatorConfigError, parse_namespaces

    if not print_:
        sys.stderr.write("error: only --print is supported: pipe it to `kubectl apply --server-side -f -`\n")
        raise typer.Exit(2)
    try:
        watch = parse_namespaces(watch_namespace)
        parse_namespaces(namespace)
    except OperatorConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        raise typer.Exit(2) from None
    docs = manifests(namespace=namespace, watch=watch, image=image)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the CRDs are large: libyaml is ~10x faster
    typer.echo(yaml.dump_all(docs, Dumper=dumper, sort_keys=False), nl=False)
