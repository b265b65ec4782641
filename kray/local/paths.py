"""Where local mode keeps its state: one directory (``KRAY_HOME``, else the user's state dir)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


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
