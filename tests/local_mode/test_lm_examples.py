"""The shipped examples run as the README says: the sample RayJob (Ray Data + Ray Tune) with
``kray job run``, and the sample RayCluster with ``kray apply``, then a job submitted to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kray.store import RAYCLUSTER, RAYJOB

from .conftest import Local, status

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_readme_rayjob_does_real_ray_work_and_succeeds(local: Local) -> None:
    run = local.kray("job", "run", "-f", str(EXAMPLES / "rayjob.yaml"), timeout=170)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ray data: sum of squares below 10000 = 333283335000" in run.stdout
    assert "ray tune: best x = 3" in run.stdout
    job = local.get(RAYJOB, "rayjob-sample")
    assert status(job)["jobStatus"] == "SUCCEEDED"


@pytest.mark.timeout(660)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_the_sample_raycluster_runs_a_submitted_job(local: Local, tmp_path: Path) -> None:
    applied = local.kray("apply", "-f", str(EXAMPLES / "raycluster.yaml"))
    assert applied.returncode == 0, applied.stderr
    local.wait_cluster_ready("raycluster-sample", workers=1)
    (tmp_path / "main.py").write_text("import ray\nray.init()\nprint('cpus', int(ray.cluster_resources()['CPU']))\n")
    submitted = local.kray(
        "job",
        "submit",
        "-c",
        "raycluster-sample",
        "--working-dir",
        str(tmp_path),
        "--",
        "python",
        "main.py",
        timeout=300,
    )
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    assert "cpus 2" in submitted.stdout
    deleted = local.kray("delete", "cluster", "raycluster-sample")
    assert deleted.returncode == 0, deleted.stderr
    assert local.get(RAYCLUSTER, "raycluster-sample") is None
