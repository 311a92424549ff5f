"""Connection pools to the writer (primary) and the reader (replica), TLS verified against our CA.

gunicorn's gthread workers serve requests on several threads, so each worker process keeps one small
thread-safe pool per endpoint. A connection that fails with a connection error is thrown away and the
idle ones are checked with a ping before their next use, so a restarted or failed-over database is
picked up again without restarting the app.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import pymysql
import pymysql.cursors
from pymysql.connections import Connection

from app.config import Config
from app.credentials import CredentialsProvider

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean the connection itself is gone (server restarted, failover, network cut).
_DISCONNECT_CODES = {0, 2006, 2013, 2055}
_ACCESS_DENIED = 1045


class DatabaseUnavailable(RuntimeError):
    """No working connection to one endpoint; the message names the endpoint, never a credential."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"database {endpoint} unavailable: {reason}")
        self.endpoint = endpoint
        self.reason = reason


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a driver error: class and MySQL error code."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return f"{type(exc).__name__}" + (f" {code}" if code is not None else "")


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Verify the server certificate chain against ``ca_file`` and its name against the host we dial."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class PoolTimeout(RuntimeError):
    """Every connection of the pool stayed busy for the whole wait."""


class ConnectionPool:
    """A bounded LIFO pool of PyMySQL connections, shared by the threads of one process."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], Connection[Any]],
        max_size: int = 8,
        acquire_timeout: float = 10.0,
        check_idle_after: float = 10.0,
    ) -> None:
        self.name = name
        self._connect = connect
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._check_idle_after = check_idle_after
        self._idle: list[tuple[Connection[Any], float]] = []
        self._size = 0
        self._last_failure = 0.0
        self._cond = threading.Condition()
        self._closed = False

    @property
    def size(self) -> int:
        """Connections open now (idle plus in use)."""
        with self._cond:
            return self._size

    @property
    def idle(self) -> int:
        with self._cond:
            return len(self._idle)

    @contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """Lend a connection; it goes back to the pool unless it broke while lent."""
        conn = self._acquire()
        try:
            yield conn
        except BaseException as exc:
            self._release(conn, broken=_is_disconnect(exc) or not _rollback(conn))
            raise
        else:
            self._release(conn, broken=False)

    def _acquire(self) -> Connection[Any]:
        deadline = time.monotonic() + self._acquire_timeout
        conn: Connection[Any] | None = None
        suspect = False
        with self._cond:
            while True:
                if self._closed:
                    raise PoolTimeout(f"pool {self.name} is closed")
                if self._idle:
                    conn, last_used = self._idle.pop()
                    idle_for = time.monotonic() - last_used
                    suspect = last_used <= self._last_failure or idle_for > self._check_idle_after
                    break
                if self._size < self._max_size:
                    self._size += 1  # reserve the slot; the connection is opened outside the lock
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout(f"all {self._max_size} connections of pool {self.name} are busy")
                self._cond.wait(remaining)
        if conn is not None and suspect:
            try:
                conn.ping(reconnect=False)
            except Exception:
                _close_quietly(conn)
                conn = None
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                with self._cond:
                    self._size -= 1
                    self._last_failure = time.monotonic()
                    self._cond.notify()
                raise
        return conn

    def _release(self, conn: Connection[Any], broken: bool) -> None:
        with self._cond:
            if broken or self._closed:
                _close_quietly(conn)
                self._size -= 1
                if broken:
                    self._last_failure = time.monotonic()
            else:
                self._idle.append((conn, time.monotonic()))
            self._cond.notify()

    def close(self) -> None:
        """Close the idle connections; lent ones are closed when they come back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            self._cond.notify_all()
        for conn, _ in idle:
            _close_quietly(conn)


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    if isinstance(exc, pymysql.err.OperationalError):
        return not exc.args or exc.args[0] in _DISCONNECT_CODES or exc.args[0] >= 2000
    return isinstance(exc, OSError)


def _rollback(conn: Connection[Any]) -> bool:
    """Leave no half-done transaction on a connection that goes back to the pool."""
    try:
        conn.rollback()
        return True
    except Exception:
        return False


def _close_quietly(conn: Connection[Any]) -> None:
    with suppress(Exception):
        conn.close()


class Database:
    """The writer and reader pools of one process, plus the checks ``/readyz`` runs."""

    def __init__(self, config: Config, credentials: CredentialsProvider) -> None:
        self._config = config
        self._credentials = credentials
        self._tls = tls_context(str(config.ca_file))
        self.endpoints = {"writer": config.writer_host, "reader": config.reader_host}
        self.writer = ConnectionPool("writer", lambda: self._connect(config.writer_host), config.pool_size)
        self.reader = ConnectionPool("reader", lambda: self._connect(config.reader_host), config.pool_size)

    def _connect(self, host: str) -> Connection[Any]:
        """A new TLS connection; one retry with re-read credentials when the login is refused."""
        for attempt in (1, 2):
            creds = self._credentials.get()
            try:
                conn: Connection[Any] = pymysql.connect(
                    host=host,
                    port=self._config.port,
                    user=creds.user,
                    password=creds.password,
                    database=self._config.database,
                    ssl=self._tls,
                    charset="utf8mb4",
                    autocommit=True,
                    connect_timeout=self._config.connect_timeout,
                    read_timeout=self._config.query_timeout,
                    write_timeout=self._config.query_timeout,
                    init_command="SET time_zone = '+00:00'",
                    cursorclass=pymysql.cursors.DictCursor,
                )
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] == _ACCESS_DENIED and attempt == 1 and self._credentials.refresh():
                    continue
                raise
            break
        # A driver that silently skips TLS when the server offers none must not go unnoticed.
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            row = cur.fetchone()
        if not row or not row.get("Value"):
            _close_quietly(conn)
            raise pymysql.err.OperationalError(2026, f"connection to {host} is not encrypted")
        return conn

    def run(self, endpoint: str, work: Callable[[Connection[Any]], T], *, retry: bool = False) -> T:
        """Run ``work`` on a pooled connection of ``endpoint`` ('writer' or 'reader').

        With ``retry`` (idempotent reads only) a connection lost mid-way is replaced once.
        Driver errors come out as :class:`DatabaseUnavailable` with a secret-free reason.
        """
        pool = self.writer if endpoint == "writer" else self.reader
        for attempt in (1, 2):
            try:
                with pool.connection() as conn:
                    return work(conn)
            except (pymysql.err.MySQLError, OSError, PoolTimeout) as exc:
                lost = isinstance(exc, pymysql.err.MySQLError) and _is_disconnect(exc) and exc.args[:1] != (2003,)
                if retry and lost and attempt == 1:
                    continue
                log.warning("database %s (%s) failed: %s", endpoint, self.endpoints[endpoint], exc)
                raise DatabaseUnavailable(endpoint, describe(exc)) from None
        raise AssertionError("unreachable")

    def check(self, endpoint: str) -> None:
        """``SELECT 1`` on ``endpoint``; raises :class:`DatabaseUnavailable`."""

        def select_one(conn: Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 AS ok")
                cur.fetchone()

        self.run(endpoint, select_one, retry=True)

    def close(self) -> None:
        self.writer.close()
        self.reader.close()
