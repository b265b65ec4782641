"""The ``kray`` command: validate manifests, print CRDs, and (as they land) run Ray locally.

Commands stay thin: parse arguments, call :mod:`kray.api` (or later the SDK), render with
:mod:`kray.cli.render`. Data goes to stdout, diagnostics to stderr, so ``kray crds | kubectl apply``
and ``kray validate ... 2> errors.txt`` both work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from kray._version import __version__

app = typer.Typer(
    name="kray",
    help=(
        "kray runs KubeRay's RayCluster, RayJob and RayService manifests (ray.io/v1) on Kubernetes "
        "and on one machine.\n\nStart with `kray validate -f my-rayjob.yaml`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

EXIT_INVALID = 2


def _add_subcommands() -> None:
    from kray.cli import dev, install, jobs, local, submit
    from kray.cli.operator import operator

    del submit  # registers `kray job submit` on jobs.job_app

    app.add_typer(jobs.job_app, name="job")
    app.command()(local.apply)
    app.command()(local.get)
    app.command()(local.describe)
    app.command()(local.delete)
    app.command()(jobs.logs)
    app.command()(local.dashboard)
    app.add_typer(local.server_app, name="server")
    app.command()(operator)
    app.command()(install.install)
    app.add_typer(dev.app, name="dev", help="Developer tools: a real Kubernetes control plane on loopback.")


MANIFEST_SUFFIXES = {".yaml", ".yml", ".json"}


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def _read(stream: BinaryIO) -> bytes:
    """At most one byte more than the manifest limit: enough to refuse an oversized file."""
    from kray.api.manifest import MAX_FILE_BYTES

    return stream.read(MAX_FILE_BYTES + 1)


def _inputs(paths: list[str]) -> list[tuple[str, bytes]]:
    """(display name, bytes) of every manifest file named, directories expanded and sorted."""
    found: list[tuple[str, bytes]] = []
    for raw in paths:
        if raw == "-":
            found.append(("<stdin>", _read(sys.stdin.buffer)))
            continue
        path = Path(raw)
        try:
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
                if not files:
                    raise _usage(f"{raw}: no .yaml, .yml or .json files in this directory")
            elif path.exists():
                files = [path]
            else:
                raise _usage(f"{raw}: no such file or directory")
            for file in files:
                with file.open("rb") as stream:
                    found.append((str(file) if file != path else raw, _read(stream)))
        except OSError as error:
            raise _usage(f"{raw}: cannot read: {error.strerror or error}") from None
    return found


def _usage(message: str) -> typer.Exit:
    _err(f"error: {message}")
    return typer.Exit(EXIT_INVALID)


@app.command()
def validate(
    filenames: Annotated[
        list[str],
        typer.Option("--filename", "-f", help="A manifest file, a directory of them, or - for stdin. Repeatable."),
    ],
    feature_gates: Annotated[
        str,
        typer.Option(
            "--feature-gates",
            help="KubeRay feature gates to assume, e.g. RayClusterNetworkPolicy=true (defaults: KubeRay v1.7's).",
        ),
    ] = "",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Check manifests against the ray.io/v1 schema and KubeRay's validation rules.

    Exit code 0 when every ray.io document is valid, 2 otherwise. Errors go to stderr as
    [bold]file: kind/name: field.path: message[/bold]. Documents of other APIs (ConfigMaps, ...)
    are reported as skipped.
    """
    from kray.api.manifest import validate_bytes
    from kray.api.rules import FeatureGates
    from kray.cli.render import outcome_lines, summary_line

    try:
        gates = FeatureGates.parse(feature_gates)
    except ValueError as error:
        raise _usage(f"--feature-gates: {error}") from None
    outcomes = []
    for source, data in _inputs(filenames):
        outcomes.extend(validate_bytes(data, source=source, gates=gates).outcomes)
    for outcome in outcomes:
        out, err = outcome_lines(outcome)
        for line in err:
            _err(line)
        if not quiet:
            for line in out:
                typer.echo(line)
    if not quiet:
        _err(summary_line(outcomes))
    if any(o.errors for o in outcomes):
        raise typer.Exit(EXIT_INVALID)


@app.command()
def crds(
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", "-o", help="Write one file per CRD here instead of printing them."),
    ] = None,
) -> None:
    """Print the ray.io CustomResourceDefinitions, generated from kray's models.

    Install them with [bold]kray crds | kubectl apply --server-side -f -[/bold] (server-side apply:
    the CRDs are too large for a client-side last-applied annotation).
    """
    from kray.api.crd import ALL_KINDS, crd_filename, render_all, render_crd

    if output_dir is None:
        typer.echo(render_all(), nl=False)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    for model in ALL_KINDS:
        kind = model.model_fields["kind"].default
        (output_dir / crd_filename(kind)).write_text(render_crd(kind))
        _err(f"wrote {output_dir / crd_filename(kind)}")


@app.command()
def version() -> None:
    """Print kray's version and the versions it targets."""
    from kray.api.k8s.schema import KUBERNETES_VERSION

    typer.echo(f"kray {__version__}")
    typer.echo("ray.io API: v1 (KubeRay v1.7 compatible)")
    typer.echo(f"Kubernetes schemas: {KUBERNETES_VERSION}")


_add_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
