"""``spec.suspend`` (KubeRay v1.7, PR 4841/4894): atomic suspend and resume.

Suspending True is persisted before anything is deleted; then every cluster and the Services go; then
Suspending False/SuspendComplete, Suspended True/SuspendComplete ("All owned resources have been
deleted."), Ready False/SuspendComplete ("RayService is suspended."). A suspend already committed
completes even if ``suspend`` is set back to false. Resuming resets Ready and UpgradeInProgress to
Initializing, so the initializing timeout counts again, and a new cluster is named.
"""

from __future__ import annotations

from kray.controllers.rayservice.plan import DeleteServices
from tests.controllers.rayservice.support import World, condition, kinds, manifest


def suspended_world() -> World:
    world = World(manifest())
    world.run(6)
    assert world.status["serviceStatus"] == "Running"
    world.manifest["spec"]["suspend"] = True
    return world


def test_suspend_commits_first_then_deletes_everything_then_reports_suspended() -> None:
    world = suspended_world()
    active = world.active()
    commit = world.step()
    assert commit.actions == ()
    assert condition(world.status, "Suspending")["status"] == "True"
    delete = world.step()
    assert kinds(delete) == ["DeleteCluster", "DeleteServices"]
    assert delete.actions[0].name == active  # type: ignore[union-attr]
    world.step()
    assert condition(world.status, "Suspended") == {
        "status": "True",
        "reason": "SuspendComplete",
        "message": "All owned resources have been deleted.",
    }
    assert condition(world.status, "Suspending")["status"] == "False"
    assert condition(world.status, "Ready") == {
        "status": "False",
        "reason": "SuspendComplete",
        "message": "RayService is suspended.",
    }
    assert world.active() is None
    quiet = world.step()
    assert quiet.actions == ()
    assert quiet.status is None


def test_a_committed_suspend_completes_even_if_unsuspended_midway_then_resumes() -> None:
    world = suspended_world()
    world.step()  # Suspending committed
    world.manifest["spec"]["suspend"] = False
    assert DeleteServices() in world.step().actions
    world.step()
    assert condition(world.status, "Suspended")["status"] == "True"
    world.step()  # resume
    assert condition(world.status, "Suspended")["reason"] == "RayServiceResumed"
    assert condition(world.status, "Ready")["reason"] == "Initializing"
    assert world.pending() is not None
    world.run(6)
    assert condition(world.status, "Ready")["status"] == "True"
