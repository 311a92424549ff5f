"""The whole site on this machine, from the rendered configs: what a visitor and an operator see."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from local.site import Layout, LocalSite, alive
from tests.local.support import running, tls_context

# Addresses of their own, so a site brought up with `make up` can keep running during the tests.
LAYOUT = Layout(
    lb="127.0.110.1",
    web=("127.0.120.1", "127.0.120.2"),
    app=("127.0.130.1",),
    db_primary="127.0.140.1",
    db_replica="127.0.140.2",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSite]:
    yield from running(tmp_path_factory.mktemp("site"), LAYOUT)


ctx = tls_context


def get(site: LocalSite, path: str, **kw: object) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection(LAYOUT.lb, 443, context=ctx(site), timeout=10)
    conn.request(str(kw.get("method", "GET")), path, body=kw.get("body"), headers=kw.get("headers", {}))  # type: ignore[arg-type]
    return conn.getresponse()


def test_https_verifies_against_the_internal_ca(site: LocalSite) -> None:
    resp = get(site, "/")
    assert resp.status == 200
    # Without the CA the chain is not trusted: the certificate really comes from the internal CA.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://{LAYOUT.lb}/", context=ssl.create_default_context(), timeout=5)


def test_http_redirects_with_308(site: LocalSite) -> None:
    conn = http.client.HTTPConnection(LAYOUT.lb, 80, timeout=5)
    conn.request("GET", "/some/page?x=1")
    resp = conn.getresponse()
    assert resp.status == 308
    assert resp.getheader("Location") == f"https://{LAYOUT.lb}/some/page?x=1"


def test_hsts_on_static_and_dynamic_answers(site: LocalSite) -> None:
    for path in ("/", "/robots.txt", "/api/entries"):
        assert get(site, path).getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"


def served_by(site: LocalSite, path: str) -> set[str]:
    """Which backends' nginx logged a request carrying a unique marker."""
    marker = uuid.uuid4().hex
    sep = "&" if "?" in path else "?"
    resp = get(site, f"{path}{sep}m={marker}")
    assert resp.status == 200, (path, resp.status)
    resp.read()
    time.sleep(0.2)
    found = set()
    for home in sorted(site.dir.glob("*/logs/access.log")):
        if marker in home.read_text():
            found.add(home.parent.parent.name)
    return found


def test_static_paths_go_to_the_web_tier_and_the_rest_to_the_app(site: LocalSite) -> None:
    assert served_by(site, "/robots.txt") <= {"web1", "web2"} and served_by(site, "/robots.txt")
    assert served_by(site, "/favicon.ico") <= {"web1", "web2"}
    assert served_by(site, "/") == {"app1"}
    assert served_by(site, "/api/entries") == {"app1"}


def test_a_write_through_the_site_is_read_from_the_replica(site: LocalSite) -> None:
    message = f"hello {uuid.uuid4().hex}"
    body = json.dumps({"name": "Test", "message": message})
    resp = get(site, "/api/entries", method="POST", body=body, headers={"Content-Type": "application/json"})
    assert resp.status in (200, 201), resp.read()
    env = dict(line.split("=", 1) for line in (site.dir / "app1" / "app.env").read_text().splitlines())
    tls = {"ca": str(site.dir / "pki" / "ca.pem")}
    deadline = time.monotonic() + 10
    rows: tuple = ()
    while time.monotonic() < deadline and not rows:
        with (
            pymysql.connect(
                host=LAYOUT.db_replica,
                user=env["FOOBAR_DB_USER"],
                password=env["FOOBAR_DB_PASSWORD"],
                database=env["FOOBAR_DB_NAME"],
                ssl=tls,
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT message FROM entries WHERE message = %s", (message,))
            rows = cur.fetchall()
        time.sleep(0.2)
    assert rows, "the entry never reached the replica"
    listed = json.loads(get(site, "/api/entries").read())
    assert any(e["message"] == message for e in listed["entries"])


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")  # old versions on purpose
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_is_refused(site: LocalSite, version: ssl.TLSVersion) -> None:
    def handshake(max_version: ssl.TLSVersion) -> None:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(str(site.dir / "pki" / "ca.pem"))
        c.set_ciphers("ALL:@SECLEVEL=0")  # this client would speak old TLS; the server must not
        c.minimum_version = ssl.TLSVersion.TLSv1
        c.maximum_version = max_version
        with (
            socket.create_connection((LAYOUT.lb, 443), timeout=5) as raw,
            c.wrap_socket(raw, server_hostname=LAYOUT.lb),
        ):
            pass

    handshake(ssl.TLSVersion.TLSv1_2)  # the same client gets in with TLS 1.2
    with pytest.raises(ssl.SSLError):
        handshake(version)


def test_backend_hops_are_tls_only(site: LocalSite) -> None:
    for address in (*LAYOUT.web, *LAYOUT.app):
        conn = http.client.HTTPConnection(address, 443, timeout=5)  # plaintext to a backend port
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert resp.status == 400 and b"plain HTTP request was sent to HTTPS port" in resp.read()
        # Over TLS, with the internal name HAProxy verifies, the backend answers.
        c = ctx(site)
        tier = "web" if address in LAYOUT.web else "app"
        with (
            socket.create_connection((address, 443), timeout=5) as raw,
            c.wrap_socket(raw, server_hostname=f"{tier}.foobar.internal") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # And MySQL refuses a client that does not use TLS.
    env = dict(line.split("=", 1) for line in (site.dir / "app1" / "app.env").read_text().splitlines())
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(
            host=LAYOUT.db_primary, user=env["FOOBAR_DB_USER"], password=env["FOOBAR_DB_PASSWORD"], ssl_disabled=True
        )


def server_status(site: LocalSite) -> dict[str, str]:
    """HAProxy's view of each server, from its stats CSV on the private address."""
    with urllib.request.urlopen(f"http://{LAYOUT.lb}:8404/stats;csv", timeout=5) as resp:
        lines = resp.read().decode().lstrip("# ").splitlines()
    header = lines[0].split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") not in ("FRONTEND", "BACKEND", None):
            out[f"{row['pxname']}/{row['svname']}"] = row["status"]
    return out


def test_a_dead_web_backend_is_marked_down_and_requests_keep_succeeding(site: LocalSite) -> None:
    home = site.dir / "web2"
    pid = int((home / "nginx.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + 20
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            # The web backend's slots that hold a server (the others wait in maintenance for the agent).
            status = {k: v for k, v in server_status(site).items() if k.startswith("web") and v != "MAINT"}
            if any(v.startswith("DOWN") for v in status.values()):
                break
            for _ in range(5):  # traffic during the outage must not fail
                resp = get(site, "/robots.txt")
                assert resp.status == 200, (resp.status, resp.getheaders(), resp.read()[:300])
            time.sleep(0.3)
        assert sorted(status.values()) == ["DOWN", "UP"], status
        for _ in range(20):
            assert get(site, "/robots.txt").status == 200
    finally:
        while alive(pid):
            time.sleep(0.1)
        subprocess.run(["nginx", "-c", str(home / "nginx.conf"), "-p", str(home)], check=True)
        state = json.loads(site.state_file.read_text())  # keep `down` and `status` in step
        state["pids"]["web2"] = int((home / "nginx.pid").read_text())
        site.state_file.write_text(json.dumps(state))


def test_second_up_is_a_no_op(site: LocalSite) -> None:
    before = dict(site.running())
    assert site.up() == f"already running: {LAYOUT.url}"
    assert site.running() == before and all(before.values())


def test_down_leaves_nothing_and_a_stale_run_is_cleaned(tmp_path: Path) -> None:
    """Runs after the module's site: its own layout, killed half-way, then up again, then down."""
    layout = Layout(
        lb="127.0.111.1", web=("127.0.121.1",), app=("127.0.131.1",), db_primary="127.0.141.1", db_replica="127.0.141.2"
    )
    s = LocalSite(tmp_path / "stale", layout)
    s.up()
    pids = dict(s.running())
    state = json.loads(s.state_file.read_text())
    os.kill(state["pids"]["haproxy"], signal.SIGKILL)  # a crash: the run is now stale
    time.sleep(0.3)
    assert s.up() == layout.url  # cleaned and started again
    restarted, status = all(s.running().values()), s.status()
    s.down()
    assert restarted, status  # each pid is this run's, not one read from the stale run's pid file
    new_pids = json.loads(s.state_file.read_text())["pids"] if s.state_file.exists() else {}
    assert new_pids == {}
    for pid in [*state["pids"].values()]:
        assert not alive(pid)
    for _who, address, port in layout.listeners():
        with socket.socket() as sock:
            assert sock.connect_ex((address, port)) != 0, f"{address}:{port} still open after down"
    assert pids


def test_a_taken_port_is_named_and_nothing_is_started(tmp_path: Path) -> None:
    from local.site import LocalSiteError

    layout = Layout(
        lb="127.0.112.1", web=("127.0.122.1",), app=("127.0.132.1",), db_primary="127.0.142.1", db_replica="127.0.142.2"
    )
    with socket.socket() as squatter:
        squatter.bind(("127.0.122.1", 443))
        squatter.listen()
        s = LocalSite(tmp_path / "taken", layout)
        with pytest.raises(LocalSiteError, match=r"127\.0\.122\.1:443 \(for web1\) is taken"):
            s.up()
        assert s.running() == {}


def test_a_missing_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from local import site as local_site

    real = local_site._which
    monkeypatch.setattr(local_site, "_which", lambda name: None if name == "haproxy" else real(name))
    with pytest.raises(local_site.LocalSiteError, match=r"haproxy \(Debian package haproxy\).*make bootstrap"):
        LocalSite(tmp_path / "missing").up()
    assert local_site.main(["status", "--dir", str(tmp_path / "missing")]) == 0


def test_every_tls_listener_is_mozilla_intermediate(site: LocalSite) -> None:
    """sslyze checks the public side and each backend hop against Mozilla's "intermediate" profile."""
    import shutil
    import sys

    sslyze = shutil.which("sslyze") or str(Path(sys.executable).with_name("sslyze"))
    targets = [
        f"{LAYOUT.domain}:443{{{LAYOUT.lb}}}",
        f"web.foobar.internal:443{{{LAYOUT.web[0]}}}",
        f"app.foobar.internal:443{{{LAYOUT.app[0]}}}",
    ]
    result = subprocess.run(
        [sslyze, "--mozilla_config=intermediate", f"--certinfo_ca_file={site.dir / 'pki' / 'ca.pem'}", *targets],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.count("OK - Compliant") == 3


def test_the_counters_the_agents_read_move_with_requests(site: LocalSite) -> None:
    """HAProxy's Prometheus exporter and each nginx's stub_status count the requests made to the site."""
    import re

    def frontend_requests() -> float:
        with urllib.request.urlopen(f"http://{LAYOUT.lb}:8404/metrics", timeout=5) as resp:
            text = resp.read().decode()
        found = re.search(r'^haproxy_frontend_http_requests_total\{proxy="https"\} (\S+)$', text, re.M)
        assert found, "no frontend request counter for the https frontend"
        return float(found.group(1))

    def nginx_requests(address: str) -> int:
        with urllib.request.urlopen(f"http://{address}:{LAYOUT.status_port}/stub_status", timeout=5) as resp:
            return int(resp.read().decode().splitlines()[2].split()[2])  # "accepts handled requests"

    before_lb = frontend_requests()
    before_app = nginx_requests(LAYOUT.app[0])
    for _ in range(25):
        get(site, "/healthz").read()
    assert frontend_requests() - before_lb == 25
    # The app's nginx saw them too (plus HAProxy's own health checks meanwhile).
    assert nginx_requests(LAYOUT.app[0]) - before_app >= 25
