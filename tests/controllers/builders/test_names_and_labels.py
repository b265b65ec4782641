"""Object names (KubeRay's shortening quirks) and the standard pod labels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kray._ray.start import NodeType
from kray.controllers.common import labels as keys
from kray.controllers.common import names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("raycluster", "raycluster"),
        ("a" * 50, "a" * 50),
        ("x" + "a" * 50, "a" * 50),
        ("1cluster", "rcluster"),
        ("-cluster", "rcluster"),
        (".cluster", "rcluster"),
        ("9" + "a" * 60, "a" * 50),
        ("b" * 10 + "-" + "a" * 49, "r" + "a" * 49),
        ("", ""),
    ],
)
def test_check_name(name: str, expected: str) -> None:
    assert names.check_name(name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ok-label", "ok-label"),
        ("_x", "rx"),
        ("1abc", "1abc"),
        ("z" * 70, "z" * 63),
        ("y" * 7 + "." + "z" * 62, "r" + "z" * 62),
    ],
)
def test_check_label(value: str, expected: str) -> None:
    assert names.check_label(value) == expected


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=120))
def test_checked_names_are_short_and_start_well(name: str) -> None:
    checked = names.check_name(name)
    assert len(checked) <= 50
    assert not checked[0].isdigit()
    assert checked[0] not in "-."
    assert checked[1:] == name[-len(checked) :][1:]


def test_pod_generate_names() -> None:
    assert names.head_pod_generate_name("my-cluster") == "my-cluster-head-"
    assert names.worker_pod_generate_name("my-cluster", "gpu-group") == "my-cluster-gpu-group-worker-"
    long = "c" * 60
    assert names.head_pod_generate_name(long) == "c" * 50 + "-head-"
    assert names.worker_pod_generate_name("c" * 45, "group") == "c" * 45 + "-grou-worker-"
    assert names.head_pod_generate_name("MyCluster") == "mycluster-head-"
    assert names.deterministic_head_pod_name("my-cluster") == "my-cluster-head"


def test_service_names() -> None:
    assert names.head_service_name("c") == "c-head-svc"
    assert names.head_service_name("c", override="custom") == "custom"
    # KubeRay stopped shortening Service names in v1.4: a 53-character cluster keeps its whole name.
    assert names.head_service_name("a" * 53) == "a" * 53 + "-head-svc"
    assert names.serve_service_name("a" * 53) == "a" * 53 + "-serve-svc"
    assert names.owner_head_service_name("j" * 47) == "j" * 47 + "-head-svc"
    assert names.headless_service_name("c") == "c-headless"
    assert names.serve_service_name("c") == "c-serve-svc"
    assert names.serve_service_label("c") == "c-serve"
    assert names.owner_head_service_name("job") == "job-head-svc"


def test_other_child_names() -> None:
    assert names.ingress_name("c") == "c-head-ingress"
    assert names.autoscaler_role_name("c") == "c"
    assert names.redis_cleanup_job_name("c") == "c-redis-cleanup"
    assert names.redis_cleanup_job_name("x" * 60) == ("x" * 60 + "-redis-cleanup")[-63:]
    assert names.replica_group_name("tpu", "b9q4r") == "tpu-b9q4r"


def test_fqdn() -> None:
    assert names.fqdn("c-head-svc", "ns") == "c-head-svc.ns.svc.cluster.local"
    assert names.fqdn("c-head-svc", "ns", cluster_domain="corp.example") == "c-head-svc.ns.svc.corp.example"
    assert names.service_from_fqdn("c-head-svc.ns.svc.cluster.local") == "c-head-svc"


def test_generated_names_take_the_suffix() -> None:
    assert names.rayjob_cluster_name("job", "b9q4r") == "job-b9q4r"
    assert names.rayjob_job_id("job", "x2x2x") == "job-x2x2x"
    assert names.rayjob_submitter_job_name("job") == "job"
    assert set(names.RANDOM_SUFFIX_ALPHABET) <= set("abcdefghijklmnopqrstuvwxyz0123456789")


def test_other_names() -> None:
    assert names.autoscaler_service_account_name("c") == "c"
    assert names.autoscaler_service_account_name("c", head_service_account="sa") == "sa"
    assert names.auth_secret_name("c") == "c"
    assert names.auth_secret_name("c", override="s") == "s"
    assert names.gcs_pvc_name("c") == "c-gcs-pvc"
    assert names.tls_secret_name("c", NodeType.WORKER) == "ray-worker-secret-c"


def test_standard_pod_labels() -> None:
    assert keys.pod_labels(node_type=NodeType.HEAD, cluster="c", group="headgroup") == {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": "c",
        "ray.io/node-type": "head",
        "ray.io/group": "headgroup",
        "ray.io/identifier": "c-head",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }


def test_user_labels_cannot_override_cluster_type_group() -> None:
    user = {
        "ray.io/cluster": "x",
        "ray.io/node-type": "head",
        "ray.io/group": "x",
        "ray.io/identifier": "mine",
        "app.kubernetes.io/name": "app",
        "team": "a",
    }
    labels = keys.pod_labels(node_type=NodeType.WORKER, cluster="c", group="g", user=user)
    assert labels["ray.io/cluster"] == "c"
    assert labels["ray.io/node-type"] == "worker"
    assert labels["ray.io/group"] == "g"
    assert labels["ray.io/identifier"] == "mine"
    assert labels["app.kubernetes.io/name"] == "app"
    assert labels["team"] == "a"


def test_identifier_label_is_checked() -> None:
    labels = keys.pod_labels(node_type=NodeType.WORKER, cluster="c" * 70, group="g")
    assert labels["ray.io/identifier"] == ("c" * 70 + "-worker")[-63:]


def test_originated_from() -> None:
    assert keys.originated_from(kind="RayJob", name="j") == {
        "ray.io/originated-from-cr-name": "j",
        "ray.io/originated-from-crd": "RayJob",
    }
