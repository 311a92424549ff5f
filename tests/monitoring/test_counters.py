"""The counters the agents turn into QPS really move: real HAProxy 2.6 (its built-in Prometheus
exporter), real nginx with stub_status and the prometheus-nginx-exporter package, all on loopback.

N requests through the load balancer must add exactly N to HAProxy's frontend counter and to the
web backend's, and N + 1 to nginx's (the exporter's own stub_status read is a request too); the
series our EMF declarations select must carry the labels the alarms use.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from userdata import agent

HOST = "127.0.0.61"
_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None or shutil.which("nginx") is None, reason="needs haproxy and nginx"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port}")


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Series:
    text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5).read().decode()
    series: Series = {}
    for line in text.splitlines():
        m = _SERIES.match(line)
        if m and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(m.group(2) or ""))
            series[(m.group(1), labels)] = float(m.group(3))
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def get(port: int, path: str) -> int:
    try:
        return urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as err:
        return err.code


@dataclass
class Site:
    lb: int
    lb_metrics: int
    nginx_metrics: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("counters")
    web, stub, lb, lb_metrics, nginx_metrics, closed = (_free_port() for _ in range(6))
    (tmp / "logs").mkdir()
    (tmp / "nginx.conf").write_text(
        f"""
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/logs/access.log;
    client_body_temp_path {tmp}/body;
    server {{ listen {HOST}:{web}; location / {{ return 200 "ok\\n"; }} }}
    server {{ listen {HOST}:{stub}; location = /stub_status {{ stub_status; }} }}
}}
"""
    )
    web_be, app_be = agent.HAPROXY_BACKENDS["web"], agent.HAPROXY_BACKENDS["app"]
    (tmp / "haproxy.cfg").write_text(
        f"""
global
    pidfile {tmp}/haproxy.pid
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend {agent.HAPROXY_FRONTEND}
    bind {HOST}:{lb}
    use_backend {web_be} if {{ path_beg /static/ }}
    default_backend {app_be}
frontend stats
    bind {HOST}:{lb_metrics}
    http-request use-service prometheus-exporter if {{ path /metrics }}
backend {web_be}
    server web0 {HOST}:{web} check inter 200ms
backend {app_be}
    server app0 {HOST}:{closed} check inter 200ms fall 1
"""
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
        procs.append(nginx)
        _wait_port(stub, nginx)
        haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")])
        procs.append(haproxy)
        _wait_port(lb_metrics, haproxy)
        exporter_bin = shutil.which("prometheus-nginx-exporter")
        if exporter_bin:
            cmd = agent.nginx_exporter_command(f"http://{HOST}:{stub}/stub_status", f"{HOST}:{nginx_metrics}")
            exporter = subprocess.Popen([exporter_bin, *cmd[1:]])
            procs.append(exporter)
            _wait_port(nginx_metrics, exporter)
        else:
            nginx_metrics = 0
        # the app backend's only server is down once its first health check fails
        deadline = time.monotonic() + 10
        while value(scrape(lb_metrics), "haproxy_server_status", proxy=app_be, server="app0", state="DOWN") != 1:
            assert time.monotonic() < deadline, "HAProxy never marked app0 down"
            time.sleep(0.1)
        yield Site(lb, lb_metrics, nginx_metrics)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


N, M = 25, 7


def test_haproxy_counters_move_by_exactly_the_requests_made(site: Site) -> None:
    web_be, app_be, fe = agent.HAPROXY_BACKENDS["web"], agent.HAPROXY_BACKENDS["app"], agent.HAPROXY_FRONTEND
    before = scrape(site.lb_metrics)
    assert [get(site.lb, f"/static/app.{i}.css") for i in range(N)] == [200] * N
    assert [get(site.lb, f"/api/{i}") for i in range(M)] == [503] * M
    after = scrape(site.lb_metrics)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("haproxy_frontend_http_requests_total", proxy=fe) == N + M
    assert delta("haproxy_backend_http_requests_total", proxy=web_be) == N
    assert delta("haproxy_frontend_http_responses_total", proxy=fe, code="5xx") == M
    assert delta("haproxy_backend_http_responses_total", proxy=app_be, code="5xx") == M
    assert delta("haproxy_backend_http_responses_total", proxy=web_be, code="5xx") == 0
    assert value(after, "haproxy_backend_active_servers", proxy=app_be) == 0
    assert value(after, "haproxy_backend_active_servers", proxy=web_be) == 1
    assert value(after, "haproxy_server_status", proxy=web_be, server="web0", state="DOWN") == 0


def _selected(role: str, series: Series) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """The series the agent would turn into CloudWatch metrics: keep-regex, then EMF declarations."""
    config = agent.agent_config(role, "dev")
    declarations = config["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]
    keep = "|".join(agent.prometheus_metric_names(role))
    job = "haproxy" if role == "lb" else "nginx"
    chosen = set()
    for key in series:
        name, labels = key
        if not re.fullmatch(keep, name):
            continue
        labelled = {**dict(labels), "job": job, "Stack": "dev", "Role": role}
        for d in declarations:
            joined = d.get("label_separator", ";").join(labelled.get(lab, "") for lab in d["source_labels"])
            if re.search(d["label_matcher"], joined) and any(re.search(s, name) for s in d["metric_selectors"]):
                assert all(dim in labelled for dims in d["dimensions"] for dim in dims), (name, d["dimensions"])
                chosen.add(key)
    return chosen


def test_emf_declarations_select_the_real_series(site: Site) -> None:
    """Every exporter metric in METRICS["lb"] exists in HAProxy's real output and is selected with
    the label values the alarms use; the exporter's own frontend is not counted as site traffic."""
    series = scrape(site.lb_metrics)
    chosen = _selected("lb", series)
    names = {name for name, _ in chosen}
    assert names == set(agent.prometheus_metric_names("lb"))
    fe = agent.HAPROXY_FRONTEND
    assert ("haproxy_frontend_http_requests_total", frozenset({("proxy", fe)})) in chosen
    assert ("haproxy_frontend_http_requests_total", frozenset({("proxy", "stats")})) not in chosen
    codes = {dict(labels).get("code") for name, labels in chosen if name.endswith("responses_total")}
    assert codes == {"5xx"}
    states = {dict(labels).get("state") for name, labels in chosen if name.endswith("_status")}
    assert states == {"DOWN"}


def test_nginx_stub_status_counter_moves(site: Site) -> None:
    if not site.nginx_metrics:
        pytest.skip("prometheus-nginx-exporter is not installed (apt-get install prometheus-nginx-exporter)")
    before = scrape(site.nginx_metrics)
    assert [get(site.lb, f"/static/img.{i}.png") for i in range(N)] == [200] * N
    after = scrape(site.nginx_metrics)
    assert value(after, "nginx_up") == 1
    # N proxied requests, plus the exporter's own read of stub_status for the second scrape
    assert value(after, "nginx_http_requests_total") - value(before, "nginx_http_requests_total") == N + 1
    chosen = _selected("web", after)
    assert {name for name, _ in chosen} == set(agent.prometheus_metric_names("web"))
