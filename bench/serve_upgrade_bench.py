"""Failed requests during each kind of RayService upgrade at 50 requests/s (issue 10's goal: 0), locally.

Runs the four upgrades of ``tests/local_mode/test_lm_serve_upgrades.py`` (the example RayService of
``examples/rayservice.yaml``, real Ray Serve) on a fresh local server, each under a paced request loop at
``--rate`` requests/s through the RayService's serve address, and prints one row per upgrade: requests
sent, the rate achieved, failed requests, p50/p99 latency, and how long the upgrade took. Minutes of real
Ray on a small machine, so no smoke test runs it.

    PYTHONPATH=. .venv/bin/python bench/serve_upgrade_bench.py [--rate 50]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kray.store import RAYSERVICE
from tests.local_mode.conftest import Local, start_local, status
from tests.local_mode.test_lm_serve_upgrades import (
    NAME,
    Load,
    Scenario,
    answer,
    example,
    incremental,
    rayservice,
    seen,
    serve_address,
    set_build,
    set_version,
    settled,
    wait_until,
)

# Not a test: a shared, busy machine may take longer than the suite's bounds; still bounded, still reported.
TIMEOUT = 600.0


def pending_traffic(scenario: Scenario) -> int:
    pending = status(rayservice(scenario.local)).get("pendingServiceStatus") or {}
    return int(pending.get("trafficRoutedPercent") or 0)


def rollback(scenario: Scenario, rate: float) -> Load:
    spec = copy.deepcopy(rayservice(scenario.local)["spec"])
    with Load(scenario.address, rate=rate) as load:
        time.sleep(2)
        scenario.local.update(RAYSERVICE, NAME, lambda obj: set_build(obj["spec"], "d"))
        report = lambda: seen(scenario.local, load)  # noqa: E731
        wait_until(lambda: pending_traffic(scenario) > 0, timeout=TIMEOUT, what="traffic to d", report=report)
        scenario.local.update(RAYSERVICE, NAME, lambda obj: obj.update(spec=spec))
        wait_until(lambda: settled(scenario.local), timeout=TIMEOUT, what="rolled back", report=report)
        time.sleep(2)
    return load


def measure(local: Local, rate: float, rows: list[tuple[str, Load, float]]) -> None:
    """One row per upgrade into ``rows`` as each finishes (a failed wait leaves the rows measured before it)."""
    path = local.manifests / "rayservice.yaml"
    path.write_text(yaml.safe_dump_all(example(), sort_keys=False))
    applied = local.kray("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    wait_until(lambda: settled(local), timeout=TIMEOUT, what="Ready", report=lambda: seen(local))
    url = serve_address(local, NAME)
    try:
        wait_until(lambda: answer(url)[0], timeout=60, what=f"a 200 at {url}", report=lambda: answer(url)[1])
        scenario = Scenario(local, url)
        steps: list[tuple[str, Callable[[dict[str, Any]], None], dict[str, str]]] = [
            ("serve config only (in place)", lambda s: set_version(s, "v2"), {"version": "v2"}),
            ("NewCluster (blue/green)", lambda s: set_build(s, "b"), {"build": "b"}),
            ("NewClusterWithIncrementalUpgrade", lambda s: incremental(s, "c"), {"build": "c"}),
        ]
        for what, change, want in steps:
            began = time.monotonic()
            load = scenario.upgrade(what, change, want, rate=rate, timeout=TIMEOUT)
            rows.append((what, load, time.monotonic() - began))
        began = time.monotonic()
        load = rollback(scenario, rate)
        rows.append(("rollback (incremental, reverted)", load, time.monotonic() - began))
    finally:
        local.delete(RAYSERVICE, NAME)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kray-bench-") as home:
        server = contextlib.contextmanager(start_local)(Path(home))
        with server as local:
            rows: list[tuple[str, Load, float]] = []
            error: AssertionError | None = None
            try:
                measure(local, args.rate, rows)
            except AssertionError as failed:
                error = failed
    print(f"{'upgrade':36} {'sent':>6} {'req/s':>7} {'failed':>7} {'p50 ms':>7} {'p99 ms':>7} {'took s':>7}")
    for what, load, took in rows:
        p50, p99 = load.latency_ms(0.50), load.latency_ms(0.99)
        cells = f"{load.sent:6d} {load.achieved_rate:7.1f} {len(load.failures):7d} {p50:7.1f} {p99:7.1f} {took:7.0f}"
        print(f"{what:36} {cells}")
    if error is not None:
        print(f"stopped: {error}")
    return 0 if error is None and all(not load.failures for _, load, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
