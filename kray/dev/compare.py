"""Compare what two operators made of the same manifests: normalise, then diff — the differential judge.

Why: kray claims to do what KubeRay's operator does. Golden files written from kray's own output can
only pin what kray already does; running KubeRay's operator beside kray on one control plane, each in
its own namespace, and diffing every object each one created is an independent judge. This module is
the pure half (no I/O): it turns two snapshots into a list of :class:`Difference`, and matches them
against the documented deliberate ones.

Normalisation hides only what two runs of the *same* operator would also differ in — generated name
suffixes (KubeRay's alphabet ``bcdfghjklmnpqrstvwxz2456789``), uids, resourceVersions, timestamps,
IPs, the namespace, and what the apiserver and its controllers add (``kube-api-access-*`` volumes,
Job ``controller-uid`` labels, allocated cluster IPs, managedFields). A comparison of KubeRay's
operator with itself in two namespaces must find nothing (the suite tests that), which proves the
normalisation hides nothing real.

Lists of named items (containers, env, volumes, ports, mounts, conditions) are compared by name,
so one extra env var is one difference, not a shifted list.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GENERATED = re.compile(r"(?<=-)[bcdfghjklmnpqrstvwxz2456789]{5}(?![a-z0-9])")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NODE_PORTS = range(30000, 32768)
"""The apiserver's default NodePort range: numbers it allocates, not ones an operator chose."""
IPV4 = re.compile(r"(?<![\d.])(\d{1,3}\.){3}\d{1,3}(?![\d.])")
API_ACCESS = re.compile(r"^kube-api-access-[a-z0-9]{5}$")
NAMESPACE_TOKEN = "<ns>"

_DROP_META = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink", "generation")
_JOB_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name")
_JOB_POD_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")  # set on a Job's pods by the Job controller
_NAME_KEYS = ("name", "type", "containerPort", "mountPath", "key")


@dataclass(frozen=True, slots=True)
class Difference:
    """One field on which the two operators disagree (``None``: absent on that side)."""

    case: str
    kind: str
    name: str
    path: str
    kuberay: Any
    kray: Any

    def line(self) -> str:
        values = f"KubeRay {_short(self.kuberay)} | kray {_short(self.kray)}"
        return f"{self.case}: {self.kind}/{self.name}: {self.path}: {values}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "(absent)"
    return text if len(text) <= 240 else text[:237] + "..."


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one operator made in its namespace: objects by kind, CR statuses, Event reasons."""

    namespace: str
    objects: Mapping[str, Sequence[Mapping[str, Any]]]
    events: Sequence[Mapping[str, Any]] = ()


# ---- normalisation ----------------------------------------------------------------------------------
def _scrub_string(text: str, namespace: str) -> str:
    if namespace:
        text = re.sub(rf"(?<![a-z0-9-]){re.escape(namespace)}(?![a-z0-9-])", NAMESPACE_TOKEN, text)
    text = TIMESTAMP.sub("<time>", text)
    text = UID.sub("<uid>", text)
    text = IPV4.sub("<ip>", text)
    return GENERATED.sub("<rand>", text)


def _scrub(value: Any, namespace: str) -> Any:
    if isinstance(value, str):
        return _scrub_string(value, namespace)
    if isinstance(value, list):
        return [_scrub(v, namespace) for v in value]
    if isinstance(value, dict):
        return {_scrub_string(k, namespace): _scrub(v, namespace) for k, v in value.items()}
    return value


def _strip_apiserver(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Remove what the apiserver and Kubernetes' controllers add, which no operator decides."""
    meta = obj.setdefault("metadata", {})
    for key in _DROP_META:
        meta.pop(key, None)
    meta.pop("namespace", None)
    for ref in meta.get("ownerReferences") or ():
        ref.pop("uid", None)
    annotations = meta.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if not annotations:
        meta.pop("annotations", None)
    if kind == "Pod":
        obj.pop("status", None)
        for key in _JOB_POD_LABELS:
            (meta.get("labels") or {}).pop(key, None)
        _strip_pod_spec(obj.get("spec") or {})
    elif kind == "Service":
        obj.pop("status", None)
        spec = obj.get("spec") or {}
        for port in spec.get("ports") or ():
            if port.get("nodePort") in NODE_PORTS:
                port["nodePort"] = "<nodePort>"
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        elif spec.get("clusterIPs") == ["None"]:
            spec.pop("clusterIPs", None)
    elif kind == "Job":
        obj.pop("status", None)
        spec = obj.get("spec") or {}
        for labels in (
            meta.get("labels") or {},
            ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {},
        ):
            for key in _JOB_LABELS:
                labels.pop(key, None)
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        for key in _JOB_LABELS:
            match.pop(key, None)
        if not match:
            spec.pop("selector", None)
        _strip_pod_spec((spec.get("template") or {}).get("spec") or {})
    return obj


def _strip_pod_spec(spec: dict[str, Any]) -> None:
    spec.pop("nodeName", None)
    volumes = [v for v in spec.get("volumes") or () if not API_ACCESS.match(str(v.get("name", "")))]
    if "volumes" in spec:
        spec["volumes"] = volumes
    for group in ("containers", "initContainers"):
        for container in spec.get(group) or ():
            mounts = [m for m in container.get("volumeMounts") or () if not API_ACCESS.match(str(m.get("name", "")))]
            if "volumeMounts" in container:
                container["volumeMounts"] = mounts


def normalise(kind: str, obj: Mapping[str, Any], *, namespace: str) -> dict[str, Any]:
    clean = _strip_apiserver(kind, json.loads(json.dumps(obj)))
    return dict(_scrub(clean, namespace))


def normalise_status(status: Mapping[str, Any] | None, *, namespace: str) -> dict[str, Any]:
    """A CR's status as compared: conditions by type with status and reason only; times and IPs hidden."""
    out = dict(_scrub(json.loads(json.dumps(status or {})), namespace))
    out.pop("observedGeneration", None)
    endpoints = out.get("endpoints")
    if isinstance(endpoints, dict):  # a NodePort head Service reports the ports the apiserver allocated
        out["endpoints"] = {
            k: "<nodePort>" if str(v).isdigit() and int(v) in NODE_PORTS else v for k, v in endpoints.items()
        }
    conditions = out.pop("conditions", None)
    if conditions:
        out["conditions"] = {c.get("type"): {"status": c.get("status"), "reason": c.get("reason")} for c in conditions}
    return out


# ---- diffing ----------------------------------------------------------------------------------------
def _keyed(items: list[Any]) -> dict[str, Any] | None:
    """A list of dicts as a dict keyed by their identifying field (None: not such a list)."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in _NAME_KEYS:
        names = [i.get(key) for i in items]
        if all(isinstance(n, str | int) for n in names) and len(set(names)) == len(names):
            return {f"{key}={n}": i for n, i in zip(names, items, strict=True)}
    return None


def diff_values(left: Any, right: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Leaf-level differences between two JSON values: ``(path, left, right)``."""
    if isinstance(left, dict) and isinstance(right, dict):
        out = []
        for key in sorted(set(left) | set(right), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in left:
                out.append((sub, None, right[key]))
            elif key not in right:
                out.append((sub, left[key], None))
            else:
                out.extend(diff_values(left[key], right[key], sub))
        return out
    if isinstance(left, list) and isinstance(right, list):
        kl, kr = _keyed(left), _keyed(right)
        if kl is not None and kr is not None:
            return _diff_keyed(kl, kr, path)
        if len(left) == len(right):
            return [
                d for i, (a, b) in enumerate(zip(left, right, strict=True)) for d in diff_values(a, b, f"{path}[{i}]")
            ]
        return [(path, left, right)]
    return [] if left == right else [(path, left, right)]


def _diff_keyed(left: dict[str, Any], right: dict[str, Any], path: str) -> list[tuple[str, Any, Any]]:
    out = []
    for key in sorted(set(left) | set(right)):
        sub = f"{path}[{key}]"
        if key not in left:
            out.append((sub, None, right[key]))
        elif key not in right:
            out.append((sub, left[key], None))
        else:
            out.extend(diff_values(left[key], right[key], sub))
    return out


def _group(objects: Iterable[Mapping[str, Any]], *, kind: str, namespace: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in objects:
        clean = normalise(kind, obj, namespace=namespace)
        groups[str((clean.get("metadata") or {}).get("name", ""))].append(clean)
    for items in groups.values():
        items.sort(key=lambda o: json.dumps(o, sort_keys=True))
    return groups


def compare(case: str, kuberay: Snapshot, kray: Snapshot) -> list[Difference]:
    """Every difference between the two snapshots (objects, statuses, Event reasons)."""
    out: list[Difference] = []
    for kind in sorted(set(kuberay.objects) | set(kray.objects)):
        left = _group(kuberay.objects.get(kind, ()), kind=kind, namespace=kuberay.namespace)
        right = _group(kray.objects.get(kind, ()), kind=kind, namespace=kray.namespace)
        for name in sorted(set(left) | set(right)):
            a, b = left.get(name, []), right.get(name, [])
            if len(a) != len(b):
                out.append(Difference(case, kind, name, "(count)", len(a), len(b)))
            for x, y in zip(a, b, strict=False):
                out.extend(Difference(case, kind, name, p, va, vb) for p, va, vb in diff_values(x, y))
    out.extend(_event_differences(case, kuberay, kray))
    return out


def event_reasons(snapshot: Snapshot) -> set[tuple[str, str, str]]:
    """(involved kind, normalised involved name, reason) of every Event the operator recorded."""
    reasons = set()
    for event in snapshot.events:
        involved = event.get("involvedObject") or event.get("regarding") or {}
        name = _scrub_string(str(involved.get("name", "")), snapshot.namespace)
        reasons.add((str(involved.get("kind", "")), name, str(event.get("reason", ""))))
    return reasons


def _event_differences(case: str, kuberay: Snapshot, kray: Snapshot) -> list[Difference]:
    left, right = event_reasons(kuberay), event_reasons(kray)
    out = [Difference(case, "Event", f"{k}/{n}", f"reason={r}", r, None) for k, n, r in sorted(left - right)]
    out += [Difference(case, "Event", f"{k}/{n}", f"reason={r}", None, r) for k, n, r in sorted(right - left)]
    return out


# ---- the documented deliberate differences ----------------------------------------------------------
def glob(pattern: str, text: str) -> bool:
    """``*`` matches any run of characters, ``{a,b}`` either word; everything else (brackets too) is literal."""
    regex = "".join(
        "(?:" + "|".join(_literal(w) for w in part[1:-1].split(",")) + ")"
        if _ALTERNATIVES.fullmatch(part)
        else _literal(part)
        for part in _ALTERNATIVES.split(pattern)
    )
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


_ALTERNATIVES = re.compile(r'(\{[\w.\-()"]+(?:,[\w.\-()"]+)+\})')


def _literal(part: str) -> str:
    return ".*".join(re.escape(piece) for piece in part.split("*"))


@dataclass(frozen=True, slots=True)
class Deliberate:
    """A documented difference: which fields (glob patterns) and optionally which values, and why."""

    id: str
    why: str
    kind: str = "*"
    name: str = "*"
    path: str = "*"
    case: str = "*"
    kuberay: str | None = None
    kray: str | None = None
    sometimes: bool = False
    """KubeRay's own nondeterminism (e.g. which worker its scale-down picks): it may or may not show in a
    run, so it is exempt from the "still seen" check, and it also explains KubeRay-vs-KubeRay differences."""
    rewrite: tuple[tuple[str, str], ...] = ()
    """Substitutions that turn KubeRay's value into kray's: with them, the values must then be equal
    (so an entry for one changed prefix cannot hide another change in the same string)."""

    def matches(self, difference: Difference) -> bool:
        checks = ((self.kind, difference.kind), (self.name, difference.name), (self.path, difference.path),
                  (self.case, difference.case))  # fmt: skip
        if not all(glob(pattern, value) for pattern, value in checks):
            return False
        for pattern, value in ((self.kuberay, difference.kuberay), (self.kray, difference.kray)):
            if pattern is not None and not glob(pattern, _short(value)):
                return False
        if self.rewrite:
            text = json.dumps(difference.kuberay, sort_keys=True)
            for old, new in self.rewrite:
                text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
            return text == json.dumps(difference.kray, sort_keys=True)
        return True


@dataclass(frozen=True, slots=True)
class Verdict:
    unexplained: list[Difference] = field(default_factory=list)
    unused: list[Deliberate] = field(default_factory=list)
    explained: dict[str, list[Difference]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.unexplained and not self.unused


def judge(differences: Iterable[Difference], deliberate: Sequence[Deliberate]) -> Verdict:
    """Every difference must be on the list, and every entry of the list must still be seen."""
    explained: dict[str, list[Difference]] = {d.id: [] for d in deliberate}
    unexplained = []
    for difference in differences:
        entry = next((d for d in deliberate if d.matches(difference)), None)
        if entry is None:
            unexplained.append(difference)
        else:
            explained[entry.id].append(difference)
    unused = [d for d in deliberate if not explained[d.id] and not d.sometimes]
    return Verdict(unexplained=unexplained, unused=unused, explained=explained)


def judge_self(differences: Iterable[Difference], deliberate: Sequence[Deliberate]) -> Verdict:
    """Two runs of one operator: its nondeterminism (``sometimes`` entries) may fall either way round.

    The second run stands in the ``kray`` field, so an entry written for KubeRay against kray (an
    event KubeRay sometimes records and kray never does) also explains the mirror image: the first
    run without the event, the second with it.
    """
    sometimes = [d for d in deliberate if d.sometimes]

    def explained(difference: Difference) -> bool:
        mirrored = dataclasses.replace(difference, kuberay=difference.kray, kray=difference.kuberay)
        return any(entry.matches(difference) or entry.matches(mirrored) for entry in sometimes)

    return Verdict(unexplained=[d for d in differences if not explained(d)])


def load_deliberate(entries: Iterable[Mapping[str, Any]]) -> list[Deliberate]:
    known = set(Deliberate.__dataclass_fields__)
    out = []
    for i, entry in enumerate(entries):
        unknown = set(entry) - known
        if unknown or "id" not in entry or "why" not in entry:
            raise ValueError(f"deliberate difference #{i}: needs id and why; unknown keys {sorted(unknown)}")
        fields = {k: str(v) for k, v in entry.items() if k not in {"rewrite", "sometimes"}}
        rewrite = entry.get("rewrite") or []
        if not all(isinstance(pair, list | tuple) and len(pair) == 2 for pair in rewrite):
            raise ValueError(f"deliberate difference {entry['id']}: rewrite must be a list of [from, to] pairs")
        sometimes = entry.get("sometimes", False)
        if not isinstance(sometimes, bool):
            raise ValueError(f"deliberate difference {entry['id']}: sometimes must be true or false")
        out.append(Deliberate(**fields, sometimes=sometimes, rewrite=tuple((str(a), str(b)) for a, b in rewrite)))
    return out
