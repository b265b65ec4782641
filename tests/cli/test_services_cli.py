"""RayServices in the CLI: ``kray apply`` prints the serve address, ``kray get services`` and ``kray describe
service`` show it with the clusters, applications and Serve config history, ``kray delete service`` removes
it; the address stays the same after the server is killed (``kill -9``) and restarted.

The renderers are compared as text; the commands run against a real local server with a *suspended*
RayService (KubeRay creates no cluster for one: ``spec.suspend`` at creation), so no Ray process starts.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kray.cli.render import service_summary, service_table
from kray.local.ports import port_is_free
from kray.local.serve_routes import SERVE_ADDRESS_ANNOTATION
from kray.store import RAYSERVICE
from tests.local_mode.conftest import Local, kill_server, start_local, wait_for

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def upgrading() -> dict[str, Any]:
    """A RayService in the middle of a NewCluster upgrade, as KubeRay's status shows it."""
    return {
        "metadata": {
            "name": "rayservice-sample",
            "namespace": "default",
            "creationTimestamp": "2026-11-25T11:50:00Z",
            "annotations": {SERVE_ADDRESS_ANNOTATION: "127.0.0.1:23456"},
        },
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "NonZeroServeEndpoints",
                    "message": "Number of serve endpoints is greater than 0",
                },
                {
                    "type": "UpgradeInProgress",
                    "status": "True",
                    "reason": "BothActivePendingClustersExist",
                    "message": "Both active and pending Ray clusters exist",
                },
            ],
            "activeServiceStatus": {
                "rayClusterName": "rayservice-sample-abcde",
                "applicationStatuses": {
                    "fruit_app": {
                        "status": "RUNNING",
                        "serveDeploymentStatuses": {
                            "FruitMarket": {"status": "HEALTHY"},
                            "MangoStand": {"status": "HEALTHY"},
                        },
                    }
                },
            },
            "pendingServiceStatus": {
                "rayClusterName": "rayservice-sample-fghij",
                "applicationStatuses": {
                    "fruit_app": {
                        "status": "DEPLOYING",
                        "message": "Deploying app 'fruit_app'.\nmore",
                        "serveDeploymentStatuses": {"FruitMarket": {"status": "UPDATING"}},
                    }
                },
            },
        },
    }


def initializing() -> dict[str, Any]:
    return {
        "metadata": {"name": "other", "namespace": "team-a", "creationTimestamp": "2026-11-25T11:59:30Z"},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Initializing", "message": "m"}]},
    }


def test_service_table() -> None:
    assert service_table([upgrading(), initializing()], now=NOW) == (
        "NAME                NAMESPACE   STATUS              ACTIVE CLUSTER            PENDING CLUSTER           SERVE ADDRESS            AGE\n"  # noqa: E501
        "rayservice-sample   default     Ready (upgrading)   rayservice-sample-abcde   rayservice-sample-fghij   http://127.0.0.1:23456   10m\n"  # noqa: E501
        "other               team-a      Initializing        -                         -                         -                        30s"  # noqa: E501
    )


def test_service_summary_lists_conditions_clusters_apps_deployments_and_config_changes() -> None:
    changes = [
        {
            "time": "2026-11-25T11:51:00Z",
            "cluster": "rayservice-sample-abcde",
            "config_hash": "0123456789ab",
            "summary": "fruit_app /fruit",
        },
        {
            "time": "2026-11-25T11:58:00Z",
            "cluster": "rayservice-sample-fghij",
            "config_hash": "ba9876543210",
            "summary": "fruit_app /fruit",
        },
    ]
    assert service_summary(upgrading(), changes) == (
        "Serve address: http://127.0.0.1:23456\n"
        "Status: Ready (upgrading)\n"
        "Conditions:\n"
        "  Ready=True NonZeroServeEndpoints -- Number of serve endpoints is greater than 0\n"
        "  UpgradeInProgress=True BothActivePendingClustersExist -- Both active and pending Ray clusters exist\n"
        "Clusters:\n"
        "  active: rayservice-sample-abcde\n"
        "    app fruit_app: RUNNING\n"
        "      FruitMarket: HEALTHY\n"
        "      MangoStand: HEALTHY\n"
        "  pending: rayservice-sample-fghij\n"
        "    app fruit_app: DEPLOYING -- Deploying app 'fruit_app'.\n"
        "      FruitMarket: UPDATING\n"
        "Serve config changes:\n"
        "  2026-11-25T11:51:00Z  rayservice-sample-abcde  0123456789ab  fruit_app /fruit\n"
        "  2026-11-25T11:58:00Z  rayservice-sample-fghij  ba9876543210  fruit_app /fruit"
    )


def test_an_incremental_upgrade_shows_traffic_and_capacity() -> None:
    service = upgrading()
    service["status"]["pendingServiceStatus"] |= {"trafficRoutedPercent": 30, "targetCapacity": 50}
    assert "  pending: rayservice-sample-fghij (traffic 30%, capacity 50%)\n" in service_summary(service, [])


# -- the commands, against a real server ---------------------------------------------------------------------


def suspended(name: str) -> dict[str, Any]:
    template = {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {
            "suspend": True,
            "serveConfigV2": "applications:\n  - name: app\n    import_path: m.app\n",
            "rayClusterConfig": {"rayVersion": "2.60.0", "headGroupSpec": {"rayStartParams": {}, "template": template}},
        },
    }


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    yield from start_local(tmp_path / "kr")


def accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) == 0


def test_apply_get_describe_kill_9_and_delete_a_rayservice(local: Local) -> None:
    applied = local.kray("apply", "-f", str(local.manifest(suspended("svc"))))
    assert applied.returncode == 0, applied.stderr
    lines = applied.stdout.splitlines()
    assert lines[0] == "rayservice/svc created"
    match = re.fullmatch(r"rayservice/svc serve address: http://(127\.0\.0\.1:\d+)", lines[1])
    assert match, applied.stdout
    address = match.group(1)
    assert accepts(address)

    listed = local.kray("get", "services")
    header, row = listed.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "NAMESPACE",
        "STATUS",
        "ACTIVE",
        "CLUSTER",
        "PENDING",
        "CLUSTER",
        "SERVE",
        "ADDRESS",
        "AGE",
    ]
    assert row.split()[:2] == ["svc", "default"]
    assert row.split()[3:6] == ["-", "-", f"http://{address}"]

    described = local.kray("describe", "service", "svc")
    assert described.returncode == 0, described.stderr
    assert f"Serve address: http://{address}\n" in described.stdout
    assert "Clusters:\n  active: -\n  pending: -\nServe config changes:\n  -\n" in described.stdout

    kill_server(local)
    again = local.kray("get", "services")  # starts the server again
    assert again.returncode == 0, again.stderr
    assert f"http://{address}" in again.stdout
    wait_for(lambda: accepts(address), timeout=30, what="the same serve address open again")

    deleted = local.kray("delete", "service", "svc")
    assert deleted.stdout.strip() == "rayservice/svc deleted"
    assert local.get(RAYSERVICE, "svc") is None
    wait_for(lambda: port_is_free(int(address.rpartition(":")[2])), timeout=10, what="the serve port free")
    gone = local.kray("get", "services")
    assert gone.stdout == ""
    assert "No RayServices found in default." in gone.stderr
