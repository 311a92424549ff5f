"""Security groups and their rules, in all four spellings pulumi-aws has for them: descriptions, world
ingress, admin ports, all-protocol egress, and the VPC's default group."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from .support import LB_ROLE, Res, as_list, get, is_unknown, message

SECURITY_GROUP: Final = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP: Final = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG_RULE: Final = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE: Final = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE: Final = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
RULE_TYPES: Final = frozenset({SG_RULE, INGRESS_RULE, EGRESS_RULE})
GROUP_TYPES: Final = frozenset({SECURITY_GROUP, DEFAULT_SECURITY_GROUP})

WORLD: Final = frozenset({"0.0.0.0/0", "::/0"})
WORLD_PORTS: Final = frozenset({80, 443})
ADMIN_PORTS: Final = (22, 3389)
# Descriptions the providers fill in when none is given: as good as none.
PLACEHOLDER_DESCRIPTIONS: Final = frozenset({"managed by pulumi", "managed by terraform"})
_PROTOCOLS: Final = {"-1": "all", "all": "all", "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


@dataclass(frozen=True)
class RuleView:
    """One rule, whichever resource declared it. Ports/protocol may be ``UNKNOWN``."""

    where: str
    direction: str
    protocol: Any
    from_port: Any
    to_port: Any
    cidrs: tuple[Any, ...]
    """IPv4 and IPv6 CIDR sources."""
    description: Any
    prefix_lists: tuple[Any, ...] = ()
    """Managed prefix list sources: CIDRs too, just kept elsewhere."""

    def covers(self, port: int) -> Any:
        """Does the rule open ``port`` (TCP or UDP)? ``None`` when that can't be known yet."""
        if is_unknown(self.protocol):
            return None
        if self.protocol == "all":
            return True
        if self.protocol not in ("tcp", "udp"):
            return False
        if is_unknown(self.from_port) or is_unknown(self.to_port) or self.from_port is None:
            return None
        high = self.to_port if self.to_port is not None else self.from_port
        return int(self.from_port) <= port <= int(high)

    @property
    def world(self) -> bool:
        return any(not is_unknown(c) and c in WORLD for c in self.cidrs)


def _protocol(value: Any) -> Any:
    if is_unknown(value) or value is None:
        return value
    text = str(value).lower()
    if text.endswith(".0"):  # numbers arrive as floats: -1.0, 6.0
        text = text[:-2]
    return _PROTOCOLS.get(text, text)


def _cidrs(*values: Any) -> tuple[Any, ...]:
    out: list[Any] = []
    for value in values:
        items = as_list(value)
        out.extend(i for i in (items if isinstance(items, list) else [items]) if is_unknown(i) or i)
    return tuple(out)


def rules_of(res: Res) -> list[RuleView]:
    """Every rule ``res`` declares: a standalone rule is one, a group may carry inline ones."""
    p = res.props
    if res.type in (INGRESS_RULE, EGRESS_RULE):
        direction = "ingress" if res.type == INGRESS_RULE else "egress"
        return [
            RuleView(
                "", direction, _protocol(p.get("ipProtocol")), p.get("fromPort"), p.get("toPort"),
                _cidrs(p.get("cidrIpv4"), p.get("cidrIpv6")), p.get("description"), _cidrs(p.get("prefixListId")),
            )
        ]  # fmt: skip
    if res.type == SG_RULE:
        return [
            RuleView(
                "", p.get("type") or "", _protocol(p.get("protocol")), p.get("fromPort"), p.get("toPort"),
                _cidrs(p.get("cidrBlocks"), p.get("ipv6CidrBlocks")), p.get("description"),
                _cidrs(p.get("prefixListIds")),
            )
        ]  # fmt: skip
    views: list[RuleView] = []
    for direction in ("ingress", "egress"):
        inline = as_list(p.get(direction))
        if is_unknown(inline):
            continue
        for i, rule in enumerate(inline):  # type: ignore[arg-type]
            if is_unknown(rule):
                continue
            views.append(
                RuleView(
                    f"{direction}[{i}] ", direction, _protocol(get(rule, "protocol")), get(rule, "fromPort"),
                    get(rule, "toPort"), _cidrs(get(rule, "cidrBlocks"), get(rule, "ipv6CidrBlocks")),
                    get(rule, "description"), _cidrs(get(rule, "prefixListIds")),
                )
            )  # fmt: skip
    return views


def _missing(description: Any) -> bool:
    if is_unknown(description):
        return False
    return not description or str(description).strip().lower() in PLACEHOLDER_DESCRIPTIONS


def descriptions(res: Res) -> Iterator[str]:
    """Every group and every rule says why it exists (CKV_AWS_23)."""
    if res.type == SECURITY_GROUP and _missing(res.props.get("description")):
        yield message(res, "the security group has no description", "pass description= saying what the group guards")
    for rule in rules_of(res):
        if _missing(rule.description):
            yield message(
                res, f"{rule.where or 'the '}{rule.direction} rule has no description", "pass description= on the rule"
            )


def _cidr_ingress_problems(rule: RuleView, role: Any) -> tuple[list[str], list[str]]:
    """What is wrong with a CIDR- or prefix-list-based ingress rule, and the fixes; unknowns are skipped."""
    problems: list[str] = []
    fixes: list[str] = []
    if not (is_unknown(rule.protocol) or is_unknown(rule.from_port) or is_unknown(rule.to_port)):
        web_port = (
            rule.protocol == "tcp"
            and rule.from_port is not None
            and rule.from_port == (rule.to_port if rule.to_port is not None else rule.from_port)
            and int(rule.from_port) in WORLD_PORTS
        )
        if not web_port:
            problems.append(f"it opens {rule.protocol} {rule.from_port}-{rule.to_port}; only TCP 80 and 443 may")
            fixes.append("narrow the rule to port 80 or 443")
    if not is_unknown(role) and role != LB_ROLE:
        problems.append(f"the group has role {role!r}; only the load balancer's group (role 'lb') may")
        fixes.append("reference the load balancer's security group instead of a CIDR")
    narrow = [c for c in rule.cidrs if not is_unknown(c) and c not in WORLD]
    if narrow:
        problems.append(f"its source {', '.join(map(str, narrow))} is neither 0.0.0.0/0 nor ::/0")
    prefix_list = any(not is_unknown(p) for p in rule.prefix_lists)
    if prefix_list:
        problems.append("its source is a prefix list")
    if narrow or prefix_list:
        fixes.append(
            "take the peer from a security group (referenced_security_group_id); only the load balancer's "
            "80/443 rules may name a CIDR, and then 0.0.0.0/0 or ::/0"
        )
    return problems, fixes


def world_ingress(res: Res) -> Iterator[str]:
    """The only CIDR-based ingress is the load balancer's TCP 80/443 from anywhere (CKV_AWS_260,
    CKV_AWS_277, DESIGN 3): any rule taking its peer from a CIDR or prefix list must be exactly that;
    everything else takes its peer from a security group."""
    for rule in rules_of(res):
        if rule.direction != "ingress" or not (rule.cidrs or rule.prefix_lists):
            continue
        problems, fixes = _cidr_ingress_problems(rule, res.role)
        if problems:
            yield message(
                res,
                f"{rule.where}ingress from a CIDR or prefix list: " + "; ".join(problems),
                "; ".join(dict.fromkeys(fixes)),
            )


def admin_ports(res: Res) -> Iterator[str]:
    """Never SSH (22) or RDP (3389) from anywhere (CKV_AWS_24, CKV_AWS_25): servers use SSM Session Manager."""
    for rule in rules_of(res):
        if rule.direction != "ingress":
            continue
        for port in ADMIN_PORTS:
            if rule.covers(port):
                yield message(
                    res,
                    f"{rule.where}ingress opens port {port} ({rule.protocol} {rule.from_port}-{rule.to_port})",
                    "remove the rule; reach servers with SSM Session Manager, not SSH or RDP",
                )


def egress_narrowed(res: Res) -> Iterator[str]:
    """No egress of every protocol to the whole internet (CKV_AWS_382): name ports, like 443 and 80."""
    for rule in rules_of(res):
        if rule.direction == "egress" and rule.protocol == "all" and rule.world:
            yield message(
                res,
                f"{rule.where}egress allows all protocols and ports to the internet",
                "allow only the ports the role needs (e.g. TCP 443 and 80) or a security-group peer",
            )


def default_group_closed(res: Res) -> Iterator[str]:
    """The VPC's default security group has no rules (CKV2_AWS_12), so nothing uses it by accident."""
    for direction in ("ingress", "egress"):
        rules = as_list(res.props.get(direction))
        if not is_unknown(rules) and rules:
            yield message(
                res,
                f"the default security group keeps {len(rules)} {direction} rule(s)",  # type: ignore[arg-type]
                f"declare it with {direction}=[]",
            )
