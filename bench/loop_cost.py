"""The cost of the development loop: one mocked run of the program, and the unit suite.

Usage: .venv/bin/python bench/loop_cost.py [--repeat 5]
Prints the median and the spread, so a regression in the program or the tests shows.
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


def mocked_runs(repeat: int) -> list[float]:
    from tests.unit.harness import run

    run("dev")  # warm: imports and the first provider schema load are not the loop's cost
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run("prod")
        out.append(time.perf_counter() - start)
        assert len(result.resources) > 100
    return out


def suite_runs(repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        out.append(time.perf_counter() - start)
    return out


def show(label: str, values: list[float]) -> None:
    print(
        f"{label:<34} median {statistics.median(values):6.2f} s   "
        f"min {min(values):6.2f} s   max {max(values):6.2f} s   (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    show("one mocked run of the program (prod)", mocked_runs(args.repeat))
    show("unit suite (tests/unit, pytest)", suite_runs(max(1, args.repeat // 2)))


if __name__ == "__main__":
    main()
