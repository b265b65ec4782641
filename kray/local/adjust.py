"""The one place where local mode changes a KubeRay pod: ports, addresses, auth, startup waits. Pure.

On Kubernetes every pod has its own IP, so KubeRay can use fixed ports (6379, 8265, 10001, 52365,
8080) and a head Service DNS name. On one machine every "pod" shares 127.0.0.1, so:

* cluster-wide ports (GCS, dashboard, Ray client) are chosen per cluster (:class:`ClusterPorts`),
  the client port outside Ray's worker port range 10002-19999;
* per-node ports (``dashboard-agent-listen-port``, ``metrics-export-port``, and the probes that
  target them) differ per node (:class:`NodePorts`), since a head and its workers share a host. A
  worker's are chosen per pod; the head's are the cluster's (``head_agent``, ``head_metrics``), so the
  head Service — and with it ``status.endpoints`` — can name them before any head pod exists;
* Ray binds to ``--node-ip-address=127.0.0.1`` and the dashboard to 127.0.0.1, and workers reach
  the head at 127.0.0.1 instead of ``<cluster>-head-svc.<ns>.svc.cluster.local``;
* token auth is always on: ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (from the cluster's
  Secret) in every Ray process, whatever the manifest says;
* waits sized for Kubernetes (image pulls, pod scheduling) are sized for a machine: KubeRay's
  injected readiness probe (10 s initial delay, every 5 s) probes after 1 s, every second, with the
  same 50 s failure window; the ``wait-gcs-ready`` init container polls the GCS every second instead
  of every 5 s. A cluster is ready as soon as Ray is, which is what lets ``kray job run`` keep up with
  starting Ray by hand. Probes the manifest sets itself, and liveness probes, are left alone;
* a login shell (``bash -lc``) runs as a plain one (``bash -c``): its profile would be the host's, which
  resets PATH (:func:`_without_login`);
* KubeRay's autoscaler container (``enableInTreeAutoscaling``) runs unchanged against the local server's
  Kubernetes API, given what a kubelet gives a pod and the cluster's ports (:func:`_adjust_autoscaler`).

Everything else of the pod — command, env, probes' shape, volumes — stays exactly as KubeRay builds
it, so the local run exercises the same generated ``ray start`` line as the operator.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOCAL_HOST = "127.0.0.1"
AUTH_SECRET_KEY = "auth_token"


@dataclass(frozen=True, slots=True)
class ClusterPorts:
    gcs: int
    dashboard: int
    client: int
    serve: int
    dashboard_metrics: int
    """The head dashboard's own metrics port (Ray's default 44227 on 0.0.0.0 would clash across clusters)."""
    autoscaler_metrics: int
    """Likewise the autoscaler's (default 44217)."""
    head_agent: int
    """The head node's ``--dashboard-agent-listen-port`` (KubeRay's 52365)."""
    head_metrics: int
    """The head node's ``--metrics-export-port`` (KubeRay's 8080): the head Service's ``metrics`` target."""

    @staticmethod
    def names() -> tuple[str, ...]:
        return (
            "gcs",
            "dashboard",
            "client",
            "serve",
            "dashboard_metrics",
            "autoscaler_metrics",
            "head_agent",
            "head_metrics",
        )

    @property
    def head_node(self) -> NodePorts:
        return NodePorts(agent=self.head_agent, metrics=self.head_metrics)

    def as_annotation(self) -> str:
        return ",".join(f"{name}={getattr(self, name)}" for name in self.names())

    @classmethod
    def parse_annotation(cls, text: str) -> dict[str, int]:
        """The well-formed ``name=port`` entries of an annotation; unknown names and junk are dropped.

        An annotation written by an older kray lacks the newer names: the caller allocates those.
        """
        values: dict[str, int] = {}
        for part in text.split(","):
            name, sep, value = part.strip().partition("=")
            if sep and name in cls.names() and value.strip().isdigit():
                values[name] = int(value)
        return values

    @classmethod
    def from_annotation(cls, text: str) -> ClusterPorts:
        """Raises ValueError when a port is missing (an older annotation not yet upgraded)."""
        values = cls.parse_annotation(text)
        missing = [name for name in cls.names() if name not in values]
        if missing:
            raise ValueError(f"cluster ports annotation lacks {', '.join(missing)}: {text!r}")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class NodePorts:
    agent: int
    metrics: int


_KUBERAY_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "agent": 52365, "metrics": 8080}


def _set_flag(command: str, flag: str, value: str | None) -> str:
    """Set ``--flag=value`` (or bare ``--flag`` when value is None) in a ``ray start`` command line."""
    pattern = re.compile(rf"--{re.escape(flag)}(=\S*)?(?=\s|$)")
    rendered = f"--{flag}" if value is None else f"--{flag}={value}"
    if pattern.search(command):
        return pattern.sub(rendered, command, count=1)
    return re.sub(r"(ray start(?: --head)?)", rf"\1 {rendered}", command, count=1)


def adjust_ray_start(
    command: str, *, head: bool, cluster: ClusterPorts, node: NodePorts, temp_dir: str | None = None
) -> str:
    """Rewrite the ports and addresses of one ``ray start`` command line for this machine.

    ``temp_dir`` (``--temp-dir``, unless the manifest sets one) keeps each cluster's Ray state apart: every
    ``ray start`` writes ``<temp dir>/ray_current_cluster``, and Ray's job supervisor gives each driver the
    address found there (``RAY_ADDRESS=auto``), so clusters sharing ``/tmp/ray`` run each other's jobs.
    """
    if "ray start" not in command:
        return command
    command = _set_flag(command, "node-ip-address", LOCAL_HOST)
    if temp_dir and not re.search(r"--temp-dir(=|\s|$)", command):
        command = _set_flag(command, "temp-dir", temp_dir)
    command = _set_flag(command, "dashboard-agent-listen-port", str(node.agent))
    command = _set_flag(command, "metrics-export-port", str(node.metrics))
    if head:
        command = _set_flag(command, "port", str(cluster.gcs))
        command = _set_flag(command, "dashboard-host", LOCAL_HOST)
        command = _set_flag(command, "dashboard-port", str(cluster.dashboard))
        command = _set_flag(command, "ray-client-server-port", str(cluster.client))
    else:
        command = _set_flag(command, "address", f"{LOCAL_HOST}:{cluster.gcs}")
    return command


def _env_list(container: dict[str, Any]) -> list[dict[str, Any]]:
    env = container.setdefault("env", [])
    assert isinstance(env, list)
    return env


def _set_env(
    container: dict[str, Any], name: str, value: str | None = None, *, source: Mapping[str, Any] | None = None
) -> None:
    env = _env_list(container)
    entry: dict[str, Any] = (
        {"name": name, "value": value} if source is None else {"name": name, "valueFrom": dict(source)}
    )
    for index, existing in enumerate(env):
        if existing.get("name") == name:
            env[index] = entry
            return
    env.append(entry)


def _map_port(port: Any, mapping: Mapping[int, int]) -> Any:
    return mapping.get(port, port) if isinstance(port, int) else port


def _adjust_probe(probe: dict[str, Any] | None, mapping: Mapping[int, int]) -> None:
    if not probe:
        return
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe and "port" in probe[handler]:
            probe[handler]["port"] = _map_port(probe[handler]["port"], mapping)
    command = (probe.get("exec") or {}).get("command")
    if command:
        probe["exec"]["command"] = [_replace_localhost_ports(part, mapping) for part in command]


def _replace_localhost_ports(text: str, mapping: Mapping[int, int]) -> str:
    def repl(match: re.Match[str]) -> str:
        port = int(match.group(2))
        return f"{match.group(1)}:{mapping.get(port, port)}"

    return re.sub(r"(localhost|127\.0\.0\.1):(\d+)", repl, text)


def _port_mapping(cluster: ClusterPorts, node: NodePorts) -> dict[int, int]:
    """KubeRay's fixed port → this node's local port."""
    return {
        _KUBERAY_PORTS["gcs"]: cluster.gcs,
        _KUBERAY_PORTS["dashboard"]: cluster.dashboard,
        _KUBERAY_PORTS["client"]: cluster.client,
        _KUBERAY_PORTS["serve"]: cluster.serve,
        _KUBERAY_PORTS["agent"]: node.agent,
        _KUBERAY_PORTS["metrics"]: node.metrics,
    }


def adjust_pod(
    pod: Mapping[str, Any],
    *,
    head: bool,
    cluster: ClusterPorts,
    node: NodePorts,
    auth_secret: str,
    temp_dir: str | None = None,
    kube_api: KubeApiAccess | None = None,
) -> dict[str, Any]:
    """A copy of a KubeRay pod, adjusted to run on this machine (see the module docstring).

    Without ``kube_api`` (no local Kubernetes API to talk to) KubeRay's autoscaler container is dropped.
    """
    out = copy.deepcopy(dict(pod))
    spec = out.setdefault("spec", {})
    mapping = _port_mapping(cluster, node)
    auth = {"secretKeyRef": {"name": auth_secret, "key": AUTH_SECRET_KEY}}
    if kube_api is None:
        # KubeRay's in-tree autoscaler talks to a Kubernetes API server: without the local server's it could
        # only crash-loop (and keep the head pod unready), so the pod runs without it.
        spec["containers"] = [c for c in spec.get("containers") or [] if not _is_kuberay_autoscaler(c)]
    else:
        for container in spec.get("containers") or []:
            if _is_kuberay_autoscaler(container):
                _adjust_autoscaler(spec, container, cluster=cluster, kube_api=kube_api, auth=auth)
    containers = spec["containers"]
    for index, container in enumerate([*containers, *(spec.get("initContainers") or [])]):
        is_ray = index == 0
        args = container.get("args") or []
        container["args"] = [
            adjust_ray_start(a, head=head, cluster=cluster, node=node, temp_dir=temp_dir) for a in args
        ]
        command = _without_login(container.get("command") or [])
        container["command"] = [
            adjust_ray_start(c, head=head, cluster=cluster, node=node, temp_dir=temp_dir) for c in command
        ]
        container["args"] = [_retarget_health_check(a, cluster) for a in container["args"]]
        if container.get("name") == "wait-gcs-ready":
            container["args"] = [_quicken_wait_gcs(a) for a in container["args"]]
        for entry in container.get("env") or []:
            if entry.get("name") == "KUBERAY_GEN_RAY_START_CMD" and "value" in entry:
                entry["value"] = adjust_ray_start(
                    entry["value"], head=head, cluster=cluster, node=node, temp_dir=temp_dir
                )
        if is_ray or container.get("name") == "wait-gcs-ready":
            _set_env(container, "RAY_ADDRESS", f"{LOCAL_HOST}:{cluster.gcs}")
            _set_env(container, "RAY_PORT", str(cluster.gcs))
            if not head:
                _set_env(container, "FQ_RAY_IP", LOCAL_HOST)
                _set_env(container, "RAY_IP", LOCAL_HOST)
            _set_env(container, "RAY_AUTH_MODE", "token")
            _set_env(container, "RAY_AUTH_TOKEN", source=auth)
            if head:
                _set_env(container, "DASHBOARD_METRIC_PORT", str(cluster.dashboard_metrics))
                _set_env(container, "AUTOSCALER_METRIC_PORT", str(cluster.autoscaler_metrics))
        for port in container.get("ports") or []:
            port["containerPort"] = _map_port(port.get("containerPort"), mapping)
        _adjust_probe(container.get("readinessProbe"), mapping)
        if is_ray:
            _quicken_readiness(container.get("readinessProbe"))
        _adjust_probe(container.get("livenessProbe"), mapping)
        _adjust_probe(container.get("startupProbe"), mapping)
    return out


@dataclass(frozen=True, slots=True)
class KubeApiAccess:
    """How a head pod's autoscaler reaches the local server's Kubernetes API (:mod:`kray.local.server.kube_api`)."""

    host: str
    port: int
    secret: str
    """The cluster's Secret holding ``token``, ``ca.crt`` and ``namespace``: its service-account volume."""


SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_VOLUME = "kray-kube-api-access"
_AUTOSCALER_COMMAND = re.compile(r"ray kuberay-autoscaler(?=\s|$)")


def _adjust_autoscaler(
    spec: dict[str, Any],
    container: dict[str, Any],
    *,
    cluster: ClusterPorts,
    kube_api: KubeApiAccess,
    auth: Mapping[str, Any],
) -> None:
    """KubeRay's autoscaler container, as the kubelet would run it in a pod of a service account, on this machine.

    What a kubelet gives every pod, it gets here: ``KUBERNETES_SERVICE_HOST``/``_PORT``/``_PORT_HTTPS`` (the
    local API) and the service-account volume (the cluster's token, the server's CA, the namespace). Ray's
    ``ray kuberay-autoscaler`` looks for the GCS at ``<node ip>:6379`` unless ``--gcs-address`` says otherwise,
    and serves its metrics on ``AUTOSCALER_METRIC_PORT`` (44217 on every address): both get the cluster's
    ports. It reaches the GCS with the cluster's token, as every Ray process does here.
    """

    def with_gcs(text: str) -> str:
        if "--gcs-address" in text:
            return text
        return _AUTOSCALER_COMMAND.sub(
            f"ray kuberay-autoscaler --gcs-address {LOCAL_HOST}:{cluster.gcs}", text, count=1
        )

    for key in ("command", "args"):
        container[key] = [with_gcs(part) for part in container.get(key) or []]
    for entry in container.get("env") or []:  # what an overridden command runs: ``$KUBERAY_GEN_AUTOSCALER_START_CMD``
        if entry.get("name") == "KUBERAY_GEN_AUTOSCALER_START_CMD" and "value" in entry:
            entry["value"] = with_gcs(str(entry["value"]))
    _set_env(container, "KUBERNETES_SERVICE_HOST", kube_api.host)
    _set_env(container, "KUBERNETES_SERVICE_PORT", str(kube_api.port))
    _set_env(container, "KUBERNETES_SERVICE_PORT_HTTPS", str(kube_api.port))
    _set_env(container, "AUTOSCALER_METRIC_PORT", str(cluster.autoscaler_metrics))
    _set_env(container, "RAY_AUTH_MODE", "token")
    _set_env(container, "RAY_AUTH_TOKEN", source=auth)
    mounts = container.setdefault("volumeMounts", [])
    if not any(mount.get("mountPath") == SERVICE_ACCOUNT_PATH for mount in mounts):
        mounts.append({"name": SERVICE_ACCOUNT_VOLUME, "mountPath": SERVICE_ACCOUNT_PATH, "readOnly": True})
        volumes = spec.setdefault("volumes", [])
        if not any(volume.get("name") == SERVICE_ACCOUNT_VOLUME for volume in volumes):
            volumes.append({"name": SERVICE_ACCOUNT_VOLUME, "secret": {"secretName": kube_api.secret}})


_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh"})


def _without_login(command: list[str]) -> list[str]:
    """``bash -lc SCRIPT`` → ``bash -c SCRIPT``: a login shell reads the profile of its image (a Ray image's puts
    its Python on PATH); here that is the host's ``/etc/profile``, which resets PATH and so loses the environment
    that runs every pod (``ray: command not found``). Without ``-l`` the shell keeps the pod's PATH."""
    if not command or command[0].rsplit("/", 1)[-1] not in _SHELLS:
        return list(command)
    out = [command[0]]
    for index, word in enumerate(command[1:], start=1):
        if word == "--login":
            continue
        if word.startswith("-") and not word.startswith("--") and "l" in word:
            flags = word[1:].replace("l", "")
            if flags:
                out.append("-" + flags)
            continue
        if not word.startswith("-"):
            return out + list(command[index:])  # the script and its arguments stay as they are
        out.append(word)
    return out


def _is_kuberay_autoscaler(container: Mapping[str, Any]) -> bool:
    """The container KubeRay's builder adds for ``enableInTreeAutoscaling`` (whatever ``autoscalerOptions``
    replaced: its name and its ``KUBERAY_GEN_AUTOSCALER_START_CMD`` stay)."""
    env = {e.get("name") for e in container.get("env") or ()}
    return container.get("name") == "autoscaler" and "KUBERAY_GEN_AUTOSCALER_START_CMD" in env


KUBERAY_READINESS_TIMING = {"initialDelaySeconds": 10, "periodSeconds": 5, "failureThreshold": 10}
LOCAL_READINESS_TIMING = {"initialDelaySeconds": 1}
"""Only the first attempt comes sooner: until it first succeeds local mode tries a readiness probe every second
(``RunnerSettings.readiness_until_ready``), then at KubeRay's 5 s with its 10 failures."""
_WAIT_GCS_SLEEP = re.compile(r"(\n\s*)sleep 5(\n)")


def _quicken_readiness(probe: dict[str, Any] | None) -> None:
    """KubeRay's injected readiness timing → a machine's (same failure window); any other probe stays."""
    if probe and all(probe.get(key) == value for key, value in KUBERAY_READINESS_TIMING.items()):
        probe.update(LOCAL_READINESS_TIMING)


_QUIET_HEALTH_CHECK = re.compile(r"if ray health-check --address (\S+):(\d+) > /dev/null 2>&1; then")


def _quicken_wait_gcs(text: str) -> str:
    """The ``wait-gcs-ready`` loop polls every second (the GCS of a local head is up in seconds), and its quiet
    ``ray health-check`` (a Python process importing Ray: 3 s of CPU on this kind of machine) runs only once the
    GCS port accepts a connection -- bash's ``/dev/tcp`` costs nothing -- so a worker that starts beside its head
    checks once instead of once a second while the head starts, on the cores the head needs."""
    quick = _WAIT_GCS_SLEEP.sub(r"\1sleep 1\2", text, count=1)
    return _QUIET_HEALTH_CHECK.sub(
        r"if (exec 3<>/dev/tcp/\1/\2) 2>/dev/null && ray health-check --address \1:\2 > /dev/null 2>&1; then",
        quick,
        count=1,
    )


def _retarget_health_check(text: str, cluster: ClusterPorts) -> str:
    """The wait-gcs-ready loop checks ``<fqdn>:<port>``; locally the head is 127.0.0.1."""
    return re.sub(r"--address\s+\S+:\d+", f"--address {LOCAL_HOST}:{cluster.gcs}", text)


def adjust_head_service(service: Mapping[str, Any], *, cluster: ClusterPorts) -> dict[str, Any]:
    """The head Service with the cluster's local ports as target ports (so status.endpoints are true)."""
    out = copy.deepcopy(dict(service))
    mapping = _port_mapping(cluster, cluster.head_node)
    for port in (out.get("spec") or {}).get("ports") or []:
        for key in ("port", "targetPort"):
            port[key] = _map_port(port.get(key), mapping)
    return out
