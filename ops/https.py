"""The HTTPS check: a verified TLS chain for the domain and an HSTS header, as a browser would see it."""

from __future__ import annotations

import datetime as dt
import http.client
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Status = Literal["ok", "fail", "skip"]

MIN_HSTS_SECONDS = 31_536_000  # one year; the site sends two (DESIGN.md section 5)
_MAX_AGE = re.compile(r"max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One line of the verify report."""

    check: str
    subject: str
    status: Status
    detail: str


# (url, address to connect to or None for DNS, extra CA bundle PEM or None for the system's) -> findings
HttpsCheck = Callable[[str, str | None, str | None], list[Finding]]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to a given address but verifies the certificate for the URL's host name (SNI too)."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def check_https(url: str, address: str | None, ca_pem: str | None, timeout: float = 10.0) -> list[Finding]:
    """GET the URL over TLS 1.2+, verifying the chain and host name, and read the HSTS header."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme != "https" or not host:
        return [Finding("https", url, "fail", "the url output is not an https:// URL")]
    port = parts.port or 443
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    conn = _PinnedHTTPSConnection(host, port, address or host, context, timeout)
    subject = f"{host}:{port}" + (f" via {address}" if address and address != host else "")
    try:
        conn.request("GET", parts.path or "/", headers={"User-Agent": "foobar-ops-verify"})
        response = conn.getresponse()
        response.read(65536)
        cert = conn.sock.getpeercert() if isinstance(conn.sock, ssl.SSLSocket) else None
        version = conn.sock.version() if isinstance(conn.sock, ssl.SSLSocket) else "?"
    except ssl.SSLCertVerificationError as err:
        return [Finding("https chain", subject, "fail", f"certificate not valid: {err.verify_message}")]
    except (OSError, http.client.HTTPException) as err:
        return [Finding("https chain", subject, "fail", f"no HTTPS answer: {err}")]
    finally:
        conn.close()

    findings: list[Finding] = []
    expires = ""
    if cert and cert.get("notAfter"):
        not_after = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), dt.UTC)
        expires = f", certificate valid until {not_after:%Y-%m-%d}"
    answer_ok = response.status < 400
    findings.append(
        Finding(
            "https chain",
            subject,
            "ok" if answer_ok else "fail",
            f"{version}, chain valid for {host}, HTTP {response.status}{expires}",
        )
    )
    hsts = response.getheader("Strict-Transport-Security")
    match = _MAX_AGE.search(hsts or "")
    if not hsts:
        findings.append(Finding("https hsts", subject, "fail", "no Strict-Transport-Security header"))
    elif not match or int(match.group(1)) < MIN_HSTS_SECONDS:
        findings.append(Finding("https hsts", subject, "fail", f"max-age below one year: {hsts}"))
    else:
        findings.append(Finding("https hsts", subject, "ok", hsts))
    return findings
