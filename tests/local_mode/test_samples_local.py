"""KubeRay's samples, unchanged, on one machine (issue 8): each one runs, or is refused before anything starts.

``docs/local-mode.md``'s ``<!-- samples:corpus -->`` block says, for every file of ``shared/kuberay-samples``,
what ``kray apply``/``kray job run`` do with it; this module holds the CLI to that list, both ways: a sample
not listed fails, and so does a listed file that is gone.

- ``runs: cluster``: ``kray apply -f FILE`` and the RayCluster reaches ``ready``; ``runs: job``: ``kray job run
  -f FILE`` exits 0 with the RayJob ``Complete``; ``runs: service``: ``kray apply -f FILE`` and the RayService is
  Ready with every application RUNNING (a GitHub ``working_dir`` of KubeRay's test_dag replaced by the stand-in
  archive of ``test_lm_services``, served on loopback: this machine has no route to GitHub). Each runs in its own
  namespace (samples share names), several at once on one server (``KRAY_SAMPLES_CONCURRENCY``, 3 by default:
  the fastest on 2 cores), then is deleted and every process of its pods must be gone.
- ``refused``/``invalid``/``nothing``: the CLI exits 1 (2), names the listed field, and the store gains nothing.
- ``accepted: PATH``: ``kray validate`` and local mode's fit check (what ``kray apply`` runs first) take the file,
  PATH is in it, and it is not run here; ``why`` says what PATH needs that kray cannot check up front (the
  internet) or which test runs it instead.

Every wait is bounded and its failure says what it last saw (pods, container states, job status, log lines).
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from kray.cli.fit import gather_machine
from kray.local import procs
from kray.local.fit import plan_fit
from kray.local.podrunner import CREATE_TIME_ANNOTATION, PID_ANNOTATION, TAG_ANNOTATION
from kray.local.server.client import HttpStore
from kray.store import (
    EVENT,
    LEASE,
    POD,
    RAYCLUSTER,
    RAYJOB,
    RAYSERVICE,
    RESOURCES,
    SECRET,
    Obj,
    Resource,
)
from kray.store.errors import NotFound, StoreError
from tests.local_mode.conftest import KRAY, Local, pod_line, start_local
from tests.local_mode.test_lm_services import ARCHIVE, stand_in_archive

pytestmark = [pytest.mark.slow, pytest.mark.beside_k8s]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "kuberay-samples"
DOC = ROOT / "docs" / "local-mode.md"
CONCURRENCY = int(os.environ.get("KRAY_SAMPLES_CONCURRENCY", "3"))
REFUSAL_CONCURRENCY = 6
CLUSTER_READY = 300.0
SERVICE_READY = 420.0
"""A cluster, then Serve and its runtime envs (the working_dir archive) on two cores."""
JOB_RUN = 480.0
TEARDOWN = 180.0
AS_FROM_A_TERMINAL = (
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
)
"""Runs a program with SIGINT at its default, as a terminal would (see conftest.as_from_a_terminal: a suite run in
the background hands its children SIGINT ignored); an exec wrapper, as preexec_fn is unsafe with this module's
threads."""
ITERATIONS_SEEN = 5
"""A job listed ``until: running`` (its entrypoint runs for many minutes) is followed until its driver has printed
this many lines while its Ray job is RUNNING; then ``kray job run`` gets Ctrl-C, as a user would give it."""
EXISTING_CLUSTER = {"ray-job.use-existing-raycluster.yaml": ("ray-cluster.sample.yaml", "ray-cluster-kuberay")}
"""A job that selects a cluster no sample of that name creates: the given sample is applied under that name first."""
INTERACTIVE_ENTRYPOINT = "python -c \"import ray; ray.init(); print('interactive', ray.cluster_resources())\""
STORED = tuple(r for r in RESOURCES if r not in (EVENT, LEASE))
"""Every kind a refused sample could have left behind (events and leases are no sample's objects)."""


# -- the list ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    file: str
    runs: str | None = None
    refused: str | None = None
    invalid: str | None = None
    nothing: str | None = None
    accepted: str | None = None
    why: str = ""
    note: str = ""
    until: str = "end"
    """``end`` (the job completes) or ``running`` (seen running, then stopped with Ctrl-C: see ITERATIONS_SEEN)."""

    @property
    def path(self) -> Path:
        return SAMPLES / self.file


def corpus() -> list[Entry]:
    found = re.search(r"<!-- samples:corpus -->\s*```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert found, f"{DOC} lacks the <!-- samples:corpus --> yaml block"
    entries = [Entry(**item) for item in yaml.safe_load(found.group(1)) or []]
    for entry in entries:
        outcomes = [o for o in (entry.runs, entry.refused, entry.invalid, entry.nothing, entry.accepted) if o]
        assert len(outcomes) == 1, f"{entry.file}: give exactly one of runs/refused/invalid/nothing/accepted"
        assert entry.runs in (None, "cluster", "job", "service"), f"{entry.file}: runs is cluster, job or service"
        assert not entry.accepted or entry.why, f"{entry.file}: say why an accepted sample is not run here"
        assert entry.until in ("end", "running"), f"{entry.file}: until is end or running, not {entry.until!r}"
    return entries


ENTRIES = corpus()
RUNS = [e for e in ENTRIES if e.runs]
REJECTED = [e for e in ENTRIES if not e.runs and not e.accepted]
ACCEPTED = [e for e in ENTRIES if e.accepted]


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def command_for(path: Path) -> list[str]:
    """What a user runs: ``kray job run`` for a RayJob file, ``kray apply`` for anything else."""
    kinds = {d.get("kind") for d in documents(path)}
    if "RayJob" in kinds and "RayCluster" not in kinds:
        return ["job", "run", "-f", str(path)]
    return ["apply", "-f", str(path)]


def test_every_sample_is_listed() -> None:
    on_disk = {p.name for p in SAMPLES.glob("*.yaml")}
    listed = [e.file for e in ENTRIES]
    duplicates = sorted({name for name in listed if listed.count(name) > 1})
    assert not duplicates, f"listed twice in {DOC.name}: {duplicates}"
    assert on_disk, f"no samples in {SAMPLES}"
    unlisted = sorted(on_disk - set(listed))
    gone = sorted(set(listed) - on_disk)
    assert not unlisted, f"samples missing from the <!-- samples:corpus --> block of {DOC.name}: {unlisted}"
    assert not gone, f"listed in {DOC.name} but not in {SAMPLES}: {gone}"


# -- refused before anything starts -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    yield from start_local(tmp_path_factory.mktemp("samples"))


def stored(local: Local) -> set[tuple[str, str, str, str]]:
    """Every object the server stores, in every namespace."""

    async def action(store: HttpStore) -> set[tuple[str, str, str, str]]:
        out: set[tuple[str, str, str, str]] = set()
        for resource in STORED:
            for obj in (await store.list(resource)).items:
                meta = obj["metadata"]
                out.add((resource.kind, meta.get("namespace") or "", meta["name"], meta.get("uid") or ""))
        return out

    return local.call(action)


@dataclass
class Refusals:
    results: dict[str, subprocess.CompletedProcess[str]]
    new_objects: set[tuple[str, str, str, str]]


@pytest.fixture(scope="module")
def refusals(local: Local) -> Refusals:
    """The CLI on every sample that must not run, a few at a time (each is its own short-lived process)."""
    before = stored(local)
    with concurrent.futures.ThreadPoolExecutor(max_workers=REFUSAL_CONCURRENCY) as pool:
        futures = {e.file: pool.submit(local.kray, *command_for(e.path), timeout=120) for e in REJECTED}
        results = {name: future.result() for name, future in futures.items()}
    return Refusals(results, stored(local) - before)


@pytest.mark.timeout(900)  # the first test waits for every refusal (the module fixture runs them all)
@pytest.mark.parametrize("entry", REJECTED, ids=lambda e: e.file)
def test_refused_before_anything_starts(refusals: Refusals, entry: Entry) -> None:
    result = refusals.results[entry.file]
    said = result.stdout + result.stderr
    expected_code = 1 if entry.refused else 2
    assert result.returncode == expected_code, f"{entry.file}: exit {result.returncode}, not {expected_code}:\n{said}"
    assert "Traceback" not in said, said
    if entry.nothing:
        assert "nothing to store" in result.stderr, said
    else:
        field_path = entry.refused or entry.invalid
        assert f": {field_path}: " in result.stderr, f"{entry.file}: the message does not name {field_path}:\n{said}"
    names = {str((d.get("metadata") or {}).get("name")) for d in documents(entry.path)}
    mine = sorted(o for o in refusals.new_objects if o[2] in names or any(o[2].startswith(f"{n}-") for n in names))
    assert not mine, f"{entry.file}: stored although refused: {mine}"


def test_refusals_store_nothing(refusals: Refusals) -> None:
    assert not refusals.new_objects, f"stored by the refused samples: {sorted(refusals.new_objects)}"


# -- accepted, not run here ------------------------------------------------------------------------------


def resolve(document: Any, path: str) -> Any:
    """The value at a field path as kray's messages write it (``a.b[0].c``, ``labels[key]``); KeyError if absent."""
    value = document
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        key: Any = part[1:-1] if part.startswith("[") else part
        if isinstance(value, list):
            key = int(key)
        value = value[key]
    return value


@pytest.mark.parametrize("entry", ACCEPTED, ids=lambda e: e.file)
def test_accepted_but_not_run_here(entry: Entry) -> None:
    """What ``kray apply`` decides before it stores anything -- KubeRay's validation, then the fit check -- takes
    the file; the field the entry names is there."""
    validated = subprocess.run(
        [KRAY, "validate", "-f", str(entry.path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert validated.returncode == 0, f"{entry.file}: kray validate exited {validated.returncode}:\n{validated.stdout}"
    docs = documents(entry.path)
    fit = plan_fit(docs, machine=gather_machine(docs))
    assert not fit.refusals, f"{entry.file}: refused here, list it so: {[f.line(entry.file) for f in fit.refusals]}"
    runnable = [d for d in docs if d.get("kind") in ("RayCluster", "RayJob", "RayService")]
    assert runnable, f"{entry.file}: nothing kray apply would store"
    found = []
    for doc in runnable:
        try:
            found.append(resolve(doc, str(entry.accepted)))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    assert found, f"{entry.file}: no {entry.accepted} in it"


# -- runs, unchanged --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    message: str
    seconds: float
    running: float = 0.0
    """Seconds to ready (a cluster) or to the job's end, of ``seconds``."""
    deleting: float = 0.0


@dataclass
class Tracker:
    """Remembers every pod seen in a namespace (with its process identity), to check its processes end."""

    local: Local
    namespace: str
    pods: dict[str, Obj] = field(default_factory=dict)

    def look(self) -> list[Obj]:
        try:
            items = self.local.list(POD, namespace=self.namespace)
        except StoreError:
            return []
        for pod in items:
            if PID_ANNOTATION in (pod["metadata"].get("annotations") or {}):
                self.pods[pod["metadata"]["name"]] = pod
        return items

    def live_processes(self) -> list[str]:
        alive = []
        for name, pod in self.pods.items():
            notes = pod["metadata"]["annotations"]
            handle = procs.adopt(
                int(notes[PID_ANNOTATION]), float(notes[CREATE_TIME_ANNOTATION]), tag=notes.get(TAG_ANNOTATION)
            )
            if handle is not None:
                alive += [f"{name}: pid {p.pid} {p.name()}" for p in procs.members(handle)]
        return alive


def get(local: Local, resource: Resource, name: str, namespace: str) -> Obj | None:
    return local.get(resource, name, namespace=namespace)


def describe(local: Local, namespace: str) -> str:
    """What a namespace looks like: clusters, jobs and each pod's phase, container state and last log lines."""
    lines = []
    try:
        for cluster in local.list(RAYCLUSTER, namespace=namespace):
            status = cluster.get("status") or {}
            lines.append(
                f"RayCluster {cluster['metadata']['name']}: state={status.get('state')} "
                f"reason={status.get('reason')} ready workers={status.get('readyWorkerReplicas')}"
            )
        for service in local.list(RAYSERVICE, namespace=namespace):
            status = service.get("status") or {}
            conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
            apps = (status.get("activeServiceStatus") or status.get("pendingServiceStatus") or {}).get(
                "applicationStatuses"
            ) or {}
            said = {name: (app.get("status"), str(app.get("message") or "")[-200:]) for name, app in apps.items()}
            lines.append(f"RayService {service['metadata']['name']}: conditions={conditions} apps={said}")
        for job in local.list(RAYJOB, namespace=namespace):
            status = job.get("status") or {}
            lines.append(
                f"RayJob {job['metadata']['name']}: {status.get('jobDeploymentStatus')} "
                f"job={status.get('jobStatus')} {status.get('reason') or ''} {str(status.get('message') or '')[-300:]}"
            )
        for pod in local.list(POD, namespace=namespace):
            lines.append(pod_line(pod))
    except StoreError as error:
        lines.append(f"(store: {error})")
    return "\n  ".join(["", *lines]) if lines else " (nothing in the namespace)"


def wait(probe: Callable[[], Any], *, timeout: float, what: str, local: Local, namespace: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen:{describe(local, namespace)}"
            )
        time.sleep(1.0)


def apply_cluster(local: Local, path: Path, namespace: str, tracker: Tracker) -> str:
    result = local.kray("apply", "-f", str(path), "-n", namespace, timeout=120)
    assert result.returncode == 0, f"kray apply -f {path.name} exited {result.returncode}:\n{result.stderr}"
    name = str(next(d["metadata"]["name"] for d in documents(path) if d.get("kind") == "RayCluster"))

    def ready() -> bool:
        tracker.look()
        cluster = get(local, RAYCLUSTER, name, namespace)
        return ((cluster or {}).get("status") or {}).get("state") == "ready"

    wait(ready, timeout=CLUSTER_READY, what=f"RayCluster {name} ready", local=local, namespace=namespace)
    return name


def apply_service(local: Local, path: Path, namespace: str, tracker: Tracker, *, archive: str) -> str:
    """``kray apply -f`` of the sample (its test_dag archive served on loopback) until the RayService is Ready with
    every application RUNNING (KubeRay: the Ready condition once the active cluster serves every app)."""
    text = path.read_text()
    if ARCHIVE in text:
        text = text.replace(ARCHIVE, archive)
        path = local.manifests / f"{namespace}-{path.name}"
        path.write_text(text)
    assert "github.com" not in text, f"{path.name} fetches from GitHub, which this machine cannot reach"
    result = local.kray("apply", "-f", str(path), "-n", namespace, timeout=120)
    assert result.returncode == 0, f"kray apply -f {path.name} exited {result.returncode}:\n{result.stderr}"
    name = str(next(d["metadata"]["name"] for d in documents(path) if d.get("kind") == "RayService"))

    def ready() -> bool:
        tracker.look()
        status = (get(local, RAYSERVICE, name, namespace) or {}).get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
        apps = (status.get("activeServiceStatus") or {}).get("applicationStatuses") or {}
        running = bool(apps) and all(app.get("status") == "RUNNING" for app in apps.values())
        return conditions.get("Ready") == "True" and running

    wait(
        ready,
        timeout=SERVICE_READY,
        what=f"RayService {name} Ready, every app RUNNING",
        local=local,
        namespace=namespace,
    )
    return name


def run_job(local: Local, path: Path, namespace: str, tracker: Tracker, *, timeout: float, until: str = "end") -> None:
    """``kray job run -f``; an InteractiveMode job gets its submission as ``kubectl ray job submit`` makes it.

    With ``until="running"`` the job is followed until its driver prints while Ray says RUNNING, then interrupted
    (Ctrl-C): kray job run must answer 130 and delete the RayJob."""
    interactive = any((d.get("spec") or {}).get("submissionMode") == "InteractiveMode" for d in documents(path))
    out_path, err_path = (local.manifests / f"{namespace}.{stream}" for stream in ("out", "err"))
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        process = subprocess.Popen(
            [*AS_FROM_A_TERMINAL, KRAY, "job", "run", "-f", str(path), "-n", namespace],
            env=local.env(),
            stdout=out_file,
            stderr=err_file,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    try:
        deadline = time.monotonic() + timeout
        if interactive:
            submit_interactively(local, namespace, tracker, timeout=CLUSTER_READY)
        while process.poll() is None and time.monotonic() < deadline:
            tracker.look()
            if until == "running" and running_and_printing(local, namespace, out_path):
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)
                break
            time.sleep(1.0)
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
            raise AssertionError(
                f"kray job run -f {path.name} had not {'ended' if until == 'end' else 'run'} after {timeout:.0f}s; "
                f"it said:\n{err_path.read_text()[-2000:]}\n{out_path.read_text()[-1500:]}"
                f"\nlast seen:{describe(local, namespace)}"
            )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    out, err = out_path.read_text(), err_path.read_text()
    said = f"{err[-2500:]}\ndriver log tail:\n{out[-1500:]}\nlast seen:{describe(local, namespace)}"
    if until == "running":
        assert process.returncode == 130, f"kray job run -f {path.name} exited {process.returncode} on Ctrl-C:\n{said}"
        return
    assert process.returncode == 0, f"kray job run -f {path.name} exited {process.returncode}:\n{said}"
    assert ": Complete (Ray job" in err, f"kray job run -f {path.name} did not report Complete:\n{err[-2000:]}"


def running_and_printing(local: Local, namespace: str, out_path: Path) -> bool:
    """Ray says the namespace's RayJob RUNNING and its driver has printed ITERATIONS_SEEN lines."""
    try:
        jobs = local.list(RAYJOB, namespace=namespace)
    except StoreError:
        return False
    running = any((job.get("status") or {}).get("jobStatus") == "RUNNING" for job in jobs)
    return running and len(out_path.read_text().splitlines()) >= ITERATIONS_SEEN


def submit_interactively(local: Local, namespace: str, tracker: Tracker, *, timeout: float) -> None:
    def waiting() -> Obj | None:
        tracker.look()
        jobs = local.list(RAYJOB, namespace=namespace)
        ready = [j for j in jobs if (j.get("status") or {}).get("jobDeploymentStatus") == "Waiting"]
        return ready[0] if ready else None

    job = wait(waiting, timeout=timeout, what="the InteractiveMode RayJob Waiting", local=local, namespace=namespace)
    name, cluster_name = job["metadata"]["name"], job["status"]["rayClusterName"]
    cluster = get(local, RAYCLUSTER, cluster_name, namespace)
    secret = get(local, SECRET, cluster_name, namespace)
    assert cluster is not None, f"cluster {cluster_name} is gone"
    assert secret is not None, f"cluster {cluster_name} has no token Secret"

    token = base64.b64decode(secret["data"]["auth_token"]).decode()
    dashboard = f"http://127.0.0.1:{cluster['status']['endpoints']['dashboard']}"
    submission = f"interactive-{secrets.token_hex(4)}"
    response = httpx2.post(
        f"{dashboard}/api/jobs/",
        json={"entrypoint": INTERACTIVE_ENTRYPOINT, "submission_id": submission},
        headers={"x-ray-authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, f"submitting to {dashboard}: {response.status_code} {response.text[:300]}"
    local.update(RAYJOB, name, lambda obj: obj["spec"].update(jobId=submission), namespace=namespace)


def tear_down(local: Local, namespace: str, tracker: Tracker) -> None:
    """Delete what the sample made, as a user would, and wait until its pods and their processes are gone."""
    for resource, kind in ((RAYSERVICE, "service"), (RAYJOB, "job"), (RAYCLUSTER, "cluster")):
        for obj in local.list(resource, namespace=namespace):
            result = local.kray("delete", kind, obj["metadata"]["name"], "-n", namespace, "--no-wait", timeout=60)
            assert result.returncode == 0 or "not found" in result.stderr, f"kray delete {kind}: {result.stderr}"

    def gone() -> bool:
        owners = local.list(RAYSERVICE, namespace=namespace) + local.list(RAYCLUSTER, namespace=namespace)
        return not tracker.look() and not owners

    wait(gone, timeout=TEARDOWN, what="the sample's services, clusters and pods gone", local=local, namespace=namespace)
    deadline = time.monotonic() + 30
    left = tracker.live_processes()
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = tracker.live_processes()
    assert not left, f"processes left after the sample was deleted: {left}"


FAILURES = (AssertionError, StoreError, NotFound, subprocess.SubprocessError, OSError)


def run_sample(local: Local, entry: Entry, namespace: str, *, archive: str = "") -> Outcome:
    """Run one sample as a user would, then delete it; a failure of either part is reported, both if both fail."""
    tracker = Tracker(local, namespace)
    started = time.monotonic()
    problems = []
    try:
        if entry.runs == "cluster":
            apply_cluster(local, entry.path, namespace, tracker)
        elif entry.runs == "service":
            apply_service(local, entry.path, namespace, tracker, archive=archive)
        else:
            if entry.file in EXISTING_CLUSTER:
                sample, name = EXISTING_CLUSTER[entry.file]
                renamed = local.manifests / f"{namespace}-{name}.yaml"
                docs = documents(SAMPLES / sample)
                for doc in docs:
                    if doc.get("kind") == "RayCluster":
                        doc["metadata"]["name"] = name
                renamed.write_text(yaml.safe_dump_all(docs, sort_keys=False))
                apply_cluster(local, renamed, namespace, tracker)
            run_job(local, entry.path, namespace, tracker, timeout=JOB_RUN, until=entry.until)
    except FAILURES as error:
        problems.append(str(error))
    ran_for = time.monotonic() - started
    try:
        tear_down(local, namespace, tracker)
    except FAILURES as error:
        problems.append(f"deleting it: {error}")
    torn = time.monotonic() - started - ran_for
    return Outcome(not problems, "\n".join(problems), ran_for + torn, ran_for, torn)


HOME_RAY_EXISTED = Path("/home/ray").exists()
"""KubeRay's samples mount their files under /home/ray (the image's home): local pods see them through their own
mount namespace, and the host must not get the directory."""


@pytest.fixture(scope="module")
def ran(local: Local, request: pytest.FixtureRequest) -> dict[str, Outcome]:
    """Every selected runnable sample, several at a time (longest first), each in its own namespace."""
    chosen = {
        getattr(item.callspec.params["entry"], "file", None)
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_runs_unchanged"
    }
    selected = [entry for entry in RUNS if entry.file in chosen]
    order = sorted(selected, key=lambda e: e.runs not in ("job", "service"))  # jobs and services (the longest) first
    started = time.monotonic()
    with (
        stand_in_archive() as archive,
        concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENCY) as pool,
    ):
        futures = {
            entry.file: pool.submit(run_sample, local, entry, f"sample-{index}", archive=archive)
            for index, entry in enumerate(order)
        }
        outcomes = {name: future.result() for name, future in futures.items()}
    took = time.monotonic() - started
    print(f"\n{len(outcomes)} samples ran in {took:.0f}s with concurrency {CONCURRENCY}:")
    for name, outcome in sorted(outcomes.items(), key=lambda item: -item[1].seconds):
        print(
            f"  {outcome.seconds:5.0f}s (run {outcome.running:4.0f}s, delete {outcome.deleting:4.0f}s) "
            f"{'ok  ' if outcome.ok else 'FAIL'} {name}"
        )
    return outcomes


@pytest.mark.timeout(2400)  # the first test waits for every sample (the module fixture runs them all)
@pytest.mark.parametrize("entry", RUNS, ids=lambda e: e.file)
def test_runs_unchanged(ran: dict[str, Outcome], entry: Entry) -> None:
    outcome = ran[entry.file]
    assert outcome.ok, f"{entry.file} ({entry.runs}, {outcome.seconds:.0f}s): {outcome.message}"


def test_the_samples_volumes_left_the_host_untouched(ran: dict[str, Outcome]) -> None:
    """Every sample's mounts lived in its pods' mount namespaces: none reached this process, no mount point was
    made on the host (ray-job.sample.yaml's ConfigMap at /home/ray/samples among them)."""
    assert ran, "no sample ran"
    assert Path("/home/ray").exists() == HOME_RAY_EXISTED, "a pod's mount point was made on the host"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "/home/ray" not in mounts, mounts
