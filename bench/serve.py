"""What the site serves through HAProxy compared with the tier behind it, measured side by side in one run.

Usage: .venv/bin/python bench/serve.py [--duration 10] [--connections 32] [--rounds 3] [--only static]
           [--rate-duration 8] [--warm-up 2] [--fractions 25,50,75] [--resume-requests 3000] [--strict]

Brings up its own local site (``local.site.LocalSite``) in a temp folder on addresses of its own
(127.0.210.1 LB, 127.0.220.1/2 web, 127.0.230.1 app, 127.0.240.1/2 MariaDB), so a running ``make up``
is left alone, then, against loopback only:

1. saturation (``wrk``, closed loop): a fingerprinted CSS file (static) from one nginx web server, and
   ``/api/entries`` (dynamic, a read from the replica) from the app box's nginx, each directly and through
   HAProxy, with keep-alive clients and with clients that send ``Connection: close`` (wrk never resumes
   TLS sessions: a full handshake per request); and the home page ``/`` from the app box (uncached)
   against ``/`` through HAProxy (its micro-cache), keep-alive. Direct and through-LB runs of a pair
   alternate, ``--rounds`` times; the median of the rounds is reported.
2. latency at a fixed rate (``h2load``, open loop): 25/50/75 % of the direct keep-alive capacity wrk just
   measured, static and dynamic, direct and through HAProxy; p50/p99/p99.9 computed from h2load's
   per-request log, the latency the hop adds per percentile, and whether the asked rate was achieved
   (a run that fell behind is flagged MISS, never reported as if it had kept up).
3. closing clients that resume TLS sessions like browsers (``curl -Z``, which shares its session cache
   between transfers): each request a new connection with ``Connection: close``; resumption is proven,
   not assumed: a ``curl -v`` sample counts handshakes without the server's certificate, and HAProxy's
   session-cache counters are read around the measured runs.

The URLs carry the real names (web.foobar.internal, app.foobar.internal, www.foobar.com) as SNI and Host;
each tool is pointed at the loopback address (wrk: a small Lua resolver, h2load: --connect-to, curl:
--resolve). Prints the figures, then one table with every figure, its target and PASS/MISS (also handed
to ``bench/run.py``). Exits 0 once the measurement ran (1 with ``--strict`` when a target is missed, 2
when the site or a tool failed). The site is taken down at the end, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.bench import (  # noqa: E402 - needs the repo root on sys.path first
    H2LOAD_THREADS,
    PERCENTILES,
    RATE_TOLERANCE,
    OpenLoop,
    Row,
    Transfers,
    added_ms,
    all_met,
    at_least,
    at_most,
    clients_for,
    emit_rows,
    format_table,
    frontend_reuse_pct,
    handshakes_in_trace,
    measure_window,
    on_own_site,
    parse_curl_lines,
    parse_h2load_log,
    percentages,
    positive,
    show_info,
    summarize,
)
from local.flood import static_asset  # noqa: E402
from local.site import Layout, LocalSite  # noqa: E402
from node.discovery import Runtime  # noqa: E402

BENCH = "serve"
LAYOUT = Layout(
    lb="127.0.210.1",
    web=("127.0.220.1", "127.0.220.2"),
    app=("127.0.230.1",),
    db_primary="127.0.240.1",
    db_replica="127.0.240.2",
)
WEB_NAME = "web.foobar.internal"
APP_NAME = "app.foobar.internal"
DYNAMIC_PATH = "/api/entries"
HOME_PATH = "/"
MARKER = "BENCH-RESULT "

# Saturation targets (through HAProxy / direct): req/s at least, p99 at most.
RPS_FLOORS = {("static", False): 0.6, ("static", True): 0.7, ("dynamic", False): 0.85, ("dynamic", True): 0.85}
P99_CEILING = 2.0
HOME_FLOOR = 5.0
"""Through HAProxy's micro-cache against the uncached app box, keep-alive req/s."""
# Latency the hop adds at 50 % of the direct capacity (ms), per kind and percentile.
ADDED_TARGETS = {("static", "p50"): 0.3, ("static", "p99"): 1.0, ("dynamic", "p99"): 2.0}
TARGET_FRACTION = 50
REUSE_FLOOR = 75.0
"""Per cent of the closing clients' handshakes that must be resumptions for the case to mean anything (the
first --parallel transfers start before any session exists, so a small sample cannot reach 100 %)."""

# wrk resolves the URL's host itself; this points it at one loopback address (BENCH_ADDRESS) instead, so
# the URL's host name still goes out as SNI and Host header. done() hands the figures back as one JSON line.
LUA = """
local address = os.getenv("BENCH_ADDRESS")
wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup(address, service)
end
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '%s{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "status_errors": %d}\\n',
      "MARKER", summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0),
      e.connect + e.read + e.write + e.timeout, e.status))
end
""".replace("MARKER", MARKER)


@dataclass(frozen=True)
class Case:
    """One path through one box: the kind of page, which box, with which clients (wrk)."""

    kind: str  # "static", "dynamic" or "home"
    via: str  # "direct" or "haproxy"
    close: bool
    name: str  # SNI and Host
    address: str
    path: str

    @property
    def mode(self) -> str:
        return "close" if self.close else "keep-alive"

    @property
    def label(self) -> str:
        return f"{self.kind:<7} {self.via:<7} {self.mode:<10}"

    @property
    def url(self) -> str:
        return f"https://{self.name}{self.path}"


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    status_errors: int


@dataclass(frozen=True)
class Resumed:
    """One kind and box with closing clients that resume: the measured runs and the proof of resumption."""

    rps: float
    transfers: Transfers
    sample_handshakes: int
    sample_full: int
    counters_pct: float | None
    """HAProxy's session-cache hits per new TLS connection over the measured runs (None: direct)."""

    @property
    def sample_pct(self) -> float:
        return percentages(self.sample_handshakes - self.sample_full, self.sample_handshakes)


class BenchError(RuntimeError):
    """The benchmark cannot run; the message says why."""


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address with another name for SNI, Host and certificate checks."""

    def __init__(self, name: str, address: str, context: ssl.SSLContext) -> None:
        super().__init__(name, 443, context=context, timeout=10)
        self._address = address
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def request(ctx: ssl.SSLContext, name: str, address: str, method: str, path: str, body: bytes | None = None) -> int:
    """One verified HTTPS request; returns the status."""
    conn = _PinnedHTTPS(name, address, ctx)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def prepare(site_dir: Path, ctx: ssl.SSLContext) -> list[Case]:
    """Seed a few guestbook entries, check every URL answers 200 with verified TLS, list the wrk cases."""
    for i in range(20):
        body = json.dumps({"name": f"bench {i}", "message": "a guestbook entry to read back"}).encode()
        status = request(ctx, APP_NAME, LAYOUT.app[0], "POST", DYNAMIC_PATH, body)
        if status != 201:
            raise BenchError(f"seeding the guestbook: POST {DYNAMIC_PATH} answered {status}")
    css = static_asset(site_dir)
    cases = []
    for kind, name, address, path, modes in (
        ("static", WEB_NAME, LAYOUT.web[0], css, (False, True)),
        ("dynamic", APP_NAME, LAYOUT.app[0], DYNAMIC_PATH, (False, True)),
        ("home", APP_NAME, LAYOUT.app[0], HOME_PATH, (False,)),
    ):
        for close in modes:
            cases.append(Case(kind, "direct", close, name, address, path))
            cases.append(Case(kind, "haproxy", close, LAYOUT.domain, LAYOUT.lb, path))
    for case in cases:
        status = request(ctx, case.name, case.address, "GET", case.path)
        if status != 200:
            raise BenchError(f"{case.url} via {case.address} answered {status}, expected 200")
    return cases


# ---- 1. saturation (wrk) --------------------------------------------------------------------------
def run_wrk(wrk: str, script: Path, case: Case, duration: int, connections: int, threads: int) -> Result:
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s"]
    command += ["-s", str(script), "-H", "Accept-Encoding: gzip"]
    if case.close:
        command += ["-H", "Connection: close"]
    command.append(case.url)
    proc = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "BENCH_ADDRESS": case.address}, check=False
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith(MARKER)), None)
    if proc.returncode or line is None:
        raise BenchError(f"wrk failed for {case.url} via {case.address}: {proc.stderr.strip() or proc.stdout.strip()}")
    data = json.loads(line[len(MARKER) :])
    return Result(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"],
        status_errors=data["status_errors"],
    )


def median(results: list[Result]) -> Result:
    return Result(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        status_errors=sum(r.status_errors for r in results),
    )


def ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom else float("nan")


def saturation_rows(results: dict[Case, Result], rounds: int) -> list[Row]:
    """Every wrk figure, then the through-HAProxy / direct ratios with their targets."""
    rows = []
    for case, res in results.items():
        what = f"wrk {case.kind} {case.via} {case.mode}"
        errors = res.errors + res.status_errors
        note = f"median of {rounds}" + (f", {errors} errors" if errors else "")
        rows.append(Row(BENCH, f"{what}: req/s", res.rps, "req/s", note=note))
        rows.append(Row(BENCH, f"{what}: p50", res.p50_ms, "ms"))
        rows.append(Row(BENCH, f"{what}: p99", res.p99_ms, "ms"))
    by_key = {(c.kind, c.via, c.close): r for c, r in results.items()}
    pairs = [(k, c) for (k, c) in RPS_FLOORS if (k, "direct", c) in by_key and (k, "haproxy", c) in by_key]
    for kind, close in pairs:
        direct, lb = by_key[(kind, "direct", close)], by_key[(kind, "haproxy", close)]
        mode = "close" if close else "keep-alive"
        rows.append(
            at_least(
                BENCH,
                f"wrk {kind} {mode}: req/s via HAProxy / direct",
                ratio(lb.rps, direct.rps),
                RPS_FLOORS[kind, close],
            )
        )
    for kind, close in pairs:
        direct, lb = by_key[(kind, "direct", close)], by_key[(kind, "haproxy", close)]
        mode = "close" if close else "keep-alive"
        rows.append(
            at_most(BENCH, f"wrk {kind} {mode}: p99 via HAProxy / direct", ratio(lb.p99_ms, direct.p99_ms), P99_CEILING)
        )
    if ("home", "direct", False) in by_key and ("home", "haproxy", False) in by_key:
        direct, lb = by_key[("home", "direct", False)], by_key[("home", "haproxy", False)]
        rows.append(
            at_least(
                BENCH,
                "wrk home / keep-alive: req/s via HAProxy / uncached app box",
                ratio(lb.rps, direct.rps),
                HOME_FLOOR,
                note="HAProxy's ~1 s micro-cache of anonymous GET /",
            )
        )
    return rows


# ---- 2. latency at a fixed rate (h2load, open loop) ------------------------------------------------
def run_h2load(h2load: str, case: Case, rate: float, duration: float, warm_up: float, log: Path) -> OpenLoop:
    """``rate`` requests/s in all from enough clients that each sends at most 100/s (h2load's timer ticks
    at most every 10 ms), each allowed 8 pipelined requests in flight, so a request falls due on time
    even while a few earlier ones are slow, and is timed from then."""
    clients = clients_for(rate, H2LOAD_THREADS)
    command = [h2load, "--h1", "-t", str(H2LOAD_THREADS), f"--rps={rate / clients:.6f}", "-c", str(clients)]
    command += ["-m", "8"]
    command += ["-D", f"{duration:g}", f"--warm-up-time={warm_up:g}", f"--connect-to={case.address}:443"]
    command += [f"--log-file={log}", "-H", "Accept-Encoding: gzip", case.url]
    log.unlink(missing_ok=True)
    launched = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=warm_up + duration + 120, check=False)
    if proc.returncode or not log.exists():
        why = proc.stderr.strip() or proc.stdout.strip()
        raise BenchError(f"h2load failed for {case.url} via {case.address} at {rate:.0f} req/s: {why}")
    requests = parse_h2load_log(log.read_text())
    return summarize(requests, rate, measure_window(launched, warm_up, duration))


def open_loop_rows(runs: dict[tuple[str, int, str], OpenLoop]) -> list[Row]:
    """Each fixed-rate run's percentiles and whether it held its rate, then the latency HAProxy adds."""
    rows = []
    for (kind, pct, via), res in runs.items():
        what = f"h2load {kind} {pct}% {via}"
        for name, _ in PERCENTILES:
            rows.append(Row(BENCH, f"{what}: {name}", res.ms[name], "ms"))
        note = f"{res.achieved_rps:.0f} of {res.asked_rps:.0f} req/s" + (f", {res.errors} errors" if res.errors else "")
        rows.append(
            Row(
                BENCH,
                f"{what}: achieved / asked rate",
                res.achieved_rps / res.asked_rps,
                "",
                f"{1 - RATE_TOLERANCE:g}..{1 + RATE_TOLERANCE:g}, 0 err",
                res.kept_up,
                note if res.kept_up else note + ": DID NOT KEEP UP, its latencies understate",
            )
        )
    for kind, pct in dict.fromkeys((k, p) for k, p, _ in runs):
        alone, hop = runs.get((kind, pct, "direct")), runs.get((kind, pct, "haproxy"))
        if alone is None or hop is None:
            continue
        kept = alone.kept_up and hop.kept_up
        for name, added in added_ms(alone, hop).items():
            what = f"h2load {kind} {pct}%: {name} added by HAProxy"
            limit = ADDED_TARGETS.get((kind, name)) if pct == TARGET_FRACTION else None
            note = "" if kept else "a run did not keep its rate"
            if limit is None:
                rows.append(Row(BENCH, what, added, "ms", note=note))
            else:
                row = at_most(BENCH, what, added, limit, "ms", note)
                rows.append(row if kept else replace(row, met=False))
    return rows


# ---- 3. closing clients that resume TLS sessions (curl) -------------------------------------------
def curl_command(curl: str, case: Case, ca: Path, count: int, parallel: int, verbose: bool) -> list[str]:
    """Parallel curl transfers sharing one TLS session cache, each a new HTTP/1.1 connection that the
    Connection: close ends (with HTTP/2 curl would multiplex them all onto one connection)."""
    command = [curl, "--http1.1", "-s", "--no-progress-meter", "-Z", "--parallel-max", str(parallel)]
    command += ["--resolve", f"{case.name}:443:{case.address}", "--cacert", str(ca)]
    command += ["-H", "Connection: close", "-H", "Accept-Encoding: gzip", "-o", "/dev/null"]
    command += ["-w", "%{http_code} %{time_total}\\n", f"{case.url}?n=[1-{count}]"]
    return command + (["-v"] if verbose else [])


def run_curl(command: list[str], case: Case) -> tuple[Transfers, float, str]:
    """The transfers' statuses and times, the wall time of the whole run, and curl's stderr."""
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    wall = time.monotonic() - started
    if proc.returncode:
        raise BenchError(f"curl failed ({proc.returncode}) for {case.url} via {case.address}: {proc.stderr[-300:]}")
    return parse_curl_lines(proc.stdout), wall, proc.stderr


def resumed_rows(results: dict[tuple[str, str], Resumed], rounds: int) -> list[Row]:
    rows = []
    for (kind, via), res in results.items():
        what = f"curl resume {kind} {via}"
        note = f"median of {rounds}" + (f", {res.transfers.errors} errors" if res.transfers.errors else "")
        rows.append(Row(BENCH, f"{what}: req/s", res.rps, "req/s", note=note))
        rows.append(Row(BENCH, f"{what}: p50", res.transfers.p50_ms, "ms"))
        rows.append(Row(BENCH, f"{what}: p99", res.transfers.p99_ms, "ms"))
        sample = f"curl -v sample: {res.sample_full} full of {res.sample_handshakes} handshakes"
        rows.append(
            at_least(BENCH, f"{what}: TLS resumed (no certificate sent)", res.sample_pct, REUSE_FLOOR, "%", sample)
        )
        if res.counters_pct is not None:
            rows.append(
                at_least(
                    BENCH,
                    f"{what}: TLS resumed (HAProxy cache hits)",
                    res.counters_pct,
                    REUSE_FLOOR,
                    "%",
                    "show info over the measured runs",
                )
            )
    for kind in dict.fromkeys(k for k, _ in results):
        direct, lb = results.get((kind, "direct")), results.get((kind, "haproxy"))
        if direct and lb:
            # The closing clients' floors, now with clients that resume as browsers do.
            rps = ratio(lb.rps, direct.rps)
            rows.append(at_least(BENCH, f"curl resume {kind}: req/s via HAProxy / direct", rps, RPS_FLOORS[kind, True]))
            p99 = ratio(lb.transfers.p99_ms, direct.transfers.p99_ms)
            rows.append(at_most(BENCH, f"curl resume {kind}: p99 via HAProxy / direct", p99, P99_CEILING))
    return rows


def fractions(text: str) -> list[int]:
    """--fractions: per cent of the direct capacity, e.g. 25,50,75."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fractions: {text!r} is not a list of whole per cents like 25,50,75"
        ) from None
    if not values or any(not 0 < v < 100 for v in values):
        raise argparse.ArgumentTypeError(f"--fractions: {text!r}: each must be between 1 and 99 (per cent)")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=positive("--duration"), default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=positive("--connections"), default=32, help="wrk connections")
    parser.add_argument("--threads", type=positive("--threads"), default=2, help="wrk threads")
    parser.add_argument("--rounds", type=positive("--rounds"), default=3, help="wrk and curl runs per case (median)")
    parser.add_argument("--only", choices=["static", "dynamic", "home"], help="run only the cases of one page")
    parser.add_argument(
        "--rate-duration", type=positive("--rate-duration", float), default=8.0, help="seconds per h2load run"
    )
    parser.add_argument(
        "--warm-up", type=positive("--warm-up", float), default=2.0, help="h2load warm-up seconds (not counted)"
    )
    parser.add_argument(
        "--fractions", type=fractions, default=[25, 50, 75], help="fixed rates, per cent of direct capacity"
    )
    parser.add_argument(
        "--resume-requests", type=positive("--resume-requests"), default=3000, help="curl transfers per run"
    )
    parser.add_argument("--resume-sample", type=positive("--resume-sample"), default=400, help="curl -v sample size")
    parser.add_argument("--parallel", type=positive("--parallel"), default=16, help="curl transfers at once")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.threads > args.connections:
        parser.error(f"--threads: {args.threads} is more than --connections ({args.connections})")
    if args.parallel > args.resume_sample or args.parallel > args.resume_requests:
        parser.error(f"--parallel: {args.parallel} is more than --resume-sample or --resume-requests")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = {name: shutil.which(name) for name in ("wrk", "h2load", "curl")}
    missing = [name for name, path in tools.items() if not path]
    if missing:
        packages = {"wrk": "wrk", "h2load": "nghttp2-client", "curl": "curl"}
        print(f"bench: missing {', '.join(missing)} - apt-get install {' '.join(packages[m] for m in missing)}")
        return 2
    wrk, h2load, curl = (str(tools[n]) for n in ("wrk", "h2load", "curl"))
    kinds = [k for k in ("static", "dynamic", "home") if args.only in (None, k)]

    def measure(site: LocalSite, tmp: Path) -> bool:
        ca = site.dir / "pki" / "ca.pem"
        ctx = ssl.create_default_context(cafile=str(ca))
        cases = [c for c in prepare(site.dir, ctx) if c.kind in kinds]
        script = tmp / "bench.lua"
        script.write_text(LUA)

        print(f"\n1. saturation: wrk, {args.connections} connections, {args.duration} s per run", flush=True)
        runs: dict[Case, list[Result]] = {c: [] for c in cases}
        for rnd in range(1, args.rounds + 1):
            for case in cases:  # direct and through-LB of a pair run back to back
                res = run_wrk(wrk, script, case, args.duration, args.connections, args.threads)
                runs[case].append(res)
                print(
                    f"  round {rnd}: {case.label} {res.rps:8.0f} req/s  p50 {res.p50_ms:6.2f} ms  "
                    f"p99 {res.p99_ms:6.2f} ms  errors {res.errors + res.status_errors}",
                    flush=True,
                )
        saturated = {c: median(r) for c, r in runs.items()}
        rows = saturation_rows(saturated, args.rounds)

        open_kinds = [k for k in ("static", "dynamic") if k in kinds]
        capacity = {c.kind: r.rps for c, r in saturated.items() if c.via == "direct" and not c.close}
        pair = {(c.kind, c.via): c for c in cases if not c.close}
        print(f"\n2. fixed rates: h2load, {args.warm_up:g} s warm-up + {args.rate_duration:g} s per run", flush=True)
        fixed: dict[tuple[str, int, str], OpenLoop] = {}
        for kind in open_kinds:
            for pct in args.fractions:
                rate = capacity[kind] * pct / 100
                for via in ("direct", "haproxy"):
                    got = run_h2load(
                        h2load, pair[kind, via], rate, args.rate_duration, args.warm_up, tmp / "h2load.log"
                    )
                    fixed[kind, pct, via] = got
                    flag = "" if got.kept_up else "   << DID NOT KEEP UP"
                    print(
                        f"  {kind:<7} {pct:>2}% {via:<7} asked {rate:8.0f} achieved {got.achieved_rps:8.0f} req/s "
                        f"({clients_for(rate)} clients)  p50 {got.ms['p50']:7.2f}  p99 {got.ms['p99']:7.2f}  "
                        f"p99.9 {got.ms['p99.9']:7.2f} ms  errors {got.errors}{flag}",
                        flush=True,
                    )
        rows += open_loop_rows(fixed)

        print(
            f"\n3. closing clients that resume TLS: curl -Z, {args.parallel} at once, "
            f"{args.resume_requests} transfers per run",
            flush=True,
        )
        runtime = Runtime(site.admin_socket)
        resumed: dict[tuple[str, str], Resumed] = {}
        for kind in open_kinds:
            for via in ("direct", "haproxy"):
                case = Case(kind, via, True, pair[kind, via].name, pair[kind, via].address, pair[kind, via].path)
                sample = curl_command(curl, case, ca, args.resume_sample, args.parallel, verbose=True)
                _, _, trace = run_curl(sample, case)
                hellos, full = handshakes_in_trace(trace)
                before = show_info(runtime.command("show info"))
                measured = []
                for rnd in range(1, args.rounds + 1):
                    command = curl_command(curl, case, ca, args.resume_requests, args.parallel, verbose=False)
                    transfers, wall, _ = run_curl(command, case)
                    measured.append((transfers.count / wall, transfers))
                    print(
                        f"  round {rnd}: {kind:<7} {via:<7} {transfers.count / wall:8.0f} req/s  p50 "
                        f"{transfers.p50_ms:6.2f} ms  p99 {transfers.p99_ms:6.2f} ms  errors {transfers.errors}",
                        flush=True,
                    )
                after = show_info(runtime.command("show info"))
                counters = frontend_reuse_pct(before, after) if via == "haproxy" else None
                resumed[kind, via] = Resumed(
                    statistics.median(r for r, _ in measured),
                    Transfers(
                        sum(t.count for _, t in measured),
                        sum(t.errors for _, t in measured),
                        statistics.median(t.p50_ms for _, t in measured),
                        statistics.median(t.p99_ms for _, t in measured),
                    ),
                    hellos,
                    full,
                    counters,
                )
                print(
                    f"  {kind:<7} {via:<7} resumed: curl -v sample {hellos - full} of {hellos} handshakes"
                    + (f", HAProxy cache hits {counters:.0f} % of new TLS connections" if counters is not None else ""),
                    flush=True,
                )
        rows += resumed_rows(resumed, args.rounds)

        print("\n" + format_table(rows))
        emit_rows(rows)
        return all_met(rows)

    return on_own_site(LAYOUT, "foobar-bench-", measure, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
