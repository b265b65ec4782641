"""The mount-namespace launcher with real mounts and real processes: as root (a mount namespace) and as
``nobody`` (a user + mount namespace, via ``setpriv``). What the process sees at its mount paths, and that
the host sees none of it: no mount in this process's mountinfo, no mount point left on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kray.local import mountns

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A dir everyone may read and write (``nobody`` runs the launcher too)."""
    root = Path(tempfile_dir()) / f"h1-mountns-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def launch(
    plan: dict[str, Any], script: str, *, where: Path, user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = where / f"plan-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(plan))
    path.chmod(0o644)
    argv = [*(user or []), sys.executable, "-I", "-m", "kray.local.mountns", str(path), "--", "sh", "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def source(shared: Path, name: str = "src") -> Path:
    directory = shared / name
    directory.mkdir(mode=0o777)
    (directory / "hello.txt").write_text("hello\n")
    for path in (directory, directory / "hello.txt"):
        path.chmod(0o777 if path.is_dir() else 0o666)
    return directory


def host_mountinfo() -> str:
    return Path("/proc/self/mountinfo").read_text()


@pytest.mark.parametrize("user", [None, AS_NOBODY], ids=["root", "nobody"])
def test_a_volume_at_a_missing_path_is_seen_by_the_process_and_not_by_the_host(
    shared: Path, user: list[str] | None
) -> None:
    target = f"/home/kray-h1-{uuid.uuid4().hex[:8]}/samples"
    src = source(shared)
    plan = {
        "covers": [{"path": "/home", "how": "overlay", "upper": str(shared / "up"), "work": str(shared / "wk")}],
        "mounts": [{"source": str(src), "target": target, "read_only": True}],
        "workdir": target,
    }
    done = launch(plan, "pwd; cat hello.txt; id -u; echo x > new.txt || echo refused", where=shared, user=user)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [target, "hello"]
    assert lines[2] == ("65534" if user else "0")  # the real uid is kept
    assert lines[3] == "refused"
    assert "Read-only file system" in done.stderr
    assert not Path(target).parent.exists(), "the mount point was created on the host"
    assert target not in host_mountinfo()
    assert not (src / "new.txt").exists()


@pytest.mark.parametrize("user", [None, AS_NOBODY], ids=["root", "nobody"])
def test_shadow_keeps_every_existing_entry_shared_and_makes_the_new_one_private(
    shared: Path, user: list[str] | None
) -> None:
    host = shared / "host"
    (host / "keep" / "sub").mkdir(parents=True)
    (host / "link").symlink_to("keep")
    for path in (host, host / "keep", host / "keep" / "sub"):
        path.chmod(0o777)
    src = source(shared)
    plan = {
        "covers": [{"path": str(host), "how": "shadow", "stage": str(shared / "stage")}],
        "mounts": [{"source": str(src), "target": str(host / "new" / "deep")}],
    }
    script = f"cat {host}/new/deep/hello.txt; echo w > {host}/link/sub/written; ls {host}"
    done = launch(plan, script, where=shared, user=user)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "keep", "link", "new"]
    assert (host / "keep" / "sub" / "written").read_text() == "w\n", "a write under an existing entry is the host's"
    assert sorted(p.name for p in host.iterdir()) == ["keep", "link"]
    assert str(host) not in host_mountinfo()


def test_file_mount_tmpfs_with_size_and_an_existing_target(shared: Path) -> None:
    src = source(shared)
    existing = shared / "existing"
    existing.mkdir()
    (existing / "host-only").write_text("")
    plan = {
        "mounts": [
            {"source": str(existing / "host-only"), "target": str(shared / "file-here"), "file": True},
            {"target": str(existing), "tmpfs": True, "size": 1024 * 1024},
            {"source": str(src / "hello.txt"), "target": str(existing / "conf.txt"), "file": True, "read_only": True},
        ]
    }
    script = (
        f"ls {existing}; cat {existing}/conf.txt; "
        f"dd if=/dev/zero of={existing}/big bs=1k count=2048 2>/dev/null || echo full; "
        f"test -f {shared}/file-here && echo file"
    )
    done = launch(plan, script, where=shared)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["conf.txt", "hello", "full", "file"]
    assert sorted(p.name for p in existing.iterdir()) == ["host-only"], "the tmpfs is the process's only"


def test_the_exit_code_and_failures_of_the_launcher(shared: Path) -> None:
    assert launch({}, "exit 7", where=shared).returncode == 7
    bad = launch({"mounts": [{"source": str(shared / "nope"), "target": str(shared / "t")}]}, "true", where=shared)
    assert bad.returncode == mountns.FAILED
    assert "cannot mount the pod's volumes" in bad.stderr
    assert str(shared / "nope") in bad.stderr


NESTED = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r1, w1 = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:
        os._exit(99)
    os.write(w1, b"x")
    os.read(r2, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    os.execvp(sys.argv[1], sys.argv[1:])
os.read(r1, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write("0 0 65536")
os.write(w2, b"x")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs argv as root of a new user namespace (uids 0-65535 mapped to the host's) that allows no further user
namespace: ``user.max_user_namespaces`` is per user namespace, so the host's setting is untouched."""


def without_user_namespaces(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", NESTED, *argv]


def test_probe_reports_a_kernel_that_refuses_user_namespaces() -> None:
    assert os.geteuid() == 0, "these tests switch users: run them as root"
    probe = [sys.executable, "-I", "-m", "kray.local.mountns", "--probe"]
    done = subprocess.run(
        without_user_namespaces([*AS_NOBODY, *probe]), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "unshare" in done.stderr
    assert "No space left on device" in done.stderr
    assert Path("/proc/sys/user/max_user_namespaces").read_text().strip() != "0"
    ok = subprocess.run([*AS_NOBODY, *probe], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
