"""How long the site is gone when the MASTER load balancer fails, measured on one machine.

Usage: .venv/bin/python bench/failover.py [--rounds 5] [--duration 10] [--kill-after 2] [--jitter 1]   (as root)

Brings up the load-balancer pair of ``local.pair`` in network namespaces of its own (fbp-*, addresses
in 198.18.0.0/24 only: a running ``make up`` on loopback is left alone) and, ``--rounds`` times:

* kills the MASTER's HAProxy (SIGKILL): keepalived's health check fails, FAULT, the BACKUP takes
  198.18.0.100; then brings that HAProxy back (it rejoins as BACKUP);
* kills the whole new MASTER (SIGKILL of everything in its namespace, its link down) after putting a
  client over its rate limit there: the BACKUP takes the address after the 3-advert timeout, and
  answers that client 429 (the stick table came through peers) and a fresh client 200;

each while wrk (4 connections, keep-alive) and a prober (a fresh HTTPS connection every 50 ms) run
from the client namespace for ``--duration`` s, the kill ``--kill-after`` s in plus up to ``--jitter`` s at
random (so the kills sample the whole advert cycle: a hard kill costs 2.6 to 3.6 s). Prints the machine,
then a row per failover: the outage the prober saw (first failed probe to the first success after
it), failed probes, wrk's requests and errors, keepalived's states. Exits 0 once measured (also when
the machine cannot run it: then it says why), 2 when the pair or a tool failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.pair import (  # noqa: E402 - needs the repo root on sys.path first
    PROBE_INTERVAL_S,
    TARGET_S,
    LocalPair,
    LocalPairError,
    Unavailable,
    table,
)


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> list[str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return [
        f"command:  {shlex.join([Path(sys.executable).name, *sys.argv])}",
        f"machine:  nproc {os.cpu_count()}, {cpu}, kernel {os.uname().release}",
        f"date:     {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"software: {_version(['keepalived', '-v'])}; {_version(['haproxy', '-v'])}; {_version(['wrk', '-v'])}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="both failovers this many times (default 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk and prober per failover")
    parser.add_argument("--kill-after", type=float, default=2.0, help="seconds into each run the MASTER dies")
    parser.add_argument("--jitter", type=float, default=1.0, help="plus 0..this many s at random (default 1)")
    args = parser.parse_args()
    if args.rounds < 1 or args.jitter < 0 or args.duration < args.kill_after + args.jitter + 6:
        parser.error("--rounds must be at least 1, --jitter not negative, --duration at least kill + jitter + 6 s")
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="foobar-failover-") as folder:
        try:
            with LocalPair(Path(folder) / "pair", say=lambda line: print(line, flush=True)) as pair:
                measured = pair.measure(
                    duration=args.duration, kill_after=args.kill_after, rounds=args.rounds, jitter=args.jitter
                )
        except Unavailable as err:
            print(f"failover bench: skipped: {err}", file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print("failover bench: interrupted; the pair is down", file=sys.stderr)
            return 130
        except (LocalPairError, OSError, subprocess.SubprocessError) as err:
            print(f"failover bench: {err}", file=sys.stderr)
            return 2
    lines += ["", *machine()]
    lines.append(
        f"load:     wrk -t1 -c4 keep-alive, and a fresh HTTPS request every {PROBE_INTERVAL_S * 1000:.0f} ms,"
        f" {args.duration:.0f} s per failover, the kill at +{args.kill_after:g}..{args.kill_after + args.jitter:g} s;"
        f" target: back within {TARGET_S:.0f} s"
    )
    lines += ["", table(measured)]
    missed = [
        f"{s.kind} #{s.round}"
        for s in measured.scenarios
        if (s.outage.outage_s is None and s.outage.failed)  # never came back
        or (s.outage.outage_s or 0.0) > TARGET_S
        or s.outage.failed_after_recovery
    ]
    lines += ["", f"target missed: {', '.join(missed)}" if missed else f"every outage within {TARGET_S:.0f} s"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
