"""How long the servers take to boot from their real user-data (``local.boot``), on this machine.

Usage: .venv/bin/python bench/boot.py [--rounds 2]   (as root)

Per round: the whole harness up (the image from its cache, or built first), each role's cloud-init
done, and the first 200 of the home page through the three containers; then everything down.
Prints a row per round: seconds from start for the mocked run, the AWS stand-in ready, each role's
cloud-init done, the first page, and the teardown. Exits 0 once measured (also when the machine
can't boot containers: then it says why), 2 when a boot failed. Its figures have no target: they are
handed to ``bench/run.py``'s table for reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local import image  # noqa: E402 - needs the repo root on sys.path first
from local.bench import Row, emit_rows, positive  # noqa: E402
from local.boot import ROLES, Boot, BootError, check_available  # noqa: E402


def one_round() -> dict[str, float]:
    started = time.monotonic()
    marks: dict[str, float] = {}
    boot = Boot(ROLES)
    try:
        cached = image.path().is_dir()
        boot.up()
        marks["up" + ("" if cached else " (image built)")] = time.monotonic() - started
        for role, container in boot.containers.items():
            container.wait_cloud_init()
            marks[f"{role} cloud-init done"] = time.monotonic() - started
        deadline = time.monotonic() + 120
        while boot.request("/")[0] != 200:
            if time.monotonic() > deadline:
                raise BootError("the home page did not answer 200 within 120 s of the boots")
            time.sleep(0.5)
        marks["first 200 through lb"] = time.monotonic() - started
    finally:
        down = time.monotonic()
        boot.down()
        marks["teardown"] = time.monotonic() - down
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=positive("--rounds"), default=2, help="boots, one after another")
    args = parser.parse_args()
    try:
        check_available()
    except BootError as why:
        print(f"boot bench: can't run here: {why}")
        emit_rows([Row("boot", "boot bench", None, "", note=f"not run here: {why}")])
        return 0
    now = dt.datetime.now(dt.UTC)
    print(f"boot bench, {now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    for n in range(1, args.rounds + 1):
        try:
            marks = one_round()
        except (BootError, image.ImageError) as err:
            print(f"round {n}: failed: {err}")
            emit_rows([Row("boot", f"round {n}", None, "", "", False, f"failed: {err}")])
            return 2
        print(f"round {n}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in marks.items()), flush=True)
        emit_rows([Row("boot", f"round {n}: {name}", seconds, "s") for name, seconds in marks.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
