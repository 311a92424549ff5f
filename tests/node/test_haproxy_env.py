"""The load balancer's rendered haproxy.cfg takes its private address from the environment: with
the real daemon, it refuses to start without it and binds the stats listener to it alone."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from local.mariadb import CertificateAuthority
from tests.configs.checks import peers_alone
from userdata import RoleValues
from userdata import configs as c

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
PUBLIC, PRIVATE = "127.0.116.1", "127.0.116.2"
STATS_PORT = 18414


def _config(tmp: Path) -> Path:
    ca = CertificateAuthority.create(tmp / "pki")
    tls = ca.issue_server_cert(tmp / "tls", "www.foobar.com", dns_names=["www.foobar.com"])
    pem = tmp / "site.pem"
    pem.write_bytes(Path(tls.cert).read_bytes() + Path(tls.key).read_bytes())
    (tmp / "server-state").write_text("1\n")
    aws = c.HaproxyConfig.for_aws(
        RoleValues(role="lb", stack="dev", region="eu-west-1", domain="www.foobar.com", param_path="/foobar/dev/lb")
    )
    assert aws.stats_address == "${FOOBAR_PRIVATE_IP}"
    cfg = c.HaproxyConfig(
        stats_address=aws.stats_address,
        cert_file=str(pem),
        ca_file=str(ca.cert),
        bind_address=PUBLIC,
        http_port=18090,
        https_port=18453,
        stats_port=STATS_PORT,
        **c.UNPRIVILEGED,
        stats_socket=str(tmp / "admin.sock"),
        server_state_file=str(tmp / "server-state"),
    )
    path = tmp / "haproxy.cfg"
    path.write_text(c.render_haproxy_cfg(cfg))
    peers_alone(tmp / "peers.cfg", PRIVATE)
    return path


def _files(path: Path) -> list[str]:
    """haproxy.cfg and the peers file, as the load balancer's HAProxy loads them."""
    return ["-f", str(path), "-f", str(path.with_name("peers.cfg"))]


def _env(value: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FOOBAR_PRIVATE_IP"}
    return env if value is None else {**env, "FOOBAR_PRIVATE_IP": value}


@pytest.mark.parametrize("value", [None, ""])
def test_without_the_private_address_haproxy_refuses_to_start(tmp_path: Path, value: str | None) -> None:
    """An unset or empty variable would make the stats bind ':8404', every address: refused instead."""
    result = subprocess.run(
        [HAPROXY, "-c", *_files(_config(tmp_path))], env=_env(value), capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "FOOBAR_PRIVATE_IP is not set" in result.stdout + result.stderr


def test_stats_listen_on_the_private_address_only(tmp_path: Path) -> None:
    path = _config(tmp_path)
    check = subprocess.run([HAPROXY, "-c", "-dW", "-q", *_files(path)], env=_env(PRIVATE), timeout=30)
    assert check.returncode == 0
    proc = subprocess.Popen([HAPROXY, "-db", *_files(path)], env=_env(PRIVATE), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://{PRIVATE}:{STATS_PORT}/stats;csv", timeout=2) as resp:
                    assert b"web,web20," in resp.read()  # the slots are there, waiting for the agent
                break
            except OSError:
                assert time.monotonic() < deadline, "no stats listener on the private address"
                time.sleep(0.1)
        with socket.socket() as sock:
            assert sock.connect_ex((PUBLIC, STATS_PORT)) != 0, "the stats listener is on the public address too"
    finally:
        proc.terminate()
        proc.wait(10)
