"""node.pair against the real daemons: every render passes ``keepalived -t`` and ``haproxy -c``, two
HAProxies share a stick table over the rendered TLS peers, and two keepalived in network namespaces
elect, fail over on health and on the fault file, and keep their MASTER across a peer joining."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from node import pair
from node.pair import (
    ADVERT_INT_S,
    EC2_ACTIONS,
    LONE_PEER,
    PEERS_PORT,
    PEERS_SECTION,
    VIRTUAL_ROUTER_ID,
    Ec2Source,
    FileSource,
    InvalidConfig,
    Pair,
    PairConfig,
    SourceError,
    check_haproxy,
    check_keepalived,
    interface_for,
    interface_from_json,
    main,
    notify_systemd,
    peer_name,
    render_keepalived,
    render_peers,
    targets,
)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
A, B, C = "10.0.1.5", "10.0.2.7", "10.0.3.9"
needs_haproxy = pytest.mark.skipif(not os.access(HAPROXY, os.X_OK), reason=f"no HAProxy at {HAPROXY}")
needs_keepalived = pytest.mark.skipif(not os.access(KEEPALIVED, os.X_OK), reason=f"no keepalived at {KEEPALIVED}")


@pytest.fixture(scope="module")
def iface() -> str:
    """An interface of this host that keepalived accepts (not loopback): ``keepalived -t`` checks it."""
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
    names = [link["ifname"] for link in links if "LOOPBACK" not in link.get("flags", [])]
    if not names:
        pytest.skip("no non-loopback interface for keepalived -t")
    return str(names[0])


def _cfg(own: str = A, interface: str = "eth0", **kw: Any) -> PairConfig:
    kw.setdefault("health_url", f"http://{own}:8404/healthz")
    kw.setdefault("notify", "/usr/bin/python3 -m node.eip notify")
    return PairConfig(own_address=own, interface=interface, **kw)


@dataclass(frozen=True)
class Certs:
    ca: Path
    pem: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA and the load balancers' leaf (lb.foobar.internal, server and client), one PEM
    with its key."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a throwaway CA")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=test-ca", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    _openssl("req", *ec, "-subj", "/CN=lb.foobar.internal", "-keyout", f"{d}/lb.key", "-out", f"{d}/lb.csr")
    (d / "ext").write_text("subjectAltName=DNS:lb.foobar.internal\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl(
        "x509", "-req", "-in", f"{d}/lb.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", f"{d}/ext", "-out", f"{d}/lb.crt",
    )  # fmt: skip
    (d / "lb.pem").write_text((d / "lb.crt").read_text() + (d / "lb.key").read_text())
    return Certs(ca=d / "ca.pem", pem=d / "lb.pem")


def _tls(certs: Certs) -> dict[str, str]:
    return {"peers_cert": str(certs.pem), "peers_ca": str(certs.ca), "peers_verify_name": "lb.foobar.internal"}


def _main_cfg(path: Path, localpeer: str, *, frontend: str = "127.0.0.1:8080", stats: str = "") -> Path:
    """A minimal main HAProxy config of ours: ``localpeer`` and a stick table on ``peers foobar``."""
    path.write_text(
        "global\n"
        f"    localpeer {localpeer}\n"
        + (f"    stats socket {stats} mode 600 level admin\n" if stats else "")
        + "defaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\n"
        "frontend limits\n"
        f"    bind {frontend}\n"
        + f"    stick-table type ip size 10k expire 60s store http_req_rate(10s) peers {PEERS_SECTION}\n"
        "    http-request track-sc0 src\n"
        "    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100 }\n"
        "    http-request return status 200\n"
    )
    return path


def _block(text: str, keyword: str) -> list[str]:
    """The words inside ``keyword { ... }`` of a keepalived file (comments left out)."""
    match = re.search(rf"^\s*{keyword} \{{\n(.*?)^\s*\}}", text, re.M | re.S)
    assert match, f"no {keyword} block"
    return [line.strip() for line in match.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


# -- names and constants -----------------------------------------------------------------------


def test_constants_and_peer_names() -> None:
    assert (PEERS_SECTION, PEERS_PORT, VIRTUAL_ROUTER_ID, ADVERT_INT_S) == ("foobar", 10000, 51, 1)
    assert peer_name("10.0.1.5") == "lb-10.0.1.5"
    assert EC2_ACTIONS == ("ec2:DescribeInstances",)


# -- keepalived --------------------------------------------------------------------------------


def _keepalived_t(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    return subprocess.run([KEEPALIVED, "-t", "-f", str(conf)], capture_output=True, text=True, check=False)


@needs_keepalived
@pytest.mark.parametrize("addresses", [[A], [A, B], [A, B, C]], ids=["alone", "pair", "replacing"])
@pytest.mark.parametrize("vip", ["", "198.18.0.100/24"], ids=["aws", "vip"])
def test_keepalived_accepts_every_render(addresses: list[str], vip: str, iface: str, tmp_path: Path) -> None:
    cfg = _cfg(interface=iface, virtual_address=vip)
    done = _keepalived_t(render_keepalived(cfg, addresses), tmp_path)
    complaints = [line for line in done.stderr.splitlines() if line.strip()]
    if vip:
        assert (done.returncode, complaints) == (0, [])
    else:
        # keepalived 2.2 exits non-zero for this warning alone; the agent accepts exactly that.
        assert done.returncode != 0 and set(complaints) == {"(foobar) No VIP specified; at least one is sensible"}
    check_keepalived(tmp_path / "keepalived.conf", KEEPALIVED)


@needs_keepalived
def test_keepalived_check_refuses_what_keepalived_refuses(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(render_keepalived(_cfg(interface="nosuch0", virtual_address="198.18.0.100/24"), [A, B]))
    with pytest.raises(InvalidConfig, match="nosuch0"):
        check_keepalived(conf, KEEPALIVED)
    conf.write_text(conf.read_text().replace("unicast_peer {", "unicast_peers {"))
    with pytest.raises(InvalidConfig, match="unicast_peers"):
        check_keepalived(conf, KEEPALIVED)
    with pytest.raises(InvalidConfig, match="exit 127"):
        check_keepalived(conf, str(tmp_path / "no-keepalived"))


def test_keepalived_is_unicast_backup_nopreempt_at_equal_priority() -> None:
    renders = {own: render_keepalived(_cfg(own), [A, B, C]) for own in (A, B, C)}
    for own, text in renders.items():
        lines = _lines(text)
        assert "state BACKUP" in lines and "nopreempt" in lines and "state MASTER" not in text
        assert "priority 254" in lines and "advert_int 1" in lines and "virtual_router_id 51" in lines
        assert f"unicast_src_ip {own}" in lines and "check_unicast_src" in lines  # adverts from peers only
        assert _block(text, "unicast_peer") == [a for a in (A, B, C) if a != own]
        assert f"router_id {peer_name(own)}" in lines
        assert "enable_script_security" in lines and "script_user root" in lines
        assert _block(text, "track_script") == ["haproxy_health"]
        assert _block(text, "track_file") == ["vrrp_fault weight 0"]
        assert 'file "/run/foobar/vrrp-fault"' in lines
        assert f'script "/usr/bin/curl -fsS -m 1 -o /dev/null http://{own}:8404/healthz"' in lines
        assert {"interval 1", "fall 2", "rise 2"} <= set(_block(text, "vrrp_script haproxy_health"))
        assert 'notify "/usr/bin/python3 -m node.eip notify"' in lines
        assert "virtual_ipaddress" not in text  # AWS: the EIP moves, not a VIP
    # The order addresses come in, and whether self is among them, change nothing.
    assert render_keepalived(_cfg(B), [C, A]) == renders[B]


def test_keepalived_alone_keeps_unicast_with_a_loopback_peer() -> None:
    text = render_keepalived(_cfg(), [A])
    assert _block(text, "unicast_peer") == [LONE_PEER] == ["127.0.0.1"]
    assert render_keepalived(_cfg(), []) == text


def test_keepalived_options_only_when_set() -> None:
    text = render_keepalived(_cfg(notify="", fault_file="", virtual_address="198.18.0.100/24", interface="br9"), [A])
    assert not any(line.startswith("notify") for line in _lines(text))
    assert "track_file" not in text and "vrrp_fault" not in text
    assert _block(text, "virtual_ipaddress") == ["198.18.0.100/24 dev br9"]


# -- HAProxy peers -----------------------------------------------------------------------------


@needs_haproxy
@pytest.mark.parametrize("addresses", [[A], [A, B]], ids=["alone", "pair"])
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_haproxy_accepts_every_render(addresses: list[str], tls: bool, certs: Certs, tmp_path: Path) -> None:
    cfg = _cfg(**(_tls(certs) if tls else {}))
    peers = tmp_path / "peers.cfg"
    peers.write_text(render_peers(cfg, addresses))
    main_cfg = _main_cfg(tmp_path / "haproxy.cfg", peer_name(A))
    done = subprocess.run([HAPROXY, "-c", "-f", str(main_cfg), "-f", str(peers)], capture_output=True, text=True)
    assert done.returncode == 0 and "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr
    check_haproxy(peers, main_cfg, A, HAPROXY)
    check_haproxy(peers, None, A, HAPROXY)  # without a main config: a stub of ours


def test_peers_list_everyone_self_by_name_only(certs: Certs) -> None:
    text = render_peers(_cfg(B), [C, A])
    assert _lines(text) == [
        "peers foobar",
        f"bind {B}:10000",
        f"server lb-{A} {A}:10000",
        f"server lb-{B}",
        f"server lb-{C} {C}:10000",
    ]
    tls = _lines(render_peers(_cfg(A, **_tls(certs)), [A, B]))
    assert tls[1] == f"bind {A}:10000 ssl crt {certs.pem} ca-file {certs.ca} verify required"
    assert tls[2] == (
        f"default-server ssl crt {certs.pem} ca-file {certs.ca} verify required"
        " verifyhost lb.foobar.internal sni str(lb.foobar.internal)"
    )
    assert tls[3:] == [f"server lb-{A}", f"server lb-{B} {B}:10000"]


@needs_haproxy
def test_haproxy_check_refuses_what_haproxy_refuses_or_only_warns_about(certs: Certs, tmp_path: Path) -> None:
    peers = tmp_path / "peers.cfg"
    peers.write_text(render_peers(_cfg(A), [A, B]))
    # HAProxy 2.6 passes -c but drops the peers section when no peer is its localpeer.
    other = _main_cfg(tmp_path / "other.cfg", peer_name(C))
    with pytest.raises(InvalidConfig, match="incomplete section 'peers foobar'"):
        check_haproxy(peers, other, A, HAPROXY)
    peers.write_text(render_peers(_cfg(A, **{**_tls(certs), "peers_ca": str(tmp_path / "missing.pem")}), [A, B]))
    with pytest.raises(InvalidConfig, match=r"missing\.pem"):
        check_haproxy(peers, _main_cfg(tmp_path / "main.cfg", peer_name(A)), A, HAPROXY)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _admin(sock: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(sock))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@needs_haproxy
def test_two_haproxies_share_a_stick_table_over_the_rendered_tls_peers(certs: Certs, tmp_path: Path) -> None:
    """The TLS options do what -c can't tell: both ends verify each other and the table syncs."""
    lbs = ["127.0.63.11", "127.0.63.12"]
    port = _free_port(lbs[0])
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for lb in lbs:
            cfg = _cfg(lb, peers_port=port, **_tls(certs))
            (tmp_path / f"{lb}.peers").write_text(render_peers(cfg, lbs))
            main_cfg = _main_cfg(
                tmp_path / f"{lb}.cfg",
                peer_name(lb),
                frontend=f"{lb}:{_free_port(lb)}",
                stats=str(tmp_path / f"{lb}.sock"),
            )
            check_haproxy(tmp_path / f"{lb}.peers", main_cfg, lb, HAPROXY)
            procs.append(
                subprocess.Popen(
                    [HAPROXY, "-db", "-f", str(main_cfg), "-f", str(tmp_path / f"{lb}.peers")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        front = re.search(r"bind (\S+):(\d+)", (tmp_path / f"{lbs[0]}.cfg").read_text())
        assert front
        _wait(lambda: all((tmp_path / f"{lb}.sock").exists() for lb in lbs), 5, "HAProxy's admin sockets")
        _wait(lambda: _http(front[1], int(front[2])), 5, "the first HAProxy answering")
        # The client address seen by the first HAProxy shows up in the second one's table.
        _wait(lambda: "key=127.0.0.1 " in _admin(tmp_path / f"{lbs[1]}.sock", "show table limits"), 5, "the sync")
        peers = _admin(tmp_path / f"{lbs[1]}.sock", "show peers")
        assert re.search(rf"id={re.escape(peer_name(lbs[0]))}\(remote,active\).*?last_status=ESTA", peers), peers
        # The peers port speaks TLS with the load balancers' certificate, and wants the client's.
        assert _tls_hello(lbs[0], port, certs, client_cert=True) == "ok"
        assert _tls_hello(lbs[0], port, certs, client_cert=False) == "refused"
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)


def _tls_hello(address: str, port: int, certs: Certs, *, client_cert: bool) -> str:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if client_cert:
        context.load_cert_chain(str(certs.pem))
    with socket.create_connection((address, port), timeout=2) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="lb.foobar.internal") as s:
                s.settimeout(0.5)
                s.recv(100)  # a refused client certificate comes back as an alert (TLS 1.3: after the handshake)
        except (ssl.SSLError, ConnectionResetError):
            return "refused"
        except TimeoutError:
            return "ok"  # HAProxy waits for the peers protocol's hello: the TLS session holds
    return "closed"


def _http(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.")
    except OSError:
        return False


def _wait(condition: Callable[[], bool], timeout: float, what: str = "the condition") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


# -- the configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"own_address": "10.0.1"}, "own_address"),
        ({"own_address": "fe80::1"}, "own_address"),
        ({"interface": "eth 0"}, "interface"),
        ({"interface": ""}, "interface"),
        ({"health_url": "ftp://x/healthz"}, "health_url"),
        ({"health_url": 'http://x/"'}, "health_url"),
        ({"peers_port": 0}, "peers_port"),
        ({"peers_port": 70000}, "peers_port"),
        ({"priority": 255}, "priority"),
        ({"advert_int": 0}, "advert_int"),
        ({"virtual_router_id": 256}, "virtual_router_id"),
        ({"peers_cert": "/etc/haproxy/peers.pem"}, "peers_ca"),
        ({"peers_cert": "/p.pem", "peers_ca": "/ca.pem"}, "peers_verify_name"),
        ({"peers_cert": "rel.pem", "peers_ca": "/ca.pem", "peers_verify_name": "lb.x"}, "peers_cert"),
        ({"peers_cert": "/p.pem", "peers_ca": "/ca.pem", "peers_verify_name": "lb x"}, "peers_verify_name"),
        ({"notify": 'x "y"'}, "notify"),
        ({"virtual_address": "198.18.0.300/24"}, "virtual_address"),
        ({"virtual_address": "198.18.0.100"}, "virtual_address"),
        ({"virtual_address": f"{A}/24"}, "virtual_address"),
        ({"fault_file": "run/fault"}, "fault_file"),
        ({"fault_file": "/run/a b"}, "fault_file"),
        ({"script_user": "Root!"}, "script_user"),
    ],
)
def test_validation_names_the_field(change: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValueError, match=rf"PairConfig\.{field_name}\b"):
        replace(_cfg(), **change)


def test_tls_is_all_or_none(certs: Certs) -> None:
    assert _cfg(**_tls(certs)).tls and not _cfg().tls


def test_interface_for_parses_ip_json() -> None:
    text = json.dumps(
        [
            {"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]},
            {"ifname": "ens5", "addr_info": [{"local": "10.0.1.5"}, {"local": "10.0.1.99"}]},
        ]
    )
    assert interface_from_json(text, "10.0.1.99") == "ens5"
    ip_addr = ["ip", "-j", "-4", "addr"]
    assert interface_for("10.0.1.5", run=lambda argv: text if list(argv) == ip_addr else "") == "ens5"
    with pytest.raises(LookupError, match=r"10\.0\.9\.9"):
        interface_from_json(text, "10.0.9.9")
    assert interface_for("127.0.0.1") == "lo"  # the real `ip`


# -- sources -----------------------------------------------------------------------------------


def _instance(ec2: Any, subnet: str, **tags: str) -> tuple[str, str]:
    answer = ec2.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    instance = answer["Instances"][0]
    return str(instance["InstanceId"]), str(instance["PrivateIpAddress"])


def test_ec2_source_finds_this_stacks_running_load_balancers_only() -> None:
    import boto3
    from moto import mock_aws

    region = "eu-west-1"
    with mock_aws():
        admin = boto3.client("ec2", region_name=region)
        vpc = admin.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            admin.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{region}{z}")["Subnet"][
                "SubnetId"
            ]
            for i, z in ((1, "a"), (2, "b"))
        ]
        lb = {"project": "foobar", "stack": "prod", "role": "lb"}
        _, lb1 = _instance(admin, subnets[1], **lb)
        _, lb2 = _instance(admin, subnets[0], **lb)
        _instance(admin, subnets[0], project="foobar", stack="dev", role="lb")
        _instance(admin, subnets[0], project="foobar", stack="prod", role="web")
        stopped, _ = _instance(admin, subnets[1], **lb)
        admin.stop_instances(InstanceIds=[stopped])
        ec2 = boto3.client("ec2", region_name=region)
        ops: list[str] = []
        ec2.meta.events.register("before-call.ec2.*", lambda model, **_: ops.append(f"ec2:{model.name}"))
        found = Ec2Source("prod", region, client=ec2).addresses()
    assert found == sorted([lb1, lb2], key=ipaddress.IPv4Address)
    assert ops and set(ops) <= set(EC2_ACTIONS), ops


class _Pages:
    """A stand-in client: DescribeInstances in pages, or an error."""

    def __init__(self, pages: Sequence[Sequence[str | None]] = (), error: Exception | None = None) -> None:
        self.pages, self.error = pages, error
        self.filters: list[Any] = []

    def get_paginator(self, name: str) -> _Pages:
        assert name == "describe_instances"
        return self

    def paginate(self, **kw: Any) -> Iterator[dict[str, Any]]:
        self.filters.append(kw["Filters"])
        if self.error:
            raise self.error
        for page in self.pages:
            yield {"Reservations": [{"Instances": [{"PrivateIpAddress": a} if a else {} for a in page]}]}


def test_ec2_source_reads_every_page_and_its_errors_are_safe_to_log() -> None:
    from botocore.exceptions import ClientError

    client = _Pages([["10.0.2.7", None], ["10.0.10.1", "10.0.1.5"]])
    assert Ec2Source("prod", "eu-west-1", client=client).addresses() == ["10.0.1.5", "10.0.2.7", "10.0.10.1"]
    assert {f["Name"]: f["Values"] for f in client.filters[0]} == {
        "tag:project": ["foobar"],
        "tag:stack": ["prod"],
        "tag:role": ["lb"],
        "instance-state-name": ["pending", "running"],
    }
    denied = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "secret detail"}}, "DescribeInstances")
    with pytest.raises(SourceError, match=r"^ClientError UnauthorizedOperation$"):
        Ec2Source("prod", "eu-west-1", client=_Pages(error=denied)).addresses()


def test_file_source(tmp_path: Path) -> None:
    path = tmp_path / "lbs.json"
    FileSource.write(path, ["127.0.0.12", "127.0.0.11", "127.0.0.12"])
    assert FileSource(path).addresses() == ["127.0.0.11", "127.0.0.12"]
    for bad in ("{", '{"a": 1}', '["x"]', "[1]"):
        path.write_text(bad)
        with pytest.raises(SourceError, match="cannot read addresses"):
            FileSource(path).addresses()
    with pytest.raises(SourceError):
        FileSource(tmp_path / "missing.json").addresses()


@dataclass
class _Script:
    """A source that answers from a script: a list of addresses, or SourceError."""

    answers: list[list[str] | SourceError]
    calls: int = 0

    def addresses(self) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, SourceError):
            raise answer
        return answer


def test_a_failed_source_keeps_the_last_set_and_self_is_always_in() -> None:
    down = SourceError("ThrottlingException")
    agent = Pair(_cfg(A), _Script([down, [B], down, [A]]), [])
    assert agent.refresh() is None  # nothing known yet: the service leaves the boot's files alone
    assert agent.refresh() == [A, B]  # own address added
    assert agent.refresh() == [A, B]  # failed: the last set, not empty
    assert agent.refresh() == [A]  # the peer is really gone
    assert Pair(_cfg(A), _Script([down]), []).refresh(alone_if_unknown=True) == [A]


# -- the agent ---------------------------------------------------------------------------------


@dataclass
class _Site:
    """The agent's files and reload commands in a directory; each reload appends to a log."""

    root: Path
    iface: str
    cfg: PairConfig = field(init=False)

    def __post_init__(self) -> None:
        self.cfg = _cfg(A, self.iface, fault_file=str(self.root / "run" / "vrrp-fault"))
        self.main = _main_cfg(self.root / "haproxy.cfg", peer_name(A))

    def reload(self, name: str) -> str:
        return f"{sys.executable} -c \"open({str(self.root / 'reloads')!r}, 'a').write('{name}\\n')\""

    @property
    def reloads(self) -> list[str]:
        path = self.root / "reloads"
        return path.read_text().split() if path.exists() else []

    def agent(self, source: Any, **kw: Any) -> Pair:
        kw.setdefault("keepalived_file", self.root / "keepalived" / "keepalived.conf")
        return Pair(
            kw.pop("cfg", self.cfg),
            source,
            targets(
                kw.pop("cfg2", self.cfg),
                peers_file=self.root / "haproxy" / "peers.cfg",
                haproxy_config=kw.pop("haproxy_config", self.main),
                reload_haproxy=self.reload("haproxy"),
                reload_keepalived=self.reload("keepalived"),
                haproxy=HAPROXY,
                keepalived=KEEPALIVED,
                **kw,
            ),
        )


@needs_haproxy
@needs_keepalived
def test_the_agent_installs_and_reloads_only_on_change(iface: str, tmp_path: Path) -> None:
    site = _Site(tmp_path, iface)
    source = _Script([[A], [A], SourceError("down"), [A, B], [B, A]])
    agent = site.agent(source)
    peers, conf = tmp_path / "haproxy" / "peers.cfg", tmp_path / "keepalived" / "keepalived.conf"
    assert agent.sync() == {"haproxy peers": "installed", "keepalived": "installed"}
    assert site.reloads == ["haproxy", "keepalived"]
    assert (tmp_path / "run").is_dir()  # keepalived drops a track_file whose directory is missing
    assert peers.stat().st_mode & 0o777 == 0o644 and conf.stat().st_mode & 0o777 == 0o644
    assert peers.read_text() == render_peers(site.cfg, [A]) and conf.read_text() == render_keepalived(site.cfg, [A])
    assert agent.sync() == {"haproxy peers": "unchanged", "keepalived": "unchanged"}
    assert agent.sync() == {"haproxy peers": "unchanged", "keepalived": "unchanged"}  # source down: same set
    assert site.reloads == ["haproxy", "keepalived"]
    assert agent.sync() == {"haproxy peers": "installed", "keepalived": "installed"}
    assert site.reloads == ["haproxy", "keepalived", "haproxy", "keepalived"]
    assert f"server lb-{B} {B}:10000" in peers.read_text() and B in _block(conf.read_text(), "unicast_peer")
    assert agent.sync() == {"haproxy peers": "unchanged", "keepalived": "unchanged"}
    assert len(site.reloads) == 4
    assert sorted(p.name for p in (tmp_path / "haproxy").iterdir()) == ["peers.cfg"]  # no temp file left


@needs_haproxy
@needs_keepalived
def test_the_agent_never_installs_a_file_its_daemon_refuses(iface: str, tmp_path: Path) -> None:
    site = _Site(tmp_path, iface)
    good = site.agent(_Script([[A]]))
    good.sync()
    peers, conf = tmp_path / "haproxy" / "peers.cfg", tmp_path / "keepalived" / "keepalived.conf"
    before = (peers.read_text(), conf.read_text())
    # keepalived refuses an interface that doesn't exist; HAProxy's localpeer names another peer.
    broken = replace(site.cfg, interface="nosuch0")
    other_main = _main_cfg(tmp_path / "other.cfg", peer_name(C))
    bad = site.agent(_Script([[A, B]]), cfg=broken, cfg2=broken, haproxy_config=other_main)
    assert bad.sync() == {"haproxy peers": "refused", "keepalived": "refused"}
    assert (peers.read_text(), conf.read_text()) == before
    assert site.reloads == ["haproxy", "keepalived"]  # only the first, good round's
    assert sorted(p.name for p in (tmp_path / "haproxy").iterdir()) == ["peers.cfg"]
    # Refused again every round (it may be fixed meanwhile), never installed.
    assert bad.sync() == {"haproxy peers": "refused", "keepalived": "refused"}
    assert (peers.read_text(), conf.read_text()) == before


@needs_haproxy
@needs_keepalived
def test_the_service_is_ready_after_its_first_round_with_files_in_place(iface: str, tmp_path: Path) -> None:
    """Type=notify: HAProxy and keepalived start after READY=1, and the files are there by then, this
    load balancer alone if EC2 can't be read on a first boot; a later failure never shrinks the set."""
    site = _Site(tmp_path, iface)
    down = SourceError("EndpointConnectionError")
    agent = site.agent(_Script([down, [A, B], down]))
    peers = tmp_path / "haproxy" / "peers.cfg"
    seen: list[str] = []
    agent.run(0, rounds=1, sleep=lambda _: None, ready=lambda: seen.append(peers.read_text()))
    assert len(seen) == 1 and _lines(seen[0])[-1] == f"server lb-{A}"
    agent.run(0, rounds=2, sleep=lambda _: None, ready=lambda: seen.append("again"))
    assert f"server lb-{B} {B}:10000" in peers.read_text()  # found, then kept through the failure
    assert (tmp_path / "keepalived" / "keepalived.conf").exists()


def test_notify_systemd_sends_ready_to_its_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert notify_systemd(environ={"NOTIFY_SOCKET": str(path)})
        assert sock.recv(64) == b"READY=1"
    assert not notify_systemd(environ={})


@needs_haproxy
def test_once_at_boot_renders_self_when_the_source_fails(tmp_path: Path) -> None:
    peers = tmp_path / "peers.cfg"
    argv = [
        "--own-address", A, "--interface", "eth0", "--source", "file", "--members-file", str(tmp_path / "no.json"),
        "--peers-file", str(peers), "--no-keepalived", "--haproxy-bin", HAPROXY, "--reload-haproxy", "", "--once",
    ]  # fmt: skip
    assert main(argv) == 0
    assert _lines(peers.read_text()) == ["peers foobar", f"bind {A}:10000", f"server lb-{A}"]
    FileSource.write(tmp_path / "no.json", [B, A])
    assert main(argv) == 0
    assert f"server lb-{B} {B}:10000" in peers.read_text()
    assert not (tmp_path / "keepalived.conf").exists()
    # A file HAProxy refuses: exit 1, and the old one stays.
    FileSource.write(tmp_path / "no.json", [A])
    assert main([*argv, "--haproxy-config", str(_main_cfg(tmp_path / "other.cfg", peer_name(C)))]) == 1
    assert f"server lb-{B} {B}:10000" in peers.read_text()
    # A later --once (the service restarting) while the source fails keeps the pair it has.
    (tmp_path / "no.json").unlink()
    assert main(argv) == 0
    assert f"server lb-{B} {B}:10000" in peers.read_text()


def test_cli_needs_its_source_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--own-address", A, "--interface", "eth0", "--source", "ec2", "--once"])
    assert "--stack and --region" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--own-address", "10.0.1", "--interface", "eth0", "--source", "file", "--members-file", "x"])
    assert "PairConfig.own_address" in capsys.readouterr().err


# -- the real pair: two keepalived in network namespaces ---------------------------------------

VIP = "198.18.0.100"
NODES = {"a": "198.18.0.11", "b": "198.18.0.12"}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    """Namespaces a and b, each with eth0 on a bridge that lives in a third namespace; all removed
    afterwards, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    tag = f"fbpair{os.getpid()}"
    names = {"br": f"{tag}br", "a": f"{tag}a", "b": f"{tag}b"}
    made: list[str] = []
    try:
        for ns in names.values():
            try:
                _ip("netns", "add", ns)
            except subprocess.CalledProcessError as err:
                pytest.skip(f"ip netns add fails here: {err.stderr.decode().strip()}")
            made.append(ns)
        br = names["br"]
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        for node, address in NODES.items():
            ns = names[node]
            _ip("-n", br, "link", "add", f"v{node}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", br, "link", "set", f"v{node}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


HEALTH = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


@dataclass
class _Node:
    name: str
    ns: str
    address: str
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def cfg(self) -> PairConfig:
        return PairConfig(
            own_address=self.address,
            interface="eth0",
            health_url=f"http://{self.address}:8404/healthz",
            notify=f"/bin/sh {self.root / 'notify.sh'} {self.root / 'states'}",
            virtual_address=f"{VIP}/24",
            fault_file=str(self.root / "run" / "vrrp-fault"),
        )

    def render(self, addresses: Sequence[str]) -> None:
        (self.root / "keepalived.conf").write_text(render_keepalived(self.cfg, addresses))

    def start_health(self) -> None:
        self.procs["health"] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", HEALTH, self.address, "8404"]
        )

    def healthy(self) -> bool:
        argv = ["ip", "netns", "exec", self.ns, *self.cfg.health_command.split()]
        return subprocess.run(argv, capture_output=True, timeout=5).returncode == 0

    def start_keepalived(self) -> None:
        self.procs["keepalived"] = subprocess.Popen(
            # -n foreground, -l -D -G log details to the console only, -P VRRP only; own pid files.
            ["ip", "netns", "exec", self.ns, KEEPALIVED, "-n", "-l", "-D", "-G", "-P",
             "-f", str(self.root / "keepalived.conf"), "-p", str(self.root / "k.pid"), "-r", str(self.root / "v.pid")],
            stdout=open(self.root / "keepalived.log", "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self, what: str) -> None:
        proc = self.procs.pop(what, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def has_vip(self) -> bool:
        out = subprocess.run(["ip", "-n", self.ns, "-j", "-4", "addr", "show", "dev", "eth0"], capture_output=True)
        return any(i.get("local") == VIP for link in json.loads(out.stdout or b"[]") for i in link["addr_info"])

    @property
    def states(self) -> list[str]:
        path = self.root / "states"
        return path.read_text().split() if path.exists() else []

    def fault(self, value: str) -> None:
        tmp = self.root / "run" / "vrrp-fault.tmp"
        tmp.write_text(value + "\n")
        os.replace(tmp, self.root / "run" / "vrrp-fault")


@pytest.fixture
def nodes(netns: dict[str, str], tmp_path: Path) -> Iterator[dict[str, _Node]]:
    if not os.access(KEEPALIVED, os.X_OK) or not os.access(pair.CURL, os.X_OK):
        pytest.skip("needs keepalived and curl")
    made = {}
    for name, address in NODES.items():
        root = tmp_path / name
        (root / "run").mkdir(parents=True)
        (root / "notify.sh").write_text('#!/bin/sh\necho "$4" >> "$1"\n')  # $2.. = INSTANCE foobar STATE PRIORITY
        made[name] = _Node(name, netns[name], address, root)
    try:
        yield made
    finally:
        for node in made.values():
            node.stop("keepalived")
            node.stop("health")
        for node in made.values():
            log = node.root / "keepalived.log"
            if log.exists():
                print(f"--- keepalived {node.name}\n{log.read_text(errors='replace')[-3000:]}")


def test_two_keepalived_elect_and_fail_over(nodes: dict[str, _Node]) -> None:
    a, b = nodes["a"], nodes["b"]
    for node in (a, b):
        node.start_health()
    for node in (a, b):
        _wait(node.healthy, 5, f"{node.name}'s health server")
    # a alone (its peer not launched yet): unicast to the loopback stand-in; it becomes MASTER.
    a.render([a.address])
    a.start_keepalived()
    _wait(a.has_vip, 8, "a, alone, MASTER")
    assert a.states == ["BACKUP", "MASTER"]
    # b appears: a reloads with b as its peer and stays MASTER; b starts and stays BACKUP.
    a.render([a.address, b.address])
    b.render([a.address, b.address])
    os.kill(a.procs["keepalived"].pid, 1)  # SIGHUP: what `systemctl reload keepalived` does
    b.start_keepalived()
    deadline = time.monotonic() + 4.5  # past b's master-down timer (3 x advert + skew)
    while time.monotonic() < deadline:
        assert a.has_vip() and not b.has_vip(), "the MASTER lost the address when its peer joined"
        time.sleep(0.2)
    assert a.states == ["BACKUP", "MASTER"] and b.states == ["BACKUP"]
    # node.eip's fault file says 1 on the MASTER: FAULT, and b takes the address.
    a.fault("1")
    took = _wait(lambda: b.has_vip() and not a.has_vip(), 4, "b taking over on a's fault file")
    assert a.states[-1] == "FAULT" and b.states[-1] == "MASTER", (a.states, b.states, took)
    # Cleared: a comes back as BACKUP and doesn't take the address back (nopreempt).
    a.fault("0")
    _wait(lambda: a.states[-1] == "BACKUP", 3, "a back to BACKUP")
    assert b.has_vip() and not a.has_vip()
    # HAProxy's health stops answering on the MASTER (b): a takes the address within ~4 s.
    b.stop("health")
    took = _wait(lambda: a.has_vip() and not b.has_vip(), 4, "a taking over on b's health")
    assert b.states[-1] == "FAULT" and a.states[-1] == "MASTER", (a.states, b.states, took)
