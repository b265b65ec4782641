"""Wall time of ``kray job run`` against the same work done by hand with raw Ray, in one run.

The work: a 1-CPU head and one 1-CPU worker, a driver that runs 100 trivial tasks, then teardown.
By hand means what a user types: ``ray start --head``, ``ray start --address``, ``ray job submit``,
then stopping both nodes (here by killing their process trees, since ``ray stop`` would stop every
Ray on the machine). Both sides use Ray token auth, as kray always does.

Usage: ``python bench/job_run_bench.py [--rounds 3]``; prints each round and the median ratio.
Target: kray / raw ≤ 1.0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from kray.local.ports import PortAllocator

BIN = Path(sys.executable).parent
DRIVER = (
    "import ray; ray.init(); f = ray.remote(lambda i: i * i); print(sum(ray.get([f.remote(i) for i in range(100)])))"
)


def _group(name: str) -> dict[str, object]:
    container = {"name": name, "image": "rayproject/ray:2.60.0", "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}
    return {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}}


MANIFEST = yaml.safe_dump(
    {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "bench"},
        "spec": {
            "submissionMode": "HTTPMode",
            "entrypoint": f'python -c "{DRIVER}"',
            "shutdownAfterJobFinishes": True,
            "rayClusterSpec": {
                "rayVersion": "2.60.0",
                "headGroupSpec": _group("head"),
                "workerGroupSpecs": [
                    {"groupName": "w", "replicas": 1, "minReplicas": 1, "maxReplicas": 1, **_group("worker")}
                ],
            },
        },
    }
)


def free_ports(count: int) -> list[int]:
    return list(PortAllocator(Path(tempfile.mkdtemp(prefix="kb-"))).allocate(count, owner="bench"))


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    try:
        parent = psutil.Process(process.pid)
        members = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(members, timeout=15)


def raw_ray() -> float:
    gcs, dashboard, client, agent1, agent2, metrics1, metrics2, dmetrics, ametrics = free_ports(9)
    token = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "DASHBOARD_METRIC_PORT": str(dmetrics),
        "AUTOSCALER_METRIC_PORT": str(ametrics),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", "--block"]
    started = time.monotonic()
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            f"--port={gcs}",
            f"--dashboard-port={dashboard}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent1}",
            f"--metrics-export-port={metrics1}",
            *common,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            f"--address=127.0.0.1:{gcs}",
            f"--dashboard-agent-listen-port={agent2}",
            f"--metrics-export-port={metrics2}",
            *common,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(120):  # by hand, one waits until `ray job submit` gets through
            result = subprocess.run(
                [
                    str(BIN / "ray"),
                    "job",
                    "submit",
                    f"--address=http://127.0.0.1:{dashboard}",
                    "--",
                    "python",
                    "-c",
                    DRIVER,
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"raw ray job submit never succeeded: {result.stderr[-500:]}")
    finally:
        kill_tree(worker)
        kill_tree(head)
    return time.monotonic() - started


def kray_run(home: Path) -> float:
    manifest = home / "bench.yaml"
    manifest.write_text(MANIFEST)
    env = {**os.environ, "KRAY_HOME": str(home)}
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "kray"), "job", "run", "-q", "-f", str(manifest)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0 or "328350" not in result.stdout:
        raise RuntimeError(f"kray job run failed ({result.returncode}): {result.stderr[-800:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kb-", dir="/tmp"))
    subprocess.run(
        [str(BIN / "kray"), "server", "start"],
        env={**os.environ, "KRAY_HOME": str(home)},
        check=True,
        capture_output=True,
    )
    ratios = []
    try:
        for round_ in range(1, args.rounds + 1):
            raw = raw_ray()
            kray = kray_run(home)
            ratios.append(kray / raw)
            print(
                f"round {round_}: raw ray {raw:6.1f} s   kray job run {kray:6.1f} s   ratio {kray / raw:.2f}",
                flush=True,
            )
    finally:
        subprocess.run(
            [str(BIN / "kray"), "server", "stop"],
            env={**os.environ, "KRAY_HOME": str(home)},
            check=False,
            capture_output=True,
        )
    print(f"median ratio kray/raw = {statistics.median(ratios):.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
