"""Pure renderers for CLI output: they build strings and never print.

Tables are kubectl's: plain text, each column as wide as its widest value, three spaces apart, no box.
A value is never cut to fit a terminal; a line longer than the terminal wraps there, as kubectl's do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the models (pydantic) load only for the commands that validate
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


# -- tables of local-mode objects --------------------------------------------------------------------


def age(timestamp: str | None, *, now: datetime) -> str:
    """kubectl's compact age: 45s, 3m, 2h, 5d."""
    if not timestamp:
        return "-"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


COLUMN_GAP = "   "


def _table(columns: list[str], rows: list[list[str]]) -> str:
    """The header and rows, every column padded to its widest cell; no trailing spaces, no final newline."""
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]
    return "\n".join(
        COLUMN_GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (columns, *rows)
    )


def cluster_table(clusters: list[dict[str, Any]], *, now: datetime, wide: bool = False) -> str:
    columns = ["NAME", "DESIRED WORKERS", "AVAILABLE WORKERS", "CPUS", "MEMORY", "GPUS", "STATUS", "AGE"]
    if wide:
        columns += ["NAMESPACE", "HEAD POD IP", "DASHBOARD"]
    rows = []
    for cluster in clusters:
        meta, status = cluster["metadata"], cluster.get("status") or {}
        row = [
            meta["name"],
            str(status.get("desiredWorkerReplicas", 0)),
            str(status.get("availableWorkerReplicas", 0)),
            str(status.get("desiredCPU", "-")),
            str(status.get("desiredMemory", "-")),
            str(status.get("desiredGPU", "-")),
            status.get("state") or "provisioning",
            age(meta.get("creationTimestamp"), now=now),
        ]
        if wide:
            endpoints = status.get("endpoints") or {}
            row += [
                meta.get("namespace", ""),
                (status.get("head") or {}).get("podIP", "-"),
                f"127.0.0.1:{endpoints['dashboard']}" if "dashboard" in endpoints else "-",
            ]
        rows.append(row)
    return _table(columns, rows)


def job_rows(jobs: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Live RayJobs first, then finished ones only history remembers (their RayJob is gone)."""
    from kray.local.history import history_only

    rows: list[dict[str, str]] = []
    for job in jobs:
        meta, status = job["metadata"], job.get("status") or {}
        rows.append(
            {
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "submission": status.get("jobId") or "-",
                "job_status": status.get("jobStatus") or "-",
                "deployment": status.get("jobDeploymentStatus") or "-",
                "cluster": status.get("rayClusterName") or "-",
                "start": status.get("startTime") or "",
                "end": status.get("endTime") or "",
                "created": meta.get("creationTimestamp") or "",
                "entrypoint": (job.get("spec") or {}).get("entrypoint") or "",
            }
        )
    for record in history_only(jobs, history):
        rows.append(
            {
                "name": record["name"],
                "namespace": record["namespace"],
                "submission": record["submission_id"],
                "job_status": record["job_status"] or "-",
                "deployment": (record["deployment_status"] or "-") + " (history)",
                "cluster": record["cluster"] or "-",
                "start": record["start_time"] or "",
                "end": record["end_time"] or "",
                "created": record["created"] or "",
                "entrypoint": record["entrypoint"] or "",
            }
        )
    return rows


def job_table(rows: list[dict[str, str]], *, now: datetime, wide: bool = False) -> str:
    columns = ["NAME", "JOB STATUS", "DEPLOYMENT STATUS", "RAY CLUSTER", "START TIME", "END TIME", "AGE"]
    if wide:
        columns += ["NAMESPACE", "SUBMISSION ID", "ENTRYPOINT"]
    lines = []
    for row in rows:
        cells = [
            row["name"],
            row["job_status"],
            row["deployment"],
            row["cluster"],
            row["start"] or "-",
            row["end"] or "-",
            age(row["created"], now=now),
        ]
        if wide:
            entry = row["entrypoint"].strip().splitlines()[0] if row["entrypoint"].strip() else ""
            cells += [row["namespace"], row["submission"], entry or "-"]
        lines.append(cells)
    return _table(columns, lines)
