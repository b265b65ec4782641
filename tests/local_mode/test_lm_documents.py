"""Every document of a manifest that pods use, namespaces, and re-apply, on a real local server with real Ray.

Why: a Secret in a file was dropped silently (KubeRay's ``ray-cluster.auth.secret-ref.yaml`` could not
start), a RayJob's ConfigMap was never stored, ``-n`` worked only for ``default``, and a re-apply replaced the
metadata wholesale: kray's port annotation went, new ports were reserved while the pods kept the old ones.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from kray.local.environment import PORTS_ANNOTATION
from kray.local.reapply import LAST_APPLIED
from kray.store import CONFIGMAP, NAMESPACE, POD, RAYCLUSTER, SECRET, Obj

from .conftest import Local, alive, annotations, cluster_spec, pod_pid, raycluster, rayjob, settle, wait_for

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "kuberay-samples"


def configmap(name: str, data: dict[str, str], namespace: str | None = None) -> Obj:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def write_all(local: Local, name: str, documents: list[Obj]) -> Path:
    path = local.manifests / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def head(local: Local, cluster: str) -> Obj:
    heads = [p for p in local.live_pods(cluster) if p["metadata"]["labels"].get("ray.io/node-type") == "head"]
    assert len(heads) == 1, [p["metadata"]["name"] for p in local.live_pods(cluster)]
    return heads[0]


@pytest.mark.timeout(780)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_reapply_merges_metadata_keeps_krays_ports_and_the_running_pods(local: Local) -> None:
    first = raycluster("h2-reapply", workers=0)
    first["metadata"]["annotations"] = {"team": "a", "note": "old"}
    path = local.manifest(first)
    created = local.kray("apply", "-f", str(path))
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == ["raycluster/h2-reapply created"], created.stdout
    ready = local.wait_cluster_ready("h2-reapply", workers=0, timeout=150)
    ports = annotations(ready)[PORTS_ANNOTATION]
    before = head(local, "h2-reapply")

    second = raycluster("h2-reapply", workers=1)
    second["metadata"]["annotations"] = {"team": "b"}
    local.manifest(second)
    configured = local.kray("apply", "-f", str(path))
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout.splitlines() == ["raycluster/h2-reapply configured"], configured.stdout

    def seen_by_controller() -> Obj | None:
        found = local.get(RAYCLUSTER, "h2-reapply") or {}
        seen = (found.get("status") or {}).get("observedGeneration", 0) >= 2
        return found if seen and PORTS_ANNOTATION in annotations(found) else None

    observed = wait_for(seen_by_controller, timeout=60, what="the controller to see the re-applied RayCluster")
    assert annotations(observed)[PORTS_ANNOTATION] == ports, "kray's port annotation was replaced"
    cluster = local.wait_cluster_ready("h2-reapply", workers=1, timeout=150)
    notes = annotations(cluster)
    assert notes[PORTS_ANNOTATION] == ports, "kray's port annotation was replaced"
    assert notes["team"] == "b"
    assert "note" not in notes, "a key the previous manifest set and this one does not was kept"
    after = head(local, "h2-reapply")
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "the head pod was replaced"
    assert pod_pid(after) == pod_pid(before), "the head pod's process was restarted"
    assert f"127.0.0.1:{ports.split('dashboard=')[1].split(',')[0]}" in local.dashboard_url("h2-reapply")

    again = local.kray("apply", "-f", str(path))
    assert again.stdout.splitlines() == ["raycluster/h2-reapply unchanged"], again.stdout
    assert annotations(local.get(RAYCLUSTER, "h2-reapply") or {})[PORTS_ANNOTATION] == ports
    local.delete(RAYCLUSTER, "h2-reapply")
    local.wait_gone(RAYCLUSTER, "h2-reapply", timeout=90)


def test_secret_ref_sample_runs_with_the_users_token_and_keeps_the_secret(local: Local) -> None:
    sample = SAMPLES / "ray-cluster.auth.secret-ref.yaml"
    applied = local.kray("apply", "-f", str(sample))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        "secret/ray-cluster-token created",
        "raycluster/ray-cluster-with-auth created",
    ]
    local.wait_cluster_ready("ray-cluster-with-auth", workers=1, timeout=150)

    secret = local.get(SECRET, "ray-cluster-token")
    assert secret is not None
    assert base64.b64decode(secret["data"]["auth_token"]).decode() == "super-secret-example-token"
    assert "stringData" not in secret, "stringData is merged into data, as the API server stores it"
    assert not secret["metadata"].get("ownerReferences"), "kray took ownership of the user's Secret"
    assert local.get(SECRET, "ray-cluster-with-auth") is None, "kray made its own Secret besides the user's"

    jobs = f"{local.dashboard_url('ray-cluster-with-auth')}/api/jobs/"
    wrong = httpx2.get(jobs, headers={"x-ray-authorization": "Bearer not-the-token"}, timeout=10)
    assert wrong.status_code in {401, 403}, wrong.status_code
    right = httpx2.get(jobs, headers={"x-ray-authorization": "Bearer super-secret-example-token"}, timeout=10)
    assert right.status_code == 200, right.text[:300]

    local.delete(RAYCLUSTER, "ray-cluster-with-auth")
    local.wait_gone(RAYCLUSTER, "ray-cluster-with-auth", timeout=90)
    kept = local.get(SECRET, "ray-cluster-token")
    assert kept is not None, "deleting the cluster deleted the user's Secret"
    assert kept["data"] == secret["data"]


def test_job_run_stores_the_files_configmap_before_its_rayjob(local: Local) -> None:
    entrypoint = "python -c \"import os; print('greeting:', os.environ['GREETING'])\""
    job = rayjob("h2-cm-job", entrypoint, rayClusterSpec=cluster_spec(workers=0), shutdownAfterJobFinishes=True)
    container = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "h2-greeting", "key": "text"}}}]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis"}, "spec": {}}
    path = write_all(
        local, "h2-cm-job", [job, configmap("h2-greeting", {"text": "hello from a ConfigMap"}), deployment]
    )
    result = local.kray("job", "run", "-f", str(path), timeout=200)
    assert result.returncode == 0, result.stderr
    assert "greeting: hello from a ConfigMap" in result.stdout, result.stdout
    lines = result.stderr.splitlines()
    assert "kray: configmap/h2-greeting created" in lines, lines
    assert "kray: deployment/redis skipped: local mode does not run Deployments" in lines, lines
    stored = local.get(CONFIGMAP, "h2-greeting")
    assert stored is not None
    assert stored["data"] == {"text": "hello from a ConfigMap"}


def test_an_invalid_document_refuses_the_whole_file(local: Local) -> None:
    bad_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "h2-bad"}, "data": {"token": "plain!"}}
    path = write_all(local, "h2-bad", [configmap("h2-ok", {"a": "b"}), bad_secret, raycluster("h2-bad")])
    for command in (("apply", "-f", str(path)), ("job", "run", "-f", str(path))):
        result = local.kray(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
    assert "Secret/h2-bad: data.token: Invalid value: not valid base64" in result.stderr, result.stderr
    assert local.get(CONFIGMAP, "h2-ok") is None
    assert local.get(RAYCLUSTER, "h2-bad") is None


def test_namespaces_are_created_on_first_use_listed_and_kubectls_rule_holds(local: Local) -> None:
    path = write_all(local, "h2-ns", [configmap("h2-code", {"main.py": "print(1)"})])
    first = local.kray("apply", "-n", "h2-team", "-f", str(path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["namespace/h2-team created", "configmap/h2-code created"]
    second = local.kray("apply", "-n", "h2-team", "-f", str(path))
    assert second.stdout.splitlines() == ["configmap/h2-code unchanged"], second.stdout
    assert local.get(CONFIGMAP, "h2-code", namespace="h2-team") is not None
    assert local.get(CONFIGMAP, "h2-code") is None, "-n was ignored"

    listed = local.kray("get", "namespaces")
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()}
    assert listed.stdout.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert rows["h2-team"][0] == "Active"
    assert rows["default"][0] == "Active"

    own = write_all(local, "h2-own", [configmap("h2-own", {"a": "b"}, namespace="h2-other")])
    conflict = local.kray("apply", "-n", "h2-team", "-f", str(own))
    assert conflict.returncode == 2
    assert (
        'metadata.namespace: the namespace from the provided object "h2-other" does not match the namespace '
        "\"h2-team\". You must pass '--namespace=h2-other' to perform this operation."
    ) in conflict.stderr
    assert local.get(NAMESPACE, "h2-other", namespace="") is None
    kept = local.kray("apply", "-f", str(own))
    assert kept.stdout.splitlines() == ["namespace/h2-other created", "configmap/h2-own created"], kept.stdout

    declared = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "h2-declared", "labels": {"t": "x"}}}
    both = write_all(local, "h2-declared", [configmap("h2-in", {"a": "b"}, namespace="h2-declared"), declared])
    out = local.kray("apply", "-f", str(both))
    assert out.stdout.splitlines() == ["namespace/h2-declared created", "configmap/h2-in created"], out.stdout
    stored = local.get(NAMESPACE, "h2-declared", namespace="")
    assert stored is not None
    assert stored["metadata"]["labels"]["t"] == "x"
    assert LAST_APPLIED in annotations(stored)


def test_delete_namespace_takes_its_clusters_processes_with_it(local: Local) -> None:
    cluster = raycluster("h2-doomed", workers=0)
    cluster["metadata"]["namespace"] = "h2-doomed"
    path = write_all(local, "h2-doomed", [cluster, configmap("h2-doomed-code", {"a": "b"}, namespace="h2-doomed")])
    applied = local.kray("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr

    def ready() -> Obj | None:
        found = local.get(RAYCLUSTER, "h2-doomed", namespace="h2-doomed")
        return found if (found or {}).get("status", {}).get("state") == "ready" else None

    wait_for(ready, timeout=90, what="RayCluster h2-doomed/h2-doomed ready")
    pods = local.list(POD, namespace="h2-doomed")
    processes = local.pod_processes(pods)
    assert processes, "no processes found for the namespace's pods"

    deleted = local.kray("delete", "namespace", "h2-doomed", timeout=150)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "namespace/h2-doomed deleted"
    assert local.get(NAMESPACE, "h2-doomed", namespace="") is None
    left = settle(lambda: [p.pid for p in processes if alive(p)], timeout=30)
    assert not left, f"processes of the namespace's pods still run: {left}"
    assert "h2-doomed" not in local.kray("get", "namespaces").stdout
    refused = local.kray("delete", "namespace", "default")
    assert refused.returncode == 1
    assert "may not be deleted" in refused.stderr
