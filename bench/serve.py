"""What the site serves through HAProxy compared with the tier behind it, measured side by side in one run.

Usage: .venv/bin/python bench/serve.py [--duration 10] [--connections 32] [--rounds 3] [--only static] [--strict]

Brings up its own local site (``local.site.LocalSite``) in a temp folder on addresses of its own
(127.0.210.1 LB, 127.0.220.1/2 web, 127.0.230.1 app, 127.0.240.1/2 MariaDB), so a running ``make up``
is left alone, then runs ``wrk`` against loopback only:

* static: a fingerprinted CSS file from one nginx web server directly, and through HAProxy;
* dynamic: ``/api/entries`` (a read from the replica) from the app box's nginx directly, and through HAProxy;

each with keep-alive clients and with clients that send ``Connection: close`` (a full TLS handshake per
request: wrk never resumes TLS sessions). Direct and through-LB runs of a pair alternate, ``--rounds``
times, and the median of the rounds is reported. wrk sends the URL's host name as SNI and Host header,
so the URLs carry the real names (web.foobar.internal, app.foobar.internal, www.foobar.com) and a small
Lua script points wrk's resolver at the right loopback address.

Prints requests/s, p50 and p99 per case, the through-LB / direct ratios and PASS/MISS per target. Exits
0 once the measurement ran (1 with ``--strict`` when a target is missed, 2 when the site or wrk failed).
The site is taken down at the end, also on Ctrl-C, SIGTERM or an error.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.bench import on_own_site, positive  # noqa: E402 - needs the repo root on sys.path first
from local.flood import static_asset  # noqa: E402
from local.site import Layout, LocalSite  # noqa: E402

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
MARKER = "BENCH-RESULT "

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
    """One wrk run: which path, through which box, with which clients."""

    kind: str  # "static" or "dynamic"
    via: str  # "direct" or "haproxy"
    close: bool
    name: str  # SNI and Host
    address: str
    path: str

    @property
    def label(self) -> str:
        return f"{self.kind:<7} {self.via:<7} {'close' if self.close else 'keep-alive':<10}"

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
    """Seed a few guestbook entries, check every URL answers 200 with verified TLS, list the cases."""
    for i in range(20):
        body = json.dumps({"name": f"bench {i}", "message": "a guestbook entry to read back"}).encode()
        status = request(ctx, APP_NAME, LAYOUT.app[0], "POST", DYNAMIC_PATH, body)
        if status != 201:
            raise BenchError(f"seeding the guestbook: POST {DYNAMIC_PATH} answered {status}")
    css = static_asset(site_dir)
    cases = []
    for kind, name, address, path in (
        ("static", WEB_NAME, LAYOUT.web[0], css),
        ("dynamic", APP_NAME, LAYOUT.app[0], DYNAMIC_PATH),
    ):
        for close in (False, True):
            cases.append(Case(kind, "direct", close, name, address, path))
            cases.append(Case(kind, "haproxy", close, LAYOUT.domain, LAYOUT.lb, path))
    for case in cases:
        status = request(ctx, case.name, case.address, "GET", case.path)
        if status != 200:
            raise BenchError(f"{case.url} via {case.address} answered {status}, expected 200")
    return cases


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


def targets(results: dict[Case, Result]) -> list[tuple[str, float, float, bool]]:
    """(what, measured, limit, met) for every target."""
    by_key = {(c.kind, c.via, c.close): r for c, r in results.items()}
    out = []
    floors = {("static", False): 0.6, ("static", True): 0.7, ("dynamic", False): 0.85, ("dynamic", True): 0.85}
    floors = {k: v for k, v in floors.items() if (k[0], "direct", k[1]) in by_key}
    for (kind, close), floor in floors.items():
        direct, lb = by_key[(kind, "direct", close)], by_key[(kind, "haproxy", close)]
        mode = "close" if close else "keep-alive"
        ratio = lb.rps / direct.rps if direct.rps else 0.0
        out.append((f"{kind} {mode}: req/s via HAProxy / direct >= {floor}", ratio, floor, ratio >= floor))
    for kind, close in floors:
        direct, lb = by_key[(kind, "direct", close)], by_key[(kind, "haproxy", close)]
        mode = "close" if close else "keep-alive"
        ratio = lb.p99_ms / direct.p99_ms if direct.p99_ms else float("inf")
        out.append((f"{kind} {mode}: p99 via HAProxy / direct <= 2", ratio, 2.0, ratio <= 2.0))
    return out


def report(results: dict[Case, Result], args: argparse.Namespace) -> bool:
    print(
        f"\nwrk: {args.threads} thread(s), {args.connections} connections, {args.duration} s per run, "
        f"median of {args.rounds} round(s)"
    )
    print(f"{'case':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  ratio req/s, p99 (LB/direct)")
    by_key = {(c.kind, c.via, c.close): (c, r) for c, r in results.items()}
    for case, res in results.items():
        extra = ""
        if case.via == "haproxy":
            _, direct = by_key[(case.kind, "direct", case.close)]
            extra = f"  {res.rps / direct.rps:.2f}, {res.p99_ms / direct.p99_ms:.2f}"
        errors = res.errors + res.status_errors
        print(f"{case.label:<28} {res.rps:>9.0f} {res.p50_ms:>8.2f} {res.p99_ms:>8.2f} {errors:>7}{extra}")
    print()
    all_met = True
    for what, measured, _limit, met in targets(results):
        all_met &= met
        print(f"{'PASS' if met else 'MISS'}  {what}: {measured:.2f}")
    return all_met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=positive("--duration"), default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=positive("--connections"), default=32, help="wrk connections")
    parser.add_argument("--threads", type=positive("--threads"), default=2, help="wrk threads")
    parser.add_argument("--rounds", type=positive("--rounds"), default=3, help="runs per case (median kept)")
    parser.add_argument("--only", choices=["static", "dynamic"], help="run only the static or the dynamic cases")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.threads > args.connections:
        parser.error(f"--threads: {args.threads} is more than --connections ({args.connections})")
    wrk = shutil.which("wrk")
    if not wrk:
        print("bench: wrk is missing - apt-get install wrk", file=sys.stderr)
        return 2

    def measure(site: LocalSite, tmp: Path) -> bool:
        ctx = ssl.create_default_context(cafile=str(site.dir / "pki" / "ca.pem"))
        cases = [c for c in prepare(site.dir, ctx) if args.only in (None, c.kind)]
        script = tmp / "bench.lua"
        script.write_text(LUA)
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
        return report({c: median(r) for c, r in runs.items()}, args)

    return on_own_site(LAYOUT, "foobar-bench-", measure, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
