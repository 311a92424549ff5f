"""Real MariaDB servers on loopback addresses: a TLS-only primary and a replica that replicates over TLS.

The tests and the local site use this instead of RDS. It mirrors what matters on AWS: the server refuses
plaintext clients (``require_secure_transport=ON``), clients verify the server certificate against an
internal CA, the replica is read-only and pulls the primary's binlog over a verified TLS connection.

Nothing here needs Pulumi. Every server lives in its own folder ``<base_dir>/<name>/`` (datadir, socket,
pid file, error log, TLS files), so a later process can stop a server started by an earlier one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pymysql
import pymysql.cursors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Role = Literal["primary", "replica"]

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL
# A small redo log keeps a datadir near 30 MB instead of 115 MB; given to install-db and the server alike.
_REDO_LOG = "--innodb-log-file-size=16M"


class MariaDBError(RuntimeError):
    """A server could not be set up, started, stopped or replicated; the message says which and why."""


# --------------------------------------------------------------------------------------------- TLS files


@dataclass(frozen=True)
class TlsFiles:
    """PEM files one server uses: the CA that clients (and the replica) verify against, its cert and key."""

    ca: Path
    cert: Path
    key: Path

    def check(self) -> None:
        """Fail early, naming the file, instead of letting mariadbd start without TLS."""
        for label, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if not Path(path).is_file():
                raise MariaDBError(f"TLS file {label}={path} does not exist")


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key (PEM paths) that signs the servers' certificates.

    The local site passes its own internal CA; the tests create a throwaway one with :meth:`create`.
    """

    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, common_name: str = "foobar local CA", days: int = 30) -> CertificateAuthority:
        """A new ECDSA P-256 CA in ``directory`` (``ca.pem``, ``ca.key`` mode 0600)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(cert=directory / "ca.pem", key=directory / "ca.key")
        write_private(ca.key, _key_pem(key))
        ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca

    def issue_server_cert(
        self,
        directory: Path,
        common_name: str,
        *,
        ip_addresses: Iterable[str] = (),
        dns_names: Iterable[str] = (),
        days: int = 30,
        within_ca: bool = True,
    ) -> TlsFiles:
        """A server certificate (ECDSA P-256) signed by this CA, with the given SANs, in ``directory``.

        Clients check the SAN against the address they dial, so pass every IP/name they will use.
        ``within_ca`` ends it no later than the CA; False issues it as pulumi-tls would, for ``days``
        whatever the CA's expiry (what ``ops verify`` must catch).
        """
        ips = [ipaddress.ip_address(a) for a in ip_addresses]
        names = list(dns_names)
        if not ips and not names:
            raise MariaDBError("issue_server_cert: give at least one of ip_addresses or dns_names")
        try:
            ca_cert = x509.load_pem_x509_certificate(Path(self.cert).read_bytes())
            ca_key = serialization.load_pem_private_key(Path(self.key).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise MariaDBError(
                f"cannot load the CA from cert={self.cert} key={self.key}: {type(exc).__name__}"
            ) from None
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise MariaDBError(f"CA key {self.key} must be an EC or RSA private key")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ip) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(
                min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
                if within_ca
                else now + dt.timedelta(days=days)
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files = TlsFiles(ca=Path(self.cert), cert=directory / "server.pem", key=directory / "server.key")
        write_private(files.key, _key_pem(key))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return files


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a key so that it is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


# ------------------------------------------------------------------------------------------------ helpers


def find_binary(name: str) -> str:
    """Path of a MariaDB program; sbin folders are searched too since PATH may lack them."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    if not found:
        raise MariaDBError(
            f"{name} not found in PATH or {', '.join(_SBIN_DIRS)}: install the Debian package mariadb-server"
        )
    return found


def check_port_free(address: str, port: int) -> None:
    """Raise a clear error when ``address:port`` cannot be bound (taken, or not a local address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MariaDBError(
                    f"{address}:{port} is already in use by another process: stop it or choose another port"
                ) from None
            raise MariaDBError(f"cannot bind {address}:{port}: {exc.strerror}") from None


def find_free_port(address: str) -> int:
    """A port that is free on ``address`` right now (for tests that cannot use a fixed one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _sql_string(value: str) -> str:
    """Quote a string literal for statements that take no placeholders (CHANGE MASTER)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ----------------------------------------------------------------------------------------------- servers


class MariaDB:
    """One ``mariadbd`` on ``address:port`` with its state under ``base_dir/name``, TLS required.

    ``role="primary"`` writes a binlog; ``role="replica"`` is ``read_only`` and keeps a relay log.
    Administration goes through the unix socket as root (socket authentication), which MariaDB
    counts as a secure transport, so no admin password exists at all.
    """

    def __init__(
        self,
        name: str,
        address: str,
        port: int,
        base_dir: Path,
        tls: TlsFiles,
        *,
        role: Role = "primary",
        server_id: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise MariaDBError(f"name={name!r}: use letters, digits, '-' or '_'")
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise MariaDBError(f"address={address!r} is not an IPv4 address (use 127.0.0.x)") from None
        if not 1 <= int(port) <= 65535:
            raise MariaDBError(f"port={port!r} must be 1..65535")
        if role not in ("primary", "replica"):
            raise MariaDBError(f"role={role!r} must be 'primary' or 'replica'")
        self.name = name
        self.address = address
        self.port = int(port)
        self.root = Path(base_dir).resolve() / name
        self.tls = tls
        self.role: Role = role
        self.server_id = server_id if server_id is not None else (1 if role == "primary" else 2)
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise MariaDBError(f"base_dir={base_dir} is too long for a unix socket path; use a shorter folder")

    def __repr__(self) -> str:
        return f"MariaDB({self.name!r}, {self.address}:{self.port}, role={self.role})"

    # paths
    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_path(self) -> Path:
        return self.root / "mariadbd.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "mariadbd.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    # lifecycle
    def init(self) -> bool:
        """Create the datadir with ``mariadb-install-db``; False when it already exists (idempotent)."""
        if (self.datadir / "mysql").is_dir():
            return False
        install = find_binary("mariadb-install-db")
        self.root.mkdir(parents=True, exist_ok=True)
        if self.datadir.exists():
            shutil.rmtree(self.datadir)  # a half-done earlier init
        log = self.root / "install.log"
        with log.open("wb") as out:
            rc = subprocess.call(
                [
                    install,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    _REDO_LOG,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if rc != 0:
            raise MariaDBError(f"{self.name}: mariadb-install-db failed (exit {rc}):\n{_tail(log)}")
        return True

    def command(self) -> list[str]:
        """The full ``mariadbd`` command line (without secrets: TLS files are paths)."""
        cmd = [
            find_binary("mariadbd"),
            "--no-defaults",
            "--user=root",
            f"--datadir={self.datadir}",
            f"--bind-address={self.address}",
            f"--port={self.port}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            "--skip-name-resolve",
            "--require-secure-transport=ON",
            f"--ssl-ca={self.tls.ca}",
            f"--ssl-cert={self.tls.cert}",
            f"--ssl-key={self.tls.key}",
            "--tls-version=TLSv1.2,TLSv1.3",
            f"--server-id={self.server_id}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=64M",
            _REDO_LOG,
            "--performance-schema=OFF",
            "--max-connections=300",
        ]
        if self.role == "primary":
            cmd += ["--log-bin=binlog", "--binlog-format=ROW"]
        else:
            cmd += ["--read-only=ON", "--relay-log=relay-bin", "--skip-slave-start"]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 60.0) -> None:
        """Start ``mariadbd`` and wait until it answers; a no-op when this server already runs."""
        if self.is_running():
            self.wait_ready(timeout)
            return
        if not (self.datadir / "mysql").is_dir():
            raise MariaDBError(f"{self.name}: datadir {self.datadir} is not initialised; call init() first")
        self.tls.check()
        check_port_free(self.address, self.port)
        cmd = self.command()
        self.pid_file.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)
        offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        with (self.root / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            self.wait_ready(timeout)
        except MariaDBError:
            self._kill_after_failed_start()
            raise MariaDBError(
                f"{self.name}: mariadbd did not become ready on {self.address}:{self.port} within {timeout:.0f}s;"
                f" error log {self.error_log}:\n{_tail(self.error_log, offset)}"
            ) from None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll the admin socket until the server answers ``SELECT 1``."""
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise MariaDBError(f"{self.name}: mariadbd exited with code {self._process.returncode}")
            try:
                self.execute("SELECT 1")
                return
            except pymysql.err.MySQLError:
                if time.monotonic() > deadline:
                    raise MariaDBError(f"{self.name}: not ready after {timeout:.0f}s") from None
                time.sleep(0.1)

    def _kill_after_failed_start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    def pid(self) -> int | None:
        """PID of this server's ``mariadbd`` when it runs (checked against /proc, not only the pid file)."""
        candidates: list[int] = []
        if self._process is not None and self._process.poll() is None:
            candidates.append(self._process.pid)
        with contextlib.suppress(OSError, ValueError):
            candidates.append(int(self.pid_file.read_text().strip()))
        for pid in candidates:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            zombie = any(line.startswith("State:") and "Z" in line.split()[1:2] for line in status.splitlines())
            if not zombie and f"--datadir={self.datadir}".encode() in cmdline:
                return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (clean InnoDB shutdown), SIGKILL after ``timeout``; a no-op when not running."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 10):
                    raise MariaDBError(f"{self.name}: mariadbd pid {pid} did not exit after SIGKILL")
        if self._process is not None:
            self._process.wait(5)
            self._process = None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                try:
                    self._process.wait(0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if self.pid() != pid:
                return True
            time.sleep(0.1)
        return False

    def __enter__(self) -> MariaDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # SQL
    def connect_admin(self) -> pymysql.connections.Connection[Any]:
        """Root over the unix socket (socket authentication: no password exists)."""
        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            connect_timeout=5,
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run one statement as root; rows as dicts."""
        conn = self.connect_admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def create_database(self, database: str, user: str, password: str, host: str = "%") -> None:
        """Database plus a user with all rights on it, TLS required (idempotent; resets the password)."""
        _check_identifier("database", database)
        _check_identifier("user", user)
        self.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        self.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s REQUIRE SSL", (user, host, password))
        self.execute("ALTER USER %s@%s IDENTIFIED BY %s REQUIRE SSL", (user, host, password))
        self.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@%s", (user, host))

    def create_replication_user(self, user: str, password: str, host: str = "%") -> None:
        """The account the replica logs in with (idempotent; resets the password; TLS required)."""
        _check_identifier("user", user)
        self.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s REQUIRE SSL", (user, host, password))
        self.execute("ALTER USER %s@%s IDENTIFIED BY %s REQUIRE SSL", (user, host, password))
        self.execute("GRANT REPLICATION SLAVE ON *.* TO %s@%s", (user, host))

    def create_monitor_user(self, user: str, password: str, host: str = "%") -> None:
        """The mysqld exporter's account: PROCESS, REPLICATION CLIENT (and SLAVE MONITOR), SELECT, TLS
        required (idempotent; resets the password). The password goes as a placeholder, so it is in no log."""
        _check_identifier("user", user)
        self.execute(
            "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s REQUIRE SSL WITH MAX_USER_CONNECTIONS 3",
            (user, host, password),
        )
        self.execute("ALTER USER %s@%s IDENTIFIED BY %s REQUIRE SSL", (user, host, password))
        # MariaDB 10.5+ split SLAVE MONITOR (SHOW SLAVE STATUS) out of REPLICATION CLIENT.
        self.execute("GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.* TO %s@%s", (user, host))

    def write_exporter_cnf(self, path: Path, account: MonitorAccount) -> Path:
        """The mysqld exporter's client file (mode 0600): this server over TLS verified against the CA."""
        text = (
            "[client]\n"
            f"user={account.user}\n"
            f"password={account.password}\n"
            f"host={self.address}\n"
            f"port={self.port}\n"
            f"ssl-ca={self.tls.ca}\n"
        )
        write_private(Path(path), text.encode())
        return Path(path)

    def replicate_from(self, primary: MariaDB, user: str, password: str, timeout: float = 60.0) -> None:
        """Point this replica at ``primary`` over verified TLS (GTID) and wait until both threads run.

        ``MASTER_SSL_VERIFY_SERVER_CERT=1`` makes the replica check the primary's certificate chain against
        this server's CA and the address it dials against the certificate's SAN.
        """
        if self.role != "replica":
            raise MariaDBError(f"{self.name}: replicate_from() needs role='replica'")
        self.execute("STOP SLAVE")
        self.execute(
            "CHANGE MASTER TO"
            f" MASTER_HOST={_sql_string(primary.address)}, MASTER_PORT={primary.port},"
            f" MASTER_USER={_sql_string(user)}, MASTER_PASSWORD={_sql_string(password)},"
            f" MASTER_SSL=1, MASTER_SSL_CA={_sql_string(str(self.tls.ca))}, MASTER_SSL_VERIFY_SERVER_CERT=1,"
            " MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        )
        self.execute("START SLAVE")
        deadline = time.monotonic() + timeout
        while True:
            status = self.replication_status()
            if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
                return
            errors = "; ".join(e for e in (status.get("Last_IO_Error"), status.get("Last_SQL_Error")) if e)
            if time.monotonic() > deadline:
                raise MariaDBError(
                    f"{self.name}: replication from {primary.address}:{primary.port} did not start within"
                    f" {timeout:.0f}s: {errors or 'no error reported'}"
                )
            time.sleep(0.2)

    def replication_status(self) -> dict[str, Any]:
        """``SHOW SLAVE STATUS`` as a dict (empty when replication was never configured)."""
        rows = self.execute("SHOW SLAVE STATUS")
        return rows[0] if rows else {}

    def wait_caught_up(self, primary: MariaDB, timeout: float = 30.0) -> None:
        """Block until this replica has applied everything the primary has binlogged so far."""
        pos = primary.execute("SELECT @@GLOBAL.gtid_binlog_pos AS pos")[0]["pos"]
        if not pos:
            return
        row = self.execute("SELECT MASTER_GTID_WAIT(%s, %s) AS r", (pos, timeout))[0]
        if row["r"] != 0:
            raise MariaDBError(f"{self.name}: replica did not reach GTID {pos} within {timeout:.0f}s")


def _check_identifier(what: str, value: str) -> None:
    if not value or len(value) > 64 or not value.replace("_", "").isalnum() or not value.isascii():
        raise MariaDBError(f"{what}={value!r}: use 1-64 ASCII letters, digits or '_'")


def _tail(path: Path, offset: int = 0, lines: int = 25) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class AppAccount:
    """The application's database and account, created on the primary and replicated to the replica."""

    database: str
    user: str
    password: str

    def __repr__(self) -> str:
        return f"AppAccount(database={self.database!r}, user={self.user!r}, password='***')"


@dataclass(frozen=True)
class MonitorAccount:
    """The mysqld exporters' account, created on the primary and replicated to the replica."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"MonitorAccount(user={self.user!r}, password='***')"


def start_pair(
    base_dir: Path,
    primary_addr: str,
    replica_addr: str,
    port: int,
    ca: CertificateAuthority,
    *,
    app: AppAccount | None = None,
    monitor: MonitorAccount | None = None,
    replica_port: int | None = None,
    server_names: Sequence[str] = ("localhost",),
    timeout: float = 60.0,
) -> tuple[MariaDB, MariaDB]:
    """Init (if needed) and start a primary and a replica replicating from it over verified TLS.

    Server certificates are issued by ``ca`` with the server's address (and ``server_names``) as SANs.
    With ``app`` the database and user are created on the primary and the call returns only once the
    replica has them too; likewise ``monitor``'s account (the mysqld exporters'). Idempotent: on existing
    folders it restarts the servers and re-points the replica (with a fresh replication password). On any
    failure both servers are stopped again.
    """
    base = Path(base_dir)
    servers: list[MariaDB] = []
    plan: list[tuple[Role, str, int]] = [
        ("primary", primary_addr, port),
        ("replica", replica_addr, replica_port or port),
    ]
    try:
        for role, addr, srv_port in plan:
            name = role
            tls = ca.issue_server_cert(
                base / name / "tls", f"mariadb-{name}", ip_addresses=[addr], dns_names=server_names
            )
            server = MariaDB(name, addr, srv_port, base, tls, role=role)
            server.init()
            servers.append(server)
            server.start(timeout)
        primary, replica = servers
        repl_password = secrets.token_urlsafe(24)
        primary.create_replication_user("replicator", repl_password)
        if app is not None:
            primary.create_database(app.database, app.user, app.password)
        if monitor is not None:
            primary.create_monitor_user(monitor.user, monitor.password)
        replica.replicate_from(primary, "replicator", repl_password, timeout)
        replica.wait_caught_up(primary, timeout)
        return primary, replica
    except BaseException:
        for server in reversed(servers):
            with contextlib.suppress(MariaDBError):
                server.stop()
        raise


def stop_all(servers: Iterable[MariaDB], timeout: float = 30.0) -> None:
    """Stop replicas before primaries so the replica does not log reconnect errors."""
    for server in sorted(servers, key=lambda s: s.role != "replica"):
        server.stop(timeout)
