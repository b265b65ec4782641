"""KubeRay's RayCronJob validation (reference §1.5/§1.6) through kray's manifest pipeline.

Why: a RayCronJob's schedule is only parsed when the controller first reconciles it, so a typo in
the cron expression or the time zone surfaces hours later; kray refuses it at once. The job
template is a RayJob spec and gets every RayJob rule, reported under ``spec.jobTemplate``.
"""

from __future__ import annotations

from typing import Any

import pytest

from kray.api.rules import FeatureGates
from tests.api.rules.support import DELETE, assert_errors, cluster_spec, errors_of, with_changes

RULE = "ValidateRayCronJobSpec"


BASE: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCronJob",
    "metadata": {"name": "nightly"},
    "spec": {
        "schedule": "*/5 * * * *",
        "jobTemplate": {
            "entrypoint": "python -c 'print(1)'",
            "shutdownAfterJobFinishes": True,
            "rayClusterSpec": cluster_spec(),
        },
    },
}


def test_base_manifest_is_valid() -> None:
    assert errors_of(BASE) == ()
    assert errors_of(BASE, FeatureGates.all_enabled()) == ()


def schedule(value: str) -> dict[str, Any]:
    return {"spec.schedule": value}


INVALID = [
    pytest.param(schedule("* * * *"), [("spec.schedule", RULE, "expected exactly 5 fields")], id="schedule-4-fields"),
    pytest.param(schedule("0 */5 * * * *"), [("spec.schedule", RULE, "found 6")], id="schedule-6-fields"),
    pytest.param(schedule(""), [("spec.schedule", RULE, "found 0")], id="schedule-empty"),
    pytest.param(
        schedule("60 * * * *"),
        [("spec.schedule", RULE, "field 1 ('60'): 60 is out of range [0, 59]")],
        id="minute-60",
    ),
    pytest.param(schedule("0 24 * * *"), [("spec.schedule", RULE, "24 is out of range [0, 23]")], id="hour-24"),
    pytest.param(schedule("0 0 0 * *"), [("spec.schedule", RULE, "0 is out of range [1, 31]")], id="day-0"),
    pytest.param(schedule("0 0 32 * *"), [("spec.schedule", RULE, "32 is out of range [1, 31]")], id="day-32"),
    pytest.param(schedule("0 0 * 13 *"), [("spec.schedule", RULE, "13 is out of range [1, 12]")], id="month-13"),
    pytest.param(schedule("0 0 * * 7"), [("spec.schedule", RULE, "7 is out of range [0, 6]")], id="weekday-7"),
    pytest.param(
        schedule("0 0 1,40 * *"), [("spec.schedule", RULE, "40 is out of range")], id="list-item-out-of-range"
    ),
    pytest.param(schedule("*/0 * * * *"), [("spec.schedule", RULE, "bad step '0'")], id="step-zero"),
    pytest.param(schedule("*/x * * * *"), [("spec.schedule", RULE, "bad step 'x'")], id="step-not-number"),
    pytest.param(schedule("0 0 1-2-3 * *"), [("spec.schedule", RULE, "bad range '1-2-3'")], id="range-three-parts"),
    pytest.param(schedule("x * * * *"), [("spec.schedule", RULE, "'x' is not a number")], id="minute-word"),
    pytest.param(
        schedule("0 0 * * FUNDAY"), [("spec.schedule", RULE, "'FUNDAY' is not a number")], id="weekday-bad-name"
    ),
    pytest.param(schedule("0 0 JAN * *"), [("spec.schedule", RULE, "field 3")], id="month-name-in-day-field"),
    pytest.param(
        schedule("CRON_TZ=UTC 0 * * * *"),
        [("spec.schedule", RULE, "cannot use TZ or CRON_TZ in schedule; use timeZone instead")],
        id="cron-tz-in-schedule",
    ),
    pytest.param(
        schedule("TZ=Asia/Tokyo 0 9 * * *"),
        [("spec.schedule", RULE, "cannot use TZ or CRON_TZ")],
        id="tz-in-schedule",
    ),
    pytest.param(
        {"spec.timeZone": "Mars/Olympus_Mons"},
        [("spec.timeZone", RULE, "unknown time zone 'Mars/Olympus_Mons'")],
        id="time-zone-unknown",
    ),
    pytest.param(
        {"spec.timeZone": "../../etc/passwd"},
        [("spec.timeZone", RULE, "unknown time zone")],
        id="time-zone-path",
    ),
    pytest.param(
        {"spec.timeZone": ""},
        [("spec.timeZone", "schema", "must be at least 1 character(s) long")],
        id="time-zone-empty",
    ),
    pytest.param(
        {"metadata.name": "c" * 37},
        [("metadata.name", RULE, "RayCronJob name should be no more than 36 characters")],
        id="name-37-chars",
    ),
    pytest.param(
        {"spec.jobTemplate.shutdownAfterJobFinishes": False, "spec.jobTemplate.suspend": True},
        [("spec.jobTemplate.suspend", "ValidateRayJobSpec", "cannot be suspended")],
        id="job-template-suspend-without-shutdown",
    ),
    pytest.param(
        {"spec.jobTemplate.rayClusterSpec": DELETE},
        [("spec.jobTemplate.rayClusterSpec", "ValidateRayJobSpec", "one of rayClusterSpec or clusterSelector")],
        id="job-template-without-cluster",
    ),
    pytest.param(
        {"spec.jobTemplate.rayClusterSpec.workerGroupSpecs[0].minReplicas": 7},
        [
            (
                "spec.jobTemplate.rayClusterSpec.workerGroupSpecs[0].minReplicas",
                "ValidateRayClusterSpec",
                "7 is greater than maxReplicas 3",
            )
        ],
        id="job-template-cluster-min-greater-than-max",
    ),
    pytest.param(
        {"spec.jobTemplate.submissionMode": "InteractivMode"},
        [("spec.jobTemplate.submissionMode", "schema", '(did you mean "InteractiveMode"?)')],
        id="job-template-submission-mode-typo",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), INVALID)
def test_invalid_raycronjob(changes: dict[str, Any], expected: list[tuple[str, str, str]]) -> None:
    assert_errors(errors_of(with_changes(BASE, changes)), expected)


VALID = [
    pytest.param(schedule("@hourly"), id="descriptor-hourly"),
    pytest.param(schedule("@midnight"), id="descriptor-midnight"),
    pytest.param(schedule("@every 1h30m"), id="every-duration"),
    pytest.param(schedule("0 0 * * 0"), id="sunday-0"),
    pytest.param(schedule("59 23 31 12 6"), id="upper-bounds"),
    pytest.param(schedule("0 9 * JAN-MAR MON-FRI"), id="month-and-weekday-names"),
    pytest.param(schedule("0 9 * jan-mar mon-fri"), id="lowercase-names"),
    pytest.param(schedule("*/15 0-23/2 1,15 * ?"), id="steps-ranges-lists"),
    pytest.param(schedule("  0   0 * * *  "), id="extra-whitespace"),
    pytest.param({"spec.timeZone": "America/New_York"}, id="time-zone-new-york"),
    pytest.param({"spec.timeZone": "UTC"}, id="time-zone-utc"),
    pytest.param({"metadata.name": "c" * 36}, id="name-36-chars"),
    pytest.param({"spec.suspend": True}, id="cron-suspend"),
]


@pytest.mark.parametrize("changes", VALID)
def test_valid_raycronjob_neighbour(changes: dict[str, Any]) -> None:
    errors = errors_of(with_changes(BASE, changes))
    assert errors == (), [str(e) for e in errors]


def test_all_errors_are_reported_together() -> None:
    manifest = with_changes(
        BASE,
        {"spec.schedule": "61 * * * *", "spec.timeZone": "Nowhere/City", "spec.jobTemplate.activeDeadlineSeconds": 0},
    )
    assert_errors(
        errors_of(manifest),
        [
            ("spec.schedule", RULE, "61 is out of range [0, 59]"),
            ("spec.timeZone", RULE, "unknown time zone 'Nowhere/City'"),
            ("spec.jobTemplate.activeDeadlineSeconds", "ValidateRayJobSpec", "must be a positive integer"),
        ],
    )
