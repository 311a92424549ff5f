"""The site's firewalls: one security group per tier, and every rule of every group.

``RULES`` is the whole rule set as data. The Firewalls component declares exactly these rules; the
tests compute reachability from them; ``ops verify`` compares the live account with them. To change
who may talk to whom, change this table and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

Group = Literal["lb", "web", "app", "db"]
GROUPS: tuple[Group, ...] = ("lb", "web", "app", "db")
ANYWHERE = "0.0.0.0/0"

# Ports in one place, shared with the server configs.
HTTP, HTTPS, MYSQL, LB_STATS = 80, 443, 3306, 8404
LB_PEERS = 10000
"""HAProxy ``peers`` between the load balancers (stick tables over TLS); node.pair.PEERS_PORT."""
VRRP = "112"
"""keepalived's VRRP is IP protocol 112: no ports (AWS allows every port of a protocol other than tcp/udp/icmp)."""
PORTLESS = -1
"""``Rule.port`` of a rule for a protocol without ports (VRRP); AWS reports no FromPort for it."""
PROTOCOL_NAMES = {VRRP: "vrrp"}

GROUP_DESCRIPTIONS: dict[Group, str] = {
    "lb": "foobar load balancer (HAProxy): HTTP/HTTPS from the internet",
    "web": "foobar static web tier (nginx): HTTPS from the load balancer only",
    "app": "foobar application tier (nginx + app): HTTPS from the load balancer only",
    "db": "foobar database (RDS MySQL): MySQL from the application tier only",
}


@dataclass(frozen=True)
class Rule:
    """One security-group rule. ``peer`` is another group's name, or a CIDR for the internet."""

    group: Group
    direction: Literal["ingress", "egress"]
    port: int
    peer: str
    description: str
    protocol: str = "tcp"

    @property
    def peer_is_group(self) -> bool:
        return self.peer in GROUPS

    @property
    def key(self) -> str:
        """Stable resource name: a rename of the description never replaces the rule."""
        way = "in" if self.direction == "ingress" else "out"
        peer = self.peer if self.peer_is_group else "internet"
        what = PROTOCOL_NAMES[self.protocol] if self.has_no_ports else f"{self.protocol}{self.port}"
        return f"{self.group}-{way}-{what}-{peer}"

    @property
    def has_no_ports(self) -> bool:
        return self.protocol not in ("tcp", "udp")

    @property
    def flow(self) -> int | str:
        """What ``ALLOWED_FLOWS`` calls the traffic: the port, or the protocol's name."""
        return PROTOCOL_NAMES[self.protocol] if self.has_no_ports else self.port


RULES: tuple[Rule, ...] = (
    # Load balancer: the only group with ingress from a CIDR, and only on 80/443.
    Rule("lb", "ingress", HTTP, ANYWHERE, "HTTP from the internet (redirected to HTTPS)"),
    Rule("lb", "ingress", HTTPS, ANYWHERE, "HTTPS from the internet"),
    Rule("lb", "ingress", LB_STATS, "lb", "HAProxy stats and Prometheus exporter, from load balancers only"),
    Rule("lb", "egress", HTTPS, "web", "Re-encrypted requests and health checks to the web tier"),
    Rule("lb", "egress", HTTPS, "app", "Re-encrypted requests and health checks to the app tier"),
    Rule("lb", "egress", LB_STATS, "lb", "HAProxy stats between load balancers"),
    # The pair: keepalived's VRRP adverts and HAProxy's shared stick tables, between load balancers only.
    Rule("lb", "ingress", PORTLESS, "lb", "VRRP adverts (keepalived) from the other load balancer", protocol=VRRP),
    Rule("lb", "egress", PORTLESS, "lb", "VRRP adverts (keepalived) to the other load balancer", protocol=VRRP),
    Rule("lb", "ingress", LB_PEERS, "lb", "HAProxy peers (shared rate-limit tables, TLS) from load balancers"),
    Rule("lb", "egress", LB_PEERS, "lb", "HAProxy peers (shared rate-limit tables, TLS) to load balancers"),
    Rule("lb", "egress", HTTPS, ANYWHERE, "AWS APIs (SSM, ACM export, CloudWatch) and package mirrors over HTTPS"),
    Rule("lb", "egress", HTTP, ANYWHERE, "Ubuntu package mirrors over HTTP (packages are signed)"),
    # Web tier.
    Rule("web", "ingress", HTTPS, "lb", "HTTPS from the load balancer"),
    Rule("web", "egress", HTTPS, ANYWHERE, "AWS APIs (SSM, CloudWatch) and package mirrors over HTTPS"),
    Rule("web", "egress", HTTP, ANYWHERE, "Ubuntu package mirrors over HTTP (packages are signed)"),
    # App tier.
    Rule("app", "ingress", HTTPS, "lb", "HTTPS from the load balancer"),
    Rule("app", "egress", MYSQL, "db", "MySQL over TLS to the database"),
    Rule("app", "egress", HTTPS, ANYWHERE, "AWS APIs (SSM, Secrets Manager, CloudWatch) and package mirrors"),
    Rule("app", "egress", HTTP, ANYWHERE, "Ubuntu package mirrors over HTTP (packages are signed)"),
    # Database: reachable from the app tier only, no egress at all.
    Rule("db", "ingress", MYSQL, "app", "MySQL from the application tier"),
)

# Who may open a connection to whom, on which port. The tests require the registered security
# groups to allow exactly this, nothing more and nothing less.
ALLOWED_FLOWS: frozenset[tuple[str, str, int | str]] = frozenset(
    {
        ("internet", "lb", HTTP),
        ("internet", "lb", HTTPS),
        ("lb", "lb", LB_STATS),
        ("lb", "lb", LB_PEERS),
        ("lb", "lb", "vrrp"),
        ("lb", "web", HTTPS),
        ("lb", "app", HTTPS),
        ("app", "db", MYSQL),
    }
)


def rules_for(group: Group) -> list[Rule]:
    return [rule for rule in RULES if rule.group == group]


def format_rules() -> str:
    """The rule table as text, for the README and for people."""
    lines = [f"{'group':5} {'dir':7} {'port':>5} {'peer':10} description"]
    for r in RULES:
        lines.append(f"{r.group:5} {r.direction:7} {r.flow:>5} {r.peer:10} {r.description}")
    return "\n".join(lines)


@dataclass
class FirewallsArgs:
    vpc_id: pulumi.Input[str]
    providers: Mapping[str, pulumi.ProviderResource]
    """One AWS provider per role tag; a group is tagged with the tier it guards."""


class Firewalls(pulumi.ComponentResource):
    """The four security groups and their rules, declared from ``RULES``."""

    group_ids: dict[Group, pulumi.Output[str]]

    def __init__(self, name: str, args: FirewallsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:firewalls:Firewalls", name, None, opts)
        groups: dict[Group, aws.ec2.SecurityGroup] = {}
        for group in GROUPS:
            groups[group] = aws.ec2.SecurityGroup(
                f"{name}-{group}",
                vpc_id=args.vpc_id,
                description=GROUP_DESCRIPTIONS[group],
                # No inline rules: every rule is its own resource below, so none is hidden.
                tags={"Name": f"foobar-{group}"},
                opts=pulumi.ResourceOptions(parent=self, provider=args.providers[group]),
            )
        for rule in RULES:
            resource = (
                aws.vpc.SecurityGroupIngressRule if rule.direction == "ingress" else aws.vpc.SecurityGroupEgressRule
            )
            peer: dict[str, Any] = (
                {"referenced_security_group_id": groups[rule.peer].id}  # type: ignore[index]
                if rule.peer_is_group
                else {"cidr_ipv4": rule.peer}
            )
            resource(
                f"{name}-{rule.key}",
                security_group_id=groups[rule.group].id,
                ip_protocol=rule.protocol,
                description=rule.description,
                opts=pulumi.ResourceOptions(parent=self, provider=args.providers[rule.group]),
                **peer,
                # A protocol without ports (VRRP) gets none: AWS would ignore them, and report -1.
                from_port=None if rule.has_no_ports else rule.port,
                to_port=None if rule.has_no_ports else rule.port,
            )
        self.group_ids = {group: sg.id for group, sg in groups.items()}
        self.register_outputs({f"{group}SecurityGroupId": sg.id for group, sg in groups.items()})
