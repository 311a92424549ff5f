"""The benchmarks' pure logic: h2load's log, percentiles, the open-loop window and rate check, curl's
output and handshake trace, HAProxy's counters, the targets and the one table. No site, no timing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from local.bench import (
    OpenLoop,
    Request,
    Row,
    added_ms,
    all_met,
    at_least,
    at_most,
    bench_script,
    clients_for,
    emit_rows,
    format_table,
    frontend_reuse_pct,
    handshakes_in_trace,
    measure_window,
    nearest_rank,
    parse_curl_lines,
    parse_h2load_log,
    positive,
    read_rows,
    show_info,
    summarize,
)

serve = bench_script("serve")


def loop(p50: float, p99: float, p999: float, achieved: float = 100.0, errors: int = 0) -> OpenLoop:
    return OpenLoop(100.0, achieved, 1000, errors, {"p50": p50, "p99": p99, "p99.9": p999})


# ---- h2load clients, log, percentiles ------------------------------------------------------------
@pytest.mark.parametrize(
    ("rate", "threads", "clients"),
    [(15000, 1, 150), (15001, 1, 151), (100, 1, 16), (1600, 1, 16), (1601, 1, 17), (15001, 4, 152), (3, 32, 32)],
)
def test_clients_keep_each_at_100_per_second_at_least_16_and_a_multiple_of_threads(
    rate: float, threads: int, clients: int
) -> None:
    assert clients_for(rate, threads) == clients
    assert rate / clients <= 100


@pytest.mark.parametrize(("rate", "threads", "word"), [(0, 1, "rate"), (-5, 1, "rate"), (10, 0, "threads")])
def test_clients_refuse_nonsense_naming_it(rate: float, threads: int, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        clients_for(rate, threads)


def test_h2load_log_lines_become_requests_and_failures_are_not_ok() -> None:
    text = "1700000000000000\t200\t1500\n1700000000001000\t-1\t9000\n\n1700000000002000\t503\t800\n"
    got = parse_h2load_log(text)
    assert got == [
        Request(1700000000000000, 200, 1500),
        Request(1700000000001000, -1, 9000),
        Request(1700000000002000, 503, 800),
    ]
    assert [r.ok for r in got] == [True, False, False]


@pytest.mark.parametrize("line", ["1700000000000000\t200", "x\t200\t5", "1\t200\t5\t7"])
def test_a_bad_h2load_log_line_is_named_by_number(line: str) -> None:
    with pytest.raises(ValueError, match="h2load log line 2"):
        parse_h2load_log("1\t200\t5\n" + line)


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert nearest_rank(values, 0.5) == 500
    assert nearest_rank(values, 0.99) == 990
    assert nearest_rank(values, 0.999) == 999
    assert nearest_rank(values[:10], 0.999) == 10  # too few samples: the slowest one
    assert math.isnan(nearest_rank([], 0.5))
    with pytest.raises(ValueError, match="share"):
        nearest_rank(values, 99)


def test_the_window_starts_after_warm_up_and_ends_before_the_cut_off_tail() -> None:
    lo, hi = measure_window(1000.0, 2.0, 8.0)
    assert 1002.0 < lo < 1002.5
    assert 1008.0 < hi < 1010.0


def test_summarize_drops_warm_up_and_tail_counts_rate_errors_and_percentiles() -> None:
    start = 1_000_000  # seconds since the epoch
    inside = [Request(int((start + 1 + i / 100) * 1e6), 200, 1000 + i) for i in range(100)]  # 1 s at 100/s
    inside[7] = Request(inside[7].start_us, 500, 5000)
    warm = [Request(int((start + 0.5) * 1e6), 200, 900_000)]  # began in warm-up: a huge latency, dropped
    late = [Request(int((start + 2.5) * 1e6), 200, 900_000)]
    got = summarize(warm + inside + late, 100.0, (start + 1, start + 2))
    assert got.requests == 100
    assert got.achieved_rps == pytest.approx(100.0)
    assert got.errors == 1
    assert got.ms["p50"] == pytest.approx(1.050)
    assert got.ms["p99.9"] == pytest.approx(5.0)
    assert not got.kept_up  # an error flags the run
    with pytest.raises(ValueError, match="window"):
        summarize(inside, 100.0, (start + 2, start + 1))


@pytest.mark.parametrize(("achieved", "kept"), [(100, True), (97.5, True), (102.9, True), (96, False), (104, False)])
def test_a_run_that_misses_its_rate_by_more_than_3_percent_is_not_kept_up(achieved: float, kept: bool) -> None:
    assert loop(1, 2, 3, achieved=achieved).kept_up is kept


def test_added_latency_is_via_minus_direct_per_percentile() -> None:
    assert added_ms(loop(1.0, 2.0, 4.0), loop(1.25, 2.5, 3.0)) == pytest.approx(
        {"p50": 0.25, "p99": 0.5, "p99.9": -1.0}
    )


# ---- curl, handshakes, HAProxy ---------------------------------------------------------------------
def test_curl_lines_give_count_errors_and_percentiles() -> None:
    got = parse_curl_lines("200 0.001\n200 0.003\n000 0.010\n200 0.002\n")
    assert (got.count, got.errors) == (4, 1)
    assert got.p50_ms == pytest.approx(2.0)
    assert got.p99_ms == pytest.approx(10.0)
    with pytest.raises(ValueError, match="curl output line 2"):
        parse_curl_lines("200 0.1\n<html>\n")


TRACE = """* TLSv1.3 (OUT), TLS handshake, Client hello (1):
* TLSv1.3 (IN), TLS handshake, Server hello (2):
* TLSv1.3 (IN), TLS handshake, Encrypted Extensions (8):
* TLSv1.3 (IN), TLS handshake, Certificate (11):
* TLSv1.3 (IN), TLS handshake, CERT verify (15):
* TLSv1.3 (IN), TLS handshake, Finished (20):
* TLSv1.3 (IN), TLS handshake, Newsession Ticket (4):
* SSL re-using session ID
* TLSv1.3 (OUT), TLS handshake, Client hello (1):
* TLSv1.3 (IN), TLS handshake, Server hello (2):
* TLSv1.3 (IN), TLS handshake, Encrypted Extensions (8):
* TLSv1.3 (IN), TLS handshake, Finished (20):
"""


def test_a_handshake_without_the_servers_certificate_counts_as_resumed() -> None:
    assert handshakes_in_trace(TRACE) == (2, 1)
    assert handshakes_in_trace(TRACE.replace("(IN), TLS handshake, Certificate", "(IN), x")) == (2, 0)


def test_haproxy_reuse_is_cache_hits_per_new_tls_connection() -> None:
    before = show_info("Name: HAProxy\nCumSslConns: 100\nSslCacheLookups: 10\nSslCacheMisses: 2\nUptime: 0d 0h\n")
    after = show_info("CumSslConns: 1100\nSslCacheLookups: 910\nSslCacheMisses: 12\n")
    assert before == {"CumSslConns": 100, "SslCacheLookups": 10, "SslCacheMisses": 2}
    assert frontend_reuse_pct(before, after) == pytest.approx(89.0)
    assert math.isnan(frontend_reuse_pct(after, after))
    with pytest.raises(ValueError, match="SslCacheMisses"):
        frontend_reuse_pct({"CumSslConns": 1, "SslCacheLookups": 1}, after)


# ---- targets and the one table ---------------------------------------------------------------------
def test_targets_pass_at_the_line_and_miss_beyond_or_without_a_figure() -> None:
    assert at_least("b", "x", 0.6, 0.6).met is True
    assert at_least("b", "x", 0.59, 0.6).met is False
    assert at_most("b", "x", 2.0, 2.0).met is True
    assert at_most("b", "x", 2.01, 2.0).met is False
    assert at_most("b", "x", float("nan"), 2.0).met is False
    assert at_least("b", "x", None, 1).met is False
    assert at_most("b", "x", 1, 3, "s").target == "<= 3 s"


def test_the_table_shows_every_row_its_verdict_and_the_counts() -> None:
    rows = [
        at_least("serve", "ratio", 0.5, 0.6),
        Row("serve", "req/s", 1234.5, "req/s"),
        at_most("loop_cost", "suite", 12.0, 30, "s"),
    ]
    text = format_table(rows)
    assert "[serve]" in text and "[loop_cost]" in text
    assert [line.split()[-1] for line in text.splitlines() if line.startswith(("ratio", "suite"))] == ["MISS", "PASS"]
    assert "1 PASS, 1 MISS, 1 figure(s) without a target" in text
    assert not all_met(rows)
    assert all_met(rows[1:])


def test_rows_go_to_the_runner_through_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [at_least("serve", "a", 1.0, 0.5, note="n"), Row("boot", "b", None, "")]
    emit_rows(rows)  # no runner: nothing written, no error
    monkeypatch.setenv("BENCH_ROWS_FILE", str(tmp_path / "rows"))
    emit_rows(rows)
    assert read_rows((tmp_path / "rows").read_text()) == rows
    with pytest.raises(ValueError, match="figure row 1"):
        read_rows('{"bench": "x"}\n')


def _results(**rps: float) -> dict:
    out = {}
    for key, value in rps.items():
        kind, via, mode = key.split("_")
        case = serve.Case(kind, via, mode == "close", "n", "a", "/")
        out[case] = serve.Result(value, 1.0, 2.0 if via == "direct" else 3.0, 0, 0)
    return out


def test_saturation_ratios_hold_their_floors_and_the_home_page_five_times() -> None:
    results = _results(
        static_direct_keep=1000,
        static_haproxy_keep=590,
        dynamic_direct_keep=100,
        dynamic_haproxy_keep=90,
        home_direct_keep=100,
        home_haproxy_keep=499,
    )
    verdicts = {r.name: r.met for r in serve.saturation_rows(results, 3) if r.met is not None}
    assert verdicts == {
        "wrk static keep-alive: req/s via HAProxy / direct": False,
        "wrk dynamic keep-alive: req/s via HAProxy / direct": True,
        "wrk static keep-alive: p99 via HAProxy / direct": True,
        "wrk dynamic keep-alive: p99 via HAProxy / direct": True,
        "wrk home / keep-alive: req/s via HAProxy / uncached app box": False,
    }


def test_added_latency_targets_apply_at_50_percent_and_a_run_that_fell_behind_misses() -> None:
    runs = {
        ("static", 25, "direct"): loop(1.0, 2.0, 3.0),
        ("static", 25, "haproxy"): loop(9.0, 9.0, 9.0),  # no target at 25 %
        ("static", 50, "direct"): loop(1.0, 2.0, 3.0),
        ("static", 50, "haproxy"): loop(1.25, 3.0, 30.0),  # p99 at the line; p99.9 has no target
        ("dynamic", 50, "direct"): loop(10.0, 20.0, 30.0),
        ("dynamic", 50, "haproxy"): loop(10.0, 21.0, 30.0, achieved=90.0),  # fell behind
    }
    rows = {r.name: r for r in serve.open_loop_rows(runs)}
    assert rows["h2load static 50%: p50 added by HAProxy"].met is True
    assert rows["h2load static 50%: p99 added by HAProxy"].met is True
    assert rows["h2load static 50%: p99.9 added by HAProxy"].met is None
    assert rows["h2load static 25%: p50 added by HAProxy"].met is None
    assert rows["h2load dynamic 50%: p99 added by HAProxy"].met is False  # 1 ms, but the rate was not held
    assert rows["h2load dynamic 50% haproxy: achieved / asked rate"].met is False
    assert "DID NOT KEEP UP" in rows["h2load dynamic 50% haproxy: achieved / asked rate"].note
    assert rows["h2load static 50% direct: achieved / asked rate"].met is True


# ---- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--duration", "0"], "--duration"),
        (["--rate-duration", "abc"], "--rate-duration"),
        (["--fractions", "25,100"], "--fractions"),
        (["--fractions", "half"], "--fractions"),
        (["--parallel", "500", "--resume-sample", "100"], "--parallel"),
        (["--threads", "8", "--connections", "4"], "--threads"),
    ],
)
def test_bad_serve_options_name_the_option(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        serve.parse_args(argv)
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


def test_serve_defaults_and_fractions() -> None:
    args = serve.parse_args([])
    assert args.fractions == [25, 50, 75]
    assert serve.parse_args(["--fractions", "10, 90"]).fractions == [10, 90]
    assert positive("--x", float)("0.5") == 0.5
