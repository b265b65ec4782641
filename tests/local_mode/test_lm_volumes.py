"""KubeRay's first sample, unchanged: its entrypoint is a file of a ConfigMap mounted at ``/home/ray/samples``.

``kray job run -f ray-job.sample.yaml`` stores the ConfigMap, the head pod's volume is mounted in its own
mount namespace, and the job completes; the host gets no ``/home/ray`` and no mount.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kray.store import RAYJOB

from .conftest import Local, status

pytestmark = pytest.mark.slow

SAMPLE = Path("/work/shared/kuberay-samples/ray-job.sample.yaml")


def sample_without_pip(local: Local) -> Path:
    """The sample with its runtime env's ``pip`` list left out (Ray's pip runtime env does not yet work with a
    Ray installed in a virtualenv: its workers cannot import ray) and its ``requests`` version check with it,
    and no worker (a 2-core machine); everything that touches volumes is the sample's own."""
    documents = list(yaml.safe_load_all(SAMPLE.read_text()))
    job, configmap = documents
    job["spec"]["runtimeEnvYAML"] = "env_vars:\n  counter_name: test_counter\n"
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0] |= {"replicas": 0, "minReplicas": 0}
    configmap["data"]["sample_code.py"] = configmap["data"]["sample_code.py"].replace(
        'assert requests.__version__ == "2.26.0"', "print('requests', requests.__version__)"
    )
    path = local.manifests / "ray-job.sample.yaml"
    path.write_text(yaml.safe_dump_all([job, configmap], sort_keys=False))
    return path


@pytest.mark.timeout(810)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_kuberay_ray_job_sample_reads_its_entrypoint_from_the_mounted_configmap(local: Local) -> None:
    home_ray_existed = Path("/home/ray").exists()
    run = local.kray("job", "run", "-f", str(sample_without_pip(local)), timeout=660)
    job = local.get(RAYJOB, "rayjob-sample")
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert status(job).get("jobStatus") == "SUCCEEDED", status(job)
    assert "test_counter got 5" in run.stdout + run.stderr
    assert Path("/home/ray").exists() == home_ray_existed, "the mount point was made on the host"
    assert "/home/ray/samples" not in Path("/proc/self/mountinfo").read_text()
    local.delete(RAYJOB, "rayjob-sample")
