"""A RayCluster whose head pod carries a log-shipping sidecar, end to end on real Ray: the sidecar runs next
to Ray, the cluster gets ready, ``kray describe cluster`` shows the sidecar, and nothing is left behind."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kray.local.podrunner import pod_dir
from kray.store import RAYCLUSTER

from .conftest import Local, alive, raycluster, status, wait_for

pytestmark = pytest.mark.slow


def test_a_head_with_a_sidecar_tailing_a_file_gets_ready_and_describe_shows_it(local: Local, tmp_path: Path) -> None:
    shipped = tmp_path / "app.log"
    shipped.write_text("first line\n")
    manifest = raycluster("lm-sidecar", workers=0)
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]
    tailer = {
        "name": "log-tailer",
        "image": "busybox:1.36",
        "command": ["sh", "-c", f"exec tail -n +1 -F {shipped}"],
    }
    head["containers"].append(copy.deepcopy(tailer))
    applied = local.kray("apply", "-f", str(local.manifest(manifest)))
    assert applied.returncode == 0, applied.stderr
    local.wait_cluster_ready("lm-sidecar", workers=0)

    (pod,) = local.live_pods("lm-sidecar")
    entries = status(pod)["containerStatuses"]
    assert [e["name"] for e in entries] == ["log-tailer", "ray-head"]  # by name, as the kubelet writes them
    assert all(e["ready"] and "running" in e["state"] for e in entries), entries
    log = pod_dir(local.home, "default", pod["metadata"]["name"]) / "log-tailer.log"
    with shipped.open("a") as f:
        f.write("second line\n")
    wait_for(
        lambda: log.is_file() and "second line" in log.read_text(),
        timeout=20,
        what=f"the sidecar to ship the new line into {log}",
    )
    ray_log = log.with_name("ray-head.log").read_text()
    assert "second line" not in ray_log

    described = local.kray("describe", "cluster", "lm-sidecar")
    assert described.returncode == 0, described.stderr
    line = next((x for x in described.stdout.splitlines() if "log-tailer" in x and "ready=" in x), None)
    assert line is not None, described.stdout
    assert "running" in line
    assert "ready=True" in line

    before = local.processes()
    local.delete(RAYCLUSTER, "lm-sidecar")
    local.wait_gone(RAYCLUSTER, "lm-sidecar")
    wait_for(lambda: not local.pods("lm-sidecar"), timeout=60, what="the head pod gone")
    left = [p for p in before if alive(p) and "tail" in " ".join(p.cmdline())]
    assert left == [], left
