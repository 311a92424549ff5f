"""The edge: one load balancer or a pair in two zones, the site's one Elastic IP, and what the load
balancers may do with it (move it between themselves, nothing else)."""

from __future__ import annotations

import pytest

from components.edge import VRRP_STATE_TAG, LoadBalancers, LoadBalancersArgs, address_statements
from components.groups import discovery_statement
from components.servers import RoleAccess
from node import discovery, eip, pair
from tests.unit.harness import Run, run
from tests.unit.test_servers import _list, instances, policies_of, user_data

LB_ADDRESS = "-lb-address"


def site_address(r: Run):  # type: ignore[no-untyped-def]
    (address,) = [e for e in r.of_type("aws:ec2/eip:Eip") if e.name.endswith(LB_ADDRESS)]
    return address


@pytest.mark.parametrize(("stack", "count"), [("dev", 1), ("prod", 2), ("pr-7", 1)])
def test_load_balancers_one_per_zone(runs: dict[str, Run], stack: str, count: int) -> None:
    r = runs[stack]
    lbs = instances(r, "lb")
    assert len(lbs) == count == r.namespace["settings"].lb_count
    zone_of = {s.id: s.inputs["availabilityZone"] for s in r.of_type("aws:ec2/subnet:Subnet")}
    tier_of = {s.id: s.inputs["tags"]["tier"] for s in r.of_type("aws:ec2/subnet:Subnet")}
    assert {tier_of[lb.inputs["subnetId"]] for lb in lbs} == {"public"}
    assert len({zone_of[lb.inputs["subnetId"]] for lb in lbs}) == count, "a pair spans two zones"


def test_a_pair_on_dev_too() -> None:
    r = run("dev", lbCount=2)
    assert len(instances(r, "lb")) == 2
    assert '"single":false' in user_data(r)["lb"].replace(" ", "")


def test_the_site_address_is_allocated_and_never_associated_by_pulumi(stack_run: Run) -> None:
    """The MASTER (or the single LB) associates it: an association here would move it back on every up."""
    address = site_address(stack_run)
    assert address.inputs["domain"] == "vpc"
    assert "instance" not in address.inputs and "networkInterface" not in address.inputs
    assert not stack_run.of_type("aws:ec2/eipAssociation:EipAssociation")
    outputs = stack_run.namespace["site"].outputs
    assert outputs["lbPublicIp"] is stack_run.namespace["site"].lb_public_ip


def test_the_load_balancers_boot_with_the_address_they_claim(stack_run: Run) -> None:
    address = site_address(stack_run)
    text = user_data(stack_run)["lb"]
    assert address.outputs["allocationId"] in text
    single = stack_run.namespace["settings"].lb_count == 1
    assert f'"single":{str(single).lower()}' in text.replace(" ", "")
    assert ("keepalived" in text) is not single


def _statements(r: Run) -> list[dict]:
    return [st for doc in policies_of(r, "lb") for st in doc["Statement"] if st["Effect"] == "Allow"]


def test_the_address_moves_only_onto_the_load_balancers(stack_run: Run) -> None:
    address = site_address(stack_run)
    lbs = {lb.id for lb in instances(stack_run, "lb")}
    (move,) = [st for st in _statements(stack_run) if "ec2:AssociateAddress" in _list(st["Action"])]
    resources = _list(move["Resource"])
    (allocation,) = [x for x in resources if ":elastic-ip/" in x]
    assert allocation.endswith(f":elastic-ip/{address.outputs['allocationId']}")
    assert {x.rsplit("/", 1)[1] for x in resources if ":instance/" in x} == lbs
    assert all("*" not in x for x in resources)
    (tags,) = [st for st in _statements(stack_run) if "ec2:CreateTags" in _list(st["Action"])]
    assert {x.rsplit("/", 1)[1] for x in _list(tags["Resource"])} == lbs
    assert tags["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": [VRRP_STATE_TAG]}}
    assert VRRP_STATE_TAG == eip.STATE_TAG


def test_the_load_balancers_may_make_every_call_their_agents_make(stack_run: Run) -> None:
    """node.eip, node.pair and node.discovery each list the calls they make; IAM allows those."""
    allowed = {a for st in _statements(stack_run) for a in _list(st["Action"])}
    wanted = {*eip.EC2_ACTIONS, *pair.EC2_ACTIONS, *_list(discovery_statement()["Action"])}
    assert wanted <= allowed, sorted(wanted - allowed)
    assert discovery.__name__ == "node.discovery"


@pytest.mark.parametrize("role", ["web", "app"])
def test_no_other_role_may_move_or_tag(stack_run: Run, role: str) -> None:
    actions = {a for doc in policies_of(stack_run, role) for st in doc["Statement"] for a in _list(st["Action"])}
    assert not actions & {"ec2:AssociateAddress", "ec2:CreateTags", "ec2:DisassociateAddress"}


def test_address_statements_name_one_allocation_and_the_given_instances() -> None:
    statements = address_statements(
        partition="aws", region="eu-west-1", account="123456789012", allocation_id="eipalloc-1", instance_ids=["i-a"]
    )
    assert statements[0]["Resource"] == [
        "arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-1",
        "arn:aws:ec2:eu-west-1:123456789012:instance/i-a",
    ]


@pytest.mark.parametrize(("count", "subnets", "message"), [(3, 3, "1 or 2"), (2, 1, "need as many public subnets")])
def test_bad_counts_are_refused_by_name(count: int, subnets: int, message: str) -> None:
    args = LoadBalancersArgs(
        access=RoleAccess("lb", "/foobar/dev/lb", "aws", "eu-west-1", "123456789012"),
        count=count,
        instance_type="t3.micro",
        subnet_ids=[f"subnet-{i}" for i in range(subnets)],
        security_group_id="sg-1",
        user_data=lambda _: "#cloud-config\n",
        root_volume_gib=8,
        provider=None,  # type: ignore[arg-type]
    )
    with pytest.raises(ValueError, match=rf"LoadBalancersArgs\.count: .*{message}"):
        LoadBalancers("lb", args)
