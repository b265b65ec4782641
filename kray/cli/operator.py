"""``kray operator``: run kray's controllers against a Kubernetes API server, with KubeRay's flags.

The command only parses flags into an :class:`~kray.operator.config.OperatorConfig` (a bad value
exits 2 naming the flag, before anything connects) and hands over to :mod:`kray.operator`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

EXIT_USAGE = 2


def _flag(text: str, *, option: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "t", "yes"}:
        return True
    if lowered in {"false", "0", "f", "no"}:
        return False
    sys.stderr.write(f"error: {option}={text!r}: expected true or false\n")
    raise typer.Exit(EXIT_USAGE)


def operator(
    kubeconfig: Annotated[
        Path | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context (default: the current one).")] = None,
    watch_namespace: Annotated[
        str, typer.Option("--watch-namespace", help="Comma-separated namespaces to watch; empty: all.")
    ] = "",
    reconcile_concurrency: Annotated[int, typer.Option(help="Workers per controller (KubeRay's default 1).")] = 1,
    feature_gates: Annotated[
        str, typer.Option("--feature-gates", help="KubeRay feature gates, e.g. RayClusterNetworkPolicy=true.")
    ] = "",
    enable_leader_election: Annotated[
        str, typer.Option(help="Hold the ray-operator-leader Lease while reconciling (true|false).")
    ] = "true",
    leader_election_namespace: Annotated[
        str | None, typer.Option(help="Namespace of the Lease (default: the operator's own, else default).")
    ] = None,
    leader_election_id: Annotated[str, typer.Option(help="Name of the Lease.")] = "ray-operator-leader",
    metrics_addr: Annotated[
        str, typer.Option(help="Where /metrics listens: host:port, :port (all interfaces), or 0 (off).")
    ] = "127.0.0.1:8080",
    health_probe_bind_address: Annotated[
        str,
        typer.Option(
            "--health-probe-bind-address", "--health-probe-addr", help="Where /healthz and /readyz listen (or 0)."
        ),
    ] = "127.0.0.1:8082",
    startup_policy: Annotated[
        str,
        typer.Option(help="RayJob startup policy: off (KubeRay's) or fail-fast (kray's, see docs/local-mode.md)."),
    ] = "off",
    log_stdout_encoder: Annotated[str, typer.Option(help="Log format on stdout: json or console.")] = "json",
) -> None:
    """Run the RayCluster and RayJob controllers against a Kubernetes API server (KubeRay's operator, in kray).

    Flags are KubeRay's operator flags where KubeRay has them. Exit code 0 after SIGTERM (in-flight
    reconciles finish first), 1 when the leader Lease was lost, 2 for a bad flag.
    """
    import asyncio
    import os
    import signal

    from kray.api.rules import FeatureGates
    from kray.operator import logs
    from kray.operator.config import (
        OperatorConfig,
        OperatorConfigError,
        RuntimeEnv,
        own_namespace,
        parse_bind_address,
        parse_namespaces,
    )
    from kray.operator.main import run_operator

    try:
        try:
            gates = FeatureGates.parse(feature_gates)
        except ValueError as error:
            raise OperatorConfigError(f"--feature-gates: {error}") from None
        if log_stdout_encoder not in logs.ENCODERS:
            raise OperatorConfigError(f"--log-stdout-encoder={log_stdout_encoder!r}: expected json or console")
        if kubeconfig is not None and not kubeconfig.is_file():
            raise OperatorConfigError(f"--kubeconfig={kubeconfig}: no such file")
        config = OperatorConfig(
            kubeconfig=kubeconfig,
            context=context,
            watch_namespaces=parse_namespaces(watch_namespace),
            reconcile_concurrency=reconcile_concurrency,
            gates=gates,
            leader_election=_flag(enable_leader_election, option="--enable-leader-election"),
            leader_election_namespace=leader_election_namespace or own_namespace(),
            lease_name=leader_election_id,
            metrics=parse_bind_address(metrics_addr, option="--metrics-addr"),
            health=parse_bind_address(health_probe_bind_address, option="--health-probe-bind-address"),
            startup_policy=startup_policy,
            env=RuntimeEnv.from_env(os.environ),
        )
    except OperatorConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        raise typer.Exit(EXIT_USAGE) from None
    logs.configure(encoder=log_stdout_encoder)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_operator(config, stop=stop)

    raise typer.Exit(asyncio.run(main()))
