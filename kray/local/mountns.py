"""The container launcher: enter a pod's sandbox, mount its volumes in a private mount namespace, exec the command.

Run as ``python -m kray.local.mountns PLAN.json -- argv...`` (``--probe`` only checks the kernel allows it);
``python -m kray.local.mountns --join PID -- argv...`` runs a command inside a launched container (exec
probes, ``ray status`` in a head pod). Tiny on purpose, and without imports beyond the standard library: it
runs before every container of a pod with volumes or an isolated sandbox; any other container never goes
through it.

The sandbox (:class:`kray.local.sandbox.Sandbox`, the plan's ``sandbox``), in this order, before the volumes:

- **network**: ``setns`` into the pod's network namespace file, first, while the process still has the
  host's capabilities (root only: a normal user's launcher refuses, naming why);
- **hostname**: a UTS namespace of its own (unshared with the mount namespace) and ``sethostname``;
- **/tmp**: the container's own dir (in its pod's dir) bound over ``/tmp``, as an image's filesystem gives
  it; host paths under ``/tmp`` the plan still needs (volume sources, the pod's dir) are reached through a
  descriptor kept on the host's ``/tmp``, and the dirs the plan keeps (the Python environment) are bound
  back at their path. Volumes under ``/tmp`` then land in the container's own ``/tmp``;
- **files**: each (host file, target) bound read-only over the target, or over what a symlink target
  resolves to (``/etc/resolv.conf`` is one on systemd hosts).

Every container's mount namespace also drops its copies of the host's namespace files (``/run/netns/*``), so
that no pod keeps another's network namespace alive.

``--join`` enters the namespaces of a running process as ``nsenter`` does: its user namespace first when it
is not ours (a normal user's container), then network and UTS, the mount namespace last (it resets the root
and working dir); namespaces we already share are skipped. It then works in the process's working dir and
with its initial environment, as a CRI runtime's exec does.

Why each choice for the volumes:

- **Namespaces**: as root, ``unshare(CLONE_NEWNS)``; as a normal user, ``unshare(CLONE_NEWUSER|CLONE_NEWNS)``
  with the uid and gid mapped to themselves (``setgroups`` denied first, as the kernel requires). The
  capabilities the new user namespace grants last until ``execve``: the mounts are done before it, and
  the command keeps the user's real uid and no capability. Python 3.11 has no ``os.unshare``: ctypes.
- **Nothing propagates to the host**: ``/`` is made recursively private before the first mount, so every
  mount lives and dies with the pod's processes. The rest of the filesystem is the host's.
- **Mount points missing on the host** (``/home/ray/samples``) are never created there, except under the
  temp dir (below). The deepest existing ancestor is covered, in the namespace only, so the path can be
  made (the plan, built by :mod:`kray.local.volumes`, says how):

  * ``overlay``: an overlayfs over the ancestor (upper and work dirs in the pod's dir). Used only when
    the ancestor holds none of kray's shared roots (the Ray temp root, kray's state dir, the pod's dir, the
    Python environment) and no other mount: writes under an overlay are private to the pod, and pods of
    a cluster share their Ray temp dir.
  * ``shadow``: the ancestor is bind-mounted aside, a tmpfs goes over it, and each of its entries is
    bind-mounted back (recursively: its submounts come along) or its symlink re-made. Every existing
    path stays the host's and shared; only new top-level entries of the ancestor are private. Used for an
    ancestor that holds shared roots or mounts (``/home`` of a user whose state dir is under ``/home``).
  * Under the temp dir (``/tmp/ray``: ``/tmp`` holds the Ray temp root), the runner creates the missing
    directory on the host before the launch, only when absent, and records it, so it is removed
    once empty and no pod of ours uses it. Covering ``/`` is refused (the planner fails the pod).

- **readOnly** is a bind followed by a ``MS_REMOUNT|MS_BIND|MS_RDONLY`` remount carrying the mount's own
  flags (``nosuid``, ``nodev``...): inside a user namespace the kernel refuses to drop locked flags.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PRIVATE_TMP = "/tmp"
JOIN_ORDER = (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS), ("mnt", CLONE_NEWNS))
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
FAILED = 125
"""The launcher's exit code when it cannot set the namespace up (its reason is on stderr: the pod's log)."""
_STATVFS_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)

_libc = ctypes.CDLL(None, use_errno=True)


class MountError(OSError):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        f"mount {source or fstype} on {target}",
    )


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter(*, uts: bool = False) -> bool:
    """Enter a private mount namespace (and a user namespace unless root, a UTS namespace if asked); True if a
    user namespace."""
    uid, gid = os.geteuid(), os.getegid()
    user = uid != 0
    flags = CLONE_NEWNS | (CLONE_NEWUSER if user else 0) | (CLONE_NEWUTS if uts else 0)
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    if user:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    return user


def _drop_namespace_files() -> None:
    """Unmount, in this mount namespace only, the namespace files it copied from the host (``/run/netns/*``):
    kept, they would hold every other pod's network namespace, and its veth, alive after that pod is gone, for
    as long as this container runs. Best effort: a user namespace may not unmount what it inherited locked."""
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    points = [line.split()[4] for line in lines if line.partition(" - ")[2].startswith("nsfs ")]
    for point in reversed(points):
        _libc.umount2(point.encode().decode("unicode_escape").encode(), ctypes.c_int(MNT_DETACH))


def _setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns {path}")
    finally:
        os.close(fd)


class _Host:
    """Host paths as the launcher reaches them: once the container's own dir covers ``/tmp``, the host's
    ``/tmp`` only through a descriptor opened on it before (paths resolved while it was still visible)."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def cover_tmp(self) -> None:
        self.fd = os.open(PRIVATE_TMP, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def __call__(self, path: str) -> str:
        if self.fd is None or not (path == PRIVATE_TMP or path.startswith(PRIVATE_TMP + "/")):
            return path
        return f"/proc/self/fd/{self.fd}{path[len(PRIVATE_TMP) :]}"

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _resolved(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan with every host path resolved (symlinks into ``/tmp`` still lead somewhere once it is covered)."""
    real = os.path.realpath
    out = dict(plan)
    out["mounts"] = [{**m, "source": real(m["source"])} if m.get("source") else m for m in plan.get("mounts") or ()]
    out["covers"] = [
        {**c, **{k: real(c[k]) for k in ("upper", "work", "stage") if c.get(k)}} for c in plan.get("covers") or ()
    ]
    sandbox = dict(plan.get("sandbox") or {})
    sandbox["files"] = [(real(source), target) for source, target in sandbox.get("files") or ()]
    out["sandbox"] = sandbox
    return out


def _sandbox(sandbox: dict[str, Any], host: _Host) -> None:
    """After the namespaces are entered: the container's own /tmp, then the files over their targets."""
    tmp = sandbox.get("tmp")
    if tmp:
        source = os.path.realpath(tmp)
        host.cover_tmp()
        _mount(host(source), PRIVATE_TMP, None, MS_BIND)
        for kept in sandbox.get("keep") or ():
            os.makedirs(kept, exist_ok=True)
            _mount(host(kept), kept, None, MS_BIND | MS_REC)
    for source, target in sandbox.get("files") or ():
        where = os.path.realpath(target)
        if not os.path.isfile(where):
            raise MountError(2, f"cannot bind {source} over {target}: {where} is not a file on this machine")
        _bind({"source": host(source), "target": where, "file": True, "read_only": True})


def _cover(cover: dict[str, Any], host: _Host, *, user: bool) -> None:
    path = cover["path"]
    if cover["how"] == "overlay":
        upper, work = host(cover["upper"]), host(cover["work"])
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        options = f"lowerdir={path},upperdir={upper},workdir={work}"
        _mount("overlay", path, "overlay", 0, options + (",userxattr" if user else ""))
        return
    stage = host(cover["stage"])
    os.makedirs(stage, exist_ok=True)
    _mount(path, stage, None, MS_BIND | MS_REC)
    st = os.stat(path)
    owner = "" if user else f",uid={st.st_uid},gid={st.st_gid}"
    _mount("tmpfs", path, "tmpfs", 0, f"mode={st.st_mode & 0o7777:o}{owner}")
    for entry in os.scandir(stage):
        here = os.path.join(path, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), here)
            continue
        if entry.is_dir(follow_symlinks=False):
            os.mkdir(here)
        else:
            open(here, "w").close()  # a mount point
        _mount(entry.path, here, None, MS_BIND | MS_REC)
    _check(_libc.umount2(stage.encode(), ctypes.c_int(MNT_DETACH)), f"umount {stage}")


def _make_target(target: str, *, is_file: bool) -> None:
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
    if is_file:
        open(target, "a").close()  # a mount point
    else:
        os.mkdir(target)


def _bind(mount: dict[str, Any], host: _Host | None = None) -> None:
    target = mount["target"]
    _make_target(target, is_file=mount.get("file", False))
    if mount.get("tmpfs"):
        size = mount.get("size")
        _mount("tmpfs", target, "tmpfs", 0, f"mode=1777{f',size={size}' if size else ''}")
    else:
        source = mount["source"]
        _mount(host(source) if host is not None else source, target, None, MS_BIND | MS_REC)
    if mount.get("read_only"):
        flags = os.statvfs(target).f_flag
        kept = sum(ms for st, ms in _STATVFS_FLAGS if flags & st)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def apply(plan: dict[str, Any]) -> None:
    """Enter the sandbox and namespaces and mount everything the plan says (in its order), then chdir."""
    plan = _resolved(plan)
    sandbox = plan["sandbox"]
    if sandbox.get("netns"):
        if os.geteuid() != 0:
            raise MountError(1, f"entering the pod's network namespace {sandbox['netns']} needs root")
        _setns(sandbox["netns"], CLONE_NEWNET)
    hostname = sandbox.get("hostname")
    user = enter(uts=bool(hostname))
    _drop_namespace_files()
    if hostname:
        name = hostname.encode()
        _check(_libc.sethostname(name, ctypes.c_size_t(len(name))), f"sethostname {hostname}")
    host = _Host()
    try:
        _sandbox(sandbox, host)
        for cover in plan.get("covers") or ():
            _cover(cover, host, user=user)
        for mount in plan.get("mounts") or ():
            _bind(mount, host)
    finally:
        host.close()
    workdir = plan.get("workdir")
    if workdir and os.path.isdir(workdir):
        os.chdir(workdir)


def _ns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def join(pid: int) -> dict[str, str]:
    """Enter the namespaces of process ``pid`` that are not ours and its working dir; its initial environment."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(
            entry.decode(errors="surrogateescape").partition("=")[::2] for entry in f.read().split(b"\0") if entry
        )
    fds = [
        (os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), name, nstype)
        for name, nstype in JOIN_ORDER
        if _ns_id(f"/proc/{pid}/ns/{name}") != _ns_id(f"/proc/self/ns/{name}")
    ]
    cwd = os.open(f"/proc/{pid}/cwd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for fd, name, nstype in fds:
            _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns {name} of process {pid}")
        os.fchdir(cwd)
    finally:
        for fd, _, _ in fds:
            os.close(fd)
        os.close(cwd)
    return env


def probe() -> str | None:
    """Whether this process may enter the namespaces a pod's volumes need (None) or why not."""
    try:
        enter()
    except OSError as error:
        return str(error)
    return None


def main(args: list[str]) -> int:
    if args[:1] == ["--probe"]:
        reason = probe()
        if reason:
            print(reason, file=sys.stderr)
        return 0 if reason is None else 1
    if args[:1] == ["--join"] and len(args) >= 4 and args[1].isdigit() and args[2] == "--":
        argv = args[3:]
        try:
            env = join(int(args[1]))
        except OSError as error:
            print(f"kray: cannot enter the container of process {args[1]}: {error}", file=sys.stderr)
            return FAILED
    elif len(args) >= 3 and args[1] == "--" and not args[0].startswith("--"):
        argv, env = args[2:], dict(os.environ)
        try:
            with open(args[0]) as f:
                apply(json.load(f))
        except (OSError, ValueError) as error:
            print(f"kray: cannot mount the pod's volumes (or enter its sandbox): {error}", file=sys.stderr)
            return FAILED
    else:
        print(
            "usage: python -m kray.local.mountns PLAN.json -- COMMAND [ARG...]\n"
            "       python -m kray.local.mountns --join PID -- COMMAND [ARG...]",
            file=sys.stderr,
        )
        return 2
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        print(f"kray: cannot start {argv[0]!r}: {error}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover -- exec does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
