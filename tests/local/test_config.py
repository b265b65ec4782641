"""The local server's KRAY_* knobs: defaults, overrides, and bad values refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kray.controllers.rayjob.plan import StartupPolicy
from kray.local import config


def test_defaults_are_fail_fast_with_the_kubelets_backoff(tmp_path: Path) -> None:
    assert config.job_settings({}).startup == StartupPolicy(crash_loop_restarts=3, timeout=600.0)
    assert config.runner_settings({}, state_dir=tmp_path).backoff_start == 10.0


def test_overrides() -> None:
    settings = config.job_settings({"KRAY_STARTUP_RESTARTS": "1", "KRAY_STARTUP_TIMEOUT": "45.5"})
    assert settings.startup == StartupPolicy(crash_loop_restarts=1, timeout=45.5)
    assert config.job_settings({"KRAY_STARTUP_TIMEOUT": "0"}).startup == StartupPolicy(3, None)


def test_both_zero_is_kuberays_wait() -> None:
    assert config.job_settings({"KRAY_STARTUP_RESTARTS": "0", "KRAY_STARTUP_TIMEOUT": "0"}).startup is None


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KRAY_STARTUP_RESTARTS", "three", "KRAY_STARTUP_RESTARTS='three': expected a whole number (0 or more)"),
        ("KRAY_STARTUP_RESTARTS", "1.5", "KRAY_STARTUP_RESTARTS='1.5': expected a whole number (0 or more)"),
        ("KRAY_STARTUP_TIMEOUT", "-1", "KRAY_STARTUP_TIMEOUT='-1': expected a finite value of 0 or more"),
        ("KRAY_STARTUP_TIMEOUT", "nan", "KRAY_STARTUP_TIMEOUT='nan': expected a finite value of 0 or more"),
        ("KRAY_POD_BACKOFF", "0", "KRAY_POD_BACKOFF='0': expected more than 0 seconds"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, expected: str, tmp_path: Path) -> None:
    def load() -> None:
        config.job_settings({name: value})
        config.runner_settings({name: value}, state_dir=tmp_path)

    with pytest.raises(config.ConfigError) as caught:
        load()
    assert str(caught.value) == expected


def test_the_server_refuses_a_bad_knob_before_taking_the_state_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "kray.local.server.daemon", "--home", str(home)],
        env={"KRAY_STARTUP_TIMEOUT": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "kray server: KRAY_STARTUP_TIMEOUT='soon': expected a number of seconds (0 or more)"
    assert not home.exists()
