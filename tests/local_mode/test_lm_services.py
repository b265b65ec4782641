"""RayServices on one machine, with real Ray Serve: KubeRay's ``ray-service.sample.yaml`` applied with
``kray apply -f`` prints its serve address and reaches Ready, its applications answer through the cluster's
Serve proxy and through that address (kray's stand-in for ``<rs>-serve-svc``), ``kray get services`` and
``kray describe service`` show it, and ``kray delete service`` removes it, its cluster, every process and
the address.

The sample's applications come from a GitHub archive (``working_dir``), which this machine cannot reach:
the test serves a stand-in archive on loopback and points the sample's ``working_dir`` there. The stand-in
modules have the sample's import paths, deployments and ``user_config`` keys, and answer as KubeRay's
RayService quickstart documents the sample does: ``["MANGO", 2]`` to ``/fruit/`` is 6 (MangoStand's
price 3), ``["MUL", 3]`` to ``/calc/`` is ``"15 pizzas please!"`` (Multiplier's factor 5).
"""

from __future__ import annotations

import contextlib
import http.server
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from kray.local.adjust import ClusterPorts
from kray.local.environment import PORTS_ANNOTATION
from kray.local.ports import port_is_free
from kray.store import POD, RAYCLUSTER, RAYSERVICE, Obj

from .conftest import Local, annotations, condition, settle, status, wait_for

pytestmark = pytest.mark.slow

SAMPLE = Path("/work/shared/kuberay-samples/ray-service.sample.yaml")
ARCHIVE = "https://github.com/ray-project/test_dag/archive/78b4a5da38796123d9f9ffff59bab2792a043e95.zip"
TOP = "test_dag-78b4a5da38796123d9f9ffff59bab2792a043e95"
READY_TIMEOUT = 300.0

FRUIT = """
from ray import serve


@serve.deployment
class Stand:
    def __init__(self):
        self.price = 0

    def reconfigure(self, config):
        self.price = config["price"]

    def check_price(self, amount):
        return self.price * amount


MangoStand = Stand.options(name="MangoStand")
OrangeStand = Stand.options(name="OrangeStand")
PearStand = Stand.options(name="PearStand")


@serve.deployment
class FruitMarket:
    def __init__(self, mango, orange, pear):
        self.stands = {"MANGO": mango, "ORANGE": orange, "PEAR": pear}

    async def __call__(self, request):
        fruit, amount = await request.json()
        stand = self.stands.get(fruit)
        return -1 if stand is None else await stand.check_price.remote(amount)


deployment_graph = FruitMarket.bind(MangoStand.bind(), OrangeStand.bind(), PearStand.bind())
"""

CONDITIONAL_DAG = """
from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Adder:
    def __init__(self):
        self.increment = 0

    def reconfigure(self, config):
        self.increment = config["increment"]

    def apply(self, value):
        return value + self.increment


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Multiplier:
    def __init__(self):
        self.factor = 0

    def reconfigure(self, config):
        self.factor = config["factor"]

    def apply(self, value):
        return value * self.factor


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Router:
    def __init__(self, multiplier, adder):
        self.operations = {"MUL": multiplier, "ADD": adder}

    async def __call__(self, request):
        operation, value = await request.json()
        amount = await self.operations[operation].apply.remote(value)
        return f"{amount} pizzas please!"


serve_dag = Router.bind(Multiplier.bind(), Adder.bind())
"""


def _archive() -> bytes:
    """A zip shaped as GitHub's archive of a commit: one top directory holding the modules."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{TOP}/fruit.py", FRUIT)
        archive.writestr(f"{TOP}/conditional_dag.py", CONDITIONAL_DAG)
    return buffer.getvalue()


@contextlib.contextmanager
def stand_in_archive() -> Iterator[str]:
    """The stand-in archive, served on loopback (port chosen by the kernel) as GitHub would serve it; the samples
    corpus uses it too (ray-service.different-port.yaml names the same archive)."""
    body = _archive()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/archive/{TOP.split('-', 1)[1]}.zip"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def archive_url() -> Iterator[str]:
    with stand_in_archive() as url:
        yield url


def _sample(archive_url: str) -> Obj:
    sample: Obj = yaml.safe_load(SAMPLE.read_text())
    assert sample["spec"]["serveConfigV2"].count(ARCHIVE) == 2
    sample["spec"]["serveConfigV2"] = sample["spec"]["serveConfigV2"].replace(ARCHIVE, archive_url)
    return sample


def _ready(local: Local, name: str) -> Obj | None:
    service = local.get(RAYSERVICE, name)
    active = status(service).get("activeServiceStatus") or {}
    apps = active.get("applicationStatuses") or {}
    running = bool(apps) and all(app.get("status") == "RUNNING" for app in apps.values())
    return service if condition(service, "Ready") == "True" and running else None


@pytest.mark.timeout(1200)  # a cluster, Serve and its runtime envs on two cores: most of READY_TIMEOUT is real
def test_the_sample_rayservice_serves_then_goes_with_its_processes(local: Local, archive_url: str) -> None:
    sample = _sample(archive_url)
    name = sample["metadata"]["name"]
    applied = local.kray("apply", "-f", str(local.manifest(sample)))
    assert applied.returncode == 0, applied.stderr
    assert f"rayservice/{name} created" in applied.stdout
    printed = re.search(rf"^rayservice/{name} serve address: http://(127\.0\.0\.1:\d+)$", applied.stdout, re.M)
    assert printed, applied.stdout
    address = printed.group(1)

    last: dict[str, Any] = {}

    def ready() -> Obj | None:
        found = _ready(local, name)
        last.update(status(local.get(RAYSERVICE, name)))
        return found

    try:
        service = wait_for(ready, timeout=READY_TIMEOUT, what=f"RayService {name} Ready with every app RUNNING")
    except AssertionError as error:
        raise AssertionError(f"{error}; status {last}") from None
    assert set(status(service)["activeServiceStatus"]["applicationStatuses"]) == {"fruit_app", "math_app"}
    assert status(service)["numServeEndpoints"] >= 1
    cluster_name = status(service)["activeServiceStatus"]["rayClusterName"]
    assert cluster_name.startswith(f"{name}-")

    # The cluster's Serve proxy, on the port kray mapped KubeRay's 8000 to.
    cluster = local.get(RAYCLUSTER, cluster_name)
    assert cluster is not None
    serve_port = ClusterPorts.parse_annotation(annotations(cluster)[PORTS_ANNOTATION])["serve"]
    base = f"http://127.0.0.1:{serve_port}"
    fruit = httpx2.post(f"{base}/fruit/", json=["MANGO", 2], timeout=30)
    assert (fruit.status_code, fruit.json()) == (200, 6)
    calc = httpx2.post(f"{base}/calc/", json=["MUL", 3], timeout=30)
    assert (calc.status_code, calc.text) == (200, "15 pizzas please!")
    # The same answers through the RayService's own serve address.
    fruit = httpx2.post(f"http://{address}/fruit/", json=["MANGO", 2], timeout=30)
    assert (fruit.status_code, fruit.json()) == (200, 6)
    calc = httpx2.post(f"http://{address}/calc/", json=["MUL", 3], timeout=30)
    assert (calc.status_code, calc.text) == (200, "15 pizzas please!")
    listed = local.kray("get", "services").stdout.splitlines()
    assert listed[1].split()[:4] == [name, "default", "Ready", cluster_name]
    assert listed[1].split()[-2] == f"http://{address}"
    described = local.kray("describe", "service", name).stdout
    assert f"  active: {cluster_name}\n    app fruit_app: RUNNING\n" in described
    changes = described.split("Serve config changes:\n", 1)[1].split("Events:", 1)[0].splitlines()
    assert changes, described
    assert all(line.split()[1] == cluster_name for line in changes), changes

    head = next(p for p in local.pods(cluster_name) if p["metadata"]["labels"].get("ray.io/node-type") == "head")
    assert head["metadata"]["labels"]["ray.io/serve"] == "true"
    pods = local.pods(cluster_name)
    assert local.pod_processes(pods)

    deleted = local.kray("delete", "service", name, timeout=180)
    assert deleted.stdout.strip() == f"rayservice/{name} deleted", deleted.stderr
    local.wait_gone(RAYSERVICE, name, timeout=120)
    wait_for(lambda: port_is_free(int(address.rpartition(":")[2])), timeout=10, what="the serve address closed")
    assert local.list(RAYCLUSTER, selector=f"ray.io/originated-from-cr-name={name}") == []
    assert settle(lambda: local.list(POD, selector=f"ray.io/cluster={cluster_name}"), timeout=60) == []
    assert settle(lambda: local.pod_processes(pods), timeout=60) == []
