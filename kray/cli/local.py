"""Local-mode commands: server, apply, get, describe, delete, logs, dashboard.

Each command is thin: it reads arguments, talks to the local server through the Store protocol
(:class:`~kray.local.server.client.HttpStore`), and renders with :mod:`kray.cli.render`.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from kray.cli.client import local_paths, with_store
from kray.cli.fit import refuse_unfit
from kray.store import EVENT, NAMESPACE, POD, RAYCLUSTER, RAYJOB, RAYSERVICE, Resource
from kray.store.errors import NotFound, StoreError

if TYPE_CHECKING:  # every command module is imported to register it: implementations load inside the commands
    from kray.local.server.client import HttpStore

server_app = typer.Typer(
    help="The local control-plane server (started on demand by other commands).", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # messages quote log lines: never re-wrapped
EXIT_INVALID = 2

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the object.")]
TargetNamespace = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace of documents that name none (default: default)."),
]
Output = Annotated[str, typer.Option("--output", "-o", help="table (default), wide, yaml or json.")]
OUTPUTS = ("table", "wide", "yaml", "json")

KINDS: dict[str, Resource] = {
    "cluster": RAYCLUSTER,
    "clusters": RAYCLUSTER,
    "raycluster": RAYCLUSTER,
    "rayclusters": RAYCLUSTER,
    "job": RAYJOB,
    "jobs": RAYJOB,
    "rayjob": RAYJOB,
    "rayjobs": RAYJOB,
    "service": RAYSERVICE,
    "services": RAYSERVICE,
    "rayservice": RAYSERVICE,
    "rayservices": RAYSERVICE,
    "namespace": NAMESPACE,
    "namespaces": NAMESPACE,
    "ns": NAMESPACE,
}


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error (verbatim: ``[...]`` in paths and names is not markup) and exit."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def require_ray() -> None:
    """Refuse to start clusters that could not run: Ray missing from kray's environment (exit 1, nothing created)."""
    from kray.local.preflight import find_ray, missing_ray_message

    if find_ray() is None:
        raise fail(missing_ray_message())


def resource(kind: str) -> Resource:
    try:
        return KINDS[kind.lower()]
    except KeyError:
        raise fail(f"unknown kind {kind!r}; expected clusters, jobs, services or namespaces", EXIT_INVALID) from None


# -- server ----------------------------------------------------------------------------------------------


@server_app.command("start")
def server_start() -> None:
    """Start the local server (no-op when it already runs)."""
    from kray.local.server.launcher import ensure_server

    info = ensure_server(local_paths())
    out.print(f"kray server running (pid {info.pid}) at {info.url}; state in {local_paths().home}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the server and every Ray process it started."""
    from kray.local.server.launcher import stop_server

    swept = stop_server(local_paths())
    suffix = f"; swept {len(swept)} orphaned process(es)" if swept else ""
    out.print(f"kray server stopped{suffix}")


@server_app.command("status")
def server_status() -> None:
    """Say whether the server runs, and where."""
    from kray.local.server.launcher import server_status as status

    info = status(local_paths())
    if info is None:
        out.print("kray server: not running")
        raise typer.Exit(3)
    out.print(f"kray server: running (pid {info.pid}) at {info.url}; state in {local_paths().home}")


# -- objects ---------------------------------------------------------------------------------------------


def apply(
    filenames: Annotated[list[str], typer.Option("--filename", "-f", help="Manifest file(s), or - for stdin.")],
    namespace: TargetNamespace = None,
) -> None:
    """Create or update RayClusters and RayJobs, and the ConfigMaps, Secrets, ServiceAccounts,
    PersistentVolumeClaims and Namespaces of the same files, in local mode (other kinds are skipped)."""
    from kray.cli.documents import read_manifests, store_all

    manifests = read_manifests(filenames, namespace=namespace)
    if any(p.resource in (RAYCLUSTER, RAYJOB, RAYSERVICE) for p in manifests.planned):
        require_ray()
    refuse_unfit(list(manifests.documents), source=", ".join(filenames))

    def say(line: str) -> None:
        out.print(line, highlight=False, markup=False)

    async def run(store: HttpStore) -> None:
        await store_all(store, manifests.planned, say=say)
        services = [p for p in manifests.planned if p.resource is RAYSERVICE]
        for item in services:
            say(await _serve_address_line(store, item.name, item.namespace or "default"))

    _call(run)
    for line in manifests.skipped:
        out.print(line, highlight=False, markup=False)


SERVE_ADDRESS_WAIT = 5.0
"""How long ``kray apply`` waits for a new RayService's serve address (reserved within ms of storing it)."""


async def _serve_address_line(store: HttpStore, name: str, namespace: str) -> str:
    """``rayservice/<name> serve address: http://127.0.0.1:<port>``, once the server reserved it."""
    import asyncio

    from kray.cli.render import serve_url

    deadline = time.monotonic() + SERVE_ADDRESS_WAIT
    while True:
        url = serve_url(await store.get(RAYSERVICE, name, namespace=namespace))
        if url != "-":
            return f"rayservice/{name} serve address: {url}"
        if time.monotonic() >= deadline:
            return f"rayservice/{name} serve address: not reserved yet (see kray get services)"
        await asyncio.sleep(0.1)


def _call(action: Any) -> Any:
    try:
        return with_store(action)
    except StoreError as error:
        raise fail(str(error)) from None


def get(
    kind: Annotated[str, typer.Argument(help="clusters, jobs, services or namespaces")],
    name: Annotated[str | None, typer.Argument(help="Only this object.")] = None,
    namespace: Namespace = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    output: Output = "table",
) -> None:
    """List RayClusters, RayJobs (finished ones included, even when their RayJob is gone), RayServices (with
    their local serve addresses) or namespaces."""
    from kray.cli.render import cluster_table, job_rows, job_table, service_table

    if output not in OUTPUTS:
        raise fail(f"--output {output!r}: expected one of {', '.join(OUTPUTS)}", EXIT_INVALID)
    target = resource(kind)
    ns = None if all_namespaces or not target.namespaced else namespace

    async def run(store: HttpStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        items = (await store.list(target, namespace=ns)).items
        if name:
            items = [i for i in items if i["metadata"]["name"] == name]
        history: list[dict[str, Any]] = []
        if target is RAYJOB:
            params = {k: v for k, v in (("namespace", ns), ("name", name)) if v}
            history = await store.request("GET", "/kray/v1/history/jobs", params=params)
        return items, history

    items, history = _call(run)
    if output in {"yaml", "json"}:
        import yaml

        from kray.local.history import history_only, record_object

        # As kubectl: one object by name, else a v1 List. Jobs only history remembers are JobRecords
        # (kray.local.history.record_object); by name, the RayJob when it exists, else its one record.
        remembered = [record_object(r) for r in history_only(items, history)]
        listed = [*items, *remembered]
        payload: Any = {"apiVersion": "v1", "kind": "List", "items": listed}
        if name:
            if not listed:
                raise fail(f"{kind} {name!r} not found")
            if items or len(listed) == 1:
                payload = listed[0]
        text = json.dumps(payload, indent=2) if output == "json" else yaml.safe_dump(payload, sort_keys=False)
        sys.stdout.write(text.rstrip("\n") + "\n")  # verbatim: no wrapping at the terminal's width
        return
    now = datetime.now(UTC)
    if target is NAMESPACE:
        from kray.cli.documents import namespace_table

        if not items:
            raise fail(f"namespace {name!r} not found")
        sys.stdout.write(namespace_table(items, now=now) + "\n")
    elif target is RAYCLUSTER:
        if not items:
            err.print(f"No RayClusters found in {ns or 'any namespace'}.")
            return
        sys.stdout.write(cluster_table(items, now=now, wide=output == "wide") + "\n")  # never cut to the terminal
    elif target is RAYSERVICE:
        if not items:
            err.print(f"No RayServices found in {ns or 'any namespace'}.")
            return
        sys.stdout.write(service_table(items, now=now) + "\n")
    else:
        rows = job_rows(items, history)
        if not rows:
            err.print(f"No RayJobs found in {ns or 'any namespace'}.")
            return
        sys.stdout.write(job_table(rows, now=now, wide=output == "wide") + "\n")


def describe(
    kind: Annotated[str, typer.Argument(help="cluster, job or service")],
    name: Annotated[str, typer.Argument()],
    namespace: Namespace = "default",
) -> None:
    """Show an object, its status and its recent events; for a RayService also its serve address, clusters,
    applications and the Serve config changes history keeps."""
    import yaml

    target = resource(kind)
    changes: list[dict[str, Any]] = []

    async def run(store: HttpStore) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        obj = await store.get(target, name, namespace=namespace)
        events = [
            e
            for e in (await store.list(EVENT, namespace=namespace)).items
            if (e.get("involvedObject") or {}).get("uid") == obj["metadata"].get("uid")
        ]
        pods = []
        if target is RAYCLUSTER:
            pods = (await store.list(POD, namespace=namespace, label_selector=f"ray.io/cluster={name}")).items
        if target is RAYSERVICE:
            params = {"namespace": namespace, "name": name}
            changes.extend(await store.request("GET", "/kray/v1/history/services", params=params))
        return obj, events, pods

    obj, events, pods = _call(run)
    out.print(yaml.safe_dump(obj, sort_keys=False), highlight=False, markup=False)
    if pods:
        out.print("Pods:", style="bold")
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            out.print(f"  {_pod_line(pod)}", highlight=False, markup=False)
    if target is RAYSERVICE:
        from kray.cli.render import service_summary

        out.print(service_summary(obj, changes), highlight=False, markup=False)
    out.print("Events:", style="bold")
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or ""):
        out.print(
            f"  {event.get('lastTimestamp')}  {event.get('type'):<8} {event.get('reason'):<22} {event.get('message')}",
            highlight=False,
            markup=False,
        )


def _pod_line(pod: dict[str, Any]) -> str:
    """name, node type, phase, readiness, restarts, and why a container is not running (as kubectl shows it)."""
    meta, status = pod["metadata"], pod.get("status") or {}
    node_type = (meta.get("labels") or {}).get("ray.io/node-type", "?")
    # The Ray container is the spec's first; statuses are sorted by name (an autoscaler sidecar may come first).
    ray_name = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name")
    containers = status.get("containerStatuses") or ()
    ray = next((c for c in containers if c.get("name") == ray_name), containers[0] if containers else {})
    state = ray.get("state") or {}
    why = (state.get("waiting") or state.get("terminated") or {}).get("reason") or ""
    message = ((state.get("waiting") or state.get("terminated") or {}).get("message") or "").strip().splitlines()
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "Pending")
    line = f"{meta['name']:<40} {node_type:<7} {phase:<11} ready={bool(ray.get('ready'))!s:<5} "
    line += f"restarts={ray.get('restartCount', 0):<3} {why}"
    line = f"{line}: {message[-1]}" if why and message else line
    inits = [("init", entry) for entry in status.get("initContainerStatuses") or ()]
    others = [*inits, *(("container", entry) for entry in containers if entry is not ray)]
    return line + "".join(f"\n    {kind:<9} {_container_line(entry)}" for kind, entry in others)


def _container_line(entry: dict[str, Any]) -> str:
    """A container besides the Ray container (init containers, sidecars): name, state, readiness, restarts."""
    state = entry.get("state") or {}
    name = next(iter(state), "waiting")
    reason = (state.get(name) or {}).get("reason")
    shown = f"{name} ({reason})" if reason else name
    ready = bool(entry.get("ready"))
    return f"{entry.get('name', '?'):<30} {shown:<28} ready={ready!s:<5} restarts={entry.get('restartCount', 0)}"


def delete(
    kind: Annotated[str, typer.Argument(help="cluster, job, service or namespace")],
    name: Annotated[str, typer.Argument()],
    namespace: Namespace = "default",
    wait: Annotated[bool, typer.Option(help="Wait until it and its Ray processes are gone.")] = True,
) -> None:
    """Delete a RayCluster, a RayJob, a RayService (its clusters and its serve address go with it), or a
    namespace with everything in it; pods (Ray processes) go with them. Job and Serve config history stay."""
    target = resource(kind)
    scope = namespace if target.namespaced else None

    async def run(store: HttpStore) -> None:
        import asyncio

        try:
            await store.delete(target, name, namespace=scope, propagation="Foreground")
        except NotFound:
            raise fail(f"{kind} {name!r} not found") from None
        deadline = time.monotonic() + 120
        while wait and time.monotonic() < deadline:
            try:
                await store.get(target, name, namespace=scope)
            except NotFound:
                return
            await asyncio.sleep(0.5)

    _call(run)
    out.print(f"{target.kind.lower()}/{name} deleted", highlight=False)


def dashboard(
    cluster: Annotated[str, typer.Argument(help="RayCluster name")],
    namespace: Namespace = "default",
) -> None:
    """Print the dashboard URL of a local cluster and how to authenticate."""

    async def run(store: HttpStore) -> dict[str, str]:
        result: dict[str, str] = await store.request("GET", f"/kray/v1/clusters/{namespace}/{cluster}/access")
        return result

    access = _call(run)
    out.print(f"Dashboard:  {access['dashboard']}", highlight=False)
    out.print(f"Ray client: {access['client']}", highlight=False)
    out.print(f"Token file: {access['token_file']} (mode 0600)", highlight=False)
    out.print("Ray token auth is on. For the Ray CLI and SDK:", highlight=False)
    out.print(f"  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(cat {access['token_file']})", highlight=False)
    out.print(f"  ray job list --address {access['dashboard']}", highlight=False)
    out.print("In a browser, the dashboard asks for the token on first visit.", highlight=False)
