"""A pod's volumes against the real embedded store: the files made in the pod's dir (items, modes, optional,
downwardAPI, projected), the mount plan, and what a real ``sh`` started through the launcher sees at its
mount paths (subPath, readOnly); a claim's dir outliving its pod; the pod runner waiting for a missing
ConfigMap and failing a pod with a bad volume, naming the field.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from kray.local.claims import PROTECTION, ClaimsController
from kray.local.podrunner import FINALIZER, PodRunner, RunnerSettings, pod_dir
from kray.local.store import EmbeddedStore
from kray.local.volumes import (
    VolumeContext,
    VolumeInvalid,
    VolumePending,
    check_pod,
    claim_dir,
    materialize,
    prepare_container,
    release,
)
from kray.store import CONFIGMAP, PERSISTENT_VOLUME_CLAIM, POD, SECRET, Obj
from kray.store.errors import NotFound

NS = "default"


def cm(name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS}, "data": data}


def secret(name: str, data: dict[str, str]) -> Obj:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": encoded}


def a_pod(volumes: list[Obj], mounts: list[Obj], *, script: str = "true", name: str = "p") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": "u-1", "labels": {"app": "x", "b": "2"}},
        "spec": {
            "restartPolicy": "Never",
            "volumes": volumes,
            "containers": [
                {
                    "name": "c",
                    "command": ["sh", "-c", script],
                    "volumeMounts": mounts,
                    "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
                }
            ],
        },
    }


def context(tmp_path: Path) -> VolumeContext:
    return VolumeContext(pod_dir=tmp_path / "state" / "pods" / NS / "p", state_dir=tmp_path / "state")


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def tree(root: Path) -> dict[str, str]:
    """Every file under root (not the dot-dirs kray keeps there): relative path -> octal mode and content."""
    return {
        str(p.relative_to(root)): f"{p.stat().st_mode & 0o777:o} {p.read_text()}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


async def test_configmap_secret_downward_and_projected_files(store: EmbeddedStore, tmp_path: Path) -> None:
    await store.create(CONFIGMAP, cm("code", {"a.py": "print(1)", "b.txt": "bee"}))
    await store.create(SECRET, secret("creds", {"token": "s3cret"}))
    volumes = [
        {"name": "all", "configMap": {"name": "code", "defaultMode": 0o600}},
        {"name": "some", "configMap": {"name": "code", "items": [{"key": "a.py", "path": "sub/x.py", "mode": 0o755}]}},
        {"name": "missing-ok", "configMap": {"name": "nope", "optional": True}},
        {"name": "sec", "secret": {"secretName": "creds"}},
        {
            "name": "down",
            "downwardAPI": {
                "items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
                    {"path": "mem", "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                ]
            },
        },
        {
            "name": "proj",
            "projected": {
                "defaultMode": 0o640,
                "sources": [
                    {"configMap": {"name": "code", "items": [{"key": "b.txt", "path": "b"}]}},
                    {"secret": {"name": "creds"}},
                    {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                    {"serviceAccountToken": {"path": "token-sa"}},
                ],
            },
        },
    ]
    pod = a_pod(volumes, [])
    ctx = context(tmp_path)
    sources = await materialize(reader=store, pod=pod, ctx=ctx)
    assert sources == {name: ctx.volumes / name for name in ("all", "some", "missing-ok", "sec", "down", "proj")}
    assert tree(ctx.volumes) == {
        "all/a.py": "600 print(1)",
        "all/b.txt": "600 bee",
        "some/sub/x.py": "755 print(1)",
        "sec/token": "644 s3cret",
        "down/name": "644 p",
        "down/labels": '644 app="x"\nb="2"',
        "down/cpu": "644 2",
        "down/mem": "644 1024",
        "proj/b": "640 bee",
        "proj/token": "640 s3cret",
        "proj/ns": "640 default",
    }
    # Made again (a container restart): replaced whole, a removed key goes.
    await store.patch(CONFIGMAP, "code", namespace=NS, patch={"data": {"b.txt": None}})
    await materialize(reader=store, pod=pod, ctx=ctx, names={"all"})
    assert sorted(p.name for p in (ctx.volumes / "all").iterdir()) == ["a.py"]


async def test_missing_configmap_secret_key_and_claim_wait_with_the_kubelets_words(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    ctx = context(tmp_path)
    cases = [
        ({"configMap": {"name": "later"}}, 'MountVolume.SetUp failed for volume "v" : configmap "later" not found'),
        ({"secret": {"secretName": "later"}}, 'MountVolume.SetUp failed for volume "v" : secret "later" not found'),
        (
            {"persistentVolumeClaim": {"claimName": "later"}},
            'MountVolume.SetUp failed for volume "v" : persistentvolumeclaim "later" not found',
        ),
        (
            {"configMap": {"name": "here", "items": [{"key": "k", "path": "k"}]}},
            'MountVolume.SetUp failed for volume "v" : configmap references non-existent config key: k',
        ),
        (
            {"hostPath": {"path": str(tmp_path / "absent"), "type": "Directory"}},
            f'MountVolume.SetUp failed for volume "v" : hostPath type check failed: {tmp_path / "absent"} is not a '
            "directory",
        ),
    ]
    await store.create(CONFIGMAP, cm("here", {}))
    for body, message in cases:
        with pytest.raises(VolumePending) as caught:
            await materialize(reader=store, pod=a_pod([{"name": "v", **body}], []), ctx=ctx)
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("volumes", "mounts", "message"),
    [
        ([{"name": "v", "nfs": {"server": "x"}}], [], "spec.volumes[0]: volume kind nfs is not supported locally"),
        (
            [{"name": "v", "emptyDir": {}}],
            [{"name": "v", "mountPath": "/x", "subPath": "../up"}],
            ".volumeMounts[0].subPath: subPath '../up' must be relative",
        ),
        (
            [{"name": "v", "emptyDir": {}}],
            [{"name": "v", "mountPath": "/x", "subPath": "/abs"}],
            "spec.containers[0].volumeMounts[0].subPath",
        ),
        (
            [{"name": "v", "emptyDir": {}}],
            [{"name": "w", "mountPath": "/x"}],
            "spec.containers[0].volumeMounts[0].name: no volume named 'w'",
        ),
        (
            [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../k"}]}}],
            [],
            "spec.volumes[0].configMap.items[0].path",
        ),
        ([{"name": "v", "hostPath": {"path": "rel"}}], [], "spec.volumes[0].hostPath.path: expected an absolute path"),
    ],
)
def test_a_bad_volume_names_its_field(volumes: list[Obj], mounts: list[Obj], message: str) -> None:
    with pytest.raises(VolumeInvalid, match=None) as caught:
        check_pod(a_pod(volumes, mounts))
    assert message in str(caught.value)


async def launch(store: EmbeddedStore, pod: Obj, ctx: VolumeContext, script: str) -> subprocess.CompletedProcess[str]:
    container = pod["spec"]["containers"][0]
    prepared = await prepare_container(
        reader=store, pod=pod, container=container, argv=["sh", "-c", script], env=dict(os.environ), ctx=ctx
    )
    assert prepared.plan is not None
    return await asyncio.to_thread(run, prepared.argv)


async def test_what_the_process_sees_subpath_readonly_hostpath_and_memory(store: EmbeddedStore, tmp_path: Path) -> None:
    await store.create(CONFIGMAP, cm("conf", {"redis.conf": "port 1\n", "other": "o"}))
    host = tmp_path / "host-data"
    sock = tmp_path / "not-a-socket"
    sock.write_text("")
    base = f"/opt/kray-h1-{uuid.uuid4().hex[:8]}"
    volumes = [
        {"name": "conf", "configMap": {"name": "conf"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "host", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
    ]
    mounts = [
        {"name": "conf", "mountPath": f"{base}/etc/redis.conf", "subPath": "redis.conf"},
        {"name": "conf", "mountPath": f"{base}/conf"},
        {"name": "scratch", "mountPath": f"{base}/work", "subPath": "deep/er"},
        {"name": "scratch", "mountPath": f"{base}/ro", "readOnly": True},
        {"name": "mem", "mountPath": f"{base}/shm"},
        {"name": "host", "mountPath": f"{base}/host"},
    ]
    pod = a_pod(volumes, mounts)
    ctx = context(tmp_path)
    script = (
        f"cat {base}/etc/redis.conf; ls {base}/conf; echo w > {base}/work/f; "
        f"echo no > {base}/conf/x 2>/dev/null || echo conf-ro; echo no > {base}/ro/x 2>/dev/null || echo ro; "
        f"dd if=/dev/zero of={base}/shm/big bs=1k count=2048 2>/dev/null || echo shm-full; "
        f"echo h > {base}/host/h"
    )
    done = await launch(store, pod, ctx, script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["port", "1", "other", "redis.conf", "conf-ro", "ro", "shm-full"]
    assert (ctx.volumes / "scratch" / "deep" / "er" / "f").read_text() == "w\n"
    assert (host / "h").read_text() == "h\n"
    assert not Path(base).exists(), "a mount point was made on the host"
    assert base not in Path("/proc/self/mountinfo").read_text()
    bad = a_pod([{"name": "s", "hostPath": {"path": str(sock), "type": "Socket"}}], [])
    with pytest.raises(VolumePending, match="is not a socket"):
        await materialize(reader=store, pod=bad, ctx=ctx)


async def test_a_missing_mount_point_under_tmp_is_made_on_the_host_and_removed_after(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    target = Path("/tmp") / f"kray-h1-ray-{uuid.uuid4().hex[:8]}"
    pod = a_pod([{"name": "logs", "emptyDir": {}}], [{"name": "logs", "mountPath": str(target)}])
    ctx = VolumeContext(pod_dir=tmp_path / "state" / "pods" / NS / "p", state_dir=tmp_path / "state")
    try:
        done = await launch(store, pod, ctx, f"echo log > {target}/x")
        assert done.returncode == 0, done.stderr
        assert target.is_dir(), "the mount point is made on the host"
        assert not any(target.iterdir()), "the emptyDir's content is the pod's only"
        release(pod_dir=ctx.pod_dir, state_dir=ctx.state_dir)
        assert not target.exists()
    finally:
        if target.exists():
            target.rmdir()


async def test_a_mount_that_would_hide_krays_shared_dirs_or_cover_root_fails(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    ctx = context(tmp_path)
    for path, message in (
        (str(tmp_path), "would hide"),
        (f"/kray-h1-{uuid.uuid4().hex[:6]}", "does not exist on this machine"),
    ):
        pod = a_pod([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": path}])
        with pytest.raises(VolumeInvalid, match=message) as caught:
            await launch(store, pod, ctx, "true")
        assert "spec.containers[0].volumeMounts[0].mountPath" in str(caught.value)


def claim(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


async def wait(probe: Any, what: str, timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


async def get(store: EmbeddedStore, resource: Any, name: str) -> Obj | None:
    try:
        return await store.get(resource, name, namespace=NS)
    except NotFound:
        return None


async def test_pod_runner_waits_for_a_configmap_then_runs_and_a_claim_outlives_its_pod(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    settings = RunnerSettings(state_dir=state, backoff_start=0.3, poll=0.05, grace=1)
    runner, claims, stop = (
        PodRunner(store=store, settings=settings),
        ClaimsController(store=store, state_dir=state, retry=0.1),
        asyncio.Event(),
    )
    tasks = [asyncio.create_task(runner.run(stop)), asyncio.create_task(claims.run(stop))]
    try:
        await store.create(PERSISTENT_VOLUME_CLAIM, claim("data"))
        bound = await wait(lambda: _phase(store, "data"), "claim Bound")
        assert bound["status"]["capacity"] == {"storage": "1Gi"}
        assert PROTECTION in bound["metadata"]["finalizers"]
        volumes = [
            {"name": "code", "configMap": {"name": "code"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        ]
        mounts = [{"name": "code", "mountPath": "/home/ray/samples"}, {"name": "data", "mountPath": "/home/ray/data"}]
        pod = a_pod(volumes, mounts, script="cat /home/ray/samples/run.sh; sh /home/ray/samples/run.sh")
        pod["metadata"]["finalizers"] = [FINALIZER]
        await store.create(POD, pod)

        async def creating() -> str | None:
            p = await get(store, POD, "p")
            waiting = (((p or {}).get("status") or {}).get("containerStatuses") or [{}])[0].get("state", {})
            return (waiting.get("waiting") or {}).get("message")

        message = await wait(creating, "the pod waiting in ContainerCreating")
        assert message == 'MountVolume.SetUp failed for volume "code" : configmap "code" not found'
        await store.create(CONFIGMAP, cm("code", {"run.sh": "echo kept > /home/ray/data/out"}))
        await wait(lambda: _pod_phase(store, "Succeeded"), "the pod Succeeded")
        assert (claim_dir(state, NS, "data") / "out").read_text() == "kept\n"
        await store.delete(POD, "p", namespace=NS)
        await wait(lambda: _gone(store, POD, "p"), "the pod gone")
        # the runner releases the pod (its finalizer) before it cleans the pod's dir up

        async def dir_gone() -> bool:
            return not pod_dir(state, NS, "p").exists()

        await wait(dir_gone, "the pod's dir removed")
        assert (claim_dir(state, NS, "data") / "out").exists(), "the claim's data outlives the pod"
        await store.delete(PERSISTENT_VOLUME_CLAIM, "data", namespace=NS)
        await wait(lambda: _gone(store, PERSISTENT_VOLUME_CLAIM, "data"), "the claim gone")
        assert not claim_dir(state, NS, "data").exists()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def test_pod_runner_fails_a_pod_with_a_bad_volume_at_once(store: EmbeddedStore, tmp_path: Path) -> None:
    settings = RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=1)
    runner, stop = PodRunner(store=store, settings=settings), asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        pod = a_pod([{"name": "v", "emptyDir": {}}], [{"name": "v", "mountPath": "/x", "subPath": "a/../../b"}])
        await store.create(POD, pod)
        failed = await wait(lambda: _pod_phase(store, "Failed"), "the pod Failed")
        assert failed["status"]["reason"] == "FailedMount"
        assert "spec.containers[0].volumeMounts[0].subPath" in failed["status"]["message"]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _phase(store: EmbeddedStore, name: str) -> Obj | None:
    obj = await get(store, PERSISTENT_VOLUME_CLAIM, name)
    return obj if ((obj or {}).get("status") or {}).get("phase") == "Bound" else None


async def _pod_phase(store: EmbeddedStore, phase: str) -> Obj | None:
    obj = await get(store, POD, "p")
    return obj if ((obj or {}).get("status") or {}).get("phase") == phase else None


async def _gone(store: EmbeddedStore, resource: Any, name: str) -> bool:
    return await get(store, resource, name) is None
