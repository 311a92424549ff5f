"""local/mariadb.py against the real daemons: TLS required, verified replication, read-only replica."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pymysql
import pytest

import local.mariadb as mdb
from local.mariadb import CertificateAuthority, MariaDB, MariaDBError, find_free_port
from tests.app.conftest import SPARE_ADDR, Pair, wait_for


def _client_tls(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = True
    return ctx


def _plaintext(pair: Pair, user: str, password: str) -> Any:
    return pymysql.connect(
        host=pair.primary.address,
        port=pair.primary.port,
        user=user,
        password=password,
        connect_timeout=5,
        ssl_disabled=True,  # recent PyMySQL would otherwise try TLS on its own
    )


def test_plaintext_connection_is_refused_by_the_server(pair: Pair) -> None:
    """require_secure_transport: an account without REQUIRE SSL logs in over TLS but not in plaintext.

    MariaDB answers the refusal with error 1045; switching the setting off for a moment shows that the
    setting, not the password, is what refuses.
    """
    pair.primary.execute("CREATE USER IF NOT EXISTS 'plain'@'%' IDENTIFIED BY 'plain-pw'")
    tls = pymysql.connect(
        host=pair.primary.address,
        port=pair.primary.port,
        user="plain",
        password="plain-pw",
        ssl=_client_tls(pair.ca.cert),
    )
    tls.close()
    with pytest.raises(pymysql.err.OperationalError) as info:
        _plaintext(pair, "plain", "plain-pw")
    assert info.value.args[0] == 1045
    pair.primary.execute("SET GLOBAL require_secure_transport = OFF")
    try:
        _plaintext(pair, "plain", "plain-pw").close()
    finally:
        pair.primary.execute("SET GLOBAL require_secure_transport = ON")
    with pytest.raises(pymysql.err.OperationalError):
        _plaintext(pair, "plain", "plain-pw")
    # The app account is also marked REQUIRE SSL.
    with pytest.raises(pymysql.err.OperationalError) as info:
        _plaintext(pair, pair.account.user, pair.account.password)
    assert info.value.args[0] == 1045
    pair.primary.execute("DROP USER 'plain'@'%'")


def test_tls_connection_with_verified_certificate_works(pair: Pair) -> None:
    conn = pymysql.connect(
        host=pair.replica.address,
        port=pair.replica.port,
        user=pair.account.user,
        password=pair.account.password,
        database=pair.account.database,
        ssl=_client_tls(pair.ca.cert),
        connect_timeout=5,
    )
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        row = cur.fetchone()
    conn.close()
    assert row is not None and row[1] in ("TLSv1.2", "TLSv1.3")


def test_replication_runs_over_verified_tls(pair: Pair) -> None:
    status = pair.replica.replication_status()
    assert status["Slave_IO_Running"] == "Yes"
    assert status["Slave_SQL_Running"] == "Yes"
    assert status["Master_SSL_Allowed"] == "Yes"
    assert status["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert status["Master_Host"] == pair.primary.address
    assert pair.replica.execute("SELECT @@read_only AS ro")[0]["ro"] == 1
    assert pair.primary.execute("SELECT @@log_bin AS lb")[0]["lb"] == 1


def test_rows_written_on_primary_reach_replica(pair: Pair) -> None:
    pair.primary.execute("CREATE DATABASE IF NOT EXISTS repltest")
    pair.primary.execute("CREATE TABLE IF NOT EXISTS repltest.t (v VARCHAR(20))")
    pair.primary.execute("INSERT INTO repltest.t VALUES ('hello')")
    pair.replica.wait_caught_up(pair.primary)
    assert pair.replica.execute("SELECT v FROM repltest.t") == [{"v": "hello"}]


def test_app_user_cannot_write_on_replica(pair: Pair) -> None:
    conn = pymysql.connect(
        host=pair.replica.address,
        port=pair.replica.port,
        user=pair.account.user,
        password=pair.account.password,
        database=pair.account.database,
        ssl=_client_tls(pair.ca.cert),
    )
    with pytest.raises(pymysql.err.MySQLError) as info, conn.cursor() as cur:
        cur.execute("CREATE TABLE should_not_exist (i INT)")
    conn.close()
    assert info.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT: --read-only


def test_server_certificate_name_is_checked(tmp_path: Path, ca: CertificateAuthority) -> None:
    """A server whose certificate does not name the address we dial is refused; the same cert without the
    name check is accepted, so the SAN is what made the difference."""
    tls = ca.issue_server_cert(tmp_path / "tls", "wrong-san", ip_addresses=["127.0.40.99"])
    server = MariaDB("wrongsan", SPARE_ADDR, find_free_port(SPARE_ADDR), tmp_path, tls)
    server.init()
    server.start()
    try:
        server.create_database("db", "someone", "pw-wrong-san")
        ctx = _client_tls(ca.cert)
        kwargs: dict[str, Any] = {
            "host": SPARE_ADDR,
            "port": server.port,
            "user": "someone",
            "password": "pw-wrong-san",
        }
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql.connect(ssl=ctx, connect_timeout=5, **kwargs)
        assert "mismatch" in str(info.value).lower()
        ctx.check_hostname = False
        pymysql.connect(ssl=ctx, connect_timeout=5, **kwargs).close()
    finally:
        server.stop()


def test_port_in_use_is_a_clear_error(tmp_path: Path, ca: CertificateAuthority) -> None:
    port = find_free_port(SPARE_ADDR)
    tls = ca.issue_server_cert(tmp_path / "tls", "busy", ip_addresses=[SPARE_ADDR])
    server = MariaDB("busy", SPARE_ADDR, port, tmp_path, tls)
    server.init()
    with socket.socket() as holder:
        holder.bind((SPARE_ADDR, port))
        holder.listen()
        with pytest.raises(MariaDBError, match=rf"{SPARE_ADDR}:{port} is already in use"):
            server.start()
    assert not server.is_running()


def test_missing_mariadbd_is_a_clear_error(
    tmp_path: Path, ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(mdb, "_SBIN_DIRS", (str(tmp_path),))
    tls = ca.issue_server_cert(tmp_path / "tls", "x", ip_addresses=[SPARE_ADDR])
    with pytest.raises(MariaDBError, match=r"mariadb-install-db not found.*mariadb-server"):
        MariaDB("x", SPARE_ADDR, 3306, tmp_path, tls).init()
    (tmp_path / "x" / "data" / "mysql").mkdir(parents=True)
    with pytest.raises(MariaDBError, match="mariadbd not found"):
        MariaDB("x", SPARE_ADDR, 3306, tmp_path, tls).start()


def test_bad_arguments_are_named(tmp_path: Path, ca: CertificateAuthority) -> None:
    tls = ca.issue_server_cert(tmp_path / "tls", "x", ip_addresses=[SPARE_ADDR])
    with pytest.raises(MariaDBError, match="address="):
        MariaDB("x", "localhost", 3306, tmp_path, tls)
    with pytest.raises(MariaDBError, match="port="):
        MariaDB("x", SPARE_ADDR, 0, tmp_path, tls)
    with pytest.raises(MariaDBError, match="role="):
        MariaDB("x", SPARE_ADDR, 3306, tmp_path, tls, role="leader")  # type: ignore[arg-type]
    with pytest.raises(MariaDBError, match="TLS file cert="):
        MariaDB("x", SPARE_ADDR, 3306, tmp_path, mdb.TlsFiles(tls.ca, tmp_path / "nope.pem", tls.key)).tls.check()


def test_start_stop_lifecycle_and_restart_keeps_data(tmp_path: Path, ca: CertificateAuthority) -> None:
    port = find_free_port(SPARE_ADDR)
    tls = ca.issue_server_cert(tmp_path / "tls", "life", ip_addresses=[SPARE_ADDR])
    server = MariaDB("life", SPARE_ADDR, port, tmp_path, tls)
    assert server.init() is True
    assert server.init() is False
    server.start()
    try:
        assert server.is_running()
        pid = server.pid()
        server.start()  # idempotent
        assert server.pid() == pid
        server.execute("CREATE DATABASE keep")
        # Another object for the same folder (as a later process would build) sees and stops it.
        other = MariaDB("life", SPARE_ADDR, port, tmp_path, tls)
        assert other.pid() == pid
        other.stop()
        assert not server.is_running()
        assert not Path(f"/proc/{pid}").exists() or wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5)
        server.start()
        assert server.execute("SHOW DATABASES LIKE 'keep'")
    finally:
        server.stop()
    assert not server.is_running()
