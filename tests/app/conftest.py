"""Real MariaDB servers for the app tests: a TLS-only primary and a replica replicating over TLS."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.main import create_app
from local.mariadb import (
    AppAccount,
    CertificateAuthority,
    MariaDB,
    MariaDBError,
    check_port_free,
    find_free_port,
    start_pair,
    stop_all,
)

PRIMARY_ADDR = "127.0.40.1"
REPLICA_ADDR = "127.0.40.2"
SPARE_ADDR = "127.0.40.3"
GUNICORN_ADDR = "127.0.40.10"


def _pick_port() -> int:
    """3306 as on AWS when it is free on both addresses, otherwise any free port."""
    try:
        check_port_free(PRIMARY_ADDR, 3306)
        check_port_free(REPLICA_ADDR, 3306)
        return 3306
    except MariaDBError:
        return find_free_port(PRIMARY_ADDR)


class Pair:
    """The running primary and replica plus the account the app uses."""

    def __init__(self, base: Path, ca: CertificateAuthority, primary: MariaDB, replica: MariaDB, account: AppAccount):
        self.base = base
        self.ca = ca
        self.primary = primary
        self.replica = replica
        self.account = account

    def env(self, **overrides: str) -> dict[str, str]:
        """A complete local configuration for the app; ``overrides`` replace or (with '') drop variables."""
        env = {
            "FOOBAR_DB_WRITER_HOST": self.primary.address,
            "FOOBAR_DB_READER_HOST": self.replica.address,
            "FOOBAR_DB_PORT": str(self.primary.port),
            "FOOBAR_DB_NAME": self.account.database,
            "FOOBAR_DB_USER": self.account.user,
            "FOOBAR_DB_PASSWORD": self.account.password,
            "FOOBAR_DB_CA_FILE": str(self.ca.cert),
            "FOOBAR_DB_CONNECT_TIMEOUT": "3",
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v != ""}


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"), "foobar test CA")


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("mariadb")
    account = AppAccount("guestbook", "guestbook", "pw-" + secrets.token_urlsafe(18))
    primary, replica = start_pair(base, PRIMARY_ADDR, REPLICA_ADDR, _pick_port(), ca, app=account)
    try:
        yield Pair(base, ca, primary, replica, account)
    finally:
        stop_all([primary, replica])


@pytest.fixture
def app(pair: Pair) -> Iterator[Flask]:
    application = create_app(pair.env())
    application.config["TESTING"] = True
    yield application
    application.extensions["foobar"].db.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll until ``predicate`` returns something truthy (replica lag is short but not zero)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def start_single(
    base: Path,
    ca: CertificateAuthority,
    name: str,
    address: str,
    account: AppAccount,
    san: str | None = None,
) -> MariaDB:
    """A lone short-lived TLS server with the app account, for failure tests that stop or break it."""
    tls = ca.issue_server_cert(base / name / "tls", name, ip_addresses=[san or address])
    server = MariaDB(name, address, find_free_port(address), base, tls)
    server.init()
    server.start()
    server.create_database(account.database, account.user, account.password)
    return server
