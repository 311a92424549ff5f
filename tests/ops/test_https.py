"""The real HTTPS check against a TLS server on 127.0.0.1 with a CA made for the test."""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.https import check_https

HOST = "www.foobar.test"


@dataclass
class Pki:
    ca_pem: str
    other_ca_pem: str
    cert_file: Path
    key_file: Path


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca_key, ca = _ca("foobar test CA")
    _, other = _ca("someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=20))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("pki")
    cert_file, key_file = folder / "leaf.pem", folder / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pem = serialization.Encoding.PEM
    return Pki(ca.public_bytes(pem).decode(), other.public_bytes(pem).decode(), cert_file, key_file)


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
