"""The operator's settings: KubeRay's flags and environment variables, checked before anything starts.

Every value a user can get wrong is parsed here, once, and a bad one is refused with the flag or
variable it came from and what was expected — the operator never starts half-configured.

Defaults follow KubeRay v1.7's operator (``ray-operator/main.go``) with one deliberate change: the
metrics and probe servers bind to loopback unless an address with a host is given (``:8080`` means
all interfaces, as in Go). An operator in a pod is given ``:8080`` / ``:8082`` by its chart so the
kubelet and Prometheus reach it; one started by hand exposes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kray.api.rules import FeatureGates
from kray.runtime.leader import DEFAULT_LEASE_NAME


class OperatorConfigError(ValueError):
    """A flag or environment variable has a value the operator cannot use (names it)."""


@dataclass(frozen=True, slots=True)
class BindAddress:
    """``host:port`` to listen on; ``port == 0`` disables the server (KubeRay: ``--metrics-addr=0``)."""

    host: str
    port: int

    @property
    def enabled(self) -> bool:
        return self.port != 0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_bind_address(text: str, *, option: str) -> BindAddress:
    """Go's listen-address forms: ``0`` (off), ``:8080`` (all interfaces), ``host:port``, or a bare port."""
    raw = text.strip()
    if raw in {"0", ""}:
        return BindAddress("127.0.0.1", 0)
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", raw
    elif not host:
        host = "0.0.0.0"  # Go's ":8080"
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise OperatorConfigError(f"{option}={text!r}: expected host:port, :port, a port or 0") from None
    if not 0 <= port <= 65535:
        raise OperatorConfigError(f"{option}={text!r}: port must be 0..65535")
    return BindAddress(host, port)


def parse_namespaces(text: str) -> tuple[str, ...]:
    """``--watch-namespace``: a comma list; empty means every namespace (returned as ``()``)."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for name in names:
        if len(name) > 63 or not name.replace("-", "a").isalnum() or not name[0].isalnum() or name != name.lower():
            raise OperatorConfigError(f"--watch-namespace: {name!r} is not a valid namespace name (RFC 1123 label)")
    return names


def _env_number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise OperatorConfigError(f"{name}={text!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise OperatorConfigError(f"{name}={text!r}: expected a finite number of seconds, 0 or more")
    return value


def _env_flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in {"true", "1", "t", "yes"}:
        return True
    if text in {"false", "0", "f", "no"}:
        return False
    raise OperatorConfigError(f"{name}={text!r}: expected true or false")


@dataclass(frozen=True, slots=True)
class RuntimeEnv:
    """KubeRay's behaviour variables (``utils/constant.go``) the shared controllers honour."""

    raycluster_requeue_seconds: float = 300.0  # RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV
    transition_grace_period: float = 300.0  # RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS
    status_check_timeout: float = 300.0  # RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS
    delete_rayjob_after_finish: bool = False  # DELETE_RAYJOB_CR_AFTER_JOB_FINISHES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeEnv:
        return cls(
            raycluster_requeue_seconds=_env_number(env, "RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV", 300.0) or 300.0,
            transition_grace_period=_env_number(env, "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS", 300.0),
            status_check_timeout=_env_number(env, "RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS", 300.0),
            delete_rayjob_after_finish=_env_flag(env, "DELETE_RAYJOB_CR_AFTER_JOB_FINISHES", default=False),
        )


STARTUP_POLICIES = ("off", "fail-fast")


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    kubeconfig: Path | None = None
    context: str | None = None
    watch_namespaces: tuple[str, ...] = ()
    """Empty: every namespace."""
    reconcile_concurrency: int = 1
    gates: FeatureGates = field(default_factory=FeatureGates)
    leader_election: bool = True
    leader_election_namespace: str | None = None
    """None: the operator's own namespace in a pod, else ``default``."""
    lease_name: str = DEFAULT_LEASE_NAME
    metrics: BindAddress = BindAddress("127.0.0.1", 8080)
    health: BindAddress = BindAddress("127.0.0.1", 8082)
    startup_policy: str = "off"
    """``fail-fast``: kray's StartupPolicy for RayJobs (off by default: KubeRay's behaviour)."""
    env: RuntimeEnv = field(default_factory=RuntimeEnv)
    drain_timeout: float = 30.0
    """Seconds SIGTERM waits for in-flight reconciles before cancelling them."""

    def __post_init__(self) -> None:
        if self.reconcile_concurrency < 1:
            raise OperatorConfigError(f"--reconcile-concurrency={self.reconcile_concurrency}: expected 1 or more")
        if self.startup_policy not in STARTUP_POLICIES:
            raise OperatorConfigError(
                f"--startup-policy={self.startup_policy!r}: expected one of {', '.join(STARTUP_POLICIES)}"
            )


IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace() -> str:
    """The namespace the operator runs in (its pod's), else ``default`` (KubeRay's leader-election default)."""
    try:
        return IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"
