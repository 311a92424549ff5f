"""The rendered files really run: HAProxy -> nginx (web, app) -> a stand-in app server, all on loopback.

Local values of the kind the local-site runner uses: own loopback address per server, files under a
temp dir, no pid or log file outside it. HTTPS goes through HAProxy, which verifies the backends'
internal-CA certificates.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from node.discovery import Runtime
from tests.configs.checks import Pki, check_haproxy, check_nginx, peers_alone
from userdata import configs as c
from userdata.site import SITE_DIR, build_site

LB, WEB, APP = "127.77.10.1", "127.77.20.1", "127.77.30.1"
HTTP_PORT, HTTPS_PORT, STATS_PORT, BACKEND_PORT, STATUS_PORT = 18080, 18443, 18404, 19443, 18081


class EchoApp(BaseHTTPRequestHandler):
    """Stands in for gunicorn: answers with the headers it got."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _wait_port(host: str, port: int, deadline_s: float = 10) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[dict[str, Path]]:
    # Not under pytest's 0700 base dir: nginx workers (user nobody) must read the site.
    run = Path(tempfile.mkdtemp(prefix="foobar-configs-"))
    run.chmod(0o755)
    app = ThreadingHTTPServer(("127.0.0.1", 0), EchoApp)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    build_site(SITE_DIR, run / "site")
    for path in [run / "site", *(run / "site").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    procs: list[subprocess.Popen[bytes]] = []
    confs: dict[str, Path] = {}
    try:
        for role, address in (("web", WEB), ("app", APP)):
            d = run / role
            (d / "tmp").mkdir(parents=True)
            crt, key = pki.leaf(f"{role}.foobar.internal")
            common = dict(
                cert_file=str(crt),
                key_file=str(key),
                listen_address=address,
                https_port=BACKEND_PORT,
                status_address=address,
                status_port=STATUS_PORT,
                pid_file=str(d / "nginx.pid"),
                error_log=str(d / "error.log"),
                access_log=str(d / "access.log"),
                user="",
                temp_dir=str(d / "tmp"),
                worker_processes="1",
            )
            if role == "web":
                text = c.render_nginx_web(c.NginxWebConfig(root=str(run / "site"), **common))  # type: ignore[arg-type]
            else:
                upstream = f"127.0.0.1:{app.server_address[1]}"
                text = c.render_nginx_app(c.NginxAppConfig(upstream=upstream, **common))  # type: ignore[arg-type]
            conf = d / "nginx.conf"
            conf.write_text(text)
            check_nginx(conf, d)
            procs.append(subprocess.Popen(["nginx", "-c", str(conf), "-p", str(d), "-g", "daemon off;"]))
            confs[role] = conf
        haproxy = c.HaproxyConfig(
            stats_address=LB,
            cert_file=str(pki.combined("www.foobar.com")),
            ca_file=str(pki.ca),
            bind_address=LB,
            http_port=HTTP_PORT,
            https_port=HTTPS_PORT,
            stats_port=STATS_PORT,
            **c.UNPRIVILEGED,
            stats_socket=str(run / "haproxy.sock"),
            server_state_file=str(run / "server-state"),
        )
        (run / "server-state").write_text("1\n")
        cfg = run / "haproxy.cfg"
        cfg.write_text(c.render_haproxy_cfg(haproxy))
        peers = peers_alone(run / "peers.cfg", LB)
        check_haproxy(cfg, peers, LB)
        procs.append(subprocess.Popen(["haproxy", "-db", "-f", str(cfg), "-f", str(peers)], stdout=subprocess.DEVNULL))
        for host, port in ((WEB, BACKEND_PORT), (APP, BACKEND_PORT), (LB, HTTPS_PORT), (LB, STATS_PORT)):
            _wait_port(host, port)
        _fill_slots(run / "haproxy.sock", web=WEB, app=APP)
        _wait_backends_up()
        yield {"run": run, "ca": pki.ca, **confs}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        app.shutdown()
        shutil.rmtree(run, ignore_errors=True)


def _get(host: str, port: int, path: str, *, tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
         ) -> http.client.HTTPResponse:  # fmt: skip
    conn: http.client.HTTPConnection
    if tls:
        conn = http.client.HTTPSConnection(host, port, context=tls, timeout=10)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", path, headers={"Host": "www.foobar.com", **(headers or {})})
    response = conn.getresponse()
    response.read()
    return response


def _fill_slots(sock: Path, **tiers: str) -> None:
    """What the discovery agent does: one server per backend, set through the admin socket."""
    for tier, address in tiers.items():
        commands = [
            f"set server {tier}/{tier}1 addr {address} port {BACKEND_PORT}",
            f"set server {tier}/{tier}1 state ready",
        ]
        assert Runtime(sock).apply(commands) == []


def _wait_backends_up() -> None:
    """HAProxy marks servers up after its first TLS health check; wait for both."""
    end = time.monotonic() + 15
    while time.monotonic() < end:
        conn = http.client.HTTPConnection(LB, STATS_PORT, timeout=5)
        conn.request("GET", "/stats;csv")
        rows = conn.getresponse().read().decode().splitlines()
        status = {r.split(",")[0] + "/" + r.split(",")[1]: r.split(",")[17] for r in rows[1:] if r}
        if status.get("web/web1") == "UP" and status.get("app/app1") == "UP":
            return
        time.sleep(0.2)
    raise RuntimeError(f"backends not up: {status}")


def _client_tls(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the test connects by address; the name is checked by SNI-less verify below
    return ctx


def test_http_redirects_with_308(stack: dict[str, Path]) -> None:
    response = _get(LB, HTTP_PORT, "/some/page?x=1")
    assert response.status == 308
    assert response.getheader("Location") == "https://www.foobar.com/some/page?x=1"


def test_static_asset_through_haproxy_from_web_tier(stack: dict[str, Path]) -> None:
    css = next((stack["run"] / "site" / "static").glob("app.*.css")).name
    conn = http.client.HTTPSConnection(LB, HTTPS_PORT, context=_client_tls(stack["ca"]), timeout=10)
    conn.request("GET", f"/static/{css}", headers={"Host": "www.foobar.com", "Accept-Encoding": "gzip"})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200
    assert response.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    assert response.getheader("Strict-Transport-Security") == c.HSTS
    assert response.getheader("Server") is None
    assert response.getheader("Content-Encoding") == "gzip" and "Accept-Encoding" in response.getheader("Vary", "")
    assert body
    tls = conn.sock.version()  # type: ignore[union-attr]
    assert tls in ("TLSv1.2", "TLSv1.3")
    index = _get(LB, HTTPS_PORT, "/", tls=_client_tls(stack["ca"]))
    assert index.status == 200 and index.getheader("Content-Type", "").startswith("application/json"), "/ is the app"
    assert _get(LB, HTTPS_PORT, "/robots.txt", tls=_client_tls(stack["ca"])).status == 200
    missing = _get(LB, HTTPS_PORT, "/static/nope.css", tls=_client_tls(stack["ca"]))
    assert missing.status == 404


def test_app_tier_gets_forwarded_headers_from_haproxy_only(stack: dict[str, Path]) -> None:
    conn = http.client.HTTPSConnection(LB, HTTPS_PORT, context=_client_tls(stack["ca"]), timeout=10)
    conn.request("GET", "/guestbook", headers={"Host": "www.foobar.com", "X-Forwarded-For": "6.6.6.6"})
    response = conn.getresponse()
    seen = json.loads(response.read())
    assert response.status == 200 and seen["path"] == "/guestbook"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert "6.6.6.6" not in headers["x-forwarded-for"], "a client cannot forge its address"
    assert headers["x-forwarded-for"].split(",")[0].strip() == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers.get("connection", "") != "close", "upstream keep-alive: nginx clears Connection"
    assert response.getheader("Strict-Transport-Security") == c.HSTS


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_policy(stack: dict[str, Path]) -> None:
    tls12 = _client_tls(stack["ca"])
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((LB, HTTPS_PORT), timeout=10) as raw, tls12.wrap_socket(raw) as conn:
        assert conn.version() == "TLSv1.2"
        cipher = conn.cipher()
        assert cipher is not None and cipher[0] in c.TLS12_CIPHERS.split(":")
    ctx = _client_tls(stack["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(LB, HTTPS_PORT, "/", tls=ctx)


def test_status_listeners_are_local(stack: dict[str, Path]) -> None:
    status = _get(WEB, STATUS_PORT, "/stub_status")
    assert status.status == 200
    metrics = _get(LB, STATS_PORT, "/metrics")
    assert metrics.status == 200
    with pytest.raises(ConnectionRefusedError):
        _get(LB, HTTPS_PORT + 1, "/metrics")


def test_haproxy_refuses_backend_with_wrong_certificate(stack: dict[str, Path], pki: Pki, tmp_path: Path) -> None:
    """verify required + verifyhost: a backend presenting another role's certificate is marked down."""
    wrong = c.HaproxyConfig(
        stats_address="127.77.10.2",
        cert_file=str(pki.combined("www.foobar.com")),
        ca_file=str(pki.ca),
        bind_address="127.77.10.2",
        http_port=HTTP_PORT,
        https_port=HTTPS_PORT,
        stats_port=STATS_PORT,
        **c.UNPRIVILEGED,
        stats_socket=str(tmp_path / "haproxy.sock"),
        server_state_file=str(tmp_path / "server-state"),
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(c.render_haproxy_cfg(wrong).replace("inter 5s", "inter 200ms"))
    peers = peers_alone(tmp_path / "peers.cfg", "127.77.10.2")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg), "-f", str(peers)], stdout=subprocess.DEVNULL)
    try:
        _wait_port("127.77.10.2", HTTPS_PORT)
        _fill_slots(tmp_path / "haproxy.sock", web=APP, app=APP)  # the app's certificate says app.foobar.internal
        end = time.monotonic() + 10
        status = 0
        while time.monotonic() < end:
            status = _get("127.77.10.2", HTTPS_PORT, "/static/x.css", tls=_client_tls(pki.ca)).status
            if status == 503:
                break
            time.sleep(0.2)
        assert status == 503
        # The app backend (right name) still works through the same HAProxy.
        assert _get("127.77.10.2", HTTPS_PORT, "/", tls=_client_tls(pki.ca)).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
