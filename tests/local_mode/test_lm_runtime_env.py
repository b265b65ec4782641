"""Ray's ``pip`` runtime env in a local cluster with a worker: every node installs the job's packages and its
workers import both them and ray, as with ``ray start`` on separate machines.

Why it is tested: the nodes of a local cluster once shared one Ray temp dir, hence one
``runtime_resources`` dir, and the worker node's runtime env agent deleted the virtualenv the head's
agent had installed (its own clone failed on the existing directory): the job's workers died with
``ModuleNotFoundError: No module named 'ray'``.
"""

from __future__ import annotations

import pytest
import ray

from kray.store import RAYJOB

from .conftest import Local, rayjob, status

pytestmark = pytest.mark.slow

MARKER = "kray-pip-runtime-env"
PINNED = "2.26.0"  # KubeRay's ray-job sample's pin: older than the requests kray's environment has
RUNTIME_ENV = f"pip:\n  - requests=={PINNED}\n  - pendulum==2.1.2\nenv_vars:\n  counter_name: test_counter\n"
# One task per alive node, pinned there: the head's and the worker's runtime env must both import, each from
# its own node's virtualenv (on Kubernetes every pod has its own /tmp/ray).
DRIVER = f"""
import ray, requests
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
ray.init()
def versions():
    import ray, requests, sys
    return requests.__version__ + "/" + ray.__version__, sys.prefix
task = ray.remote(versions)
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
seen = ray.get([task.options(scheduling_strategy=On(n, soft=False)).remote() for n in nodes], timeout=420)
imported, prefixes = sorted(set(v for v, _ in seen)), set(p for _, p in seen)
print("{MARKER}", len(nodes), requests.__version__, imported, "virtualenvs:", len(prefixes))
import glob, os
logs = ray._private.worker._global_node.get_logs_dir_path()
pip_said = "".join(open(p).read() for p in glob.glob(os.path.join(logs, "runtime_env_setup-*.log")))
wheel = "wheel" if "pendulum-2.1.2-cp" in pip_said else "no-wheel"
print("pendulum:", wheel, "built" if "Building wheel for pendulum" in pip_said else "not-built")
"""


@pytest.mark.timeout(870)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_a_pip_runtime_env_installs_on_every_node_and_its_workers_import_ray(local: Local) -> None:
    job = rayjob("lm-pip", f"python -c '{DRIVER}'", runtimeEnvYAML=RUNTIME_ENV, shutdownAfterJobFinishes=True)
    run = local.kray("job", "run", "-f", str(local.manifest(job)), timeout=720)
    finished = local.get(RAYJOB, "lm-pip")
    output = f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert run.returncode == 0, output
    assert status(finished).get("jobStatus") == "SUCCEEDED", status(finished)
    assert f"{MARKER} 2 {PINNED} ['{PINNED}/{ray.__version__}'] virtualenvs: 2" in run.stdout, output
    assert "No module named 'ray'" not in run.stdout + run.stderr, output
    # the sdist-only pin came from the session's wheelhouse (tests/local_mode/conftest.py), not compiled per node
    assert "pendulum: wheel not-built" in run.stdout, output
    local.delete(RAYJOB, "lm-pip")
