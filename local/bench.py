"""What the benchmarks under ``bench/`` share: options that name themselves when wrong, a local site of
their own for the length of one measurement, the figure rows every bench hands to one table, and the
pure arithmetic of the serve bench (h2load's log, percentiles, curl's output, HAProxy's counters), kept
here so it is tested without a site."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from local.netns import signals_raise
from local.site import Layout, LocalSite

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def bench_script(name: str) -> ModuleType:
    """A bench script as a module (bench/ is a folder of scripts, not a package), loaded once."""
    key = f"bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, BENCH_DIR / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def positive(name: str, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse type that names the option when the value is not a positive number of ``kind``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} must be positive")
        return value

    return parse


def on_own_site(layout: Layout, prefix: str, measure: Callable[[LocalSite, Path], bool], *, strict: bool) -> int:
    """Bring up a local site on ``layout`` in a temporary folder, ``measure(site, folder)`` (True when
    every target is met), and take the site down again, also on Ctrl-C, SIGTERM or an error.

    The exit status: 0 measured, 1 with ``strict`` when a target is missed, 2 when the site or a tool
    failed, 130 when interrupted."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, signals_raise():
        site = LocalSite(Path(tmp) / "site", layout)
        try:
            print(f"bench: bringing up a local site in {site.dir} (LB {layout.lb})", flush=True)
            site.up()
            met = measure(site, Path(tmp))
        except KeyboardInterrupt:
            print("\nbench: interrupted, taking the site down", file=sys.stderr)
            return 130
        except Exception as err:
            print(f"bench: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the teardown
            print(f"bench: {site.down()}", file=sys.stderr)
    return 1 if strict and not met else 0


# ---- one table for every bench ------------------------------------------------------------------
ROWS_ENV = "BENCH_ROWS_FILE"
"""Where a bench appends its figure rows (JSON lines) when ``bench/run.py`` runs it; unset alone."""


@dataclass(frozen=True)
class Row:
    """One figure of one bench: what it is, what was measured, and the target it is held to (if any)."""

    bench: str
    name: str
    measured: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    """None: a figure shown for reference, with no target of its own."""
    note: str = ""

    @property
    def verdict(self) -> str:
        return "" if self.met is None else "PASS" if self.met else "MISS"


def at_least(bench: str, name: str, measured: float | None, limit: float, unit: str = "", note: str = "") -> Row:
    met = measured is not None and math.isfinite(measured) and measured >= limit
    return Row(bench, name, measured, unit, f">= {limit:g}{' ' + unit if unit else ''}", met, note)


def at_most(bench: str, name: str, measured: float | None, limit: float, unit: str = "", note: str = "") -> Row:
    met = measured is not None and math.isfinite(measured) and measured <= limit
    return Row(bench, name, measured, unit, f"<= {limit:g}{' ' + unit if unit else ''}", met, note)


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def format_table(rows: list[Row]) -> str:
    """The rows as one aligned text table, a section per bench, and a count of PASS and MISS."""
    width = max([len(r.name) for r in rows] + [6])
    twidth = max([len(r.target) for r in rows] + [6])
    head = f"{'figure':<{width}}  {'measured':>10}  {'unit':<6}  {'target':<{twidth}}  result"
    lines = [head, "-" * len(head)]
    bench = None
    for r in rows:
        if r.bench != bench:
            bench = r.bench
            lines.append(f"[{bench}]")
        target = r.target or "-"
        line = f"{r.name:<{width}}  {_number(r.measured):>10}  {r.unit:<6}  {target:<{twidth}}  {r.verdict or '-'}"
        lines.append(f"{line}  {r.note}".rstrip())
    passed = sum(r.met is True for r in rows)
    missed = sum(r.met is False for r in rows)
    lines.append(f"{passed} PASS, {missed} MISS, {len(rows) - passed - missed} figure(s) without a target")
    return "\n".join(lines)


def all_met(rows: list[Row]) -> bool:
    return not any(r.met is False for r in rows)


def emit_rows(rows: list[Row]) -> None:
    """Hand the rows to ``bench/run.py`` (through the file it names in ``BENCH_ROWS_FILE``), if it ran us."""
    path = os.environ.get(ROWS_ENV)
    if path:
        with open(path, "a") as out:
            for r in rows:
                out.write(json.dumps(asdict(r)) + "\n")


def read_rows(text: str) -> list[Row]:
    """The rows a bench wrote with :func:`emit_rows`."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(Row(**json.loads(line)))
        except (ValueError, TypeError) as err:
            raise ValueError(f"figure row {n}: {err}: {line[:120]!r}") from None
    return rows


# ---- open-loop latency from h2load's log ---------------------------------------------------------
PER_CLIENT_RPS = 100.0
"""h2load's rate timer ticks at most every 10 ms per client: 100/s per client is one request a tick.
Measured against 50/s (twice the connections) at 14,000 req/s through HAProxy: p99 15.6 ms against
170 ms; more connections than a closed loop needs only cost the servers more per request."""
MIN_CLIENTS = 16
H2LOAD_THREADS = 2
"""As wrk: one h2load thread at 7,000 req/s queued its own requests (p50 through HAProxy 7.4 ms against
1.8 ms with two)."""
RATE_TOLERANCE = 0.03
"""How far the achieved rate may fall from the asked one before the case is flagged as not kept up."""


def clients_for(rate: float, threads: int = 1, per_client: float = PER_CLIENT_RPS, minimum: int = MIN_CLIENTS) -> int:
    """h2load clients for ``rate`` requests/s in all: each at most ``per_client`` requests/s, at least
    ``minimum``, and a multiple of ``threads`` (h2load spreads clients evenly over its threads)."""
    if rate <= 0:
        raise ValueError(f"rate: {rate!r} must be positive")
    if threads < 1:
        raise ValueError(f"threads: {threads!r} must be at least 1")
    clients = max(minimum, threads, math.ceil(rate / per_client - 1e-9))
    return math.ceil(clients / threads) * threads


@dataclass(frozen=True)
class Request:
    """One line of h2load's --log-file: start (µs since the epoch), status (-1: failed), µs until the end."""

    start_us: int
    status: int
    latency_us: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def parse_h2load_log(text: str) -> list[Request]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            if len(fields) != 3:
                raise ValueError(f"{len(fields)} columns, expected 3")
            out.append(Request(int(fields[0]), int(fields[1]), int(fields[2])))
        except ValueError as err:
            raise ValueError(f"h2load log line {n}: {err}: {line[:80]!r}") from None
    return out


def nearest_rank(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of already sorted values (NaN for none)."""
    if not 0 < share <= 1:
        raise ValueError(f"share: {share!r} is outside (0, 1]")
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else float("nan")


PERCENTILES = (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))


@dataclass(frozen=True)
class OpenLoop:
    """What one fixed-rate run measured inside its window."""

    asked_rps: float
    achieved_rps: float
    requests: int
    errors: int
    ms: dict[str, float]
    """p50, p99 and p99.9 in milliseconds, of every request in the window (errors too: they took time)."""

    @property
    def kept_up(self) -> bool:
        return abs(self.achieved_rps / self.asked_rps - 1) <= RATE_TOLERANCE and self.errors == 0


def summarize(requests: list[Request], asked_rps: float, window: tuple[float, float]) -> OpenLoop:
    """The requests that started inside ``window`` (seconds since the epoch: after warm-up, and
    ending before the last in-flight ones were cut off): achieved rate, errors, percentiles."""
    lo, hi = window
    if hi <= lo:
        raise ValueError(f"window: ends ({hi}) before it starts ({lo})")
    inside = [r for r in requests if lo * 1e6 <= r.start_us < hi * 1e6]
    ordered = sorted(r.latency_us / 1000 for r in inside)
    return OpenLoop(
        asked_rps=asked_rps,
        achieved_rps=len(inside) / (hi - lo),
        requests=len(inside),
        errors=sum(not r.ok for r in inside),
        ms={name: nearest_rank(ordered, share) for name, share in PERCENTILES},
    )


def measure_window(launched: float, warm_up: float, duration: float) -> tuple[float, float]:
    """The part of an h2load -D run whose figures count: from a little after warm-up (h2load starts its
    warm-up at the first connect, just after launch; requests begun in warm-up are logged if they end
    after it) to a little before the end (requests in flight when the duration ends are never logged,
    so the last moments would lack their slowest requests)."""
    lead = min(0.25, duration / 10)
    tail = min(1.0, duration / 5)
    return launched + warm_up + lead, launched + warm_up + duration - tail


def added_ms(direct: OpenLoop, via: OpenLoop) -> dict[str, float]:
    """The latency the hop adds at one rate: via HAProxy minus direct, per percentile."""
    return {name: via.ms[name] - direct.ms[name] for name, _ in PERCENTILES}


# ---- closing clients that resume TLS sessions (curl) ---------------------------------------------
@dataclass(frozen=True)
class Transfers:
    count: int
    errors: int
    p50_ms: float
    p99_ms: float


def parse_curl_lines(text: str) -> Transfers:
    """curl -w '%{http_code} %{time_total}\\n' output: one line per transfer (000: no answer)."""
    times, errors = [], 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            code, total = line.split()
            status, seconds = int(code), float(total)
        except ValueError:
            raise ValueError(f"curl output line {n}: expected 'status seconds': {line[:80]!r}") from None
        errors += not 200 <= status < 300
        times.append(seconds * 1000)
    times.sort()
    return Transfers(len(times), errors, nearest_rank(times, 0.5), nearest_rank(times, 0.99))


def handshakes_in_trace(text: str) -> tuple[int, int]:
    """(handshakes, full ones) in curl -v output: every handshake has a ServerHello, and only a full one
    has the server's Certificate (a TLS 1.3 resumption is a PSK handshake, no certificate sent)."""
    hellos = sum("TLS handshake, Server hello (2)" in line for line in text.splitlines())
    certificates = sum("(IN), TLS handshake, Certificate (11)" in line for line in text.splitlines())
    return hellos, certificates


def percentages(part: float, whole: float) -> float:
    """``part`` as a per cent of ``whole`` (NaN when there is no whole)."""
    return 100.0 * part / whole if whole > 0 else float("nan")


def show_info(text: str) -> dict[str, int]:
    """HAProxy's ``show info``: the numeric fields."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            out[key.strip()] = int(value)
    return out


def frontend_reuse_pct(before: dict[str, int], after: dict[str, int]) -> float:
    """Share of HAProxy's new TLS connections between two ``show info`` readings that resumed a session
    from its cache (lookups that did not miss). The denominator also holds HAProxy's own backend
    handshakes (checks, new backend connections), so this errs low."""
    try:
        conns = after["CumSslConns"] - before["CumSslConns"]
        hits = (after["SslCacheLookups"] - before["SslCacheLookups"]) - (
            after["SslCacheMisses"] - before["SslCacheMisses"]
        )
    except KeyError as err:
        raise ValueError(f"show info lacks {err}") from None
    return percentages(hits, conns)
