"""The discovery agent against a real HAProxy: members in, drained, out; failures keep the set."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.discovery import (
    ADMIN_FDRAIN,
    ADMIN_FMAINT,
    Agent,
    AutoScalingSource,
    FileSource,
    Member,
    Runtime,
    Slot,
    SourceError,
    plan,
)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
BACKENDS = ("127.0.61.11", "127.0.61.12", "127.0.61.13")
FRONT = "127.0.61.1"


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.server_address[0].encode()  # type: ignore[union-attr,index]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def backends() -> Iterator[int]:
    """Three tiny HTTP servers on their own loopback addresses, one port: they answer their address."""
    port = _free_port(BACKENDS[0])
    servers = [http.server.ThreadingHTTPServer((a, port), _Named) for a in BACKENDS]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield port
    for s in servers:
        s.shutdown()


CONFIG = """
global
    stats socket {sock} mode 600 level admin
    server-state-file {state}
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    load-server-state-from-file global
frontend in
    bind {front}:{port}
    default_backend web
backend web
    balance roundrobin
    default-server init-addr none check inter 2s fall 1 rise 3
    server-template web 1-4 0.0.0.0:80 disabled
"""


class Haproxy:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sock = tmp / "admin.sock"
        self.state = tmp / "server-state"
        self.port = _free_port(FRONT)
        self.cfg = tmp / "haproxy.cfg"
        self.cfg.write_text(CONFIG.format(sock=self.sock, state=self.state, front=FRONT, port=self.port))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.sock.unlink(missing_ok=True)

    def get(self) -> str:
        with socket.create_connection((FRONT, self.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return body.decode() if b" 200 " in head.split(b"\r\n")[0] else head.split(b"\r\n")[0].decode()


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Haproxy]:
    h = Haproxy(tmp_path)
    h.start()
    yield h
    h.stop()


def _agent(h: Haproxy, members: Path) -> Agent:
    return Agent(
        FileSource(members, ("web",)), Runtime(h.sock), {"web": "web"}, cache=h.tmp / "cache.json", state_file=h.state
    )


def _write(path: Path, port: int, *members: tuple[str, str]) -> None:
    FileSource.write(path, {"web": [Member(a, port, s) for a, s in members]})  # type: ignore[arg-type]


def _answers(h: Haproxy, n: int = 12) -> set[str]:
    time.sleep(0.8)  # two health checks
    return {h.get() for _ in range(n)}


def test_members_come_in_drain_and_go(haproxy: Haproxy, backends: int, tmp_path: Path) -> None:
    members = tmp_path / "members.json"
    _write(members, backends, (BACKENDS[0], "ready"), (BACKENDS[1], "ready"))
    agent = _agent(haproxy, members)
    applied = agent.sync()
    assert f"set server web/web1 addr {BACKENDS[0]} port {backends}" in applied
    assert _answers(haproxy) == {BACKENDS[0], BACKENDS[1]}
    assert agent.sync() == []  # nothing to do: nothing done

    _write(members, backends, (BACKENDS[0], "drain"), (BACKENDS[1], "ready"), (BACKENDS[2], "ready"))
    assert set(agent.sync()) == {
        "set server web/web1 state drain",
        f"set server web/web3 addr {BACKENDS[2]} port {backends}",
        "set server web/web3 state ready",
    }
    assert _answers(haproxy) == {BACKENDS[1], BACKENDS[2]}  # a draining server gets no new request
    slots = Runtime(haproxy.sock).slots("web")
    assert slots["web1"].admin & ADMIN_FDRAIN

    _write(members, backends, (BACKENDS[1], "ready"), (BACKENDS[2], "ready"))
    assert agent.sync() == ["set server web/web1 state maint"]
    assert Runtime(haproxy.sock).slots("web")["web1"].admin & ADMIN_FMAINT
    # The freed slot is taken by the next new member.
    _write(members, backends, (BACKENDS[0], "ready"), (BACKENDS[1], "ready"), (BACKENDS[2], "ready"))
    assert agent.sync() == ["set server web/web1 state ready"]  # it kept its address: no churn
    assert _answers(haproxy) == set(BACKENDS)
    assert "web1" in haproxy.state.read_text()  # the server state is saved for a reload


def test_a_failing_source_or_an_empty_tier_keeps_the_set(haproxy: Haproxy, backends: int, tmp_path: Path) -> None:
    members = tmp_path / "members.json"
    _write(members, backends, (BACKENDS[0], "ready"))
    agent = _agent(haproxy, members)
    agent.sync()
    members.write_text("{not json")
    assert agent.sync() == []
    _write(members, backends)  # a tier with no member at all: a broken source, not a real tier
    assert agent.sync() == []
    assert _answers(haproxy, 4) == {BACKENDS[0]}
    # A new agent (after a restart) with a still-failing source starts from its cache.
    members.unlink()
    haproxy.stop()
    haproxy.start()
    fresh = _agent(haproxy, members)
    assert f"set server web/web1 addr {BACKENDS[0]} port {backends}" in fresh.sync()
    assert _answers(haproxy, 4) == {BACKENDS[0]}


def test_after_a_haproxy_restart_the_whole_set_is_applied_again(
    haproxy: Haproxy, backends: int, tmp_path: Path
) -> None:
    members = tmp_path / "members.json"
    _write(members, backends, (BACKENDS[0], "ready"), (BACKENDS[1], "ready"))
    agent = _agent(haproxy, members)
    agent.sync()
    before = agent.process
    haproxy.stop()
    agent.run(0, rounds=1)  # HAProxy is down: the round fails quietly and forgets the process
    assert agent.process is None
    haproxy.start()
    started = time.monotonic()
    assert agent.watch() is True  # between two rounds: noticed without asking the source
    assert agent.process != before and agent.watch() is False
    # Back from the state file 'ready' but without addresses: serving at once, not after 3 checks (6 s).
    assert _answers(haproxy, 4) == {BACKENDS[0], BACKENDS[1]}
    assert time.monotonic() - started < 3


def test_plan_keeps_members_in_their_slots() -> None:
    slots = {
        "web1": Slot("web1", "10.0.0.5", 443, 0),
        "web2": Slot("web2", "0.0.0.0", 443, ADMIN_FMAINT),
        "web3": Slot("web3", "10.0.0.6", 443, 0),
    }
    members = [Member("10.0.0.6"), Member("10.0.0.7")]
    assert plan("web", members, slots) == [
        "set server web/web2 addr 10.0.0.7 port 443",
        "set server web/web2 state ready",
        "set server web/web1 state maint",
    ]


def test_plan_reports_a_full_backend(caplog: pytest.LogCaptureFixture) -> None:
    slots = {"web1": Slot("web1", "10.0.0.5", 443, 0)}
    assert plan("web", [Member("10.0.0.5"), Member("10.0.0.9")], slots) == []
    assert "no free slot for 10.0.0.9:443" in caplog.text


class _Pages:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return self.pages


class _Fake:
    """The two calls the source makes, answering like the AWS APIs (lifecycle states moto can't make)."""

    def __init__(self, groups: list[dict[str, Any]], ips: dict[str, str], fail: bool = False) -> None:
        self.groups, self.ips, self.fail = groups, ips, fail

    def get_paginator(self, name: str) -> _Pages:
        if self.fail:
            raise ConnectionError("endpoint unreachable")
        if name == "describe_auto_scaling_groups":
            return _Pages([{"AutoScalingGroups": self.groups}])
        instances = [{"InstanceId": i, "PrivateIpAddress": a} for i, a in self.ips.items()]
        return _Pages([{"Reservations": [{"Instances": instances}]}])


def _group(role: str, *instances: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "Tags": [{"Key": "role", "Value": role}, {"Key": "stack", "Value": "dev"}],
        "Instances": [{"InstanceId": i, "LifecycleState": s, "HealthStatus": h} for i, s, h in instances],
    }


def test_group_lifecycle_states_map_to_haproxy_states() -> None:
    groups = [
        _group(
            "web",
            ("i-1", "InService", "Healthy"),
            ("i-2", "Pending:Wait", "Healthy"),  # still booting: its launch hook isn't complete
            ("i-3", "Terminating:Wait", "Healthy"),
            ("i-4", "InService", "Unhealthy"),
        ),
        _group("app", ("i-5", "InService", "Healthy")),
        _group("db", ("i-6", "InService", "Healthy")),
    ]
    ips = {"i-1": "10.0.1.1", "i-2": "10.0.1.2", "i-3": "10.0.1.3", "i-4": "10.0.1.4", "i-5": "10.0.2.5"}
    fake = _Fake(groups, ips)
    source = AutoScalingSource(stack="dev", region="eu-west-1", autoscaling=fake, ec2=fake)
    assert source.members() == {
        "web": [Member("10.0.1.1"), Member("10.0.1.3", state="drain"), Member("10.0.1.4", state="drain")],
        "app": [Member("10.0.2.5")],
    }


def test_api_errors_become_source_errors_without_details() -> None:
    fake = _Fake([], {}, fail=True)
    source = AutoScalingSource(stack="dev", region="eu-west-1", autoscaling=fake, ec2=fake)
    with pytest.raises(SourceError, match=r"^ConnectionError$"):
        source.members()


def test_the_source_reads_real_groups_by_their_tags() -> None:
    """Against moto: the groups of this stack, by tag, and their members' private addresses."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        asg = boto3.client("autoscaling", region_name="eu-west-1")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"]
        lt = ec2.create_launch_template(
            LaunchTemplateName="t", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
        )["LaunchTemplate"]["LaunchTemplateId"]
        for stack, role, size in (("dev", "web", 2), ("dev", "app", 1), ("prod", "web", 1)):
            asg.create_auto_scaling_group(
                AutoScalingGroupName=f"foobar-{stack}-{role}-x",
                LaunchTemplate={"LaunchTemplateId": lt, "Version": "1"},
                MinSize=size,
                MaxSize=4,
                DesiredCapacity=size,
                VPCZoneIdentifier=subnet["SubnetId"],
                Tags=[
                    {"Key": k, "Value": v, "PropagateAtLaunch": False}
                    for k, v in (("project", "foobar"), ("stack", stack), ("role", role))
                ],
            )
        found = AutoScalingSource(stack="dev", region="eu-west-1").members()
    assert [len(found["web"]), len(found["app"])] == [2, 1]
    assert all(m.address.startswith("10.9.1.") and m.state == "ready" for ms in found.values() for m in ms)
