"""The local site's Prometheus, on a site of its own: every target up, targets following scale, QPS per tier
against wrk's own count, and the alarm table's alerts firing and resolving (a web server killed, replication
stopped).

wrk runs from 127.0.0.1, which is inside the local "VPC", so the per-client limits at the door don't apply.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from local.monitoring import EVALUATION_INTERVAL_S, SCRAPE_INTERVAL_S
from local.site import Layout, LocalSite, State, alive
from tests.local.support import replica as replica_of
from tests.local.support import running

LAYOUT = Layout(
    lb="127.0.116.1",
    web=("127.0.126.1", "127.0.126.2"),
    app=("127.0.136.1",),
    db_primary="127.0.146.1",
    db_replica="127.0.146.2",
)
"""Addresses of its own (Prometheus on 127.0.166.1): this site runs next to the other tests' and `make up`'s."""
PROM = f"http://{LAYOUT.monitor}:{LAYOUT.prometheus_port}"
STATIC_PATH = "/robots.txt"
DYNAMIC_PATH = "/"
SETTLE_S = 2 * SCRAPE_INTERVAL_S + 2
"""Long enough for every target to be scraped at least once after a change."""
HAPROXY_DOWN_S = 15
"""HAProxy marks a server DOWN after 3 failed checks 5 s apart (``inter 5s fall 3``)."""
LATENCY_S = SCRAPE_INTERVAL_S + 2 * EVALUATION_INTERVAL_S + 3
"""Besides for: itself, from a change to the alert firing: a scrape, an evaluation to see it pending, one
more for for: to end on (rules are evaluated every 5 s), and some slack."""

T = TypeVar("T")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSite]:
    yield from running(tmp_path_factory.mktemp("prometheus"), LAYOUT)


def api(path: str, **params: Any) -> Any:
    url = f"{PROM}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def query(expr: str, at: float | None = None) -> list[dict[str, Any]]:
    return list(api("query", query=expr, **({"time": f"{at:.3f}"} if at is not None else {}))["result"])


def wait_for(what: str, check: Callable[[], T | None], timeout: float, last: Callable[[], object] = lambda: "") -> T:
    """``check()`` until it returns something truthy; fail naming ``what`` and the last state after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last()})")
        time.sleep(0.5)


def targets() -> list[dict[str, Any]]:
    return list(api("targets", state="active")["activeTargets"])


def summary() -> list[tuple[str, str, str]]:
    """(job, distinguishing label, health) per target, for failure messages and checks."""
    out = []
    for t in targets():
        labels = t["labels"]
        key = labels.get("server") or labels.get("db") or labels["instance"]
        out.append((labels["job"], f"{labels.get('tier', '')}{':' if 'tier' in labels else ''}{key}", t["health"]))
    return sorted(out)


def nginx_targets(tier: str) -> dict[str, str]:
    return {t["labels"]["server"]: t["health"] for t in targets() if t["labels"].get("tier") == tier}


def rules(site: LocalSite) -> dict[str, Any]:
    path = site.monitoring.rules_file
    if not path.exists():
        pytest.skip("components.alarms (the alarm table's Prometheus rules) is not there yet: no alert rules loaded")
    return dict(yaml.safe_load(path.read_text()))


def firing(match: Callable[[dict[str, str]], bool]) -> list[dict[str, Any]]:
    return [a for a in api("alerts")["alerts"] if a["state"] == "firing" and match(a["labels"])]


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def alert_for(site: LocalSite, name: str) -> float:
    for group in rules(site)["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return duration_s(str(rule.get("for", "0s")))
    raise AssertionError(f"no alert rule {name} in {site.monitoring.rules_file}")


# ---- targets ----------------------------------------------------------------------------------------


def test_every_target_is_up(site: LocalSite) -> None:
    want = sorted(
        [("haproxy", f"{LAYOUT.lb}:{LAYOUT.stats_port}", "up"), ("node", f"{LAYOUT.monitor}:9100", "up")]
        + [("nginx", f"web:{a}", "up") for a in LAYOUT.web]
        + [("nginx", f"app:{a}", "up") for a in LAYOUT.app]
        + [("mysql", "primary", "up"), ("mysql", "replica", "up")]
    )
    wait_for("every target up", lambda: summary() == want, 4 * SCRAPE_INTERVAL_S, summary)
    assert query('mysql_up{job="mysql"} == 1') and len(query('mysql_up{job="mysql"} == 1')) == 2
    assert len(query('nginx_up{job="nginx"} == 1')) == 3


def test_a_new_server_is_scraped_without_a_restart_and_dropped_when_it_leaves(site: LocalSite) -> None:
    prometheus = State.load(site.state_file).pids["prometheus"]
    site.scale("web", 3)
    state = State.load(site.state_file)
    new = state.tier("web")[-1]
    assert new.address not in LAYOUT.web
    assert alive(state.pids[f"{new.name}-exporter"])
    wait_for(
        f"{new.name}'s nginx target ({new.address}) up",
        lambda: nginx_targets("web").get(new.address) == "up",
        3 * SCRAPE_INTERVAL_S,
        lambda: nginx_targets("web"),
    )
    exporter = state.pids[f"{new.name}-exporter"]
    site.scale("web", 2)
    assert not alive(exporter), "the exporter of a server that left still runs"
    wait_for(
        f"{new.name}'s target gone",
        lambda: new.address not in nginx_targets("web"),
        3 * SCRAPE_INTERVAL_S,
        lambda: nginx_targets("web"),
    )
    assert State.load(site.state_file).pids["prometheus"] == prometheus and alive(prometheus)


# ---- QPS ----------------------------------------------------------------------------------------------


def test_qps_per_tier_matches_what_wrk_measured(site: LocalSite) -> None:
    wrk = shutil.which("wrk")
    assert wrk, "wrk is missing (Debian package wrk): run make bootstrap"
    expr = 'sum by (tier) (nginx_http_requests_total{job="nginx"})'

    def counts(at: float) -> dict[str, float]:
        return {r["metric"]["tier"]: float(r["value"][1]) for r in query(expr, at)}

    time.sleep(SCRAPE_INTERVAL_S + 1)  # the previous test's requests are in a scrape before the start
    start = time.time()
    runs = {
        tier: subprocess.Popen(
            [wrk, "-t1", "-c4", "-d10s", f"{LAYOUT.url.rstrip('/')}{path}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for tier, path in (("web", STATIC_PATH), ("app", DYNAMIC_PATH))
    }
    measured: dict[str, float] = {}
    durations: dict[str, float] = {}
    for tier, proc in runs.items():
        out, _ = proc.communicate(timeout=30)
        match = re.search(r"(\d+) requests in ([\d.]+)s", out)
        assert proc.returncode == 0 and match and "Non-2xx" not in out, out
        measured[tier] = int(match[1]) / float(match[2])
        durations[tier] = float(match[2])
    end = time.time()
    time.sleep(SETTLE_S)  # every nginx target scraped after the load
    before, after = counts(start), counts(end + SETTLE_S - 1)
    seen = {tier: (after[tier] - before[tier]) / durations[tier] for tier in measured}
    report = ", ".join(f"{t}: Prometheus {seen[t]:.0f} req/s, wrk {measured[t]:.0f} req/s" for t in measured)
    print(report)
    for tier in measured:
        assert abs(seen[tier] - measured[tier]) <= 0.10 * measured[tier], report
    if site.monitoring.rules_file.exists():
        # The recording rule averages over its 1 min window, so a 10 s burst reads about 1/6 there:
        # it has a series per tier that saw the load, not wrk's figure.
        recorded = {r["metric"].get("tier"): float(r["value"][1]) for r in query("foobar:tier:qps")}
        assert set(recorded) >= {"web", "app"} and all(recorded[t] > 0 for t in ("web", "app")), recorded


def test_chromium_shows_the_qps_per_tier_graph_under_load(site: LocalSite) -> None:
    """Headless Chromium on Prometheus' graph of ``foobar:tier:qps`` while wrk runs: the README's screenshot."""
    chromium, wrk = shutil.which("chromium"), shutil.which("wrk")
    assert chromium and wrk, "chromium or wrk is missing (Debian packages chromium, wrk): run make bootstrap"
    expr = "foobar:tier:qps" if site.monitoring.rules_file.exists() else None
    url = site.monitoring.graph_url(expr).replace("range_input=15m", "range_input=2m")
    flags = [
        "--headless",
        "--no-sandbox",  # root
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,860",
        "--virtual-time-budget=15000",
        f"--user-data-dir={site.dir / 'chromium'}",
    ]
    loads = [
        subprocess.Popen([wrk, "-t1", "-c4", "-d12s", f"{LAYOUT.url.rstrip('/')}{path}"], stdout=subprocess.DEVNULL)
        for path in (STATIC_PATH, DYNAMIC_PATH)
    ]
    try:
        time.sleep(6)
        shot = site.dir / "prometheus-qps.png"
        subprocess.run([chromium, *flags, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=60)
        dump = [chromium, *flags, "--dump-dom", url]
        dom = subprocess.run(dump, check=True, capture_output=True, text=True, timeout=60)
    finally:
        for load in loads:
            load.wait(timeout=30)
    legend = re.findall(r'<span class="label">([^<]+)</span>', dom.stdout)
    series = {label.split("{", 1)[-1] for label in legend}
    assert {'tier="web"}', 'tier="app"}'} <= series, f"the graph's legend shows {legend}"
    assert shot.stat().st_size > 10_000, f"{shot} is only {shot.stat().st_size} bytes"
    # The README's picture is this one: renewed on request, so `make test` leaves the tree as it was.
    if os.environ.get("FOOBAR_UPDATE_SCREENSHOT") == "1":
        docs = Path(__file__).resolve().parents[2] / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, docs / "prometheus-qps.png")


# ---- alerts ---------------------------------------------------------------------------------------------


def _nginx_processes(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [master, *(int(p) for p in children.read_text().split())] if children.exists() else [master]


def test_a_killed_web_server_and_stopped_replication_fire_their_alerts_which_resolve(site: LocalSite) -> None:
    """Both faults at once (their windows overlap, which keeps the module short), each alert timed on its own:
    SIGKILL a web server's nginx (master and workers) and STOP SLAVE on the replica; then the server's
    nginx again from its own config, and START SLAVE."""
    rules(site)
    state = State.load(site.state_file)
    victim = state.tier("web")[-1]
    home = site.dir / victim.name
    slot = site._slot("web", victim)
    assert slot is not None and slot.up, slot
    replica = replica_of(site)
    faults: dict[str, Callable[[dict[str, str]], bool]] = {
        "FoobarWebServerDown": lambda labels: labels.get("server") == slot.name,
        "FoobarDbReplicaLag": lambda labels: True,
    }
    # Longest from the fault to the alert: the rule's for: plus how long the fault takes to show.
    detect = {"FoobarWebServerDown": HAPROXY_DOWN_S, "FoobarDbReplicaLag": 0}

    def now_firing() -> set[str]:
        alerts = [a["labels"] for a in firing(lambda labels: True)]
        return {name for name, match in faults.items() if any(la["alertname"] == name and match(la) for la in alerts)}

    assert not now_firing(), now_firing()
    for pid in _nginx_processes(state.pids[victim.name]):  # master and workers: the server is gone
        os.kill(pid, signal.SIGKILL)
    replica.execute("STOP SLAVE")
    start = time.monotonic()
    fired: dict[str, float] = {}
    try:

        def all_fired() -> bool:
            for name in now_firing() - set(fired):
                fired[name] = time.monotonic() - start
            return set(fired) == set(faults)

        wait_for("FoobarWebServerDown and FoobarDbReplicaLag firing", all_fired, 90, lambda: fired)
    finally:
        # Back: the same server's nginx from its own config, and replication.
        (home / "nginx.pid").unlink(missing_ok=True)
        subprocess.run(["nginx", "-c", str(home / "nginx.conf"), "-p", str(home)], check=True)
        state = State.load(site.state_file)
        state.pids[victim.name] = int((home / "nginx.pid").read_text().split()[0])
        state.save(site.state_file)
        replica.execute("START SLAVE")
    back = time.monotonic()
    for name, took in fired.items():
        window = alert_for(site, name)
        limit = detect[name] + window + LATENCY_S
        print(f"{name} fired {took:.1f} s after the fault (for: {window:.0f} s, allowed {limit:.0f} s)")
        assert took <= limit, f"{name} took {took:.1f} s; for: {window:.0f} s allows {limit:.0f} s"
    resolved: dict[str, float] = {}

    def all_resolved() -> bool:
        for name in set(faults) - now_firing() - set(resolved):
            resolved[name] = time.monotonic() - back
        return set(resolved) == set(faults)

    wait_for("both alerts resolved", all_resolved, 60, lambda: now_firing())
    print(", ".join(f"{name} resolved {took:.1f} s after the fix" for name, took in resolved.items()))
