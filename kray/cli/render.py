"""Pure renderers for CLI output: they build strings or rich renderables and never print."""

from __future__ import annotations

from kray.api.manifest import Outcome


def outcome_lines(outcome: Outcome) -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) for one validated document, as ``file: kind/name: path: message``."""
    where = f"{outcome.source}: {outcome.label}" if outcome.kind or outcome.name else outcome.source
    if outcome.errors:
        return [], [f"{where}: {error}" for error in outcome.errors]
    if outcome.skipped:
        return [], [f"{where}: skipped: {outcome.skipped}"]
    return [f"{where}: valid"], []


def summary_line(outcomes: list[Outcome]) -> str:
    invalid = sum(1 for o in outcomes if o.errors)
    skipped = sum(1 for o in outcomes if o.skipped and not o.errors)
    valid = len(outcomes) - invalid - skipped
    parts = [f"{valid} valid", f"{invalid} invalid"]
    if skipped:
        parts.append(f"{skipped} skipped")
    return ", ".join(parts)
