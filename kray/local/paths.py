"""Where local mode keeps its state: one directory (``KRAY_HOME``, else the user's state dir), plus the
per-user root of the clusters' Ray temp dirs, and the one guarded way to delete anything under either."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs


class UnsafePath(ValueError):
    """A path kray was asked to delete is not strictly inside the root it must stay in."""


def ray_temp_root() -> Path:
    """The parent of every cluster's Ray temp dir (``--temp-dir``), private to this user.

    Short on purpose: Ray's Unix socket paths live below it and must stay under 108 bytes.
    """
    return Path(tempfile.gettempdir()) / f"kray-{os.getuid()}"


def remove_tree(path: Path, *, inside: Path) -> bool:
    """Delete ``path`` (a directory tree or a file) when it lies strictly inside ``inside``.

    Raises :class:`UnsafePath` (and deletes nothing) when ``path`` is a symlink or resolves outside
    ``inside`` (or to ``inside`` itself), so an annotation or a planted link can never point the deletion
    elsewhere; ``shutil.rmtree`` does not follow the links it meets below ``path`` either. Returns
    whether something was there to delete; OSErrors of the deletion itself propagate.
    """
    if path.is_symlink():
        raise UnsafePath(f"{path} is a symlink")
    real, root = path.resolve(), inside.resolve()
    if real == root or not real.is_relative_to(root):
        raise UnsafePath(f"{path} is not inside {inside}")
    if not real.exists():
        return False
    if real.is_dir():
        shutil.rmtree(real)
    else:
        real.unlink()
    return True


@dataclass(frozen=True, slots=True)
class LocalPaths:
    home: Path

    @classmethod
    def default(cls) -> LocalPaths:
        override = os.environ.get("KRAY_HOME")
        return cls((Path(override) if override else platformdirs.user_state_path("kray")).resolve())

    def ensure(self) -> LocalPaths:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self

    @property
    def store(self) -> Path:
        return self.home / "store.sqlite"

    @property
    def history(self) -> Path:
        return self.home / "history.sqlite"

    @property
    def token(self) -> Path:
        return self.home / "server.token"

    @property
    def server_info(self) -> Path:
        return self.home / "server.json"

    @property
    def server_log(self) -> Path:
        return self.home / "server.log"

    @property
    def lock(self) -> Path:
        return self.home / "server.lock"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def job_log(self, namespace: str, name: str, submission_id: str) -> Path:
        return self.logs / namespace / name / f"{submission_id}.log"

    def cluster_token(self, namespace: str, name: str) -> Path:
        return self.home / "clusters" / namespace / name / "token"
