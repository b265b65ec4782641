"""The ``ray start`` line: flag rendering, defaults, forced params, resource-derived params, container command."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kray._ray.start import (
    NodeType,
    RayPorts,
    bash_command,
    container_command,
    head_port,
    is_gpu_resource_key,
    ray_start_line,
    ray_start_params,
    render_flags,
)

HEAD_ADDRESS = "c-head-svc.default.svc.cluster.local:6379"


def params(node: NodeType = NodeType.HEAD, user: dict[str, str] | None = None, **kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("container_resources", None)
    return ray_start_params(node_type=node, params=user, head_address=HEAD_ADDRESS, **kwargs)


def test_spec_example_head_command() -> None:
    resources = {"limits": {"cpu": "1", "memory": "5Gi"}, "requests": {"cpu": "1", "memory": "5Gi"}}
    line = ray_start_line(node_type=NodeType.HEAD, params=params(container_resources=resources))
    assert line == (
        "ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0"
        "  --memory=5368709120  --metrics-export-port=8080  --num-cpus=1 "
    )


@pytest.mark.parametrize(
    ("given_params", "flags"),
    [
        ({"a": "true"}, " --a "),
        ({"a": "True"}, " --a "),
        ({"a": "false"}, ""),
        ({"a": "FALSE"}, ""),
        ({"log-color": "false"}, " --log-color=false "),
        ({"include-dashboard": "false"}, " --include-dashboard=false "),
        ({"include-log-monitor": "false"}, " --include-log-monitor=false "),
        ({"log-color": "true"}, " --log-color=true "),
        ({"num-cpus": "2"}, " --num-cpus=2 "),
        ({"resources": "'{\"a\":1}'"}, " --resources='{\"a\":1}' "),
        ({"b": "1", "a": "2"}, " --a=2  --b=1 "),
        ({"x": ""}, " --x= "),
    ],
)
def test_render_flags(given_params: dict[str, str], flags: str) -> None:
    assert render_flags(given_params) == flags


@pytest.mark.parametrize(("node", "prefix"), [(NodeType.HEAD, "ray start --head "), (NodeType.WORKER, "ray start ")])
def test_line_prefix(node: NodeType, prefix: str) -> None:
    assert ray_start_line(node_type=node, params={"block": "true"}) == prefix + " --block "


def test_head_defaults() -> None:
    assert params() == {
        "dashboard-host": "0.0.0.0",
        "metrics-export-port": "8080",
        "block": "true",
        "dashboard-agent-listen-port": "52365",
    }


def test_worker_defaults() -> None:
    assert params(NodeType.WORKER) == {
        "address": HEAD_ADDRESS,
        "metrics-export-port": "8080",
        "block": "true",
        "dashboard-agent-listen-port": "52365",
    }


def test_user_values_win_over_defaults_but_block_is_forced() -> None:
    user = {
        "dashboard-host": "127.0.0.1",
        "metrics-export-port": "9000",
        "dashboard-agent-listen-port": "1",
        "block": "false",
        "address": "x:1",
    }
    assert params(NodeType.WORKER, user) == {**user, "block": "true"}
    assert params(NodeType.HEAD, user)["dashboard-host"] == "127.0.0.1"


def test_ports_come_from_options() -> None:
    ports = RayPorts(metrics=18080, dashboard_agent=15000)
    result = params(ports=ports)
    assert (result["metrics-export-port"], result["dashboard-agent-listen-port"]) == ("18080", "15000")


def test_forced_params_overwrite() -> None:
    assert params(user={"no-monitor": "false"}, forced={"no-monitor": "true"})["no-monitor"] == "true"


def test_input_is_not_mutated() -> None:
    user = {"num-cpus": "1"}
    params(user=user, container_resources={"limits": {"memory": "1Gi"}})
    assert user == {"num-cpus": "1"}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"limits": {"cpu": "500m"}}, {"num-cpus": "1"}),
        ({"limits": {"cpu": "2500m"}}, {"num-cpus": "3"}),
        ({"limits": {"cpu": 2}}, {"num-cpus": "2"}),
        ({"requests": {"cpu": "1500m"}}, {"num-cpus": "2"}),
        ({"limits": {"cpu": "0"}, "requests": {"cpu": "3"}}, {"num-cpus": "3"}),
        ({"limits": {"cpu": "4"}, "requests": {"cpu": "3"}}, {"num-cpus": "4"}),
        ({"limits": {"memory": "2Gi"}}, {"memory": str(2 * 2**30)}),
        ({"limits": {"memory": "1G"}}, {"memory": "1000000000"}),
        ({"requests": {"memory": "2Gi"}}, {}),
        ({"limits": {"nvidia.com/gpu": "2"}}, {"num-gpus": "2"}),
        ({"limits": {"amd.com/gpu": "1", "nvidia.com/gpu": "2"}}, {"num-gpus": "1"}),
        ({"limits": {"nvidia.com/gpu": "0"}}, {}),
        ({"limits": {"nvidia.com/mig-1g.5gb": "1"}}, {"num-gpus": "1"}),
        ({"requests": {"nvidia.com/gpu": "1"}}, {}),
        ({"limits": {"google.com/tpu": "4"}}, {"resources": "'{\"TPU\":4}'"}),
        ({"limits": {"aws.amazon.com/neuroncore": "2"}}, {"resources": "'{\"neuron_cores\":2}'"}),
        (
            {"limits": {"aws.amazon.com/neuroncore": "2", "google.com/tpu": "4"}},
            {"resources": "'{\"neuron_cores\":2}'"},
        ),
    ],
)
def test_resource_derived_params(resources: dict[str, Any], expected: dict[str, str]) -> None:
    result = params(container_resources=resources)
    derived = {k: v for k, v in result.items() if k in ("num-cpus", "memory", "num-gpus", "resources")}
    assert derived == expected


def test_resource_params_only_when_absent() -> None:
    user = {"num-cpus": "0", "memory": "1", "num-gpus": "0"}
    resources = {"limits": {"cpu": "8", "memory": "8Gi", "nvidia.com/gpu": "1"}}
    result = params(user=user, container_resources=resources)
    assert {k: result[k] for k in user} == user


def test_tpu_is_merged_into_existing_resources() -> None:
    result = params(user={"resources": "'{\"custom\": 1}'"}, container_resources={"limits": {"google.com/tpu": "4"}})
    assert result["resources"] == '\'{"TPU":4,"custom":1}\''


def test_existing_tpu_resource_is_kept() -> None:
    user = {"resources": '"{\\"TPU\\": 8}"'.replace("\\", "")}
    result = params(user=user, container_resources={"limits": {"google.com/tpu": "4"}})
    assert result["resources"] == user["resources"]


def test_unreadable_resources_json_skips_all_accelerators() -> None:
    user = {"resources": "not json"}
    result = params(user=user, container_resources={"limits": {"nvidia.com/gpu": "1", "google.com/tpu": "4"}})
    assert "num-gpus" not in result
    assert result["resources"] == "not json"


def test_group_resources_override_everything() -> None:
    group = {"CPU": "3", "memory": "1Gi", "nvidia.com/gpu": "2", "Custom": "1.5", "bad": "x"}
    user = {"num-cpus": "1", "memory": "5", "num-gpus": "0", "resources": "'{\"old\":1}'"}
    result = params(user=user, group_resources=group, container_resources={"limits": {"cpu": "8"}})
    assert result["num-cpus"] == "3"
    assert result["memory"] == str(2**30)
    assert result["num-gpus"] == "2"
    assert result["resources"] == "'{\"Custom\":1.5}'"


def test_group_labels() -> None:
    assert params(group_labels={"zone": "a", "accelerator": "v4"})["labels"] == "accelerator=v4,zone=a"


@pytest.mark.parametrize(
    ("key", "gpu"),
    [
        ("nvidia.com/gpu", True),
        ("amd.com/gpu", True),
        ("gpu", True),
        ("nvidia.com/mig-1g.5gb", True),
        ("nvidia.com/mig-3g.40gb", True),
        ("nvidia.com/mig-1g", False),
        ("google.com/tpu", False),
        ("cpu", False),
    ],
)
def test_gpu_keys(key: str, gpu: bool) -> None:
    assert is_gpu_resource_key(key) is gpu


def test_head_port() -> None:
    assert head_port(None) == "6379"
    assert head_port({"port": "6380"}) == "6380"
    assert head_port({}, ports=RayPorts(gcs=7000)) == "7000"


GENERATED = "ray start --head  --block "
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; "


@pytest.mark.parametrize(
    ("command", "args", "overwrite", "expected"),
    [
        (None, None, False, (["/bin/bash", "-c", "--"], [ULIMIT + GENERATED])),
        (["echo 123"], ["456"], False, (["/bin/bash", "-c", "--"], [" echo 123  456  && " + ULIMIT + GENERATED])),
        (["sleep"], None, False, (["/bin/bash", "-c", "--"], [" sleep  && " + ULIMIT + GENERATED])),
        (None, ["pip install x"], False, (["/bin/bash", "-c", "--"], [" pip install x  && " + ULIMIT + GENERATED])),
        (["/bin/bash", "-c"], ["ray start --head"], False, None),
        (["ray start --head --block"], None, False, None),
        (["/bin/bash"], ["-c", "echo"], True, None),
    ],
)
def test_container_command(
    command: list[str] | None, args: list[str] | None, overwrite: bool, expected: tuple[list[str], list[str]] | None
) -> None:
    assert container_command(command=command, args=args, start_line=GENERATED, overwrite=overwrite) == expected


def test_login_shell() -> None:
    result = container_command(command=None, args=None, start_line=GENERATED, overwrite=False, login_shell=True)
    assert result is not None
    assert result[0] == ["/bin/bash", "-lc", "--"]
    assert bash_command(options="e", login_shell=True) == ["/bin/bash", "-lce", "--"]
    assert bash_command(options="e") == ["/bin/bash", "-ce", "--"]


_KEYS = st.sampled_from(
    ["num-cpus", "block", "port", "log-color", "include-dashboard", "no-monitor", "address", "object-store-memory"]
)
_VALUES = st.one_of(st.sampled_from(["true", "false", "True", "1", "0"]), st.text("abc123=-.", max_size=5))


@given(user=st.dictionaries(_KEYS, _VALUES), node=st.sampled_from(list(NodeType)))
def test_flags_are_sorted_and_block_is_always_present(user: dict[str, str], node: NodeType) -> None:
    final = params(node, user)
    flags = render_flags(final).split()
    names = [flag[2:].split("=", 1)[0] for flag in flags]
    assert names == sorted(names)
    assert "--block" in flags
    assert ray_start_line(node_type=node, params=final).startswith(
        "ray start --head " if node == "head" else "ray start "
    )
