"""``kray dashboard``'s token file follows the cluster: a re-created cluster of the same name has a new token."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import httpx2
import pytest

from kray.store import RAYCLUSTER, SECRET

from .conftest import Local, raycluster

pytestmark = pytest.mark.slow


def token_file(local: Local, cluster: str) -> Path:
    shown = local.kray("dashboard", cluster)
    assert shown.returncode == 0, shown.stderr
    found = re.search(r"Token file: (\S+)", shown.stdout)
    assert found, shown.stdout
    return Path(found.group(1))


def dashboard_status(local: Local, cluster: str, token: str) -> int:
    response = httpx2.get(
        f"{local.dashboard_url(cluster)}/api/jobs/", headers={"x-ray-authorization": f"Bearer {token}"}, timeout=10
    )
    return response.status_code


def test_the_token_file_is_replaced_when_the_cluster_is_recreated(local: Local) -> None:
    local.create(RAYCLUSTER, raycluster("lm-token", workers=0))
    local.wait_cluster_ready("lm-token", workers=0)
    path = token_file(local, "lm-token")
    first = local.cluster_token("lm-token")
    assert path.read_text() == first

    local.delete(RAYCLUSTER, "lm-token")
    local.wait_gone(RAYCLUSTER, "lm-token")
    local.wait_gone(SECRET, "lm-token")
    local.create(RAYCLUSTER, raycluster("lm-token", workers=0))
    local.wait_cluster_ready("lm-token", workers=0)
    second = local.cluster_token("lm-token")
    assert second != first, "a re-created cluster has a new token"

    assert token_file(local, "lm-token") == path
    assert path.read_text() == second, "the token file still holds the old cluster's token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token"], "no temporary file is left beside it"
    assert dashboard_status(local, "lm-token", path.read_text()) == 200
    local.delete(RAYCLUSTER, "lm-token")


SECRET_REF = Path(__file__).resolve().parents[3] / "shared" / "kuberay-samples" / "ray-cluster.auth.secret-ref.yaml"


def test_dashboard_reads_the_token_from_the_secret_named_in_auth_options(local: Local) -> None:
    """``spec.authOptions.secretName``: the cluster's token is the user's Secret's, not a ``<cluster>`` Secret."""
    applied = local.kray("apply", "-f", str(SECRET_REF))
    assert applied.returncode == 0, applied.stderr
    local.wait_cluster_ready("ray-cluster-with-auth", workers=1)
    assert local.get(SECRET, "ray-cluster-with-auth") is None, "no Secret is made when the user names one"
    path = token_file(local, "ray-cluster-with-auth")
    assert path.read_text() == "super-secret-example-token"
    assert dashboard_status(local, "ray-cluster-with-auth", path.read_text()) == 200
    assert dashboard_status(local, "ray-cluster-with-auth", "not-the-token") in {401, 403}
    local.delete(RAYCLUSTER, "ray-cluster-with-auth")
    local.wait_gone(RAYCLUSTER, "ray-cluster-with-auth", timeout=90)
    local.delete(SECRET, "ray-cluster-token")
