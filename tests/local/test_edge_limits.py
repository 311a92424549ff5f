"""The per-client limits at the load balancer's door, on a local site of its own.

Every client comes from a loopback address of its own: 127.1.x.x and 127.2.x.x are "the internet"
(outside the local "VPC", 127.0.0.0/16), 127.0.0.1 is inside. HAProxy counts per source address, and
its counters last 10 s (connections, requests) or a minute (posts), so no two tests share a client.
The site runs with the default limits (``EdgeLimits()``), as a new stack does.
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local import flood
from local.site import Layout, LocalSite
from node.discovery import Runtime
from tests.local.support import running, tls_context
from userdata import EdgeLimits

# Addresses of their own: this site runs next to the other local-site tests' and `make up`'s.
LAYOUT = Layout(
    lb="127.0.114.1",
    web=("127.0.124.1", "127.0.124.2"),
    app=("127.0.134.1",),
    db_primary="127.0.144.1",
    db_replica="127.0.144.2",
)
LIMITS = EdgeLimits()
"""What the site runs with (LocalSite's default): the settings' defaults."""
METRICS_URL = f"http://{LAYOUT.lb}:{LAYOUT.stats_port}/metrics"
DENIED = 'haproxy_frontend_requests_denied_total{proxy="https"}'
INSIDE = "127.0.0.1"

# The flood (test 1): idle and flood slices alternate, each flood second right after an idle one, and 8 normal
# clients give 320 timed requests to each side. On a shared 2-core machine one idle run then one flood run
# (a few dozen samples, or a few hundred in one block each) differed by up to 3x in p99 with no flood at all:
# alternating puts the others' load on both sides alike, and the sample count steadies the p99.
SLICE_S = 1.0
CYCLES = 4
FLOOD_RATE = 600
"""Requests per second the flooder sends during a flood slice: 4 slices, 2400 requests, 2100 over its limit."""
FLOOD_CONNECTIONS = 8
NORMAL_CLIENTS = 8
NORMAL_RATE = 10.0
"""Requests per second of each normal client: a page and its assets now and then."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSite]:
    yield from running(tmp_path_factory.mktemp("edge"), LAYOUT)


# ------------------------------------------------------------------------------------------- helpers


def connection(ca: str, source: str, timeout: float = 10.0) -> http.client.HTTPSConnection:
    """HTTPS (HTTP/1.1) to the load balancer from ``source``, verified against the site's CA."""
    ctx = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection(LAYOUT.lb, 443, context=ctx, timeout=timeout, source_address=(source, 0))


def ca_file(site: LocalSite) -> str:
    return str(site.dir / "pki" / "ca.pem")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def ask(
    conn: http.client.HTTPSConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())


def static_asset(site: LocalSite) -> str:
    return flood.static_asset(site.dir)


def metric(name: str) -> float:
    """One sample of the Prometheus exporter the monitoring scrapes."""
    with urllib.request.urlopen(METRICS_URL, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    raise AssertionError(f"{name} is not in {METRICS_URL}")


def app_log(site: LocalSite) -> str:
    return (site.dir / "app1" / "logs" / "access.log").read_text()


def wait_for_app_log(site: LocalSite, marker: str, timeout: float = 5.0) -> str:
    """The app nginx's access-log line carrying ``marker`` (nginx writes it when the request ends)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in app_log(site).splitlines() if marker in line]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, f"no request with {marker} reached the app"
        time.sleep(0.1)


# -------------------------------------------------------- the flood: flooder and normal clients, each a process


ATTEMPTS = 3
"""Runs of the flood the latency bound may take: scheduler noise alone on these 2 shared cores moved
a normal client's p99 by up to 3x between two idle runs, and once in a fresh-clone run by 2.3x
(7.3 ms against 3.2 ms, p50 1.3 against 1.4 ms). Every run must meet every other bound."""


def _one_flood(site: LocalSite, flooder: str) -> tuple[float, float, str]:
    """One flood from ``flooder`` beside the normal clients; asserts the refusals and returns the
    normal clients' p99 idle and under flood, and what the run measured."""
    normals = [f"127.2.0.{i}" for i in range(1, NORMAL_CLIENTS + 1)]
    pool_size = 1 + NORMAL_CLIENTS
    # Processes, not threads: the timings of a client must not wait for another's turn at the GIL.
    with multiprocessing.get_context("spawn").Pool(pool_size) as pool:
        pool.map(flood.ready, range(pool_size), chunksize=1)
        plan = flood.Plan(
            LAYOUT.lb, ca_file(site), static_asset(site), start=time.time() + 2.0, slice_s=SLICE_S, cycles=CYCLES
        )
        flooding = pool.apply_async(flood.flood, (plan, flooder, FLOOD_RATE, FLOOD_CONNECTIONS))
        clients = [
            pool.apply_async(flood.normal, (plan, source, NORMAL_RATE, k / NORMAL_CLIENTS))
            for k, source in enumerate(normals)
        ]
        timeout = plan.end - time.time() + 30
        flooded = flooding.get(timeout)
        normal = [c.get(timeout) for c in clients]

    assert not flooded.late and not any(late for late, _ in normal), "a client was not ready before the start"
    # The flooder: well over its limit, within one 10 s window.
    assert flooded.sent >= 1500, f"the flooder sent only {flooded.sent} requests"
    assert plan.end - plan.start < 10
    over = flooded.sent - LIMITS.requests_per_10s
    refused = flooded.statuses[429]
    assert set(flooded.statuses) <= {200, 429}, flooded.statuses
    assert refused >= 0.99 * over, f"{refused} of {over} over-limit requests refused ({flooded.statuses})"
    assert flooded.statuses[200] <= LIMITS.requests_per_10s, flooded.statuses
    assert flooded.retry_after == Counter({"10": refused}), flooded.retry_after

    # The normal clients: never refused; their latency is compared by the caller.
    samples = [s for _, client in normal for s in client]
    statuses = Counter(s.status for s in samples)
    assert statuses == Counter({200: len(samples)}), statuses
    idle, busy = flood.split(plan, samples)
    expected = CYCLES * SLICE_S * NORMAL_RATE * NORMAL_CLIENTS
    assert min(len(idle), len(busy)) >= 0.9 * expected, (len(idle), len(busy))
    p99_idle, p99_busy = flood.nearest_rank(idle, 0.99), flood.nearest_rank(busy, 0.99)
    what = (
        f"flooder {flooder}: {flooded.sent} requests, {refused} refused of {over} over the limit;"
        f" normal: p99 idle {p99_idle * 1000:.2f} ms, under flood {p99_busy * 1000:.2f} ms"
        f" (p50 {flood.nearest_rank(idle, 0.5) * 1000:.2f} and {flood.nearest_rank(busy, 0.5) * 1000:.2f} ms;"
        f" {len(idle)} and {len(busy)} samples)"
    )
    return p99_idle, p99_busy, what


def test_a_flood_is_refused_and_a_normal_client_is_not_slowed(site: LocalSite) -> None:
    runs = []
    for attempt in range(ATTEMPTS):  # a new flooder each time: its counters last 10 s
        p99_idle, p99_busy, what = _one_flood(site, f"127.1.{attempt}.1")
        runs.append(what)
        print(what)  # shown with -s or -rP: what the run measured
        if p99_busy <= 2 * p99_idle:
            return
    raise AssertionError("a normal client's p99 under the flood was over 2x idle in every run: " + "; ".join(runs))


# ------------------------------------------------------------------------------------------------ posts


def post_entry(conn: http.client.HTTPSConnection, marker: str) -> Answer:
    """The guestbook form, as a browser on the site posts it."""
    body = urllib.parse.urlencode({"name": "Edge test", "message": f"hello from {marker}"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{LAYOUT.lb}"}
    return ask(conn, "POST", f"/entries?m={marker}", body=body, headers=headers)


def test_the_sixth_post_in_a_minute_is_refused_and_another_client_still_posts(site: LocalSite) -> None:
    conn = connection(ca_file(site), "127.1.0.2")
    markers = [uuid.uuid4().hex for _ in range(LIMITS.posts_per_minute + 1)]
    answers = [post_entry(conn, m) for m in markers]
    for answer in answers[:-1]:  # accepted: the app's post-redirect-get
        assert (answer.status, answer.headers.get("location")) == (303, "/"), (answer.status, answer.body[:200])
    sixth = answers[-1]
    assert sixth.status == 429 and sixth.headers.get("retry-after") == "60", (sixth.status, sixth.headers)
    wait_for_app_log(site, markers[-2])  # the fifth reached the app, the sixth never did
    assert markers[-1] not in app_log(site)
    # Another client's budget is its own.
    other = post_entry(connection(ca_file(site), "127.1.0.3"), uuid.uuid4().hex)
    assert other.status == 303, other.status


def test_a_post_spelled_with_percent_escapes_counts_like_any_other(site: LocalSite) -> None:
    """``/%65ntries`` is ``/entries`` to the app (gunicorn decodes the path): the door must count it too."""
    conn = connection(ca_file(site), "127.1.0.20")
    for _ in range(LIMITS.posts_per_minute):
        assert post_entry(conn, uuid.uuid4().hex).status == 303
    body = urllib.parse.urlencode({"name": "Edge test", "message": "escaped"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{LAYOUT.lb}"}
    escaped = ask(conn, "POST", "/%65ntries", body=body, headers=headers)
    assert escaped.status == 429, escaped.status


# ------------------------------------------------------------------------------------------ slow client


def test_a_slow_client_is_cut_off_after_the_request_timeout(site: LocalSite) -> None:
    """Headers a byte a second (slowloris): HAProxy's ``timeout http-request 10s`` ends it."""
    request = f"GET {static_asset(site)} HTTP/1.1\r\nHost: {LAYOUT.lb}\r\nUser-Agent: slow\r\n\r\n".encode()
    ctx = tls_context(site)
    began = time.monotonic()
    raw = socket.create_connection((LAYOUT.lb, 443), timeout=5, source_address=("127.1.0.4", 0))
    answer = b""
    sent = 0
    with ctx.wrap_socket(raw, server_hostname=LAYOUT.lb) as tls:
        tls.settimeout(1.0)
        while sent < len(request) and time.monotonic() - began < 20:
            try:
                tls.sendall(request[sent : sent + 1])
                sent += 1
                chunk = tls.recv(4096)
            except TimeoutError:
                continue  # nothing yet: the next byte
            except OSError:  # reset or broken pipe: closed too
                break
            answer += chunk
            if not chunk:
                break
            with contextlib.suppress(OSError):  # the rest of an answer, up to the close
                while chunk := tls.recv(4096):
                    answer += chunk
            break
    closed_after = time.monotonic() - began
    assert sent < len(request), "the whole request went through"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert 9.0 <= closed_after <= 13.0, f"closed after {closed_after:.1f} s"


# ------------------------------------------------------------------------------------------ request body


def test_a_declared_body_over_64_kib_is_refused_at_the_door(site: LocalSite) -> None:
    ca = ca_file(site)
    app_requests = 'haproxy_backend_http_requests_total{proxy="app"}'
    before = metric(app_requests)
    over = uuid.uuid4().hex
    conn = connection(ca, "127.1.0.5")
    # Only the headers: HAProxy decides on the declared length, before any of the body.
    conn.putrequest("POST", f"/entries?m={over}")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Origin", f"https://{LAYOUT.lb}")
    conn.putheader("Content-Length", str(LIMITS.max_body_bytes + 1))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413, resp.status
    conn.close()
    assert metric(app_requests) == before, "the refused request reached the app backend"

    # Exactly the limit passes the load balancer (the app refuses the over-long message itself).
    under = uuid.uuid4().hex
    prefix = b"name=Edge+test&message="
    body = prefix + b"a" * (LIMITS.max_body_bytes - len(prefix))
    assert len(body) == LIMITS.max_body_bytes
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{LAYOUT.lb}"}
    answer = ask(connection(ca, "127.1.0.5"), "POST", f"/entries?m={under}", body=body, headers=headers)
    assert answer.status == 400, answer.status  # the app's validation: the message is too long
    line = wait_for_app_log(site, under)
    assert f'"POST /entries?m={under} HTTP/1.1" 400' in line, line
    assert metric(app_requests) == before + 1
    assert over not in app_log(site)


# ----------------------------------------------------------------------------------------------- /readyz


def test_readyz_exists_only_from_inside(site: LocalSite) -> None:
    ca = ca_file(site)
    marker = uuid.uuid4().hex
    outside = ask(connection(ca, "127.1.0.6"), "GET", f"/readyz?m={marker}")
    assert outside.status == 404, outside.status
    # HAProxy's own answers carry HSTS like every other one (http-after-response).
    assert outside.headers.get("strict-transport-security") == "max-age=63072000; includeSubDomains"
    inside = ask(connection(ca, INSIDE), "GET", "/readyz")
    assert inside.status != 404 and b'"writer"' in inside.body, (inside.status, inside.body[:200])
    assert inside.status == 200, inside.body  # the site's database is up
    time.sleep(0.3)
    assert marker not in app_log(site), "the outside /readyz reached the app"


@pytest.mark.parametrize("path", ["/%72eadyz", "/%72%65adyz"])
def test_readyz_spelled_with_percent_escapes_is_absent_too(site: LocalSite, path: str) -> None:
    answer = ask(connection(ca_file(site), "127.1.0.19"), "GET", path)
    assert answer.status == 404 and b'"writer"' not in answer.body, (path, answer.status, answer.body[:200])


# ------------------------------------------------------------------------------------- what is counted


def test_inside_clients_are_not_counted(site: LocalSite) -> None:
    conn = connection(ca_file(site), INSIDE)
    path = static_asset(site)
    statuses = Counter(ask(conn, "GET", path).status for _ in range(LIMITS.requests_per_10s + 20))
    statuses.update(post_entry(conn, uuid.uuid4().hex).status for _ in range(LIMITS.posts_per_minute + 2))
    assert statuses == Counter({200: LIMITS.requests_per_10s + 20, 303: LIMITS.posts_per_minute + 2}), statuses
    table = Runtime(site.admin_socket).command("show table https")
    assert f"key=::ffff:{INSIDE} " not in table, table
    assert f"key=::ffff:{INSIDE} " not in Runtime(site.admin_socket).command("show table posts")


def test_too_many_open_connections_are_refused_for_a_second(site: LocalSite) -> None:
    ca, path, source = ca_file(site), static_asset(site), "127.1.0.9"
    conns = [connection(ca, source) for _ in range(LIMITS.connections)]
    try:
        for conn in conns:
            conn.connect()
        assert ask(conns[0], "GET", path).status == 200  # exactly at the limit
        extra = connection(ca, source)
        refused = ask(extra, "GET", path)
        assert refused.status == 429 and refused.headers.get("retry-after") == "1", (refused.status, refused.headers)
        # While one too many are open, every connection of that client is refused.
        assert ask(conns[0], "GET", path).status == 429
        extra.close()
        deadline = time.monotonic() + 3
        while (status := ask(conns[0], "GET", path).status) == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200
    finally:
        for conn in conns:
            conn.close()


def test_too_many_new_connections_in_10_s_are_refused(site: LocalSite) -> None:
    ca, path, source = ca_file(site), static_asset(site), "127.1.0.10"
    for _ in range(LIMITS.new_connections_per_10s):
        conn = connection(ca, source)
        assert ask(conn, "GET", path).status == 200
        conn.close()
    conn = connection(ca, source)
    refused = ask(conn, "GET", path)
    assert refused.status == 429 and refused.headers.get("retry-after") == "10", (refused.status, refused.headers)
    conn.close()


def test_the_refused_counter_counts_every_refusal(site: LocalSite) -> None:
    """What the monitoring reads: every request the door refused (429, 413, and /readyz's 404 outside)."""
    ca, path = ca_file(site), static_asset(site)
    before = metric(DENIED)
    conn = connection(ca, "127.1.0.7")
    statuses = Counter(ask(conn, "GET", path).status for _ in range(LIMITS.requests_per_10s + 7))
    assert statuses == Counter({200: LIMITS.requests_per_10s, 429: 7}), statuses
    assert metric(DENIED) == before + 7
    # The other refusals at the door count too.
    assert ask(connection(ca, "127.1.0.17"), "GET", "/readyz").status == 404
    big = connection(ca, "127.1.0.17")
    big.putrequest("POST", "/api/entries")
    big.putheader("Content-Length", str(LIMITS.max_body_bytes + 1))
    big.endheaders()
    assert big.getresponse().status == 413
    big.close()
    assert metric(DENIED) == before + 9


def test_the_log_line_of_a_429_names_the_limit(site: LocalSite) -> None:
    source = "127.1.0.8"
    conn = connection(ca_file(site), source)
    path = static_asset(site)
    statuses = Counter(ask(conn, "GET", path).status for _ in range(LIMITS.requests_per_10s + 1))
    assert statuses[429] == 1
    post_conn = connection(ca_file(site), "127.1.0.18")
    assert [post_entry(post_conn, uuid.uuid4().hex).status for _ in range(LIMITS.posts_per_minute + 1)][-1] == 429
    log = site.lb_home / "haproxy.log"
    deadline = time.monotonic() + 2
    while True:
        lines = log.read_text(errors="replace").splitlines()
        refused = [line for line in lines if " 429 " in line]
        if any(f"{source}:" in line and "{requests}" in line for line in refused) and any(
            "127.1.0.18:" in line and "{posts}" in line for line in refused
        ):
            return
        assert time.monotonic() < deadline, f"no 429 line naming its limit in {log}: {lines[-5:]}"
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------- HTTP/2


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl (with HTTP/2)")
def test_the_request_limit_holds_over_http2(site: LocalSite, tmp_path: Path) -> None:
    """Browsers speak HTTP/2 to the site: one connection, many streams; the limit counts streams."""
    count = LIMITS.requests_per_10s + 5
    urls = tmp_path / "urls"
    asset = static_asset(site)
    urls.write_text("".join(f'url = "https://{LAYOUT.lb}{asset}?n={i}"\noutput = "/dev/null"\n' for i in range(count)))
    command = ["curl", "--http2", "--silent", "--interface", "127.1.0.11", "--cacert", ca_file(site)]
    command += ["--config", str(urls), "--write-out", "%{http_version} %{http_code} %header{retry-after}\n"]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    answers = Counter(line.strip() for line in out if line.strip())
    assert answers == Counter({"2 200": LIMITS.requests_per_10s, "2 429 10": 5}), answers
