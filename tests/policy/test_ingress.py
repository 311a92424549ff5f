"""CIDR ingress (DESIGN 3: "the only CIDR-based ingress is the LB's 80/443 from anywhere") in every
spelling pulumi-aws has for a rule, and group-referenced ingress to the load balancer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policy.adapter import Resource, analyze, crafted

SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
POLICY = "sg-world-ingress-lb-web-only"


def ingress(role: str = "lb", name: str = "bad", **props: Any) -> Resource:
    """A standalone ingress rule on a group of ``role``; by default the LB's HTTPS from anywhere."""
    base = {"description": "d", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}
    return Resource(INGRESS, name, {**base, **props}, role=role)


def legacy(role: str = "lb", **props: Any) -> Resource:
    base = {"type": "ingress", "description": "d", "protocol": "tcp", "fromPort": 443, "toPort": 443}
    return Resource(SG_RULE, "bad", {**base, **props}, role=role)


def inline(role: str = "lb", **rule: Any) -> Resource:
    base = {"description": "d", "protocol": "tcp", "fromPort": 443, "toPort": 443}
    return Resource(SG, "bad", {"description": "g", "ingress": [{**base, **rule}]}, role=role)


VIOLATIONS: dict[str, list[Resource]] = {
    # The two misses the review confirmed.
    "one-host-to-lb-stats": [ingress(cidrIpv4="198.51.100.7/32", fromPort=8404, toPort=8404)],
    "two-halves-of-the-internet": [
        ingress(name="bad", cidrIpv4="0.0.0.0/1", fromPort=8080, toPort=8080),
        ingress(name="bad2", cidrIpv4="128.0.0.0/1", fromPort=8080, toPort=8080),
    ],
    # The web port, but not from anywhere: a narrow CIDR is still a CIDR peer.
    "narrow-cidr-on-https": [ingress(cidrIpv4="198.51.100.0/24")],
    "narrow-ipv6-on-http": [ingress(cidrIpv4=None, cidrIpv6="2001:db8::/32", fromPort=80, toPort=80)],
    "prefix-list": [ingress(cidrIpv4=None, prefixListId="pl-0123456789abcdef0")],
    "port-range-over-443": [ingress(fromPort=443, toPort=8443)],
    "udp-443": [ingress(ipProtocol="udp")],
    "all-protocols": [ingress(ipProtocol="-1", fromPort=None, toPort=None)],
    "private-cidr-on-app": [ingress(role="app", cidrIpv4="10.0.0.0/8")],
    "legacy-rule-one-host": [legacy(cidrBlocks=["198.51.100.7/32"], fromPort=8404, toPort=8404)],
    "legacy-rule-ipv6-halves": [legacy(ipv6CidrBlocks=["::/1", "8000::/1"], fromPort=8404, toPort=8404)],
    "legacy-rule-prefix-list": [legacy(prefixListIds=["pl-0123456789abcdef0"])],
    "inline-halves": [inline(cidrBlocks=["0.0.0.0/1", "128.0.0.0/1"], fromPort=8404, toPort=8404)],
    "inline-prefix-list": [inline(prefixListIds=["pl-0123456789abcdef0"])],
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_cidr_ingress_beyond_the_public_listener_is_reported(case: str) -> None:
    resources = VIOLATIONS[case]
    findings = analyze(crafted(resources), only=POLICY)
    assert {f.message.split("'")[1] for f in findings} == {r.name for r in resources}, [f.message for f in findings]
    for finding in findings:
        assert "ingress from a CIDR or prefix list" in finding.message and "Fix:" in finding.message


def test_messages_say_what_is_wrong() -> None:
    (port,) = analyze(crafted([ingress(fromPort=8404, toPort=8404)]), only=POLICY)
    assert "only TCP 80 and 443" in port.message and "port 80 or 443" in port.message
    (narrow,) = analyze(crafted([ingress(cidrIpv4="198.51.100.7/32")]), only=POLICY)
    assert "198.51.100.7/32 is neither 0.0.0.0/0 nor ::/0" in narrow.message
    assert "referenced_security_group_id" in narrow.message
    (tier,) = analyze(crafted([ingress(role="web")]), only=POLICY)
    assert "role 'web'" in tier.message and "load balancer's security group" in tier.message
    (plist,) = analyze(crafted([ingress(cidrIpv4=None, prefixListId="pl-1")]), only=POLICY)
    assert "prefix list" in plist.message


@pytest.mark.parametrize(
    "resource",
    [
        ingress(),
        ingress(fromPort=80, toPort=80),
        ingress(cidrIpv4=None, cidrIpv6="::/0"),
        ingress(ipProtocol="6"),  # protocol by number
        legacy(cidrBlocks=["0.0.0.0/0"], ipv6CidrBlocks=["::/0"], fromPort=80, toPort=80),
        inline(cidrBlocks=["0.0.0.0/0"]),
        # Group peers are not CIDR ingress: LB to LB on the stats port is the program's own rule.
        ingress(cidrIpv4=None, referencedSecurityGroupId="sg-lb", fromPort=8404, toPort=8404),
        legacy(sourceSecurityGroupId="sg-lb", fromPort=8404, toPort=8404),
        legacy(role="web", type="egress", cidrBlocks=["0.0.0.0/0"]),
    ],
    ids=lambda r: f"{r.type.rsplit(':', 1)[-1]}-{sorted(k for k in r.props if 'idr' in k or 'Group' in k)}",
)
def test_the_public_listener_and_group_peers_pass(resource: Resource) -> None:
    assert analyze(crafted([resource]), only=POLICY) == []


def _lb_ingress_from(peer_role: str) -> list[Resource]:
    return [
        Resource(SG, "lb-group", {"description": "lb"}, role="lb"),
        Resource(SG, "peer-group", {"description": "peer"}, role=peer_role),
        Resource(
            INGRESS,
            "bad",
            {"description": "d", "ipProtocol": "tcp", "fromPort": 8404, "toPort": 8404},
            role="lb",
            deps={"securityGroupId": ["lb-group"], "referencedSecurityGroupId": ["peer-group"]},
        ),
    ]


def test_lb_ingress_from_another_tier_is_reported() -> None:
    texts = [f.message for f in analyze(crafted(_lb_ingress_from("web")), only="sg-tiers-chained")]
    assert texts == [
        "SecurityGroupIngressRule 'bad': ingress to the lb tier from the 'web' group. "
        "Fix: take the peer from the lb security group (referenced_security_group_id)."
    ]


def test_lb_ingress_from_load_balancers_and_the_internet_passes() -> None:
    """lb -> lb on the stats port is the program's rule; CIDR ingress to the lb is the other policy's."""
    world = Resource(
        INGRESS,
        "world",
        {"description": "d", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"},
        role="lb",
        deps={"securityGroupId": ["lb-group"]},
    )
    assert analyze(crafted([*_lb_ingress_from("lb"), world]), only="sg-tiers-chained") == []


def test_lb_server_with_a_tier_group_is_reported() -> None:
    server = Resource(
        "aws:ec2/instance:Instance",
        "bad",
        {"vpcSecurityGroupIds": ["sg-lb", "sg-app"]},
        role="lb",
        deps={"vpcSecurityGroupIds": ["lb-group", "app-group"]},
    )
    groups = [
        Resource(SG, "lb-group", {"description": "lb"}, role="lb"),
        Resource(SG, "app-group", {"description": "app"}, role="app"),
    ]
    (finding,) = analyze(crafted([server, *groups]), only="sg-tiers-chained")
    assert "a lb server carries the 'app' group" in finding.message


def test_lb_ingress_from_a_group_outside_the_stack_is_reported() -> None:
    lb_group = Resource(SG, "lb-group", {"description": "lb"}, role="lb")
    foreign = Resource(
        INGRESS,
        "bad",
        {"description": "d", "ipProtocol": "tcp", "fromPort": 8404, "toPort": 8404,
         "referencedSecurityGroupId": "sg-0123456789abcdef0"},
        role="lb",
        deps={"securityGroupId": ["lb-group"]},
    )  # fmt: skip
    (finding,) = analyze(crafted([lb_group, foreign]), only="sg-tiers-chained")
    assert "ingress to the lb tier from sg-0123456789abcdef0" in finding.message
