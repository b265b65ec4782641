"""``kray operator`` refuses bad flags before connecting anywhere: exit 2, one line naming the flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kray.operator.config import OperatorConfigError, parse_bind_address, parse_namespaces


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--watch-namespace", "Bad_NS"], "--watch-namespace"),
        (["--metrics-addr", "localhost:http"], "--metrics-addr"),
        (["--health-probe-bind-address", "1.2.3.4:70000"], "--health-probe-bind-address"),
        (["--reconcile-concurrency", "0"], "--reconcile-concurrency"),
        (["--startup-policy", "eager"], "--startup-policy"),
        (["--enable-leader-election", "maybe"], "--enable-leader-election"),
        (["--feature-gates", "NoSuchGate=true"], "--feature-gates"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "--kubeconfig"),
        (["--log-stdout-encoder", "xml"], "--log-stdout-encoder"),
    ],
)
def test_a_bad_flag_exits_2_naming_it(args: list[str], named: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kray.cli.main", "operator", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_bad_environment_value_is_refused_by_name() -> None:
    env = {"RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV": "soon", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "kray.cli.main", "operator"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV='soon'" in result.stderr


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("0", "127.0.0.1", 0), (":8080", "0.0.0.0", 8080), ("127.0.0.1:9", "127.0.0.1", 9), ("8082", "127.0.0.1", 8082)],
)
def test_go_listen_addresses(text: str, host: str, port: int) -> None:
    address = parse_bind_address(text, option="--metrics-addr")
    assert (address.host, address.port) == (host, port)
    assert address.enabled == (port != 0)


def test_watch_namespace_is_a_comma_list_and_empty_means_all() -> None:
    assert parse_namespaces("") == ()
    assert parse_namespaces("a, b,a,,c") == ("a", "b", "c")
    with pytest.raises(OperatorConfigError, match="RFC 1123"):
        parse_namespaces("ok,-bad")


def test_startup_policy_is_kuberays_by_default_and_fail_fast_on_request() -> None:
    from kray.controllers.rayjob.plan import StartupPolicy
    from kray.operator.config import OperatorConfig, RuntimeEnv
    from kray.operator.manager import job_settings

    assert job_settings(OperatorConfig()).startup is None
    assert isinstance(job_settings(OperatorConfig(startup_policy="fail-fast")).startup, StartupPolicy)
    env = RuntimeEnv.from_env(
        {"RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS": "60", "DELETE_RAYJOB_CR_AFTER_JOB_FINISHES": "true"}
    )
    settings = job_settings(OperatorConfig(env=env))
    assert (settings.status_check_timeout, settings.delete_rayjob_after_finish) == (60.0, True)
