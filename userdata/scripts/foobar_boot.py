#!/usr/bin/python3
"""Boot-time jobs of the foobar servers: install packages, fetch TLS material (and the exported ACM
certificate), write app.env, unpack the app or site archive, learn the private address (load
balancer), and complete the launch lifecycle hook once the server answers its own /healthz (web, app).

Shipped in the user-data as the executable /usr/local/sbin/foobar-boot (``foobar-boot JOB
PLAN.json``), with only the jobs its role runs (see ``job``). Standard library plus boto3 (and
python3-cryptography on the load balancer), as packaged by Ubuntu; ``install`` needs only the
standard library, since it is what installs boto3. Each job reads a JSON plan of plain values
written by cloud-init. Secrets (keys, passphrases) are written to 0600 files and never printed:
log lines name parameters, never values.

Every wait is bounded (:func:`retry`, ``DEADLINE_S``) except app-env's wait for the database, which
runs in its own unit that nothing waits for. A job that gives up exits non-zero with one log line
saying what it waited for; cloud-init's runcmd stops there (``set -e``) and reports the failure.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

KEY_MODE = 0o600
PUBLIC_MODE = 0o644
MAX_DELAY_S = 60
DEADLINE_S = 1200
"""How long a boot job waits for what it needs (SSM parameters, an archive, the package mirror)."""
APT = (
    "apt-get", "-q", "-y",
    "-o", "Acquire::Retries=3",
    "-o", "Acquire::http::Timeout=30",
    "-o", "Acquire::https::Timeout=30",
    "-o", "DPkg::Lock::Timeout=300",
    "-o", "Dpkg::Options::=--force-confdef",
    "-o", "Dpkg::Options::=--force-confold",
)  # fmt: skip
"""apt-get as cloud-init calls it, plus retries per download and a wait for a lock held by apt-daily."""
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1"}
APT_CALL_S = 900  # only against a hung apt: killing dpkg at a deadline would leave it half-configured
IMDS = "http://169.254.169.254/latest/"
"""The instance metadata service (IMDSv2 only: a session token first; hop limit 1 is enough here)."""
T = TypeVar("T")


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


class NotReady(Exception):
    """Something that clears by itself (a parameter not created yet, a mirror not reachable yet).

    Its message is logged, so it must never hold a value read from AWS.
    """


def retry(
    what: str,
    action: Callable[[], T],
    *,
    deadline_s: float = DEADLINE_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``action`` until it returns, with backoff (2 s doubling to 60 s), logging every failure.

    Gives up with :class:`TimeoutError` once ``deadline_s`` has passed, so a timer run or a boot
    step never hangs; ``deadline_s`` <= 0 waits for ever (app-env's wait for the database). Only a
    :class:`NotReady` message is logged; other errors by type (and AWS's error code, such as
    AccessDenied), as their text may quote values.
    """
    end = clock() + deadline_s
    delay, attempt = 2.0, 0
    while True:
        attempt += 1
        try:
            result = action()
        except Exception as err:
            response = getattr(err, "response", None)  # botocore's: its error code is safe to log
            code = response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""
            reason = str(err) if isinstance(err, NotReady) else f"{type(err).__name__} {code}".strip()
            left = end - clock() if deadline_s > 0 else delay
            if left <= 0:
                log(f"{what}: attempt {attempt} failed ({reason}); giving up after {deadline_s:.0f}s")
                raise TimeoutError(f"{what}: gave up after {attempt} attempts ({reason})") from None
            wait = min(delay, left)
            log(f"{what}: attempt {attempt} failed ({reason}); retrying in {wait:.0f}s")
            sleep(wait)
            delay = min(delay * 2, MAX_DELAY_S)
        else:
            if attempt > 1:
                log(f"{what}: done at attempt {attempt}")
            return result


def read_parameters(ssm: Any, path: str, names: Sequence[str]) -> dict[str, str]:
    """``{name: value}`` of ``<path>/<name>`` for every name; :class:`NotReady` naming those missing."""
    response = ssm.get_parameters(Names=[f"{path}/{n}" for n in names], WithDecryption=True)
    found = {p["Name"].rsplit("/", 1)[-1]: p["Value"] for p in response.get("Parameters", [])}
    missing = [f"{path}/{n}" for n in names if n not in found]
    if missing:
        raise NotReady(f"waiting for {', '.join(missing)}")
    return found


def get_parameters(ssm: Any, path: str, names: Sequence[str], **kw: Any) -> dict[str, str]:
    """:func:`read_parameters`, waiting (see :func:`retry`) until all exist.

    At first boot the parameters may not exist yet (Pulumi creates them beside the instances, the
    database ones only once RDS is up).
    """
    return retry(f"SSM parameters under {path}", lambda: read_parameters(ssm, path, names), **kw)


def run_command(cmd: Sequence[str]) -> int:
    """Run ``cmd`` with its output on ours (cloud-init's log, the journal); its exit status, 124 if hung."""
    try:
        return subprocess.run(cmd, env={**os.environ, **APT_ENV}, timeout=APT_CALL_S, check=False).returncode
    except subprocess.TimeoutExpired:
        return 124


def install(
    config: dict[str, Any],
    *,
    run: Callable[[Sequence[str]], int] = run_command,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Install ``packages`` with apt, retrying until ``deadline_s``, then put the staged ``files`` in place.

    Not cloud-init's ``packages``: that runs once at a fixed point of the boot, so a server whose way
    out isn't there yet (the load balancer before its Elastic IP, a NAT route not usable yet, a mirror
    hiccup) never got its daemon. ``apt-get update`` reports an unreachable mirror as a warning only,
    so an attempt counts as done when ``install`` succeeds. The deadline is checked between attempts
    (an apt run is never cut short). Daemon configs come after the packages: the package's first
    start uses its own config, and dpkg never meets a conffile it didn't write.
    """
    packages = list(config["packages"])

    def attempt() -> None:
        run(["dpkg", "--configure", "-a"])  # finishes a run cut short; a no-op otherwise
        update = run([*APT, "update"])
        status = run([*APT, "install", *packages])
        if status:
            raise NotReady(f"apt-get install exited {status}, update {update}")

    deadline_s = float(config.get("deadline_s", DEADLINE_S))
    retry(f"installing {' '.join(packages)}", attempt, deadline_s=deadline_s, sleep=sleep, clock=clock)
    log(f"installed {' '.join(packages)}")
    for f in config.get("files", []):
        write_atomic(f["dest"], Path(f["src"]).read_bytes(), int(f["mode"]))
        log(f"placed {f['dest']}")


def _pem(*parts: str) -> bytes:
    return "".join(p.strip() + "\n" for p in parts if p.strip()).encode()


def _public_key(cmd: Sequence[str], pem: str) -> bytes:
    """The public key of a PEM fed on stdin (never an argument: ps shows those), empty if unreadable."""
    result = subprocess.run(["openssl", *cmd], input=pem.encode(), capture_output=True, timeout=30, check=False)
    return result.stdout if result.returncode == 0 else b""


def key_matches(cert: str, key: str) -> bool:
    """Whether the certificate (the first in ``cert``) is for this private key.

    Pulumi writes tls-cert and tls-key as two parameters: a run in the middle of a renewal could read
    a new certificate with the old key, and a daemon reloaded with that pair would not start again.
    """
    public = _public_key(["x509", "-noout", "-pubkey"], cert)
    return bool(public) and public == _public_key(["pkey", "-pubout", "-passin", "pass:"], key)


def reload_unit(unit: str) -> None:
    """Reload a daemon if it runs (at first boot cloud-init starts it afterwards)."""
    if unit:
        subprocess.run(["systemctl", "try-reload-or-restart", unit], check=False)


def fetch_tls(config: dict[str, Any], ssm: Any, **kw: Any) -> bool:
    """Write each configured file from SSM parameters; returns whether anything changed.

    A file entry: ``{"path", "parts": [parameter names, concatenated], "mode", "keep_existing"}``;
    ``deadline_s`` (default ``DEADLINE_S``) bounds the wait.
    ``keep_existing`` leaves a present file alone unless it still holds what another entry with the
    same parts held (the load balancer's served PEM: kept once ACM's export replaced it, renewed
    while it is the internal certificate). Waits until the certificate matches its key.
    """
    files = config["files"]
    path = config["param_path"]
    names = sorted({part for f in files for part in f["parts"]})

    def read() -> dict[str, str]:
        values = read_parameters(ssm, path, names)
        if {"tls-cert", "tls-key"} <= set(values) and not key_matches(values["tls-cert"], values["tls-key"]):
            raise NotReady(f"{path}/tls-cert is not for {path}/tls-key (renewal half written?)")
        return values

    kw.setdefault("deadline_s", float(config.get("deadline_s", DEADLINE_S)))
    values = retry(f"TLS parameters under {path}", read, **kw)
    old = {f["path"]: Path(f["path"]).read_bytes() if Path(f["path"]).exists() else None for f in files}
    changed = False
    for f in files:
        current = old[f["path"]]
        copies = {old[g["path"]] for g in files if g is not f and g["parts"] == f["parts"]}
        if f.get("keep_existing") and current is not None and current not in copies:
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
    deadline_s: float = 0,
) -> str:
    """Write the app's environment file from SSM (where the database is) and the RDS CA bundle.

    Waits for ever by default: the database comes long after the server, and foobar-app-env.service
    is the only one waiting. Never a password: the app reads the database secret itself.
    """
    kw: dict[str, Any] = {"sleep": sleep, "deadline_s": deadline_s}
    values = get_parameters(ssm, config["param_path"], ["db-writer", "db-reader", "db-secret-arn"], **kw)
    ca_file = Path(config["ca_file"])

    def bundle() -> bytes:
        data = fetch(config["ca_url"])
        if b"BEGIN CERTIFICATE" not in data:
            raise NotReady("not a PEM bundle")
        return data

    if ca_file.exists():
        try:
            write_atomic(ca_file, bundle(), PUBLIC_MODE)
        except Exception as err:
            log(f"RDS CA bundle not refreshed ({type(err).__name__}); keeping {ca_file}")
    else:
        write_atomic(ca_file, retry("RDS CA bundle", bundle, **kw), PUBLIC_MODE)
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


def fetch_app(config: dict[str, Any], s3: Any, **kw: Any) -> None:
    """Download a code or content archive from S3, check its sha256, and unpack it as ``<dest>/<top>``
    (``top`` defaults to ``app``; the web tier's static site uses the same job).

    Used when the code is too big for the 16 KB of user-data; the expected hash is in the user-data,
    so a changed archive means a new instance, and a tampered or stale one is refused.
    """
    bucket, _, key = config["archive_url"].removeprefix("s3://").partition("/")

    def download_archive() -> bytes:
        data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != config["sha256"]:
            raise NotReady(f"sha256 {digest}, expected {config['sha256']}")
        return data

    kw.setdefault("deadline_s", float(config.get("deadline_s", DEADLINE_S)))
    data = retry(config["archive_url"], download_archive, **kw)
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


def imds(item: str, base: str = IMDS) -> str:
    """One item of the instance's metadata (``meta-data/<item>``), with an IMDSv2 session token."""
    put = urllib.request.Request(f"{base}api/token", method="PUT")
    put.add_header("X-aws-ec2-metadata-token-ttl-seconds", "300")
    with urllib.request.urlopen(put, timeout=5) as response:  # link-local; these servers set no proxy
        token = response.read().decode()
    get = urllib.request.Request(f"{base}meta-data/{item}")
    get.add_header("X-aws-ec2-metadata-token", token)
    with urllib.request.urlopen(get, timeout=5) as response:
        value: str = response.read().decode().strip()
    return value


def private_address(config: dict[str, Any], **kw: Any) -> str:
    """Write the private IPv4 address into the environment file HAProxy loads, and into the files
    that name it (the monitoring agent's scrape target); returns it.

    No server has a fixed address, so one user-data serves every load balancer: HAProxy's stats
    listener binds to ``${NAME}`` from its environment, and the staged copies of the other files
    hold the same reference, filled in here (from the staged copy, so a second run works too).
    """
    name = config["name"]

    def read() -> str:
        value = imds("local-ipv4", config.get("imds", IMDS))
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise NotReady("IMDS local-ipv4 is not an IPv4 address") from None

    kw.setdefault("deadline_s", float(config.get("deadline_s", DEADLINE_S)))
    address = retry("private address from IMDS", read, **kw)
    write_atomic(config["env_file"], f"{name}={address}\n".encode(), PUBLIC_MODE)
    for f in config.get("files", []):
        text = Path(f["src"]).read_text().replace("${" + name + "}", address)
        write_atomic(f["dest"], text.encode(), int(f["mode"]))
    log(f"private address {address} written")
    return address


def healthz(config: dict[str, Any]) -> None:
    """``GET /healthz`` on this server as the load balancer checks it: TLS with the role's name as
    SNI, the certificate verified against the internal CA for that name; :class:`NotReady` unless 200."""
    name = config["name"]
    context = ssl.create_default_context(cafile=config["ca_file"])
    address = ("127.0.0.1", int(config.get("port", 443)))
    with socket.create_connection(address, 5) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        status = tls.makefile("rb").readline(200).decode(errors="replace").strip()
    if status.split(" ")[1:2] != ["200"]:
        raise NotReady(f"/healthz answered {status[:40]!r}")


def launch_hook(
    config: dict[str, Any],
    autoscaling: Any,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Complete this instance's launch lifecycle hook: CONTINUE once it answers its own /healthz
    within ``deadline_s``, else ABANDON (the group replaces it at once) and fail. Returns the result
    sent, or "" when no launch hook waits (not in a group, or already in service).

    Until then the group keeps the instance out of service (``Pending:Wait``), so the load
    balancer's discovery never sends it a request before it can answer. A heartbeat first restarts
    the hook's timeout, which began at launch, so a slow install leaves the check all its time.
    """
    timing: dict[str, Any] = {"sleep": sleep, "clock": clock, "deadline_s": float(config.get("call_deadline_s", 120))}
    instance = retry("instance id from IMDS", lambda: imds("instance-id", config.get("imds", IMDS)), **timing)
    found = retry(
        "own Auto Scaling group",
        lambda: autoscaling.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"],
        **timing,
    )
    state = found[0]["LifecycleState"] if found else "in no Auto Scaling group"
    if not state.startswith("Pending"):
        log(f"{instance} is {state}: no launch hook waits")
        return ""
    name = config["hook"]
    hook = {"LifecycleHookName": name, "AutoScalingGroupName": found[0]["AutoScalingGroupName"], "InstanceId": instance}
    retry(f"{name} heartbeat", lambda: autoscaling.record_lifecycle_action_heartbeat(**hook), **timing)
    # The app starts only once its database exists (RDS takes 10-30 min on a first deploy, longer
    # than the hook's timeout): keep the hook alive with heartbeats until the settings are written.
    wait_for = config.get("wait_for_file")
    if wait_for:
        beat, end = float(config.get("heartbeat_s", 300)), clock() + float(config.get("wait_deadline_s", 3600))
        next_beat = clock() + beat
        while not os.path.exists(wait_for):
            if clock() >= end:
                log(f"{wait_for} not written in {config.get('wait_deadline_s', 3600)}s")
                break
            if clock() >= next_beat:
                retry(f"{name} heartbeat", lambda: autoscaling.record_lifecycle_action_heartbeat(**hook), **timing)
                next_beat = clock() + beat
            sleep(5)
        # The check below may take its whole deadline: start it with the hook's full timeout ahead.
        retry(f"{name} heartbeat", lambda: autoscaling.record_lifecycle_action_heartbeat(**hook), **timing)
    try:
        retry("own /healthz", lambda: healthz(config), sleep=sleep, clock=clock, deadline_s=float(config["deadline_s"]))
        result = "CONTINUE"
    except TimeoutError:
        result = "ABANDON"
    retry(
        f"{name} {result}",
        lambda: autoscaling.complete_lifecycle_action(**hook, LifecycleActionResult=result),
        **timing,
    )
    log(f"{name} of {instance}: {result}")
    if result == "ABANDON":
        raise TimeoutError(f"no 200 from /healthz in {config['deadline_s']}s: launch abandoned")
    return result


def _client(service: str, region: str) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


Job = Callable[[dict[str, Any]], None]
JOBS: dict[str, Job] = {}


def job(name: str) -> Callable[[Job], Job]:
    """Register a command-line job. The renderer ships a role only the jobs it runs and what they use."""

    def register(function: Job) -> Job:
        JOBS[name] = function
        return function

    return register


@job("install")
def _install_job(config: dict[str, Any]) -> None:
    install(config)


@job("fetch-tls")
def _fetch_tls_job(config: dict[str, Any]) -> None:
    if fetch_tls(config, _client("ssm", config["region"])):
        reload_unit(config.get("reload_unit", ""))


@job("refresh-cert")
def _refresh_cert_job(config: dict[str, Any]) -> None:
    if refresh_cert(config, _client("acm", config["region"])):
        reload_unit(config.get("reload_unit", ""))


@job("app-env")
def _app_env_job(config: dict[str, Any]) -> None:
    app_env(config, _client("ssm", config["region"]))


@job("fetch-app")
def _fetch_app_job(config: dict[str, Any]) -> None:
    fetch_app(config, _client("s3", config["region"]))


@job("private-address")
def _private_address_job(config: dict[str, Any]) -> None:
    private_address(config)


@job("launch-hook")
def _launch_hook_job(config: dict[str, Any]) -> None:
    launch_hook(config, _client("autoscaling", config["region"]))


def main(argv: Sequence[str]) -> int:
    """``foobar-boot JOB CONFIG.json``: 0 when done, 1 (one log line) when not, 2 for a bad call."""
    if len(argv) != 2 or argv[0] not in JOBS:
        log(f"usage: foobar-boot {'|'.join(JOBS)} CONFIG.json")
        return 2
    try:
        JOBS[argv[0]](json.loads(Path(argv[1]).read_text()))
    except Exception as err:  # one line, no traceback: only our own messages, which never hold values
        ours = isinstance(err, TimeoutError | NotReady | ValueError | OSError | KeyError)
        log(f"{argv[0]} failed: {type(err).__name__}{f': {err}' if ours else ''}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
