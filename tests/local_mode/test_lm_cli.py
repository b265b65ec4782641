"""What the CLI shows of local mode: history's fields after the RayJob is gone, ``kray logs -f``, ``describe``
and ``get -o wide|yaml|json``, checked against the store and the rendered text's stable parts.

The module shares one server, one long-lived RayCluster (jobs run on it through a clusterSelector) and one
finished ``kray job run`` whose cluster and RayJob are gone.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray.store import EVENT, RAYCLUSTER, RAYJOB, Obj

from .conftest import KRAY, Local, cluster_spec, raycluster, rayjob, status, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1000)]  # >= a test's bounded waits (test_suite_rules)

STARTUP = 240.0
"""A cluster's start on a loaded 2-core machine (30-60 s idle, much longer under load)."""
SHARED = "cli-c"
LINES = 4000
"""Driver log lines of the history job (~0.4 MB: the full log, not a tail)."""
RUNTIME_ENV = "env_vars:\n  CLI_GREETING: hello-from-runtime-env\n"
HISTORY_ENTRYPOINT = (
    "python -c \"import os; [print(f'line {i:05d}', os.environ['CLI_GREETING'], 'x' * 60) for i in range("
    + str(LINES)
    + ')]"'
)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SUFFIX = re.compile(r"-[bcdfghjklmnpqrstvwxz2456789]{5}\b")
"""KubeRay's random name suffix (no vowels, no 0, 1 or 3)."""


def expected_log_lines() -> list[str]:
    return [f"line {i:05d} hello-from-runtime-env {'x' * 60}" for i in range(LINES)]


def stable(text: str) -> str:
    """Rendered text with what changes run to run (timestamps, random name suffixes) replaced."""
    return SUFFIX.sub("-XXXXX", TIMESTAMP.sub("<time>", text))


def section(text: str, title: str) -> list[str]:
    """The indented lines under ``title:`` in ``kray describe`` output."""
    lines = text.splitlines()
    start = lines.index(f"{title}:") + 1
    body = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        body.append(line)
    return body


def table(text: str) -> list[list[str]]:
    """A ``kray get`` table's rows, split on runs of two or more spaces (cells never hold two spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip() and set(line) != {"-"}]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(local: Local) -> Obj:
    """A RayCluster (a head and one worker) that the module's clusterSelector jobs run on."""
    ok(local.kray("apply", "-f", str(local.manifest(raycluster(SHARED)))))
    return local.wait_cluster_ready(SHARED, timeout=STARTUP)


@dataclass(frozen=True)
class Gone:
    """A ``kray job run`` that ended, whose cluster and then RayJob were deleted; what history kept."""

    run: subprocess.CompletedProcess[str]
    job: Obj
    record: dict[str, Any]


@pytest.fixture(scope="module")
def gone(local: Local) -> Gone:
    manifest = rayjob(
        "cli-hist",
        HISTORY_ENTRYPOINT,
        runtimeEnvYAML=RUNTIME_ENV,
        rayClusterSpec=cluster_spec(workers=0),
        shutdownAfterJobFinishes=True,
        ttlSecondsAfterFinished=0,
    )
    run = local.kray("job", "run", "-f", str(local.manifest(manifest)), timeout=STARTUP + 60)
    job = local.get(RAYJOB, "cli-hist")
    assert job is not None, run.stderr
    local.wait_gone(RAYCLUSTER, status(job)["rayClusterName"], timeout=60)
    ok(local.kray("delete", "job", "cli-hist"))
    assert local.get(RAYJOB, "cli-hist") is None
    records = local.call(lambda s: s.request("GET", "/kray/v1/history/jobs", params={"name": "cli-hist"}))
    assert len(records) == 1, records
    return Gone(run=run, job=job, record=records[0])


@pytest.fixture(scope="module")
def selected(local: Local, shared: Obj) -> Obj:
    """A RayJob applied with ``kray apply`` that ran on the shared cluster and stays (Complete)."""
    manifest = rayjob("cli-sel", "python -c \"print('selected ran')\"", selector=SHARED)
    ok(local.kray("apply", "-f", str(local.manifest(manifest))))
    return local.wait_job("cli-sel", {"Complete", "Failed"}, timeout=120)


# -- history -----------------------------------------------------------------------------------------------


def test_history_keeps_entrypoint_submitter_runtime_env_and_the_full_log(local: Local, gone: Gone) -> None:
    ok(gone.run)
    record = gone.record
    assert record["entrypoint"] == HISTORY_ENTRYPOINT
    assert record["runtime_env"] == RUNTIME_ENV
    assert record["submitter"] == f"{getpass.getuser()}@{socket.gethostname()}"
    assert record["submission_id"] == status(gone.job)["jobId"]
    assert record["cluster"] == status(gone.job)["rayClusterName"]
    assert (record["job_status"], record["deployment_status"]) == ("SUCCEEDED", "Complete")
    assert record["start_time"]
    assert record["end_time"]
    assert record["log_complete"] == 1
    log = Path(record["log_path"]).read_text().splitlines()
    assert [line for line in log if line.startswith("line ")] == expected_log_lines()


def test_kray_logs_after_the_cluster_and_the_rayjob_are_gone_prints_the_whole_log(local: Local, gone: Gone) -> None:
    printed = ok(local.kray("logs", "cli-hist"))
    assert printed == Path(gone.record["log_path"]).read_text()
    assert [line for line in printed.splitlines() if line.startswith("line ")] == expected_log_lines()
    # `kray job run` streamed the same log while the job ran, every line once and in order.
    assert [line for line in gone.run.stdout.splitlines() if line.startswith("line ")] == expected_log_lines()


def test_get_jobs_wide_lists_a_job_only_history_remembers(local: Local, gone: Gone) -> None:
    rows = table(ok(local.kray("get", "jobs", "-o", "wide")))
    header = ["NAME", "JOB STATUS", "DEPLOYMENT STATUS", "RAY CLUSTER", "START TIME", "END TIME", "AGE"]
    assert rows[0] == [*header, "NAMESPACE", "SUBMISSION ID", "ENTRYPOINT"]
    row = next(r for r in rows if r[0] == "cli-hist")
    record = gone.record
    assert row[:6] == [
        "cli-hist",
        "SUCCEEDED",
        "Complete (history)",
        record["cluster"],
        record["start_time"],
        record["end_time"],
    ]
    assert row[7:] == ["default", record["submission_id"], HISTORY_ENTRYPOINT]  # never cut (kubectl)


def test_get_jobs_yaml_json_include_a_job_only_history_remembers_as_a_job_record(local: Local, gone: Gone) -> None:
    expected = {
        "apiVersion": "kray.io/v1",
        "kind": "JobRecord",
        "metadata": {"name": "cli-hist", "namespace": "default", "creationTimestamp": gone.record["created"]},
        "record": gone.record,
    }
    for output, parse in (("yaml", yaml.safe_load), ("json", json.loads)):
        listed = parse(ok(local.kray("get", "jobs", "-o", output)))
        assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
        assert [i for i in listed["items"] if i["metadata"]["name"] == "cli-hist"] == [expected]
        assert {i["kind"] for i in listed["items"]} <= {"RayJob", "JobRecord"}
        assert parse(ok(local.kray("get", "jobs", "cli-hist", "-o", output))) == expected


# -- kray logs -f ------------------------------------------------------------------------------------------


def test_logs_follow_prints_a_running_job_to_its_end_and_exits_0(local: Local, shared: Obj) -> None:
    code = "import time; [(print(f'tick {i}', flush=True), time.sleep(0.5)) for i in range(30)]; print('done')"
    local.create(RAYJOB, rayjob("cli-follow", f'python -c "{code}"', selector=SHARED))
    local.wait_job("cli-follow", {"Running"}, timeout=120)
    follow = subprocess.Popen(
        [KRAY, "logs", "cli-follow", "-f"],
        env=local.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert status(local.get(RAYJOB, "cli-follow")).get("jobStatus") not in {"SUCCEEDED", "FAILED"}
    try:
        out, errors = follow.communicate(timeout=120)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(timeout=10)
    assert follow.returncode == 0, errors
    assert status(local.get(RAYJOB, "cli-follow"))["jobDeploymentStatus"] == "Complete"
    printed = [line for line in out.splitlines() if line.startswith(("tick", "done"))]
    assert printed == [*(f"tick {i}" for i in range(30)), "done"], out


def follower(local: Local, name: str, errors: Path) -> subprocess.Popen[str]:
    """``kray logs NAME -f`` in the background, its stderr going to ``errors`` (read while it runs)."""
    with errors.open("w") as sink:
        return subprocess.Popen(
            [KRAY, "logs", name, "-f"],
            env=local.env(),
            stdout=subprocess.PIPE,
            stderr=sink,
            stdin=subprocess.DEVNULL,
            text=True,
        )


def test_logs_follow_started_right_after_the_rayjob_is_created_prints_its_log_and_exits_0(
    local: Local, shared: Obj, tmp_path: Path
) -> None:
    code = "print('started late', flush=True); print('done')"
    local.create(RAYJOB, rayjob("cli-early", f'python -c "{code}"', selector=SHARED))
    follow = follower(local, "cli-early", tmp_path / "stderr")
    try:
        out, _ = follow.communicate(timeout=180)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(timeout=10)
    errors = (tmp_path / "stderr").read_text()
    assert follow.returncode == 0, errors
    assert [line for line in out.splitlines() if line in {"started late", "done"}] == ["started late", "done"], out
    local.delete(RAYJOB, "cli-early")


def test_logs_follow_waits_while_the_rayjob_has_no_submission_and_fails_once_it_is_gone(
    local: Local, tmp_path: Path
) -> None:
    """No Ray: a RayJob another controller manages (``spec.managedBy``) is never submitted by kray, which makes
    the moment before the controller records a submission id last as long as the test needs."""
    job = rayjob("cli-unsubmitted", "python -c 'print(1)'", managedBy="kueue.x-k8s.io/multikueue")
    local.create(RAYJOB, job)
    refused = local.kray("logs", "cli-unsubmitted")  # without -f: nothing to print, as before
    assert refused.returncode == 1, refused.stdout
    assert "no job history for default/cli-unsubmitted" in refused.stderr, refused.stderr
    errors = tmp_path / "stderr"
    follow = follower(local, "cli-unsubmitted", errors)
    waiting = "waiting for RayJob default/cli-unsubmitted to start its job"
    try:
        wait_for(lambda: waiting in errors.read_text() or follow.poll() is not None, timeout=60, what=waiting)
        time.sleep(3)  # a few polls more: it keeps waiting, and says so once
        assert follow.poll() is None, errors.read_text()
        assert not status(local.get(RAYJOB, "cli-unsubmitted")).get("jobId")
        local.delete(RAYJOB, "cli-unsubmitted")
        out, _ = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(timeout=10)
    text = errors.read_text()
    assert follow.returncode == 1, (out, text)
    assert text.count(waiting) == 1, text
    assert "no job history for default/cli-unsubmitted" in text, text


# -- describe ----------------------------------------------------------------------------------------------


def test_describe_job_shows_the_object_its_status_and_its_events(local: Local, selected: Obj) -> None:
    text = ok(local.kray("describe", "job", "cli-sel"))
    shown = yaml.safe_load(text.split("\nEvents:\n")[0])
    stored = local.get(RAYJOB, "cli-sel")
    assert stored is not None
    assert shown == stored
    assert status(shown)["jobStatus"] == "SUCCEEDED"
    events = [e for e in local.list(EVENT) if e["involvedObject"].get("uid") == stored["metadata"]["uid"]]
    assert events, "the RayJob controller records events"
    expected = [
        f"  <time>  {e['type']:<8} {e['reason']:<22} {stable(e['message'])}"
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or "")
    ]
    assert [stable(line) for line in section(text, "Events")] == expected


def test_describe_cluster_shows_a_line_per_pod(local: Local, shared: Obj) -> None:
    text = ok(local.kray("describe", "cluster", SHARED))
    assert yaml.safe_load(text.split("\nPods:\n")[0])["metadata"]["name"] == SHARED
    lines = [re.sub(r"\s+", " ", stable(line)).strip() for line in section(text, "Pods")]
    assert lines == [
        f"{SHARED}-head-XXXXX head Running ready=True restarts=0",
        f"{SHARED}-small-worker-XXXXX worker Running ready=True restarts=0",
        "init wait-gcs-ready terminated (Completed) ready=True restarts=0",
    ], text
    assert section(text, "Events"), text


# -- get -o ------------------------------------------------------------------------------------------------


def test_get_clusters_wide_yaml_json(local: Local, shared: Obj) -> None:
    stored = local.get(RAYCLUSTER, SHARED)
    assert stored is not None
    rows = table(ok(local.kray("get", "clusters", "-o", "wide")))
    header = ["NAME", "DESIRED WORKERS", "AVAILABLE WORKERS", "CPUS", "MEMORY", "GPUS", "STATUS", "AGE"]
    assert rows[0] == [*header, "NAMESPACE", "HEAD POD IP", "DASHBOARD"]
    row = next(r for r in rows if r[0] == SHARED)
    dashboard = status(stored)["endpoints"]["dashboard"]
    assert row[1:7] == ["1", "1", "2", "2Gi", "0", "ready"], row
    assert row[8:] == ["default", "127.0.0.1", f"127.0.0.1:{dashboard}"]
    for output, parse in (("yaml", yaml.safe_load), ("json", json.loads)):
        listed = parse(ok(local.kray("get", "clusters", "-o", output)))
        assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
        assert SHARED in [item["metadata"]["name"] for item in listed["items"]]
        assert all(item["kind"] == "RayCluster" for item in listed["items"])
        one = parse(ok(local.kray("get", "clusters", SHARED, "-o", output)))
        assert one["kind"] == "RayCluster"
        assert one["metadata"]["uid"] == stored["metadata"]["uid"]
        assert one["spec"] == stored["spec"]


def test_get_jobs_wide_yaml_json(local: Local, selected: Obj) -> None:
    stored = local.get(RAYJOB, "cli-sel")
    assert stored is not None
    st = status(stored)
    rows = table(ok(local.kray("get", "jobs", "-o", "wide")))
    row = next(r for r in rows if r[0] == "cli-sel")
    assert row[:6] == ["cli-sel", "SUCCEEDED", "Complete", st["rayClusterName"], st["startTime"], st["endTime"]]
    assert row[7:] == ["default", st["jobId"], "python -c \"print('selected ran')\""]
    for output, parse in (("yaml", yaml.safe_load), ("json", json.loads)):
        listed = parse(ok(local.kray("get", "jobs", "-o", output)))
        assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
        assert "cli-sel" in [item["metadata"]["name"] for item in listed["items"]]
        one = parse(ok(local.kray("get", "jobs", "cli-sel", "-o", output)))
        assert one == stored
    missing = local.kray("get", "jobs", "cli-nothing", "-o", "yaml")
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_unknown_output_format_is_refused(local: Local) -> None:
    started = time.monotonic()
    result = local.kray("get", "clusters", "-o", "xml")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "xml" in result.stderr
    assert time.monotonic() - started < 30
