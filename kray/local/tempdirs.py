"""Which Ray temp dirs belong to which state dir, so the ones nothing uses any more can go.

Every cluster's Ray temp dir lies directly inside :func:`ray_temp_root` (a worker pod's own one inside its
cluster's), a root shared by every state dir of the user: two servers may run at once. Before a pod's
first process starts, the pod runner writes a marker file into the pod's temp dir naming its state dir;
a top-level dir belongs to a state dir when its marker, or the marker of a dir directly inside it, names
that state dir.

A marker rather than the pods' ``kray.io/ray-temp-dir`` annotations read from the store: the store
forgets a pod once its deletion finished, so a dir whose removal was cut short (a server killed with -9)
would be named by no record; the marker lives and dies with the dir it describes, and reading it needs
neither the store's schema nor opening a database that a running server may be writing. A dir without a
marker is nobody's and is never touched. Deletion goes through :func:`remove_tree` only (never outside the
root, never through a symlink).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from kray.local.paths import UnsafePath, ray_temp_root, remove_tree

MARKER = "kray-state-dir"


def mark(temp_dir: Path, *, home: Path) -> None:
    """Create ``temp_dir`` (it must lie strictly inside the root) and record ``home`` as its state dir."""
    root = ray_temp_root()
    root.mkdir(mode=0o700, exist_ok=True)
    if temp_dir.is_symlink() or not _strictly_inside(temp_dir, root):
        raise UnsafePath(f"{temp_dir} is not inside {root}")
    temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker = temp_dir / MARKER
    if _read(marker) == str(home):
        return
    staging = temp_dir / f".{MARKER}.{os.getpid()}"
    staging.write_text(f"{home}\n")
    staging.replace(marker)


def owned(home: Path) -> list[Path]:
    """The top-level dirs of the root that belong to ``home`` (see the module's docstring)."""
    root = ray_temp_root()
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    wanted = str(home)
    found = []
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir():
            continue
        markers = [entry / MARKER]
        try:
            markers += [child / MARKER for child in entry.iterdir() if child.is_dir() and not child.is_symlink()]
        except OSError:
            continue
        if any(_read(marker) == wanted for marker in markers):
            found.append(entry)
    return found


def remove_unused(home: Path, *, used: Iterable[str | Path] = ()) -> list[Path]:
    """Delete ``home``'s temp dirs but those that are, or contain, a path of ``used``; returns the deleted.

    The caller vouches that no live process uses any other of them (the state dir's processes are gone,
    or the pods in ``used`` are all that may run). Errors leave a dir in place; they never raise.
    """
    keep = [Path(p) for p in used]
    removed = []
    root = ray_temp_root()
    for entry in owned(home):
        if any(p == entry or p.is_relative_to(entry) for p in keep):
            continue
        try:
            if remove_tree(entry, inside=root):
                removed.append(entry)
        except (OSError, UnsafePath):
            continue
    return removed


def _strictly_inside(path: Path, root: Path) -> bool:
    real, base = path.resolve(), root.resolve()
    return real != base and real.is_relative_to(base)


def _read(marker: Path) -> str | None:
    """The marker's text, or None when it is missing, unreadable or a symlink."""
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as file:
        try:
            return file.read(4096).strip()
        except (OSError, UnicodeDecodeError):
            return None
