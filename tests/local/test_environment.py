"""Local mode's ClusterEnvironment: which ports a cluster and its pods get, and what each pod records.

The head's node ports (agent, metrics) belong to the cluster, so the head Service, and with it
``status.endpoints.metrics``, points at the port the head really exports metrics on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kray.api.v1 import RayCluster
from kray.controllers.common.pod import build_head_pod, build_worker_pod
from kray.controllers.common.service import build_head_service
from kray.controllers.raycluster.status import endpoints
from kray.local.adjust import ClusterPorts
from kray.local.environment import NODE_PORTS_ANNOTATION, PORTS_ANNOTATION, LocalEnvironment, cluster_owner
from kray.local.paths import ray_temp_root
from kray.local.podrunner import PORT_OWNER_ANNOTATION, RAY_TEMP_DIR_ANNOTATION
from kray.local.ports import PortAllocator
from kray.local.store import EmbeddedStore
from kray.store import RAYCLUSTER, Obj
from tests.store.support import raycluster

OLD_NAMES = ("gcs", "dashboard", "client", "serve", "dashboard_metrics", "autoscaler_metrics")
"""The cluster ports of an annotation written before the head's node ports became the cluster's."""


@pytest.fixture
def allocator(tmp_path: Path) -> PortAllocator:
    return PortAllocator(tmp_path / "state")


@pytest.fixture
def environment(allocator: PortAllocator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalEnvironment:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))  # ray_temp_root() lands under tmp_path
    (tmp_path / "tmp").mkdir()
    return LocalEnvironment(ports=allocator)


def node_ports(pod: Obj) -> dict[str, int]:
    text = pod["metadata"]["annotations"][NODE_PORTS_ANNOTATION]
    return {k: int(v) for k, v in (part.split("=") for part in text.split(","))}


def model(raw: Obj) -> RayCluster:
    return RayCluster.model_validate(raw)


async def prepared_cluster(store: EmbeddedStore, environment: LocalEnvironment) -> RayCluster:
    """A new RayCluster ``c`` after the environment reserved its ports."""
    prepared = await environment.prepare(
        store=store, cluster=await store.create(RAYCLUSTER, raycluster("c", "default"))
    )
    assert prepared is not None
    return model(prepared)


async def test_prepare_reserves_every_cluster_port_once(store: EmbeddedStore, environment: LocalEnvironment) -> None:
    created = await store.create(RAYCLUSTER, raycluster("c", "default"))
    prepared = await environment.prepare(store=store, cluster=created)
    assert prepared is not None
    ports = ClusterPorts.from_annotation(prepared["metadata"]["annotations"][PORTS_ANNOTATION])
    values = [getattr(ports, name) for name in ClusterPorts.names()]
    assert len(set(values)) == len(values) == 8
    owner = cluster_owner("default", "c")
    assert sorted(p for p, who in environment.ports.reservations().items() if who == owner) == sorted(values)
    assert await environment.prepare(store=store, cluster=prepared) is None


async def test_an_older_ports_annotation_gets_only_the_missing_ports(
    store: EmbeddedStore, environment: LocalEnvironment, allocator: PortAllocator
) -> None:
    owner = cluster_owner("default", "old")
    old_ports = dict(zip(OLD_NAMES, allocator.allocate(len(OLD_NAMES), owner=owner), strict=True))
    text = ",".join(f"{name}={port}" for name, port in old_ports.items())
    created = await store.create(RAYCLUSTER, raycluster("old", "default", annotations={PORTS_ANNOTATION: text}))
    with pytest.raises(RuntimeError, match="head_agent"):  # a clear error, not a KeyError, until prepared
        environment.cluster_ports(model(created))
    assert environment.dashboard_address(cluster=model(created), head_service=None).endswith(
        f":{old_ports['dashboard']}"
    )

    prepared = await environment.prepare(store=store, cluster=created)
    assert prepared is not None
    ports = environment.cluster_ports(model(prepared))
    assert {name: getattr(ports, name) for name in OLD_NAMES} == old_ports
    assert len({ports.head_agent, ports.head_metrics, *old_ports.values()}) == 8
    reserved = {p for p, who in allocator.reservations().items() if who == owner}
    assert reserved == {ports.head_agent, ports.head_metrics, *old_ports.values()}
    assert await environment.prepare(store=store, cluster=prepared) is None


async def test_a_malformed_ports_annotation_is_repaired_not_fatal(
    store: EmbeddedStore, environment: LocalEnvironment
) -> None:
    created = await store.create(
        RAYCLUSTER, raycluster("junk", "default", annotations={PORTS_ANNOTATION: "gcs=abc,nonsense"})
    )
    prepared = await environment.prepare(store=store, cluster=created)
    assert prepared is not None
    ClusterPorts.from_annotation(prepared["metadata"]["annotations"][PORTS_ANNOTATION])


async def test_the_head_uses_the_clusters_node_ports_and_owns_none(
    store: EmbeddedStore, environment: LocalEnvironment
) -> None:
    cluster = await prepared_cluster(store, environment)
    ports = environment.cluster_ports(cluster)
    options = environment.pod_options(cluster)
    before = dict(environment.ports.reservations())

    template = build_head_pod(cluster=cluster, options=options)
    template["metadata"].setdefault("annotations", {})[PORT_OWNER_ANNOTATION] = "pod/default/from-a-template"
    head = environment.customize_pod(cluster=cluster, pod=template, head=True, auth_secret=None)
    assert node_ports(head) == {"agent": ports.head_agent, "metrics": ports.head_metrics}
    assert PORT_OWNER_ANNOTATION not in head["metadata"]["annotations"]
    line = " ".join([*head["spec"]["containers"][0].get("command", []), *head["spec"]["containers"][0]["args"]])
    assert f"--metrics-export-port={ports.head_metrics}" in line
    assert f"--dashboard-agent-listen-port={ports.head_agent}" in line
    assert environment.ports.reservations() == before  # nothing reserved for the head pod itself

    group = (cluster.spec.worker_group_specs or [])[0]
    worker = environment.customize_pod(
        cluster=cluster,
        pod=build_worker_pod(cluster=cluster, group=group, replica_index=0, options=options),
        head=False,
        auth_secret=None,
    )
    owner = worker["metadata"]["annotations"][PORT_OWNER_ANNOTATION]
    assert owner.startswith("pod/default/")
    mine = {p for p, who in environment.ports.reservations().items() if who == owner}
    assert mine == set(node_ports(worker).values())
    assert not mine & {getattr(ports, name) for name in ClusterPorts.names()}


async def test_every_pod_records_its_clusters_ray_temp_dir(
    store: EmbeddedStore, environment: LocalEnvironment, tmp_path: Path
) -> None:
    cluster = await prepared_cluster(store, environment)
    head = environment.customize_pod(
        cluster=cluster,
        pod=build_head_pod(cluster=cluster, options=environment.pod_options(cluster)),
        head=True,
        auth_secret=None,
    )
    recorded = Path(head["metadata"]["annotations"][RAY_TEMP_DIR_ANNOTATION])
    assert recorded == environment.ray_temp_dir(cluster)
    assert recorded.parent == ray_temp_root()
    assert ray_temp_root().is_relative_to(tmp_path)
    line = " ".join(head["spec"]["containers"][0]["args"])
    assert f"--temp-dir={recorded}" in line


async def test_the_head_services_metrics_endpoint_is_the_heads_metrics_port(
    store: EmbeddedStore, environment: LocalEnvironment
) -> None:
    cluster = await prepared_cluster(store, environment)
    options = environment.pod_options(cluster)
    service = environment.customize_service(
        cluster=cluster, service=build_head_service(cluster=cluster, options=options)
    )
    head = environment.customize_pod(
        cluster=cluster, pod=build_head_pod(cluster=cluster, options=options), head=True, auth_secret=None
    )
    ports = environment.cluster_ports(cluster)
    found = endpoints(service)
    assert found["metrics"] == str(node_ports(head)["metrics"]) == str(ports.head_metrics)
    assert found["dashboard"] == str(ports.dashboard)
    assert found["gcs-server"] == str(ports.gcs)
