"""The load-balancer pair on one machine, failing over for real.

Network namespaces stand in for the hosts of the VPC, a Linux bridge for its subnet, and a virtual
address that keepalived itself holds for the Elastic IP (on AWS the MASTER's notify script moves the
EIP instead; ``node.eip``):

    fbp-hub      the bridge br0; every other namespace has an eth0 on it (a veth pair)
    fbp-lb1      198.18.0.11  HAProxy (:80 :443, stats :8404, peers :10000), node.discovery, keepalived
    fbp-lb2      198.18.0.12  the same
    fbp-web1/2   198.18.0.21, .22  nginx of the web tier (web.foobar.internal), the static site
    fbp-client   198.18.0.50  a client on the internet, the one that goes over its limit
                 198.18.0.51  another client on the internet, never over its limit
                 198.18.0.13  the failover prober, and 198.18.0.14 wrk: "inside" (198.18.0.0/28, the
                              local VPC), so the per-client limits never turn the load into 429s
    VIP          198.18.0.100/24 on the MASTER's eth0 (unicast VRRP between .11 and .12)

Every file comes from the renderers the servers use: ``userdata.configs.render_haproxy_cfg`` (HAProxy,
with the peers file from ``node.pair.render_peers`` as a second ``-f``: mutual TLS between the load
balancers with ``lb.foobar.internal`` certificates from a local internal CA), ``node.pair.render_keepalived``
(with ``virtual_address``), ``userdata.configs.render_nginx_web`` and ``userdata.site.build_site``.

``LocalPair`` is a context manager: everything it starts runs inside its namespaces and is stopped,
and the namespaces deleted, when it exits, also on an error, Ctrl-C or SIGTERM. ``failover()`` kills
the MASTER's HAProxy (keepalived's health check fails: FAULT, the BACKUP takes the address) or the
whole MASTER (SIGKILL of everything in its namespace and its link down: the BACKUP waits out the
3-advert timeout) while wrk and a prober that makes a fresh HTTPS request every 50 ms run in the
client namespace, and tells how long traffic was gone.

    python -m local.pair demo    # up, both failovers measured, down
    python -m local.pair up      # up, and left running (try it from fbp-client)
    python -m local.pair down    # stop everything in fbp-* namespaces and delete them (also a crashed run's)

Needs root (network namespaces), keepalived, haproxy, nginx, curl and wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from local import netns
from local.netns import comm, deferred_signals, kill, ns_pids, signals_raise
from node.pair import STATS_PORT, PairConfig, peer_name, render_keepalived, render_peers

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path("/run/foobar-pair")
"""State, configs and logs of ``up`` and ``demo`` (root only, like the namespaces)."""

MARKER = ".foobar-local-pair"
"""In the folder of a run: the next run may replace that folder (and no other)."""
PREFIX = "fbp-"
"""Every namespace of ours starts with this; ``down`` removes whatever has it."""
HUB = f"{PREFIX}hub"
CLIENT_NS = f"{PREFIX}client"
SUBNET_PREFIX = 24
VIP = "198.18.0.100"
LBS = {"lb1": "198.18.0.11", "lb2": "198.18.0.12"}
WEBS = {"web1": "198.18.0.21", "web2": "198.18.0.22"}
INSIDE = "198.18.0.0/28"
"""The local "VPC": the load balancers, the prober and wrk. The clients at .50/.51 are outside it."""
CLIENT = "198.18.0.50"
"""The client that goes over its limit (the client namespace's main address)."""
FRESH_CLIENT = "198.18.0.51"
"""A client that never goes over its limit: its 200 after a failover shows the 429 is the shared counter."""
PROBER = "198.18.0.13"
LOADGEN = "198.18.0.14"
"""wrk's source (a route to the VIP with this ``src``: wrk cannot bind)."""
DOMAIN = "www.foobar.com"
LB_NAME = "lb.foobar.internal"
WEB_NAME = "web.foobar.internal"
HTTPS_PORT = 443
NGINX_STATUS = ("127.0.0.1", 8081)
"""nginx's stub_status must listen on loopback: the web namespace's own, nobody else's."""

TARGET_S = 4.0
"""Traffic back within this after either failover: 3 adverts of 1 s, the skew (0.6 s) and a little."""
PROBE_INTERVAL_S = 0.05
PROBE_CONNECT_TIMEOUT_S = 0.5
PROBE_TIMEOUT_S = 1.0
LIMIT_REQUESTS = 600
"""Requests the limited client sends (the limit is 300 per 10 s): still over it ~15 s later, when
HAProxy's sliding 10 s rate has decayed to half."""

BINARIES = ("ip", "keepalived", "haproxy", "nginx", "curl", "wrk")

Kind = Literal["haproxy", "node"]
KINDS: dict[str, str] = {
    "haproxy": "the MASTER's HAProxy killed (SIGKILL)",
    "node": "the whole MASTER killed (SIGKILL of its namespace, link down)",
}

# done() hands wrk's figures back as one JSON line; response() counts every status outside 2xx
# (wrk itself counts only >= 400 as errors.status).
WRK_MARKER = "FOOBAR-WRK "
WRK_LUA = """
local threads = {}
function setup(thread)
   table.insert(threads, thread)
end
function init(args)
   non2xx = 0
end
function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end
function done(summary, latency, requests)
   local n = 0
   for _, t in ipairs(threads) do
      n = n + (t:get("non2xx") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'MARKER{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d,'
      .. ' "status": %d, "non_2xx": %d, "p50_us": %d, "p99_us": %d}\\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status, n,
      latency:percentile(50.0), latency:percentile(99.0)))
end
""".replace("MARKER", WRK_MARKER)

NOTIFY_SH = """#!/bin/sh
# keepalived: $1 = our states file, then INSTANCE <name> <state> <priority>
echo "$(date +%s.%N) $4" >> "$1"
"""

T = TypeVar("T")


class LocalPairError(RuntimeError):
    """The pair cannot come up, fail over or go down; the message says why in one line."""


class Unavailable(LocalPairError):
    """This machine cannot run the pair at all (not root, no network namespaces, a missing binary)."""


# -- small helpers -----------------------------------------------------------------------------


def ns_name(node: str) -> str:
    return f"{PREFIX}{node}"


def _run(argv: Sequence[str], timeout: float = 10.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return netns.run(argv, timeout, check, error=LocalPairError)


def _ip(*args: str) -> str:
    return _run(["ip", *args]).stdout


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _wait(check: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """``check()`` until it returns something true; a LocalPairError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except (LocalPairError, OSError, RuntimeError) as err:
            last = err
        if time.monotonic() > deadline:
            raise LocalPairError(f"{what}: not after {timeout:.0f} s (last: {last!r})")
        time.sleep(every)


def namespaces() -> list[str]:
    """Every network namespace of ours (by the name prefix)."""
    return netns.namespaces(PREFIX)


def cleanup(names: Sequence[str] | None = None, term_timeout: float = 3.0) -> list[str]:
    """Stop every process in our namespaces and delete them (``local.netns.cleanup``)."""
    return netns.cleanup(PREFIX, names, term_timeout)


def check_available() -> None:
    """Raises Unavailable with the reason this machine cannot run the pair."""
    if os.geteuid() != 0:
        raise Unavailable("needs root (network namespaces, keepalived's addresses)")
    missing = [b for b in BINARIES if not _which(b)]
    if missing:
        raise Unavailable(f"missing {', '.join(missing)} (Debian: keepalived haproxy nginx-light curl wrk iproute2)")
    probe = f"{PREFIX}check{os.getpid()}"
    done = _run(["ip", "netns", "add", probe], check=False)
    if done.returncode:
        raise Unavailable(f"`ip netns add` fails here: {done.stderr.strip()}")
    _run(["ip", "netns", "del", probe], check=False)


# -- what a measurement found ------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    t0: float
    t1: float
    status: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Outage:
    """What the prober saw: the outage runs from its first failed probe to the first success after it."""

    probes: int
    failed: int
    outage_s: float | None
    """First failed probe's start to the end of the first successful one after it; None: nothing failed."""
    recovered_s: float | None
    """The kill to the end of the first successful probe after the first failure."""
    failed_after_recovery: int
    """Failed probes after that first success: traffic back for good is 0."""
    errors: tuple[str, ...] = ()

    @classmethod
    def of(cls, probes: Sequence[Probe], kill_at: float) -> Outage:
        probes = sorted(probes, key=lambda p: p.t0)
        first_fail = next((i for i, p in enumerate(probes) if not p.ok), None)
        failed = [p for p in probes if not p.ok]
        counted = Counter(p.error.split(":")[0] or f"HTTP {p.status}" for p in failed)
        kinds = tuple(f"{n}x {kind}" for kind, n in sorted(counted.items()))
        if first_fail is None:
            return cls(len(probes), 0, None, None, 0, kinds)
        back = next((j for j in range(first_fail, len(probes)) if probes[j].ok), None)
        if back is None:
            return cls(len(probes), len(failed), None, None, 0, kinds)
        later = sum(1 for p in probes[back:] if not p.ok)
        return cls(
            len(probes),
            len(failed),
            probes[back].t1 - probes[first_fail].t0,
            probes[back].t1 - kill_at,
            later,
            kinds,
        )


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    connect: int
    read: int
    write: int
    timeout: int
    status: int
    """Responses >= 400 (wrk's own count)."""
    non_2xx: int
    """Every response outside 200-299 (counted by our Lua script)."""
    p50_ms: float
    p99_ms: float

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @classmethod
    def parse(cls, text: str) -> WrkResult:
        line = next((x for x in text.splitlines() if x.startswith(WRK_MARKER)), None)
        if line is None:
            raise LocalPairError(f"wrk printed no result: {text.strip()[-300:]}")
        d = json.loads(line[len(WRK_MARKER) :])
        return cls(
            d["requests"],
            d["duration_us"] / 1e6,
            d["connect"],
            d["read"],
            d["write"],
            d["timeout"],
            d["status"],
            d["non_2xx"],
            d["p50_us"] / 1000,
            d["p99_us"] / 1000,
        )


@dataclass(frozen=True)
class LimitCheck:
    """A client over its limit stays limited on the new MASTER; another client is not."""

    sent: int
    statuses: dict[int, int]
    """What the limited client got from the old MASTER."""
    last_status: int
    peer_rate: int
    """http_req_rate(10s) of the limited client in the BACKUP's table, learned through peers."""
    limited_after: int
    """The limited client's status from the new MASTER, right after the failover."""
    fresh_after: int
    """A fresh client's first answer after the failover."""
    fresh_after_s: float
    """The kill to that answer."""
    served_by: list[str]
    """Who held the address when both answered."""
    new_master_rate: int
    """The limited client's rate in the new MASTER's table after its one request there."""


@dataclass(frozen=True)
class Scenario:
    kind: Kind
    killed: str
    before: list[str]
    after: list[str]
    vip_moved_s: float
    """The kill to the address being on the other load balancer."""
    outage: Outage
    wrk: WrkResult
    transitions: dict[str, list[tuple[float, str]]]
    """keepalived's states per load balancer since the kill (seconds after it; negative: before)."""
    limit: LimitCheck | None = None
    stale_vip: bool = False
    """The killed load balancer's kernel still lists the address (a SIGKILLed keepalived removes nothing)."""
    kill_after_s: float = 0.0
    """When the kill came, in seconds from the start of wrk and the prober."""
    round: int = 1

    @property
    def title(self) -> str:
        return KINDS[self.kind]


@dataclass(frozen=True)
class Measurement:
    scenarios: list[Scenario]
    asset: str


# -- the prober (runs in the client namespace: python -m local.pair probe) ---------------------


def _one_probe(
    ctx: ssl.SSLContext, source: str, request: bytes, connect_timeout: float, timeout: float
) -> tuple[int, str]:
    """One fresh connection, TLS handshake (verified), request: (status, error)."""
    try:
        with socket.create_connection((VIP, HTTPS_PORT), timeout=connect_timeout, source_address=(source, 0)) as raw:
            raw.settimeout(timeout)
            with ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls:
                tls.sendall(request)
                head = b""
                while b"\r\n" not in head and len(head) < 4096:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    head += chunk
    except (OSError, ValueError) as err:  # ssl.SSLError and TimeoutError are OSErrors
        return 0, f"{type(err).__name__}: {err}"
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) > 1 and words[0].startswith(b"HTTP/") and words[1].isdigit():
        return int(words[1]), ""
    return 0, "EmptyResponse: no status line"


def probe(
    source: str,
    path: str,
    ca: str,
    duration: float,
    out: Path,
    *,
    interval: float = PROBE_INTERVAL_S,
    connect_timeout: float = PROBE_CONNECT_TIMEOUT_S,
    timeout: float = PROBE_TIMEOUT_S,
) -> None:
    """A new HTTPS request to the virtual address every ``interval`` s for ``duration`` s, each on a
    fresh connection from ``source``, verified against the CA; one JSON line per probe in ``out``.

    Like users arriving, a probe starts on time whether or not the ones before it have answered (each
    in a thread of its own): the outage is then seen to within ``interval``, not to within a timeout.
    """
    ctx = ssl.create_default_context(cafile=ca)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nUser-Agent: foobar-pair-prober\r\nConnection: close\r\n\r\n"
    ).encode()
    lock = threading.Lock()
    with open(out, "a") as fh:

        def one() -> None:
            t0 = time.time()
            status, error = _one_probe(ctx, source, request, connect_timeout, timeout)
            line = json.dumps({"t0": t0, "t1": time.time(), "status": status, "error": error})
            with lock:
                fh.write(line + "\n")
                fh.flush()

        threads = []
        end = time.monotonic() + duration
        next_at = time.monotonic()
        while next_at < end:
            time.sleep(max(0.0, next_at - time.monotonic()))
            thread = threading.Thread(target=one, daemon=True)
            thread.start()
            threads.append(thread)
            next_at = max(next_at + interval, time.monotonic())
        for thread in threads:
            thread.join(connect_timeout + timeout + 1)


def read_probes(path: Path) -> list[Probe]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            d = json.loads(line)
            found.append(Probe(d["t0"], d["t1"], d["status"], d["error"]))
    return found


# -- the pair ----------------------------------------------------------------------------------


@dataclass
class _Lb:
    name: str
    address: str
    home: Path

    @property
    def ns(self) -> str:
        return ns_name(self.name)

    @property
    def socket(self) -> Path:
        return self.home / "admin.sock"

    @property
    def states_file(self) -> Path:
        return self.home / "states"


@dataclass
class LocalPair:
    """Two load balancers, two web servers and a client in network namespaces (see the module's doc)."""

    directory: Path = DEFAULT_DIR
    say: Callable[[str], None] = field(default=lambda line: None)
    limits: Any = None
    """userdata.EdgeLimits; None: the settings' defaults (what the limit check is about)."""

    def __post_init__(self) -> None:
        self.dir = Path(self.directory).resolve()
        self.lbs = {name: _Lb(name, address, self.dir / name) for name, address in LBS.items()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.made: list[str] = []
        self.dead: set[str] = set()
        """Load balancers whose namespace was killed: their kernel may still list the address."""
        self.asset = ""
        """The URL path wrk and the prober fetch: the fingerprinted stylesheet, served by the web tier."""
        self._signals: contextlib.ExitStack | None = None

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.pem"

    # ---- context manager ------------------------------------------------------------------
    def __enter__(self) -> LocalPair:
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(signals_raise())
        try:
            self.up()
        except BaseException:
            self._signals.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.down()
        finally:
            if self._signals is not None:
                self._signals.close()

    # ---- up ---------------------------------------------------------------------------------
    def up(self) -> None:
        check_available()
        left = namespaces()
        if left:
            raise LocalPairError(
                f"namespaces {', '.join(left)} exist already (a pair is up, or a crashed run's):"
                " `python -m local.pair down` removes them"
            )
        try:
            self._up()
        except BaseException:
            self.down()
            raise

    def _up(self) -> None:
        from local.mariadb import CertificateAuthority, write_private
        from node.discovery import FileSource, Member
        from userdata.site import build_site

        started = time.monotonic()
        if self.dir.exists() and any(self.dir.iterdir()):
            if not (self.dir / MARKER).exists():
                raise LocalPairError(f"{self.dir} is not empty and not a local pair's folder: give another --dir")
            shutil.rmtree(self.dir)  # a previous run's configs and logs
        self.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        (self.dir / MARKER).write_text("configs and logs of python -m local.pair; replaced by its next run\n")
        self._network()
        self.say(f"  network: {len(self.made)} namespaces on a bridge in {HUB}, 198.18.0.0/{SUBNET_PREFIX}")

        ca = CertificateAuthority.create(self.dir / "pki", "foobar local-pair internal CA", days=2)
        renames = build_site(ROOT / "site", self.dir / "www")
        self.asset = "/" + renames["static/app.css"]
        (self.dir / "wrk.lua").write_text(WRK_LUA)

        for name, address in WEBS.items():
            self._start_web(ca, name, address)
        FileSource.write(self.dir / "members.json", {"web": [Member(a, HTTPS_PORT) for a in WEBS.values()]})
        for name, address in WEBS.items():
            _wait(partial(self._web_ready, name, address), 10, f"{name} ({address}) answering /healthz")
        self.say(f"  web: nginx on {', '.join(WEBS.values())} ({WEB_NAME})")

        site = ca.issue_server_cert(self.dir / "pki" / "site", DOMAIN, dns_names=[DOMAIN], ip_addresses=[VIP])
        site_pem = self.dir / "pki" / "site.pem"
        write_private(site_pem, Path(site.cert).read_bytes() + Path(site.key).read_bytes())
        for lb in self.lbs.values():
            tls = ca.issue_server_cert(lb.home / "tls", LB_NAME, dns_names=[LB_NAME])
            write_private(lb.home / "peers.pem", Path(tls.cert).read_bytes() + Path(tls.key).read_bytes())
            self._configure_lb(lb, site_pem)
        for lb in self.lbs.values():
            self.start_haproxy(lb.name)
            self._start_discovery(lb)
        for lb in self.lbs.values():
            self._start_keepalived(lb)
        self.wait_ready(timeout=20)
        master = self.holders()[0]
        self.say(
            f"  load balancers: HAProxy, discovery and keepalived on {', '.join(LBS.values())};"
            f" {master} is MASTER and holds {VIP} ({time.monotonic() - started:.1f} s)"
        )
        (self.dir / "state.json").write_text(
            json.dumps({"namespaces": self.made, "vip": VIP, "asset": self.asset, "lbs": LBS, "webs": WEBS}, indent=1)
        )

    def _network(self) -> None:
        nodes: dict[str, list[str]] = {
            **{name: [address] for name, address in LBS.items()},
            **{name: [address] for name, address in WEBS.items()},
            "client": [CLIENT, FRESH_CLIENT, PROBER, LOADGEN],
        }
        _ip("netns", "add", HUB)
        self.made.append(HUB)
        _ip("-n", HUB, "link", "add", "br0", "type", "bridge")
        _ip("-n", HUB, "link", "set", "br0", "up")
        for node, addresses in nodes.items():
            ns = ns_name(node)
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", HUB, "link", "add", f"v-{node}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", HUB, "link", "set", f"v-{node}", "master", "br0", "up")
            for address in addresses:
                _ip("-n", ns, "addr", "add", f"{address}/{SUBNET_PREFIX}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
        # wrk cannot bind: its connections to the VIP leave from the inside address.
        _ip("-n", CLIENT_NS, "route", "add", f"{VIP}/32", "dev", "eth0", "src", LOADGEN)

    def _spawn(self, key: str, ns: str, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop them in order
            )
        self.procs[key] = proc
        return proc

    def _start_web(self, ca: Any, name: str, address: str) -> None:
        import pwd

        from userdata.configs import NginxWebConfig, render_nginx_web

        home = self.dir / name
        tls = ca.issue_server_cert(home / "tls", WEB_NAME, dns_names=[WEB_NAME])
        for sub in ("logs", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        cfg = NginxWebConfig(
            cert_file=str(tls.cert),
            key_file=str(tls.key),
            listen_address=address,
            https_port=HTTPS_PORT,
            status_address=NGINX_STATUS[0],
            status_port=NGINX_STATUS[1],
            server_name=WEB_NAME,
            pid_file=str(home / "nginx.pid"),
            error_log=str(home / "logs" / "error.log"),
            access_log=str(home / "logs" / "access.log"),
            user=pwd.getpwuid(os.geteuid()).pw_name,
            temp_dir=str(home / "tmp"),
            worker_processes="1",
            root=str(self.dir / "www"),
        )
        conf = home / "nginx.conf"
        conf.write_text(render_nginx_web(cfg))
        nginx = _which("nginx") or "nginx"
        _run(["ip", "netns", "exec", ns_name(name), nginx, "-q", "-t", "-c", str(conf), "-p", str(home)])
        self._spawn(
            f"{name}/nginx",
            ns_name(name),
            [nginx, "-c", str(conf), "-p", str(home), "-g", "daemon off;"],
            home / "logs" / "nginx.out",
        )

    def _configure_lb(self, lb: _Lb, site_pem: Path) -> None:
        from userdata.configs import UNPRIVILEGED, HaproxyConfig, render_haproxy_cfg

        kw = {"limits": self.limits} if self.limits is not None else {}
        cfg = HaproxyConfig(
            stats_address=lb.address,
            cert_file=str(site_pem),
            ca_file=str(self.ca_file),
            bind_address="",  # every address of the namespace: the VIP too, while it holds it
            stats_port=STATS_PORT,
            backend_port=HTTPS_PORT,
            **UNPRIVILEGED,
            stats_socket=str(lb.socket),
            server_state_file=str(lb.home / "server-state"),
            pidfile=str(lb.home / "haproxy.pid"),
            internal_networks=(INSIDE,),
            peers_file=str(lb.home / "peers.cfg"),
            **kw,
        )
        (lb.home / "haproxy.cfg").write_text(render_haproxy_cfg(cfg))
        (lb.home / "server-state").write_text("1\n")
        (lb.home / "run").mkdir(parents=True, exist_ok=True)  # the fault file's: keepalived needs it at start
        notify = lb.home / "notify.sh"
        notify.write_text(NOTIFY_SH)
        notify.chmod(0o755)
        pair = PairConfig(
            own_address=lb.address,
            interface="eth0",
            health_url=f"http://{lb.address}:{STATS_PORT}/healthz",
            peers_cert=str(lb.home / "peers.pem"),
            peers_ca=str(self.ca_file),
            peers_verify_name=LB_NAME,
            notify=f"/bin/sh {notify} {lb.states_file}",
            virtual_address=f"{VIP}/{SUBNET_PREFIX}",
            fault_file=str(lb.home / "run" / "vrrp-fault"),
        )
        everyone = list(LBS.values())
        (lb.home / "peers.cfg").write_text(render_peers(pair, everyone))
        (lb.home / "keepalived.conf").write_text(render_keepalived(pair, everyone))
        _run([_which("haproxy") or "haproxy", "-c", "-q", *self._haproxy_files(lb)])
        _run([_which("keepalived") or "keepalived", "-t", "-f", str(lb.home / "keepalived.conf")])

    def _haproxy_files(self, lb: _Lb) -> list[str]:
        return ["-f", str(lb.home / "haproxy.cfg"), "-f", str(lb.home / "peers.cfg")]

    def start_haproxy(self, name: str) -> None:
        lb = self.lbs[name]
        (lb.home / "haproxy.pid").unlink(missing_ok=True)
        argv = [
            _which("haproxy") or "haproxy",
            "-W",
            "-db",
            *self._haproxy_files(lb),
            "-p",
            str(lb.home / "haproxy.pid"),
        ]
        self._spawn(f"{name}/haproxy", lb.ns, argv, lb.home / "haproxy.log")

    def _start_discovery(self, lb: _Lb) -> None:
        argv = [sys.executable, "-m", "node.discovery", "--socket", str(lb.socket), "--source", "file"]
        argv += ["--members-file", str(self.dir / "members.json"), "--backend", "web=web", "--interval", "1"]
        argv += ["--cache", str(lb.home / "discovery-cache.json"), "--state-file", str(lb.home / "server-state")]
        self._spawn(f"{lb.name}/discovery", lb.ns, argv, lb.home / "discovery.log")

    def _start_keepalived(self, lb: _Lb) -> None:
        # -n foreground, -l -D -G details to the console only, -P VRRP only, pid files of its own.
        argv = [_which("keepalived") or "keepalived", "-n", "-l", "-D", "-G", "-P"]
        argv += ["-f", str(lb.home / "keepalived.conf"), "-p", str(lb.home / "k.pid"), "-r", str(lb.home / "v.pid")]
        self._spawn(f"{lb.name}/keepalived", lb.ns, argv, lb.home / "keepalived.log")

    # ---- what is going on -----------------------------------------------------------------
    def curl(
        self,
        ns: str,
        url: str,
        *,
        source: str = "",
        resolve: tuple[str, str] | None = None,
        timeout: float = 2.0,
    ) -> int:
        """One verified HTTPS (or HTTP) request from inside ``ns``; its status, 0 when none came."""
        argv = ["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]
        argv += ["--max-time", str(timeout), "--cacert", str(self.ca_file)]
        if source:
            argv += ["--interface", source]
        if resolve:
            argv += ["--resolve", f"{resolve[0]}:{HTTPS_PORT}:{resolve[1]}"]
        done = _run([*argv, url], timeout=timeout + 5, check=False)
        return int(done.stdout) if done.stdout.strip().isdigit() else 0

    def site_status(self, source: str = PROBER) -> int:
        """The asset through the virtual address, from the client namespace."""
        return self.curl(CLIENT_NS, f"https://{DOMAIN}{self.asset}", source=source, resolve=(DOMAIN, VIP))

    def has_vip(self, name: str) -> bool:
        text = _ip("-n", ns_name(name), "-j", "-4", "addr", "show", "dev", "eth0")
        return any(i.get("local") == VIP for link in json.loads(text or "[]") for i in link.get("addr_info", []))

    def holders(self) -> list[str]:
        """The live load balancers that hold the virtual address (a killed one's kernel may still list it)."""
        return [name for name in self.lbs if name not in self.dead and self.has_vip(name)]

    def states(self, name: str) -> list[tuple[float, str]]:
        """keepalived's states of a load balancer, from its notify script: (time, state)."""
        path = self.lbs[name].states_file
        found = []
        for line in path.read_text().splitlines() if path.exists() else []:
            with contextlib.suppress(ValueError):
                ts, state = line.split()
                found.append((float(ts), state))
        return found

    def state(self, name: str) -> str:
        states = self.states(name)
        return states[-1][1] if states else ""

    def healthy(self, name: str) -> bool:
        lb = self.lbs[name]
        return self.curl(lb.ns, f"http://{lb.address}:{STATS_PORT}/healthz", timeout=1) == 200

    def admin(self, name: str, command: str) -> str:
        from node.discovery import Runtime

        return Runtime(self.lbs[name].socket).command(command)

    def web_up(self, name: str) -> bool:
        from node.discovery import Runtime

        slots = Runtime(self.lbs[name].socket).slots("web")
        up = {s.address for s in slots.values() if s.up}
        return up >= set(WEBS.values())

    def peers_established(self, name: str) -> bool:
        """HAProxy's peers session to the other load balancer is up (``show peers``: ESTA)."""
        other = next(lb.address for lb in self.lbs.values() if lb.name != name)
        text = self.admin(name, "show peers")
        for block in re.split(r"\n(?=\s*0x[0-9a-f]+: id=)", text):
            if f"id={peer_name(other)}(" in block and "last_status=ESTA" in block:
                return True
        return False

    def table_rate(self, name: str, client: str = CLIENT) -> int:
        """http_req_rate(10s) of ``client`` in a load balancer's https stick table; -1: no entry."""
        text = self.admin(name, f"show table https key ::ffff:{client}")
        match = re.search(r"http_req_rate\(\d+\)=(\d+)", text)
        return int(match[1]) if match else -1

    def _web_ready(self, name: str, address: str) -> bool:
        return self.curl(ns_name(name), f"https://{WEB_NAME}/healthz", resolve=(WEB_NAME, address)) == 200

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Both load balancers serve (HAProxy healthy, both web servers UP, peers connected), one is
        MASTER with the address and the other BACKUP, and the site answers through the address."""
        names = [n for n in self.lbs if n not in self.dead]
        for name in names:
            _wait(partial(self.healthy, name), timeout, f"{name}'s HAProxy /healthz")
        for name in names:
            _wait(partial(self.web_up, name), timeout, f"{name}: both web servers UP in HAProxy")
            if len(names) > 1:
                _wait(partial(self.peers_established, name), timeout, f"{name}: peers session to the other")

        def elected() -> bool:
            holders = self.holders()
            states = sorted(self.state(n) for n in names)
            want = ["BACKUP", "MASTER"] if len(names) > 1 else ["MASTER"]
            return len(holders) == 1 and states == want

        _wait(elected, timeout, "one MASTER holding the address and one BACKUP", every=0.1)
        _wait(lambda: self.site_status() == 200, timeout, f"https://{VIP}{self.asset} answering 200")

    # ---- breaking things ----------------------------------------------------------------------
    def kill_haproxy(self, name: str) -> list[int]:
        """SIGKILL every HAProxy process (master and worker) of a load balancer."""
        pids = [p for p in ns_pids(ns_name(name)) if comm(p) == "haproxy"]
        kill(pids, signal.SIGKILL)
        self._reap(f"{name}/haproxy")
        return pids

    def kill_node(self, name: str, link_down: bool = True) -> list[int]:
        """A load balancer dies at once: SIGKILL of everything in its namespace (keepalived sends no
        priority-0 advert), then its link down (what is left of it, its kernel, answers nothing)."""
        pids = ns_pids(ns_name(name))
        kill(pids, signal.SIGKILL)
        if link_down:
            _ip("-n", HUB, "link", "set", f"v-{name}", "down")
        self.dead.add(name)
        for key in [k for k in self.procs if k.startswith(f"{name}/")]:
            self._reap(key)
        return pids

    def restore(self, name: str, timeout: float = 20.0) -> None:
        """HAProxy back on a load balancer whose HAProxy was killed; it rejoins as BACKUP."""
        if name in self.dead:
            raise LocalPairError(f"{name} was killed whole: revive() boots it again")
        if not [p for p in ns_pids(ns_name(name)) if comm(p) == "haproxy"]:
            self.start_haproxy(name)
        _wait(lambda: self.healthy(name), timeout, f"{name}'s HAProxy /healthz again")
        self.wait_ready(timeout)

    def revive(self, name: str, timeout: float = 20.0) -> None:
        """A killed load balancer boots again: without the address it held (a reboot forgets it),
        link up, HAProxy, discovery and keepalived started; it rejoins as BACKUP."""
        if name not in self.dead:
            raise LocalPairError(f"{name} was not killed whole")
        lb = self.lbs[name]
        _run(["ip", "-n", lb.ns, "addr", "del", f"{VIP}/{SUBNET_PREFIX}", "dev", "eth0"], check=False)
        _ip("-n", HUB, "link", "set", f"v-{name}", "up")
        for pid_file in ("k.pid", "v.pid", "haproxy.pid"):
            (lb.home / pid_file).unlink(missing_ok=True)
        self.dead.discard(name)
        self.start_haproxy(name)
        self._start_discovery(lb)
        self._start_keepalived(lb)
        self.wait_ready(timeout)

    def _reap(self, key: str) -> None:
        proc = self.procs.pop(key, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def exceed_limit(self, count: int = LIMIT_REQUESTS, source: str = CLIENT) -> tuple[dict[int, int], int]:
        """``count`` requests as fast as curl goes (one connection while HAProxy keeps it) from
        ``source``: (statuses, the last one)."""
        argv = ["ip", "netns", "exec", CLIENT_NS, "curl", "-s", "--interface", source, "--cacert", str(self.ca_file)]
        argv += ["--resolve", f"{DOMAIN}:{HTTPS_PORT}:{VIP}", "-o", "/dev/null", "-w", "%{http_code}\\n"]
        argv += ["--max-time", "30", f"https://{DOMAIN}{self.asset}?n=[1-{count}]"]
        done = _run(argv, timeout=60, check=False)
        statuses = [int(s) for s in done.stdout.split() if s.isdigit()]
        if len(statuses) != count:
            raise LocalPairError(f"curl sent {len(statuses)} of {count} requests: {done.stderr.strip()[:300]}")
        return dict(Counter(statuses)), statuses[-1]

    # ---- the measurement ----------------------------------------------------------------------
    def failover(
        self,
        kind: Kind,
        *,
        duration: float = 10.0,
        kill_after: float = 2.0,
        jitter: float = 0.0,
        limit: bool = False,
        connections: int = 4,
    ) -> Scenario:
        """Kill the MASTER (``kind``: its HAProxy, or the whole node) ``kill_after`` s (plus a random
        0..``jitter`` s) into a run of wrk and the prober from the client namespace for ``duration`` s;
        with ``limit``, first put the client at .50 over its limit on the MASTER, then check the new
        MASTER answers it 429 and a fresh client 200.

        Without jitter, the kill lands at the same point of the MASTER's advert cycle run after run
        (every step before it is paced by the keepalived and HAProxy timers): a jitter of one advert
        interval samples the whole cycle, which is what a real failure does."""
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        self.wait_ready()
        before = self.holders()
        master = before[0]
        other = next(n for n in self.lbs if n != master and n not in self.dead)
        self.say(f"  {KINDS[kind]}: {master} is MASTER, {other} BACKUP")

        sent: tuple[dict[int, int], int] | None = None
        peer_rate = -1
        if limit:
            sent = self.exceed_limit()
            # The BACKUP learns the counter through peers; the limit is "more than N in 10 s".
            wanted = self._limits().requests_per_10s
            peer_rate = _wait(
                lambda: (rate := self.table_rate(other)) > wanted and rate,
                5,
                f"{other} learning {CLIENT}'s rate through peers",
            )
            self.say(f"    {CLIENT} sent {sum(sent[0].values())} requests: {sent[0]}; {other} has its rate {peer_rate}")

        tag = kind
        probes = self.dir / f"probe-{tag}.jsonl"
        probes.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "local.pair", "probe", "--source", PROBER, "--path", self.asset]
        argv += ["--ca", str(self.ca_file), "--duration", str(duration), "--out", str(probes)]
        prober = self._spawn(f"client/probe-{tag}", CLIENT_NS, argv, self.dir / f"probe-{tag}.log")
        wrk_out = self.dir / f"wrk-{tag}.txt"
        wrk_out.unlink(missing_ok=True)
        argv = [_which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--timeout", "1s"]
        argv += ["-s", str(self.dir / "wrk.lua"), f"https://{VIP}{self.asset}"]
        wrk = self._spawn(f"client/wrk-{tag}", CLIENT_NS, argv, wrk_out)
        started = time.monotonic()
        try:
            _wait(lambda: sum(p.ok for p in read_probes(probes)) >= 5, 10, "the prober's first answers")
            offset = kill_after + random.uniform(0.0, jitter)
            time.sleep(max(0.0, offset - (time.monotonic() - started)))
            kill_at = time.time()
            if kind == "haproxy":
                self.kill_haproxy(master)
            else:
                self.kill_node(master)
            self.say(f"    killed {master} {'HAProxy' if kind == 'haproxy' else 'whole'} at +{offset:.2f} s")

            def moved() -> bool:
                return self.has_vip(other) and (kind == "node" or not self.has_vip(master))

            _wait(moved, 10, f"{other} taking {VIP}", every=0.02)
            vip_moved = time.time() - kill_at
            stale = self.has_vip(master)
            check: LimitCheck | None = None
            if limit and sent is not None:
                fresh = _wait(lambda: self.site_status(FRESH_CLIENT) or 0, 8, f"an answer to {FRESH_CLIENT}", 0.05)
                fresh_at = time.time() - kill_at
                limited = self.site_status(CLIENT)
                served_by = self.holders()
                check = LimitCheck(
                    sent=LIMIT_REQUESTS,
                    statuses=sent[0],
                    last_status=sent[1],
                    peer_rate=peer_rate,
                    limited_after=limited,
                    fresh_after=fresh,
                    fresh_after_s=fresh_at,
                    served_by=served_by,
                    new_master_rate=self.table_rate(other),
                )
            for proc, what in ((prober, "the prober"), (wrk, "wrk")):
                try:
                    proc.wait(duration + 15)
                except subprocess.TimeoutExpired:
                    raise LocalPairError(f"{what} still running {duration + 15:.0f} s after its end") from None
        finally:
            for proc in (prober, wrk):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
            self.procs.pop(f"client/probe-{tag}", None)
            self.procs.pop(f"client/wrk-{tag}", None)
        result = Scenario(
            kind=kind,
            killed=master,
            before=before,
            after=self.holders(),
            vip_moved_s=vip_moved,
            outage=Outage.of(read_probes(probes), kill_at),
            wrk=WrkResult.parse(wrk_out.read_text(errors="replace")),
            transitions={
                n: [(round(t - kill_at, 3), s) for t, s in self.states(n) if t > kill_at - 1] for n in self.lbs
            },
            limit=check,
            stale_vip=stale,
            kill_after_s=offset,
        )
        self.say(f"    {describe(result)}")
        return result

    def _limits(self) -> Any:
        from userdata import EdgeLimits

        return self.limits if self.limits is not None else EdgeLimits()

    def measure(
        self, duration: float = 10.0, kill_after: float = 2.0, rounds: int = 1, jitter: float = 0.0
    ) -> Measurement:
        """Both failovers, ``rounds`` times: the MASTER's HAProxy killed (then brought back: it rejoins
        as BACKUP), then the whole new MASTER killed with a client over its limit (then, but for the
        last round, the dead one rebooted)."""
        runs: list[Scenario] = []
        for number in range(1, rounds + 1):
            if rounds > 1:
                self.say(f"round {number} of {rounds}")
            first = self.failover("haproxy", duration=duration, kill_after=kill_after, jitter=jitter)
            runs.append(replace(first, round=number))
            self.restore(first.killed)
            self.say(f"  {first.killed}: HAProxy back, rejoined as {self.state(first.killed)}")
            second = self.failover("node", duration=duration, kill_after=kill_after, jitter=jitter, limit=True)
            runs.append(replace(second, round=number))
            if number < rounds:
                self.revive(second.killed)
                self.say(f"  {second.killed}: rebooted, rejoined as {self.state(second.killed)}")
        return Measurement(runs, self.asset)

    # ---- down ---------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop everything this pair started and delete its namespaces."""
        with deferred_signals():
            removed = cleanup(self.made)
            for key in list(self.procs):
                self._reap(key)
            self.made = [ns for ns in self.made if ns not in removed]
        return removed


# -- reporting ---------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def describe(s: Scenario) -> str:
    o, w = s.outage, s.wrk
    line = (
        f"{'+'.join(s.before)} -> {'+'.join(s.after) or 'nobody'}: address moved after {s.vip_moved_s:.2f} s,"
        f" outage {_s(o.outage_s)} ({o.failed} of {o.probes} probes failed: {', '.join(o.errors) or '-'};"
        f" back {_s(o.recovered_s)} after the kill);"
        f" wrk {w.requests} requests, {w.socket_errors} socket errors, {w.non_2xx} non-2xx"
    )
    if s.stale_vip:
        line += f"; {s.killed}'s dead kernel still lists {VIP}"
    if s.limit:
        c = s.limit
        line += (
            f"; {CLIENT} {c.last_status} before and {c.limited_after} after, {FRESH_CLIENT} {c.fresh_after}"
            f" ({c.fresh_after_s:.2f} s after the kill)"
        )
    return line


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _keepalived(s: Scenario) -> str:
    """keepalived's notified states after the kill: the killed one's, then the other's."""
    other = next(n for n in s.transitions if n != s.killed)
    killed = " ".join(f"{st}@{t:+.2f}" for t, st in s.transitions.get(s.killed, []) if t >= 0) or "-"
    took = " ".join(f"{st}@{t:+.2f}" for t, st in s.transitions.get(other, []) if t >= 0) or "-"
    return f"{s.killed} {killed}; {other} {took}"


def table(m: Measurement) -> str:
    """One row per failover, the limit checks, and (several rounds) the spread of the outages."""
    rows: list[tuple[str, ...]] = [
        (
            "scenario",
            "#",
            "kill at",
            "VIP before->after",
            "VIP moved",
            "outage",
            "failed/probes",
            "wrk requests",
            "wrk errors c/r/w/t",
            "non-2xx",
            "keepalived states (s after the kill)",
        )
    ]
    for s in m.scenarios:
        w = s.wrk
        rows.append(
            (
                s.kind,
                str(s.round),
                f"+{s.kill_after_s:.2f} s",
                f"{'+'.join(s.before)}->{'+'.join(s.after) or '-'}",
                _s(s.vip_moved_s),
                _s(s.outage.outage_s),
                f"{s.outage.failed}/{s.outage.probes}" + (f" (+{n})" if (n := s.outage.failed_after_recovery) else ""),
                str(w.requests),
                f"{w.connect}/{w.read}/{w.write}/{w.timeout}",
                str(w.non_2xx),
                _keepalived(s),
            )
        )
    out = [_columns(rows)]
    limits = [s for s in m.scenarios if s.limit]
    if limits:
        rows = [
            (
                "#",
                f"{CLIENT} on the old MASTER",
                "its rate on the BACKUP",
                f"{CLIENT} on the new MASTER",
                f"{FRESH_CLIENT} on the new MASTER",
            )
        ]
        for s in limits:
            c = s.limit
            assert c is not None
            statuses = " ".join(f"{n}x{code}" for code, n in sorted(c.statuses.items()))
            rows.append(
                (
                    str(s.round),
                    f"{statuses} (last {c.last_status})",
                    str(c.peer_rate),
                    str(c.limited_after),
                    f"{c.fresh_after} at +{c.fresh_after_s:.2f} s",
                )
            )
        out += ["", _columns(rows)]
    spread = []
    for kind in KINDS:
        values = sorted(s.outage.outage_s for s in m.scenarios if s.kind == kind and s.outage.outage_s is not None)
        if len(values) > 1:
            spread.append(
                f"{kind}: outage min {values[0]:.2f} s, median {values[len(values) // 2]:.2f} s,"
                f" max {values[-1]:.2f} s over {len(values)} rounds"
            )
    if spread:
        out += ["", *spread]
    return "\n".join(out)


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.pair", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,up,down}")
    for name, text in (
        ("demo", "bring the pair up, measure both failovers, take it down"),
        ("up", "bring the pair up and leave it running"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"configs and logs (default {DEFAULT_DIR})")
        if name == "demo":
            sub.add_argument("--duration", type=float, default=10.0, help="seconds of wrk and prober per failover")
            sub.add_argument("--rounds", type=int, default=1, help="both failovers this many times")
            sub.add_argument("--jitter", type=float, default=1.0, help="the kill comes 0..this s later (default 1)")
    commands.add_parser("down", help="stop everything in fbp-* namespaces and delete them")
    prober = commands.add_parser("probe")  # internal: runs inside the client namespace
    prober.add_argument("--source", required=True)
    prober.add_argument("--path", required=True)
    prober.add_argument("--ca", required=True)
    prober.add_argument("--duration", type=float, required=True)
    prober.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "probe":
        probe(args.source, args.path, args.ca, args.duration, args.out)
        return 0

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.command == "down":
            removed = cleanup()
            print(f"removed {', '.join(removed)}" if removed else "nothing was running")
        elif args.command == "up":
            pair = LocalPair(args.dir, say=say)
            with signals_raise():
                pair.up()  # stops what it started if it fails; on success it all keeps running
            print(f"local pair is up: https://{VIP}{pair.asset} (from {CLIENT_NS})")
            print(f"  try:  ip netns exec {CLIENT_NS} curl --cacert {pair.ca_file} https://{VIP}{pair.asset}")
            print(f"  VIP:  ip -n {ns_name('lb1')} -4 addr show dev eth0; logs under {pair.dir}")
            print("  stop: python -m local.pair down")
        else:
            with LocalPair(args.dir, say=say) as pair:
                say(f"failover: wrk and a prober (every {PROBE_INTERVAL_S * 1000:.0f} ms) from {CLIENT_NS}")
                measurement = pair.measure(duration=args.duration, rounds=args.rounds, jitter=args.jitter)
            print()
            print(table(measurement))
    except Unavailable as err:
        # A demo that cannot run here is skipped (like the test); `up` was asked for and failed.
        print(f"local pair: {'skipped' if args.command == 'demo' else 'cannot start'}: {err}", file=sys.stderr)
        return 0 if args.command == "demo" else 1
    except KeyboardInterrupt:
        print("local pair: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (LocalPairError, OSError, subprocess.SubprocessError) as err:
        print(f"local pair: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
