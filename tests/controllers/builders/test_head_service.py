"""Services: the head Service (ports, headless, overrides), the headless worker Service, serve Services."""

from __future__ import annotations

from typing import Any

import pytest

from kray._ray.start import RayPorts
from kray.controllers.common.options import PodBuildOptions
from kray.controllers.common.service import (
    NoServePortError,
    build_head_service,
    build_headless_worker_service,
    build_owner_head_service,
    build_serve_service,
    service_ports,
)
from tests.controllers.builders.support import UID, cluster_from_dict, container, minimal_spec

SELECTOR = {
    "ray.io/cluster": "c",
    "ray.io/node-type": "head",
    "ray.io/identifier": "c-head",
    "app.kubernetes.io/name": "kuberay",
    "app.kubernetes.io/created-by": "kuberay-operator",
}
DEFAULT_PORTS = [
    {"name": "client", "appProtocol": "tcp", "port": 10001},
    {"name": "dashboard", "appProtocol": "tcp", "port": 8265},
    {"name": "gcs-server", "appProtocol": "tcp", "port": 6379},
    {"name": "metrics", "appProtocol": "tcp", "port": 8080},
    {"name": "serve", "appProtocol": "tcp", "port": 8000},
]


def head_spec(
    ports: list[dict[str, Any]] | None = None, *, template_labels: dict[str, str] | None = None, **head: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {"ports": ports} if ports is not None else {}
    template: dict[str, Any] = {"spec": {"containers": [container(**fields)]}}
    if template_labels:
        template["metadata"] = {"labels": template_labels}
    return minimal_spec(head={"template": template, **head})


def service(
    spec: dict[str, Any] | None = None, *, options: PodBuildOptions | None = None, **extra: Any
) -> dict[str, Any]:
    cluster = cluster_from_dict(spec or head_spec(), **extra)
    return build_head_service(cluster=cluster, options=options) if options else build_head_service(cluster=cluster)


def test_default_head_service() -> None:
    assert service() == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "c-head-svc",
            "namespace": "default",
            "labels": SELECTOR,
            "ownerReferences": [
                {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayCluster",
                    "name": "c",
                    "uid": UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"ports": DEFAULT_PORTS, "selector": SELECTOR, "clusterIP": "None", "publishNotReadyAddresses": True},
    }


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([{"containerPort": 6379, "name": "gcs"}], {"gcs": 6379, "metrics": 8080}),
        ([{"containerPort": 1234}], {"1234-port": 1234, "metrics": 8080}),
        ([{"containerPort": 9090, "name": "metrics"}], {"metrics": 9090}),
        ([], {"client": 10001, "gcs-server": 6379, "dashboard": 8265, "metrics": 8080, "serve": 8000}),
    ],
)
def test_service_ports(ports: list[dict[str, Any]], expected: dict[str, int]) -> None:
    assert service_ports(cluster_from_dict(head_spec(ports))) == expected


def test_ports_are_sorted_by_name_with_app_protocol() -> None:
    ports = [{"containerPort": 8265, "name": "dashboard"}, {"containerPort": 6379, "name": "a-gcs"}]
    assert service(head_spec(ports))["spec"]["ports"] == [
        {"name": "a-gcs", "appProtocol": "tcp", "port": 6379},
        {"name": "dashboard", "appProtocol": "tcp", "port": 8265},
        {"name": "metrics", "appProtocol": "tcp", "port": 8080},
    ]


def test_default_ports_follow_options() -> None:
    options = PodBuildOptions(ports=RayPorts(dashboard=18265, metrics=18080))
    ports = {p["name"]: p["port"] for p in service(options=options)["spec"]["ports"]}
    assert (ports["dashboard"], ports["metrics"]) == (18265, 18080)


@pytest.mark.parametrize(
    ("service_type", "headless"), [(None, True), ("ClusterIP", True), ("NodePort", False), ("LoadBalancer", False)]
)
def test_headless_unless_another_type(service_type: str | None, headless: bool) -> None:
    spec = head_spec(serviceType=service_type) if service_type else head_spec()
    svc = service(spec)["spec"]
    assert ("clusterIP" in svc) is headless
    assert svc.get("publishNotReadyAddresses", False) is headless
    assert svc.get("type") == service_type


def test_cluster_ip_option() -> None:
    svc = service(options=PodBuildOptions(head_cluster_ip_service=True))["spec"]
    assert "clusterIP" not in svc
    assert "publishNotReadyAddresses" not in svc


def test_app_name_label_from_template_and_annotations() -> None:
    spec = head_spec(template_labels={"app.kubernetes.io/name": "myapp", "other": "x"})
    spec["headServiceAnnotations"] = {"a": "b"}
    svc = service(spec)
    assert svc["metadata"]["labels"]["app.kubernetes.io/name"] == "myapp"
    assert svc["spec"]["selector"]["app.kubernetes.io/name"] == "myapp"
    assert "other" not in svc["metadata"]["labels"]
    assert svc["metadata"]["annotations"] == {"a": "b"}


def test_head_service_override_is_merged() -> None:
    custom = {
        "metadata": {
            "name": "custom",
            "namespace": "elsewhere",
            "labels": {"x": "1", "ray.io/cluster": "bad"},
            "annotations": {"a": "user", "keep": "1"},
        },
        "spec": {"type": "NodePort", "selector": {"bad": "1"}, "ports": [{"name": "extra", "port": 1}]},
    }
    spec = head_spec([{"containerPort": 6379, "name": "gcs"}], headService=custom)
    spec["headServiceAnnotations"] = {"a": "ours"}
    svc = service(spec)
    assert svc["metadata"]["name"] == "custom"
    assert svc["metadata"]["namespace"] == "default"
    assert svc["metadata"]["labels"] == {"x": "1", **SELECTOR}
    assert svc["metadata"]["annotations"] == {"a": "ours", "keep": "1"}
    assert svc["spec"]["selector"] == SELECTOR
    assert svc["spec"]["type"] == "NodePort"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["extra", "gcs", "metrics"]
    assert "clusterIP" not in svc["spec"]


def test_head_service_override_defaults_name_and_type() -> None:
    spec = head_spec(headService={"spec": {}}, serviceType="LoadBalancer")
    svc = service(spec)
    assert svc["metadata"]["name"] == "c-head-svc"
    assert svc["spec"]["type"] == "LoadBalancer"


def test_headless_worker_service() -> None:
    svc = build_headless_worker_service(cluster=cluster_from_dict(head_spec()))
    assert svc["metadata"]["name"] == "c-headless"
    assert svc["metadata"]["labels"] == {"ray.io/headless-worker-svc": "c"}
    assert svc["spec"] == {
        "selector": {"ray.io/cluster": "c", "ray.io/node-type": "worker"},
        "clusterIP": "None",
        "type": "ClusterIP",
        "publishNotReadyAddresses": True,
    }


def test_serve_service() -> None:
    cluster = cluster_from_dict(head_spec([{"containerPort": 8001, "name": "serve"}]))
    svc = build_serve_service(cluster=cluster)
    assert svc["metadata"]["name"] == "c-serve-svc"
    assert svc["metadata"]["labels"] == {
        "ray.io/originated-from-cr-name": "c",
        "ray.io/originated-from-crd": "RayCluster",
        "ray.io/serve": "c-serve",
    }
    assert svc["spec"] == {"ports": [{"name": "serve", "port": 8001}], "selector": {"ray.io/cluster": "c"}}
    assert build_serve_service(cluster=cluster_from_dict(head_spec()))["spec"]["ports"][0]["port"] == 8000
    with pytest.raises(NoServePortError):
        build_serve_service(cluster=cluster_from_dict(head_spec([{"containerPort": 1, "name": "x"}])))


def test_owner_head_service() -> None:
    svc = build_owner_head_service(
        owner_kind="RayJob", owner_name="job", owner_uid="u", cluster=cluster_from_dict(head_spec())
    )
    assert svc["metadata"]["name"] == "job-head-svc"
    assert svc["metadata"]["labels"] == {
        "ray.io/originated-from-cr-name": "job",
        "ray.io/originated-from-crd": "RayJob",
        "ray.io/node-type": "head",
        "ray.io/identifier": "job-head",
    }
    assert svc["spec"]["selector"] == SELECTOR
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
