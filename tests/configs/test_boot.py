"""The boot jobs (TLS fetch, ACM refresh, app.env, app archive) against fake AWS clients."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from userdata.render import APP_DIR, BOOT_MODULE, app_archive, shipped_module
from userdata.scripts import foobar_boot as boot

KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAsecret\n-----END PRIVATE KEY-----"


class FakeSsm:
    """Parameters appear after ``appear_after`` calls, like SSM while Pulumi is still creating them."""

    def __init__(self, params: dict[str, str], appear_after: int = 0) -> None:
        self.params, self.appear_after, self.calls = params, appear_after, 0
        self.decrypt: list[bool] = []

    def get_parameters(self, Names: list[str], WithDecryption: bool) -> dict[str, Any]:
        self.calls += 1
        self.decrypt.append(WithDecryption)
        if self.calls <= self.appear_after:
            return {"Parameters": [], "InvalidParameters": Names}
        return {"Parameters": [{"Name": n, "Value": self.params[n]} for n in Names if n in self.params]}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fetch_tls_waits_for_parameters_and_writes_keys_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm = FakeSsm({"/p/tls-cert": "CERT", "/p/tls-key": KEY, "/p/ca-cert": "CA"}, appear_after=2)
    sleeps: list[float] = []
    config = {
        "param_path": "/p",
        "files": [
            {"path": str(tmp_path / "certs" / "site.pem"), "parts": ["tls-cert", "tls-key"], "mode": 0o600},
            {"path": str(tmp_path / "ca.pem"), "parts": ["ca-cert"], "mode": 0o644},
        ],
    }
    assert boot.fetch_tls(config, ssm, sleep=sleeps.append) is True
    assert sleeps == [2.0, 4.0] and all(ssm.decrypt)
    site = tmp_path / "certs" / "site.pem"
    assert site.read_text() == f"CERT\n{KEY}\n" and _mode(site) == 0o600
    assert _mode(tmp_path / "ca.pem") == 0o644
    assert boot.fetch_tls(config, ssm, sleep=sleeps.append) is False, "unchanged files: no reload"
    assert "secret" not in capsys.readouterr().err


def test_fetch_tls_gives_up_only_when_bounded(tmp_path: Path) -> None:
    config = {"param_path": "/p", "files": [{"path": str(tmp_path / "k"), "parts": ["tls-key"], "mode": 0o600}]}
    with pytest.raises(TimeoutError, match="/p"):
        boot.fetch_tls(config, FakeSsm({}), sleep=lambda _: None, attempts=3)
    assert not (tmp_path / "k").exists()


def test_fetch_tls_keeps_an_exported_certificate(tmp_path: Path) -> None:
    site = tmp_path / "site.pem"
    site.write_text("ACM\n")
    config = {
        "param_path": "/p",
        "files": [{"path": str(site), "parts": ["tls-cert", "tls-key"], "mode": 0o600, "keep_existing": True}],
    }
    assert boot.fetch_tls(config, FakeSsm({"/p/tls-cert": "C", "/p/tls-key": KEY})) is False
    assert site.read_text() == "ACM\n"


def _certificate() -> tuple[str, ec.EllipticCurvePrivateKey]:
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "www.foobar.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key


class FakeAcm:
    """Returns the key encrypted with the caller's passphrase, as ACM's ExportCertificate does."""

    def __init__(self, issued: bool = True) -> None:
        self.cert, self.key = _certificate()
        self.issued = issued
        self.passphrases: list[bytes] = []

    def export_certificate(self, CertificateArn: str, Passphrase: bytes) -> dict[str, str]:
        self.passphrases.append(Passphrase)
        if not self.issued:
            err = RuntimeError("pending")
            err.response = {"Error": {"Code": "RequestInProgressException"}}  # type: ignore[attr-defined]
            raise err
        encrypted = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(Passphrase),
        )
        return {"Certificate": self.cert, "CertificateChain": "CHAIN-PEM", "PrivateKey": encrypted.decode()}


def test_refresh_cert_writes_one_decrypted_pem_0600(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acm, pem = FakeAcm(), tmp_path / "site.pem"
    pem.write_text("INTERNAL\n")
    config = {"certificate_arn": "arn:aws:acm:r:1:certificate/x", "pem_path": str(pem)}
    assert boot.refresh_cert(config, acm) is True
    text = pem.read_text()
    assert text.startswith(acm.cert) and "CHAIN-PEM" in text and "ENCRYPTED" not in text
    key = serialization.load_pem_private_key(text[text.index("-----BEGIN PRIVATE KEY") :].encode(), password=None)
    assert key.public_key() == acm.key.public_key()
    assert _mode(pem) == 0o600
    assert boot.refresh_cert(config, acm) is False, "same certificate: no reload"
    assert len(set(acm.passphrases)) == 2 and all(len(p) >= 32 for p in acm.passphrases), "fresh passphrase each time"
    err = capsys.readouterr().err
    assert all(p.decode() not in err for p in acm.passphrases) and "PRIVATE KEY" not in err


def test_refresh_cert_keeps_internal_certificate_until_issued(tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    pem.write_text("INTERNAL\n")
    config = {"certificate_arn": "arn:aws:acm:r:1:certificate/x", "pem_path": str(pem)}
    assert boot.refresh_cert(config, FakeAcm(issued=False)) is False
    assert pem.read_text() == "INTERNAL\n"
    assert boot.refresh_cert({"certificate_arn": "", "pem_path": str(pem)}, FakeAcm()) is False


def test_app_env_has_endpoints_and_no_password(tmp_path: Path) -> None:
    ssm = FakeSsm(
        {
            "/a/db-writer": "w.rds.example",
            "/a/db-reader": "r.rds.example",
            "/a/db-secret-arn": "arn:aws:secretsmanager:r:1:secret:rds!db-1",
        },
        appear_after=1,
    )
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"

    config = {
        "region": "eu-west-1",
        "param_path": "/a",
        "env_file": str(tmp_path / "app.env"),
        "ca_file": str(tmp_path / "rds-ca.pem"),
        "ca_url": "https://truststore.example/global-bundle.pem",
        "db_name": "foobar",
        "db_port": 3306,
    }
    text = boot.app_env(config, ssm, fetch=fetch, sleep=lambda _: None)
    env = dict(line.split("=", 1) for line in text.splitlines())
    assert env == {
        "FOOBAR_DB_WRITER_HOST": "w.rds.example",
        "FOOBAR_DB_READER_HOST": "r.rds.example",
        "FOOBAR_DB_PORT": "3306",
        "FOOBAR_DB_NAME": "foobar",
        "FOOBAR_DB_SECRET_ARN": "arn:aws:secretsmanager:r:1:secret:rds!db-1",
        "FOOBAR_REGION": "eu-west-1",
        "FOOBAR_DB_CA_FILE": str(tmp_path / "rds-ca.pem"),
    }
    assert (tmp_path / "app.env").read_text() == text and fetched == [config["ca_url"]]
    assert b"BEGIN CERTIFICATE" in (tmp_path / "rds-ca.pem").read_bytes()


def test_fetch_app_checks_hash_and_unpacks(tmp_path: Path) -> None:
    archive = app_archive()
    digest = hashlib.sha256(archive).hexdigest()

    class FakeS3:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            return {"Body": io.BytesIO(self.data)}

    config = {"archive_url": "s3://b/app.tar.gz", "sha256": digest, "dest": str(tmp_path / "opt")}
    with pytest.raises(RuntimeError, match="sha256"):
        boot.fetch_app(config, FakeS3(archive + b"x"), sleep=lambda _: None, attempts=2)
    boot.fetch_app(config, FakeS3(archive), sleep=lambda _: None)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = {m.name for m in tar.getmembers()}
    assert "app/main.py" in names and not any("__pycache__" in n for n in names)
    assert (tmp_path / "opt" / "app" / "main.py").read_bytes() == (APP_DIR / "main.py").read_bytes()
    assert app_archive() == archive, "reproducible: same code, same bytes"


def test_shipped_module_is_the_same_program() -> None:
    shipped = shipped_module(BOOT_MODULE.read_text())
    namespace: dict[str, Any] = {"__name__": "shipped"}
    exec(compile(shipped, "foobar_boot.py", "exec"), namespace)
    for job in ("fetch_tls", "refresh_cert", "app_env", "fetch_app", "write_atomic", "main"):
        assert callable(namespace[job])
    assert '"""' not in shipped and "# " not in shipped.split("\n", 1)[1]
    assert namespace["main"](["nonsense"]) == 2


def test_site_archive_unpacks_as_the_web_root(tmp_path: Path) -> None:
    """The web tier fetches its fingerprinted site with the same job, into /var/www/foobar."""
    from userdata.render import site_archive
    from userdata.site import fingerprint_files, read_site

    archive = site_archive()
    assert site_archive() == archive, "reproducible"

    class FakeS3:
        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            return {"Body": io.BytesIO(archive)}

    config = {
        "archive_url": "s3://b/site.tar.gz",
        "sha256": hashlib.sha256(archive).hexdigest(),
        "dest": str(tmp_path / "www"),
        "top": "foobar",
    }
    boot.fetch_app(config, FakeS3(), sleep=lambda _: None)
    files, renames = fingerprint_files(read_site())
    assert renames, "assets are fingerprinted"
    for rel, content in files.items():
        assert (tmp_path / "www" / "foobar" / rel).read_bytes() == content
