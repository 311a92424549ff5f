"""Subnets per tier, their routes, NAT by strategy, flow logs, the stripped default group."""

from __future__ import annotations

import ipaddress
import json

import pytest

from components import plan
from tests.unit.harness import Run, run


def subnets_by_tier(r: Run) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for s in r.of_type("aws:ec2/subnet:Subnet"):
        out.setdefault(str(s.inputs["tags"]["tier"]), []).append(s.inputs)
    return out


def route_tables_of(r: Run) -> dict[str, list[dict[str, object]]]:
    """subnet resource id -> routes of its table."""
    tables: dict[str, list[dict[str, object]]] = {t.id: [] for t in r.of_type("aws:ec2/routeTable:RouteTable")}
    for route in r.of_type("aws:ec2/route:Route"):
        tables[route.inputs["routeTableId"]].append(route.inputs)
    subnet_ids = {s.name: s.id for s in r.of_type("aws:ec2/subnet:Subnet")}
    by_subnet: dict[str, list[dict[str, object]]] = {}
    for assoc in r.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        by_subnet[assoc.inputs["subnetId"]] = tables[assoc.inputs["routeTableId"]]
    assert set(by_subnet) == set(subnet_ids.values()), "every subnet has exactly one route table"
    return by_subnet


def test_plan_is_stable_and_disjoint() -> None:
    subs = plan.subnets("10.20.0.0/16", ["a", "b", "c"])
    nets = [ipaddress.ip_network(s.cidr) for s in subs]
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert plan.subnet_cidr("10.20.0.0/16", "web", 0) == "10.20.64.0/20"
    # Adding an AZ never moves an existing subnet.
    two = {(s.tier, s.index): s.cidr for s in plan.subnets("10.20.0.0/16", ["a", "b"])}
    three = {(s.tier, s.index): s.cidr for s in subs}
    assert all(three[k] == v for k, v in two.items())


def test_subnets_per_tier_and_az(stack_run: Run) -> None:
    s = stack_run.namespace["settings"]
    tiers = subnets_by_tier(stack_run)
    assert sorted(tiers) == ["app", "db", "public", "web"]
    for tier, subs in tiers.items():
        assert sorted(str(x["availabilityZone"]) for x in subs) == sorted(s.azs), tier
        assert all(x["mapPublicIpOnLaunch"] is False for x in subs)
        for x in subs:
            assert ipaddress.IPv4Network(str(x["cidrBlock"])).subnet_of(ipaddress.IPv4Network(s.vpc_cidr))


def test_routes_per_tier(stack_run: Run) -> None:
    routes = route_tables_of(stack_run)
    igw = stack_run.of_type("aws:ec2/internetGateway:InternetGateway")[0].id
    nats = {n.id for n in stack_run.of_type("aws:ec2/natGateway:NatGateway")}
    for sub in stack_run.of_type("aws:ec2/subnet:Subnet"):
        tier = sub.inputs["tags"]["tier"]
        table = routes[sub.id]
        if tier == "public":
            assert [(r["destinationCidrBlock"], r.get("gatewayId")) for r in table] == [("0.0.0.0/0", igw)]
        elif tier == "db":
            assert table == [], "database subnets have no route out of the VPC"
        else:
            assert len(table) == 1 and table[0]["natGatewayId"] in nats


@pytest.mark.parametrize(("strategy", "count"), [("none", 0), ("single", 1), ("per-az", 3)])
def test_nat_strategy(strategy: str, count: int) -> None:
    r = run("dev", natStrategy=strategy, azCount=3)
    nats = r.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == count
    public = {s.id for s in r.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "public"}
    assert all(n.inputs["subnetId"] in public for n in nats)
    private_routes = [x for x in r.of_type("aws:ec2/route:Route") if "natGatewayId" in x.inputs]
    assert len(private_routes) == (3 if count else 0)
    if strategy == "per-az":  # each AZ's table uses its own NAT
        assert len({x.inputs["natGatewayId"] for x in private_routes}) == 3


def test_subnet_names_are_index_based(runs: dict[str, Run]) -> None:
    names = sorted(s.name for s in runs["prod"].of_type("aws:ec2/subnet:Subnet"))
    assert names == sorted(f"foobar-network-{t}-{i}" for t in ("public", "web", "app", "db") for i in range(3))


def test_flow_logs_with_retention(stack_run: Run) -> None:
    s = stack_run.namespace["settings"]
    (flow,) = stack_run.of_type("aws:ec2/flowLog:FlowLog")
    (vpc,) = stack_run.of_type("aws:ec2/vpc:Vpc")
    assert flow.inputs["vpcId"] == vpc.id and flow.inputs["trafficType"] == "ALL"
    group = next(
        g
        for g in stack_run.of_type("aws:cloudwatch/logGroup:LogGroup")
        if g.outputs["arn"] == flow.inputs["logDestination"]
    )
    assert group.inputs["retentionInDays"] == s.log_retention_days


def test_default_security_group_has_no_rules(stack_run: Run) -> None:
    (default,) = stack_run.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs.get("ingress", []) == [] and default.inputs.get("egress", []) == []


def test_nat_gateways_have_no_fixed_address(runs: dict[str, Run]) -> None:
    """A replaced NAT gateway is made before the old one goes: a fixed address would be in use."""
    r = runs["prod"]
    nats = r.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == r.namespace["settings"].az_count
    assert all("privateIp" not in n.inputs for n in nats)


def test_flow_log_role_can_deliver_before_the_flow_log_exists(stack_run: Run) -> None:
    """The VPC User Guide's flow-log role needs logs:DescribeLogGroups too, and the flow log must
    not be created before its role's policy (it would be created, then fail to deliver)."""
    (flow,) = stack_run.of_type("aws:ec2/flowLog:FlowLog")
    (policy,) = [p for p in stack_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.endswith("flow-logs-policy")]
    doc = json.loads(policy.inputs["policy"])
    actions = {
        a for st in doc["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:DescribeLogGroups"} <= actions
    assert "logs:CreateLogGroup" not in actions
    assert policy.urn in flow.dependencies
