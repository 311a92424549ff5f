"""Every firewall rule, and who can reach whom computed from the registered security groups."""

from __future__ import annotations

import ipaddress

import pytest

from components.firewalls import (
    ALLOWED_FLOWS,
    ANYWHERE,
    GROUPS,
    LB_PEERS,
    PORTLESS,
    PROTOCOL_NAMES,
    RULES,
    VRRP,
    format_rules,
)
from tests.unit.harness import Run

RULE_TYPES = {
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "ingress",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "egress",
}


def registered_rules(r: Run) -> list[dict[str, object]]:
    rules = []
    for typ, direction in RULE_TYPES.items():
        for reg in r.of_type(typ):
            rules.append({**reg.inputs, "direction": direction, "name": reg.name})
    return rules


def group_names(r: Run) -> dict[str, str]:
    """security group id -> tier name, from the registered groups."""
    return {g.id: g.name.rsplit("-", 1)[1] for g in r.of_type("aws:ec2/securityGroup:SecurityGroup")}


def reachability(r: Run) -> set[tuple[str, str, int | str]]:
    """(source, destination, port) pairs where the destination admits the source AND the source may send.

    A source is a group name or "internet"; a CIDR rule admits the internet when it covers a public
    address, and admits a group only when it covers the whole VPC (a group's addresses are not fixed).
    What the internet may reach, every server may reach too; that grants nothing, so such a rule is
    recorded once, as the internet's flow.
    """
    names = group_names(r)
    rules = registered_rules(r)
    vpc = ipaddress.IPv4Network(r.of_type("aws:ec2/vpc:Vpc")[0].inputs["cidrBlock"])

    def allows(rule: dict[str, object], peer: str) -> bool:
        if rule.get("referencedSecurityGroupId"):
            return names[str(rule["referencedSecurityGroupId"])] == peer
        cidr = ipaddress.IPv4Network(str(rule["cidrIpv4"]))
        if peer == "internet":
            return not cidr.is_private or cidr.prefixlen == 0
        return vpc.subnet_of(cidr)

    def ports(rule: dict[str, object]) -> list[int | str]:
        if rule["ipProtocol"] == "-1":
            return [*range(0, 65536), *PROTOCOL_NAMES.values()]
        if rule["ipProtocol"] in PROTOCOL_NAMES:  # a protocol without ports: AWS allows all of it
            return [PROTOCOL_NAMES[str(rule["ipProtocol"])]]
        return list(range(int(rule["fromPort"]), int(rule["toPort"]) + 1))  # type: ignore[call-overload]

    flows: set[tuple[str, str, int | str]] = set()
    for rule in rules:
        if rule["direction"] != "ingress":
            continue
        dest = names[str(rule["securityGroupId"])]
        public = not rule.get("referencedSecurityGroupId") and allows(rule, "internet")
        for source in ["internet"] if public else GROUPS:
            if not allows(rule, source):
                continue
            for port in ports(rule):
                egress_ok = source == "internet" or any(
                    e["direction"] == "egress"
                    and names[str(e["securityGroupId"])] == source
                    and allows(e, dest)
                    and port in ports(e)
                    for e in rules
                )
                if egress_ok:
                    flows.add((source, dest, port))
    return flows


def test_reachability_is_exactly_the_allowed_flows(stack_run: Run) -> None:
    assert reachability(stack_run) == set(ALLOWED_FLOWS)


def test_registered_rules_are_exactly_the_table(stack_run: Run) -> None:
    names = group_names(stack_run)
    got = set()
    for rule in registered_rules(stack_run):
        peer = (
            names[str(rule["referencedSecurityGroupId"])] if rule.get("referencedSecurityGroupId") else rule["cidrIpv4"]
        )
        assert rule.get("fromPort") == rule.get("toPort")
        port = rule.get("fromPort", PORTLESS)
        got.add((names[str(rule["securityGroupId"])], rule["direction"], port, peer, rule["description"]))
    assert got == {(r.group, r.direction, r.port, r.peer, r.description) for r in RULES}


def test_only_the_lb_takes_cidr_ingress_and_only_on_80_443(stack_run: Run) -> None:
    names = group_names(stack_run)
    for rule in registered_rules(stack_run):
        if rule["direction"] == "ingress" and not rule.get("referencedSecurityGroupId"):
            assert names[str(rule["securityGroupId"])] == "lb" and rule["fromPort"] in (80, 443), rule


def test_no_port_22_3389_and_no_all_traffic(stack_run: Run) -> None:
    for rule in registered_rules(stack_run):
        if rule["ipProtocol"] == VRRP:
            continue  # the next test: VRRP only between load balancers
        assert rule["ipProtocol"] == "tcp"
        assert not int(rule["fromPort"]) <= 22 <= int(rule["toPort"])  # type: ignore[call-overload]
        assert not int(rule["fromPort"]) <= 3389 <= int(rule["toPort"])  # type: ignore[call-overload]


def test_vrrp_only_between_load_balancers_and_without_ports(stack_run: Run) -> None:
    """keepalived's adverts (IP protocol 112) pass between members of the LB group and nowhere else;
    a port on such a rule means nothing to AWS and would show as drift on every refresh."""
    names = group_names(stack_run)
    vrrp = [rule for rule in registered_rules(stack_run) if rule["ipProtocol"] == VRRP]
    assert {(rule["direction"], names[str(rule["securityGroupId"])]) for rule in vrrp} == {
        ("ingress", "lb"),
        ("egress", "lb"),
    }
    for rule in vrrp:
        assert names[str(rule["referencedSecurityGroupId"])] == "lb" and "cidrIpv4" not in rule
        assert "fromPort" not in rule and "toPort" not in rule
    assert {(src, dst) for src, dst, port in reachability(stack_run) if port in ("vrrp", LB_PEERS)} == {("lb", "lb")}


def test_every_group_and_rule_has_a_description(stack_run: Run) -> None:
    for group in stack_run.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert len(str(group.inputs.get("description", ""))) > 10
        assert "ingress" not in group.inputs or group.inputs["ingress"] == []  # no inline rules
    for rule in registered_rules(stack_run):
        assert len(str(rule.get("description", ""))) > 10


def test_database_is_reachable_only_from_app(stack_run: Run) -> None:
    assert {(src, port) for src, dst, port in reachability(stack_run) if dst == "db"} == {("app", 3306)}


def test_reachability_catches_a_world_open_database(runs: dict[str, Run]) -> None:
    """The checker itself: an extra rule must show up as an extra flow."""
    r = runs["dev"]
    db = next(g.id for g in r.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-db"))
    extra = {"securityGroupId": db, "ipProtocol": "tcp", "fromPort": 3306, "toPort": 3306, "cidrIpv4": ANYWHERE}
    from tests.unit.harness import Registration

    r.resources.append(Registration(next(iter(RULE_TYPES)), "extra", extra, extra, "", "", "extra-id"))
    try:
        assert ("internet", "db", 3306) in reachability(r)
    finally:
        r.resources.pop()


def test_rule_keys_are_unique_and_table_prints() -> None:
    assert len({r.key for r in RULES}) == len(RULES)
    text = format_rules()
    assert all(r.description in text for r in RULES)


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_is_used(stack_run: Run, group: str) -> None:
    sg = next(g.id for g in stack_run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith(f"-{group}"))
    users = [
        x
        for x in stack_run.of_type("aws:ec2/instance:Instance") + stack_run.of_type("aws:rds/instance:Instance")
        if sg in x.inputs.get("vpcSecurityGroupIds", [])
    ] + [
        t
        for t in stack_run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
        if any(sg in nic.get("securityGroups", []) for nic in t.inputs.get("networkInterfaces", []))
    ]
    assert users, f"security group {group} is attached to nothing"
