"""Every benchmark one after another, then one table of all their figures with targets and PASS/MISS.

Usage: .venv/bin/python bench/run.py [--strict] [--only serve] [-- extra options for bench/serve.py]

Runs bench/deploy_time.py, bench/loop_cost.py, bench/serve.py and bench/boot.py --rounds 1, each as its
own process (each stays runnable alone, and one that crashes does not take the others' figures with it);
their own output passes through as they run. Each hands its figure rows back through the file named in
BENCH_ROWS_FILE; a bench that failed shows as a MISS row. Exits 0 once everything ran (1 with --strict
when any target is missed or a bench failed; 130 when interrupted: the running bench, which got the
Ctrl-C too, is waited for, so the serve bench still takes its site down).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.bench import ROWS_ENV, Row, all_met, format_table, read_rows  # noqa: E402

BENCHES: dict[str, list[str]] = {
    "deploy_time": ["bench/deploy_time.py"],
    "loop_cost": ["bench/loop_cost.py"],
    "serve": ["bench/serve.py"],
    "boot": ["bench/boot.py", "--rounds", "1"],
}


def run_one(name: str, command: list[str], rows_file: Path) -> tuple[int, float]:
    """Run one bench with the rows file in its environment; on SIGTERM pass it on and wait, so the
    bench can clean up (the serve bench's site) before this runner goes."""
    started = time.monotonic()
    env = {**__import__("os").environ, ROWS_ENV: str(rows_file)}
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return proc.wait(), time.monotonic() - started
            except KeyboardInterrupt:
                continue  # the bench got the same Ctrl-C (one process group): let it finish its teardown
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed or a bench failed")
    parser.add_argument("--only", choices=list(BENCHES), action="append", help="run only this bench (repeatable)")
    parser.add_argument("serve_args", nargs="*", help="options for bench/serve.py (after --)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="foobar-bench-rows-") as tmp:
        for name, command in BENCHES.items():
            if args.only and name not in args.only:
                continue
            command = command + args.serve_args if name == "serve" else command
            print(f"\n==== {name}: {' '.join(command)}", flush=True)
            rows_file = Path(tmp) / f"{name}.jsonl"
            status, seconds = run_one(name, command, rows_file)
            got = read_rows(rows_file.read_text()) if rows_file.exists() else []
            rows += got
            # 0: measured; 1: a target missed (the rows say which); anything else: the bench did not finish.
            if status not in (0, 1) or (not got and status):
                rows.append(Row(name, f"{name}: exit status", status, "", "0", False, f"after {seconds:.0f} s"))
            if status in (130, -signal.SIGINT, -signal.SIGTERM):
                interrupted = True
                break
    print("\n==== every figure\n" + format_table(rows) if rows else "no figures")
    if interrupted:
        return 130
    return 1 if args.strict and not all_met(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
