"""Hypothesis strategies for malformed RayCluster/RayJob custom resources, each with the field path it breaks.

Why: the operator must answer any custom resource, however broken, with an Event or a status naming the
broken field -- never a crashed worker or a stuck queue. To check "naming the field" the generator has to
know where it broke the manifest, so every example is a valid seed (one of KubeRay's samples) with ONE
mutation at a known path, rendered in kray's path syntax (``spec.workerGroupSpecs[0].minReplicas``,
``spec.headGroupSpec.rayStartParams[num-cpus]`` for map keys).

Two families:

* :func:`unchecked_crs` -- what only a CRD with validation off admits: wrong JSON types, nulls, missing
  required fields, unknown fields, invalid enum values, out-of-range integers, huge and odd strings,
  deep nesting, a spec that is not an object; one in six also gets a garbage ``status``.
* :func:`schema_valid_crs` -- what the published (strict) CRDs admit but KubeRay's rules refuse:
  minReplicas > maxReplicas, negative counts, invalid label keys, a bad runtimeEnvYAML, ...

The schema is kray's own (:func:`kray.api.crd.crd`), the one ``kray crds`` publishes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from kray.api.crd import crd
from kray.api.manifest import Document, validate_document

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "kuberay-samples"
KINDS = ("RayCluster", "RayJob")
Part = str | int


@dataclass(frozen=True, slots=True)
class BadCR:
    """One malformed custom resource: ``manifest`` (no metadata.name yet) and the path it breaks."""

    kind: str
    manifest: dict[str, Any]
    path: str
    mutation: str
    seed: str
    name_template: str = "{}"
    """How the CR's name is made from a unique stem (``{}.x``: a name KubeRay refuses)."""
    status: Any = None
    """Written through the status subresource after the create (None: left alone)."""


@cache
def schema(kind: str) -> dict[str, Any]:
    found: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return found


@cache
def seeds() -> tuple[tuple[str, str, str], ...]:
    """(sample file, kind, manifest as YAML) of every sample kray accepts and the operator would manage."""
    found = []
    for file in sorted(SAMPLES.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(file.read_text())):
            if not (isinstance(doc, dict) and doc.get("apiVersion") == "ray.io/v1" and doc.get("kind") in KINDS):
                continue
            if (doc.get("spec") or {}).get("managedBy") or not validate_document(Document(file.name, index, doc)).ok:
                continue
            meta = doc.get("metadata") or {}
            doc["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
            found.append((file.name, doc["kind"], yaml.safe_dump(doc)))
    if len(found) < 20:
        raise AssertionError(f"only {len(found)} usable KubeRay samples in {SAMPLES}")
    return tuple(found)


def render_path(parts: tuple[Part, ...], kind: str) -> str:
    out = ""
    node: dict[str, Any] | None = schema(kind)
    for part in parts:
        properties = (node or {}).get("properties") or {}
        if isinstance(part, int):
            out += f"[{part}]"
            node = (node or {}).get("items")
        elif part in properties:
            out += f".{part}" if out else part
            node = properties[part]
        else:
            out += f"[{part}]"
            extra = (node or {}).get("additionalProperties")
            node = extra if isinstance(extra, dict) else None
    return out


def schema_at(kind: str, parts: tuple[Part, ...]) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema(kind)
    for part in parts:
        if node is None:
            return None
        if isinstance(part, int):
            node = node.get("items")
        elif part in (node.get("properties") or {}):
            node = node["properties"][part]
        else:
            extra = node.get("additionalProperties")
            node = extra if isinstance(extra, dict) else None
    return node


def typed(node: dict[str, Any] | None) -> str | None:
    """The JSON type a schema node insists on (None when it admits anything or several types)."""
    if node is None or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"):
        return None
    kind = node.get("type")
    if kind == "object" and not node.get("properties") and not isinstance(node.get("additionalProperties"), dict):
        return None  # a free-form object
    return kind if kind in {"string", "integer", "number", "boolean", "array", "object"} else None


def paths(node: Any, prefix: tuple[Part, ...] = ()) -> list[tuple[Part, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def get(manifest: Any, parts: tuple[Part, ...]) -> Any:
    for part in parts:
        manifest = manifest[part]
    return manifest


def put(manifest: Any, parts: tuple[Part, ...], value: Any) -> None:
    get(manifest, parts[:-1])[parts[-1]] = value


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


ODD_STRINGS = ["", " ", "\x00", "\u202eevil", "🙂" * 3, "null", "1e999", "${HOME}", "a\nb: [", "\\", "-1", "true",
               "next\x85line", "\u2028\u2029", "\r\n"]  # fmt: skip
"""Line ends JSON does not escape (U+0085) once cut a watch stream mid-object (see KubeStore._stream)."""
huge_strings = st.integers(1_000, 256_000).map(lambda n: "x" * n)
odd_strings = st.sampled_from(ODD_STRINGS) | st.text(max_size=20) | huge_strings
depths = st.integers(2, 60) | st.sampled_from([500, 2_000, 9_000])


def values_of_type(kind: str) -> st.SearchStrategy[Any]:
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "string": odd_strings,
        "integer": st.integers(-(2**40), 2**40),
        "number": st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
        "boolean": st.booleans(),
        "array": st.lists(st.integers() | st.text(max_size=5), max_size=3),
        "object": st.dictionaries(st.text("abcxyz", min_size=1, max_size=4), st.integers(), min_size=1, max_size=3),
    }
    return strategies[kind]


def wrong_values(expected: str) -> st.SearchStrategy[Any]:
    """A value of any JSON type but ``expected`` (an integer is a number too), or a deeply nested one (which
    may be of the expected type outside, and wrong further in)."""
    others = [k for k in ("string", "integer", "number", "boolean", "array", "object") if k != expected]
    if expected == "number":
        others.remove("integer")
    return st.one_of(*(values_of_type(k) for k in others)) | depths.map(nested)


@st.composite
def _seed(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> tuple[str, str, dict[str, Any]]:
    name, kind, text = draw(st.sampled_from([s for s in seeds() if s[1] in kinds]))
    return name, kind, yaml.safe_load(text)


def _spec_paths(manifest: dict[str, Any]) -> list[tuple[Part, ...]]:
    return [p for p in paths(manifest) if p[:1] == ("spec",) and p != ("spec", "managedBy")]


GARBAGE_STATUS = [
    "status", 7, [1, 2], True,
    {"conditions": "none"}, {"conditions": [7, None, {"type": 1, "status": "True", "lastTransitionTime": "noon"}]},
    {"conditions": [{"type": "RayClusterProvisioned", "status": "True", "lastTransitionTime": 5}]},
    {"state": ["ready"], "readyWorkerReplicas": "many", "endpoints": 3},
    {"jobDeploymentStatus": 5, "failed": "often", "startTime": "yesterday", "jobId": {"x": 1}},
    {"jobDeploymentStatus": "Running", "rayClusterName": ["a"], "dashboardURL": 1},
]  # fmt: skip
"""Statuses only a user with validation off writes (the operator's informers and metrics read them)."""


@st.composite
def unchecked_crs(draw: st.DrawFn) -> BadCR:
    """A sample broken in a way only a CRD without validation admits; one in six has a garbage status too."""
    cr = draw(_unchecked_spec())
    if draw(st.integers(0, 5)) == 0:
        return dataclasses.replace(cr, status=draw(st.sampled_from(GARBAGE_STATUS)))
    return cr


@st.composite
def _unchecked_spec(draw: st.DrawFn) -> BadCR:
    source, kind, manifest = draw(_seed())
    mutation = draw(
        st.sampled_from(["wrong_type"] * 4 + ["null", "drop_required", "unknown_field", "enum", "range", "spec"])
    )
    candidates = _spec_paths(manifest)
    if mutation == "spec":
        manifest["spec"] = draw(st.sampled_from(["spec", 7, 1.5, True, [], [{"headGroupSpec": {}}]]) | odd_strings)
        return BadCR(kind, manifest, "spec", "non-object spec", source)
    if mutation == "wrong_type":
        where = draw(st.sampled_from([p for p in candidates if typed(schema_at(kind, p))]))
        value = draw(wrong_values(typed(schema_at(kind, where)) or "object"))
        put(manifest, where, value)
        return BadCR(kind, manifest, render_path(where, kind), f"wrong type {type(value).__name__}", source)
    if mutation == "null":
        required = [p for p in candidates if len(p) > 1 and _required(kind, p)]
        where = draw(st.sampled_from(required or [("spec",)]))
        if where == ("spec",):
            manifest["spec"] = None
        else:
            put(manifest, where, None)
        return BadCR(kind, manifest, render_path(where, kind), "null", source)
    if mutation == "drop_required":
        required = [p for p in candidates if len(p) > 1 and _required(kind, p)]
        where = draw(st.sampled_from(required or [("spec",)]))
        del get(manifest, where[:-1])[where[-1]]
        return BadCR(kind, manifest, render_path(where, kind), "missing required field", source)
    if mutation == "unknown_field":
        objects = [p for p in candidates if (schema_at(kind, p) or {}).get("properties") and _is_dict(manifest, p)]
        where = draw(st.sampled_from(objects))
        known = list((schema_at(kind, where) or {})["properties"])
        typo = draw(st.sampled_from(known)).rstrip("s") + "x"
        key = draw(st.sampled_from([typo, "bogus", "k" * 5_000, "ключ", "a.b/c", "$ref"]))
        get(manifest, where)[key] = draw(st.none() | st.integers() | st.just({"x": 1}))
        return BadCR(kind, manifest, f"{render_path(where, kind)}.{key}", "unknown field", source)
    if mutation == "enum":
        enums = [p for p in _all_typed(kind, manifest, "string") if "enum" in (schema_at(kind, p) or {})]
        if not enums:
            enums = _addable_enums(kind, manifest)
            for where in enums:
                get(manifest, where[:-2]).setdefault(where[-2], {})
        where = draw(st.sampled_from(enums))
        allowed = schema_at(kind, where)["enum"]  # type: ignore[index]
        value = draw(
            (st.sampled_from(allowed).map(str.lower) | st.sampled_from(allowed).map(str.upper) | odd_strings).filter(
                lambda v: v not in allowed
            )
        )
        put(manifest, where, value)
        return BadCR(kind, manifest, render_path(where, kind), "invalid enum value", source)
    ints = _all_typed(kind, manifest, "integer")
    base = _cluster_spec_path(kind, manifest)
    grace: tuple[Part, ...] = (*(base or ()), "headGroupSpec", "template", "spec", "terminationGracePeriodSeconds")
    where = draw(st.sampled_from(ints or ([grace] if base else [("spec", "backoffLimit")])))
    node = schema_at(kind, where) or {}
    bound = 2**31 if node.get("format") == "int32" else 2**63
    value = draw(st.sampled_from([bound, -bound - 1, bound * 2**10, -(2**70)]))
    put(manifest, where, value)
    return BadCR(kind, manifest, render_path(where, kind), "integer out of range", source)


def _is_dict(manifest: Any, parts: tuple[Part, ...]) -> bool:
    return isinstance(get(manifest, parts), dict)


def _required(kind: str, parts: tuple[Part, ...]) -> bool:
    if isinstance(parts[-1], int):
        return False
    parent = schema_at(kind, parts[:-1]) or {}
    return parts[-1] in (parent.get("required") or ()) and parts[-1] in (parent.get("properties") or {})


def _all_typed(kind: str, manifest: dict[str, Any], json_type: str) -> list[tuple[Part, ...]]:
    return [p for p in _spec_paths(manifest) if typed(schema_at(kind, p)) == json_type]


def _addable_enums(kind: str, manifest: dict[str, Any]) -> list[tuple[Part, ...]]:
    """Enum fields the seed may leave unset (the caller adds their parent objects, left empty)."""
    base = _cluster_spec_path(kind, manifest)
    out: list[tuple[Part, ...]] = [("spec", "submissionMode")] if kind == "RayJob" else []
    if base is not None:
        out += [(*base, "upgradeStrategy", "type"), (*base, "authOptions", "mode")]
    return out


# ---- schema-valid, rule-violating ------------------------------------------------------------------------


def _cluster_spec_path(kind: str, manifest: dict[str, Any]) -> tuple[Part, ...] | None:
    if kind == "RayCluster":
        return ("spec",)
    return ("spec", "rayClusterSpec") if isinstance(manifest["spec"].get("rayClusterSpec"), dict) else None


@st.composite
def schema_valid_crs(draw: st.DrawFn) -> BadCR:
    """A sample the strict CRD still admits, with one value KubeRay's rules refuse."""
    source, kind, manifest = draw(_seed())
    base = _cluster_spec_path(kind, manifest)
    options = ["job"] if base is None else ["cluster"] * 3 + (["job"] * 2 if kind == "RayJob" else ["name"])
    family = draw(st.sampled_from(options))
    if family == "name":
        template = draw(st.sampled_from(["{}.dotted", "{}" + "-x" * 40, "{}.a.b.c"]))
        return BadCR(kind, manifest, "metadata.name", "name not a DNS-1035 label", source, template)
    if family == "job":
        return _job_rule(draw, source, manifest)
    assert base is not None
    spec = get(manifest, base)
    groups = spec.get("workerGroupSpecs") or []
    rules = ["head_containers", "rayversion"] + (["min_gt_max", "negative", "label_key", "start_labels",
                                                  "idle", "worker_containers"] * 2 if groups else [])  # fmt: skip
    rule = draw(st.sampled_from(rules))
    index = draw(st.integers(0, max(len(groups) - 1, 0)))
    group = (*base, "workerGroupSpecs", index)
    if rule == "head_containers":
        spec["headGroupSpec"]["template"].setdefault("spec", {})["containers"] = []
        where: tuple[Part, ...] = (*base, "headGroupSpec", "template", "spec", "containers")
    elif rule == "worker_containers":
        groups[index]["template"].setdefault("spec", {})["containers"] = []
        where = (*group, "template", "spec", "containers")
    elif rule == "rayversion":
        spec["authOptions"] = {"mode": "token"}
        spec["rayVersion"] = draw(st.sampled_from(["2.40.0", "not-a-version", "1", ""]))
        where = (*base, "rayVersion")
    elif rule == "min_gt_max":
        high = draw(st.integers(0, 100))
        groups[index].update(maxReplicas=high, minReplicas=high + draw(st.integers(1, 2**20)))
        groups[index]["replicas"] = high
        where = (*group, "minReplicas")
    elif rule == "negative":
        field = draw(st.sampled_from(["minReplicas", "maxReplicas"]))
        groups[index][field] = draw(st.integers(-(2**31), -1))
        where = (*group, field)
    elif rule == "label_key":
        key = draw(st.sampled_from(["bad key!", "-x", "a/b/c", "ünïcode", "k" * 64]))
        groups[index].setdefault("labels", {})[key] = "v"
        where = (*group, "labels", key)
    elif rule == "start_labels":
        groups[index].setdefault("rayStartParams", {})["labels"] = "a=b"
        where = (*group, "rayStartParams", "labels")
    else:
        groups[index]["idleTimeoutSeconds"] = draw(st.integers(-(2**31), -1))
        where = (*group, "idleTimeoutSeconds")
    return BadCR(kind, manifest, render_path(where, kind), rule, source)


def _job_rule(draw: st.DrawFn, source: str, manifest: dict[str, Any]) -> BadCR:
    spec = manifest["spec"]
    rule = draw(st.sampled_from(["ttl", "deadline", "backoff", "runtime_env", "no_cluster", "suspend"]))
    if rule == "ttl":
        spec.update(shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=draw(st.integers(-(2**31), -1)))
        field = "ttlSecondsAfterFinished"
    elif rule == "deadline":
        field = draw(st.sampled_from(["activeDeadlineSeconds", "preRunningDeadlineSeconds"]))
        spec[field] = draw(st.integers(-(2**31), 0))
    elif rule == "backoff":
        spec["backoffLimit"] = draw(st.integers(-(2**31), -1))
        field = "backoffLimit"
    elif rule == "runtime_env":
        spec["runtimeEnvYAML"] = draw(st.sampled_from(["pip: [", "- a\n- b", "42", "a: b\n  c: [", "{{{"]))
        field = "runtimeEnvYAML"
    elif rule == "no_cluster":
        spec.pop("rayClusterSpec", None)
        spec.pop("clusterSelector", None)
        field = "rayClusterSpec"
    else:
        spec.update(suspend=True, shutdownAfterJobFinishes=False)
        spec.pop("clusterSelector", None)
        field = "suspend"
    return BadCR("RayJob", manifest, f"spec.{field}", rule, source)


def with_name(cr: BadCR, *, name: str, namespace: str) -> dict[str, Any]:
    """The manifest to create: ``cr.manifest`` with metadata.name/namespace (a name mutation keeps its name)."""
    manifest = dict(cr.manifest)  # shallow: a deeply nested value must not be walked by copy.deepcopy
    metadata = dict(manifest.get("metadata") or {})
    metadata.update(name=cr.name_template.format(name), namespace=namespace)
    manifest.update(apiVersion="ray.io/v1", kind=cr.kind, metadata=metadata)
    return manifest
