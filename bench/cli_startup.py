"""Startup time of the ``kray`` command: what every invocation (and every CLI test subprocess) pays.

Each case runs in a fresh process ``--rounds`` times, interleaved round by round so a burst of load on a
shared machine hits every case alike; the median is reported in seconds and as a ratio to ``python -c pass``
(the interpreter's own startup, measured in the same run: the floor no import work can beat). Absolute
times drift with load; compare the ratios between runs.

Cases: ``import kray.cli.main``, ``kray --help``, ``kray version``, ``kray job run --help``, ``kray get``
of an unknown kind (a real command path that exits before any server is needed), and ``kray validate -f``
of one of KubeRay's samples (which loads the pydantic models: the heaviest cheap command).

Usage: ``python bench/cli_startup.py [--rounds 9] [--sample PATH]``. Every case runs in an empty directory, so
``PYTHONPATH=<an exported older tree>`` measures that tree (``python -c`` would otherwise import ./kray).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = Path("/work/shared/kuberay-samples")
DEFAULT_SAMPLE = SAMPLES / "ray-job.sample.yaml"
KRAY = [str(Path(sys.executable).parent / "kray")]
"""The installed console script, as users run it."""


def cases(sample: Path) -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import kray.cli.main": [sys.executable, "-c", "import kray.cli.main"],
        "kray --help": [*KRAY, "--help"],
        "kray version": [*KRAY, "version"],
        "kray job run --help": [*KRAY, "job", "run", "--help"],
        "kray get nosuchkind": [*KRAY, "get", "nosuchkind"],
        f"kray validate -f {sample.name}": [*KRAY, "validate", "-q", "-f", str(sample)],
    }


def once(argv: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=120
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    args = parser.parse_args()
    args.sample = args.sample.resolve()
    with tempfile.TemporaryDirectory(prefix="kray-cli-bench-") as home:
        env = {**os.environ, "KRAY_HOME": home, "COLUMNS": "100"}  # no server is started: none of these needs it
        table = cases(args.sample)
        for argv in table.values():  # warm the page cache and .pyc files: the first run measures the disk
            once(argv, env, home)
        times: dict[str, list[float]] = {name: [] for name in table}
        for _ in range(args.rounds):
            for name, argv in table.items():
                times[name].append(once(argv, env, home))
    base = statistics.median(times["python -c pass"])
    print(f"{'case':<40} {'median s':>9} {'min s':>7} {'x python':>9}   ({args.rounds} rounds, {os.cpu_count()} cpus)")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<40} {median:>9.3f} {min(samples):>7.3f} {median / base:>9.1f}")


if __name__ == "__main__":
    main()
