"""Several state directories on one machine: each server runs its own clusters, and stopping one — even after
it was killed with -9, leaving its pods' processes orphaned — touches nothing of another.

The module's ``local`` server is the bystander: it runs a cluster for the whole module, and every test checks
that this cluster's processes, ports and dashboard survived what the test did to its own server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psutil
import pytest

from kray.local.environment import NODE_PORTS_ANNOTATION, PORTS_ANNOTATION
from kray.local.paths import LocalPaths, ray_temp_root, remove_tree
from kray.local.podrunner import HOME_ENV, RAY_TEMP_DIR_ANNOTATION
from kray.local.server.launcher import sweep
from kray.local.tempdirs import mark
from kray.store import POD, RAYCLUSTER, RAYJOB

from .conftest import (
    Local,
    _processes_with_env,
    alive,
    annotations,
    cluster_spec,
    kill_server,
    long_lived,
    raycluster,
    rayjob,
    running_local,
    settle,
    status,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(800)]  # >= a test's bounded waits (test_suite_rules)

STARTUP = 240.0
"""A cluster's start on a loaded 2-core machine (measured: 30-60 s idle, up to 150 s under load)."""

TWIN = "lm-twin"
"""Every state dir names its cluster the same: names are per state dir, like per Kubernetes cluster."""


@dataclass(frozen=True)
class Bystander:
    local: Local
    daemons: list[psutil.Process]
    ports: set[int]


def reserved_ports(local: Local, cluster: str) -> set[int]:
    """Every port kray reserved for the cluster and its pods (the annotations the pods run with)."""
    obj = local.get(RAYCLUSTER, cluster)
    assert obj is not None
    texts = [annotations(obj).get(PORTS_ANNOTATION, "")]
    texts += [annotations(p).get(NODE_PORTS_ANNOTATION, "") for p in local.live_pods(cluster)]
    return {int(value) for text in texts for part in text.split(",") if part for value in [part.split("=")[1]]}


def listening_ports(processes: list[psutil.Process]) -> set[int]:
    found: set[int] = set()
    for proc in processes:
        try:
            found |= {c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue
    return found


def tagged(local: Local) -> list[int]:
    """Live processes whose environment names this state dir (what ``kray server stop`` sweeps)."""
    return [p.pid for p in _processes_with_env(HOME_ENV) if p.info["environ"].get(HOME_ENV) == str(local.home)]


def command_line(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return f"<{proc.pid} gone>"


def start_cluster(local: Local) -> None:
    applied = local.kray("apply", "-f", str(local.manifest(raycluster(TWIN, workers=0))))
    assert applied.returncode == 0, applied.stderr
    local.wait_cluster_ready(TWIN, workers=0, timeout=STARTUP)


def dashboard_answers(local: Local, cluster: str, *, token: str) -> int:
    url = f"{local.dashboard_url(cluster)}/api/jobs/"
    return httpx2.get(url, headers={"x-ray-authorization": f"Bearer {token}"}, timeout=10).status_code


@pytest.fixture(scope="module")
def bystander(local: Local) -> Bystander:
    start_cluster(local)
    daemons = [p for p in local.pod_processes(local.live_pods(TWIN)) if long_lived(p)]
    assert len(daemons) >= 4, [command_line(p) for p in daemons]  # ray start, gcs_server, raylet, dashboard
    return Bystander(local=local, daemons=daemons, ports=reserved_ports(local, TWIN))


def temp_dirs(local: Local) -> set[Path]:
    """The Ray temp dirs the state dir's pods were given (``kray.io/ray-temp-dir``)."""
    return {Path(d) for p in local.list(POD) if (d := annotations(p).get(RAY_TEMP_DIR_ANNOTATION))}


def assert_untouched(bystander: Bystander) -> None:
    local = bystander.local
    kept = temp_dirs(local)
    assert kept, "the bystander's pods name no Ray temp dir"
    assert [d for d in kept if not d.is_dir()] == [], "another state dir's Ray temp dirs were deleted"
    assert [p.pid for p in bystander.daemons if not alive(p)] == [], "another state dir's Ray processes were killed"
    assert status(local.get(RAYCLUSTER, TWIN)).get("state") == "ready"
    assert dashboard_answers(local, TWIN, token=local.cluster_token(TWIN)) == 200


def test_two_state_dirs_run_their_own_clusters_and_stopping_one_leaves_the_other(
    bystander: Bystander, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running_local(tmp_path_factory.mktemp("kr-second")) as second:
        assert second.info is not None
        assert bystander.local.info is not None
        assert second.info.url != bystander.local.info.url
        start_cluster(second)
        ports = reserved_ports(second, TWIN)
        assert len(ports) >= 8, ports
        assert ports.isdisjoint(bystander.ports), ports & bystander.ports
        processes = second.processes()
        bound = listening_ports(processes)
        assert bound.isdisjoint(listening_ports(bystander.daemons)), bound
        # Two clusters of one name, one per state dir: each dashboard is its own cluster's (its own token).
        token = second.cluster_token(TWIN)
        assert token != bystander.local.cluster_token(TWIN)
        assert dashboard_answers(second, TWIN, token=token) == 200
        assert dashboard_answers(bystander.local, TWIN, token=token) in {401, 403}

        stopped = second.kray("server", "stop")
        second.info = None
        assert stopped.returncode == 0, stopped.stderr
        assert settle(lambda: [p.pid for p in processes if alive(p)], timeout=30) == []
        assert tagged(second) == []
    assert_untouched(bystander)


def test_server_stop_after_kill_9_sweeps_the_orphans_of_its_state_dir_only(
    bystander: Bystander, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running_local(tmp_path_factory.mktemp("kr-killed")) as victim:
        entrypoint = "python -c \"import time; print('orphan driver', flush=True); time.sleep(600)\""
        victim.create(RAYJOB, rayjob("lm-orphan", entrypoint, rayClusterSpec=cluster_spec(workers=0)))
        cluster = status(victim.wait_job("lm-orphan", {"Running"}, timeout=STARTUP))["rayClusterName"]
        wait_for(lambda: "orphan driver" in victim.kray("logs", "lm-orphan").stdout, timeout=60, what="the driver")
        processes = victim.processes()
        lines = [command_line(p) for p in processes]
        assert any("orphan driver" in line for line in lines), lines  # the driver, in a session of its own
        assert any("JobSupervisor" in line for line in lines), lines  # a Ray worker renamed by setproctitle
        assert len(victim.pod_processes(victim.live_pods(cluster))) >= 4
        dirs = temp_dirs(victim)
        assert dirs, "the victim's pods name no Ray temp dir"
        assert [d for d in dirs if not d.is_dir()] == [], dirs

        kill_server(victim)
        orphans = [p for p in processes if alive(p)]  # Ray's short-lived helpers may have ended meanwhile
        daemons = [p for p in processes if long_lived(p)]
        assert len(daemons) >= 4, lines
        assert all(alive(p) for p in daemons), "the pods' processes must outlive a killed server"

        stopped = victim.kray("server", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "swept" in stopped.stdout, stopped.stdout
        left = settle(lambda: [command_line(p) for p in orphans if alive(p)], timeout=30)
        assert left == [], left
        assert tagged(victim) == []
        # Kill -9, then stop: nothing orphaned, the Ray temp dirs of the swept clusters included.
        assert [d for d in dirs if d.exists()] == []
    assert_untouched(bystander)


HIDDEN_CHILDREN = """
import os, subprocess, sys, time
# Ray's setproctitle can clobber the environment /proc shows: these children show none of the tag.
env = {k: v for k, v in os.environ.items() if k != "KRAY_LOCAL_HOME"}
sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
subprocess.Popen(sleep, env=env)  # same session and group
subprocess.Popen(sleep, env=env, process_group=0)  # own group, same session (as raylet puts Ray workers)
subprocess.Popen(sleep, env=env, start_new_session=True)  # own session: a descendant only
time.sleep(300)
"""


def test_sweep_kills_the_untagged_members_and_descendants_of_tagged_processes_only(tmp_path: Path) -> None:
    """No Ray here: the processes the sweep must find although their environment does not name the state dir."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", HIDDEN_CHILDREN if home is mine else "import time; time.sleep(300)"],
            env={**os.environ, HOME_ENV: str(home)},
            start_new_session=True,
        )
        for home in (mine, theirs)
    ]
    children: list[psutil.Process] = []
    try:
        leader, other = (psutil.Process(p.pid) for p in started)
        children = wait_for(lambda: len(leader.children()) == 3 and leader.children(), timeout=30, what="3 children")
        swept = sweep(LocalPaths(mine))
        assert sorted(swept) == sorted([leader.pid, *(c.pid for c in children)])
        assert [c.pid for c in children if alive(c)] == []
        assert started[0].wait(timeout=10) is not None
        assert alive(other), "a process of another state dir was swept"
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        for process in started:
            process.kill()
            process.wait(timeout=10)


def test_a_plain_server_stop_removes_its_state_dirs_unused_ray_temp_dirs_only(tmp_path: Path) -> None:
    """No Ray here: temp dirs marked as the pod runner marks them, that no pod of the running server names."""
    mine, theirs = (LocalPaths(tmp_path / name).ensure() for name in ("mine", "theirs"))
    root = ray_temp_root()
    left, other = root / f"t{os.getpid()}mine", root / f"t{os.getpid()}them"
    try:
        with running_local(mine.home) as server:
            mark(left / "w1", home=mine.home)  # a cluster's dir, and a worker's own dir inside it
            (left / "session_latest").mkdir()
            mark(other, home=theirs.home)
            stopped = server.kray("server", "stop")
            server.info = None
            assert stopped.returncode == 0, stopped.stderr
        assert not left.exists(), "the state dir's temp dir outlived kray server stop"
        assert other.is_dir(), "another state dir's temp dir was removed"
    finally:
        for path in (left, other):
            if path.exists():
                remove_tree(path, inside=root)
