"""What one HAProxy setting buys: variants of the rendered haproxy.cfg, measured side by side on one site.

Usage: .venv/bin/python bench/tune.py [--duration 5] [--rounds 3] [--case static] [--variant NAME ...]

Brings up the serve bench's own local site, then in every round, for every variant: writes the rendered
haproxy.cfg with the variant's edit, reloads HAProxy (master-worker, SIGUSR2), waits until every backend
server is UP again, and runs wrk through HAProxy with keep-alive and with closing clients; the direct
cases (the tier's own nginx, which no variant touches) run once per round. Variants alternate within a
round, so a slow minute of the machine hits them all. Prints the medians and the ratios to direct, the
same ratios the serve bench holds to its targets. Exit 0 once measured, 2 when the site or wrk failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.bench import bench_script, on_own_site, positive  # noqa: E402
from local.site import TIERS, LocalSite, State, _is_up  # noqa: E402
from node.discovery import Runtime, RuntimeError_  # noqa: E402

serve = bench_script("serve")


def _after(anchor: str, lines: str) -> Callable[[str], str]:
    def edit(cfg: str) -> str:
        if anchor not in cfg:
            raise serve.BenchError(f"variant: {anchor!r} is not in the rendered haproxy.cfg")
        return cfg.replace(anchor, anchor + lines, 1)

    return edit


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(cfg: str) -> str:
        if old not in cfg:
            raise serve.BenchError(f"variant: {old!r} is not in the rendered haproxy.cfg")
        return cfg.replace(old, new)

    return edit


MAXCONN = "    maxconn 4096\n"
VARIANTS: dict[str, Callable[[str], str]] = {
    "as rendered": lambda cfg: cfg,
    "threads bound to CPUs": _after(MAXCONN, "    cpu-map auto:1/all 0-63\n"),
    "nbthread 1": _after(MAXCONN, "    nbthread 1\n"),
    "no per-request log": _replace("    option httplog\n", "    option httplog\n    option dontlog-normal\n"),
    "tune.maxpollevents 32": _after(MAXCONN, "    tune.maxpollevents 32\n"),
    "backend: no TLS session reuse": _replace("pool-purge-delay", "no-ssl-reuse pool-purge-delay"),
    "backend: http-reuse safe": _replace("    http-reuse always\n", "    http-reuse safe\n"),
    "backend: http-reuse never": _replace("    http-reuse always\n", "    http-reuse never\n"),
    "session cache 100k, 1 h": _after(MAXCONN, "    tune.ssl.cachesize 100000\n    tune.ssl.lifetime 3600\n"),
}


def reload(site: LocalSite, text: str, timeout: float = 30.0) -> None:
    """Write ``text`` as HAProxy's config, reload, and wait until a new worker runs and every server
    of both tiers is UP in it again (the discovery agent re-applies them after a restart)."""
    (site.lb_home / "haproxy.cfg").write_text(text)
    master = int((site.lb_home / "haproxy.pid").read_text().split()[0])
    runtime = Runtime(str(site.admin_socket))
    before = runtime.process()
    os.kill(master, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if runtime.process() != before:
                break
        except RuntimeError_:
            pass  # the socket is briefly away while the new worker takes over
        if time.monotonic() > deadline:
            raise serve.BenchError(f"HAProxy did not reload within {timeout:.0f} s")
        time.sleep(0.2)
    state = State.load(site.state_file)
    for tier in TIERS:
        for server in state.tier(tier):
            site._wait_haproxy(tier, server, _is_up, "UP", timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=positive("--duration"), default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=positive("--rounds"), default=3, help="rounds (median kept)")
    parser.add_argument("--case", choices=["static", "dynamic"], default="static", help="which page")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="variants (default: all)")
    args = parser.parse_args(argv)
    names = ["as rendered", *[v for v in (args.variant or VARIANTS) if v != "as rendered"]]
    wrk = shutil.which("wrk")
    if not wrk:
        print("tune: wrk is missing - apt-get install wrk", file=sys.stderr)
        return 2

    def measure(site: LocalSite, tmp: Path) -> bool:
        ctx = ssl.create_default_context(cafile=str(site.dir / "pki" / "ca.pem"))
        cases = [c for c in serve.prepare(site.dir, ctx) if c.kind == args.case]
        script = tmp / "bench.lua"
        script.write_text(serve.LUA)
        rendered = (site.lb_home / "haproxy.cfg").read_text()
        texts = {name: VARIANTS[name](rendered) for name in names}
        runs: dict[tuple[str, str, bool], list[Any]] = {}
        for rnd in range(1, args.rounds + 1):
            for case in (c for c in cases if c.via == "direct"):
                res = serve.run_wrk(wrk, script, case, args.duration, 32, 2)
                runs.setdefault(("direct", case.via, case.close), []).append(res)
                print(f"  round {rnd}: {'direct':<32} {case.mode:<10} {res.rps:8.0f} req/s  p99 {res.p99_ms:6.2f} ms")
            for name in names:
                reload(site, texts[name])
                for case in (c for c in cases if c.via == "haproxy"):
                    res = serve.run_wrk(wrk, script, case, args.duration, 32, 2)
                    runs.setdefault((name, case.via, case.close), []).append(res)
                    print(f"  round {rnd}: {name:<32} {case.mode:<10} {res.rps:8.0f} req/s  p99 {res.p99_ms:6.2f} ms")
        print(f"\n{args.case}: wrk 32 connections, {args.duration} s per run, median of {args.rounds} round(s)")
        print(f"{'variant':<32} {'mode':<10} {'req/s':>8} {'p99 ms':>7}  {'req/s / direct':>14} {'p99 / direct':>12}")
        for close in (False, True):
            direct = serve.median(runs[("direct", "direct", close)])
            mode = "close" if close else "keep-alive"
            print(f"{'direct':<32} {mode:<10} {direct.rps:8.0f} {direct.p99_ms:7.2f}")
            for name in names:
                res = serve.median(runs[(name, "haproxy", close)])
                rps, p99 = serve.ratio(res.rps, direct.rps), serve.ratio(res.p99_ms, direct.p99_ms)
                print(f"{name:<32} {mode:<10} {res.rps:8.0f} {res.p99_ms:7.2f}  {rps:14.2f} {p99:12.2f}")
        return True

    return on_own_site(serve.LAYOUT, "foobar-tune-", measure, strict=False)


if __name__ == "__main__":
    sys.exit(main())
