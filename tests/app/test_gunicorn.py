"""The app under a real gunicorn (gthread workers) on a loopback address, as on the app servers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.mariadb import find_free_port
from tests.app.conftest import GUNICORN_ADDR, Pair, wait_for

ROOT = Path(__file__).resolve().parents[2]


def gunicorn_command(bind: str) -> list[str]:
    """The command line the app servers run (see docs/app.md)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--workers",
        "2",
        "--threads",
        "4",
        "--bind",
        bind,
        "--keep-alive",
        "75",
        "--timeout",
        "30",
        "--graceful-timeout",
        "10",
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
        "--chdir",
        str(ROOT),
        "app.main:create_app()",
    ]


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(GUNICORN_ADDR, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = find_free_port(GUNICORN_ADDR)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOOBAR_")} | env
    with log.open("wb") as out:
        process = subprocess.Popen(
            gunicorn_command(f"{GUNICORN_ADDR}:{port}"),
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process, port


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode


@pytest.fixture(scope="module")
def gunicorn(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    process, port = _start(pair.env(), log)
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
            try:
                if server.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer within 30s:\n{log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        _stop(process)


def test_gunicorn_serves_the_guestbook(gunicorn: Server, pair: Pair) -> None:
    status, _, body = gunicorn.request("GET", "/readyz")
    assert status == 200, body
    payload = json.dumps({"name": "gunicorn", "message": "through a real worker"}).encode()
    status, _, body = gunicorn.request("POST", "/api/entries", payload, {"Content-Type": "application/json"})
    assert status == 201, body
    new_id = json.loads(body)["entry"]["id"]

    def listed() -> bool:
        entries = json.loads(gunicorn.request("GET", "/api/entries")[2])["entries"]
        return any(e["id"] == new_id for e in entries)

    wait_for(listed)
    status, headers, _ = gunicorn.request(
        "POST",
        "/entries",
        b"name=form&message=via+gunicorn",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://{GUNICORN_ADDR}:{gunicorn.port}"},
    )
    assert status == 303
    assert headers["Location"] == "/"
    status, _, page = gunicorn.request("GET", "/")
    assert status == 200
    assert b"foobar guestbook" in page


def test_gunicorn_keeps_connections_alive(gunicorn: Server) -> None:
    """gthread keeps the connection open, so the app-box nginx can reuse upstream connections."""
    conn = http.client.HTTPConnection(GUNICORN_ADDR, gunicorn.port, timeout=10)
    try:
        for _ in range(5):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            assert response.getheader("Connection", "").lower() != "close"
        assert conn.sock is not None
    finally:
        conn.close()


def test_gunicorn_two_workers_booted_and_no_password_logged(gunicorn: Server, pair: Pair) -> None:
    text = gunicorn.log.read_text()
    assert text.count("Booting worker") == 2
    assert "gthread" in text
    assert "guestbook ready to serve" in text
    assert '"POST /api/entries HTTP/1.1" 201' in text  # access log
    assert pair.account.password not in text
    assert pair.primary.execute("SHOW TABLES FROM guestbook LIKE 'entries'")


def test_gunicorn_refuses_to_start_on_bad_config(pair: Pair, tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    process, _ = _start(pair.env(FOOBAR_DB_NAME="", FOOBAR_DB_PASSWORD="Never-Log-Me-42"), log)
    try:
        code = process.wait(30)
    finally:
        _stop(process)
    text = log.read_text()
    assert code != 0
    assert "FOOBAR_DB_NAME is required" in text
    assert "Never-Log-Me-42" not in text
