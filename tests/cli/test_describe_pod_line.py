"""``kray describe cluster`` shows each pod's Ray container, wherever the kubelet's name order puts it.

The kubelet (and kray's runner) sorts ``containerStatuses`` by name, so a head pod with KubeRay's ``autoscaler``
sidecar lists the sidecar first; the line must still tell the Ray container's state.
"""

from __future__ import annotations

from typing import Any

from kray.cli.local import _pod_line


def head_pod(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "c-head-abcde", "labels": {"ray.io/node-type": "head"}},
        "spec": {"containers": [{"name": "ray-head"}, {"name": "autoscaler"}]},
        "status": {"phase": "Running", "containerStatuses": statuses},
    }


def test_the_line_tells_the_ray_container_not_the_first_status() -> None:
    autoscaler = {"name": "autoscaler", "ready": True, "restartCount": 0, "state": {"running": {}}}
    crashing = {
        "name": "ray-head",
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    }
    first, *rest = _pod_line(head_pod([autoscaler, crashing])).splitlines()
    assert first.split() == ["c-head-abcde", "head", "Running", "ready=False", "restarts=4", "CrashLoopBackOff"]
    assert [line.split() for line in rest] == [["container", "autoscaler", "running", "ready=True", "restarts=0"]]


def test_a_pod_without_statuses_yet_shows_it_pending() -> None:
    pod = head_pod([])
    del pod["status"]
    assert _pod_line(pod).split() == ["c-head-abcde", "head", "Pending", "ready=False", "restarts=0"]
