"""The local server's knobs, from its environment (as KubeRay's operator takes its own from env vars).

========================  =======  ===================================================================
variable                  default  meaning
========================  =======  ===================================================================
KRAY_STARTUP_RESTARTS     3        a RayJob fails (RayClusterStartupFailed) once a pod of its starting
                                   cluster restarted this many times (0: restarts never end it)
KRAY_STARTUP_TIMEOUT      600      seconds a RayJob waits for its cluster when the manifest sets no
                                   preRunningDeadlineSeconds (0: no such timeout)
KRAY_POD_BACKOFF          10       first CrashLoopBackOff delay in seconds (doubles up to 300), as the kubelet.
                                   It starts again from this delay after a run longer than 600 s (twice the
                                   300 s cap), as the kubelet's back-off is forgotten. Unlike the kubelet,
                                   which restarts a container the first time at once, the first restart
                                   waits this delay too, so a crash-looping local Ray head cannot spin
========================  =======  ===================================================================

Both 0 is KubeRay's behaviour: a starting RayJob waits for its cluster until a manifest deadline.
A bad value stops the server before it starts anything, naming the variable and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from kray.controllers.rayjob.plan import Settings, StartupPolicy
from kray.local.podrunner import BACKOFF_START, RunnerSettings

DEFAULT_STARTUP = StartupPolicy()
LOCAL_JOB_SETTINGS = Settings(startup=DEFAULT_STARTUP)
"""KubeRay's RayJob knobs, plus fail-fast: on one machine nothing will come and fix a crash-looping cluster."""


class ConfigError(ValueError):
    """A KRAY_* variable has a value the server cannot use."""


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(int(text)) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number of seconds"
        raise ConfigError(f"{name}={text!r}: expected {kind} (0 or more)") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={text!r}: expected a finite value of 0 or more")
    return value


def job_settings(env: Mapping[str, str]) -> Settings:
    restarts = int(_number(env, "KRAY_STARTUP_RESTARTS", DEFAULT_STARTUP.crash_loop_restarts, integer=True))
    timeout = _number(env, "KRAY_STARTUP_TIMEOUT", DEFAULT_STARTUP.timeout or 0.0)
    if restarts == 0 and timeout == 0:
        return replace(LOCAL_JOB_SETTINGS, startup=None)
    # Restarts 0: the restart rule never fires (a Failed pod still ends the job).
    policy = StartupPolicy(crash_loop_restarts=restarts or 2**31, timeout=timeout or None)
    return replace(LOCAL_JOB_SETTINGS, startup=policy)


def runner_settings(env: Mapping[str, str], *, state_dir: Path) -> RunnerSettings:
    backoff = _number(env, "KRAY_POD_BACKOFF", BACKOFF_START)
    if backoff == 0:
        raise ConfigError(f"KRAY_POD_BACKOFF={env['KRAY_POD_BACKOFF']!r}: expected more than 0 seconds")
    return RunnerSettings(state_dir=state_dir, backoff_start=backoff)
