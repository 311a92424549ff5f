"""The Elastic IP follows keepalived's MASTER: the decision table, then notify and reconcile against moto."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from node import eip
from node.eip import (
    EC2_ACTIONS,
    MASTER,
    STATE_TAG,
    Decision,
    Holder,
    Reconciler,
    Settings,
    claim,
    decide,
    hold_off,
    imds_instance_id,
    main,
    notify,
    read_state,
    write_atomic,
)
from tests.clock import Clock

REGION = "eu-west-1"
STACK = "prod"
ME = "i-0000000000000me00"
PEER = "i-00000000000peer00"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the network: a connection anywhere but loopback (or a Unix socket) fails."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple):
            host = str(address[0])
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"test tried to connect to {address}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _no_imds() -> str:
    raise AssertionError("the instance metadata service must not be asked")


def _main(argv: list[str], **kwargs: Any) -> int:
    """main() on a clock of its own, so a claim that keeps failing never makes the test wait."""
    clock = Clock(1000.0)
    return main(argv, **{"clock": clock, "sleep": clock.sleep, **kwargs})


# -- decide(): the table -----------------------------------------------------------------------


def _lb(instance_id: str = PEER, vrrp: str | None = None, *, state: str = "running", **tags: str) -> Holder:
    base = {"project": "foobar", "stack": STACK, "role": "lb"}
    if vrrp is not None:
        base[STATE_TAG] = vrrp
    return Holder(instance_id, state, {**base, **tags})


CASES: list[tuple[str, str, Holder | None, bool, str]] = [
    # (name, own state, holder, single, action)
    ("master-mine", "MASTER", _lb(ME, "MASTER"), False, "hold"),
    ("master-unassociated", "MASTER", None, False, "claim"),
    ("master-eni-of-no-instance", "MASTER", Holder(None), False, "claim"),
    ("master-holder-stopped", "MASTER", _lb(vrrp="MASTER", state="stopped"), False, "claim"),
    ("master-holder-stopping", "MASTER", _lb(vrrp="MASTER", state="stopping"), False, "claim"),
    ("master-holder-shutting-down", "MASTER", _lb(vrrp="MASTER", state="shutting-down"), False, "claim"),
    ("master-holder-gone", "MASTER", Holder(PEER, "missing"), False, "claim"),
    ("master-holder-web", "MASTER", _lb(vrrp="MASTER", role="web"), False, "claim"),
    ("master-holder-other-stack", "MASTER", _lb(vrrp="MASTER", stack="dev"), False, "claim"),
    ("master-holder-other-project", "MASTER", _lb(vrrp="MASTER", project="other"), False, "claim"),
    ("master-holder-untagged", "MASTER", Holder(PEER, "running", {}), False, "claim"),
    ("master-peer-backup", "MASTER", _lb(vrrp="BACKUP"), False, "claim"),
    ("master-peer-fault", "MASTER", _lb(vrrp="FAULT"), False, "claim"),
    ("master-peer-no-state-tag", "MASTER", _lb(), False, "claim"),
    ("split-brain", "MASTER", _lb(vrrp="MASTER"), False, "step-down"),
    ("split-brain-lowercase-tag", "MASTER", _lb(vrrp="master"), False, "step-down"),
    ("backup-unassociated", "BACKUP", None, False, "hold"),
    ("backup-holder-stopped", "BACKUP", _lb(vrrp="MASTER", state="stopped"), False, "hold"),
    ("backup-peer-backup", "BACKUP", _lb(vrrp="BACKUP"), False, "hold"),
    ("backup-mine", "BACKUP", _lb(ME, "BACKUP"), False, "hold"),
    ("fault-unassociated", "FAULT", None, False, "hold"),
    ("unknown-unassociated", "UNKNOWN", None, False, "hold"),
    ("stop-unassociated", "STOP", None, False, "hold"),
    ("single-unassociated", "UNKNOWN", None, True, "claim"),
    ("single-ignores-state-file", "BACKUP", None, True, "claim"),
    ("single-mine", "UNKNOWN", _lb(ME), True, "hold"),
    ("single-holder-web", "UNKNOWN", _lb(vrrp="MASTER", role="web"), True, "claim"),
    ("single-peer-backup", "UNKNOWN", _lb(vrrp="BACKUP"), True, "claim"),
    ("single-peer-master-holds-it", "UNKNOWN", _lb(vrrp="MASTER"), True, "hold"),
]


@pytest.mark.parametrize(("state", "holder", "single", "action"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(state: str, holder: Holder | None, single: bool, action: str) -> None:
    decision = decide(state=state, me=ME, holder=holder, stack=STACK, single=single)
    assert isinstance(decision, Decision)
    assert decision.action == action
    assert decision.reason


def test_not_master_never_claims_and_single_never_steps_down() -> None:
    holders: list[Holder | None] = [None, Holder(None), *(c[2] for c in CASES)]
    for holder in holders:
        for state in ("BACKUP", "FAULT", "UNKNOWN", "STOP", "DELETED"):
            assert decide(state=state, me=ME, holder=holder, stack=STACK).action == "hold"
        for state in ("MASTER", "BACKUP", "UNKNOWN"):
            assert decide(state=state, me=ME, holder=holder, stack=STACK, single=True).action != "step-down"


def test_hold_off_doubles_up_to_its_cap() -> None:
    assert [hold_off(n, 30, 600) for n in range(7)] == [30, 60, 120, 240, 480, 600, 600]
    assert hold_off(3, 30, 10) == 30  # a cap below the first hold-off never shortens it


# -- a site in moto ----------------------------------------------------------------------------


@dataclass
class Site:
    admin: Any
    """The test's own client: setting up and changing things behind the module's back."""
    ec2: Any
    """The module's client: every operation it performs is recorded."""
    subnets: list[str]
    lb1: str
    lb2: str
    allocation_id: str
    tmp: Path
    ops: list[str] = field(default_factory=list)

    def settings(self, lb: str, **overrides: Any) -> Settings:
        d = self.tmp / lb
        values: dict[str, Any] = {
            "allocation_id": self.allocation_id,
            "stack": STACK,
            "region": REGION,
            "instance_id": lb,
            "state_file": d / "vrrp-state",
            "fault_file": d / "vrrp-fault",
        }
        return Settings(**{**values, **overrides})

    def holder(self) -> str:
        return str(self.admin.describe_addresses(AllocationIds=[self.allocation_id])["Addresses"][0]["InstanceId"])

    def tag(self, instance_id: str) -> str | None:
        instance = self.admin.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}.get(STATE_TAG)

    def set_tag(self, instance_id: str, value: str) -> None:
        self.admin.create_tags(Resources=[instance_id], Tags=[{"Key": STATE_TAG, "Value": value}])

    def move_to(self, instance_id: str) -> None:
        self.admin.associate_address(AllocationId=self.allocation_id, InstanceId=instance_id, AllowReassociation=True)

    def disassociate(self) -> None:
        address = self.admin.describe_addresses(AllocationIds=[self.allocation_id])["Addresses"][0]
        self.admin.disassociate_address(AssociationId=address["AssociationId"])

    def state_file(self, lb: str, state: str) -> None:
        write_atomic(self.settings(lb).state_file, f"{state}\n")

    def fault(self, lb: str) -> str:
        return self.settings(lb).fault_file.read_text()

    def notify(self, lb: str, state: str) -> int:
        """keepalived's notify on ``lb``, on a clock of its own (a claim that fails never really waits)."""
        clock = Clock(1000.0)
        return notify(self.settings(lb), state, ec2=self.ec2, instance_id=_no_imds, clock=clock, sleep=clock.sleep)


def _instance(admin: Any, subnet: str, **tags: str) -> str:
    answer = admin.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    return str(answer["Instances"][0]["InstanceId"])


@dataclass
class Aws:
    session: Any
    admin: Any
    subnets: list[str]


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    """One moto for the whole file (starting one costs a quarter of a second): every test makes its
    own instances and address, so none sees another's."""
    with mock_aws():
        session = boto3.session.Session(
            region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        admin = session.client("ec2")
        vpc = admin.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            admin.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"][
                "SubnetId"
            ]
            for i, z in ((1, "a"), (2, "b"))
        ]
        yield Aws(session, admin, subnets)


@pytest.fixture
def site(aws: Aws, tmp_path: Path) -> Iterator[Site]:
    """Two load balancers of stack prod in two zones, and an Elastic IP associated with nothing."""
    admin, subnets = aws.admin, aws.subnets
    lb = {"project": "foobar", "stack": STACK, "role": "lb"}
    lb1 = _instance(admin, subnets[0], **lb, Name="foobar-lb-0")
    lb2 = _instance(admin, subnets[1], **lb, Name="foobar-lb-1")
    allocation_id = admin.allocate_address(Domain="vpc")["AllocationId"]
    ec2 = aws.session.client("ec2")  # a client of its own: the hooks a test adds stay in the test
    s = Site(admin, ec2, subnets, lb1, lb2, allocation_id, tmp_path)
    ec2.meta.events.register("before-call.ec2.*", lambda model, **_: s.ops.append(f"ec2:{model.name}"))
    yield s
    # Whatever a scenario did, the module called nothing the IAM policy doesn't allow.
    assert set(s.ops) <= set(EC2_ACTIONS), s.ops


def _fail(client: Any, operation: str, errors: Callable[[], Exception | None]) -> list[int]:
    """Make ``operation`` raise what ``errors()`` returns (None: let the call through); returns the
    list of attempt numbers seen."""
    attempts: list[int] = []

    def handler(**_: Any) -> None:
        attempts.append(len(attempts) + 1)
        error = errors()
        if error is not None:
            raise error

    client.meta.events.register(f"before-call.ec2.{operation}", handler)
    return attempts


def _throttled(operation: str = "AssociateAddress") -> ClientError:
    return ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}, operation)


# -- notify ------------------------------------------------------------------------------------


def test_notify_master_claims_records_and_publishes(site: Site) -> None:
    assert site.notify(site.lb1, "MASTER") == 0
    assert site.holder() == site.lb1
    assert site.settings(site.lb1).state_file.read_text() == "MASTER\n"
    assert site.tag(site.lb1) == "MASTER"
    assert site.ops == ["ec2:AssociateAddress", "ec2:CreateTags"]
    assert not [p for p in site.settings(site.lb1).state_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_failover_moves_the_address_to_the_new_master(site: Site) -> None:
    site.notify(site.lb1, "MASTER")
    assert site.holder() == site.lb1
    site.notify(site.lb1, "BACKUP")
    assert site.holder() == site.lb1  # a BACKUP lets go of nothing: the new MASTER takes it
    site.notify(site.lb2, "MASTER")
    assert site.holder() == site.lb2
    assert (site.tag(site.lb1), site.tag(site.lb2)) == ("BACKUP", "MASTER")
    assert read_state(site.settings(site.lb1).state_file) == "BACKUP"
    assert read_state(site.settings(site.lb2).state_file) == "MASTER"


def test_notify_cli_takes_keepalived_arguments_and_never_asks_imds_for_a_given_id(site: Site) -> None:
    common = ["--allocation-id", site.allocation_id, "--stack", STACK, "--region", REGION]
    files = ["--state-file", str(site.tmp / "state"), "--fault-file", str(site.tmp / "fault")]
    argv = [*common, *files, "--instance-id", site.lb2, "notify", "INSTANCE", "foobar", "MASTER", "100"]
    assert _main(argv, ec2=site.ec2, instance_id=_no_imds) == 0
    assert site.holder() == site.lb2
    assert (site.tmp / "state").read_text() == "MASTER\n"
    # Just a STATE works too; keepalived's older three words as well.
    assert _main([*common, *files, "--instance-id", site.lb2, "notify", "backup"], ec2=site.ec2) == 0
    assert (site.tmp / "state").read_text() == "BACKUP\n"
    assert (
        _main([*common, *files, "--instance-id", site.lb2, "notify", "INSTANCE", "foobar", "FAULT"], ec2=site.ec2) == 0
    )
    assert (site.tmp / "state").read_text() == "FAULT\n"
    assert site.tag(site.lb2) == "FAULT"


def test_without_an_instance_id_it_comes_from_imds(site: Site) -> None:
    asked: list[bool] = []

    def imds() -> str:
        asked.append(True)
        return site.lb1

    clock = Clock(1000.0)
    notify(
        site.settings(site.lb1, instance_id=""),
        "MASTER",
        ec2=site.ec2,
        instance_id=imds,
        clock=clock,
        sleep=clock.sleep,
    )
    assert asked == [True]
    assert site.holder() == site.lb1


def test_claim_retries_until_it_succeeds(site: Site) -> None:
    errors: list[Exception] = [
        _throttled(),
        EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"),
    ]
    attempts = _fail(site.ec2, "AssociateAddress", lambda: errors.pop(0) if errors else None)
    clock = Clock(1000.0)
    assert notify(site.settings(site.lb1), "MASTER", ec2=site.ec2, clock=clock, sleep=clock.sleep) == 0
    assert attempts == [1, 2, 3]
    assert site.holder() == site.lb1
    assert clock.sleeps == [0.5, 1.0]  # backoff, and no sleep once it holds the address


def test_claim_stops_once_the_state_file_no_longer_says_master(site: Site) -> None:
    settings = site.settings(site.lb1)

    def keepalived_moves_on() -> Exception:
        if len(attempts) == 2:
            write_atomic(settings.state_file, "BACKUP\n")  # a later notify, while this one retries
        return _throttled()

    attempts = _fail(site.ec2, "AssociateAddress", keepalived_moves_on)
    clock = Clock(1000.0)
    assert notify(settings, "MASTER", ec2=site.ec2, clock=clock, sleep=clock.sleep) == 0
    assert attempts == [1, 2]
    assert site.holder() == ""
    assert site.tag(site.lb1) == "BACKUP"  # it publishes what the file says now, not its own MASTER


def test_claim_gives_up_at_the_deadline_and_still_exits_0(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    attempts = _fail(site.ec2, "AssociateAddress", _throttled)
    clock = Clock(1000.0)
    start = clock.now
    with caplog.at_level(logging.INFO, logger="foobar.eip"):
        code = notify(
            site.settings(site.lb1, claim_deadline=10), "MASTER", ec2=site.ec2, clock=clock, sleep=clock.sleep
        )
    assert code == 0
    assert clock.now - start == pytest.approx(10)  # 0.5 + 1 + 2 + 4 + the 2.5 left
    assert len(attempts) == 6
    assert max(clock.sleeps) <= 5
    assert site.holder() == ""
    assert any(r.levelno == logging.ERROR and "gave up" in r.getMessage() for r in caplog.records)
    assert sum("attempt" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records) == 6


def test_claim_deadline_zero_is_one_attempt(site: Site) -> None:
    attempts = _fail(site.ec2, "AssociateAddress", _throttled)
    clock = Clock(1000.0)
    settings = site.settings(site.lb1, claim_deadline=0)
    write_atomic(settings.state_file, "MASTER\n")
    assert not claim(site.ec2, settings, still_master=lambda: True, clock=clock, sleep=clock.sleep)
    assert attempts == [1]
    assert clock.sleeps == []


def test_notify_publishes_best_effort(site: Site) -> None:
    attempts = _fail(site.ec2, "CreateTags", lambda: _throttled("CreateTags"))
    clock = Clock(1000.0)
    assert notify(site.settings(site.lb1), "MASTER", ec2=site.ec2, clock=clock, sleep=clock.sleep) == 0
    assert site.holder() == site.lb1  # the claim doesn't wait for the tag
    assert attempts == [1, 2, 3]


# -- reconcile ---------------------------------------------------------------------------------


def _reconciler(site: Site, lb: str, clock: Clock | None = None, **overrides: Any) -> Reconciler:
    r = Reconciler(site.settings(lb, **overrides), site.ec2, clock=clock or Clock(1000.0))
    r.prepare()
    return r


def test_the_master_reclaims_an_address_disassociated_behind_its_back(site: Site) -> None:
    site.notify(site.lb1, "MASTER")
    site.notify(site.lb2, "BACKUP")
    site.disassociate()
    assert _reconciler(site, site.lb2).round().action == "hold"  # the BACKUP leaves it
    assert site.holder() == ""
    decision = _reconciler(site, site.lb1).round()
    assert decision.action == "claim"
    assert "nothing" in decision.reason
    assert site.holder() == site.lb1


def test_the_master_reclaims_an_address_moved_to_the_backup(site: Site) -> None:
    site.notify(site.lb1, "MASTER")
    site.notify(site.lb2, "BACKUP")
    site.move_to(site.lb2)
    assert _reconciler(site, site.lb2).round().action == "hold"
    assert site.holder() == site.lb2
    assert _reconciler(site, site.lb1).round().action == "claim"
    assert site.holder() == site.lb1
    assert _reconciler(site, site.lb1).round() == Decision("hold", "MASTER and the address is mine")


@pytest.mark.parametrize("where", ["web-server", "lb-of-stack-dev", "stopped-peer"])
def test_the_master_claims_from_what_is_not_a_running_peer(site: Site, where: str) -> None:
    site.notify(site.lb1, "MASTER")
    if where == "stopped-peer":
        site.set_tag(site.lb2, MASTER)
        site.move_to(site.lb2)
        site.admin.stop_instances(InstanceIds=[site.lb2])
    else:
        tags = {"web-server": {"stack": STACK, "role": "web"}, "lb-of-stack-dev": {"stack": "dev", "role": "lb"}}
        other = _instance(site.admin, site.subnets[1], project="foobar", **tags[where], **{STATE_TAG: MASTER})
        site.move_to(other)
    assert _reconciler(site, site.lb1).round().action == "claim"
    assert site.holder() == site.lb1


def test_split_brain_the_holder_wins_and_the_other_steps_down_then_returns(site: Site) -> None:
    for lb in (site.lb1, site.lb2):
        site.state_file(lb, "MASTER")
        site.set_tag(lb, "MASTER")
    site.move_to(site.lb1)
    clock = Clock(1000.0)
    holder, other = _reconciler(site, site.lb1, clock, step_down_s=2), _reconciler(site, site.lb2, clock, step_down_s=2)
    assert site.fault(site.lb2) == "0\n"  # created at start: keepalived wants it to exist

    assert other.round().action == "step-down"
    assert site.fault(site.lb2) == "1\n"
    assert holder.round().action == "hold"
    assert site.fault(site.lb1) == "0\n"
    assert site.holder() == site.lb1

    clock.now += 1
    assert other.round().action == "step-down"  # keepalived hasn't left MASTER yet: no second step-down
    assert site.fault(site.lb2) == "1\n"
    site.notify(site.lb2, "FAULT")  # keepalived saw the file: FAULT
    assert site.tag(site.lb2) == "FAULT"

    clock.now += 1.5
    assert other.round().action == "hold"
    assert site.fault(site.lb2) == "0\n"  # the hold-off is over: keepalived comes back (as BACKUP)
    assert site.holder() == site.lb1


def test_a_lasting_split_brain_doubles_the_hold_off(site: Site) -> None:
    for lb in (site.lb1, site.lb2):
        site.state_file(lb, "MASTER")
        site.set_tag(lb, "MASTER")
    site.move_to(site.lb1)
    clock = Clock(1000.0)
    other = _reconciler(site, site.lb2, clock, step_down_s=2, step_down_max_s=5)
    assert other.round().action == "step-down"
    assert other.fault_until == clock.now + 2
    clock.now += 2
    other.round()  # lifted, then the split brain is still there: down again, twice as long
    assert site.fault(site.lb2) == "1\n"
    assert other.fault_until == clock.now + 4
    clock.now += 4
    other.round()
    assert other.fault_until == clock.now + 5  # the cap


def test_a_backup_never_claims(site: Site) -> None:
    site.state_file(site.lb2, "BACKUP")
    assert _reconciler(site, site.lb2).round().action == "hold"
    assert _reconciler(site, site.lb1).round().action == "hold"  # no state file yet: UNKNOWN
    assert site.holder() == ""
    assert site.ops.count("ec2:AssociateAddress") == 0


def test_single_claims_at_once_and_publishes_master(site: Site) -> None:
    settings = site.settings(site.lb1)
    argv = ["--allocation-id", site.allocation_id, "--stack", STACK, "--region", REGION, "--instance-id", site.lb1]
    argv += ["--single", "--state-file", str(settings.state_file), "--fault-file", str(settings.fault_file)]
    assert _main([*argv, "reconcile", "--once"], ec2=site.ec2, instance_id=_no_imds) == 0
    assert site.holder() == site.lb1
    assert site.tag(site.lb1) == "MASTER"
    assert settings.fault_file.read_text() == "0\n"
    assert not settings.state_file.exists()


def test_the_reconcile_repairs_its_own_state_tag(site: Site) -> None:
    site.notify(site.lb1, "MASTER")
    site.set_tag(site.lb1, "BACKUP")  # a notify whose tag call failed, or a race
    _reconciler(site, site.lb1).round()
    assert site.tag(site.lb1) == "MASTER"


def test_a_failed_round_is_logged_and_the_next_one_repairs(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    site.state_file(site.lb1, "MASTER")
    errors: list[Exception] = [EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com")]
    _fail(site.ec2, "DescribeAddresses", lambda: errors.pop(0) if errors else None)
    clock = Clock(1000.0)
    with caplog.at_level(logging.WARNING, logger="foobar.eip"):
        Reconciler(site.settings(site.lb1, interval=5), site.ec2, clock=clock).run(rounds=2, sleep=clock.sleep)
    assert any("round failed" in r.getMessage() for r in caplog.records)
    assert clock.sleeps == [5]
    assert site.holder() == site.lb1


def test_a_leftover_step_down_is_lifted_and_stopping_lifts_one(site: Site) -> None:
    settings = site.settings(site.lb2, step_down_s=3)
    write_atomic(settings.fault_file, "1\n")  # the service restarted while stepped down
    clock = Clock(1000.0)
    r = Reconciler(settings, site.ec2, clock=clock)
    r.prepare()
    assert settings.fault_file.read_text() == "1\n"
    clock.now += 3
    r.round()
    assert settings.fault_file.read_text() == "0\n"

    write_atomic(settings.fault_file, "1\n")

    def stop(_: float) -> None:
        raise SystemExit(0)  # what SIGTERM becomes in main()

    with pytest.raises(SystemExit):
        Reconciler(settings, site.ec2, clock=clock).run(sleep=stop)
    assert settings.fault_file.read_text() == "0\n"


# -- settings and the calls it makes -----------------------------------------------------------


def test_a_missing_setting_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--stack", STACK, "--region", REGION], "allocation-id"),
        (["--allocation-id", "eipalloc-1", "--region", REGION], "stack"),
        (["--allocation-id", "eipalloc-1", "--stack", STACK], "region"),
    ]
    for argv, name in cases:
        with pytest.raises(SystemExit) as exit_:
            _main([*argv, "--state-file", str(tmp_path / "s"), "notify", "MASTER"], instance_id=_no_imds, env={})
        assert exit_.value.code == 2
        assert f"missing setting {name}" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # a usage error records nothing


@pytest.mark.parametrize(
    ("config", "words", "message"),
    [
        ({"allocation-id": "eipalloc-1", "stack": STACK, "regoin": REGION}, ["MASTER"], "unknown setting 'regoin'"),
        ({"allocation-id": "eipalloc-1", "stack": STACK, "interval": "5"}, ["MASTER"], "interval must be a float"),
        ({"allocation-id": "eipalloc-1", "stack": STACK}, ["INSTANCE", "foobar"], "notify takes STATE"),
    ],
)
def test_bad_settings_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict[str, Any], words: list[str], message: str
) -> None:
    path = tmp_path / "eip.json"
    path.write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_:
        _main(["--config", str(path), "--region", REGION, "notify", *words], instance_id=_no_imds)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_config_file_with_options_overriding_it(site: Site) -> None:
    config = site.tmp / "eip.json"
    config.write_text(
        json.dumps(
            {
                "allocation-id": site.allocation_id,
                "stack": STACK,
                "region": REGION,
                "state_file": str(site.tmp / "from-file"),
                "fault-file": str(site.tmp / "fault"),
                "single": True,
            }
        )
    )
    argv = ["--config", str(config), "--instance-id", site.lb2, "--state-file", str(site.tmp / "from-cli")]
    assert _main([*argv, "notify", "INSTANCE", "foobar", "BACKUP", "100"], ec2=site.ec2) == 0
    assert (site.tmp / "from-cli").read_text() == "BACKUP\n"
    assert not (site.tmp / "from-file").exists()
    # --no-single overrides the file's "single": a BACKUP doesn't claim.
    assert _main(["--config", str(config), "--instance-id", site.lb2, "reconcile", "--once"], ec2=site.ec2) == 0
    assert site.holder() == site.lb2  # from the file: single
    site.disassociate()
    site.state_file(site.lb1, "BACKUP")
    argv = ["--config", str(config), "--instance-id", site.lb1, "--no-single"]
    argv += ["--state-file", str(site.settings(site.lb1).state_file)]
    assert _main([*argv, "reconcile", "--once"], ec2=site.ec2) == 0
    assert site.holder() == ""


def test_imds_v2_token_then_instance_id() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    class Answer:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def read(self) -> bytes:
            return self.body

        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *_: object) -> None:
            pass

    class Opener:
        def open(self, request: Any, timeout: float) -> Answer:
            seen.append((request.get_method(), request.full_url, dict(request.header_items())))
            return Answer(b"token-1" if request.full_url.endswith("/api/token") else b"i-0123456789abcdef0\n")

    assert imds_instance_id(opener=Opener()) == "i-0123456789abcdef0"
    (put, url1, headers1), (get, url2, headers2) = seen
    assert (put, url1) == ("PUT", "http://169.254.169.254/latest/api/token")
    assert int({k.lower(): v for k, v in headers1.items()}["x-aws-ec2-metadata-token-ttl-seconds"]) > 0
    assert (get, url2) == ("GET", "http://169.254.169.254/latest/meta-data/instance-id")
    assert {k.lower(): v for k, v in headers2.items()}["x-aws-ec2-metadata-token"] == "token-1"


def test_the_module_calls_exactly_the_ec2_actions_it_declares(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through main() and the module's own client (no injection): every operation botocore performs
    is recorded and compared with EC2_ACTIONS, the list the IAM policy is built from."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # moto set it aside; main() makes its own
    boto3.setup_default_session(region_name=REGION)
    ops: list[str] = []
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.ec2.*", lambda model, **_: ops.append(f"ec2:{model.name}"))
    admin = aws.admin
    lbs = [_instance(admin, aws.subnets[i], project="foobar", stack=STACK, role="lb") for i in range(2)]
    allocation_id = admin.allocate_address(Domain="vpc")["AllocationId"]

    def run(lb: str, *words: str) -> None:
        common = ["--allocation-id", allocation_id, "--stack", STACK, "--region", REGION, "--instance-id", lb]
        files = ["--state-file", str(tmp_path / lb / "state"), "--fault-file", str(tmp_path / lb / "fault")]
        assert _main([*common, *files, *words], instance_id=_no_imds) == 0

    run(lbs[0], "notify", "INSTANCE", "foobar", "MASTER", "100")
    run(lbs[1], "notify", "INSTANCE", "foobar", "BACKUP", "100")
    run(lbs[1], "reconcile", "--once")
    run(lbs[1], "notify", "MASTER")  # split brain: lbs[1] holds it, lbs[0] steps down
    run(lbs[0], "reconcile", "--once", "--step-down-s", "1")
    assert (tmp_path / lbs[0] / "fault").read_text() == "1\n"
    address = admin.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]
    assert address["InstanceId"] == lbs[1]
    admin.disassociate_address(AssociationId=address["AssociationId"])
    run(lbs[1], "reconcile", "--once")  # claims it back
    assert admin.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]["InstanceId"] == lbs[1]
    assert ops  # the hook saw the module's own client
    assert set(ops) == set(EC2_ACTIONS)
    assert all(a.startswith("ec2:") for a in eip.EC2_ACTIONS)
