"""A flood against the load balancer's per-client limits: the flooder is refused, a normal client isn't slowed.

Usage: .venv/bin/python bench/flood.py [--rate 1200] [--flooders 2] [--connections 8] [--clients 8]
                                       [--client-rate 10] [--slice 1] [--cycles 4] [--strict]

Brings up its own local site (``local.site.LocalSite``, the default limits) in a temp folder on addresses of
its own (127.0.211.1 LB, 127.0.221.1/2 web, 127.0.231.1 app, 127.0.241.1/2 MariaDB), so a running
``make up`` and the other benches are left alone, and sends traffic on loopback only:

* the flooder, from 127.1.0.1 ("the internet"): ``--flooders`` processes with ``--connections`` keep-alive
  HTTP/1.1 connections each, ``--rate`` requests/s in all during the flood slices, for the fingerprinted
  stylesheet (a cheap path to the web tier). It stands in for a client elsewhere, so it runs at nice 19:
  its own CPU on this machine is not what is measured;
* the normal clients, from 127.2.0.1, 127.2.0.2, ...: ``--clients`` processes, one keep-alive connection
  each at ``--client-rate`` requests/s the whole time, every request timed.

Time is cut into ``2 * --cycles`` slices of ``--slice`` s, idle and flood alternating, idle first: every flood
slice has an idle one just before it, so the load of others on a shared machine falls on both alike. The
whole run fits in one 10 s window of the request limit, so "over the limit" is every request after the
first ``requests_per_10s``.

Prints the flooder's requests, 429s and the share of its over-limit requests refused; the normal clients'
requests, 429s, p50/p99 idle and under flood and the ratio; HAProxy's refused counter; the command, the
machine and the date. Exits 0 once measured (1 with ``--strict`` when a target is missed, 2 when the site
or a client failed). The site is taken down at the end, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local import flood  # noqa: E402 - needs the repo root on sys.path first
from local.bench import on_own_site, positive  # noqa: E402
from local.site import Layout, LocalSite  # noqa: E402
from userdata import EdgeLimits  # noqa: E402

LAYOUT = Layout(
    lb="127.0.211.1",
    web=("127.0.221.1", "127.0.221.2"),
    app=("127.0.231.1",),
    db_primary="127.0.241.1",
    db_replica="127.0.241.2",
)
LIMITS = EdgeLimits()
FLOODER = "127.1.0.1"
DENIED = 'haproxy_frontend_requests_denied_total{proxy="https"}'
WINDOW_S = 10.0
"""The request limit's window (``http_req_rate(10s)``)."""


class BenchError(RuntimeError):
    """The benchmark cannot run; the message says why."""


def static_asset(site_dir: Path) -> str:
    try:
        return flood.static_asset(site_dir)
    except LookupError as err:
        raise BenchError(str(err)) from None


def denied_total() -> float:
    with urllib.request.urlopen(f"http://{LAYOUT.lb}:{LAYOUT.stats_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(DENIED + " "):
                return float(line.split()[-1])
    raise BenchError(f"{DENIED} is not in the exporter's answer")


def run(site: LocalSite, args: argparse.Namespace) -> bool:
    ca = str(site.dir / "pki" / "ca.pem")
    path = static_asset(site.dir)
    normals = [f"127.2.0.{i}" for i in range(1, args.clients + 1)]
    size = args.flooders + args.clients
    with multiprocessing.get_context("spawn").Pool(size) as pool:
        pool.map(flood.ready, range(size), chunksize=1)
        denied_before = denied_total()
        plan = flood.Plan(LAYOUT.lb, ca, path, start=time.time() + 2.0, slice_s=args.slice, cycles=args.cycles)
        floods = [
            pool.apply_async(flood.flood, (plan, FLOODER, args.rate, args.connections, part, args.flooders))
            for part in range(args.flooders)
        ]
        clients = [
            pool.apply_async(flood.normal, (plan, source, args.client_rate, k / args.clients))
            for k, source in enumerate(normals)
        ]
        timeout = plan.end - time.time() + 30
        flooded = [f.get(timeout) for f in floods]
        normal = [c.get(timeout) for c in clients]
    time.sleep(0.5)
    denied_after = denied_total()
    if any(f.late for f in flooded) or any(late for late, _ in normal):
        raise BenchError("a client process was not ready before the start (the machine is too busy): run it again")

    sent = sum(f.sent for f in flooded)
    statuses: Counter[int] = sum((f.statuses for f in flooded), Counter())
    retry: Counter[str] = sum((f.retry_after for f in flooded), Counter())
    reconnects = sum(f.reconnects for f in flooded)
    over = sent - LIMITS.requests_per_10s
    refused = statuses[429]
    share = refused / over if over > 0 else float("nan")
    flood_s = args.cycles * args.slice

    samples = [s for _, client in normal for s in client]
    idle, busy = ([x * 1000 for x in side] for side in flood.split(plan, samples))
    normal_429 = sum(1 for s in samples if s.status == 429)
    normal_other = Counter(s.status for s in samples if s.status not in (200, 429))
    p50_idle, p99_idle = flood.nearest_rank(idle, 0.5), flood.nearest_rank(idle, 0.99)
    p50_busy, p99_busy = flood.nearest_rank(busy, 0.5), flood.nearest_rank(busy, 0.99)
    ratio = p99_busy / p99_idle if p99_idle else float("inf")

    print(
        f"\nlimit: {LIMITS.requests_per_10s} requests / 10 s per client; {2 * args.cycles} slices of {args.slice:g} s,"
        f" idle and flood alternating ({flood_s:g} s of flood)"
    )
    print(
        f"flooder {FLOODER}: {args.flooders} process(es) x {args.connections} keep-alive connections,"
        f" {args.rate:g} req/s planned during flood slices"
    )
    print(f"  requests           {sent:>7}   ({sent / flood_s:.0f} req/s during flood slices)")
    print(f"  answered 200       {statuses[200]:>7}")
    print(f"  answered 429       {refused:>7}   Retry-After: {dict(retry)}")
    others = {k: v for k, v in statuses.items() if k not in (200, 429)}
    print(f"  other answers      {sum(others.values()):>7}   {others or ''}")
    print(f"  reconnects         {reconnects:>7}")
    print(f"  over the limit     {over:>7}   refused {refused} = {share * 100:.2f} %")
    print(
        f"normal clients {normals[0]}..{normals[-1]}: {args.clients} x {args.client_rate:g} req/s,"
        f" one keep-alive connection each"
    )
    print(f"  requests           {len(samples):>7}   (timed: {len(idle)} idle, {len(busy)} under flood)")
    print(f"  answered 429       {normal_429:>7}   other than 200: {dict(normal_other) or 'none'}")
    print(f"  idle         p50 {p50_idle:6.2f} ms   p99 {p99_idle:6.2f} ms   max {max(idle, default=0):6.2f} ms")
    print(f"  under flood  p50 {p50_busy:6.2f} ms   p99 {p99_busy:6.2f} ms   max {max(busy, default=0):6.2f} ms")
    print(f"  p99 under flood / idle: {ratio:.2f}")
    print(f"HAProxy {DENIED}: +{denied_after - denied_before:.0f} (429s seen by the clients: {refused + normal_429})")
    print()
    checks = [
        (f"flooder: >= 99 % of over-limit requests refused: {share * 100:.2f} %", share >= 0.99),
        (f"flooder: every 429 carries Retry-After: {sum(retry.values()) - retry['']} of {refused}", retry[""] == 0),
        (f"normal clients: no 429: {normal_429}", normal_429 == 0),
        (f"normal clients: p99 under flood <= 2 x idle: {ratio:.2f}", ratio <= 2.0),
    ]
    for what, met in checks:
        print(f"{'PASS' if met else 'MISS'}  {what}")
    return all(met for _, met in checks)


def machine() -> str:
    try:
        haproxy = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    except OSError:
        haproxy = "haproxy: not found"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: nproc {os.cpu_count()}, kernel {platform.release()}, Python {platform.python_version()},"
        f" {haproxy.split(' - ')[0]}, load average {load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=positive("--rate", float), default=1200.0, help="flooder req/s when flooding")
    parser.add_argument("--flooders", type=positive("--flooders"), default=2, help="flooder processes")
    parser.add_argument("--connections", type=positive("--connections"), default=8, help="connections per flooder")
    parser.add_argument("--clients", type=positive("--clients"), default=8, help="normal clients (one address each)")
    parser.add_argument("--client-rate", type=positive("--client-rate", float), default=10.0, help="req/s each")
    parser.add_argument("--slice", type=positive("--slice", float), default=1.0, help="seconds per slice")
    parser.add_argument("--cycles", type=positive("--cycles"), default=4, help="idle+flood slice pairs")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if 2 * args.cycles * args.slice > WINDOW_S - 0.5:
        parser.error(f"--cycles/--slice: {2 * args.cycles * args.slice:g} s does not fit in one {WINDOW_S:g} s window")
    if args.clients > 250:
        parser.error(f"--clients: {args.clients} is more than 250 (one 127.2.0.x address each)")
    if args.client_rate * 2 * args.cycles * args.slice + 3 > LIMITS.requests_per_10s:
        parser.error(f"--client-rate: {args.client_rate:g} req/s would take a normal client over its own limit")

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(machine())
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    return on_own_site(LAYOUT, "foobar-flood-", lambda site, _: run(site, args), strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
