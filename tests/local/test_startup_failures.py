"""Without `ray` on a pod's PATH the local control plane fails the RayJob, saying what is missing; it never hangs.

The whole local control plane runs in-process (embedded store, the shared controllers, the pod runner)
with a runner whose ``bin_dir`` holds no ``ray`` and a PATH without one: the Ray containers cannot
start, and the job must end ``RayClusterStartupFailed`` with that reason in its message, and the
cluster's processes must be gone once the plane stops.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from pathlib import Path
from typing import Any

import pytest

from kray.api.manifest import parse_object
from kray.controllers.rayjob.plan import Settings, StartupPolicy
from kray.local.paths import LocalPaths
from kray.local.podrunner import RunnerSettings
from kray.local.runtime import LocalControlPlane
from kray.store import POD, RAYJOB, Obj

CONTAINER = {"name": "ray-head", "image": "rayproject/ray:2.60.0", "resources": {"limits": {"cpu": "1"}}}
RAYJOB_MANIFEST: Obj = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"name": "no-ray", "namespace": "default"},
    "spec": {
        "entrypoint": "python -c 'print(1)'",
        "submissionMode": "HTTPMode",
        "shutdownAfterJobFinishes": False,
        "rayClusterSpec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [CONTAINER]}}},
        },
    },
}


async def wait_status(plane: LocalControlPlane, *, timeout: float) -> dict[str, Any]:
    assert plane.store is not None
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = (await plane.store.get(RAYJOB, "no-ray", namespace="default")).get("status") or {}
        if last.get("jobDeploymentStatus") in {"Failed", "Complete"}:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"RayJob did not end within {timeout:.0f}s; last status {last}")


@pytest.mark.timeout(90)
async def test_a_missing_ray_fails_the_job_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    home = tmp_path / "home"
    plane = LocalControlPlane(
        paths=LocalPaths(home),
        job_settings=Settings(startup=StartupPolicy(crash_loop_restarts=2, timeout=60.0)),
        runner_settings=RunnerSettings(state_dir=home, bin_dir=empty, backoff_start=0.2, poll=0.05, grace=1.0),
    )
    await plane.start()
    try:
        assert plane.store is not None
        await plane.store.create(RAYJOB, parse_object(copy.deepcopy(RAYJOB_MANIFEST)).to_dict())
        final = await wait_status(plane, timeout=60)
        assert final["jobDeploymentStatus"] == "Failed"
        assert final["reason"] == "RayClusterStartupFailed"
        message = final["message"]
        assert message.startswith(f"RayCluster {final['rayClusterName']} cannot start: head pod "), message
        # At least the policy's 2 restarts, seen backing off or just ended (0.2 s back-offs race the RayJob).
        found = re.search(r": (?:CrashLoopBackOff|StartError) after (\d+) restarts \(last exit code 127\)", message)
        assert found, message
        assert int(found.group(1)) >= 2
        assert f"`ray` was not found in {empty} nor on PATH" in message, message
        assert "pip install 'kray[local]'" in message, message
        # The cluster is kept (shutdownAfterJobFinishes false), its head with a kubelet-style record of the failure.
        (pod,) = (await plane.store.list(POD, namespace="default")).items
        last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
        assert last["exitCode"] != 0
        assert last["message"].strip().splitlines()[-1] in message
    finally:
        await plane.stop(kill_pods=True)
