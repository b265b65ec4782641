"""The launcher's guarantees: loud build failures, a verifiable PKI, and no leftovers after stop/down.

Why: a launcher that leaks processes or temp dirs, or turns a failed build into a skip, would make the
whole Kubernetes test layer untrustworthy. The leak tests start their own planes (not the session one)
so they can check the machine after a full stop.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Namespace
from typer.testing import CliRunner

from kray.cli.dev import app
from kray.dev import pki
from kray.dev.binaries import Binaries, BuildError, build_script, ensure_binaries
from kray.dev.controlplane import ControlPlane, Options
from kray.dev.procs import processes_mentioning


def test_build_failure_raises_exact_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "build.sh"
    script.write_text("echo 'compiling ...'\necho 'go: k8s.io/x@v0.0.0: unknown revision v0.0.0' >&2\nexit 7\n")
    monkeypatch.delenv("KRAY_K8S_BIN_DIR", raising=False)
    monkeypatch.setenv("KRAY_K8S_BUILD_SCRIPT", str(script))
    monkeypatch.setenv("KRAY_K8S_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BuildError) as info:
        ensure_binaries()
    msg = str(info.value)
    assert "exited 7" in msg
    assert "go: k8s.io/x@v0.0.0: unknown revision v0.0.0" in msg
    assert str(tmp_path / "cache" / "build.log") in msg
    assert "unknown revision" in (tmp_path / "cache" / "build.log").read_text()


def test_build_script_cache_layout_and_check(tmp_path: Path) -> None:
    env = {**os.environ, "KRAY_K8S_CACHE": str(tmp_path)}
    script = str(build_script())
    out = subprocess.run(["bash", script, "--print-bin-dir"], env=env, capture_output=True, text=True, check=True)
    bin_dir = Path(out.stdout.strip())
    assert bin_dir.parent.parent == tmp_path
    assert bin_dir.parent.name.startswith("v1.")
    assert bin_dir.name == "bin"
    assert subprocess.run(["bash", script, "--check"], env=env, check=False).returncode == 1  # empty cache
    assert not bin_dir.exists()  # --check never builds


def test_prebuilt_dir_missing_binaries_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRAY_K8S_BIN_DIR", str(tmp_path))
    with pytest.raises(BuildError, match="lacks executable"):
        ensure_binaries()


def test_pki_serving_cert_verifies_for_loopback(tmp_path: Path) -> None:
    material = pki.generate(directory=tmp_path, service_ip="10.96.0.1")
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(material.ca_cert), str(material.serving_cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(material.serving_cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text
    assert material.token_file.read_text().startswith(f"{material.token},kray-admin,")
    assert oct(material.sa_key.stat().st_mode & 0o777) == "0o600"


def _assert_no_leftovers(workdir: Path, pids: dict[str, int]) -> None:
    assert processes_mentioning(str(workdir)) == []
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], name
    assert not workdir.exists()


@pytest.mark.k8s
@pytest.mark.slow
def test_stop_leaves_no_processes_or_temp_dirs(k8s_binaries: Binaries) -> None:
    plane = ControlPlane(binaries=k8s_binaries, options=Options(scheduler=False))
    with plane:
        workdir, pids = plane.workdir, plane.pids()
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        assert len(processes_mentioning(str(workdir))) == 3
        client = Client(KubeConfig.from_file(plane.kubeconfig))
        assert "default" in {ns.metadata.name for ns in client.list(Namespace)}
        client.close()
    _assert_no_leftovers(workdir, pids)


@pytest.mark.k8s
@pytest.mark.slow
def test_cli_up_env_down(k8s_binaries: Binaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("KRAY_K8S_BIN_DIR", str(k8s_binaries.bin_dir))  # never rebuild inside the test
    runner = CliRunner()
    up = runner.invoke(app, ["k8s", "up", "--no-scheduler"])
    assert up.exit_code == 0, up.output
    assert up.stdout.startswith("export KUBECONFIG=")
    exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.strip().splitlines())
    kubeconfig = Path(exports["KUBECONFIG"])
    assert exports["PATH"].startswith(f"{k8s_binaries.bin_dir}:"), "kubectl and the plane's binaries first on PATH"
    workdir = kubeconfig.parent
    try:
        client = Client(KubeConfig.from_file(kubeconfig))
        assert client.get(Namespace, "kube-system").metadata.name == "kube-system"
        client.close()
        assert runner.invoke(app, ["k8s", "up", "--no-scheduler"]).stdout == up.stdout  # idempotent
        env = runner.invoke(app, ["k8s", "env"])
        assert env.stdout == up.stdout
        pids = {str(p): p for p, _ in processes_mentioning(str(workdir))}
        assert len(pids) == 3
    finally:
        down = runner.invoke(app, ["k8s", "down"])
    assert down.exit_code == 0, down.output
    _assert_no_leftovers(workdir, pids)
    assert runner.invoke(app, ["k8s", "env"]).exit_code == 1
    assert not os.path.exists(tmp_path / "state" / "kray" / "dev-k8s.json")
