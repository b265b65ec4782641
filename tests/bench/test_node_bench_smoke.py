"""``bench/node_bench.py`` still runs end to end and prints every metric (raw Ray and ``kray job run``, once).

Why: a benchmark nobody runs rots silently -- a changed progress line of ``kray job run`` or a Ray CLI flag and
the issue's numbers can no longer be taken. This runs it as a user does, at its smallest (one round of the two
ways that need no control plane), and checks the table: every number positive, the phases in order, the
ratios against raw Ray. The ``node`` way (a control plane, a node agent and the operator's pod: minutes of
setup) is left to the full run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
HEADER = ["metric", "raw Ray", "kray job run", "operator on node", "local/raw", "node/raw"]
PHASES = ("head ready (s)", "cluster ready (s)", "job RUNNING (s)", "job done (s)", "total (s)")
# What each way cannot have: raw Ray has no setup; `kray job run` returns before its server tears the cluster down.
ABSENT = {"raw Ray": {"setup, not counted (s)"}, "kray job run": {"teardown after done (s)"}}


@pytest.mark.timeout(480)
def test_node_bench_runs_raw_and_local_and_reports_every_metric() -> None:
    argv = [sys.executable, str(ROOT / "bench" / "node_bench.py"), "--only", "a,b", "--timeout", "150"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=460, check=False)
    assert done.returncode == 0, f"bench exited {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"

    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == len(HEADER):
            rows[cells[0]] = dict(zip(HEADER[1:], cells[1:], strict=True))
    assert rows.pop("metric", None) == dict(zip(HEADER[1:], HEADER[1:], strict=True)), done.stdout
    assert set(PHASES) <= set(rows), f"table lacks phases:\n{done.stdout}"
    for way in ("raw Ray", "kray job run"):
        values = {}
        for metric, cells in rows.items():
            if metric in ABSENT[way]:
                assert cells[way] == "-", f"{way} {metric}: {cells[way]!r}, expected none"
                continue
            value = float(cells[way])
            assert value > 0, f"{way} {metric}: {value}\n{done.stdout}"
            values[metric] = value
        phases = [values[p] for p in PHASES]
        assert phases == sorted(phases), f"{way}: phases out of order {dict(zip(PHASES, phases, strict=True))}"
    for metric, cells in rows.items():
        assert cells["operator on node"] == "-", f"node was not run, yet {metric} has {cells['operator on node']!r}"
        assert cells["node/raw"] == "-", f"node was not run, yet {metric} has a ratio {cells['node/raw']!r}"
        if cells["kray job run"] != "-" and cells["raw Ray"] != "-":
            expected = float(cells["kray job run"]) / float(cells["raw Ray"])
            assert abs(float(cells["local/raw"]) - expected) <= 0.02 + 0.02 * expected, f"{metric}: {cells}"
    assert "load average" in done.stdout, done.stdout
