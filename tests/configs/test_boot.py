"""The boot jobs (TLS fetch, ACM refresh, app.env, app archive, private address, launch hook) against
fake AWS clients, a fake instance metadata service and a TLS server on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import ssl
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from local.mariadb import CertificateAuthority
from tests.clock import Clock
from tests.configs.checks import Pki, make_pki
from userdata.render import APP_DIR, BOOT_MODULE, NODE_DIR, app_archive, node_archive, shipped_module
from userdata.scripts import foobar_boot as boot


def _pair() -> tuple[str, str]:
    """A certificate and its unencrypted key, as Pulumi stores them in tls-cert and tls-key."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertificateAuthority.create(Path(tmp), days=2)
        files = ca.issue_server_cert(Path(tmp), "www.foobar.com", dns_names=["www.foobar.com"], days=1)
        return files.cert.read_text(), files.key.read_text()


CERT, KEY = _pair()
NEW_CERT, NEW_KEY = _pair()
KEY_BODY = KEY.splitlines()[1]


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
    ssm = FakeSsm({"/p/tls-cert": CERT, "/p/tls-key": KEY, "/p/ca-cert": "CA"}, appear_after=2)
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
    assert site.read_text() == f"{CERT.strip()}\n{KEY.strip()}\n" and _mode(site) == 0o600
    assert _mode(tmp_path / "ca.pem") == 0o644
    assert boot.fetch_tls(config, ssm, sleep=sleeps.append) is False, "unchanged files: no reload"
    assert KEY_BODY not in capsys.readouterr().err


def test_fetch_tls_gives_up_only_when_bounded(tmp_path: Path) -> None:
    config = {"param_path": "/p", "files": [{"path": str(tmp_path / "k"), "parts": ["tls-key"], "mode": 0o600}]}
    clock = Clock()
    with pytest.raises(TimeoutError, match="/p"):
        boot.fetch_tls(config, FakeSsm({}), sleep=clock.sleep, clock=clock, deadline_s=30)
    assert not (tmp_path / "k").exists()
    assert sum(clock.sleeps) == 30, "waits exactly until the deadline, then stops"


def test_fetch_tls_keeps_an_exported_certificate(tmp_path: Path) -> None:
    site = tmp_path / "site.pem"
    site.write_text("ACM\n")
    config = {
        "param_path": "/p",
        "files": [{"path": str(site), "parts": ["tls-cert", "tls-key"], "mode": 0o600, "keep_existing": True}],
    }
    assert boot.fetch_tls(config, FakeSsm({"/p/tls-cert": CERT, "/p/tls-key": KEY})) is False
    assert site.read_text() == "ACM\n"


class FakeAcm:
    """Returns the key encrypted with the caller's passphrase, as ACM's ExportCertificate does."""

    def __init__(self, issued: bool = True) -> None:
        self.cert, key = _pair()
        self.key = serialization.load_pem_private_key(key.encode(), password=None)
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
    clock = Clock()
    with pytest.raises(TimeoutError, match="sha256"):
        boot.fetch_app(config, FakeS3(archive + b"x"), sleep=clock.sleep, clock=clock, deadline_s=10)
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
    functions = ("install", "retry", "fetch_tls", "refresh_cert", "app_env", "fetch_app", "write_atomic", "main")
    for function in (*functions, "private_address", "launch_hook", "healthz", "imds"):
        assert callable(namespace[function])
    assert set(namespace["JOBS"]) == {
        "install",
        "fetch-tls",
        "refresh-cert",
        "app-env",
        "fetch-app",
        "private-address",
        "launch-hook",
    }
    assert '"""' not in shipped and "# " not in shipped.split("\n", 1)[1]
    assert " -> " not in shipped, "type hints are for mypy here, not for the server"
    assert namespace["main"](["nonsense"]) == 2
    # A role's module holds the jobs asked for and what they use, nothing else.
    web = shipped_module(BOOT_MODULE.read_text(), {"install", "fetch-tls"})
    namespace = {"__name__": "shipped"}
    exec(compile(web, "foobar_boot.py", "exec"), namespace)
    assert set(namespace["JOBS"]) == {"install", "fetch-tls"} and "retry" in namespace and "key_matches" in namespace
    assert not {"export_certificate", "refresh_cert", "app_env", "fetch_app", "launch_hook", "imds"} & set(namespace)
    # ... and only the imports and constants they use: no typing left once the hints are gone.
    assert not {"hashlib", "tarfile", "ssl", "ipaddress", "TypeVar", "annotations", "IMDS"} & set(namespace)
    assert "from __future__" not in web
    with pytest.raises(ValueError, match="no job"):
        shipped_module(BOOT_MODULE.read_text(), {"install", "bogus"})


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


# Retries: every wait of the boot is bounded, logged, and says what it waited for.


def test_retry_backs_off_logs_each_attempt_and_stops_at_the_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    clock, calls = Clock(), []

    def never() -> None:
        calls.append(clock.now)
        raise boot.NotReady("mirror not reachable")

    with pytest.raises(TimeoutError, match=r"installing x: gave up after 9 attempts \(mirror not reachable\)"):
        boot.retry("installing x", never, deadline_s=200, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [2, 4, 8, 16, 32, 60, 60, 18], "doubling to 60 s, the last wait cut at the deadline"
    assert calls[-1] == 200 and clock.now == 200, "one last attempt at the deadline, then stop"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 9 and all("installing x: attempt" in line and "mirror not reachable" in line for line in err)
    assert "retrying in 2s" in err[0] and "giving up after 200s" in err[-1]


def test_retry_returns_once_it_succeeds_and_logs_only_its_own_messages(capsys: pytest.CaptureFixture[str]) -> None:
    clock, outcomes = Clock(), [RuntimeError(f"token {KEY_BODY}"), boot.NotReady("not yet"), "done"]

    def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    assert boot.retry("job", flaky, deadline_s=60, sleep=clock.sleep, clock=clock) == "done"
    assert clock.sleeps == [2, 4]
    err = capsys.readouterr().err
    assert "(RuntimeError)" in err and "(not yet)" in err and "done at attempt 3" in err
    assert KEY_BODY not in err, "another exception's text may quote a value: only its type is logged"


def test_retry_without_deadline_waits_for_ever() -> None:
    clock, left = Clock(), [boot.NotReady("db")] * 50

    def db() -> int:
        if left:
            raise left.pop()
        return 1

    assert boot.retry("db", db, deadline_s=0, sleep=clock.sleep, clock=clock) == 1 and len(clock.sleeps) == 50


class FakeApt:
    """Stands in for dpkg and apt-get: ``install`` fails ``failures`` times (no route out yet)."""

    def __init__(self, clock: Clock, failures: int) -> None:
        self.clock, self.failures = clock, failures
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, cmd: Sequence[str]) -> int:
        self.calls.append(tuple(cmd))
        self.clock.now += 1  # apt takes a moment
        if cmd[-1] != "update" and "install" in cmd and self.failures:
            self.failures -= 1
            return 100
        return 0


def _plan(tmp_path: Path, deadline_s: int = 900) -> dict[str, Any]:
    staged = tmp_path / "etc-foobar" / "haproxy.cfg"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_text("global\n")
    return {
        "packages": ["haproxy", "python3-boto3"],
        "deadline_s": deadline_s,
        "files": [{"src": str(staged), "dest": str(tmp_path / "etc-haproxy" / "haproxy.cfg"), "mode": 0o644}],
    }


def test_install_retries_apt_until_the_mirror_answers_then_places_the_config(tmp_path: Path) -> None:
    clock = Clock()
    apt, plan = FakeApt(clock, failures=3), _plan(tmp_path)
    boot.install(plan, run=apt, sleep=clock.sleep, clock=clock)
    installs = [c for c in apt.calls if "install" in c]
    assert len(installs) == 4 and installs[-1][-2:] == ("haproxy", "python3-boto3")
    assert [c[-1] for c in apt.calls[:3]] == ["-a", "update", "python3-boto3"], "dpkg --configure -a, update, install"
    assert {"Acquire::Retries=3", "DPkg::Lock::Timeout=300", "-y"} <= set(installs[0])
    assert clock.sleeps == [2, 4, 8]
    dest = tmp_path / "etc-haproxy" / "haproxy.cfg"
    assert dest.read_text() == "global\n" and _mode(dest) == 0o644


def test_install_gives_up_at_its_deadline_and_leaves_the_daemon_alone(tmp_path: Path) -> None:
    clock = Clock()
    apt, plan = FakeApt(clock, failures=10**6), _plan(tmp_path, deadline_s=300)
    with pytest.raises(TimeoutError, match="apt-get install exited 100"):
        boot.install(plan, run=apt, sleep=clock.sleep, clock=clock)
    assert 300 <= clock.now < 310, "stops at the deadline (plus the last attempt), never loops for ever"
    assert not (tmp_path / "etc-haproxy").exists(), "no daemon config without its package"


def _fake_apt_bin(bin_dir: Path, record: Path, failures: int) -> None:
    bin_dir.mkdir(parents=True)
    script = f"""#!/bin/sh
echo "$DEBIAN_FRONTEND $*" >> {record}
case "$*" in
  *" install "*)
    n=$(grep -c ' install ' {record})
    [ "$n" -le {failures} ] && {{ echo "E: Unable to locate package haproxy" >&2; exit 100; }}
    ;;
esac
exit 0
"""
    for name in ("apt-get", "dpkg"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)


def test_install_with_an_apt_get_that_fails_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real job and subprocesses: only apt-get and dpkg are stand-ins, and the clock."""
    record = tmp_path / "calls"
    _fake_apt_bin(tmp_path / "bin", record, failures=2)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    clock, plan = Clock(), _plan(tmp_path)
    boot.install(plan, sleep=clock.sleep, clock=clock)
    calls = record.read_text().splitlines()
    assert [c for c in calls if " install " in c][-1].endswith("install haproxy python3-boto3")
    assert len([c for c in calls if " install " in c]) == 3 and clock.sleeps == [2, 4]
    assert all(c.startswith("noninteractive ") for c in calls), "no debconf prompt at boot"
    assert (tmp_path / "etc-haproxy" / "haproxy.cfg").read_text() == "global\n"


def test_shipped_install_job_fails_visibly(tmp_path: Path) -> None:
    """As cloud-init runs it: the shipped executable, apt-get never succeeding, a 1-second deadline."""
    record = tmp_path / "calls"
    _fake_apt_bin(tmp_path / "bin", record, failures=10**6)
    program = tmp_path / "foobar-boot"
    program.write_text(shipped_module(BOOT_MODULE.read_text(), {"install"}))
    plan = tmp_path / "packages.json"
    plan.write_text(json.dumps(_plan(tmp_path, deadline_s=1)))
    result = subprocess.run(
        [sys.executable, str(program), "install", str(plan)],
        env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("foobar-boot:")]
    assert "attempt 1 failed (apt-get install exited 100, update 0); retrying" in lines[0]
    assert "giving up after 1s" in lines[-2] and lines[-1].startswith("foobar-boot: install failed: TimeoutError")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "etc-haproxy").exists()


# Certificate renewal: Pulumi re-issues, the timer's run picks it up.


def test_fetch_tls_waits_until_the_certificate_matches_its_key(tmp_path: Path) -> None:
    """Pulumi writes tls-cert and tls-key one after the other: a run between the two waits."""

    class Renewing(FakeSsm):
        def get_parameters(self, Names: list[str], WithDecryption: bool) -> dict[str, Any]:
            if self.calls == 2:  # the key parameter catches up
                self.params["/p/tls-key"] = NEW_KEY
            return super().get_parameters(Names, WithDecryption)

    ssm, clock = Renewing({"/p/tls-cert": NEW_CERT, "/p/tls-key": KEY}), Clock()
    key = tmp_path / "server.key"
    files: list[dict[str, Any]] = [
        {"path": str(key), "parts": ["tls-key"], "mode": 0o600},
        {"path": str(tmp_path / "server.crt"), "parts": ["tls-cert"], "mode": 0o644},
    ]
    config = {"param_path": "/p", "files": files}
    assert boot.fetch_tls(config, ssm, sleep=clock.sleep, clock=clock) is True
    assert clock.sleeps == [2, 4] and key.read_text().strip() == NEW_KEY.strip()
    assert not boot.key_matches(NEW_CERT, KEY) and boot.key_matches(CERT, KEY)


def test_renewed_internal_certificate_replaces_the_fallback_but_never_the_acm_export(tmp_path: Path) -> None:
    internal, site = tmp_path / "internal.pem", tmp_path / "site.pem"
    config = {
        "param_path": "/p",
        "files": [
            {"path": str(internal), "parts": ["tls-cert", "tls-key"], "mode": 0o600},
            {"path": str(site), "parts": ["tls-cert", "tls-key"], "mode": 0o600, "keep_existing": True},
        ],
    }
    assert boot.fetch_tls(config, FakeSsm({"/p/tls-cert": CERT, "/p/tls-key": KEY})) is True
    assert site.read_bytes() == internal.read_bytes()
    # ACM not issued yet, the internal certificate renewed: the fallback that serves is renewed too.
    assert boot.fetch_tls(config, FakeSsm({"/p/tls-cert": NEW_CERT, "/p/tls-key": NEW_KEY})) is True
    assert site.read_bytes() == internal.read_bytes() and NEW_CERT.strip() in site.read_text()
    # Once the exported ACM certificate serves, renewals of the internal one leave it alone.
    site.write_text("ACM\n")
    assert boot.fetch_tls(config, FakeSsm({"/p/tls-cert": CERT, "/p/tls-key": KEY})) is True
    assert site.read_text() == "ACM\n" and CERT.strip() in internal.read_text()


def test_timer_run_reloads_the_daemon_only_when_a_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``foobar-boot fetch-tls`` as foobar-tls.service runs it, with fake SSM and systemctl."""
    ssm = FakeSsm({"/p/tls-cert": CERT, "/p/tls-key": KEY})
    reloads: list[str] = []
    monkeypatch.setattr(boot, "_client", lambda service, region: ssm)
    monkeypatch.setattr(boot, "reload_unit", reloads.append)
    plan = tmp_path / "tls.json"
    files = [
        {"path": str(tmp_path / "tls" / "server.crt"), "parts": ["tls-cert"], "mode": 0o644},
        {"path": str(tmp_path / "tls" / "server.key"), "parts": ["tls-key"], "mode": 0o600},
    ]
    plan.write_text(json.dumps({"region": "r", "param_path": "/p", "files": files, "reload_unit": "nginx"}))
    assert boot.main(["fetch-tls", str(plan)]) == 0 and reloads == ["nginx"]
    assert boot.main(["fetch-tls", str(plan)]) == 0 and reloads == ["nginx"], "nothing changed: no reload"
    ssm.params.update({"/p/tls-cert": NEW_CERT, "/p/tls-key": NEW_KEY})  # pulumi up re-issued it
    assert boot.main(["fetch-tls", str(plan)]) == 0 and reloads == ["nginx", "nginx"]
    key = tmp_path / "tls" / "server.key"
    assert key.read_text().strip() == NEW_KEY.strip() and _mode(key) == 0o600
    assert KEY_BODY not in capsys.readouterr().err and NEW_KEY.splitlines()[1] not in capsys.readouterr().err


def test_a_failed_job_is_one_log_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Denied:
        def get_parameters(self, **_: Any) -> dict[str, Any]:
            raise RuntimeError(f"AccessDenied, value {KEY_BODY}")

    monkeypatch.setattr(boot, "_client", lambda service, region: Denied())
    plan = tmp_path / "tls.json"
    plan.write_text(json.dumps({"region": "r", "param_path": "/p", "files": [], "deadline_s": 0.01}))
    assert boot.main(["fetch-tls", str(plan)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("foobar-boot: fetch-tls failed: TimeoutError: TLS parameters under /p")
    assert KEY_BODY not in err and "Traceback" not in err
    assert boot.main(["fetch-tls", str(tmp_path / "missing.json")]) == 1


def _agent_setup_run(tmp_path: Path, dpkg_failures: int) -> tuple[int, list[str], list[str], str]:
    """The agent's setup script with stand-ins for systemctl, curl, dpkg, sleep and the agent: its
    exit status, the ``dpkg -i`` calls, the sleeps, and curl's arguments."""
    from userdata.agent import setup_script

    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir(parents=True)
    record.mkdir()
    stubs = {
        "systemctl": "exit 0",
        "dpkg-query": "exit 1",
        "sleep": f'echo "$1" >> {record}/sleep',
        "curl": f'echo "$*" > {record}/curl; while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; shift; done',
        "dpkg": (
            f'[ "$1" = --print-architecture ] && {{ echo amd64; exit 0; }}\necho "$*" >> {record}/dpkg\n'
            f'[ "$(wc -l < {record}/dpkg)" -gt {dpkg_failures} ] || {{ echo "dpkg: error: lock" >&2; exit 2; }}'
        ),
        "agent-ctl": "exit 0",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = setup_script("lb", "dev", region="eu-west-1", agent_ctl=str(bin_dir / "agent-ctl"))
    result = subprocess.run(
        ["bash", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True, check=False
    )

    def lines(name: str) -> list[str]:
        return (record / name).read_text().splitlines() if (record / name).exists() else []

    return result.returncode, lines("dpkg"), lines("sleep"), (record / "curl").read_text()


def test_agent_install_waits_for_the_dpkg_lock_then_gives_up(tmp_path: Path) -> None:
    """At first boot apt-daily may hold dpkg's lock: the agent's .deb is retried, boundedly."""
    status, dpkg, sleeps, curl = _agent_setup_run(tmp_path / "busy", dpkg_failures=2)
    assert status == 0 and len(dpkg) == 3 and sleeps == ["30", "30"]
    assert "--retry-all-errors" in curl and "--retry-max-time 600" in curl, "a refused connection is retried too"
    status, dpkg, sleeps, _ = _agent_setup_run(tmp_path / "broken", dpkg_failures=10**6)
    assert status != 0 and len(dpkg) == 10 and len(sleeps) == 9


def test_retry_logs_the_aws_error_code_but_never_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    from botocore.exceptions import ClientError

    clock, calls = Clock(), []

    def denied() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ClientError({"Error": {"Code": "Throttling", "Message": f"rate {KEY_BODY}"}}, "DescribeX")

    boot.retry("describe", denied, deadline_s=60, sleep=clock.sleep, clock=clock)
    err = capsys.readouterr().err
    assert err.count("(ClientError Throttling)") == 2 and KEY_BODY not in err


# The instance metadata service, IMDSv2 only: a session token first (PUT with its TTL), then items.


class FakeImds:
    """IMDSv2 on loopback: refuses a read without a valid token, as an instance with
    ``http_tokens = required`` does; the first ``failures`` requests get a 503."""

    def __init__(self, items: dict[str, str], failures: int = 0) -> None:
        self.items, self.failures = items, failures
        self.token = secrets.token_urlsafe(16)
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: str = "") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                if fake.failures:
                    fake.failures -= 1
                    return self._answer(503)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token" or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._answer(400)
                self._answer(200, fake.token)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != fake.token:
                    return self._answer(401)
                item = self.path.removeprefix("/latest/meta-data/")
                self._answer(200, fake.items[item]) if item in fake.items else self._answer(404)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/latest/"

    def __enter__(self) -> FakeImds:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _private_plan(tmp_path: Path, imds: FakeImds) -> dict[str, Any]:
    staged = tmp_path / "etc-foobar" / "foobar-prometheus.yaml"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_text("scrape_configs:\n- static_configs:\n  - targets: [${FOOBAR_PRIVATE_IP}:8404]\n")
    return {
        "imds": imds.base,
        "name": "FOOBAR_PRIVATE_IP",
        "env_file": str(tmp_path / "etc-foobar" / "private-address.env"),
        "files": [{"src": str(staged), "dest": str(tmp_path / "agent" / "foobar-prometheus.yaml"), "mode": 0o644}],
        "deadline_s": 60,
    }


def test_private_address_from_imdsv2_into_haproxy_env_and_the_agent_config(tmp_path: Path) -> None:
    with FakeImds({"local-ipv4": "10.0.1.23"}, failures=2) as imds:
        plan, clock = _private_plan(tmp_path, imds), Clock()
        assert boot.private_address(plan, sleep=clock.sleep, clock=clock) == "10.0.1.23"
        assert clock.sleeps == [2, 4], "IMDS not answering yet: retried"
        env = Path(plan["env_file"])
        assert env.read_text() == "FOOBAR_PRIVATE_IP=10.0.1.23\n" and _mode(env) == 0o644
        agent = Path(plan["files"][0]["dest"])
        assert agent.read_text().endswith("targets: [10.0.1.23:8404]\n")
        assert boot.private_address(plan) == "10.0.1.23", "safe to run again: filled from the staged copy"
        assert agent.read_text().endswith("targets: [10.0.1.23:8404]\n")
    token_first = [r for r in imds.requests if r[0] == "PUT"]
    assert token_first and all(r == ("PUT", "/latest/api/token") for r in token_first)
    assert ("GET", "/latest/meta-data/local-ipv4") in imds.requests


def test_private_address_refuses_what_is_not_an_address(tmp_path: Path) -> None:
    with FakeImds({"local-ipv4": "<html>"}) as imds:
        plan, clock = _private_plan(tmp_path, imds), Clock()
        with pytest.raises(TimeoutError, match="not an IPv4 address"):
            boot.private_address(plan, sleep=clock.sleep, clock=clock, deadline_s=10)
    assert not Path(plan["env_file"]).exists(), "HAProxy never gets a bind address it can't use"


def test_shipped_private_address_job_runs_with_the_standard_library_only(tmp_path: Path) -> None:
    """As cloud-init runs it, before anything is installed: the shipped executable and system python3."""
    program = tmp_path / "foobar-boot"
    program.write_text(shipped_module(BOOT_MODULE.read_text(), {"install", "private-address"}))
    with FakeImds({"local-ipv4": "10.0.1.23"}) as imds:
        plan = tmp_path / "private-address.json"
        plan.write_text(json.dumps(_private_plan(tmp_path, imds)))
        result = subprocess.run(
            ["/usr/bin/python3", str(program), "private-address", str(plan)],
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc-foobar" / "private-address.env").read_text() == "FOOBAR_PRIVATE_IP=10.0.1.23\n"
    assert imds.token not in result.stderr


# The launch hook: the server's own /healthz over TLS as HAProxy checks it, then the group is told.


class Healthz:
    """A TLS server on loopback with the role's internal-CA certificate, answering ``/healthz`` with
    ``statuses`` in turn (the last repeats); it records the SNI and Host each request came with."""

    def __init__(self, pki: Pki, name: str, statuses: Sequence[int]) -> None:
        self.statuses = list(statuses)
        self.seen: list[tuple[str | None, str | None, str]] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*pki.leaf(name))
        sni: list[str | None] = [None]
        context.sni_callback = lambda _sock, server_name, _ctx: sni.__setitem__(0, server_name)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.seen.append((sni[0], self.headers.get("Host"), self.path))
                status = fake.statuses.pop(0) if len(fake.statuses) > 1 else fake.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def __enter__(self) -> Healthz:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


INSTANCE, GROUP = "i-0123456789abcdef0", "foobar-prod-web-20250101"


def _launch_plan(pki: Pki, server: Healthz, imds: FakeImds, deadline_s: float = 600) -> dict[str, Any]:
    return {
        "region": "eu-west-1",
        "hook": "foobar-launch",
        "name": "web.foobar.internal",
        "ca_file": str(pki.ca),
        "port": server.port,
        "deadline_s": deadline_s,
        "imds": imds.base,
    }


@contextmanager
def _autoscaling(
    state: str | None, result: str | None = None, throttled: bool = False, heartbeats: int = 1
) -> Iterator[Any]:
    """A real boto3 client whose calls are checked against the AutoScaling API model and answered
    by botocore's Stubber: moto (5.2) has no complete_lifecycle_action nor heartbeat, and puts every
    instance in service at once, hooks or not. ``state`` None: the instance is in no group."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("autoscaling", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
    stub = Stubber(client)
    if throttled:
        stub.add_client_error("describe_auto_scaling_instances", "Throttling", "Rate exceeded", 400)
    instances = [
        {
            "InstanceId": INSTANCE,
            "AutoScalingGroupName": GROUP,
            "AvailabilityZone": "eu-west-1a",
            "LifecycleState": state,
            "HealthStatus": "HEALTHY",
            "ProtectedFromScaleIn": False,
        }
    ]
    found = {"AutoScalingInstances": instances if state else []}
    stub.add_response("describe_auto_scaling_instances", found, {"InstanceIds": [INSTANCE]})
    if result:
        hook = {"LifecycleHookName": "foobar-launch", "AutoScalingGroupName": GROUP, "InstanceId": INSTANCE}
        for _ in range(heartbeats):
            stub.add_response("record_lifecycle_action_heartbeat", {}, hook)
        stub.add_response("complete_lifecycle_action", {}, {**hook, "LifecycleActionResult": result})
    with stub:
        yield client
        stub.assert_no_pending_responses()


def test_healthz_checks_like_the_load_balancer(pki: Pki, tmp_path: Path) -> None:
    """SNI and the verified name are the role's; another name or another CA is refused."""
    other = make_pki(tmp_path / "other", ["web.foobar.internal"])
    with Healthz(pki, "web.foobar.internal", [200]) as server:
        config = {"name": "web.foobar.internal", "ca_file": str(pki.ca), "port": server.port}
        boot.healthz(config)
        assert server.seen == [("web.foobar.internal", "web.foobar.internal", "/healthz")]
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            boot.healthz({**config, "name": "app.foobar.internal"})
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            boot.healthz({**config, "ca_file": str(other.ca)})
    with Healthz(pki, "web.foobar.internal", [502]) as server, pytest.raises(boot.NotReady, match="502"):
        boot.healthz({"name": "web.foobar.internal", "ca_file": str(pki.ca), "port": server.port})


def test_launch_hook_continues_once_healthz_answers(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    with (
        FakeImds({"instance-id": INSTANCE}) as imds,
        Healthz(pki, "web.foobar.internal", [503, 502, 200]) as server,
        _autoscaling("Pending:Wait", "CONTINUE", throttled=True) as autoscaling,
    ):
        plan = _launch_plan(pki, server, imds)
        assert boot.launch_hook(plan, autoscaling, sleep=clock.sleep, clock=clock) == "CONTINUE"
    assert len(server.seen) == 3 and clock.sleeps == [2, 2, 4], "throttled once, then /healthz twice"
    err = capsys.readouterr().err
    assert (
        "(ClientError Throttling)" in err and "own /healthz: attempt 2 failed (/healthz answered 'HTTP/1.1 502" in err
    )
    assert f"foobar-launch of {INSTANCE}: CONTINUE" in err and imds.token not in err


def test_app_launch_hook_waits_for_the_database_with_heartbeats(pki: Pki, tmp_path: Path) -> None:
    """A first deploy creates RDS beside the servers: the app's settings arrive after the hook's
    timeout, so the hook is kept alive (a heartbeat every 300 s) until they're written, then checked."""
    clock, env = Clock(), tmp_path / "app.env"

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= 1000:  # the database's settings arrive after 1000 s
            env.write_text("FOOBAR_DB_WRITER=x\n")

    with (
        FakeImds({"instance-id": INSTANCE}) as imds,
        Healthz(pki, "app.foobar.internal", [200]) as server,
        _autoscaling("Pending:Wait", "CONTINUE", heartbeats=5) as autoscaling,  # 0, 300, 600, 900 s, then 1000 s
    ):
        plan = {**_launch_plan(pki, server, imds), "name": "app.foobar.internal"}
        plan.update(wait_for_file=str(env), wait_deadline_s=3600, heartbeat_s=300)
        assert boot.launch_hook(plan, autoscaling, sleep=sleep, clock=clock) == "CONTINUE"
    assert 1000 <= clock.now < 1010


def test_launch_hook_abandons_when_healthz_never_answers(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The group replaces the instance at once instead of waiting out the hook; the boot fails visibly."""
    with (
        FakeImds({"instance-id": INSTANCE}) as imds,
        Healthz(pki, "web.foobar.internal", [502]) as server,
        _autoscaling("Pending:Wait", "ABANDON") as autoscaling,
    ):
        monkeypatch.setattr(boot, "_client", lambda service, region: autoscaling)
        plan = tmp_path / "launch-hook.json"
        plan.write_text(json.dumps(_launch_plan(pki, server, imds, deadline_s=0.2)))
        assert boot.main(["launch-hook", str(plan)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2] == f"foobar-boot: foobar-launch of {INSTANCE}: ABANDON"
    assert lines[-1] == "foobar-boot: launch-hook failed: TimeoutError: no 200 from /healthz in 0.2s: launch abandoned"


@pytest.mark.parametrize("state", [None, "InService"])
def test_launch_hook_without_a_waiting_hook_is_skipped(
    pki: Pki, state: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not in a group (a plain instance), or in service already (a group without the hook): nothing
    to complete, and the boot goes on."""
    with (
        FakeImds({"instance-id": INSTANCE}) as imds,
        Healthz(pki, "web.foobar.internal", [502]) as server,
        _autoscaling(state) as autoscaling,
    ):
        assert boot.launch_hook(_launch_plan(pki, server, imds), autoscaling) == ""
    assert server.seen == [], "no hook, no wait"
    expected = "in no Auto Scaling group" if state is None else "InService"
    assert f"{INSTANCE} is {expected}: no launch hook waits" in capsys.readouterr().err


def test_launch_hook_against_moto_outside_a_group(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    """moto answers DescribeAutoScalingInstances like AWS for an instance in no group: an empty list."""
    import boto3
    from moto import mock_aws

    with mock_aws(), FakeImds({"instance-id": INSTANCE}) as imds, Healthz(pki, "web.foobar.internal", [200]) as server:
        autoscaling = boto3.client("autoscaling", region_name="eu-west-1")
        assert boot.launch_hook(_launch_plan(pki, server, imds), autoscaling) == ""
    assert "in no Auto Scaling group" in capsys.readouterr().err


def test_node_archive_unpacks_into_a_package_python_runs(tmp_path: Path) -> None:
    """The discovery agent as the load balancer gets it: from S3, checked, unpacked into /opt/foobar,
    run by the system python3 with nothing of this repository around it."""
    archive = node_archive()
    assert node_archive() == archive, "reproducible"

    class FakeS3:
        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            return {"Body": io.BytesIO(archive)}

    config = {
        "archive_url": "s3://b/lb/node.tar.gz",
        "sha256": hashlib.sha256(archive).hexdigest(),
        "dest": str(tmp_path / "opt"),
        "top": "node",
    }
    boot.fetch_app(config, FakeS3(), sleep=lambda _: None)
    unpacked = tmp_path / "opt" / "node"
    assert (unpacked / "discovery.py").read_bytes() == (NODE_DIR / "discovery.py").read_bytes()
    assert not list(unpacked.rglob("__pycache__"))
    result = subprocess.run(
        ["/usr/bin/python3", "-m", "node.discovery", "--help"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "opt"), "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "--state-file" in result.stdout, result.stderr


def test_refresh_cert_against_moto_exports_an_exportable_public_certificate(tmp_path: Path) -> None:
    """As far as moto goes (the boot containers' dev stack has no ACM certificate): ExportCertificate
    of a public certificate requested exportable gives the served PEM, key decrypted, matching its
    certificate; one requested without the option is refused and the current PEM kept."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        acm = boto3.client("acm", region_name="eu-west-1")
        exportable = acm.request_certificate(DomainName="www.foobar.com", Options={"Export": "ENABLED"})
        plain = acm.request_certificate(DomainName="old.foobar.com")
        pem = tmp_path / "site.pem"
        pem.write_text("INTERNAL\n")
        assert boot.refresh_cert({"certificate_arn": plain["CertificateArn"], "pem_path": str(pem)}, acm) is False
        assert pem.read_text() == "INTERNAL\n"
        config = {"certificate_arn": exportable["CertificateArn"], "pem_path": str(pem)}
        assert boot.refresh_cert(config, acm) is True
        issued = acm.get_certificate(CertificateArn=exportable["CertificateArn"])["Certificate"]
    text = pem.read_text()
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert text.startswith(issued.strip()), "the served PEM starts with ACM's certificate"
    assert "ENCRYPTED" not in text and boot.key_matches(issued, text)
