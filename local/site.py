"""The whole site on one machine, from the same render functions the cloud-init user-data uses.

Each server gets its own loopback address, like its own host in the VPC:

    HAProxy        127.0.10.1   :80 :443, stats/Prometheus :8404
    nginx web i    127.0.20.i   :443, stub_status :8081
    nginx app 1    127.0.30.1   :443, stub_status :8081, gunicorn on :8000 behind it
    MariaDB        127.0.50.1 (primary) and 127.0.50.2 (replica) :3306, TLS required

Certificates come from a local internal CA (ECDSA P-256), as on AWS. State lives in one folder
(``.local-site/`` by default); ``down`` stops everything that ``up`` started and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from userdata.configs import WSGI_APP, gunicorn_args

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".local-site"
BINARIES = {
    "haproxy": "haproxy",
    "nginx": "nginx-light",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
}


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

    @property
    def url(self) -> str:
        return f"https://{self.lb}/" if self.https_port == 443 else f"https://{self.lb}:{self.https_port}/"

    def listeners(self) -> list[tuple[str, str, int]]:
        """(who, address, port) of every socket the site opens."""
        out = [("haproxy", self.lb, p) for p in (self.http_port, self.https_port, self.stats_port)]
        for i, a in enumerate(self.web, 1):
            out += [(f"web{i}", a, self.https_port), (f"web{i}", a, self.status_port)]
        for i, a in enumerate(self.app, 1):
            out += [(f"app{i}", a, self.https_port), (f"app{i}", a, self.status_port), (f"app{i}", a, self.app_port)]
        out += [("mariadb-primary", self.db_primary, self.db_port), ("mariadb-replica", self.db_replica, self.db_port)]
        return out


@dataclass
class State:
    """What ``up`` started, so ``down`` stops exactly that."""

    pids: dict[str, int] = field(default_factory=dict)
    url: str = ""

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


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


class LocalSite:
    def __init__(self, directory: Path = DEFAULT_DIR, layout: Layout | None = None) -> None:
        self.dir = Path(directory).resolve()
        self.layout = layout or Layout()
        self.state_file = self.dir / "state.json"

    # ---- status -------------------------------------------------------------------------------
    def running(self) -> dict[str, bool]:
        return {name: alive(pid) for name, pid in State.load(self.state_file).pids.items()}

    def status(self) -> str:
        procs = self.running()
        if not procs:
            return "local site: not running"
        lines = [f"local site: {State.load(self.state_file).url}"]
        lines += [f"  {name:<16} {'running' if ok else 'DEAD'}" for name, ok in sorted(procs.items())]
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
        from local.mariadb import AppAccount, CertificateAuthority, start_pair, write_private
        from userdata.configs import (
            HaproxyConfig,
            NginxAppConfig,
            NginxWebConfig,
            render_haproxy_cfg,
            render_nginx_app,
            render_nginx_web,
            servers,
        )
        from userdata.site import build_site

        lay = self.layout
        pki = self.dir / "pki"
        ca = CertificateAuthority.create(pki, "foobar local internal CA", days=30)

        # Database: primary + replica over verified TLS, and the app's account.
        account = AppAccount("foobar", "foobar_app", secrets.token_urlsafe(24))
        primary, replica = start_pair(
            self.dir / "db", lay.db_primary, lay.db_replica, lay.db_port, ca, app=account, timeout=90
        )
        state.pids["mariadb-primary"] = primary.pid() or 0
        state.pids["mariadb-replica"] = replica.pid() or 0
        state.save(self.state_file)

        site_root = self.dir / "www"
        build_site(ROOT / "site", site_root)

        # Web tier.
        for i, address in enumerate(lay.web, 1):
            home = self.dir / f"web{i}"
            tls = ca.issue_server_cert(home / "tls", "web.foobar.internal", dns_names=["web.foobar.internal"])
            cfg = NginxWebConfig(
                **self._nginx_common(home, tls.cert, tls.key, address),
                server_name="web.foobar.internal",
                root=str(site_root),
            )
            state.pids[f"web{i}"] = self._start_nginx(home, render_nginx_web(cfg))
            state.save(self.state_file)

        # App tier: gunicorn behind nginx, credentials in an env file only the owner may read.
        for i, address in enumerate(lay.app, 1):
            home = self.dir / f"app{i}"
            tls = ca.issue_server_cert(home / "tls", "app.foobar.internal", dns_names=["app.foobar.internal"])
            env = {
                "FOOBAR_DB_WRITER_HOST": lay.db_primary,
                "FOOBAR_DB_READER_HOST": lay.db_replica,
                "FOOBAR_DB_PORT": str(lay.db_port),
                "FOOBAR_DB_NAME": account.database,
                "FOOBAR_DB_USER": account.user,
                "FOOBAR_DB_PASSWORD": account.password,
                "FOOBAR_DB_CA_FILE": str(ca.cert),
            }
            write_private(home / "app.env", "".join(f"{k}={v}\n" for k, v in env.items()).encode())
            state.pids[f"gunicorn{i}"] = self._start_gunicorn(home, address, env)
            state.save(self.state_file)
            cfg_app = NginxAppConfig(
                **self._nginx_common(home, tls.cert, tls.key, address),
                server_name="app.foobar.internal",
                upstream=f"{address}:{lay.app_port}",
            )
            state.pids[f"app{i}"] = self._start_nginx(home, render_nginx_app(cfg_app))
            state.save(self.state_file)

        # Load balancer: the public side's certificate from the same CA, for the domain and the address.
        home = self.dir / "lb"
        tls = ca.issue_server_cert(home / "tls", lay.domain, dns_names=[lay.domain, "localhost"], ip_addresses=[lay.lb])
        pem = home / "site.pem"
        write_private(pem, Path(tls.cert).read_bytes() + Path(tls.key).read_bytes())
        cfg_lb = HaproxyConfig(
            web_servers=servers("web", lay.web),
            app_servers=servers("app", lay.app),
            stats_address=lay.lb,
            cert_file=str(pem),
            ca_file=str(ca.cert),
            bind_address=lay.lb,
            http_port=lay.http_port,
            https_port=lay.https_port,
            stats_port=lay.stats_port,
            log_target="stdout format raw",
            chroot="",
            user="",
            group="",
            stats_socket=str(home / "admin.sock"),
            pidfile=str(home / "haproxy.pid"),
        )
        cfg_file = home / "haproxy.cfg"
        cfg_file.write_text(render_haproxy_cfg(cfg_lb))
        log = open(home / "haproxy.log", "ab")  # noqa: SIM115 - handed to the daemon
        subprocess.run([_which("haproxy") or "haproxy", "-c", "-q", "-f", str(cfg_file)], check=True)
        subprocess.Popen(
            [_which("haproxy") or "haproxy", "-D", "-W", "-f", str(cfg_file), "-p", str(home / "haproxy.pid")],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        state.pids["haproxy"] = _read_pid(home / "haproxy.pid")
        state.save(self.state_file)

        _wait_http(f"https://{lay.lb}:{lay.https_port}/healthz", pki / "ca.pem")

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
        subprocess.run([nginx, "-c", str(path), "-p", str(home)], check=True, stdin=subprocess.DEVNULL)
        return _read_pid(home / "nginx.pid")

    def _start_gunicorn(self, home: Path, address: str, env: dict[str, str]) -> int:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        pid_file = home / "gunicorn.pid"
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
        order = ["haproxy", *sorted(k for k in state.pids if k.startswith(("web", "app", "gunicorn")))]
        order += ["mariadb-replica", "mariadb-primary"]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (default: .local-site/)")
    args = parser.parse_args(argv)
    site = LocalSite(args.dir)
    try:
        if args.command == "up":
            url = site.up()
            ca = site.dir / "pki" / "ca.pem"
            print(f"local site is {url}" if url.startswith("already") else f"local site is up: {url}")
            print(f"  try:  curl --cacert {ca} {site.layout.url}")
            print(
                f"        curl --cacert {ca} --resolve {site.layout.domain}:443:{site.layout.lb} https://{site.layout.domain}/"
            )
            print("  stop: make down")
        elif args.command == "down":
            print(site.down())
        else:
            print(site.status())
    except (LocalSiteError, OSError, subprocess.CalledProcessError) as err:
        print(f"local site: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the helpers' own errors (MariaDBError, ValueError) are one line too
        print(f"local site: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0
