"""Embedded-store-only behaviour: crash safety (kill -9 mid-write), schema migrations, several
processes sharing one file (WAL, cross-process optimistic concurrency and watches), garbage
collection that resumes after a restart, compaction and shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kray.local.store import EmbeddedSettings, open_embedded_store
from kray.local.store.db import SCHEMA_VERSION
from kray.store import CONFIGMAP, NAMESPACE
from kray.store.errors import Unavailable
from tests.store.support import collect, configmap, eventually, gone, owner_ref

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.writer_process", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _acks_until_killed(proc: subprocess.Popen[str], *, kill_after: int, timeout: float = 60) -> list[tuple[str, int]]:
    """Read ``ack`` lines until ``kill_after`` of them arrived, then SIGKILL the writer mid-stream."""
    assert proc.stdout is not None
    acks: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(acks) < kill_after:
            if time.monotonic() > deadline or proc.poll() is not None:
                stderr = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                raise AssertionError(f"writer produced {len(acks)} acks, then stopped: {stderr[-2000:]}")
            line = proc.stdout.readline()
            if line.startswith("ack "):
                _, name, rv = line.split()
                acks.append((name, int(rv)))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return acks


def _check_invariants(path: Path) -> int:
    """The file is consistent: integrity, versions, bodies and the owner index agree. Returns the rv."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rv, compacted = conn.execute("SELECT rv, compacted_rv FROM meta").fetchone()
        (last_change,) = conn.execute("SELECT max(rv) FROM changes").fetchone()
        (last_object,) = conn.execute("SELECT max(rv) FROM objects").fetchone()
        assert last_change == rv
        assert last_object <= rv
        assert compacted <= rv
        expected_refs = set()
        rows = conn.execute("SELECT key, namespace, name, uid, rv, deleting, labels, body FROM objects")
        for key, namespace, name, uid, obj_rv, deleting, labels, body in rows:
            obj = json.loads(body)
            meta = obj["metadata"]
            assert (meta["name"], meta.get("namespace", ""), meta["uid"]) == (name, namespace, uid), key
            assert meta["resourceVersion"] == str(obj_rv)
            assert bool(deleting) == bool(meta.get("deletionTimestamp"))
            assert json.loads(labels) == meta.get("labels", {})
            expected_refs |= {(ref["uid"], uid) for ref in meta.get("ownerReferences", [])}
        assert set(conn.execute("SELECT owner_uid, dependent_uid FROM owner_refs")) == expected_refs
        versions = [row[0] for row in conn.execute("SELECT rv FROM changes ORDER BY rv")]
        assert versions == list(range(versions[0], versions[0] + len(versions)))  # no gaps
        return int(rv)
    finally:
        conn.close()


@pytest.mark.parametrize("kill_after", [50, 333, 1000])
async def test_kill_9_mid_write_leaves_a_consistent_store(tmp_path: Path, kill_after: int) -> None:
    path = tmp_path / "store.db"
    acks = _acks_until_killed(_spawn(str(path), "churn"), kill_after=kill_after)
    rv = _check_invariants(path)
    async with await open_embedded_store(path) as store:
        for name, acked_rv in acks[-5:]:  # every acknowledged write survived
            assert rv >= acked_rv
            if int(name.split("-")[1]) % 3:  # (every third owner is deleted, and its child collected)
                found = await store.get(CONFIGMAP, name, namespace="default")
                assert int(found["metadata"]["resourceVersion"]) >= acked_rv

        async def children_of_deleted_owners_collected() -> bool:
            listed = await store.list(CONFIGMAP, namespace="default")
            names = {item["metadata"]["name"] for item in listed.items}
            return not any(
                f"owner-{n.split('-')[1]}" not in names and int(n.split("-")[1]) % 3 == 0
                for n in names
                if n.startswith("child-")
            )

        await eventually(children_of_deleted_owners_collected, what="the GC to finish work queued before the kill")
        created = await store.create(CONFIGMAP, configmap("after-crash", "default"))
        assert int(created["metadata"]["resourceVersion"]) > rv
    _check_invariants(path)


async def test_an_empty_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.touch()
    async with await open_embedded_store(path) as store:
        assert (await store.get(NAMESPACE, "default", namespace=None))["status"]["phase"] == "Active"
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


async def test_reopening_keeps_objects_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await open_embedded_store(path) as store:
        first = await store.create(CONFIGMAP, configmap("a", "default"))
    async with await open_embedded_store(path) as store:
        assert await store.get(CONFIGMAP, "a", namespace="default") == first
        second = await store.create(CONFIGMAP, configmap("b", "default"))
        assert int(second["metadata"]["resourceVersion"]) == int(first["metadata"]["resourceVersion"]) + 1
        replay = store.watch(CONFIGMAP, namespace="default", resource_version="1")
        assert [e.object["metadata"]["name"] for e in await collect(replay, count=2)] == ["a", "b"]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(Unavailable, match="newer"):
        await open_embedded_store(path)


async def test_two_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await open_embedded_store(path, settings=EmbeddedSettings(poll_interval=0.05)) as store:
        start = (await store.list(CONFIGMAP, namespace="default")).resource_version
        events = store.watch(CONFIGMAP, namespace="default", resource_version=start)
        writers = [_spawn(str(path), "counter", tag, "40") for tag in ("p", "q")]
        for proc in writers:
            _, stderr = await asyncio.to_thread(proc.communicate, timeout=90)
            assert proc.returncode == 0, stderr
        counter = await store.get(CONFIGMAP, "counter", namespace="default")
        assert counter["data"] == {"n": "80"}  # no lost update across processes
        names = {item["metadata"]["name"] for item in (await store.list(CONFIGMAP, namespace="default")).items}
        assert {f"{tag}-{i}" for tag in "pq" for i in range(40)} <= names
        got = await collect(events, count=1 + 80 + 80)  # counter ADDED, 80 creates, 80 increments
        versions = [int(event.object["metadata"]["resourceVersion"]) for event in got]
        assert versions == sorted(versions)
        assert got[-1].object["data"] == {"n": "80"}


async def test_collection_work_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await open_embedded_store(path, settings=EmbeddedSettings(garbage_collection=False)) as store:
        owner = await store.create(CONFIGMAP, configmap("owner", "default"))
        await store.create(CONFIGMAP, configmap("child", "default", ownerReferences=[owner_ref(owner)]))
        await store.delete(CONFIGMAP, "owner", namespace="default")
        await asyncio.sleep(0.2)
        assert not await gone(store, CONFIGMAP, "child", "default")
    async with await open_embedded_store(path) as store:
        await eventually(lambda: gone(store, CONFIGMAP, "child", "default"), what="queued collection after reopen")


async def test_the_change_log_is_compacted(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    settings = EmbeddedSettings(retained_changes=50)
    async with await open_embedded_store(path, settings=settings) as store:
        obj = await store.create(CONFIGMAP, configmap("a", "default"))
        for index in range(300):
            obj["data"] = {"i": str(index)}
            obj = await store.replace(CONFIGMAP, obj)
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(*) FROM changes").fetchone()
        assert count <= 50 + 128
    finally:
        conn.close()


async def test_close_ends_watches_and_refuses_calls(tmp_path: Path) -> None:
    store = await open_embedded_store(tmp_path / "store.db")
    events = store.watch(CONFIGMAP, namespace="default", resource_version="0")
    consumer = asyncio.create_task(collect(events, seconds=30))
    await asyncio.sleep(0.1)
    await store.close()
    assert await asyncio.wait_for(consumer, timeout=5) == []
    with pytest.raises(Unavailable):
        await store.create(CONFIGMAP, configmap("late", "default"))
    with pytest.raises(Unavailable):
        store.watch(CONFIGMAP, namespace="default", resource_version="0")
