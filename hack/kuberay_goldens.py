"""Regenerate ``tests/controllers/builders/golden/kuberay/*.yaml`` from what KubeRay's own operator sends.

Why: golden files written from kray's output only pin what kray already does. These are written from
KubeRay's operator (v1.5.0, the Go peer built by ``hack/k8s/build.sh``), so the fast builder test
``tests/controllers/builders/test_golden_kuberay.py`` judges kray against an independent implementation.

Usage (from the repository root; needs the cached control-plane binaries, builds them otherwise)::

    .venv/bin/python hack/kuberay_goldens.py            # every sample of SAMPLES
    .venv/bin/python hack/kuberay_goldens.py ray-cluster.sample.yaml   # only these

What it does: a private control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok with
simulated nodes, kray's CRDs) whose apiserver writes an audit log (level RequestResponse) of the
``create`` calls of KubeRay's user (a cluster-admin ServiceAccount) on pods, services, jobs, secrets,
serviceaccounts, roles, rolebindings, ingresses and rayclusters. KubeRay's operator (gates
:data:`kray.dev.kuberay.DEFAULT_GATES`) talks to the apiserver through a recording proxy; each sample is
applied to its own namespace; once nothing has changed for a while every create is written out.

Why a proxy as well as the audit log: the audit ``requestObject`` is the object *after* the apiserver's
scheme defaulting (``imagePullPolicy``, ``terminationMessagePath``, probe periods, Service ``type`` ...:
checked on v1.37.2), not what KubeRay sent. The proxy keeps the request body; built-in kinds arrive as
protobuf (controller-runtime's choice), decoded without defaulting by a 30-line Go program compiled from
the module cache (same k8s.io/api version as ray-operator v1.5.0). Each body is paired with its audit
event by the ``Audit-Id`` response header, and checked: every audit event of KubeRay's has a body, and
every field of the body (Go's zero artefacts dropped) has the same value in the defaulted
``requestObject`` -- so the decode changed nothing, and defaulting only added fields.

Each body is normalised by ``normalise_golden`` of the test module (the rule is documented there), and
filed by role: ``headPod``, ``workerPods`` (by group, in replica/host order), ``headService``,
``services``, ``submitterJob``, ``rayCluster`` (a RayJob's), ``serviceAccount``, ``role``,
``roleBinding``, ``ingress``, ``secrets``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kray.dev import kwok  # noqa: E402
from kray.dev.binaries import ensure_binaries  # noqa: E402
from kray.dev.controlplane import ControlPlane, Options  # noqa: E402
from kray.dev.kuberay import DEFAULT_GATES, KubeRayOperator, KubeRayOptions, gates_arg  # noqa: E402
from kray.dev.procs import wait_until  # noqa: E402
from tests.controllers.builders.support import SAMPLES as SAMPLES_DIR  # noqa: E402
from tests.controllers.builders.test_golden_kuberay import (  # noqa: E402
    GOLDEN_DIR,
    SAMPLES,
    drop_go_zero,
    file_objects,
    normalise_golden,
)
from tests.differential.harness import Api, apply_case, load_case, new_namespace, wait_quiet  # noqa: E402

KUBERAY_VERSION = "v1.5.0"
OPERATOR_NS, OPERATOR_SA = "kuberay-goldens", "kuberay-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
RECORDED = {
    "": ["pods", "services", "secrets", "serviceaccounts"],
    "batch": ["jobs"],
    "rbac.authorization.k8s.io": ["roles", "rolebindings"],
    "networking.k8s.io": ["ingresses"],
    "ray.io": ["rayclusters"],
}
QUIET_FOR = 35.0  # longer than KubeRay's 30 s submitter grace period (see tests/differential/test_samples.py)
DECODER_GO = """package main

import (
	"encoding/json"
	"io"
	"os"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// Decodes one protobuf request body into its Go type and prints it as encoding/json does: no defaulting.
func main() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, batchv1.AddToScheme,
		networkingv1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		panic(err)
	}
	obj, gvk, err := protobuf.NewSerializer(scheme, scheme).Decode(data, nil, nil)
	if err != nil {
		panic(err)
	}
	obj.GetObjectKind().SetGroupVersionKind(*gvk)
	if err := json.NewEncoder(os.Stdout).Encode(obj); err != nil {
		panic(err)
	}
}
"""


# ---- the protobuf decoder ---------------------------------------------------------------------------
def build_decoder() -> Path:
    """Compile :data:`DECODER_GO` against ray-operator v1.5.0's go.mod (module cache only), cached by hash."""
    gomod = Path(os.environ.get("GOMODCACHE", Path.home() / "go/pkg/mod"))
    operator = gomod / f"github.com/ray-project/kuberay/ray-operator@{KUBERAY_VERSION}"
    digest = hashlib.sha256(DECODER_GO.encode() + (operator / "go.mod").read_bytes()).hexdigest()[:12]
    binary = Path.home() / ".cache/kray/kuberay-goldens" / f"pbjson-{digest}"
    if binary.exists():
        return binary
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        (src / "main.go").write_text(DECODER_GO)
        (src / "go.mod").write_text(re.sub(r"^module .*$", "module kraygoldens/pbjson",
                                           (operator / "go.mod").read_text(), count=1, flags=re.M))  # fmt: skip
        (src / "go.sum").write_bytes((operator / "go.sum").read_bytes())
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=src, env=env, check=True, timeout=1200)
    return binary


def decode(decoder: Path, content_type: str, body: bytes) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        return dict(json.loads(body))
    if not content_type.startswith("application/vnd.kubernetes.protobuf"):
        raise ValueError(f"unexpected request content type {content_type!r}")
    out = subprocess.run([str(decoder)], input=body, capture_output=True, check=True, timeout=60)
    return dict(json.loads(out.stdout))


# ---- the recording proxy ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Capture:
    audit_id: str
    path: str
    content_type: str
    body: bytes
    status: int


_HOP = {"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "accept-encoding",
        "authorization", "upgrade", "te", "trailer"}  # fmt: skip


def start_proxy(*, upstream: str, token: str, ca_file: Path) -> tuple[http.server.ThreadingHTTPServer, list[Capture]]:
    """A plain-HTTP proxy on 127.0.0.1 adding ``token``; keeps every POST body (watches stream through)."""
    host, port = upstream.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca_file))
    captures: list[Capture] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["Authorization"] = f"Bearer {token}"
            upstream_conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=900)
            try:
                upstream_conn.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream_conn.getresponse()
                if self.command == "POST":
                    with lock:
                        content_type = self.headers.get("Content-Type", "")
                        audit_id = response.headers.get("Audit-Id", "")
                        captures.append(Capture(audit_id, self.path, content_type, body, response.status))
                self.send_response(response.status)
                for key, value in response.headers.items():
                    if key.lower() not in _HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                if response.length is not None:  # a plain response: copy it whole
                    data = response.read()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("Transfer-Encoding", "chunked")  # a watch: stream it on
                self.end_headers()
                while chunk := response.read1(65536):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                upstream_conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="kuberay-goldens-proxy", daemon=True).start()
    return server, captures


# ---- the control plane ------------------------------------------------------------------------------
def audit_args(root: Path) -> tuple[str, ...]:
    resources = [{"group": group, "resources": names} for group, names in RECORDED.items()]
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "RequestResponse", "users": [OPERATOR_USER], "verbs": ["create"], "resources": resources},
            {"level": "None"},
        ],
    }
    (root / "policy.yaml").write_text(yaml.safe_dump(policy))
    return (f"--audit-policy-file={root / 'policy.yaml'}", f"--audit-log-path={root / 'audit.log'}",
            "--audit-log-format=json")  # fmt: skip


def ok(response: Any) -> Any:
    if response.status_code >= 300:
        request = response.request
        raise RuntimeError(f"{request.method} {request.url} -> {response.status_code}: {response.text}")
    return response.json()


def operator_token(api: Api) -> str:
    """A cluster-admin ServiceAccount for KubeRay: its own user, which the audit policy selects."""
    ok(api.client.post("/api/v1/namespaces", json={"metadata": {"name": OPERATOR_NS}}))
    ok(api.client.post(f"/api/v1/namespaces/{OPERATOR_NS}/serviceaccounts", json={"metadata": {"name": OPERATOR_SA}}))
    binding = {"metadata": {"name": "kuberay-goldens"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NS}]}  # fmt: skip
    ok(api.client.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json=binding))
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 86400}}
    out = ok(api.client.post(f"/api/v1/namespaces/{OPERATOR_NS}/serviceaccounts/{OPERATOR_SA}/token", json=request))
    return str(out["status"]["token"])


def install_crds(api: Api) -> None:
    crds = [d for f in sorted((ROOT / "config/crd").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    for crd in crds:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        headers = {"Content-Type": "application/apply-patch+yaml"}
        params = {"fieldManager": "kuberay-goldens", "force": "true"}
        ok(api.client.patch(path, params=params, content=json.dumps(crd).encode(), headers=headers))

    def established() -> bool:
        for crd in crds:
            got = api.client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
            conditions = (got.json().get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    wait_until(established, timeout=60, what="kray's CRDs to be Established")


# ---- one run ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recording:
    namespaces: dict[str, str]
    """sample → its namespace."""
    inputs: dict[str, dict[str, Any]]
    """sample → its Ray object as the apiserver stored it (CRD defaults applied): what KubeRay read."""
    captures: list[Capture]
    events: list[dict[str, Any]]
    """The audit log's ResponseComplete events."""


def stored_input(api: Api, case: Any) -> dict[str, Any]:
    """The sample's RayCluster/RayJob as stored, without server fields or namespace. Read before KubeRay
    starts: its full-object updates write Go zero structs (``metadata: {}``) into the spec."""
    namespace = case.namespaces["kuberay"]
    (kind_name, name), *more = [(k, n) for k, n in case.applied if k in ("RayCluster", "RayJob")]
    assert not more, f"{case.name}: more than one Ray object"
    kind = api.kind("ray.io/v1", kind_name)
    assert kind is not None
    stored = ok(api.client.get(kind.path(namespace, name)))
    meta = {k: stored["metadata"][k] for k in ("name", "labels", "annotations") if stored["metadata"].get(k)}
    out = {"apiVersion": stored["apiVersion"], "kind": kind_name, "metadata": meta, "spec": stored["spec"]}
    if namespace in json.dumps(out):
        raise RuntimeError(f"{case.name}: the stored object names its namespace {namespace}; normalise it first")
    return out


def record(samples: list[str], workdir: Path) -> Recording:
    """Run KubeRay's operator on ``samples`` and return what it read and sent."""
    binaries = ensure_binaries(echo=sys.stderr)
    plane = ControlPlane(binaries=binaries, options=Options(extra_apiserver_args=audit_args(workdir)))
    with plane:
        api = Api(server=plane.server, token=plane.token, ca_file=plane.ca_file)
        install_crds(api)
        plane.start_kwok()
        for i in range(3):
            node = kwok.node_manifest(f"kwok-goldens-{i}", cpu="2000", memory="16Ti", pods="1000", gpus=64)
            ok(api.client.post("/api/v1/nodes", json=node))
        proxy, captures = start_proxy(upstream=plane.server, token=operator_token(api), ca_file=plane.ca_file)
        kubeconfig = workdir / "kuberay.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kuberay",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{proxy.server_address[1]}"}}],
            "users": [{"name": "kuberay", "user": {}}],
            "contexts": [{"name": "kuberay", "context": {"cluster": "proxy", "user": "kuberay"}}],
        }))  # fmt: skip
        cases = {sample: load_case(SAMPLES_DIR / sample) for sample in samples}
        for sample, case in cases.items():
            case.namespaces["kuberay"] = new_namespace(api, "g-" + re.sub(r"[^a-z0-9]+", "-", sample[:-5])[:40])
        for case in cases.values():
            ns = case.namespaces["kuberay"]
            wait_until(lambda ns=ns: api.client.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default").is_success,  # type: ignore[misc]
                       timeout=60, what=f"ServiceAccount {ns}/default (controller-manager)")  # fmt: skip
        options = KubeRayOptions(namespaces=tuple(c.namespaces["kuberay"] for c in cases.values()))
        inputs: dict[str, dict[str, Any]] = {}
        for sample, case in cases.items():  # before the operator starts: it rewrites what it reads
            if errors := apply_case(api, case, "kuberay"):
                raise RuntimeError(f"applying {case.name}: {errors}")
            inputs[sample] = stored_input(api, case)
        try:
            with KubeRayOperator(kubeconfig=kubeconfig, binaries=binaries, log_dir=workdir, options=options):
                quiet, waited = wait_quiet(api, list(options.namespaces), quiet_for=QUIET_FOR, timeout=300.0)
                if not quiet:
                    raise RuntimeError(f"objects still changing after {waited:.0f}s")
        finally:
            proxy.shutdown()
            proxy.server_close()
        audit = [json.loads(line) for line in (workdir / "audit.log").read_text().splitlines()]
        api.close()
    events = [e for e in audit if e.get("stage") == "ResponseComplete"]
    return Recording({s: c.namespaces["kuberay"] for s, c in cases.items()}, inputs, list(captures), events)


def contained(raw: Any, audited: Any, path: str = "") -> list[str]:
    """Where ``raw`` is not part of ``audited``: defaulting may only add."""
    if isinstance(raw, dict) and isinstance(audited, dict):
        return [p for k, v in raw.items() for p in contained(v, audited.get(k), f"{path}.{k}")]
    if isinstance(raw, list) and isinstance(audited, list) and len(raw) == len(audited):
        return [p for i, (a, b) in enumerate(zip(raw, audited, strict=True)) for p in contained(a, b, f"{path}[{i}]")]
    return [] if raw == audited else [f"{path}: sent {json.dumps(raw)[:200]} stored {json.dumps(audited)[:200]}"]


def pair(captures: list[Capture], events: list[dict[str, Any]], decoder: Path) -> list[tuple[dict[str, Any], str]]:
    """(decoded body, namespace) of every successful create KubeRay made, checked against the audit log."""
    by_id = {c.audit_id: c for c in captures}
    out, problems = [], []
    for event in events:
        if event.get("verb") != "create" or event["user"]["username"] != OPERATOR_USER:
            continue
        capture = by_id.get(event["auditID"])
        if capture is None:
            problems.append(f"audit event {event['requestURI']} ({event['auditID']}) has no recorded body")
            continue
        if capture.status >= 300:
            continue
        body = decode(decoder, capture.content_type, capture.body)
        problems += [f"{event['requestURI']}{p}" for p in contained(drop_go_zero(body), event.get("requestObject"))]
        out.append((body, str(event["objectRef"]["namespace"])))
    if problems:
        raise RuntimeError("the recorded bodies disagree with the audit log:\n" + "\n".join(problems[:40]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", nargs="*", default=list(SAMPLES), help="sample file names (default: all)")
    args = parser.parse_args(argv)
    decoder = build_decoder()
    with tempfile.TemporaryDirectory(prefix="kuberay-goldens-") as tmp:
        recording = record(list(args.samples), Path(tmp))
    created = pair(recording.captures, recording.events, decoder)
    command = " ".join(["hack/kuberay_goldens.py", *(argv if argv is not None else sys.argv[1:])])
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for sample, namespace in recording.namespaces.items():
        objects = [normalise_golden(body, namespace=namespace) for body, ns in created if ns == namespace]
        if not objects:
            raise RuntimeError(f"KubeRay created nothing for {sample}")
        header = [
            f"KubeRay's operator {KUBERAY_VERSION} (github.com/ray-project/kuberay ray-operator), "
            f"feature gates {gates_arg(DEFAULT_GATES)}, on {sample}.",
            f"Generated {datetime.date.today().isoformat()} by: .venv/bin/python {command}",
            "The bodies of its create requests (before apiserver defaulting), normalised by normalise_golden in",
            "tests/controllers/builders/test_golden_kuberay.py. Do not edit: rerun the command.",
        ]
        text = "".join(f"# {line}\n" for line in header)
        golden = {"input": recording.inputs[sample], "created": file_objects(objects)}
        text += yaml.safe_dump(golden, sort_keys=False, allow_unicode=True, width=2**16)
        (GOLDEN_DIR / sample).write_text(text)
        print(f"{sample}: {len(objects)} object(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
