"""When the Serve config is PUT, and when a cluster is ready to serve.

Expected values from KubeRay's ``rayservice_controller.go``: ``checkIfNeedSubmitServeApplications``
(nothing cached / zero applications / changed config ⇒ PUT), ``getAndCheckServeStatus`` (ready iff ≥1
app and all RUNNING; app ``""`` reported as ``default``), ``updateServeDeployment`` (YAML → JSON,
cache only a non-empty config), ``reconcileServe`` (head not ready ⇒ no call; dashboard error ⇒ the
reconcile stops).
"""

from __future__ import annotations

import dataclasses

import pytest

from kray.controllers.rayservice.plan import Observed, PutServeConfig, plan
from kray.controllers.rayservice.plan.serve import app_statuses, is_ready, needs_submit
from tests.controllers.rayservice.support import (
    SERVE_CONFIG,
    T0,
    apps,
    cluster_for,
    kinds,
    serve_yaml,
    service,
)

ACTIVE = {"activeServiceStatus": {"rayClusterName": "demo-aaaaa"}}


def observed_active(config: str = SERVE_CONFIG, **view: object) -> Observed:
    svc = service(status=ACTIVE, serve_config=config)
    cluster = cluster_for(svc, "demo-aaaaa", **view)
    return Observed(
        service=svc,
        now=T0,
        clusters={"demo-aaaaa": cluster},
        head_service_cluster="demo-aaaaa",
        serve_service_cluster="demo-aaaaa",
    )


def puts(observed: Observed) -> list[PutServeConfig]:
    return [a for a in plan(observed).actions if isinstance(a, PutServeConfig)]


def test_nothing_cached_puts_the_config_as_json_and_caches_the_yaml() -> None:
    (put,) = puts(observed_active(serve_details=apps("RUNNING")))
    assert put.cluster == "demo-aaaaa"
    assert put.config == {"applications": [{"name": "fruit", "import_path": "fruit.app", "route_prefix": "/fruit"}]}
    assert put.cache_as == SERVE_CONFIG


def test_cached_and_unchanged_with_applications_puts_nothing() -> None:
    assert puts(observed_active(serve_details=apps("RUNNING"), cached_serve_config=SERVE_CONFIG)) == []


def test_head_that_lost_its_applications_gets_the_config_again() -> None:
    (put,) = puts(observed_active(serve_details={"applications": {}}, cached_serve_config=SERVE_CONFIG))
    assert put.cluster == "demo-aaaaa"


def test_changed_config_is_put_to_the_active_cluster_in_place() -> None:
    new = serve_yaml("fruit", "math")
    observed = observed_active(new, serve_details=apps("RUNNING"), cached_serve_config=SERVE_CONFIG)
    p = plan(observed)
    assert kinds(p) == ["PutServeConfig"]  # no new cluster: only the Serve config changed
    put = p.actions[0]
    assert isinstance(put, PutServeConfig)
    assert [a["name"] for a in put.config["applications"]] == ["fruit", "math"]


def test_no_call_and_no_put_while_the_head_is_not_ready() -> None:
    observed = observed_active(status={"state": ""}, serve_details=None)
    assert puts(observed) == []


def test_an_unreachable_dashboard_stops_the_reconcile_without_a_status_write() -> None:
    p = plan(observed_active(serve_error="connection refused"))
    assert p.status is None
    assert p.halted is not None
    assert "connection refused" in p.halted


def test_a_serve_config_that_is_not_yaml_stops_with_a_warning() -> None:
    p = plan(observed_active("applications: [", serve_details=apps("RUNNING")))
    assert p.status is None
    assert p.events[0][:2] == ("Warning", "FailedToUpdateServeApplications")


def test_an_empty_serve_config_is_put_but_never_cached() -> None:
    (put,) = puts(observed_active("", serve_details=apps()))
    assert put.config == {}
    assert put.cache_as is None


@pytest.mark.parametrize(
    ("statuses", "ready"),
    [
        ((), False),
        (("RUNNING",), True),
        (("RUNNING", "RUNNING"), True),
        (("RUNNING", "DEPLOYING"), False),
        (("UNHEALTHY",), False),
        (("DEPLOY_FAILED", "RUNNING"), False),
    ],
)
def test_ready_iff_at_least_one_app_and_all_running(statuses: tuple[str, ...], ready: bool) -> None:
    assert is_ready(app_statuses(apps(*statuses))) is ready


def test_application_statuses_copy_status_message_and_deployments_and_name_the_unnamed_default() -> None:
    details = {
        "applications": {
            "": {
                "status": "DEPLOYING",
                "message": "m",
                "deployments": {"D": {"status": "UPDATING", "message": "", "replica_states": {}}},
            }
        }
    }
    assert app_statuses(details) == {
        "default": {"status": "DEPLOYING", "message": "m", "serveDeploymentStatuses": {"D": {"status": "UPDATING"}}}
    }


def test_need_submit_reasons_are_kuberays() -> None:
    assert needs_submit(cached=None, desired="x", apps={}) == (True, "Nothing has been cached for the cluster.")
    assert needs_submit(cached="x", desired="x", apps={"a": {}}) == (
        False,
        "Current V2 Serve config matches cached Serve config.",
    )


def test_serve_targets_are_the_clusters_with_a_ready_head() -> None:
    from kray.controllers.rayservice.plan import serve_targets

    observed = observed_active()
    assert serve_targets(observed) == ("demo-aaaaa",)
    not_ready = dataclasses.replace(observed.clusters["demo-aaaaa"], status={})
    assert serve_targets(dataclasses.replace(observed, clusters={"demo-aaaaa": not_ready})) == ()
