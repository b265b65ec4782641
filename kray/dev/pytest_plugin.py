"""pytest fixtures for a real Kubernetes control plane: ``k8s_control_plane``, ``ray_crds``,
``k8s_namespace``, ``kwok_nodes`` (plus ``k8s_client``, a lightkube client), and ``kuberay_operator``,
KubeRay's own Go operator as a peer to compare kray against.

Why a plugin: kray's Kubernetes behaviour is tested against a real kube-apiserver, started once per
session (~5-10 s) and shared; each test gets a fresh namespace. On a fresh machine the binaries must be
compiled first (10-25 min on 2 cores). pytest-timeout counts fixture setup in a test's budget, so the
build runs in ``pytest_collection_finish`` -- only when selected tests carry the ``k8s`` marker -- with
output streamed to the terminal and ``~/.cache/kray/k8s/build.log``. A build failure is stored and
re-raised by every k8s fixture with the exact error: k8s tests error loudly, they are never skipped.

Register with ``pytest_plugins = ["kray.dev.pytest_plugin"]``. lightkube is imported lazily (inside the
fixtures), so the plugin loads in environments that do not run k8s tests.
"""

# ruff: noqa: PLC0415 - lazy lightkube imports are the point (see above)

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kray.dev import kwok
from kray.dev.binaries import Binaries, BuildError, build_log_path, build_script, ensure_binaries
from kray.dev.controlplane import FAST_NODE_MONITOR, ControlPlane, Options
from kray.dev.kuberay import DEFAULT_GATES, DEFAULT_RECONCILE_CONCURRENCY, KubeRayOperator, KubeRayOptions
from kray.dev.procs import wait_until

if TYPE_CHECKING:
    from lightkube import Client

_BUILD_ERROR = pytest.StashKey[BuildError]()
FIELD_MANAGER = "kray"


def _wants_k8s(session: pytest.Session) -> bool:
    return any(item.get_closest_marker("k8s") is not None for item in session.items)


def _cached() -> bool:
    if os.environ.get("KRAY_K8S_BIN_DIR"):
        return True
    try:
        script = build_script()
    except BuildError:
        return False
    check = subprocess.run(["bash", str(script), "--check"], capture_output=True, timeout=60, check=False)
    return check.returncode == 0


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control-plane binaries before any test runs (outside every test's timeout)."""
    if session.config.option.collectonly or not _wants_k8s(session) or _cached():
        return
    capman = session.config.pluginmanager.getplugin("capturemanager")
    ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
    with ctx:
        sys.stderr.write(
            "\nkray: building the test control plane and KubeRay's operator from the Go module proxy (first "
            f"use: 15-30 min on 2 cores; later runs use the cache). Log: {build_log_path()}\n"
        )
        t0 = time.monotonic()
        try:
            ensure_binaries(echo=sys.stderr)
        except BuildError as exc:
            session.config.stash[_BUILD_ERROR] = exc
            sys.stderr.write(f"\nkray: BUILD FAILED; every k8s test will error with:\n{exc}\n")
        else:
            sys.stderr.write(f"kray: control plane built in {time.monotonic() - t0:.0f}s\n")


@pytest.fixture(scope="session")
def k8s_binaries(request: pytest.FixtureRequest) -> Binaries:
    if (err := request.config.stash.get(_BUILD_ERROR, None)) is not None:
        raise err
    return ensure_binaries(echo=sys.stderr)


@pytest.fixture(scope="session")
def k8s_control_plane(k8s_binaries: Binaries) -> Iterator[ControlPlane]:
    """Session-wide etcd + kube-apiserver + controller-manager + scheduler on 127.0.0.1.

    Yields a :class:`~kray.dev.controlplane.ControlPlane`: ``.kubeconfig`` (Path), ``.server`` (URL),
    ``.token``, ``.ca_file``, ``.env()``, ``.restart_apiserver()`` / ``.stop_apiserver()`` /
    ``.start_apiserver()``, ``.start_kwok()``, ``.assert_running()``.

    Its node lifecycle controller declares a node Unknown after 25 s without a Lease renewal
    (:data:`~kray.dev.controlplane.FAST_NODE_MONITOR`), so tests see a killed node agent's Node go NotReady.
    """
    options = Options(scheduler=True, extra_controller_manager_args=FAST_NODE_MONITOR)
    with ControlPlane(binaries=k8s_binaries, options=options) as plane:
        yield plane
        stuck = namespaces_terminating(plane, wait=150.0)  # pod GC lets pods of deleted kwok nodes go after ~40 s
        assert not stuck, (
            f"namespaces left Terminating by the session's tests (a finalizer no operator clears; the namespace "
            f"controller relists them for ever, loading the apiserver): {stuck}"
        )


def namespaces_terminating(plane: ControlPlane, *, wait: float) -> dict[str, list[str]]:
    """Namespaces still Terminating after up to ``wait`` seconds, each with what its conditions say is left."""
    import ssl

    import httpx2

    trusted = ssl.create_default_context(cafile=str(plane.ca_file))
    auth = {"Authorization": f"Bearer {plane.token}"}
    with httpx2.Client(base_url=plane.server, headers=auth, verify=trusted) as client:
        deadline = time.monotonic() + wait
        while True:
            items = client.get("/api/v1/namespaces").raise_for_status().json().get("items") or []
            stuck = {
                ns["metadata"]["name"]: [
                    str(c.get("message")) for c in ns["status"].get("conditions") or () if c.get("status") == "True"
                ]
                for ns in items
                if (ns.get("status") or {}).get("phase") == "Terminating"
            }
            if not stuck or time.monotonic() >= deadline:
                return stuck
            time.sleep(1.0)


@pytest.fixture(scope="session")
def k8s_client(k8s_control_plane: ControlPlane) -> Iterator[Client]:
    """A lightkube client for the session control plane (field manager ``kray``)."""
    import httpx2
    from lightkube import Client, KubeConfig

    client = Client(
        KubeConfig.from_file(k8s_control_plane.kubeconfig),
        field_manager=FIELD_MANAGER,
        timeout=httpx2.Timeout(30.0),
    )
    yield client
    client.close()


def crd_dir(config: pytest.Config) -> Path:
    """``config/crd`` of the repo under test (``KRAY_CRD_DIR`` overrides, for experiments only)."""
    return Path(os.environ.get("KRAY_CRD_DIR", str(config.rootpath / "config" / "crd")))


@pytest.fixture(scope="session")
def ray_crds(request: pytest.FixtureRequest, k8s_client: Client) -> list[str]:
    """Install the ray.io CRDs by server-side apply and wait until Established; yields their names."""
    files = sorted(crd_dir(request.config).glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no CRD manifests in {crd_dir(request.config)}; generate them first")
    return install_crds(k8s_client, files)


@pytest.fixture(scope="session")
def gateway_crds(k8s_client: Client) -> list[str]:
    """Install the Gateway API CRDs of ``sigs.k8s.io/gateway-api`` v1.4.0 (KubeRay v1.5.0's; fetched through the
    Go module proxy into the Go module cache on first use) and wait until Established; yields their names."""
    from kray.dev.gateway_api import crd_files

    return install_crds(k8s_client, crd_files())


def install_crds(k8s_client: Client, files: list[Path]) -> list[str]:
    """Server-side apply every CustomResourceDefinition in ``files``; wait until each is Established."""
    from lightkube import codecs
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    names: list[str] = []
    for f in files:
        for obj in codecs.load_all_yaml(f.read_text()):
            if not isinstance(obj, CustomResourceDefinition):
                raise TypeError(f"{f}: expected only CustomResourceDefinitions, got {type(obj).__name__}")
            k8s_client.apply(obj, field_manager=FIELD_MANAGER, force=True)
            assert obj.metadata is not None
            assert obj.metadata.name is not None
            names.append(obj.metadata.name)

    def established(name: str) -> bool:
        crd = k8s_client.get(CustomResourceDefinition, name)
        conds = crd.status.conditions if crd.status and crd.status.conditions else []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    for name in names:
        wait_until(lambda n=name: established(n), timeout=60, what=f"CRD {name} to be Established")  # type: ignore[misc]
    return names


@contextlib.contextmanager
def fresh_namespace(k8s_client: Client, name: str) -> Iterator[str]:
    """Create namespace ``name``, wait for its ``default`` ServiceAccount, delete it afterwards."""
    from lightkube import ApiError
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace, ServiceAccount

    k8s_client.create(Namespace(metadata=ObjectMeta(name=name, labels={"kray.dev/test": "true"})))

    def sa_ready() -> bool:  # the ServiceAccount admission plugin rejects pods until it exists
        try:
            k8s_client.get(ServiceAccount, "default", namespace=name)
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise
        return True

    try:
        wait_until(sa_ready, timeout=60, what=f"ServiceAccount {name}/default (controller-manager)")
        yield name
    finally:
        with contextlib.suppress(ApiError):
            k8s_client.delete(Namespace, name)
        let_ray_objects_go(k8s_client, name)


def let_ray_objects_go(k8s_client: Client, namespace: str) -> None:
    """Clear the finalizers of the namespace's ``ray.io`` objects: the test's operators are gone, and a finalizer no
    one clears keeps the namespace Terminating, relisted by the namespace controller for the rest of the session."""
    import httpx2
    from lightkube import ApiError
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.types import PatchType

    for kind, plural in (("RayCluster", "rayclusters"), ("RayJob", "rayjobs"), ("RayService", "rayservices")):
        resource = create_namespaced_resource("ray.io", "v1", kind, plural)
        # No such CRD in this session (the apiserver answers a plain-text 404, not a Status), or the object went.
        with contextlib.suppress(ApiError, httpx2.HTTPStatusError):
            for obj in k8s_client.list(resource, namespace=namespace):
                if obj.metadata is not None and obj.metadata.finalizers and obj.metadata.name:
                    k8s_client.patch(
                        resource,
                        obj.metadata.name,
                        {"metadata": {"finalizers": None}},
                        namespace=namespace,
                        patch_type=PatchType.MERGE,
                    )


@pytest.fixture
def k8s_namespace(request: pytest.FixtureRequest, k8s_control_plane: ControlPlane, k8s_client: Client) -> Iterator[str]:
    """A fresh namespace (with its ``default`` ServiceAccount ready), deleted after the test."""
    k8s_control_plane.assert_running()
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    with fresh_namespace(k8s_client, f"t-{stem}-{secrets.token_hex(3)}") as name:
        yield name


KwokNodeFactory = Callable[..., list[str]]


@pytest.fixture
def kwok_nodes(k8s_control_plane: ControlPlane, k8s_client: Client) -> Iterator[KwokNodeFactory]:
    """Factory: ``kwok_nodes(n, cpu="32", memory="256Gi", pods="110", gpus=0, labels=None)`` creates N
    Ready simulated nodes (labelled ``type=kwok``) and returns their names; pods the scheduler binds to
    them become Running/Ready. The nodes are deleted after the test."""
    from lightkube import ApiError, codecs
    from lightkube.resources.core_v1 import Node

    created: list[str] = []

    def make(n: int, *, timeout: float = 120.0, **kw: Any) -> list[str]:
        k8s_control_plane.start_kwok()
        prefix = f"kwok-{secrets.token_hex(3)}"
        names = [f"{prefix}-{i}" for i in range(n)]
        for name in names:
            k8s_client.create(codecs.from_dict(kwok.node_manifest(name, **kw)))
            created.append(name)

        def all_ready() -> bool:
            nodes = k8s_client.list(Node, labels={"type": "kwok"})
            ready = {
                node.metadata.name
                for node in nodes
                if node.metadata and node.status and node.status.conditions
                for c in node.status.conditions
                if c.type == "Ready" and c.status == "True"
            }
            return ready.issuperset(names)

        wait_until(all_ready, timeout=timeout, what=f"{n} kwok node(s) {prefix}-* to be Ready")
        return names

    yield make
    for name in created:
        with contextlib.suppress(ApiError):
            k8s_client.delete(Node, name)


KubeRayFactory = Callable[..., KubeRayOperator]


@pytest.fixture
def kuberay_operator(
    k8s_control_plane: ControlPlane, k8s_binaries: Binaries, tmp_path: Path
) -> Iterator[KubeRayFactory]:
    """Factory: ``kuberay_operator(namespaces=[...], gates=None, env=None, reconcile_concurrency=1,
    extra_args=())`` starts KubeRay's Go operator (``hack/k8s/build.sh kuberay``) on the session plane and
    returns a started :class:`~kray.dev.kuberay.KubeRayOperator` (``.log``, ``.healthz_url``,
    ``.metrics_url``, ``.stop()``). ``namespaces`` is required: an empty list means every namespace, which
    on the shared plane reaches other tests' objects. ``gates=None`` is :data:`DEFAULT_GATES` (v1.7's
    on-by-default gates); a mapping replaces it (``{}``: v1.5.0's own defaults). Each operator logs under
    the test's ``tmp_path`` (kept by pytest after the run) and is stopped at teardown."""
    started: list[KubeRayOperator] = []

    def start(
        *,
        namespaces: Sequence[str],
        gates: Mapping[str, bool] | None = None,
        env: Mapping[str, str] | None = None,
        reconcile_concurrency: int = DEFAULT_RECONCILE_CONCURRENCY,
        extra_args: Sequence[str] = (),
    ) -> KubeRayOperator:
        if isinstance(namespaces, str):
            raise TypeError("namespaces must be a list of names, not a string")
        options = KubeRayOptions(
            namespaces=tuple(namespaces),
            gates=dict(DEFAULT_GATES if gates is None else gates),
            env=dict(env or {}),
            reconcile_concurrency=reconcile_concurrency,
            extra_args=tuple(extra_args),
        )
        op = KubeRayOperator(
            kubeconfig=k8s_control_plane.kubeconfig,
            binaries=k8s_binaries,
            options=options,
            log_dir=tmp_path / "kuberay",
            name=f"kuberay-operator-{len(started)}",
        )
        started.append(op)
        return op.start()

    yield start
    errors: list[str] = []
    for op in reversed(started):
        try:
            op.stop()
        except Exception as exc:  # stop the others regardless
            errors.append(f"{op.name}: {exc!r}")
    if errors:
        raise RuntimeError("stopping KubeRay's operator: " + "; ".join(errors))
