"""The daemon configuration files of the three roles, each rendered from one small frozen dataclass.

Every path, address and port is a field, so the same templates serve a server on AWS (built with the
``for_aws`` class methods from :class:`userdata.RoleValues`) and a local run of the whole site on one
machine (each server on its own loopback address, files under a run directory, no root-owned paths).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypedDict

import jinja2

from app.config import SHARED_CACHE_S
from node.discovery import SLOTS
from node.pair import PEERS_SECTION, peer_name
from userdata import EdgeLimits, RoleValues

TEMPLATES = Path(__file__).resolve().parent / "templates"
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)

# Mozilla "intermediate" (guideline 6.0): TLS 1.2 suites; TLS 1.3 suites are OpenSSL's defaults.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
TLS13_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
CURVES = "X25519:prime256v1:secp384r1"
HSTS = "max-age=63072000; includeSubDomains"
BACKEND_KEEPALIVE_S = 75
"""nginx keeps idle connections from HAProxy this long; every HAProxy idle time is shorter."""
HAPROXY_IDLE_S = 10
"""HAProxy's idle times towards clients and backends (http-keep-alive, pool-purge-delay)."""

# Where the files live on the AWS servers (Ubuntu 24.04 packages).
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
HAPROXY_SITE_PEM = "/etc/haproxy/certs/site.pem"
"""The PEM served to the internet: the ACM export once issued, else the internal-CA leaf."""
HAPROXY_INTERNAL_PEM = "/etc/haproxy/certs/internal.pem"
HAPROXY_CA = "/etc/haproxy/internal-ca.pem"
HAPROXY_PEERS = "/etc/haproxy/peers.cfg"
"""The ``peers`` section (the load balancers, found at run time by node.pair), loaded with haproxy.cfg."""
HAPROXY_SERVER_STATE = "/var/lib/haproxy/server-state"
"""The discovery agent writes HAProxy's server state here; HAProxy reads it when it (re)loads."""
PRIVATE_IP_ENV = "FOOBAR_PRIVATE_IP"
"""The load balancer's boot sets this in HAProxy's environment: its private address, from IMDS."""
STATS_ADDRESS_FROM_ENV = "${" + PRIVATE_IP_ENV + "}"
"""``HaproxyConfig.stats_address`` on AWS: expanded by HAProxy at start (one user-data for every LB)."""
NGINX_CONF = "/etc/nginx/nginx.conf"
NGINX_CERT = "/etc/nginx/tls/server.crt"
NGINX_KEY = "/etc/nginx/tls/server.key"
SITE_ROOT = "/var/www/foobar"
APP_UPSTREAM = "127.0.0.1:8000"
WSGI_APP = "app.main:create_app()"
MICRO_CACHE_MB = 16
"""Memory per load balancer for the micro-cache, which keeps the app's gzipped pages for ``SHARED_CACHE_S``."""
MICRO_CACHE_OBJECT_BYTES = 512 * 1024
"""The largest page the micro-cache keeps (HAProxy wants it under half of the cache): the home page with
50 entries of 1000 characters is about 60 KB plain."""
APP_KEEPALIVE_S = 75
"""gunicorn keeps idle connections longer than nginx's upstream keepalive_timeout: nginx closes first."""


def gunicorn_args(bind: str, *, workers: int, threads: int) -> list[str]:
    """How the app is served, the same on AWS and locally: gthread workers, which keep connections alive."""
    return [
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        bind,
        "--keep-alive",
        str(APP_KEEPALIVE_S),
    ]


_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_UNSAFE = re.compile(r"[\s;{}#'\"]")


def _check_port(owner: str, name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ValueError(f"{owner}.{name}: {value!r} is not a TCP port (1-65535)")


def _check_address(owner: str, name: str, value: str, *, allow_any: bool = False) -> None:
    if allow_any and value == "":
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        wanted = "an IP address or '' for all addresses" if allow_any else "an IP address"
        raise ValueError(f"{owner}.{name}: {value!r} is not {wanted}") from None


def _check_path(owner: str, name: str, value: str, *, optional: bool = False) -> None:
    if optional and value == "":
        return
    if not value.startswith("/") or _UNSAFE.search(value):
        raise ValueError(f"{owner}.{name}: {value!r} must be an absolute path without spaces, quotes, ';', '{{', '}}'")


def _check_name(owner: str, name: str, value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(f"{owner}.{name}: {value!r} is not a host name")


class Unprivileged(TypedDict):
    log_target: str
    chroot: str
    user: str
    group: str


UNPRIVILEGED: Unprivileged = {"log_target": "stdout format raw", "chroot": "", "user": "", "group": ""}
"""HaproxyConfig fields for HAProxy started by hand (the local site, the pair on one machine, the live
tests): as the calling user, without a chroot, logging to its own stdout."""


@dataclass(frozen=True)
class HaproxyConfig:
    """Everything ``haproxy.cfg`` needs. Defaults are the AWS load balancer's.

    No backend server is listed: each backend is a row of ``server-template`` slots that the
    discovery agent (``node.discovery``) fills at run time, so the file is the same for every
    load balancer and doesn't change when a tier scales or is replaced.
    """

    stats_address: str
    """Where the stats page and Prometheus exporter listen (never the public side): an IP address,
    or ``${FOOBAR_PRIVATE_IP}`` for HAProxy to expand at start (AWS: not known at render time)."""
    cert_file: str = HAPROXY_SITE_PEM
    """Certificate, chain and key in one PEM (HAProxy cannot read an encrypted key)."""
    ca_file: str = HAPROXY_CA
    """The internal CA that signed the backends' certificates."""
    bind_address: str = ""
    """Public listeners' address; '' listens on all addresses."""
    http_port: int = 80
    https_port: int = 443
    stats_port: int = 8404
    backend_port: int = 443
    """The slots' default port; the agent sets each server's address and port."""
    web_name: str = "web.foobar.internal"
    app_name: str = "app.foobar.internal"
    log_target: str = "/dev/log"
    """A syslog socket (rsyslog writes /var/log/haproxy.log on Ubuntu) or 'stdout format raw' locally."""
    chroot: str = "/var/lib/haproxy"
    user: str = "haproxy"
    group: str = "haproxy"
    stats_socket: str = "/run/haproxy/admin.sock"
    """The admin socket: the discovery agent drives the backends through it."""
    server_state_file: str = HAPROXY_SERVER_STATE
    """Saved by the agent after each change, loaded by HAProxy on (re)start (a missing file is a warning)."""
    pidfile: str = ""
    """Empty on AWS: the packaged systemd unit passes -p itself."""
    maxconn: int = 4096
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    internal_networks: tuple[str, ...] = ("10.0.0.0/8",)
    """Addresses "inside" (AWS: the VPC): only they get an answer from /readyz."""
    peers_file: str = HAPROXY_PEERS
    """Where node.pair writes the ``peers`` section; HAProxy is started with ``-f`` on both files."""

    def __post_init__(self) -> None:
        owner = "HaproxyConfig"
        if self.stats_address != STATS_ADDRESS_FROM_ENV:
            try:
                ipaddress.ip_address(self.stats_address)
            except ValueError:
                raise ValueError(
                    f"{owner}.stats_address: {self.stats_address!r} is not an IP address or {STATS_ADDRESS_FROM_ENV!r}"
                ) from None
        _check_address(owner, "bind_address", self.bind_address, allow_any=True)
        for port in ("http_port", "https_port", "stats_port", "backend_port"):
            _check_port(owner, port, getattr(self, port))
        for path in ("cert_file", "ca_file", "server_state_file"):
            _check_path(owner, path, getattr(self, path))
        for path in ("chroot", "stats_socket", "pidfile"):
            _check_path(owner, path, getattr(self, path), optional=True)
        _check_name(owner, "web_name", self.web_name)
        _check_name(owner, "app_name", self.app_name)
        if not (self.log_target.startswith("/") or self.log_target.startswith("stdout") or ":" in self.log_target):
            raise ValueError(f"{owner}.log_target: {self.log_target!r} must be a socket path, host:port or 'stdout'")
        if self.maxconn < 1:
            raise ValueError(f"{owner}.maxconn: {self.maxconn!r} must be positive")
        if not self.internal_networks:
            raise ValueError(f"{owner}.internal_networks: empty; /readyz must answer somebody inside")
        for network in self.internal_networks:
            try:
                ipaddress.ip_network(network, strict=True)
            except ValueError:
                raise ValueError(f"{owner}.internal_networks: {network!r} is not a network like 10.20.0.0/16") from None
        _check_path(owner, "peers_file", self.peers_file)

    @property
    def stats_from_env(self) -> bool:
        return self.stats_address == STATS_ADDRESS_FROM_ENV

    @property
    def local_peer(self) -> str:
        """This load balancer's name in the peers section: its private address, like node.pair names it."""
        return f'"{peer_name(self.stats_address)}"'

    @classmethod
    def for_aws(cls, values: RoleValues) -> HaproxyConfig:
        """The load balancer's configuration on its EC2 instance: the same for every load balancer."""
        if values.role != "lb":
            raise ValueError(f"RoleValues.role: {values.role!r}; HaproxyConfig is for the 'lb' role")
        return cls(
            stats_address=STATS_ADDRESS_FROM_ENV,
            web_name=f"web.{values.internal_domain}",
            app_name=f"app.{values.internal_domain}",
            limits=values.limits,
            internal_networks=(values.vpc_cidr,),
        )


@dataclass(frozen=True)
class NginxConfig:
    """What the web and app tiers' nginx.conf share: TLS listener, status listener, process paths."""

    cert_file: str = NGINX_CERT
    key_file: str = NGINX_KEY
    listen_address: str = ""
    """The TLS listener's address; '' listens on all addresses."""
    https_port: int = 443
    status_address: str = "127.0.0.1"
    """stub_status listens here only (loopback), for the monitoring agent on the same box."""
    status_port: int = 8081
    server_name: str = "web.foobar.internal"
    pid_file: str = "/run/nginx.pid"
    error_log: str = "/var/log/nginx/error.log"
    access_log: str = "/var/log/nginx/access.log"
    user: str = "www-data"
    """Worker user; '' leaves the directive out (a non-root master cannot switch users)."""
    mime_types: str = "/etc/nginx/mime.types"
    temp_dir: str = ""
    """Directory for nginx's temp files; '' keeps the compiled-in /var/lib/nginx paths."""
    worker_processes: str = "auto"

    def _check(self) -> None:
        owner = type(self).__name__
        _check_address(owner, "listen_address", self.listen_address, allow_any=True)
        _check_address(owner, "status_address", self.status_address)
        if not ipaddress.ip_address(self.status_address).is_loopback:
            raise ValueError(f"{owner}.status_address: {self.status_address!r} must be a loopback address")
        _check_port(owner, "https_port", self.https_port)
        _check_port(owner, "status_port", self.status_port)
        for path in ("cert_file", "key_file", "pid_file", "error_log", "access_log", "mime_types"):
            _check_path(owner, path, getattr(self, path))
        _check_path(owner, "temp_dir", self.temp_dir, optional=True)
        _check_name(owner, "server_name", self.server_name)
        if self.user and not re.match(r"^[a-z_][a-z0-9_-]*$", self.user):
            raise ValueError(f"{owner}.user: {self.user!r} is not a user name")
        if not (self.worker_processes == "auto" or self.worker_processes.isdigit()):
            raise ValueError(f"{owner}.worker_processes: {self.worker_processes!r} must be 'auto' or a number")

    def __post_init__(self) -> None:
        self._check()


@dataclass(frozen=True)
class NginxWebConfig(NginxConfig):
    """nginx of the web tier: the fingerprinted static site."""

    root: str = SITE_ROOT

    def __post_init__(self) -> None:
        self._check()
        _check_path(type(self).__name__, "root", self.root)

    @classmethod
    def for_aws(cls, values: RoleValues) -> NginxWebConfig:
        if values.role != "web":
            raise ValueError(f"RoleValues.role: {values.role!r}; NginxWebConfig is for the 'web' role")
        return cls(server_name=f"web.{values.internal_domain}")


@dataclass(frozen=True)
class NginxAppConfig(NginxConfig):
    """nginx of the app tier: TLS in front of the Python app server."""

    server_name: str = "app.foobar.internal"
    upstream: str = APP_UPSTREAM
    """The app server: ``host:port`` or ``unix:/path/to.sock``."""
    upstream_keepalive: int = 32

    def __post_init__(self) -> None:
        self._check()
        owner = type(self).__name__
        if self.upstream.startswith("unix:"):
            _check_path(owner, "upstream", self.upstream[len("unix:") :])
        else:
            host, sep, port = self.upstream.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"{owner}.upstream: {self.upstream!r} must be host:port or unix:/path")
            _check_address(owner, "upstream", host.strip("[]"))
            _check_port(owner, "upstream", int(port))
        if self.upstream_keepalive < 1:
            raise ValueError(f"{owner}.upstream_keepalive: {self.upstream_keepalive!r} must be positive")

    @classmethod
    def for_aws(cls, values: RoleValues) -> NginxAppConfig:
        if values.role != "app":
            raise ValueError(f"RoleValues.role: {values.role!r}; NginxAppConfig is for the 'app' role")
        return cls(server_name=f"app.{values.internal_domain}")


def _context(cfg: object, **extra: object) -> dict[str, object]:
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg)}  # type: ignore[arg-type]
    return {
        "c": values,
        "tls12_ciphers": TLS12_CIPHERS,
        "tls13_ciphersuites": TLS13_CIPHERSUITES,
        "curves": CURVES,
        "hsts": HSTS,
        "backend_keepalive": BACKEND_KEEPALIVE_S,
        "haproxy_idle": HAPROXY_IDLE_S,
        **extra,
    }


def render_haproxy_cfg(cfg: HaproxyConfig) -> str:
    """``haproxy.cfg`` of the load balancer."""
    return ENV.get_template("haproxy.cfg.j2").render(
        **_context(
            cfg,
            slots=SLOTS,
            stats_from_env=cfg.stats_from_env,
            private_ip_env=PRIVATE_IP_ENV,
            local_peer=cfg.local_peer,
            peers_section=PEERS_SECTION,
            l=cfg.limits,
            cache_s=SHARED_CACHE_S,
            cache_mb=MICRO_CACHE_MB,
            cache_object_bytes=MICRO_CACHE_OBJECT_BYTES,
        )
    )


def render_nginx_web(cfg: NginxWebConfig) -> str:
    """The complete ``nginx.conf`` of a web server."""
    return ENV.get_template("nginx-web.conf.j2").render(**_context(cfg, tier="web"))


def render_nginx_app(cfg: NginxAppConfig) -> str:
    """The complete ``nginx.conf`` of an app server."""
    return ENV.get_template("nginx-app.conf.j2").render(**_context(cfg, tier="app"))
