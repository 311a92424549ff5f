"""The cost of the development loop: one mocked run of the program, and the unit suite.

Usage: .venv/bin/python bench/loop_cost.py [--repeat 5]
Prints the median and the spread, so a regression in the program or the tests shows, and holds the
medians to the loop's targets: one mocked run under 3 s, the unit suite under 30 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.bench import Row, at_most, emit_rows, format_table, positive  # noqa: E402

BENCH = "loop_cost"
MOCKED_RUN_S = 3.0
UNIT_SUITE_S = 30.0


def mocked_runs(repeat: int) -> list[float]:
    from tests.unit.harness import Recorder, run_with

    # run_with always runs the program (harness.run would serve a repeat from its first run).
    run_with(Recorder, "dev")  # warm: imports and the first provider schema load are not the loop's cost
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run_with(Recorder, "prod")
        out.append(time.perf_counter() - start)
        assert len(result.resources) > 100
    return out


def suite_runs(repeat: int) -> tuple[list[float], str]:
    """Wall times of the unit suite, and its line saying how often it ran the program (not noise-sensitive)."""
    out = []
    runs = ""
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        out.append(time.perf_counter() - start)
        runs = next((line for line in done.stdout.splitlines() if line.startswith("tests/unit: the program ran")), "")
    return out, runs


def show(label: str, values: list[float]) -> None:
    print(
        f"{label:<34} median {statistics.median(values):6.2f} s   "
        f"min {min(values):6.2f} s   max {max(values):6.2f} s   (n={len(values)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=positive("--repeat"), default=5, help="mocked runs (suite runs: half)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    mocked = mocked_runs(args.repeat)
    show("one mocked run of the program (prod)", mocked)
    suite, runs = suite_runs(max(1, args.repeat // 2))
    show("unit suite (tests/unit, pytest)", suite)
    if runs:
        print(runs)
    rows: list[Row] = [
        at_most(BENCH, "one mocked run of the program (prod), median", statistics.median(mocked), MOCKED_RUN_S, "s"),
        at_most(BENCH, "unit suite (tests/unit), median", statistics.median(suite), UNIT_SUITE_S, "s"),
    ]
    print("\n" + format_table(rows))
    emit_rows(rows)
    return 1 if args.strict and any(r.met is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
