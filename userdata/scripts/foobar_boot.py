#!/usr/bin/python3
"""Boot-time jobs of the foobar servers: fetch TLS material, refresh the ACM certificate, write app.env.

Shipped in the user-data as /usr/local/lib/foobar/foobar_boot.py and run by small wrappers in
/usr/local/sbin. Standard library plus boto3 (and python3-cryptography on the load balancer), as
packaged by Ubuntu. Each job reads a JSON file of plain values written by cloud-init. Secrets (keys,
passphrases) are written to 0600 files and never printed: log lines name parameters, never values.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

KEY_MODE = 0o600
PUBLIC_MODE = 0o644
MAX_DELAY_S = 60


def log(message: str) -> None:
    """One line to stderr: the journal or cloud-init's output log."""
    print(f"foobar-boot: {message}", file=sys.stderr, flush=True)


def write_atomic(path: str | Path, data: bytes, mode: int) -> bool:
    """Replace ``path`` with ``data`` in one rename, with ``mode`` set before a byte is written.

    Returns whether the content or mode changed, so callers reload a daemon only when needed.
    """
    target = Path(path)
    if target.exists() and target.read_bytes() == data and (target.stat().st_mode & 0o777) == mode:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def get_parameters(
    ssm: Any, path: str, names: Sequence[str], *, sleep: Callable[[float], None] = time.sleep, attempts: int = 0
) -> dict[str, str]:
    """Read ``<path>/<name>`` for every name, waiting with backoff until all exist.

    At first boot the parameters may not exist yet (Pulumi creates them beside the instances, the
    database ones only once RDS is up). ``attempts`` > 0 bounds the wait (tests); 0 waits for ever.
    """
    delay = 2.0
    attempt = 0
    while True:
        attempt += 1
        try:
            response = ssm.get_parameters(Names=[f"{path}/{n}" for n in names], WithDecryption=True)
        except Exception as err:  # network or IAM propagation at boot: retry, never print values
            log(f"SSM not readable yet ({type(err).__name__}); retrying in {delay:.0f}s")
        else:
            found = {p["Name"].rsplit("/", 1)[-1]: p["Value"] for p in response.get("Parameters", [])}
            missing = [n for n in names if n not in found]
            if not missing:
                return found
            log(f"waiting for SSM parameters {', '.join(f'{path}/{n}' for n in missing)}; retrying in {delay:.0f}s")
        if attempts and attempt >= attempts:
            raise TimeoutError(f"SSM parameters under {path} still missing after {attempt} attempts")
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)


def _pem(*parts: str) -> bytes:
    return "".join(p.strip() + "\n" for p in parts if p.strip()).encode()


def reload_unit(unit: str) -> None:
    """Reload a daemon if it runs (at first boot cloud-init starts it afterwards)."""
    if unit:
        subprocess.run(["systemctl", "try-reload-or-restart", unit], check=False)


def fetch_tls(config: dict[str, Any], ssm: Any, **kw: Any) -> bool:
    """Write each configured file from SSM parameters; returns whether anything changed.

    A file entry: ``{"path", "parts": [parameter names, concatenated], "mode", "keep_existing"}``.
    ``keep_existing`` leaves a present file alone (the load balancer's served PEM once ACM replaced it).
    """
    names = sorted({part for f in config["files"] for part in f["parts"]})
    values = get_parameters(ssm, config["param_path"], names, **kw)
    changed = False
    for f in config["files"]:
        if f.get("keep_existing") and Path(f["path"]).exists():
            continue
        if write_atomic(f["path"], _pem(*(values[p] for p in f["parts"])), int(f["mode"])):
            log(f"installed {f['path']} (mode {int(f['mode']):o})")
            changed = True
    return changed


def export_certificate(acm: Any, arn: str) -> bytes | None:
    """Export the ACM certificate as one PEM (cert, chain, unencrypted key), or None if not possible yet.

    The passphrase is made here, lives only in memory, and only protects the key on its way from ACM.
    """
    from cryptography.hazmat.primitives import serialization

    passphrase = secrets.token_urlsafe(32).encode()
    try:
        response = acm.export_certificate(CertificateArn=arn, Passphrase=passphrase)
    except Exception as err:  # not issued yet, not exportable, throttled: keep what serves now
        code = getattr(err, "response", {}).get("Error", {}).get("Code") or type(err).__name__
        log(f"ACM export of {arn} not possible ({code}); keeping the current certificate")
        return None
    try:
        key = serialization.load_pem_private_key(response["PrivateKey"].encode(), password=passphrase)
    except (ValueError, TypeError):
        log(f"ACM export of {arn}: the private key could not be decrypted; keeping the current certificate")
        return None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return _pem(response["Certificate"], response.get("CertificateChain", ""), key_pem)


def refresh_cert(config: dict[str, Any], acm: Any) -> bool:
    """Install the exported ACM certificate as the served PEM; returns whether it changed."""
    arn = config.get("certificate_arn", "")
    if not arn:
        log("no ACM certificate configured; the internal-CA certificate serves")
        return False
    pem = export_certificate(acm, arn)
    if pem is None:
        return False
    changed = write_atomic(config["pem_path"], pem, KEY_MODE)
    log(f"{'installed' if changed else 'unchanged'}: {config['pem_path']} from {arn}")
    return changed


def download(url: str, *, timeout: float = 15.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # a fixed https URL from the config
        data: bytes = response.read()
    return data


def app_env(
    config: dict[str, Any],
    ssm: Any,
    *,
    fetch: Callable[[str], bytes] = download,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = 0,
) -> str:
    """Write the app's environment file from SSM (where the database is) and the RDS CA bundle.

    Never a password: the app reads the database secret from Secrets Manager with its instance role.
    """
    values = get_parameters(
        ssm, config["param_path"], ["db-writer", "db-reader", "db-secret-arn"], sleep=sleep, attempts=attempts
    )
    ca_file = Path(config["ca_file"])
    delay, attempt = 2.0, 0
    while True:
        attempt += 1
        try:
            bundle = fetch(config["ca_url"])
            if b"BEGIN CERTIFICATE" not in bundle:
                raise ValueError("not a PEM bundle")
            write_atomic(ca_file, bundle, PUBLIC_MODE)
            break
        except Exception as err:
            if ca_file.exists():
                log(f"RDS CA bundle not refreshed ({type(err).__name__}); keeping {ca_file}")
                break
            if attempts and attempt >= attempts:
                raise
            log(f"RDS CA bundle not downloaded yet ({type(err).__name__}); retrying in {delay:.0f}s")
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
    env = {
        "FOOBAR_DB_WRITER_HOST": values["db-writer"],
        "FOOBAR_DB_READER_HOST": values["db-reader"],
        "FOOBAR_DB_PORT": str(config["db_port"]),
        "FOOBAR_DB_NAME": config["db_name"],
        "FOOBAR_DB_SECRET_ARN": values["db-secret-arn"],
        "FOOBAR_REGION": config["region"],
        "FOOBAR_DB_CA_FILE": str(ca_file),
    }
    for key, value in env.items():
        if not value or any(c in value for c in "\n\"'\\ "):
            raise ValueError(f"{key}: unusable value from SSM (empty or with quotes/whitespace)")
    text = "".join(f"{k}={v}\n" for k, v in env.items())
    write_atomic(config["env_file"], text.encode(), PUBLIC_MODE)
    log(f"wrote {config['env_file']}")
    return text


def fetch_app(
    config: dict[str, Any], s3: Any, *, sleep: Callable[[float], None] = time.sleep, attempts: int = 0
) -> None:
    """Download a code or content archive from S3, check its sha256, and unpack it as ``<dest>/<top>``
    (``top`` defaults to ``app``; the web tier's static site uses the same job).

    Used when the code is too big for the 16 KB of user-data; the expected hash is in the user-data,
    so a changed archive means a new instance, and a tampered or stale one is refused.
    """
    bucket, _, key = config["archive_url"].removeprefix("s3://").partition("/")
    delay, attempt = 2.0, 0
    while True:
        attempt += 1
        try:
            data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            digest = hashlib.sha256(data).hexdigest()
            if digest == config["sha256"]:
                break
            log(f"{config['archive_url']} has sha256 {digest}, expected {config['sha256']}")
        except Exception as err:
            log(f"{config['archive_url']} not readable yet ({type(err).__name__})")
        if attempts and attempt >= attempts:
            raise RuntimeError(f"no archive with sha256 {config['sha256']} at {config['archive_url']}")
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)
    dest = Path(config["dest"])
    staging = Path(tempfile.mkdtemp(dir=dest.parent if dest.parent.exists() else None, prefix=".app-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                if (
                    not (member.isfile() or member.isdir())
                    or member.name.startswith(("/", ".."))
                    or ".." in member.name
                ):
                    raise ValueError(f"unsafe member {member.name!r} in {config['archive_url']}")
            archive.extractall(staging)  # members checked above: regular files and dirs below staging
        dest.mkdir(parents=True, exist_ok=True)
        top = config.get("top", "app")
        old = dest / top
        if old.exists():
            shutil.rmtree(old)
        os.replace(staging / top, old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"unpacked {config['archive_url']} into {dest / config.get('top', 'app')}")


def _client(service: str, region: str) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


def main(argv: Sequence[str]) -> int:
    """``foobar_boot.py fetch-tls|refresh-cert|app-env|fetch-app CONFIG.json``."""
    jobs = ("fetch-tls", "refresh-cert", "app-env", "fetch-app")
    if len(argv) != 2 or argv[0] not in jobs:
        log(f"usage: foobar_boot.py {'|'.join(jobs)} CONFIG.json")
        return 2
    job, config = argv[0], json.loads(Path(argv[1]).read_text())
    if job == "fetch-tls":
        if fetch_tls(config, _client("ssm", config["region"])):
            reload_unit(config.get("reload_unit", ""))
    elif job == "refresh-cert":
        if refresh_cert(config, _client("acm", config["region"])):
            reload_unit(config.get("reload_unit", ""))
    elif job == "app-env":
        app_env(config, _client("ssm", config["region"]))
    else:
        fetch_app(config, _client("s3", config["region"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
