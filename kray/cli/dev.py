"""``kray dev``: developer commands; ``kray dev k8s up|down|env|build|kuberay`` runs the real test control
plane (and KubeRay's own Go operator beside it).

Why: the same etcd + kube-apiserver + controller-manager (+ scheduler, kwok) that the pytest fixtures use
must be easy to point any kubeconfig-driven program at (kubectl, the KubeRay operator for comparison runs,
benchmarks). ``up`` builds the binaries on first use, starts the plane detached and prints
``export KUBECONFIG=...``; ``eval "$(kray dev k8s env)"`` picks it up later; ``down`` stops every process
and removes the work dir. ``up --foreground`` instead runs until Ctrl-C. ``kuberay`` runs KubeRay's
operator (built by ``build``) against the detached plane until Ctrl-C, for side-by-side comparisons.
``kray dev node`` runs a node agent (:mod:`kray.local.node.agent`): a Node whose pods run as processes here.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported by the commands that use them: `kray --help` stays fast (tests/cli/test_startup.py)
    from kray.dev import detached

app = typer.Typer(help="Developer tools.", no_args_is_help=True)
k8s_app = typer.Typer(help="A real Kubernetes control plane on 127.0.0.1 (etcd, kube-apiserver, ...).")
app.add_typer(k8s_app, name="k8s", no_args_is_help=True)


def _exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


@k8s_app.command()
def build() -> None:
    """Build (or confirm cached) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, and the test
    peers: KubeRay's operator (kuberay-operator), helm and Traefik."""
    from kray.dev.binaries import BuildError, ensure_binaries

    try:
        bins = ensure_binaries(echo=sys.stderr)
    except BuildError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(str(bins.bin_dir))


@k8s_app.command()
def up(
    scheduler: bool = typer.Option(True, help="Also run kube-scheduler."),
    kwok: bool = typer.Option(False, help="Also run the kwok controller (manages nodes labelled type=kwok)."),
    foreground: bool = typer.Option(False, help="Stay attached; stop everything on Ctrl-C / SIGTERM."),
    kwok_nodes: int = typer.Option(0, help="Create this many kwok nodes (implies --kwok): pods on them turn Ready."),
    crds: bool = typer.Option(False, help="Install kray's ray.io CRDs (server-side apply) and wait until established."),
) -> None:
    """Start the control plane and print the environment to use it (KUBECONFIG, and kubectl on PATH)."""
    from kray.dev import detached
    from kray.dev.binaries import BuildError

    kwok = kwok or kwok_nodes > 0
    try:
        if foreground:
            _foreground(scheduler=scheduler, kwok=kwok)
            return
        state, seconds = detached.up(scheduler=scheduler, kwok=kwok)
        _prepare(state, nodes=kwok_nodes, crds=crds)
    except BuildError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    how = f"started in {seconds:.1f}s" if seconds else "already running"
    typer.echo(f"# kray dev k8s: {state.server} ({how}); stop with `kray dev k8s down`", err=True)
    typer.echo(_exports(state.env()))


def _prepare(state: detached.State, *, nodes: int, crds: bool) -> None:
    """CRDs and kwok nodes, applied with the plane's own kubectl (as a user would).

    ``kubectl wait`` fails at once on an object that has no conditions yet (just created), so the
    waits are retried for up to 30 s."""
    import os
    import subprocess
    import time

    import yaml

    from kray.api.crd import render_all
    from kray.dev import kwok

    env = {**os.environ, **state.env()}

    def kubectl(*args: str, stdin: str | None = None, attempts: int = 1) -> None:
        for attempt in range(attempts):
            done = subprocess.run(
                ["kubectl", *args], input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False
            )
            if done.returncode == 0:
                return
            time.sleep(1.0 if attempt + 1 < attempts else 0)
        typer.echo(f"kray dev k8s: kubectl {' '.join(args)}: {done.stderr.strip()}", err=True)
        raise typer.Exit(1)

    if crds:
        kubectl("apply", "--server-side", "--field-manager=kray", "-f", "-", stdin=render_all())
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", attempts=30)
    if nodes:
        manifests = [kwok.node_manifest(f"kwok-node-{i}") for i in range(nodes)]
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
        kubectl("wait", "--for=condition=Ready", "node", "-l", "type=kwok", "--timeout=120s", attempts=30)


def _foreground(*, scheduler: bool, kwok: bool) -> None:
    from kray.dev.binaries import ensure_binaries
    from kray.dev.controlplane import ControlPlane, Options

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with ControlPlane(binaries=ensure_binaries(echo=sys.stderr), options=Options(scheduler=scheduler)) as cp:
        if kwok:
            cp.start_kwok()
        typer.echo(f"# kray dev k8s: {cp.server} up in {cp.startup_seconds:.1f}s; Ctrl-C stops", err=True)
        typer.echo(_exports(cp.env()))
        while not stop.wait(1.0):
            cp.assert_running()


@k8s_app.command()
def down() -> None:
    """Stop the detached control plane and remove its work dir."""
    from kray.dev import detached

    state = detached.down()
    typer.echo("# kray dev k8s: nothing running" if state is None else f"# stopped {state.server}", err=True)


@k8s_app.command()
def env() -> None:
    """Print "export KUBECONFIG=..." for the running plane (use with eval)."""
    from kray.dev import detached

    state = detached.load()
    if state is None or not state.running():
        typer.echo("kray dev k8s: no control plane running; start one with `kray dev k8s up`", err=True)
        raise typer.Exit(1)
    typer.echo(_exports(state.env()))


@k8s_app.command()
def kuberay(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to watch (repeatable); none: every namespace."),
    ] = None,
    gate: Annotated[
        list[str] | None,
        typer.Option(help="NAME=true|false (repeatable); replaces the default gates (v1.7's on-by-default ones)."),
    ] = None,
) -> None:
    """Run KubeRay's Go operator against the detached plane (`kray dev k8s up`) until Ctrl-C / SIGTERM.

    The ray.io CRDs must be installed first (e.g. `kubectl apply --server-side -f config/crd`): KubeRay's
    controllers wait for them, and this command fails after 60 s naming that wait.
    """
    from kray.dev import detached
    from kray.dev.binaries import BuildError, ensure_binaries
    from kray.dev.kuberay import DEFAULT_GATES, KubeRayOperator, KubeRayOptions
    from kray.dev.procs import StartupError

    state = detached.load()
    if state is None or not state.running():
        typer.echo("kray dev k8s: no control plane running; start one with `kray dev k8s up`", err=True)
        raise typer.Exit(1)
    gates = dict(DEFAULT_GATES)
    if gate:
        gates = {}
        for item in gate:
            name, sep, value = item.partition("=")
            if not sep or value.lower() not in {"true", "false"}:
                raise typer.BadParameter(f"{item!r}: want NAME=true or NAME=false", param_hint="--gate")
            gates[name] = value.lower() == "true"
    options = KubeRayOptions(namespaces=tuple(namespace or ()), gates=gates)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        bins = ensure_binaries(echo=sys.stderr)
        op = KubeRayOperator(
            kubeconfig=state.kubeconfig, binaries=bins, log_dir=state.workdir / "logs", options=options
        )
        with op:  # Ctrl-C while starting: KeyboardInterrupt, and start() stops the process
            signal.signal(signal.SIGTERM, _on_signal)
            signal.signal(signal.SIGINT, _on_signal)
            typer.echo(
                f"# KubeRay's operator up in {op.startup_seconds:.1f}s (pid {op.pid}); log {op.log}; Ctrl-C stops",
                err=True,
            )
            while not stop.wait(1.0):
                op.assert_running()
    except (BuildError, StartupError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


@app.command("node")
def node(
    name: Annotated[str, typer.Option("--name", help="The Node's name (and kubernetes.io/hostname label).")],
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="The apiserver to register with (default: $KUBECONFIG).")
    ] = None,
    cpu: Annotated[str | None, typer.Option(help="capacity.cpu (default: this machine's CPUs).")] = None,
    memory: Annotated[str | None, typer.Option(help="capacity.memory, a quantity (default: this machine's).")] = None,
    pods: Annotated[int | None, typer.Option(help="capacity.pods (default: 110).")] = None,
    pod_cidr: Annotated[
        str | None,
        typer.Option("--pod-cidr", help="Give each pod its own network namespace and an IP from this CIDR (root)."),
    ] = None,
    net_prefix: Annotated[
        str | None,
        typer.Option("--net-prefix", help="Names the pod network's namespaces and links (default: from NAME)."),
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="k=v, a Node label (repeatable).")] = None,
    taint: Annotated[list[str] | None, typer.Option("--taint", help="k=v:Effect, a Node taint (repeatable).")] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Pod logs and records (default: $KRAY_HOME/nodes/NAME).")
    ] = None,
    status_interval: Annotated[
        float,
        typer.Option(
            "--status-interval",
            min=0.5,
            help="Seconds between node status posts (the conditions' heartbeat); liveness is the Lease's.",
        ),
    ] = 60.0,
) -> None:
    """Run a node agent in the foreground: register Node NAME and run the pods bound to it as processes, until
    Ctrl-C / SIGTERM (which stops every pod's processes and removes their sandboxes; the Node stays)."""
    import asyncio
    import logging

    import structlog

    from kray.local.node.agent import AgentConfig, NodeAgent
    from kray.local.node.node_object import TaintError, parse_taint
    from kray.local.paths import LocalPaths
    from kray.local.sandbox import SandboxError
    from kray.store.errors import StoreError

    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    labels: dict[str, str] = {}
    for item in label or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: want KEY=VALUE", param_hint="--label")
        labels[key] = value
    try:
        taints = tuple(parse_taint(t) for t in taint or ())
    except TaintError as exc:
        raise typer.BadParameter(str(exc), param_hint="--taint") from None
    config = AgentConfig(
        name=name,
        kubeconfig=kubeconfig,
        state_dir=state_dir or LocalPaths.default().home / "nodes" / name,
        cpu=cpu,
        memory=memory,
        pods=pods,
        pod_cidr=pod_cidr,
        net_prefix=net_prefix,
        labels=labels,
        taints=taints,
        status_interval=status_interval,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await NodeAgent(config).run(stop)

    try:
        asyncio.run(main())
    except (SandboxError, StoreError, ValueError) as exc:
        typer.echo(f"kray dev node: {exc}", err=True)
        raise typer.Exit(1) from None
