"""RayCronJob rules: KubeRay's ``ValidateRayCronJobSpec`` (name, cron schedule, time zone, template)."""

from __future__ import annotations

import re
import zoneinfo

from kray.api.errors import FieldError, shorten
from kray.api.rules.gates import FeatureGates
from kray.api.rules.rayjob import check_job_spec
from kray.api.rules.rayservice import parse_go_duration_seconds
from kray.api.v1.raycronjob import RayCronJob

MAX_RAYCRONJOB_NAME_LENGTH = 36  # 47 minus "-<unix minutes>" of the child RayJob
RULE = "ValidateRayCronJobSpec"
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_NAMES = {
    3: {
        m: i + 1
        for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}


def cron_problem(schedule: str) -> str | None:
    """Why a standard 5-field cron expression (robfig/cron ParseStandard) is invalid, or None."""
    text = schedule.strip()
    if text in _DESCRIPTORS:
        return None
    every = re.fullmatch(r"@every\s+(\S+)", text)
    if every:
        seconds = parse_go_duration_seconds(every.group(1))
        if seconds is None or seconds <= 0:
            return f"@every needs a positive Go duration, got {shorten(every.group(1))}"
        return None
    parts = text.split()
    if len(parts) != 5:
        return f"expected exactly 5 fields (minute hour day-of-month month day-of-week), found {len(parts)}"
    for index, (part, (low, high)) in enumerate(zip(parts, _FIELD_RANGES, strict=True)):
        for item in part.split(","):
            problem = _cron_item_problem(item, low, high, _NAMES.get(index, {}))
            if problem:
                return f"field {index + 1} ({shorten(part)}): {problem}"
    return None


_SMALL_NUMBER = re.compile(r"[0-9]{1,6}")


def _cron_item_problem(item: str, low: int, high: int, names: dict[str, int]) -> str | None:
    base, _, step = item.partition("/")
    if step and (not _SMALL_NUMBER.fullmatch(step) or int(step) == 0):
        return f"bad step {shorten(step)}"
    if base in {"*", "?"}:
        return None
    bounds = base.split("-")
    if len(bounds) > 2:
        return f"bad range {shorten(base)}"
    values = []
    for bound in bounds:
        value = int(bound) if _SMALL_NUMBER.fullmatch(bound) else names.get(bound.lower())
        if value is None:
            return f"{shorten(bound)} is not a number"
        if not low <= value <= high:
            return f"{value} is out of range [{low}, {high}]"
        values.append(value)
    if len(values) == 2 and values[0] > values[1]:
        return f"range {shorten(base)} starts after it ends"
    return None


def check_raycronjob(cron: RayCronJob, *, gates: FeatureGates) -> list[FieldError]:
    errors: list[FieldError] = []
    name = cron.metadata.name or ""
    if len(name) > MAX_RAYCRONJOB_NAME_LENGTH:
        errors.append(
            FieldError(
                "metadata.name",
                f"RayCronJob name should be no more than {MAX_RAYCRONJOB_NAME_LENGTH} characters",
                RULE,
            )
        )
    spec = cron.spec
    if "TZ" in spec.schedule:
        errors.append(FieldError("spec.schedule", "cannot use TZ or CRON_TZ in schedule; use timeZone instead", RULE))
    else:
        problem = cron_problem(spec.schedule)
        if problem:
            errors.append(FieldError("spec.schedule", f"invalid cron schedule: {problem}", RULE))
    if spec.time_zone is not None:
        try:
            zoneinfo.ZoneInfo(spec.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errors.append(FieldError("spec.timeZone", f"unknown time zone {shorten(spec.time_zone)}", RULE))
    errors += check_job_spec(spec.job_template, path="spec.jobTemplate", annotations={}, gates=gates)
    return errors
