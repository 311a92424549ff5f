"""The real HTTPS check against a TLS server on 127.0.0.1 with a CA made for the test."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.mariadb import CertificateAuthority
from ops.https import check_https

HOST = "www.foobar.test"


@dataclass
class Pki:
    ca_pem: str
    other_ca_pem: str
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with one server certificate for HOST, and an unrelated CA (the project's own local PKI helper)."""
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create(folder / "ca", "foobar test CA")
    other = CertificateAuthority.create(folder / "other", "someone else's CA")
    leaf = ca.issue_server_cert(folder / "leaf", HOST, dns_names=[HOST], days=20)
    return Pki(ca.cert.read_text(), other.cert.read_text(), Path(leaf.cert), Path(leaf.key))


def _serve(pki: Pki, hsts: str | None) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok\n"
            self.send_response(200)
            if hsts:
                self.send_header("Strict-Transport-Security", hsts)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def site(pki: Pki, request: pytest.FixtureRequest) -> Iterator[str]:
    server, thread = _serve(pki, getattr(request, "param", "max-age=63072000; includeSubDomains"))
    try:
        yield f"https://{HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_valid_chain_and_hsts_pass(pki: Pki, site: str) -> None:
    findings = check_https(site, "127.0.0.1", pki.ca_pem)
    assert [(f.check, f.status) for f in findings] == [("https chain", "ok"), ("https hsts", "ok")]
    assert "HTTP 200" in findings[0].detail
    assert "max-age=63072000" in findings[1].detail


@pytest.mark.parametrize("site", [None], indirect=True)
def test_missing_hsts_fails(pki: Pki, site: str) -> None:
    findings = check_https(site, "127.0.0.1", pki.ca_pem)
    assert [(f.check, f.status) for f in findings] == [("https chain", "ok"), ("https hsts", "fail")]
    assert "no Strict-Transport-Security header" in findings[1].detail


@pytest.mark.parametrize("site", ["max-age=300"], indirect=True)
def test_short_hsts_fails(pki: Pki, site: str) -> None:
    findings = check_https(site, "127.0.0.1", pki.ca_pem)
    assert findings[1].status == "fail"
    assert "below one year" in findings[1].detail


def test_untrusted_chain_fails(pki: Pki, site: str) -> None:
    [finding] = check_https(site, "127.0.0.1", pki.other_ca_pem)
    assert finding.status == "fail"
    assert "certificate not valid" in finding.detail


def test_wrong_host_name_fails(pki: Pki, site: str) -> None:
    wrong = site.replace(HOST, "other.foobar.test")
    [finding] = check_https(wrong, "127.0.0.1", pki.ca_pem)
    assert finding.status == "fail"
    assert "certificate not valid" in finding.detail


def test_nothing_listening_fails(pki: Pki) -> None:
    [finding] = check_https(f"https://{HOST}:9/", "127.0.0.1", pki.ca_pem, timeout=2)
    assert finding.status == "fail"
    assert "no HTTPS answer" in finding.detail
