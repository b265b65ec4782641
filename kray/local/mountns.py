"""The container launcher: mount a pod's volumes in a private mount namespace, then exec the command.

Run as ``python -m kray.local.mountns PLAN.json -- argv...`` (``--probe`` only checks the kernel allows it).
Tiny on purpose, and without imports beyond the standard library: it runs before every container of a
pod with volumes, and a pod without volumes never goes through it.

Why each choice:

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
CLONE_NEWUSER = 0x10000000
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


def enter() -> bool:
    """Enter a private mount namespace (and a user namespace unless root); True if a user namespace."""
    uid, gid = os.geteuid(), os.getegid()
    user = uid != 0
    _check(_libc.unshare(ctypes.c_int(CLONE_NEWNS | (CLONE_NEWUSER if user else 0))), "unshare")
    if user:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    return user


def _cover(cover: dict[str, Any], *, user: bool) -> None:
    path = cover["path"]
    if cover["how"] == "overlay":
        upper, work = cover["upper"], cover["work"]
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        options = f"lowerdir={path},upperdir={upper},workdir={work}"
        _mount("overlay", path, "overlay", 0, options + (",userxattr" if user else ""))
        return
    stage = cover["stage"]
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


def _bind(mount: dict[str, Any]) -> None:
    target = mount["target"]
    _make_target(target, is_file=mount.get("file", False))
    if mount.get("tmpfs"):
        size = mount.get("size")
        _mount("tmpfs", target, "tmpfs", 0, f"mode=1777{f',size={size}' if size else ''}")
    else:
        _mount(mount["source"], target, None, MS_BIND | MS_REC)
    if mount.get("read_only"):
        flags = os.statvfs(target).f_flag
        kept = sum(ms for st, ms in _STATVFS_FLAGS if flags & st)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def apply(plan: dict[str, Any]) -> None:
    """Enter the namespaces and mount everything the plan says (in its order), then chdir."""
    user = enter()
    for cover in plan.get("covers") or ():
        _cover(cover, user=user)
    for mount in plan.get("mounts") or ():
        _bind(mount)
    workdir = plan.get("workdir")
    if workdir and os.path.isdir(workdir):
        os.chdir(workdir)


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
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m kray.local.mountns PLAN.json -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    argv = args[2:]
    try:
        with open(args[0]) as f:
            apply(json.load(f))
    except (OSError, ValueError) as error:
        print(f"kray: cannot mount the pod's volumes: {error}", file=sys.stderr)
        return FAILED
    try:
        os.execvpe(argv[0], argv, os.environ)
    except OSError as error:
        print(f"kray: cannot start {argv[0]!r}: {error}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover -- exec does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
