"""Job history: what ran, how it ended, and its full driver log, kept after the cluster is gone.

KubeRay loses a job's logs with its cluster; kray's RayJob controller tells this observer about
every status, and it records the job in ``history.sqlite`` and copies the driver log from Ray's
dashboard into ``logs/<namespace>/<rayjob>/<submission id>.log`` while the job runs and once more
when it ends (the final copy is complete, and marked so).

While a job's dashboard does not answer, its copies are spaced (:class:`LogBackoff`: 1 s doubling to
30 s, per job, reset by a copy that works) and the outage is logged once, not at every status.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from kray._ray.dashboard import AsyncDashboardClient
from kray._ray.errors import DashboardError
from kray.local.paths import LocalPaths
from kray.store import Obj

log = structlog.get_logger(__name__)

DELETED = "Deleted"
"""``deployment_status`` of a job whose RayJob was deleted before it ended (KubeRay has no such state)."""
_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
_ENDED = {"Complete", "Failed"}
"""KubeRay's final ``jobDeploymentStatus`` values of a RayJob whose Ray job was run."""
STOP_SETTLE_SECONDS = 3.0
"""How long a deleted job's Ray status is awaited after the stop request (Ray stops a driver in ~1 s)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    uid TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    submission_id TEXT,
    cluster TEXT,
    entrypoint TEXT,
    runtime_env TEXT,
    submitter TEXT,
    job_status TEXT,
    deployment_status TEXT,
    reason TEXT,
    message TEXT,
    created TEXT,
    start_time TEXT,
    end_time TEXT,
    log_path TEXT,
    log_complete INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_name ON jobs(namespace, name);
CREATE TABLE IF NOT EXISTS serve_configs (
    event TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    cluster TEXT NOT NULL,
    time TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS serve_configs_by_name ON serve_configs(namespace, name);
"""

_FIELDS = (
    "uid",
    "namespace",
    "name",
    "submission_id",
    "cluster",
    "entrypoint",
    "runtime_env",
    "submitter",
    "job_status",
    "deployment_status",
    "reason",
    "message",
    "created",
    "start_time",
    "end_time",
    "log_path",
    "log_complete",
)


@dataclass(frozen=True, slots=True)
class JobRecord:
    uid: str
    namespace: str
    name: str
    submission_id: str | None
    cluster: str | None
    entrypoint: str | None
    runtime_env: str | None
    submitter: str | None
    job_status: str | None
    deployment_status: str | None
    reason: str | None
    message: str | None
    created: str | None
    start_time: str | None
    end_time: str | None
    log_path: str | None
    log_complete: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


@dataclass(frozen=True, slots=True)
class ServeConfigChange:
    """One Serve config PUT to a RayService's cluster (kept after the cluster, and the RayService, are gone)."""

    event: str
    """The controller's ``UpdatedServeApplications`` Event: the same PUT is recorded once."""
    namespace: str
    name: str
    uid: str
    cluster: str
    time: str
    config_hash: str
    summary: str

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


RECORD_API_VERSION, RECORD_KIND = "kray.io/v1", "JobRecord"


def history_only(jobs: Iterable[Obj], records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records (:meth:`JobRecord.as_dict`) of submissions no live RayJob shows: its RayJob is gone, or it
    is an earlier submission of one; a record without a submission id ran nothing and is left out."""
    live = {
        (job["metadata"].get("namespace"), job["metadata"]["name"], (job.get("status") or {}).get("jobId"))
        for job in jobs
    }
    return [r for r in records if r["submission_id"] and (r["namespace"], r["name"], r["submission_id"]) not in live]


def record_object(record: Mapping[str, Any]) -> dict[str, Any]:
    """A history record as a ``kray.io/v1`` ``JobRecord`` for ``kray get jobs -o yaml|json``: never a RayJob
    (history keeps no spec, and a made-up one would read as an object the store has). ``metadata`` names the
    RayJob it was; ``record`` carries every field of the record as history stores it."""
    metadata = {"name": record["name"], "namespace": record["namespace"]}
    if record.get("created"):
        metadata["creationTimestamp"] = record["created"]
    return {
        "apiVersion": RECORD_API_VERSION,
        "kind": RECORD_KIND,
        "metadata": metadata,
        "record": {name: record.get(name) for name in _FIELDS},
    }


@dataclass
class LogBackoff:
    """When each job's log may next be asked of its dashboard, after failed attempts (keyed by record uid)."""

    first: float = 1.0
    longest: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _waits: dict[str, tuple[float, float]] = field(default_factory=dict)
    """uid -> (next attempt at, the wait after that one fails)."""
    _finals: set[str] = field(default_factory=set)
    """Jobs whose first attempt after they ended was made (it skips the wait: it may be the complete copy)."""

    def due(self, uid: str, *, final: bool = False) -> bool:
        wait = self._waits.get(uid)
        if wait is None:
            return True
        if final and uid not in self._finals:
            self._finals.add(uid)
            return True
        return self.clock() >= wait[0]

    def failed(self, uid: str) -> bool:
        """Record a failure; True when it starts an outage (the one to report)."""
        started = uid not in self._waits
        delay = self.first if started else self._waits[uid][1]
        self._waits[uid] = (self.clock() + delay, min(delay * 2, self.longest))
        return started

    def succeeded(self, uid: str) -> bool:
        """Forget the job's outage; True when there was one."""
        self._finals.discard(uid)
        return self._waits.pop(uid, None) is not None


class JobHistory:
    def __init__(self, paths: LocalPaths, *, backoff: LogBackoff | None = None) -> None:
        self.paths = paths
        self.backoff = backoff or LogBackoff()
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.paths.history, timeout=5.0)) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            yield db

    def records(self, *, namespace: str | None = None, name: str | None = None) -> list[JobRecord]:
        query, args = "SELECT " + ", ".join(_FIELDS) + " FROM jobs", []
        clauses = []
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(namespace)
        if name is not None:
            clauses.append("name = ?")
            args.append(name)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY created, start_time", args).fetchall()
        return [JobRecord(*row) for row in rows]

    def serve_config_changed(self, change: ServeConfigChange) -> None:
        row = change.as_dict()
        with self._db() as db:
            db.execute(
                f"INSERT OR IGNORE INTO serve_configs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )

    def serve_changes(self, *, namespace: str | None = None, name: str | None = None) -> list[ServeConfigChange]:
        """Serve config PUTs, oldest first."""
        clauses = [(c, v) for c, v in (("namespace", namespace), ("name", name)) if v is not None]
        where = " WHERE " + " AND ".join(f"{c} = ?" for c, _ in clauses) if clauses else ""
        columns = ", ".join(f.name for f in fields(ServeConfigChange))
        with self._db() as db:
            rows = db.execute(
                f"SELECT {columns} FROM serve_configs{where} ORDER BY time, rowid", [v for _, v in clauses]
            ).fetchall()
        return [ServeConfigChange(*row) for row in rows]

    async def observe(self, *, job: Obj, status: dict[str, Any], dashboard: AsyncDashboardClient | None) -> None:
        row = self._row(job, status)
        if row is None:
            return  # no Ray job yet (New, Retrying, Suspended, ...): nothing to remember, no phantom row
        await asyncio.to_thread(self._upsert, row)
        terminal = status.get("jobStatus") in _TERMINAL
        if dashboard is not None and self.backoff.due(row["uid"], final=terminal):
            await self._copy_log(row, dashboard, terminal=terminal)

    async def deleted(self, *, job: Obj, status: dict[str, Any], dashboard: AsyncDashboardClient | None) -> None:
        """The RayJob is going away (its Ray job was asked to stop): record how it ended, and the whole log."""
        row = self._row(job, status)
        if row is None:
            return
        ray_status = status.get("jobStatus")
        if dashboard is not None and ray_status not in _TERMINAL:
            ray_status = await _settled_status(dashboard, row["submission_id"]) or ray_status
        if ray_status not in _TERMINAL:
            # Asked to stop, or its cluster is going with the RayJob (a foreground delete removes both at
            # once): either way it does not run any more.
            ray_status = "STOPPED"
        # A RayJob that had ended (Complete, Failed) keeps that outcome; deleting it afterwards changes nothing.
        ended = status.get("jobDeploymentStatus") in _ENDED
        row.update(job_status=ray_status, deployment_status=row["deployment_status"] if ended else DELETED)
        row["end_time"] = row["end_time"] or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await asyncio.to_thread(self._upsert, row)
        if dashboard is not None:  # the last chance: tried whatever the backoff says
            await self._copy_log(row, dashboard, terminal=True)
        self.backoff.succeeded(row["uid"])  # nothing is asked of this job any more

    def _row(self, job: Obj, status: dict[str, Any]) -> dict[str, Any] | None:
        meta = job["metadata"]
        spec = job.get("spec") or {}
        submission = status.get("jobId")
        if not submission:
            return None
        return {
            "uid": f"{meta['uid']}/{submission}",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "submission_id": submission,
            "cluster": status.get("rayClusterName"),
            "entrypoint": spec.get("entrypoint"),
            "runtime_env": spec.get("runtimeEnvYAML"),
            "submitter": (meta.get("annotations") or {}).get("kray.io/submitter"),
            "job_status": status.get("jobStatus"),
            "deployment_status": status.get("jobDeploymentStatus"),
            "reason": status.get("reason"),
            "message": status.get("message"),
            "created": meta.get("creationTimestamp"),
            "start_time": status.get("startTime"),
            "end_time": status.get("endTime"),
            "log_path": str(self.paths.job_log(meta["namespace"], meta["name"], submission)),
        }

    async def _copy_log(self, row: dict[str, Any], dashboard: AsyncDashboardClient, *, terminal: bool) -> None:
        record = await asyncio.to_thread(self.latest_by_uid, row["uid"])
        if record is not None and record.log_complete:
            return
        try:
            text = await dashboard.get_job_logs(row["submission_id"])
        except DashboardError as error:
            if self.backoff.failed(row["uid"]):
                log.debug("history.logs_unavailable", job=row["name"], error=str(error))
            return
        if self.backoff.succeeded(row["uid"]):
            log.debug("history.logs_available", job=row["name"])
        await asyncio.to_thread(_write_if_longer, Path(row["log_path"]), text)
        if terminal:
            await asyncio.to_thread(self._mark_complete, row["uid"])

    def latest_by_uid(self, uid: str) -> JobRecord | None:
        with self._db() as db:
            row = db.execute("SELECT " + ", ".join(_FIELDS) + " FROM jobs WHERE uid = ?", (uid,)).fetchone()
        return JobRecord(*row) if row else None

    def _upsert(self, row: dict[str, Any]) -> None:
        columns = [k for k in row if k != "uid"]
        updates = ", ".join(f"{c} = COALESCE(excluded.{c}, jobs.{c})" for c in columns)
        with self._db() as db:
            db.execute(
                f"INSERT INTO jobs (uid, {', '.join(columns)}) VALUES (?, {', '.join('?' for _ in columns)}) "
                f"ON CONFLICT(uid) DO UPDATE SET {updates}",
                [row["uid"], *(row[c] for c in columns)],
            )

    def _mark_complete(self, uid: str) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET log_complete = 1 WHERE uid = ?", (uid,))


async def _settled_status(dashboard: AsyncDashboardClient, submission: str) -> str | None:
    """The Ray job's status once terminal (within :data:`STOP_SETTLE_SECONDS`), else the last one seen, if any."""
    seen: str | None = None
    deadline = asyncio.get_running_loop().time() + STOP_SETTLE_SECONDS
    while True:
        try:
            seen = (await dashboard.get_job(submission)).status.value
        except DashboardError:
            return seen
        if seen in _TERMINAL or asyncio.get_running_loop().time() >= deadline:
            return seen
        await asyncio.sleep(0.25)


def _write_if_longer(path: Path, text: str) -> None:
    """Ray's log endpoint returns the whole log: keep the longest copy (never truncate on a hiccup)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    if path.exists() and path.stat().st_size >= len(data):
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def submitter_identity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
