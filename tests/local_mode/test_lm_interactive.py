"""``kray job run`` of RayJobs that ``kubectl create`` takes and ``kray apply`` cannot: a ``generateName``, and an
InteractiveMode RayJob that waits for its user to submit (``kray job submit --rayjob``, as the kubectl-ray
plugin's ``kubectl ray job submit`` does)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kray.store import RAYCLUSTER, RAYJOB

from .conftest import KRAY, Local, cluster_spec, rayjob, status
from .test_lm_interrupt import SLEEPER_CODE, in_background

pytestmark = pytest.mark.slow


def generated(prefix: str, entrypoint: str, **spec: Any) -> dict[str, Any]:
    job = rayjob("unused", entrypoint, **spec)
    job["metadata"] = {"generateName": prefix}
    return job


def test_job_run_creates_a_rayjob_with_generate_name_and_follows_it(local: Local) -> None:
    job = generated(
        "lm-gen-",
        "python -c \"print('generated ok')\"",
        rayClusterSpec=cluster_spec(workers=0),
        shutdownAfterJobFinishes=True,
    )
    manifest = local.manifest(job, "lm-gen")
    refused = local.kray("apply", "-f", str(manifest))
    assert refused.returncode == 2, refused.stderr
    assert "metadata.name" in refused.stderr, refused.stderr
    assert "generateName" in refused.stderr, refused.stderr

    ran = local.kray("job", "run", "-f", str(manifest), timeout=300)
    assert ran.returncode == 0, ran.stderr
    found = re.search(r"kray: running RayJob default/(lm-gen-[a-z0-9]{5}) on this machine", ran.stderr)
    assert found, ran.stderr
    name = found.group(1)
    assert "generated ok" in ran.stdout, ran.stdout
    assert f"RayJob default/{name}: Complete (Ray job" in ran.stderr, ran.stderr
    local.wait_gone(RAYCLUSTER, status(local.get(RAYJOB, name)).get("rayClusterName") or "-", timeout=90)
    local.delete(RAYJOB, name)


def test_an_interactive_mode_rayjob_says_how_to_submit_and_runs_what_is_submitted(local: Local) -> None:
    job = rayjob("lm-interactive", "", rayClusterSpec=cluster_spec(workers=0), shutdownAfterJobFinishes=True)
    job["spec"]["submissionMode"] = "InteractiveMode"
    del job["spec"]["entrypoint"]
    manifest = local.manifest(job)
    with in_background(local, "lm-interactive", "job", "run", "-f", str(manifest)) as run:
        run.wait_printed("kray job submit --rayjob", timeout=180)
        waiting = status(local.get(RAYJOB, "lm-interactive")).get("jobDeploymentStatus")
        assert waiting == "Waiting", waiting
        found = re.search(r"`(kray job submit --rayjob lm-interactive -- [^`]+)`", run.text())
        assert found, run.text()
        command = found.group(1)

        submitted = subprocess.run(
            ["bash", "-c", command],
            env={**local.env(), "PATH": f"{Path(KRAY).parent}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert submitted.returncode == 0, f"{command}\n{submitted.stdout}\n{submitted.stderr}"
        assert "'CPU': 1.0" in submitted.stdout, submitted.stdout
        spec_id = (local.get(RAYJOB, "lm-interactive") or {}).get("spec", {}).get("jobId")
        assert spec_id, "kray job submit sets spec.jobId, as kubectl ray job submit does"

        assert run.exit_within(120) == 0
    printed = run.text()
    assert "'CPU': 1.0" in printed, printed
    assert f"RayJob default/lm-interactive: Complete (Ray job {spec_id}: SUCCEEDED)" in printed, printed
    local.delete(RAYJOB, "lm-interactive")
    local.wait_gone(RAYJOB, "lm-interactive", timeout=90)


def test_ctrl_c_of_job_submit_rayjob_stops_the_submitted_job_and_the_rayjob_ends_with_it(local: Local) -> None:
    job = rayjob("lm-interactive-stop", "", rayClusterSpec=cluster_spec(workers=0), shutdownAfterJobFinishes=True)
    job["spec"]["submissionMode"] = "InteractiveMode"
    del job["spec"]["entrypoint"]
    manifest = local.manifest(job)
    with in_background(local, "lm-interactive-stop", "job", "run", "-f", str(manifest)) as run:
        run.wait_printed("kray job submit --rayjob", timeout=180)
        args = ("job", "submit", "--rayjob", "lm-interactive-stop", "--", "python", "-c", SLEEPER_CODE)
        with in_background(local, "lm-interactive-stop-submit", *args) as submit:
            submit.wait_printed("working", timeout=120)
            submission = (local.get(RAYJOB, "lm-interactive-stop") or {})["spec"]["jobId"]
            submit.proc.send_signal(signal.SIGINT)
            submit.wait_printed(
                f"interrupted: stopping Ray job {submission} of RayJob default/lm-interactive-stop", timeout=5
            )
            assert submit.exit_within(30) == 130
        printed = submit.text()
        assert f"Ray job {submission} is STOPPED; RayJob default/lm-interactive-stop ends with it" in printed, printed
        assert "Traceback" not in printed, printed
        assert run.exit_within(60) == 1
    assert f"(Ray job {submission}: STOPPED)" in run.text(), run.text()
    local.delete(RAYJOB, "lm-interactive-stop")
    local.wait_gone(RAYJOB, "lm-interactive-stop", timeout=90)
