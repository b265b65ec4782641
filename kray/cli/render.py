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


# -- RayServices -------------------------------------------------------------------------------------


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c.get("type") == type_), {})


def service_state(service: dict[str, Any]) -> str:
    """Ready, else the Ready condition's reason (KubeRay's: Initializing, ZeroServeEndpoints, ...); Suspended or
    Suspending when so; ``(upgrading)`` while UpgradeInProgress is True."""
    status = service.get("status") or {}
    if (service.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for type_ in ("Suspended", "Suspending"):
        if _condition(status, type_).get("status") == "True":
            return type_
    ready = _condition(status, "Ready")
    state = "Ready" if ready.get("status") == "True" else ready.get("reason") or "-"
    return f"{state} (upgrading)" if _condition(status, "UpgradeInProgress").get("status") == "True" else state


def serve_url(service: dict[str, Any]) -> str:
    from kray.local.serve_routes import serve_address

    address = serve_address(service)
    return f"http://{address}" if address else "-"


def service_table(services: list[dict[str, Any]], *, now: datetime) -> str:
    columns = ["NAME", "NAMESPACE", "STATUS", "ACTIVE CLUSTER", "PENDING CLUSTER", "SERVE ADDRESS", "AGE"]
    rows = []
    for service in services:
        meta, status = service["metadata"], service.get("status") or {}
        rows.append(
            [
                meta["name"],
                meta.get("namespace", ""),
                service_state(service),
                (status.get("activeServiceStatus") or {}).get("rayClusterName") or "-",
                (status.get("pendingServiceStatus") or {}).get("rayClusterName") or "-",
                serve_url(service),
                age(meta.get("creationTimestamp"), now=now),
            ]
        )
    return _table(columns, rows)


def _cluster_lines(role: str, cluster: dict[str, Any]) -> list[str]:
    name = cluster.get("rayClusterName")
    if not name:
        return [f"  {role}: -"]
    extra = [
        f"{label} {cluster[key]}%"
        for key, label in (("trafficRoutedPercent", "traffic"), ("targetCapacity", "capacity"))
        if cluster.get(key) is not None
    ]
    lines = [f"  {role}: {name}" + (f" ({', '.join(extra)})" if extra else "")]
    for app_name, app in sorted((cluster.get("applicationStatuses") or {}).items()):
        lines.append(f"    app {app_name}: {app.get('status', '?')}" + _said(app.get("message")))
        for deployment, state in sorted((app.get("serveDeploymentStatuses") or {}).items()):
            lines.append(f"      {deployment}: {state.get('status', '?')}" + _said(state.get("message")))
    return lines


def _said(message: str | None) -> str:
    first = (message or "").strip().splitlines()
    return f" -- {first[0]}" if first else ""


def service_summary(service: dict[str, Any], changes: list[dict[str, Any]]) -> str:
    """``kray describe service``'s summary: address, state, conditions, both clusters with their applications
    and deployments, and the Serve config changes history keeps (oldest first)."""
    status = service.get("status") or {}
    lines = [f"Serve address: {serve_url(service)}", f"Status: {service_state(service)}", "Conditions:"]
    for condition in status.get("conditions") or ():
        lines.append(
            f"  {condition.get('type')}={condition.get('status')} {condition.get('reason', '')}"
            + _said(condition.get("message"))
        )
    lines.append("Clusters:")
    lines += _cluster_lines("active", status.get("activeServiceStatus") or {})
    lines += _cluster_lines("pending", status.get("pendingServiceStatus") or {})
    lines.append("Serve config changes:")
    if not changes:
        lines.append("  -")
    for change in changes:
        lines.append(f"  {change['time']}  {change['cluster']}  {change['config_hash']}  {change['summary']}")
    return "\n".join(lines)
