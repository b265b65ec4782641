"""One RayJob (1 head + 1 worker, 100 tasks) three ways, in one run: raw Ray by hand, ``kray job run`` in local
mode, and kray's operator as a pod on a ``kray dev node`` agent of a real control plane. Prints times and ratios.

Why: issue 9's node agent runs real Ray for real pods; what that costs against the same work done by hand (and
against local mode, which skips Kubernetes) is the number its note reports. All three run in one process of
measurement on the same (possibly loaded) machine, one after the other, so the ratios compare like with like.

The work: a RayJob (HTTPMode, ``shutdownAfterJobFinishes``) whose driver runs 100 trivial tasks
(``ray.get([f.remote(i) for i in range(100)])``), on a 1-CPU head and one 1-CPU worker (1 GiB each):

* ``raw`` -- what a user types: ``ray start --head``, once the head is ALIVE ``ray start --address`` (both
  ``--block``, token auth on as kray always has it), once the dashboard lists both nodes ALIVE ``ray job
  submit`` (which follows the job to its end), then stopping both nodes. A ``ray start`` that gives up (Ray
  gives a node 30 s to register, which a loaded machine misses) is started again, as a user would: the time
  counts, the retries are noted under the table. ``ray stop`` would stop every Ray of the machine (other users'
  too), so the bench kills the two ``ray start`` process trees instead. ``total`` ends when they are gone.
* ``local`` -- ``kray job run -f job.yaml`` with its own ``KRAY_HOME``; its server is started before (setup, not
  counted). ``total`` ends when the command exits (the server tears the cluster down after that).
* ``node`` -- the RayJob created on a control plane of its own whose only node is a ``kray dev node`` agent
  (each pod in its own network namespace) running kray's operator, installed with its chart, as a pod. The
  setup (control plane, agent, operator Ready) is not counted but printed. ``total`` is create → the RayJob's
  ``jobDeploymentStatus`` Complete; ``teardown`` is Complete → the cluster's last pod gone.

Phases (seconds from the start): ``head ready`` (raw: the head ALIVE; the others: the head pod Ready),
``cluster ready`` (raw: both nodes ALIVE; local and node: the RayJob Running, i.e. its cluster ready and the
job being submitted), ``job RUNNING`` (Ray's job status), ``job done`` (raw: ``ray job submit`` returned;
local: the Complete line; node: Complete). ``local`` reads its
phases from ``kray job run``'s progress lines, which it polls every 0.5 s; the others poll every 0.2 s. A phase
not seen between two polls (a RayJob's ``jobStatus`` may go from unset to SUCCEEDED) takes the next one's time.

Rounds run raw and local alternately first, then set up the node cluster and run its rounds, so the idle
control plane does not load the other two. With ``--repeat N`` the table shows each metric's median.

    .venv/bin/python bench/node_bench.py [--repeat 1] [--only raw,local,node] [--timeout 300]

Also accepted in ``--only``: ``a``, ``b``, ``c`` for raw, local, node. Progress goes to stderr, the table
(metric | raw Ray | kray job run | operator on node | local/raw | node/raw) to stdout.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import yaml
from node_bench_cluster import NodeCluster, wait_for

from kray.local.ports import PortAllocator

BIN = Path(sys.executable).parent
MODES = ("raw", "local", "node")
ALIASES = {"a": "raw", "b": "local", "c": "node"}
LABELS = {"raw": "raw Ray", "local": "kray job run", "node": "operator on node"}
DRIVER = (
    "import ray; ray.init(); f = ray.remote(lambda i: i * i); print(sum(ray.get([f.remote(i) for i in range(100)])))"
)
ANSWER = str(sum(i * i for i in range(100)))  # what the driver prints: 328350
MEMORY = "1Gi"
RAW_START_ATTEMPTS = 3
ROWS = (
    ("head ready (s)", "head ready"),
    ("cluster ready (s)", "ready"),
    ("job RUNNING (s)", "running"),
    ("job done (s)", "done"),
    ("total (s)", "total"),
    ("teardown after done (s)", "teardown"),
    ("setup, not counted (s)", "setup"),
)


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# ---- the job -----------------------------------------------------------------------------------------------
def rayjob(name: str, namespace: str | None = None) -> dict[str, Any]:
    def group(container: str) -> dict[str, Any]:
        resources = {"cpu": "1", "memory": MEMORY}
        spec = {"containers": [{"name": container, "image": "rayproject/ray:2.60.0",
                                "resources": {"limits": resources, "requests": resources}}]}  # fmt: skip
        return {"rayStartParams": {}, "template": {"spec": spec}}

    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": metadata,
        "spec": {
            "submissionMode": "HTTPMode",
            "entrypoint": f'python -c "{DRIVER}"',
            "shutdownAfterJobFinishes": True,
            "rayClusterSpec": {
                "rayVersion": "2.60.0",
                "headGroupSpec": group("ray-head"),
                "workerGroupSpecs": [
                    {"groupName": "w", "replicas": 1, "minReplicas": 1, "maxReplicas": 1, **group("ray-worker")}
                ],
            },
        },
    }


# ---- (a) raw Ray by hand -------------------------------------------------------------------------------------
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
    process.wait(timeout=5)


def processes_under(marker: str) -> list[psutil.Process]:
    """Live processes whose command line names ``marker`` (the raw cluster's own temp dir)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def dashboard_get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"x-ray-authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with contextlib.suppress(OSError, ValueError), opener.open(request, timeout=5) as response:
        return json.load(response)
    return None


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def run_raw(*, timeout: float) -> dict[str, float]:
    """Raw Ray by hand; on failure its work dir (``ray start`` logs, Ray's temp dir) is kept and named."""
    work = Path(tempfile.mkdtemp(prefix="nbr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    temp = work / "t"
    gcs, dashboard, client, agent1, agent2, metrics1, metrics2, dmetrics, ametrics = PortAllocator(
        work / "ports"
    ).allocate(9, owner="node-bench")
    token = secrets.token_urlsafe(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "DASHBOARD_METRIC_PORT": str(dmetrics),
           "AUTOSCALER_METRIC_PORT": str(ametrics), "PATH": f"{BIN}:{os.environ['PATH']}"}  # fmt: skip
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", f"--memory={2**30}", "--disable-usage-stats", "--block"]
    ray = str(BIN / "ray")
    url = f"http://127.0.0.1:{dashboard}"
    submission = f"nb-{secrets.token_hex(4)}"
    times: dict[str, float] = {}
    seen: dict[str, Any] = {}
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    retried = collections.Counter[str]()

    argvs: dict[str, list[str]] = {}

    def start(name: str, argv: list[str]) -> None:
        argvs[name] = argv
        with (work / f"{name}.log").open("ab") as out:
            nodes[name] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def exited() -> str:
        """What a user does when ``ray start`` fails (Ray gives a node 30 s to register, which a loaded machine
        can miss): start it again, up to :data:`RAW_START_ATTEMPTS` times in all; the retries are counted."""
        gone = []
        for name, process in list(nodes.items()):
            if process.poll() is None:
                continue
            log_tail = tail(work / f"{name}.log")
            kill_tree(process)
            if retried[name] + 1 >= RAW_START_ATTEMPTS:
                gone.append(f"ray start of the {name} exited {process.returncode}:\n{log_tail}")
                continue
            retried[name] += 1
            log(f"raw Ray: ray start of the {name} exited {process.returncode}; starting it again")
            start(name, argvs[name])
        return "\n".join(gone)

    started = time.monotonic()
    try:
        start("head", [ray, "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
                       "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}",
                       f"--dashboard-agent-listen-port={agent1}", f"--metrics-export-port={metrics1}",
                       f"--temp-dir={temp}", *common])  # fmt: skip

        def alive(count: int) -> Callable[[], bool]:
            def check() -> bool:
                if gone := exited():
                    raise RuntimeError(f"raw Ray did not start (logs in {work}):\n{gone}")
                seen["nodes"] = dashboard_get(f"{url}/api/v0/nodes?limit=10&detail=0", token)
                listed = ((seen["nodes"] or {}).get("data") or {}).get("result", {}).get("result") or []
                seen["nodes"] = [(n.get("node_ip"), n.get("is_head_node"), n.get("state")) for n in listed]
                return sum(1 for n in listed if n.get("state") == "ALIVE") == count

            return check

        # By hand the worker is started once `ray start --head` is through: a worker started with the head gives
        # up when the head has not registered in time (as on a loaded machine).
        wait_for(alive(1), timeout=timeout, what="the raw Ray head ALIVE", seen=lambda: seen.get("nodes"))
        times["head ready"] = time.monotonic() - started
        start("worker", [ray, "start", f"--address=127.0.0.1:{gcs}", f"--dashboard-agent-listen-port={agent2}",
                         f"--metrics-export-port={metrics2}", *common])  # fmt: skip
        wait_for(alive(2), timeout=timeout, what="both raw Ray nodes ALIVE", seen=lambda: seen.get("nodes"))
        times["ready"] = time.monotonic() - started
        submit = subprocess.Popen(
            [ray, "job", "submit", f"--address={url}", f"--submission-id={submission}", "--", "python", "-c", DRIVER],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:

            def ended() -> bool:
                if "running" not in times:
                    seen["job"] = dashboard_get(f"{url}/api/jobs/{submission}", token)
                    if (seen["job"] or {}).get("status") in ("RUNNING", "SUCCEEDED", "FAILED"):
                        times["running"] = time.monotonic() - started
                return submit.poll() is not None

            wait_for(ended, timeout=timeout, what="ray job submit to return", seen=lambda: seen.get("job"))
            times["done"] = time.monotonic() - started
            output = submit.stdout.read().decode(errors="replace") if submit.stdout else ""
        finally:
            kill_tree(submit)
        if submit.returncode != 0 or ANSWER not in output:
            raise RuntimeError(f"ray job submit exited {submit.returncode} without {ANSWER}:\n{output[-1500:]}")
        times.setdefault("running", times["done"])  # the job ended between two polls
    finally:
        for process in nodes.values():
            kill_tree(process)
        for proc in processes_under(str(temp)):  # Ray's own daemons of this cluster, if any left the trees
            with contextlib.suppress(psutil.Error):
                proc.kill()
    times["total"] = time.monotonic() - started
    times["teardown"] = times["total"] - times["done"]
    times["ray start retries"] = retried.total()
    if left := processes_under(str(temp)):
        raise RuntimeError(f"raw Ray processes left: {[p.pid for p in left]}")
    shutil.rmtree(work, ignore_errors=True)
    return times


# ---- (b) kray job run in local mode ----------------------------------------------------------------------------
class LocalMode:
    """A ``kray server`` of its own ``KRAY_HOME``, started once (setup) and stopped at the end."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="nbl", dir="/tmp"))
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("KRAY_")}, "KRAY_HOME": str(self.home),
                    "COLUMNS": "400"}  # fmt: skip
        self.setup = 0.0

    def start(self) -> None:
        started = time.monotonic()
        self._kray("server", "start")
        self.setup = time.monotonic() - started

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._kray("server", "stop")
        shutil.rmtree(self.home, ignore_errors=True)

    def _kray(self, *args: str) -> None:
        done = subprocess.run([str(BIN / "kray"), *args], env=self.env, capture_output=True, text=True, timeout=180,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"kray {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")

    def run(self, *, timeout: float) -> dict[str, float]:
        manifest = self.home / f"job-{secrets.token_hex(3)}.yaml"
        manifest.write_text(yaml.safe_dump(rayjob(f"nb-{secrets.token_hex(3)}")))
        lines: list[tuple[float, str]] = []
        started = time.monotonic()
        proc = subprocess.Popen([str(BIN / "kray"), "job", "run", "-f", str(manifest)], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert proc.stderr is not None

        def read() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                lines.append((time.monotonic() - started, raw.decode(errors="replace").rstrip()))
                log(f"local at {lines[-1][0]:.1f}s: {lines[-1][1]}")

        out: list[bytes] = []

        def read_stdout() -> None:
            assert proc.stdout is not None
            out.append(proc.stdout.read())

        # Each pipe has one reader (communicate() would read stderr too, racing the progress reader for lines).
        readers = [threading.Thread(target=read, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"kray job run still running after {timeout:.0f}s; it said:\n{lines[-10:]}") from None
        total = time.monotonic() - started
        for reader in readers:
            reader.join(timeout=10)
        stdout = b"".join(out)
        said = "\n".join(line for _, line in lines)
        if proc.returncode != 0 or ANSWER not in stdout.decode(errors="replace"):
            raise RuntimeError(f"kray job run exited {proc.returncode}:\n{stdout.decode()[-1000:]}\n{said[-2000:]}")

        def first(match: Callable[[str], bool]) -> float:
            for at, line in lines:
                if match(line):
                    return at
            raise RuntimeError(f"kray job run printed no such progress line:\n{said}")

        done = first(lambda line: "Complete" in line)
        ready = first(lambda line: line.startswith("kray: job "))
        head = next((at for at, line in lines if "head ready" in line), ready)
        running = next((at for at, line in lines if line.startswith("kray: job ") and "RUNNING" in line), done)
        return {"head ready": head, "ready": ready, "running": running, "done": done, "total": total}


# ---- the table --------------------------------------------------------------------------------------------------
def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for r in rounds for key in r}
    return {key: statistics.median(r[key] for r in rounds if key in r) for key in keys}


def table(results: dict[str, dict[str, float]]) -> str:
    header = (
        f"{'metric':<26} | {LABELS['raw']:>10} | {LABELS['local']:>12} | {LABELS['node']:>16} | local/raw | node/raw"
    )
    lines = [header, "-" * len(header)]
    for label, key in ROWS:
        values = {mode: results.get(mode, {}).get(key) for mode in MODES}
        raw = values["raw"]
        cells = {mode: f"{v:.2f}" if v is not None else "-" for mode, v in values.items()}
        ratios = [f"{v / raw:.2f}" if v is not None and raw else "-" for v in (values["local"], values["node"])]
        lines.append(f"{label:<26} | {cells['raw']:>10} | {cells['local']:>12} | {cells['node']:>16} | "
                     f"{ratios[0]:>9} | {ratios[1]:>8}")  # fmt: skip
    return "\n".join(lines)


def parse_only(text: str) -> tuple[str, ...]:
    chosen = [ALIASES.get(m.strip(), m.strip()) for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"expected some of raw,local,node (or a,b,c), got {text!r}")
    return tuple(m for m in MODES if m in chosen)


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    log(f"{what} ...")
    yield
    log(f"{what}: {time.monotonic() - started:.1f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of each way (the table shows medians)")
    parser.add_argument("--only", type=parse_only, default=MODES, help="some of raw,local,node (or a,b,c)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a job may take, each way")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: expected at least 1")
    start = os.getloadavg()
    rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.only}
    notes: list[str] = []
    local = LocalMode() if "local" in args.only else None
    try:
        if local is not None:
            with timed("local: kray server start (setup)"):
                local.start()
        for n in range(1, args.repeat + 1):
            if "raw" in args.only:
                with timed(f"raw Ray, round {n}"):
                    rounds["raw"].append(run_raw(timeout=args.timeout))
            if local is not None:
                with timed(f"kray job run, round {n}"):
                    rounds["local"].append({**local.run(timeout=args.timeout), "setup": local.setup})
    finally:
        if local is not None:
            local.stop()
    if "node" in args.only:
        with NodeCluster(log=log) as cluster:
            notes.append(f"node setup: {cluster.setup_phases()}")
            for n in range(1, args.repeat + 1):
                with timed(f"operator on node, round {n}"):
                    rounds["node"].append({**cluster.run(rayjob, timeout=args.timeout), "setup": cluster.setup})
    for mode, measured in rounds.items():
        for n, r in enumerate(measured, 1):
            log(f"{mode} round {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.items())))
    if rounds.get("raw"):
        retries = sum(r.pop("ray start retries") for r in rounds["raw"])
        notes.append(f"raw Ray: `ray start` started again {retries:.0f} time(s) in all (it failed to register)")
    print(table({mode: medians(measured) for mode, measured in rounds.items()}))
    end = os.getloadavg()
    print(f"rounds: {args.repeat} (medians); {os.cpu_count()} CPUs; load average at start {start[0]:.2f} "
          f"{start[1]:.2f} {start[2]:.2f}, at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")  # fmt: skip
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
