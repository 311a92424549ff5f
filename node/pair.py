"""Keep keepalived and HAProxy's ``peers`` section equal to the load balancers that exist right now.

With two load balancers, keepalived runs VRRP between them and its MASTER holds the site's address
(on AWS its notify script moves the Elastic IP: ``node.eip``), and HAProxy shares its stick tables
(the per-client rate limits) through a ``peers`` section, so a client over its limit stays limited
after a failover. Both need the other load balancer's address, and load balancers have no fixed
private address (a replacement gets a new one), so each one finds them at run time: every few
seconds the agent reads the addresses (DescribeInstances by tag on AWS, a JSON file on the local
site), renders both files, and only when a file's content changes: writes it beside the old one,
has its daemon check it (``keepalived -t``, ``haproxy -c``), installs it atomically and reloads
the daemon. A file its daemon refuses is never installed; the old one stays.

When the source fails, the agent keeps the last set it knew (never an empty one); at boot
(``--once``, before HAProxy starts) with no answer at all it renders this load balancer alone, so the
peers file always exists. This load balancer's own address is always in the set.

Decisions (measured on keepalived 2.2.7 and HAProxy 2.6):

- A load balancer without a peer still renders a unicast keepalived with a loopback peer that never
  answers (``LONE_PEER``): keepalived has no unicast mode without a peer, and a reload between
  multicast and unicast resets a MASTER to BACKUP (address gone for ~3.6 s). With this, adding or
  removing the peer is a plain reload that keeps the state. A single load balancer (lbCount=1) runs
  no keepalived at all (``--no-keepalived``): it claims the Elastic IP at boot.
- Without a virtual address (AWS), ``keepalived -t`` exits non-zero with the one warning "No VIP
  specified; at least one is sensible"; that warning alone is accepted, anything else refuses.
- HAProxy 2.6 only warns, and ``haproxy -c`` passes, when no peer is named as the ``localpeer``
  (it drops the whole peers section): that warning refuses the file too.
- keepalived silently stops tracking a ``track_file`` whose directory is missing when it starts: the
  agent makes the directory before it installs the keepalived file.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

log = logging.getLogger("foobar.pair")

PEERS_SECTION = "foobar"
"""HAProxy's ``peers`` section; the stick tables say ``peers foobar``."""
PEERS_PORT = 10000
"""TCP port of HAProxy's peers (components.firewalls.LB_PEERS)."""
VIRTUAL_ROUTER_ID = 51
ADVERT_INT_S = 1
PRIORITY = 254
"""The same on both: no preemption, a tie goes to the higher address. The highest a non-owner may
have: a BACKUP's skew time, (256 - priority) / 256 s, is then 8 ms instead of 0.6 s at 100, both
after a FAULT's priority-0 advert and after the 3 missed adverts of a dead MASTER."""
VRRP_INSTANCE = "foobar"
STATS_PORT = 8404
"""HAProxy's stats listener on the private address (userdata HaproxyConfig.stats_port): ``/healthz``."""
HEALTH_INTERVAL_S, HEALTH_TIMEOUT_S, HEALTH_FALL, HEALTH_RISE = 1, 2, 2, 2
CURL = "/usr/bin/curl"
LONE_PEER = "127.0.0.1"
"""keepalived's unicast peer while no other load balancer exists: never one, never answers."""

DEFAULT_PEERS_FILE = Path("/etc/haproxy/peers.cfg")
DEFAULT_KEEPALIVED_FILE = Path("/etc/keepalived/keepalived.conf")
DEFAULT_FAULT_FILE = "/run/foobar/vrrp-fault"
HAPROXY = "/usr/sbin/haproxy"
KEEPALIVED = "/usr/sbin/keepalived"
DEFAULT_RELOAD_HAPROXY = "systemctl try-reload-or-restart haproxy"
DEFAULT_RELOAD_KEEPALIVED = "systemctl try-reload-or-restart keepalived"
"""``try-``: nothing while the daemon isn't running (the boot's ``--once`` runs before it starts)."""

EC2_ACTIONS = ("ec2:DescribeInstances",)
"""Every AWS call this module makes (the load balancer's policy must allow them)."""

TEMPLATES = Path(__file__).resolve().parent / "templates"

KEEPALIVED_BENIGN = (re.compile(r"^\(\S+\) No VIP specified; at least one is sensible$"),)
"""What ``keepalived -t`` reports, and exits non-zero for, about a file that is fine all the same."""
HAPROXY_REFUSED = (re.compile(r"Removing incomplete section 'peers \S+'"),)
"""What ``haproxy -c`` only warns about, but leaves the stick tables unshared."""

# keepalived strings are double-quoted, HAProxy's words unquoted: none of this in a value.
_UNSAFE = re.compile(r"[\s\"'#!\\{}]")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def peer_name(address: str) -> str:
    """HAProxy's name of a load balancer in ``peers foobar`` (and its ``localpeer``): ``lb-10.0.1.5``
    (HAProxy 2.6 accepts the dots: letters, digits, ``.-_:``)."""
    return "lb-" + address


# -- the configuration: pure ---------------------------------------------------------------------


def _ipv4(value: str, owner: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{owner}: {value!r} is not an IPv4 address") from None
    return str(address)


def sorted_addresses(addresses: Iterable[str], owner: str = "addresses") -> list[str]:
    """Unique IPv4 addresses in numeric order; a ValueError names a bad one."""
    return sorted({_ipv4(a, owner) for a in addresses}, key=lambda a: ipaddress.IPv4Address(a))


@dataclass(frozen=True)
class PairConfig:
    """What both files are rendered from; every check raises a ValueError naming its field."""

    own_address: str
    """This load balancer's private address: VRRP's source, HAProxy's peers bind."""
    interface: str
    """Where keepalived runs VRRP (and holds the virtual address): the interface of own_address."""
    health_url: str
    """HAProxy's health (its stats listener answers ``/healthz``), polled by keepalived with curl."""
    peers_port: int = PEERS_PORT
    peers_cert: str = ""
    """PEM with the certificate and its key, shown to the other load balancers (TLS on peers)."""
    peers_ca: str = ""
    """The CA that signed the other load balancers' certificate."""
    peers_verify_name: str = ""
    """The name the other load balancers' certificate must carry (AWS: lb.foobar.internal)."""
    notify: str = ""
    """Command keepalived runs on every change of state (AWS: node.eip's notify); empty: none."""
    virtual_address: str = ""
    """A CIDR keepalived itself holds on ``interface`` (local site only; AWS moves the EIP instead)."""
    fault_file: str = DEFAULT_FAULT_FILE
    """Holds 0 or 1 (node.eip's reconcile); not 0 puts this node in FAULT. Empty: not tracked."""
    priority: int = PRIORITY
    advert_int: int = ADVERT_INT_S
    virtual_router_id: int = VIRTUAL_ROUTER_ID
    script_user: str = "root"
    """Who runs the health check and notify (``enable_script_security``)."""

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "own_address", _ipv4(self.own_address, f"{owner}.own_address"))
        if not _IFNAME.match(self.interface):
            raise ValueError(f"{owner}.interface: {self.interface!r} is not an interface name")
        if not re.match(r"^https?://[^\s\"'\\]+$", self.health_url):
            raise ValueError(f"{owner}.health_url: {self.health_url!r} is not an http(s) URL without quotes or spaces")
        for name, low, high in (
            ("peers_port", 1, 65535),
            ("priority", 1, 254),
            ("advert_int", 1, 255),
            ("virtual_router_id", 1, 255),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{owner}.{name}: {value!r} is not an integer from {low} to {high}")
        tls = {"peers_cert": self.peers_cert, "peers_ca": self.peers_ca, "peers_verify_name": self.peers_verify_name}
        if any(tls.values()) and not all(tls.values()):
            missing = ", ".join(f"{owner}.{k}" for k, v in tls.items() if not v)
            raise ValueError(f"{missing}: TLS on peers needs the certificate, the CA and the name, or none of them")
        for name in ("peers_cert", "peers_ca", "fault_file"):
            value = getattr(self, name)
            if value and (not value.startswith("/") or _UNSAFE.search(value)):
                raise ValueError(f"{owner}.{name}: {value!r} is not an absolute path without spaces or quotes")
        name = self.peers_verify_name
        if name and (len(name) > 253 or not _DNS_NAME.match(name)):
            raise ValueError(f"{owner}.peers_verify_name: {self.peers_verify_name!r} is not a DNS name")
        if re.search(r"[\"\\\n\r]", self.notify):
            raise ValueError(f"{owner}.notify: {self.notify!r} has a double quote, backslash or newline")
        if self.virtual_address:
            try:
                vip = ipaddress.IPv4Interface(self.virtual_address)
            except ValueError:
                raise ValueError(f"{owner}.virtual_address: {self.virtual_address!r} is not an IPv4 CIDR") from None
            if "/" not in self.virtual_address:
                raise ValueError(f"{owner}.virtual_address: {self.virtual_address!r} needs its prefix length (/24)")
            if str(vip.ip) == self.own_address:
                raise ValueError(f"{owner}.virtual_address: {self.virtual_address!r} is own_address")
        if not _USER.match(self.script_user):
            raise ValueError(f"{owner}.script_user: {self.script_user!r} is not a user name")

    @property
    def tls(self) -> bool:
        return bool(self.peers_cert)

    @property
    def health_command(self) -> str:
        return f"{CURL} -fsS -m 1 -o /dev/null {self.health_url}"


def _jinja() -> Any:
    import jinja2  # on the servers: python3-jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _with_self(cfg: PairConfig, addresses: Iterable[str]) -> list[str]:
    return sorted_addresses([*addresses, cfg.own_address])


def render_keepalived(cfg: PairConfig, addresses: Sequence[str]) -> str:
    """keepalived.conf for this load balancer among ``addresses`` (its own included or not).

    Unicast VRRP to the others, BACKUP and nopreempt at equal priority, HAProxy's health tracked
    with a script and the fault file with ``track_file``. Alone, the unicast peer is ``LONE_PEER``.
    """
    everyone = _with_self(cfg, addresses)
    peers = [a for a in everyone if a != cfg.own_address]
    return str(
        _jinja()
        .get_template("keepalived.conf.j2")
        .render(
            cfg=cfg,
            addresses=everyone,
            peers=peers or [LONE_PEER],
            lone=not peers,
            router_id=peer_name(cfg.own_address),
            instance=VRRP_INSTANCE,
            health_command=cfg.health_command,
            health_interval=HEALTH_INTERVAL_S,
            health_timeout=HEALTH_TIMEOUT_S,
            health_fall=HEALTH_FALL,
            health_rise=HEALTH_RISE,
        )
    )


def render_peers(cfg: PairConfig, addresses: Sequence[str]) -> str:
    """HAProxy's ``peers foobar`` with every load balancer, this one by name only (the local peer,
    listening on ``bind``), the others ``name address:port``; mutual TLS when configured."""
    tls = None
    if cfg.tls:
        tls = {"cert": cfg.peers_cert, "ca": cfg.peers_ca, "name": cfg.peers_verify_name}
    return str(
        _jinja()
        .get_template("haproxy-peers.cfg.j2")
        .render(
            section=PEERS_SECTION,
            own=cfg.own_address,
            local_name=peer_name(cfg.own_address),
            port=cfg.peers_port,
            addresses=_with_self(cfg, addresses),
            peer_name=peer_name,
            tls=tls,
        )
    )


def stub_haproxy_config(own_address: str) -> str:
    """A smallest main configuration that uses ``peers foobar``: to check a peers file without one."""
    return (
        f"global\n    localpeer {peer_name(own_address)}\n"
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"
        f"backend pair_check\n    stick-table type ip size 1 peers {PEERS_SECTION}\n"
    )


def interface_from_json(text: str, address: str) -> str:
    """The interface holding ``address`` in the output of ``ip -j -4 addr``."""
    for link in json.loads(text):
        for info in link.get("addr_info", []):
            if info.get("local") == address:
                return str(link["ifname"])
    raise LookupError(f"no interface holds {address}")


def interface_for(address: str, run: Callable[[Sequence[str]], str] | None = None) -> str:
    """The interface of this host that holds ``address`` (on AWS the private address: ens5)."""
    text = (run or _output)(["ip", "-j", "-4", "addr"])
    return interface_from_json(text, address)


def _output(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=10).stdout


# -- sources -----------------------------------------------------------------------------------


class SourceError(RuntimeError):
    """The source could not say which load balancers exist; the message is safe to log."""


class Source(Protocol):
    def addresses(self) -> list[str]:
        """The private addresses of the load balancers, sorted; raises SourceError when it can't tell."""
        ...


class Ec2Source:
    """This stack's load balancers (pending or running), found by their tags."""

    def __init__(self, stack: str, region: str, client: Any = None) -> None:
        self.stack = stack
        if client is None:
            import boto3  # only on the load balancer

            client = boto3.client("ec2", region_name=region)
        self._ec2 = client

    def addresses(self) -> list[str]:
        try:
            found: set[str] = set()
            pages = self._ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": "tag:project", "Values": ["foobar"]},
                    {"Name": "tag:stack", "Values": [self.stack]},
                    {"Name": "tag:role", "Values": ["lb"]},
                    {"Name": "instance-state-name", "Values": ["pending", "running"]},
                ]
            )
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        if instance.get("PrivateIpAddress"):
                            found.add(instance["PrivateIpAddress"])
            return sorted_addresses(found, "DescribeInstances")
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        except Exception as exc:  # botocore raises many types; the class and code are safe to show
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            raise SourceError(f"{type(exc).__name__} {code}".strip()) from None


class FileSource:
    """The local site's stand-in: a JSON list of addresses, ``["127.0.0.11", "127.0.0.12"]``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def addresses(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
                raise TypeError("not a list of strings")
            return sorted_addresses(data, str(self.path))
        except (OSError, ValueError, TypeError) as exc:
            raise SourceError(f"cannot read addresses from {self.path}: {type(exc).__name__}") from None

    @staticmethod
    def write(path: Path, addresses: Iterable[str]) -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(sorted_addresses(addresses)))
        os.replace(tmp, path)


# -- checks and installs -----------------------------------------------------------------------


class InvalidConfig(RuntimeError):
    """The daemon refused a rendered file; the message has its words."""


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, stdout and stderr together; a missing program is exit status 127."""
    try:
        return subprocess.run(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(list(argv), 127, f"{exc.filename}: not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, f"timed out after {timeout:.0f}s")


def _complaints(output: str, benign: Sequence[re.Pattern[str]] = ()) -> list[str]:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return [line for line in lines if not any(p.search(line) for p in benign)]


def check_keepalived(path: Path, keepalived: str = KEEPALIVED, run: Runner = run_command) -> None:
    """``keepalived -t -f path``; raises InvalidConfig unless it passes, or only warns that there's no VIP."""
    done = run([keepalived, "-t", "-f", str(path)])
    complaints = _complaints(done.stdout or "", KEEPALIVED_BENIGN)
    if done.returncode != 0 and (complaints or not (done.stdout or "").strip()):
        raise InvalidConfig(f"keepalived -t (exit {done.returncode}): " + " | ".join(complaints or ["no output"]))


def check_haproxy(
    path: Path, main_config: Path | None, own_address: str, haproxy: str = HAPROXY, run: Runner = run_command
) -> None:
    """``haproxy -c -f MAIN -f path`` (without MAIN: a stub main config that uses the peers)."""
    stub: Path | None = None
    if main_config is None:
        stub = path.with_name(f"{path.name}.stub")
        stub.write_text(stub_haproxy_config(own_address))
        main_config = stub
    try:
        done = run([haproxy, "-c", "-f", str(main_config), "-f", str(path)])
    finally:
        if stub is not None:
            stub.unlink(missing_ok=True)
    output = done.stdout or ""
    refused = [line.strip() for line in output.splitlines() if any(p.search(line) for p in HAPROXY_REFUSED)]
    if done.returncode != 0 or refused:
        alerts = [ln.strip() for ln in output.splitlines() if "[ALERT]" in ln or "[WARNING]" in ln] or refused
        raise InvalidConfig(f"haproxy -c (exit {done.returncode}): " + " | ".join(alerts or [output.strip()[:500]]))


Outcome = Literal["unchanged", "installed", "refused"]


@dataclass
class Target:
    """One file the agent keeps: how to render it, check it and have its daemon read it again."""

    name: str
    path: Path
    render: Callable[[Sequence[str]], str]
    check: Callable[[Path], None]
    """Raises InvalidConfig for a file the daemon refuses."""
    reload: Sequence[str] = ()
    """argv run after installing; empty: none."""
    prepare: Callable[[], None] | None = None
    """Run before installing (e.g. make the fault file's directory)."""


def install(target: Target, text: str, run: Runner = run_command) -> Outcome:
    """Install ``text`` at ``target.path`` if it differs: checked first, then atomically, then reloaded."""
    path = target.path
    try:
        if path.read_text() == text:
            return "unchanged"
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    try:
        target.check(tmp)
    except InvalidConfig as err:
        tmp.unlink(missing_ok=True)
        log.error("not installing %s (%s): %s; keeping the old one", path, target.name, err)
        return "refused"
    if target.prepare is not None:
        target.prepare()
    os.replace(tmp, path)
    log.info("installed %s (%s)", path, target.name)
    if target.reload:
        done = run(list(target.reload))
        if done.returncode != 0:
            log.error(
                "reloading %s: %s exited %d: %s",
                target.name,
                shlex.join(target.reload),
                done.returncode,
                (done.stdout or "").strip()[:500],
            )
        else:
            log.info("reloaded %s", target.name)
    return "installed"


# -- the agent ---------------------------------------------------------------------------------


@dataclass
class Pair:
    """Each round: read the load balancers, render every target, install what changed."""

    cfg: PairConfig
    source: Source
    targets: Sequence[Target]
    run_command: Runner = run_command
    known: list[str] | None = field(default=None)
    """The last set the source gave (own address included); None until it answered once."""

    def refresh(self, *, alone_if_unknown: bool = False) -> list[str] | None:
        """Ask the source; on failure keep the last known set (or, never having had one and asked
        to, this load balancer alone). None: nothing known, nothing to render."""
        try:
            found = self.source.addresses()
        except SourceError as err:
            if self.known is not None:
                log.warning("source failed, keeping the last known %s: %s", ", ".join(self.known), err)
            elif alone_if_unknown:
                log.warning("source failed and nothing known: rendering %s alone: %s", self.cfg.own_address, err)
                return [self.cfg.own_address]
            else:
                log.warning("source failed and nothing known yet: leaving the files as they are: %s", err)
            return self.known
        if self.cfg.own_address not in found:
            log.warning("the source doesn't list this load balancer (%s): adding it", self.cfg.own_address)
        addresses = _with_self(self.cfg, found)
        if addresses != self.known:
            log.info("load balancers: %s", ", ".join(addresses))
        self.known = addresses
        return addresses

    def sync(self, *, alone_if_unknown: bool = False) -> dict[str, Outcome]:
        """One round; returns each target's outcome (empty when nothing is known yet)."""
        addresses = self.refresh(alone_if_unknown=alone_if_unknown)
        if addresses is None:
            return {}
        return {t.name: install(t, t.render(addresses), self.run_command) for t in self.targets}

    def run(
        self,
        interval: float,
        *,
        rounds: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ready: Callable[[], None] = lambda: None,
    ) -> None:
        """Round after round. After the first, ``ready`` tells systemd (Type=notify) that the files
        exist, so HAProxy and keepalived, ordered after this unit, start with them; the first round
        renders this load balancer alone if nothing is known and no file exists yet (a first boot
        while EC2 can't be read), and later rounds never shrink the set because the source failed."""
        done = 0
        while rounds is None or done < rounds:
            try:
                self.sync(alone_if_unknown=not all(t.path.exists() for t in self.targets))
            except (OSError, ValueError) as err:  # a full disk, a bad address: the next round tries again
                log.error("round failed: %s", err)
            if done == 0:
                ready()
            done += 1
            if rounds is None or done < rounds:
                sleep(interval)


def notify_systemd(message: str = "READY=1", environ: Mapping[str, str] = os.environ) -> bool:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (nothing when not under systemd)."""
    path = environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # "@": the abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def targets(
    cfg: PairConfig,
    *,
    peers_file: Path,
    keepalived_file: Path | None,
    haproxy_config: Path | None = None,
    reload_haproxy: str = "",
    reload_keepalived: str = "",
    haproxy: str = HAPROXY,
    keepalived: str = KEEPALIVED,
    run: Runner = run_command,
) -> list[Target]:
    """The HAProxy peers file and (unless None) keepalived's, checked by the given binaries."""
    found = [
        Target(
            "haproxy peers",
            peers_file,
            lambda addresses: render_peers(cfg, addresses),
            lambda path: check_haproxy(path, haproxy_config, cfg.own_address, haproxy, run),
            shlex.split(reload_haproxy),
        )
    ]
    if keepalived_file is not None:

        def prepare() -> None:
            if cfg.fault_file:
                Path(cfg.fault_file).parent.mkdir(mode=0o755, parents=True, exist_ok=True)

        found.append(
            Target(
                "keepalived",
                keepalived_file,
                lambda addresses: render_keepalived(cfg, addresses),
                lambda path: check_keepalived(path, keepalived, run),
                shlex.split(reload_keepalived),
                prepare,
            )
        )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="foobar-pair", description=__doc__.splitlines()[0])
    parser.add_argument("--own-address", required=True, help="this load balancer's private address")
    parser.add_argument("--interface", help="keepalived's interface (default: the one holding --own-address)")
    parser.add_argument("--source", choices=("ec2", "file"), required=True)
    parser.add_argument("--stack", help="with --source ec2: the stack whose load balancers to find")
    parser.add_argument("--region", help="with --source ec2")
    parser.add_argument("--members-file", type=Path, help="with --source file: a JSON list of addresses")
    parser.add_argument("--peers-file", type=Path, default=DEFAULT_PEERS_FILE)
    parser.add_argument("--keepalived-file", type=Path, default=DEFAULT_KEEPALIVED_FILE)
    parser.add_argument("--no-keepalived", action="store_true", help="a single load balancer: peers file only")
    parser.add_argument("--haproxy-config", type=Path, help="HAProxy's main config, for haproxy -c -f MAIN -f PEERS")
    parser.add_argument("--peers-port", type=int, default=PEERS_PORT)
    parser.add_argument("--peers-cert", default="", help="PEM (certificate and key) for TLS between peers")
    parser.add_argument("--peers-ca", default="", help="CA file that verifies the other load balancers")
    parser.add_argument("--peers-verify-name", default="", help="name in their certificate (lb.foobar.internal)")
    parser.add_argument("--health-url", help=f"HAProxy's health (default http://OWN:{STATS_PORT}/healthz)")
    parser.add_argument("--notify", default="", help="command keepalived runs on a change of state")
    parser.add_argument("--fault-file", default=DEFAULT_FAULT_FILE, help="tracked by keepalived; '' for none")
    parser.add_argument("--virtual-address", default="", help="a CIDR keepalived holds (local site only)")
    parser.add_argument("--virtual-router-id", type=int, default=VIRTUAL_ROUTER_ID)
    parser.add_argument("--script-user", default="root")
    parser.add_argument("--reload-haproxy", default=DEFAULT_RELOAD_HAPROXY, help="argv string; '' for none")
    parser.add_argument("--reload-keepalived", default=DEFAULT_RELOAD_KEEPALIVED, help="argv string; '' for none")
    parser.add_argument("--haproxy-bin", default=HAPROXY)
    parser.add_argument("--keepalived-bin", default=KEEPALIVED)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--once", action="store_true", help="one round (at boot, before HAProxy starts), then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s foobar-pair %(levelname)s %(message)s")

    source: Source
    if args.source == "ec2":
        if not args.stack or not args.region:
            parser.error("--source ec2 needs --stack and --region")
        source = Ec2Source(args.stack, args.region)
    else:
        if not args.members_file:
            parser.error("--source file needs --members-file")
        source = FileSource(args.members_file)
    try:
        interface = args.interface or interface_for(args.own_address)
    except (LookupError, OSError, ValueError, subprocess.SubprocessError) as err:
        parser.error(f"--interface: cannot find the interface of {args.own_address}: {err}")
    try:
        cfg = PairConfig(
            own_address=args.own_address,
            interface=interface,
            health_url=args.health_url or f"http://{args.own_address}:{STATS_PORT}/healthz",
            peers_port=args.peers_port,
            peers_cert=args.peers_cert,
            peers_ca=args.peers_ca,
            peers_verify_name=args.peers_verify_name,
            notify=args.notify,
            virtual_address=args.virtual_address,
            fault_file=args.fault_file,
            virtual_router_id=args.virtual_router_id,
            script_user=args.script_user,
        )
    except ValueError as err:
        parser.error(str(err))
    pair = Pair(
        cfg,
        source,
        targets(
            cfg,
            peers_file=args.peers_file,
            keepalived_file=None if args.no_keepalived else args.keepalived_file,
            haproxy_config=args.haproxy_config,
            reload_haproxy=args.reload_haproxy,
            reload_keepalived=args.reload_keepalived,
            haproxy=args.haproxy_bin,
            keepalived=args.keepalived_bin,
        ),
    )
    if args.once:
        # Alone only while there is no file yet (the first boot): a restart while EC2 can't be read
        # keeps the files it has rather than shrinking the pair to one.
        outcomes = pair.sync(alone_if_unknown=not args.peers_file.exists())
        return 1 if "refused" in outcomes.values() else 0

    def ready() -> None:
        notify_systemd()  # systemd (Type=notify) starts HAProxy and keepalived once the files exist

    pair.run(args.interval, ready=ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
