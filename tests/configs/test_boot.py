"""The boot jobs (TLS fetch, ACM refresh, app.env, app archive) against fake AWS clients."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from userdata.render import APP_DIR, BOOT_MODULE, app_archive, shipped_module
from userdata.scripts import foobar_boot as boot


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


def _pair() -> tuple[str, str]:
    """A certificate and its unencrypted key, as Pulumi stores them in tls-cert and tls-key."""
    cert, key = _certificate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert, pem.decode()


CERT, KEY = _pair()
NEW_CERT, NEW_KEY = _pair()
KEY_BODY = KEY.splitlines()[1]


class Clock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


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
    for job in ("install", "retry", "fetch_tls", "refresh_cert", "app_env", "fetch_app", "write_atomic", "main"):
        assert callable(namespace[job])
    assert set(namespace["JOBS"]) == {"install", "fetch-tls", "refresh-cert", "app-env", "fetch-app"}
    assert '"""' not in shipped and "# " not in shipped.split("\n", 1)[1]
    assert " -> " not in shipped, "type hints are for mypy here, not for the server"
    assert namespace["main"](["nonsense"]) == 2
    # A role's module holds the jobs asked for and what they use, nothing else.
    web = shipped_module(BOOT_MODULE.read_text(), {"install", "fetch-tls"})
    namespace = {"__name__": "shipped"}
    exec(compile(web, "foobar_boot.py", "exec"), namespace)
    assert set(namespace["JOBS"]) == {"install", "fetch-tls"} and "retry" in namespace and "key_matches" in namespace
    assert not {"export_certificate", "refresh_cert", "app_env", "fetch_app"} & set(namespace)
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
