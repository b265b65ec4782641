"""The launcher in a pod's sandbox, with real namespaces and real processes (as root, as the node agent runs):
a container in a network namespace the test made sees only its interfaces, its hostname, the pod's hosts
file, a ``/tmp`` of its own (volumes under ``/tmp`` land there, nothing on the host's); ``--join`` runs a
command inside a running container; the ServiceAccount admission's ``kube-api-access`` projected volume
renders token, ca.crt and namespace from a :class:`TokenSource`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kray.local import mountns
from kray.local.sandbox import Sandbox
from kray.local.store import EmbeddedStore
from kray.local.volumes import VolumeContext, check_pod, join_argv, prepare_container
from kray.store import CONFIGMAP, Obj

NS = "default"
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBE_API_ACCESS = {
    "name": "kube-api-access-7xk2q",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
            {
                "downwardAPI": {
                    "items": [
                        {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}
                    ]
                }
            },
        ],
    },
}
"""What the apiserver's ServiceAccount admission adds to every pod, verbatim."""


@pytest.fixture
def netns() -> Iterator[tuple[str, list[str]]]:
    """A network namespace of this test's own with a veth pair in it: (netns file, its interfaces)."""
    name = f"kt{uuid.uuid4().hex[:6]}"
    pair = [f"{name}a", f"{name}b"]
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", pair[0], "type", "veth", "peer", "name", pair[1]], check=True, timeout=30
        )
        yield f"/run/netns/{name}", sorted(["lo", *pair])
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=True)
        assert name not in left.stdout, f"netns {name} left behind: {left.stdout}"


def a_pod(*, volumes: list[Obj] | None = None, mounts: list[Obj] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": NS, "uid": "u-1"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": volumes or [],
            "containers": [{"name": "c", "command": ["sh"], "volumeMounts": mounts or []}],
        },
    }


def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "pod-hosts"
    path.write_text("10.244.0.7\tp\n10.96.0.10\thead-svc.default.svc.cluster.local head-svc\n")
    path.chmod(0o644)
    return path


async def prepare(store: EmbeddedStore, pod: Obj, ctx: VolumeContext, argv: list[str]) -> list[str]:
    prepared = await prepare_container(
        reader=store, pod=pod, container=pod["spec"]["containers"][0], argv=argv, env=dict(os.environ), ctx=ctx
    )
    return prepared.argv


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def interfaces(proc_net_dev: str) -> list[str]:
    return sorted(line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:] if ":" in line)


async def test_a_container_in_its_sandbox_sees_the_pods_network_hostname_hosts_and_own_tmp(
    store: EmbeddedStore, tmp_path: Path, netns: tuple[str, list[str]]
) -> None:
    netns_file, links = netns
    pod_dir = tmp_path / "state" / "pods" / NS / "p"
    hosts = hosts_file(tmp_path)
    tag = uuid.uuid4().hex[:8]
    volume_at = f"/tmp/kt-vol-{tag}"
    sandbox = Sandbox(
        ip="10.244.0.7", netns=netns_file, hostname=f"pod-{tag}", files=((str(hosts), "/etc/hosts"),), private_tmp=True
    )
    ctx = VolumeContext(pod_dir=pod_dir, state_dir=tmp_path / "state", sandbox=sandbox)
    pod = a_pod(volumes=[{"name": "scratch", "emptyDir": {}}], mounts=[{"name": "scratch", "mountPath": volume_at}])
    host_hosts = Path("/etc/hosts").read_text()
    script = (
        "cat /proc/net/dev; echo ---; cat /proc/sys/kernel/hostname; echo ---; cat /etc/hosts; echo ---; "
        f"echo mine > /tmp/written-{tag}; echo vol > {volume_at}/f; ls -a /tmp"
    )
    argv = await prepare(store, pod, ctx, ["sh", "-c", script])
    done = await asyncio.to_thread(run, argv)
    assert done.returncode == 0, done.stderr
    net, hostname, hosts_seen, tmp_listing = done.stdout.split("---\n")
    assert interfaces(net) == links, "the container sees the pod's network namespace only"
    assert hostname.strip() == f"pod-{tag}"
    assert socket.gethostname() != f"pod-{tag}"
    assert hosts_seen == hosts.read_text()
    assert Path("/etc/hosts").read_text() == host_hosts
    assert sorted(tmp_listing.split()) == sorted([".", "..", f"kt-vol-{tag}", f"written-{tag}"])
    assert not Path(f"/tmp/written-{tag}").exists(), "a file written in the container's /tmp reached the host's"
    assert (pod_dir / "tmp" / "c" / f"written-{tag}").read_text() == "mine\n"
    assert (pod_dir / "tmp" / "c").stat().st_mode & 0o7777 == 0o1777
    assert not Path(volume_at).exists(), "a mount point under /tmp was made on the host"
    assert (pod_dir / "volumes" / "scratch" / "f").read_text() == "vol\n", "the volume is the emptyDir"
    assert f"kt-vol-{tag}" not in Path("/proc/self/mountinfo").read_text()


async def test_a_file_bound_over_a_symlink_is_seen_through_the_link(store: EmbeddedStore, tmp_path: Path) -> None:
    real = tmp_path / "etc-real" / "resolv.conf"
    real.parent.mkdir()
    real.write_text("nameserver 192.0.2.1\n")
    link = tmp_path / "resolv.conf"
    link.symlink_to(real)
    mine = tmp_path / "pod-resolv"
    mine.write_text("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n")
    sandbox = Sandbox(ip="127.0.0.1", files=((str(mine), str(link)),))
    ctx = VolumeContext(pod_dir=tmp_path / "state" / "pods" / NS / "p", state_dir=tmp_path / "state", sandbox=sandbox)
    argv = await prepare(store, a_pod(), ctx, ["sh", "-c", f"cat {link}; echo x > {link} 2>/dev/null || echo ro"])
    done = await asyncio.to_thread(run, argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout == mine.read_text() + "ro\n"
    assert real.read_text() == "nameserver 192.0.2.1\n", "the host's file is untouched"
    assert link.is_symlink()


async def test_join_runs_a_command_inside_a_running_container(
    store: EmbeddedStore, tmp_path: Path, netns: tuple[str, list[str]]
) -> None:
    netns_file, links = netns
    pod_dir = tmp_path / "state" / "pods" / NS / "p"
    hosts = hosts_file(tmp_path)
    tag = uuid.uuid4().hex[:8]
    sandbox = Sandbox(
        ip="10.244.0.7", netns=netns_file, hostname=f"pod-{tag}", files=((str(hosts), "/etc/hosts"),), private_tmp=True
    )
    ctx = VolumeContext(pod_dir=pod_dir, state_dir=tmp_path / "state", sandbox=sandbox)
    pod = a_pod(volumes=[{"name": "work", "emptyDir": {}}], mounts=[{"name": "work", "mountPath": "/opt/kt-work"}])
    pod["spec"]["containers"][0]["workingDir"] = "/opt/kt-work"
    argv = await prepare(store, pod, ctx, ["sh", "-c", "echo inside > /tmp/marker; exec sleep 60"])
    env = {**os.environ, "KT_CONTAINER_ENV": f"env-{tag}"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        marker = pod_dir / "tmp" / "c" / "marker"
        deadline = time.monotonic() + 20
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert marker.exists(), f"the container never started: exit {proc.poll()}, stderr {proc.stderr!r}"
        script = (
            "cat /proc/sys/kernel/hostname; cat /etc/hosts; cat /tmp/marker; pwd; echo $KT_CONTAINER_ENV; "
            "cat /proc/net/dev"
        )
        joined = await asyncio.to_thread(run, join_argv(python=sys.executable, pid=proc.pid, argv=["sh", "-c", script]))
        assert joined.returncode == 0, joined.stderr
        lines = joined.stdout.splitlines()
        assert lines[0] == f"pod-{tag}"
        assert "\n".join(lines[1:3]) + "\n" == hosts.read_text()
        assert lines[3:6] == ["inside", "/opt/kt-work", f"env-{tag}"]
        assert interfaces("\n".join(lines[6:])) == links
        gone = await asyncio.to_thread(run, join_argv(python=sys.executable, pid=2**22 + 1, argv=["true"]))
        assert gone.returncode == mountns.FAILED
        assert f"cannot enter the container of process {2**22 + 1}" in gone.stderr
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert not Path("/opt/kt-work").exists()


class FixedTokens:
    """A TokenSource (the node agent's asks the apiserver for a TokenRequest) that issues one fixed token."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None, int]] = []

    async def token(self, *, pod: Obj, audience: str | None, expiration_seconds: int) -> str:
        self.asked.append((pod["metadata"]["name"], audience, expiration_seconds))
        return "eyJhbGciOiJSUzI1NiJ9.fixed.token"


async def test_the_kube_api_access_volume_renders_token_ca_and_namespace(store: EmbeddedStore, tmp_path: Path) -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    await store.create(
        CONFIGMAP,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": NS}, "data": {
            "ca.crt": ca}},
    )  # fmt: skip
    pod = a_pod(
        volumes=[KUBE_API_ACCESS], mounts=[{"name": KUBE_API_ACCESS["name"], "mountPath": SA_DIR, "readOnly": True}]
    )
    check_pod(pod)
    tokens = FixedTokens()
    pod_dir = tmp_path / "state" / "pods" / NS / "p"
    ctx = VolumeContext(pod_dir=pod_dir, state_dir=tmp_path / "state", tokens=tokens)
    script = f"cd {SA_DIR}; for f in token ca.crt namespace; do stat -L -c '%a' $f; cat $f; echo; done"
    done = await asyncio.to_thread(run, await prepare(store, pod, ctx, ["sh", "-c", script]))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"644\neyJhbGciOiJSUzI1NiJ9.fixed.token\n644\n{ca}\n644\n{NS}\n"
    assert tokens.asked == [("p", None, 3607)]
    assert not Path(SA_DIR).exists(), "the mount point was made on the host"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A dir everyone may read and write (``nobody`` runs the launcher too)."""
    root = Path("/tmp") / f"kt-sandbox-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def launch(plan: dict[str, Any], script: str, *, where: Path, user: list[str]) -> subprocess.CompletedProcess[str]:
    path = where / f"plan-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(plan))
    path.chmod(0o644)
    return run([*user, sys.executable, "-I", "-m", "kray.local.mountns", str(path), "--", "sh", "-c", script])


@pytest.mark.parametrize("user", [[], AS_NOBODY], ids=["root", "nobody"])
def test_hostname_files_and_private_tmp_without_a_netns_as_root_and_as_a_normal_user(
    shared: Path, user: list[str]
) -> None:
    """Host paths under the covered /tmp (the volume's source, the shadow's stage, a kept dir) still work."""
    tmp, kept, src = shared / "tmp-c", shared / "kept", shared / "src"
    for directory in (tmp, kept, src):
        directory.mkdir(mode=0o777)
        directory.chmod(0o1777)
    (kept / "tool").write_text("kept\n")
    (src / "data").write_text("volume\n")
    hosts = shared / "hosts"
    hosts.write_text("10.1.2.3 mine\n")
    hosts.chmod(0o644)
    tag = uuid.uuid4().hex[:8]
    target = f"/home/kt-{tag}/data"
    plan = {
        "covers": [{"path": "/home", "how": "shadow", "stage": str(shared / "stage")}],
        "mounts": [
            {"source": str(src), "target": target, "read_only": True},
            {"source": str(src), "target": f"/tmp/in-tmp-{tag}"},
        ],
        "sandbox": {
            "hostname": f"h-{tag}",
            "files": [[str(hosts), "/etc/hosts"]],
            "tmp": str(tmp),
            "keep": [str(kept)],
        },
    }
    script = (
        f"cat /proc/sys/kernel/hostname /etc/hosts; echo w > /tmp/w-{tag}; id -u; cat {hosts} || echo hidden; "
        f"cat {kept}/tool {target}/data /tmp/in-tmp-{tag}/data"
    )
    done = launch(plan, script, where=shared, user=user)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [f"h-{tag}", "10.1.2.3 mine", "65534" if user else "0", "hidden", "kept", "volume", "volume"]
    assert (tmp / f"w-{tag}").read_text() == "w\n"
    assert (tmp / f"in-tmp-{tag}").is_dir(), "the volume's mount point is in the container's own /tmp"
    assert not Path(f"/tmp/w-{tag}").exists()
    assert not Path(f"/home/kt-{tag}").exists()


def test_join_as_a_normal_user_enters_the_containers_user_namespace_first(shared: Path) -> None:
    tmp = shared / "tmp-c"
    tmp.mkdir(mode=0o777)
    tmp.chmod(0o1777)
    tag = uuid.uuid4().hex[:8]
    plan_path = shared / "plan.json"
    plan_path.write_text(json.dumps({"mounts": [], "sandbox": {"hostname": f"u-{tag}", "tmp": str(tmp)}}))
    plan_path.chmod(0o644)
    launcher = [sys.executable, "-I", "-m", "kray.local.mountns", str(plan_path), "--"]
    proc = subprocess.Popen(
        [*AS_NOBODY, *launcher, "sh", "-c", "echo in > /tmp/marker; exec sleep 60"], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp / "marker").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp / "marker").exists(), f"the container never started: exit {proc.poll()}"
        argv = [
            *AS_NOBODY,
            *join_argv(python=sys.executable, pid=proc.pid, argv=["sh", "-c", "hostname; id -u; cat /tmp/marker"]),
        ]
        joined = run(argv)
        assert joined.returncode == 0, joined.stderr
        assert joined.stdout.split() == [f"u-{tag}", "65534", "in"]
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_netns_as_a_normal_user_is_refused_clearly(shared: Path, netns: tuple[str, list[str]]) -> None:
    plan = {"mounts": [], "sandbox": {"netns": netns[0]}}
    done = launch(plan, "echo ran", where=shared, user=AS_NOBODY)
    assert done.returncode == mountns.FAILED
    assert done.stdout == ""
    assert f"entering the pod's network namespace {netns[0]} needs root" in done.stderr


async def test_a_container_holds_no_other_pods_network_namespace(
    store: EmbeddedStore, tmp_path: Path, netns: tuple[str, list[str]]
) -> None:
    """Its mount namespace is a copy of the host's, ``/run/netns/*`` mounts included: kept, they would keep
    every other pod's namespace (and veth) alive after its deletion, as long as this container runs."""
    other = f"kt{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", other], check=True, timeout=30)
    proc = None
    try:
        pod_dir = tmp_path / "state" / "pods" / NS / "p"
        ctx = VolumeContext(
            pod_dir=pod_dir, state_dir=tmp_path / "state", sandbox=Sandbox(ip="10.244.0.7", netns=netns[0])
        )
        argv = await prepare(store, a_pod(), ctx, ["sh", "-c", "echo up; exec sleep 60"])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "up\n", f"the container did not start: {proc.poll()}"
        mountinfo = Path(f"/proc/{proc.pid}/mountinfo").read_text()
        held = [line for line in mountinfo.splitlines() if line.split(" - ")[1].startswith("nsfs ")]
        assert held == [], "the container's mount namespace holds network namespace files"
        host = Path("/proc/self/mountinfo").read_text()
        assert f"/run/netns/{other} " in host, "the host lost a network namespace file"
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=30)
        subprocess.run(["ip", "netns", "delete", other], check=False, timeout=30)
