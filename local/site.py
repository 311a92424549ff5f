"""The whole site on one machine, from the same render functions the cloud-init user-data uses.

Each server gets its own loopback address, like its own host in the VPC:

    HAProxy        127.0.10.1   :80 :443, stats/Prometheus :8404
    nginx web i    127.0.20.i   :443, stub_status :8081
    nginx app 1    127.0.30.1   :443, stub_status :8081, gunicorn on :8000 behind it
    MariaDB        127.0.50.1 (primary) and 127.0.50.2 (replica) :3306, TLS required
    Prometheus     127.0.60.1   :9090, its node exporter :9100; each nginx has an exporter on its own
                   address :9113, each database one on :9104 (``local.monitoring``)

Certificates come from a local internal CA (ECDSA P-256), as on AWS. State lives in one folder
(``.local-site/`` by default); ``down`` stops everything that ``up`` started and nothing else.

HAProxy lists no backend server: the discovery agent (``node.discovery``, the one the load balancer
runs on AWS) fills its slots from ``members.json``, which plays the Auto Scaling groups. ``scale``
and ``roll`` start and stop servers the way a group does: a new server joins only once its own
``/healthz`` answers over TLS; a leaving one is drained until it has no session, then removed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from local.monitoring import BINARIES as MONITORING_BINARIES
from local.monitoring import DATABASES, Monitoring
from node.discovery import MAX_MEMBERS, FileSource, Member, Runtime, RuntimeError_, Slot
from node.pair import PEERS_PORT, PairConfig, render_peers
from userdata import EdgeLimits
from userdata.configs import WSGI_APP, gunicorn_args

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".local-site"
BINARIES = {
    "haproxy": "haproxy",
    "nginx": "nginx-light",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    **MONITORING_BINARIES,
}


TIERS = ("web", "app")
"""The tiers that are groups on AWS: ``scale`` and ``roll`` act on these."""
DRAIN_TIMEOUT_S = 30.0
"""How long a leaving server may keep sessions before it is removed anyway (the terminate hook's role)."""
READY_TIMEOUT_S = 30.0


class LocalSiteError(RuntimeError):
    """A clear, one-line reason the local site cannot come up or go down."""


@dataclass(frozen=True)
class Layout:
    """Who listens where. Defaults mirror the VPC plan on loopback."""

    lb: str = "127.0.10.1"
    web: tuple[str, ...] = ("127.0.20.1", "127.0.20.2")
    app: tuple[str, ...] = ("127.0.30.1",)
    db_primary: str = "127.0.50.1"
    db_replica: str = "127.0.50.2"
    db_port: int = 3306
    app_port: int = 8000
    status_port: int = 8081
    stats_port: int = 8404
    http_port: int = 80
    https_port: int = 443
    domain: str = "www.foobar.com"
    inside: str = "127.0.0.0/16"
    """The local "VPC": every server's address is in it. A client from another loopback address
    (127.1.0.1, say) comes from "the internet" and, like one, gets no answer from /readyz."""
    monitor_address: str = ""
    """Prometheus and the node exporter; '' is the load balancer's address 50 up in the third byte
    (127.0.10.1 -> 127.0.60.1), so a layout of other addresses gets a Prometheus of its own."""
    prometheus_port: int = 9090
    node_exporter_port: int = 9100
    nginx_exporter_port: int = 9113
    mysqld_exporter_port: int = 9104

    @property
    def monitor(self) -> str:
        if self.monitor_address:
            return self.monitor_address
        a, b, c, d = self.lb.split(".")
        return f"{a}.{b}.{(int(c) + 50) % 256}.{d}"

    @property
    def url(self) -> str:
        return f"https://{self.lb}/" if self.https_port == 443 else f"https://{self.lb}:{self.https_port}/"

    def initial(self, tier: str) -> tuple[str, ...]:
        return self.web if tier == "web" else self.app

    def network(self, tier: str) -> ipaddress.IPv4Network:
        """The tier's "subnet": the /24 of its first address; servers it gains get addresses there."""
        return ipaddress.IPv4Network(f"{self.initial(tier)[0]}/24", strict=False)

    def reserved(self) -> set[str]:
        return {self.lb, self.db_primary, self.db_replica, self.monitor}

    def listeners(self) -> list[tuple[str, str, int]]:
        """(who, address, port) of every socket the site opens."""
        out = [("haproxy", self.lb, p) for p in (self.http_port, self.https_port, self.stats_port, PEERS_PORT)]
        for i, a in enumerate(self.web, 1):
            out += [(f"web{i}", a, self.https_port), (f"web{i}", a, self.status_port)]
            out += [(f"web{i}-exporter", a, self.nginx_exporter_port)]
        for i, a in enumerate(self.app, 1):
            out += [(f"app{i}", a, self.https_port), (f"app{i}", a, self.status_port), (f"app{i}", a, self.app_port)]
            out += [(f"app{i}-exporter", a, self.nginx_exporter_port)]
        out += [("mariadb-primary", self.db_primary, self.db_port), ("mariadb-replica", self.db_replica, self.db_port)]
        out += [("mysqld-exporter-primary", self.db_primary, self.mysqld_exporter_port)]
        out += [("mysqld-exporter-replica", self.db_replica, self.mysqld_exporter_port)]
        out += [
            ("prometheus", self.monitor, self.prometheus_port),
            ("node-exporter", self.monitor, self.node_exporter_port),
        ]
        return out


@dataclass
class Server:
    """One web or app server of the local site, as its tier's group would list it."""

    name: str
    """``web3``: also its folder under the state folder, and its key in ``State.pids``."""
    address: str
    state: str = "ready"
    """ready | drain: what the members file tells the discovery agent."""

    @property
    def number(self) -> int:
        return int("".join(ch for ch in self.name if ch.isdigit()))


@dataclass
class State:
    """What ``up`` started, so ``down`` stops exactly that."""

    pids: dict[str, int] = field(default_factory=dict)
    url: str = ""
    servers: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    """Per tier, the servers in the members file (``Server`` as a dict)."""
    launched: dict[str, int] = field(default_factory=dict)
    """Per tier, how many servers it ever had: the next one is ``<tier><launched + 1>``."""

    def tier(self, tier: str) -> list[Server]:
        return [Server(**s) for s in self.servers.get(tier, [])]

    def set_tier(self, tier: str, servers: list[Server]) -> None:
        self.servers[tier] = [asdict(s) for s in servers]

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        """Atomically: ``status`` may read it while a scale or roll writes it."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def check_binaries() -> None:
    missing = [f"{b} (Debian package {pkg})" for b, pkg in BINARIES.items() if not _which(b)]
    if missing:
        raise LocalSiteError("missing: " + ", ".join(missing) + " - run `make bootstrap` (as root) first")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def check_ports_free(layout: Layout) -> None:
    from local.mariadb import MariaDBError, check_port_free

    for who, address, port in layout.listeners():
        try:
            check_port_free(address, port)
        except MariaDBError:
            raise LocalSiteError(
                f"{address}:{port} (for {who}) is taken by another process - stop it, or `make down` if it is ours"
            ) from None


def _wait_http(url: str, ca: Path | None, timeout: float = 30.0) -> None:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except Exception as err:
            last = str(err)
        time.sleep(0.3)
    raise LocalSiteError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last})")


def _read_pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            text = path.read_text().split()
            if text:
                return int(text[0])
        time.sleep(0.1)
    raise LocalSiteError(f"no pid file {path} after {timeout:.0f} s")


def _healthz(address: str, port: int, tier: str, ca: Path, timeout: float = 3.0) -> str:
    """A server's own /healthz over TLS, verified the way HAProxy verifies it; '' when it answers 200,
    else what went wrong."""
    name = f"{tier}.foobar.internal"
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            status = tls.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as err:  # ssl.SSLError is an OSError
        return str(err)
    return "" if status.split()[1:2] == ["200"] else status or "no answer"


def _sessions(runtime: Runtime, backend: str) -> dict[str, int]:
    """Sessions (current + queued) per server of a backend, from HAProxy's ``show stat``."""
    lines = runtime.command("show stat").lstrip("# ").splitlines()
    header = lines[0].split(",") if lines else []
    found: dict[str, int] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND", None):
            found[row["svname"]] = int(row.get("scur") or 0) + int(row.get("qcur") or 0)
    return found


def _terminate(pid: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Signal a process and wait until it is gone; SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_up(slot: Slot | None) -> bool:
    return slot is not None and slot.up


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise LocalSiteError(f"TIER: {tier!r} is not a tier that scales (choose from {', '.join(TIERS)})")


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_MEMBERS:
        raise LocalSiteError(f"N: {count!r} is outside 1..{MAX_MEMBERS} (the most members a tier may have)")


class LocalSite:
    def __init__(
        self,
        directory: Path = DEFAULT_DIR,
        layout: Layout | None = None,
        say: Callable[[str], None] | None = None,
        limits: EdgeLimits | None = None,
    ) -> None:
        self.dir = Path(directory).resolve()
        self.layout = layout or Layout()
        self.limits = limits or EdgeLimits()
        """The per-client limits at the door: the settings' defaults, as on a new stack."""
        self.state_file = self.dir / "state.json"
        self.members_file = self.dir / "members.json"
        """The local stand-in for the Auto Scaling groups: what the discovery agent reads."""
        self.lb_home = self.dir / "lb"
        self.admin_socket = self.lb_home / "admin.sock"
        self.server_state = self.lb_home / "server-state"
        self.say = say or (lambda line: None)
        self.monitoring = Monitoring(self.dir / "monitoring", self.layout)

    # ---- status -------------------------------------------------------------------------------
    def running(self) -> dict[str, bool]:
        return {name: alive(pid) for name, pid in State.load(self.state_file).pids.items()}

    def status(self) -> str:
        procs = self.running()
        if not procs:
            return "local site: not running"
        state = State.load(self.state_file)
        lines = [f"local site: {state.url}"]
        lines += [f"  {name:<24} {'running' if ok else 'DEAD'}" for name, ok in sorted(procs.items())]
        lines += [f"  {tier}: {self._describe(state, tier)}" for tier in TIERS if state.servers.get(tier)]
        return "\n".join(lines)

    # ---- up -----------------------------------------------------------------------------------
    def up(self) -> str:
        procs = self.running()
        if procs and all(procs.values()):
            return f"already running: {State.load(self.state_file).url}"
        if procs:  # a stale or half-dead run: clean it away first
            print("local site: found a stale run, stopping what is left of it", file=sys.stderr)
            self.down()
        check_binaries()
        check_ports_free(self.layout)
        self.dir.mkdir(parents=True, exist_ok=True)
        state = State(url=self.layout.url)
        try:
            self._up(state)
        except BaseException:
            state.save(self.state_file)
            self.down()
            raise
        state.save(self.state_file)
        return state.url

    def _up(self, state: State) -> None:
        from local.mariadb import AppAccount, CertificateAuthority, MonitorAccount, start_pair, write_private
        from userdata.configs import UNPRIVILEGED, HaproxyConfig, render_haproxy_cfg
        from userdata.site import build_site

        lay = self.layout
        pki = self.dir / "pki"
        ca = CertificateAuthority.create(pki, "foobar local internal CA", days=30)

        # Database: primary + replica over verified TLS, and the app's account.
        account = AppAccount("foobar", "foobar_app", secrets.token_urlsafe(24))
        monitor = MonitorAccount("foobar_exporter", secrets.token_urlsafe(24))
        primary, replica = start_pair(
            self.dir / "db", lay.db_primary, lay.db_replica, lay.db_port, ca, app=account, monitor=monitor, timeout=90
        )
        state.pids["mariadb-primary"] = primary.pid() or 0
        state.pids["mariadb-replica"] = replica.pid() or 0
        state.save(self.state_file)
        # One mysqld exporter per database, its password in a 0600 client file only.
        for db, database in zip(DATABASES, (primary, replica), strict=True):
            cnf = database.write_exporter_cnf(self.monitoring.home / f"mysqld-exporter-{db}.cnf", monitor)
            state.pids[f"mysqld-exporter-{db}"] = self.monitoring.start_mysqld_exporter(db, database.address, cnf)
            state.save(self.state_file)

        build_site(ROOT / "site", self.dir / "www")
        # What every app server gets (on AWS: from SSM at boot), in a file only the owner may read.
        env = {
            "FOOBAR_DB_WRITER_HOST": lay.db_primary,
            "FOOBAR_DB_READER_HOST": lay.db_replica,
            "FOOBAR_DB_PORT": str(lay.db_port),
            "FOOBAR_DB_NAME": account.database,
            "FOOBAR_DB_USER": account.user,
            "FOOBAR_DB_PASSWORD": account.password,
            "FOOBAR_DB_CA_FILE": str(ca.cert),
        }
        write_private(self.dir / "app.env", "".join(f"{k}={v}\n" for k, v in env.items()).encode())

        # Web and app tiers: each server ready (its own /healthz answers) before it becomes a member.
        for tier in TIERS:
            for address in lay.initial(tier):
                server = self._start_server(state, tier, address)
                state.set_tier(tier, [*state.tier(tier), server])
        state.save(self.state_file)
        self._write_members(state)

        # Load balancer: the public side's certificate from the same CA, for the domain and the address.
        home = self.lb_home
        tls = ca.issue_server_cert(home / "tls", lay.domain, dns_names=[lay.domain, "localhost"], ip_addresses=[lay.lb])
        pem = home / "site.pem"
        write_private(pem, Path(tls.cert).read_bytes() + Path(tls.key).read_bytes())
        cfg_lb = HaproxyConfig(
            stats_address=lay.lb,
            cert_file=str(pem),
            ca_file=str(ca.cert),
            bind_address=lay.lb,
            http_port=lay.http_port,
            https_port=lay.https_port,
            stats_port=lay.stats_port,
            backend_port=lay.https_port,
            **UNPRIVILEGED,
            stats_socket=str(self.admin_socket),
            server_state_file=str(self.server_state),
            pidfile=str(home / "haproxy.pid"),
            internal_networks=(lay.inside,),
            peers_file=str(home / "peers.cfg"),
            limits=self.limits,
        )
        # A fresh run starts from no saved server state (the agent writes it from now on).
        self.server_state.write_text("1\n")
        (home / "discovery-cache.json").unlink(missing_ok=True)
        cfg_file = home / "haproxy.cfg"
        cfg_file.write_text(render_haproxy_cfg(cfg_lb))
        # One load balancer here: node.pair's peers file naming only itself (its stick tables survive reloads).
        alone = PairConfig(own_address=lay.lb, interface="lo", health_url=f"http://{lay.lb}:{lay.stats_port}/healthz")
        Path(cfg_lb.peers_file).write_text(render_peers(alone, [lay.lb]))
        files = ["-f", str(cfg_file), "-f", cfg_lb.peers_file]
        (home / "haproxy.pid").unlink(missing_ok=True)  # a previous run's: never to be read as this one's
        log = open(home / "haproxy.log", "ab")  # noqa: SIM115 - handed to the daemon
        subprocess.run([_which("haproxy") or "haproxy", "-c", "-q", *files], check=True)
        subprocess.Popen(
            # Master-worker in the foreground (its own session): with -D, HAProxy points stdout, where
            # it logs here, at /dev/null. The config's pidfile is the master's.
            [_which("haproxy") or "haproxy", "-W", *files],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        state.pids["haproxy"] = _read_pid(home / "haproxy.pid")
        state.save(self.state_file)
        state.pids["discovery"] = self._start_discovery()
        state.save(self.state_file)

        _wait_http(f"https://{lay.lb}:{lay.https_port}/healthz", pki / "ca.pem")
        for tier in TIERS:
            for server in state.tier(tier):
                self._wait_haproxy(tier, server, _is_up, "UP")

        # Monitoring last: every target is there when Prometheus first scrapes.
        state.pids["node-exporter"] = self.monitoring.start_node_exporter()
        state.save(self.state_file)
        state.pids["prometheus"] = self.monitoring.start_prometheus()

    def _start_discovery(self) -> int:
        """The load balancer's discovery agent, reading the members file instead of the groups."""
        log = open(self.lb_home / "discovery.log", "ab")  # noqa: SIM115 - handed to the agent
        command = [
            sys.executable,
            "-m",
            "node.discovery",
            "--socket",
            str(self.admin_socket),
            "--source",
            "file",
            "--members-file",
            str(self.members_file),
            *("--backend", "web=web", "--backend", "app=app"),
            *("--interval", "1"),
            *("--cache", str(self.lb_home / "discovery-cache.json")),
            *("--state-file", str(self.server_state)),
        ]
        with log:
            proc = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return proc.pid

    # ---- one server ---------------------------------------------------------------------------
    def _ca(self) -> Any:
        from local.mariadb import CertificateAuthority

        return CertificateAuthority(cert=self.dir / "pki" / "ca.pem", key=self.dir / "pki" / "ca.key")

    def _next_address(self, state: State, tier: str, number: int) -> str:
        """The tier's next free address, counting on from the last one handed out: an address just
        given up is not taken again at once (its old connections are still closing)."""
        taken = self.layout.reserved() | {s.address for t in TIERS for s in state.tier(t)}
        hosts = [str(h) for h in self.layout.network(tier).hosts()]
        for i in range(len(hosts)):
            candidate = hosts[(number - 1 + i) % len(hosts)]
            if candidate not in taken:
                return candidate
        raise LocalSiteError(f"{tier}: no free address left in {self.layout.network(tier)}")

    def _start_server(self, state: State, tier: str, address: str | None = None) -> Server:
        """Start the tier's next server and wait until its own /healthz answers over TLS. On failure
        whatever was started is stopped again."""
        from local.mariadb import MariaDBError, check_port_free

        number = state.launched.get(tier, 0) + 1
        server = Server(f"{tier}{number}", address or self._next_address(state, tier, number))
        ports = [self.layout.https_port, self.layout.status_port] + ([self.layout.app_port] if tier == "app" else [])
        for port in ports:
            try:
                check_port_free(server.address, port)
            except MariaDBError:
                raise LocalSiteError(
                    f"{server.address}:{port} (for {server.name}) is taken by another process"
                ) from None
        state.launched[tier] = number
        try:
            if tier == "web":
                self._start_web(state, server)
            else:
                self._start_app(state, server)
            state.save(self.state_file)
            exporter = self.monitoring.start_nginx_exporter(self.dir / server.name, server.address)
            state.pids[f"{server.name}-exporter"] = exporter
            self._wait_ready(tier, server)
        except BaseException:
            self._stop_server(state, server)
            raise
        finally:
            state.save(self.state_file)
        return server

    def _start_web(self, state: State, server: Server) -> None:
        from userdata.configs import NginxWebConfig, render_nginx_web

        home = self.dir / server.name
        tls = self._ca().issue_server_cert(home / "tls", "web.foobar.internal", dns_names=["web.foobar.internal"])
        cfg = NginxWebConfig(
            **self._nginx_common(home, tls.cert, tls.key, server.address),
            server_name="web.foobar.internal",
            root=str(self.dir / "www"),
        )
        state.pids[server.name] = self._start_nginx(home, render_nginx_web(cfg))

    def _start_app(self, state: State, server: Server) -> None:
        """gunicorn behind nginx, with the site's app environment."""
        from local.mariadb import write_private
        from userdata.configs import NginxAppConfig, render_nginx_app

        home = self.dir / server.name
        tls = self._ca().issue_server_cert(home / "tls", "app.foobar.internal", dns_names=["app.foobar.internal"])
        text = (self.dir / "app.env").read_text()
        write_private(home / "app.env", text.encode())
        env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        common = self._nginx_common(home, tls.cert, tls.key, server.address)
        state.pids[f"gunicorn{server.number}"] = self._start_gunicorn(home, server.address, env)
        state.save(self.state_file)
        cfg = NginxAppConfig(
            **common, server_name="app.foobar.internal", upstream=f"{server.address}:{self.layout.app_port}"
        )
        state.pids[server.name] = self._start_nginx(home, render_nginx_app(cfg))

    def _wait_ready(self, tier: str, server: Server, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while why := _healthz(server.address, self.layout.https_port, tier, self.dir / "pki" / "ca.pem"):
            if time.monotonic() > deadline:
                raise LocalSiteError(
                    f"{server.name} ({server.address}): /healthz not ready after {timeout:.0f} s: {why}"
                )
            time.sleep(0.1)

    def _stop_server(self, state: State, server: Server) -> None:
        """nginx finishes its requests (SIGQUIT), then the app server behind it goes."""
        home = self.dir / server.name
        processes = [(f"{server.name}-exporter", signal.SIGTERM), (server.name, signal.SIGQUIT)]
        if server.name.startswith("app"):
            processes.append((f"gunicorn{server.number}", signal.SIGTERM))
        for key, sig in processes:
            pid = state.pids.pop(key, None)
            if pid:
                _terminate(pid, sig)
        for pid_file in (home / "nginx.pid", home / "gunicorn.pid"):
            pid_file.unlink(missing_ok=True)  # never to be mistaken later for a live process of ours
        state.save(self.state_file)

    # ---- the members file and HAProxy's view ----------------------------------------------------
    def _write_members(self, state: State) -> None:
        port = self.layout.https_port
        FileSource.write(
            self.members_file,
            {tier: [Member(s.address, port, s.state) for s in state.tier(tier)] for tier in TIERS},  # type: ignore[arg-type]
        )
        # Prometheus' nginx targets follow the members (file_sd: no restart).
        self.monitoring.write_targets({tier: [s.address for s in state.tier(tier)] for tier in TIERS})

    def _slot(self, tier: str, server: Server) -> Slot | None:
        for slot in Runtime(self.admin_socket).slots(tier).values():
            if (slot.address, slot.port) == (server.address, self.layout.https_port):
                return slot
        return None

    def _wait_haproxy(
        self, tier: str, server: Server, ok: Callable[[Slot | None], bool], what: str, timeout: float = READY_TIMEOUT_S
    ) -> Slot | None:
        """Wait until HAProxy's slot for ``server`` is ``what`` (the agent applies the members file
        every second)."""
        deadline = time.monotonic() + timeout
        while True:
            last: object
            try:
                slot = last = self._slot(tier, server)
                if ok(slot):
                    return slot
            except RuntimeError_ as err:
                last = err
            if time.monotonic() > deadline:
                raise LocalSiteError(
                    f"{server.name} ({server.address}) is not {what} in HAProxy's {tier} backend"
                    f" after {timeout:.0f} s (last: {last}); see {self.lb_home / 'discovery.log'}"
                )
            time.sleep(0.1)

    def _describe(self, state: State, tier: str) -> str:
        servers = state.tier(tier)
        return f"{len(servers)} server{'s' * (len(servers) != 1)}: " + ", ".join(
            f"{s.name} {s.address}" for s in servers
        )

    # ---- scale and roll -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _operation(self, what: str) -> Iterator[State]:
        """One scale or roll at a time, on a running site."""
        procs = self.running()
        if not (procs.get("haproxy") and procs.get("discovery")):
            raise LocalSiteError(f"{what}: the local site in {self.dir} is not running - `make up` first")
        with open(self.dir / "operation.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LocalSiteError(f"{what}: another scale or roll is running on {self.dir}") from None
            yield State.load(self.state_file)

    def _add(self, state: State, tier: str) -> Server:
        """A new server in: ready first, then a member, then UP in HAProxy."""
        server = self._start_server(state, tier)
        state.set_tier(tier, [*state.tier(tier), server])
        state.save(self.state_file)
        self._write_members(state)
        try:
            self._wait_haproxy(tier, server, _is_up, "UP")
        except BaseException:  # out again, whatever HAProxy made of it
            with contextlib.suppress(LocalSiteError, RuntimeError_):
                self._retire(state, tier, [server], drain_timeout=0)
            if server.name in state.pids:
                state.set_tier(tier, [s for s in state.tier(tier) if s.name != server.name])
                self._write_members(state)
                self._stop_server(state, server)
            raise
        self.say(f"  {server.name} {server.address}: ready, UP in HAProxy")
        return server

    def _retire(self, state: State, tier: str, leaving: list[Server], drain_timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Servers out without a failed request: drain until no session is left (or ``drain_timeout``),
        then out of the members (the agent puts the slot in maintenance), then stopped."""
        names = {s.name for s in leaving}
        state.set_tier(tier, [replace(s, state="drain") if s.name in names else s for s in state.tier(tier)])
        state.save(self.state_file)
        self._write_members(state)
        runtime = Runtime(self.admin_socket)
        deadline = time.monotonic() + drain_timeout
        for server in leaving:
            slot = self._wait_haproxy(tier, server, lambda s: s is None or s.draining, "draining")
            left = _sessions(runtime, tier).get(slot.name, 0) if slot else 0
            while left and time.monotonic() < deadline:
                time.sleep(0.1)
                left = _sessions(runtime, tier).get(slot.name, 0) if slot else 0
            note = (
                "no session left" if not left else f"{left} sessions left after {drain_timeout:.0f} s, removed anyway"
            )
            self.say(f"  {server.name} {server.address}: drained ({note})")
        state.set_tier(tier, [s for s in state.tier(tier) if s.name not in names])
        state.save(self.state_file)
        self._write_members(state)
        for server in leaving:
            self._wait_haproxy(tier, server, lambda s: s is None or s.in_maintenance, "in maintenance")
            self._stop_server(state, server)
            self.say(f"  {server.name} {server.address}: stopped")

    def scale(self, tier: str, count: int) -> str:
        """Start or stop servers so that ``tier`` has ``count``; the newest leave first."""
        _check_tier(tier)
        _check_count(count)
        with self._operation(f"scale {tier}") as state:
            current = state.tier(tier)
            self.say(f"scale {tier} from {len(current)} to {count}")
            for _ in range(count - len(current)):
                self._add(state, tier)
            if count < len(current):
                self._retire(state, tier, current[count:])
            return f"{tier}: {self._describe(state, tier)}"

    def roll(self, tier: str) -> str:
        """Replace every server of ``tier``, one at a time: the new one UP before the old one drains."""
        _check_tier(tier)
        with self._operation(f"roll {tier}") as state:
            old = state.tier(tier)
            self.say(f"roll {tier}: {len(old)} server{'s' * (len(old) != 1)}, one at a time")
            for server in old:
                self._add(state, tier)
                self._retire(state, tier, [server])
            return f"{tier}: {self._describe(state, tier)}"

    def _nginx_common(self, home: Path, cert: Path | str, key: Path | str, address: str) -> dict[str, Any]:
        for sub in ("logs", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        return {
            "cert_file": str(cert),
            "key_file": str(key),
            "listen_address": address,
            "https_port": self.layout.https_port,
            "status_address": address,
            "status_port": self.layout.status_port,
            "pid_file": str(home / "nginx.pid"),
            "error_log": str(home / "logs" / "error.log"),
            "access_log": str(home / "logs" / "access.log"),
            # A root master would run its workers as nobody, who may not reach a folder under a
            # private home or pytest's 0700 temp: workers run as whoever started the site.
            "user": pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else "",
            "temp_dir": str(home / "tmp"),
            "worker_processes": "1",
        }

    def _start_nginx(self, home: Path, conf: str) -> int:
        path = home / "nginx.conf"
        path.write_text(conf)
        nginx = _which("nginx") or "nginx"
        result = subprocess.run([nginx, "-q", "-t", "-c", str(path), "-p", str(home)], capture_output=True, text=True)
        if result.returncode:
            raise LocalSiteError(f"nginx -t failed for {path}: {result.stderr.strip()}")
        (home / "nginx.pid").unlink(missing_ok=True)  # a previous run's: never to be read as this one's
        subprocess.run([nginx, "-c", str(path), "-p", str(home)], check=True, stdin=subprocess.DEVNULL)
        return _read_pid(home / "nginx.pid")

    def _start_gunicorn(self, home: Path, address: str, env: dict[str, str]) -> int:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        pid_file = home / "gunicorn.pid"
        pid_file.unlink(missing_ok=True)
        log = home / "logs" / "app.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(gunicorn),
            *gunicorn_args(f"{address}:{self.layout.app_port}", workers=2, threads=4),
            "--pid",
            str(pid_file),
            "--error-logfile",
            str(log),
            "--chdir",
            str(ROOT),
            "--daemon",
            WSGI_APP,
        ]
        subprocess.run(command, check=True, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
        pid = _read_pid(pid_file)
        _wait_http(f"http://{address}:{self.layout.app_port}/healthz", None, timeout=20)
        return pid

    # ---- down ---------------------------------------------------------------------------------
    def down(self) -> str:
        state = State.load(self.state_file)
        # Also every pid file under the folder: a daemon restarted by hand is stopped too.
        for pid_file in sorted(self.dir.rglob("*.pid")) if self.dir.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text().split()[0])
                if pid not in state.pids.values():
                    state.pids[f"{pid_file.parent.name}/{pid_file.stem}"] = pid
        stopped = []
        # Front to back, so nothing logs errors about a backend that went first.
        order = [
            "prometheus",
            "node-exporter",
            "discovery",
            "haproxy",
            *sorted(k for k in state.pids if k.startswith(("web", "app", "gunicorn"))),
        ]
        order += ["mysqld-exporter-replica", "mysqld-exporter-primary", "mariadb-replica", "mariadb-primary"]
        for name in order + [k for k in state.pids if k not in order]:
            target = state.pids.get(name)
            if not target or not alive(target):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while alive(target) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(target):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signal.SIGKILL)
            stopped.append(name)
        if self.state_file.exists():
            self.state_file.unlink()
        return f"stopped: {', '.join(stopped)}" if stopped else "nothing was running"


def _server_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (1..{MAX_MEMBERS})") from None
    try:
        _check_count(count)
    except LocalSiteError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("N: ")) from None
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (default: .local-site/)")
    # --dir is accepted after the command too (python -m local status --dir X).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help="state folder (default: .local-site/)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{up,down,status,scale,roll}")
    commands.add_parser("up", parents=[common], help="start the whole site on this machine")
    commands.add_parser("down", parents=[common], help="stop everything up started")
    commands.add_parser("status", parents=[common], help="what runs, and each tier's servers")
    scale = commands.add_parser("scale", parents=[common], help="start or stop servers so that TIER has N")
    scale.add_argument("tier", metavar="TIER", choices=TIERS, help="web or app")
    scale.add_argument("count", metavar="N", type=_server_count, help=f"servers wanted, 1..{MAX_MEMBERS}")
    roll = commands.add_parser("roll", parents=[common], help="replace every server of TIER, one at a time")
    roll.add_argument("tier", metavar="TIER", choices=TIERS, help="web or app")
    args = parser.parse_args(argv)
    site = LocalSite(args.dir, say=lambda line: print(line, flush=True))
    try:
        if args.command == "up":
            url = site.up()
            ca = site.dir / "pki" / "ca.pem"
            print(f"local site is {url}" if url.startswith("already") else f"local site is up: {url}")
            print(f"  try:  curl --cacert {ca} {site.layout.url}")
            print(
                f"        curl --cacert {ca} --resolve {site.layout.domain}:443:{site.layout.lb} https://{site.layout.domain}/"
            )
            print(f"  prometheus: {site.monitoring.url}")
            print(f"        QPS per tier: {site.monitoring.graph_url()}")
            print("  stop: make down")
        elif args.command == "down":
            print(site.down())
        elif args.command == "scale":
            print(site.scale(args.tier, args.count))
        elif args.command == "roll":
            print(site.roll(args.tier))
        else:
            print(site.status())
    except (LocalSiteError, OSError, subprocess.CalledProcessError) as err:
        print(f"local site: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the helpers' own errors (MariaDBError, ValueError) are one line too
        print(f"local site: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0
