"""Pod troubles: what a cluster's pod status says about why it is not up."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kray.controllers.common.diagnosis import (
    MAX_LOG_TAIL,
    PodTrouble,
    pod_trouble,
    startup_failure,
    troubles,
    unready_report,
)


def pod(
    name: str,
    *,
    node_type: str = "worker",
    phase: str = "Running",
    ready: bool = False,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
    deleting: bool = False,
    message: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"ray.io/node-type": node_type}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T00:00:00Z"
    container: dict[str, Any] = {"name": "ray", "restartCount": restarts, "state": state or {"running": {}}}
    if last is not None:
        container["lastState"] = {"terminated": last}
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [container],
    }
    if message is not None:
        status["message"] = message
    return {"metadata": meta, "spec": {"containers": [{"name": "ray"}]}, "status": status}


CRASH = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}
EXIT_1 = {"exitCode": 1, "reason": "Error", "message": "Traceback ...\nOSError: [Errno 98] Address already in use"}


def test_a_running_ready_pod_and_a_deleting_pod_have_no_trouble() -> None:
    assert pod_trouble(pod("ok", ready=True)) is None
    assert pod_trouble(pod("gone", state=CRASH, restarts=9, deleting=True)) is None


def test_a_crash_looping_container_reports_restarts_exit_code_and_log_tail() -> None:
    trouble = pod_trouble(pod("c-head-x", node_type="head", state=CRASH, last=EXIT_1, restarts=3))
    assert trouble == PodTrouble(
        pod="c-head-x",
        node_type="head",
        container="ray",
        state="CrashLoopBackOff",
        restarts=3,
        failed=False,
        exit_code=1,
        log_tail=EXIT_1["message"],
    )
    assert trouble.summary() == "head pod c-head-x: CrashLoopBackOff after 3 restarts (last exit code 1)"
    assert trouble.describe().endswith("last log lines:\nTraceback ...\nOSError: [Errno 98] Address already in use")


@pytest.mark.parametrize(
    ("body", "state", "failed"),
    [
        (pod("p", phase="Pending", state={"waiting": {"reason": "ContainerCreating"}}), "ContainerCreating", False),
        (pod("p", phase="Running"), "Running, not Ready", False),
        (pod("p", phase="Failed", state={"terminated": EXIT_1}), "Error", True),
        (pod("p", phase="Failed", state={}, message="init container wait-gcs-ready exited 1"), "Failed", True),
        (pod("p", state={"waiting": {"reason": "CreateContainerConfigError"}}), "CreateContainerConfigError", False),
    ],
)
def test_the_state_names_the_most_specific_reason(body: dict[str, Any], state: str, failed: bool) -> None:
    trouble = pod_trouble(body)
    assert trouble is not None
    assert (trouble.state, trouble.failed) == (state, failed)


def test_a_failed_pod_without_container_output_quotes_the_pod_message() -> None:
    trouble = pod_trouble(pod("p", phase="Failed", state={}, message="init container exited 1:\nno such file"))
    assert trouble is not None
    assert trouble.log_tail.endswith("no such file")


def test_long_output_keeps_its_end() -> None:
    tail = "x" * (3 * MAX_LOG_TAIL) + "THE END"
    trouble = pod_trouble(pod("p", state=CRASH, last={**EXIT_1, "message": tail}, restarts=1))
    assert trouble is not None
    described = trouble.describe()
    assert described.endswith("THE END")
    assert len(described) < MAX_LOG_TAIL + 200


def test_troubles_put_the_head_first() -> None:
    found = troubles([pod("b-worker"), pod("a-worker"), pod("z-head", node_type="head"), pod("ok", ready=True)])
    assert [t.pod for t in found] == ["z-head", "a-worker", "b-worker"]


@pytest.mark.parametrize(("restarts", "stuck"), [(0, False), (2, False), (3, True), (7, True)])
def test_startup_failure_after_the_restart_threshold(restarts: int, stuck: bool) -> None:
    found = troubles([pod("w", state=CRASH, last=EXIT_1, restarts=restarts)])
    assert (startup_failure(found, crash_loop_restarts=3) is not None) is stuck


def test_a_failed_pod_is_a_startup_failure_at_once() -> None:
    found = troubles([pod("w", phase="Failed", state={"terminated": EXIT_1})])
    assert startup_failure(found, crash_loop_restarts=3) == found[0]


def test_unready_report_quotes_the_first_pod_and_counts_the_rest() -> None:
    found = troubles(
        [pod("h", node_type="head", state=CRASH, last=EXIT_1, restarts=1), *(pod(f"w{i}") for i in range(5))]
    )
    report = unready_report(found, limit=3)
    lines = report.splitlines()
    assert lines[0] == "head pod h: CrashLoopBackOff after 1 restart (last exit code 1); last log lines:"
    assert "Address already in use" in report
    assert lines[-1] == "... and 3 more pods not ready"
    assert unready_report([]) == ""


states = st.sampled_from([CRASH, {"running": {}}, {"waiting": {"reason": "ContainerCreating"}}, {"terminated": EXIT_1}])


@given(
    specs=st.lists(
        st.tuples(st.sampled_from(["Pending", "Running", "Failed"]), st.booleans(), states, st.integers(0, 20)),
        max_size=8,
    ),
    threshold=st.integers(1, 10),
)
def test_startup_failure_is_only_ever_a_failed_or_restarted_pod(
    specs: list[tuple[str, bool, dict[str, Any], int]], threshold: int
) -> None:
    pods = [pod(f"p{i}", phase=ph, ready=r, state=s, restarts=n) for i, (ph, r, s, n) in enumerate(specs)]
    found = troubles(pods)
    assert len(found) <= len(pods)
    stuck = startup_failure(found, crash_loop_restarts=threshold)
    if stuck is None:
        assert all(not t.failed and t.restarts < threshold for t in found)
    else:
        assert stuck.failed or stuck.restarts >= threshold
        assert stuck.pod in stuck.summary()
