"""Stack policies: rules about how resources relate, seen through the engine's property dependencies
(during preview a new group's id is unknown, but the engine still says which resource it came from)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from .ec2 import INSTANCE, LAUNCH_TEMPLATE
from .firewall import INGRESS_RULE, SECURITY_GROUP, SG_RULE
from .rds import PARAMETER_GROUP, RDS_INSTANCE
from .support import (
    EXPIRY_TAG,
    REQUIRED_TAGS,
    UNKNOWN,
    Res,
    as_list,
    get,
    is_default_provider,
    is_ephemeral,
    is_unknown,
    parse_default_tags,
    provider_short_name,
)

VPC: Final = "aws:ec2/vpc:Vpc"
FLOW_LOG: Final = "aws:ec2/flowLog:FlowLog"
DEFAULT_SECURITY_GROUP: Final = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
AWS_PROVIDER: Final = "pulumi:providers:aws"
# Which groups may open connections to a tier (DESIGN 3): lb -> web/app, app -> db, and load balancers to
# each other (stats). The internet reaches the lb by CIDR, which sg-world-ingress-lb-web-only judges.
ALLOWED_PEERS: Final = {
    "lb": frozenset({"lb"}),
    "web": frozenset({"lb"}),
    "app": frozenset({"lb"}),
    "db": frozenset({"app"}),
}
# Tiers whose CIDR ingress is judged by sg-world-ingress-lb-web-only rather than here.
CIDR_TIERS: Final = frozenset({"lb"})
TRUE_VALUES: Final = frozenset({"1", "on", "true"})

Found = Iterator[tuple[str, str | None]]


def refs(res: Res, key: str, typ: str) -> list[Res] | Any:
    """The resources of ``typ`` that ``res``'s input ``key`` came from.

    ``UNKNOWN`` when the value is unknown and the engine named no source, so nothing can be said.
    """
    found = [d for d in res.depends_on(key) if d.type == typ]
    if found:
        return found
    value = res.props.get(key)
    if is_unknown(value) or (isinstance(value, list) and any(is_unknown(v) for v in value)):
        return UNKNOWN
    return []


def _say(res: Res, problem: str, fix: str) -> tuple[str, str | None]:
    return f"{res.label}: {problem}. Fix: {fix}.", res.urn or None


def vpc_flow_logs(resources: list[Res]) -> Found:
    """Every VPC has a flow log (CKV2_AWS_11)."""
    logs = [r for r in resources if r.type == FLOW_LOG]
    covered: set[int] = set()
    undecided = False
    for log in logs:
        targets = refs(log, "vpcId", VPC)
        if is_unknown(targets):
            undecided = True
        else:
            covered.update(id(v) for v in targets)
    for vpc in (r for r in resources if r.type == VPC):
        if id(vpc) not in covered and not undecided:
            yield _say(vpc, "the VPC has no flow log", "add aws.ec2.FlowLog(vpc_id=vpc.id, traffic_type='ALL', ...)")


def vpc_default_group_adopted(resources: list[Res]) -> Found:
    """Each VPC's default security group is adopted and emptied (CKV2_AWS_12); unadopted it allows all."""
    adopted: set[int] = set()
    undecided = False
    for group in (r for r in resources if r.type == DEFAULT_SECURITY_GROUP):
        targets = refs(group, "vpcId", VPC)
        if is_unknown(targets):
            undecided = True
        else:
            adopted.update(id(v) for v in targets)
    for vpc in (r for r in resources if r.type == VPC):
        if id(vpc) not in adopted and not undecided:
            yield _say(
                vpc,
                "the VPC's default security group keeps AWS's allow-all rules",
                "add aws.ec2.DefaultSecurityGroup(vpc_id=vpc.id, ingress=[], egress=[])",
            )


def _requires_tls(group: Res) -> Any:
    params = as_list(group.props.get("parameters"))
    if is_unknown(params):
        return UNKNOWN
    for param in params:  # type: ignore[union-attr]
        if get(param, "name") == "require_secure_transport":
            value = get(param, "value")
            return UNKNOWN if is_unknown(value) else str(value).strip().lower() in TRUE_VALUES
    return False


def rds_tls_required(resources: list[Res]) -> Found:
    """Each database uses a parameter group with require_secure_transport=1 (CKV2_AWS_69)."""
    groups = [r for r in resources if r.type == PARAMETER_GROUP]
    fix = (
        "point parameter_group_name at an aws.rds.ParameterGroup with "
        "ParameterGroupParameterArgs(name='require_secure_transport', value='1')"
    )
    for db in (r for r in resources if r.type == RDS_INSTANCE):
        name = db.props.get("parameterGroupName")
        targets = refs(db, "parameterGroupName", PARAMETER_GROUP)
        if is_unknown(targets):
            continue
        if not targets and isinstance(name, str):
            targets = [g for g in groups if g.props.get("name") == name]
        if not name and not targets:
            yield _say(db, "the database uses RDS's default parameter group, which accepts plaintext", fix)
        elif not targets:
            yield _say(db, f"parameter group {name!r} is not declared in this stack, so TLS can't be checked", fix)
        else:
            for group in targets:
                verdict = _requires_tls(group)
                if not is_unknown(verdict) and not verdict:
                    yield _say(db, f"parameter group {group.name!r} does not set require_secure_transport=1", fix)


def provider_default_tags(resources: list[Res]) -> Found:
    """Every AWS resource comes from an explicit provider whose default tags carry project, stack, role
    (and expires-at on ephemeral stacks), so every resource is attributable and reapable."""
    aws = [r for r in resources if r.type.startswith("aws:")]
    tag_sets = [parse_default_tags(r.props.get("defaultTags")) for r in resources if r.type == AWS_PROVIDER]
    tag_sets += [r.provider_tags for r in aws]
    required = REQUIRED_TAGS + ((EXPIRY_TAG,) if is_ephemeral(tag_sets) else ())
    example = ", ".join(f"'{t}': ..." for t in required)
    seen: set[str] = set()
    for res in aws:
        if res.provider_name is None or is_default_provider(res.provider_name):
            yield _say(
                res,
                "created with the default AWS provider, which carries no default tags",
                "pass opts=ResourceOptions(provider=<the role's aws.Provider with default_tags>)",
            )
            continue
        if is_unknown(res.provider_tags) or res.provider_name in seen:
            continue
        seen.add(res.provider_name)
        tags = res.provider_tags if isinstance(res.provider_tags, dict) else {}
        missing = [t for t in required if not is_unknown(tags.get(t)) and not tags.get(t)]
        if missing:
            provider = provider_short_name(res.provider_name)
            yield (
                f"provider '{provider}' (used by {res.label} and others): default tags lack {', '.join(missing)}. "
                f"Fix: give the provider default_tags=ProviderDefaultTagsArgs(tags={{{example}}}).",
                None,
            )


def _given(value: Any) -> bool:
    """A list input that is set (or unknown, which is set to something)."""
    items = as_list(value)
    return is_unknown(items) or bool(items)


def _role_of(groups: list[Res]) -> list[Any]:
    return [g.role for g in groups]


def security_groups_attached(resources: list[Res]) -> Found:
    """Every security group is used: attached to an instance or database, or a peer of some rule."""
    used: set[int] = set()
    undecided = False
    users = (
        (INSTANCE, "vpcSecurityGroupIds"),
        (INSTANCE, "securityGroups"),
        (LAUNCH_TEMPLATE, "vpcSecurityGroupIds"),
        (LAUNCH_TEMPLATE, "networkInterfaces"),
        (RDS_INSTANCE, "vpcSecurityGroupIds"),
        (INGRESS_RULE, "referencedSecurityGroupId"),
        ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "referencedSecurityGroupId"),
        (SG_RULE, "sourceSecurityGroupId"),
    )
    for typ, key in users:
        for res in (r for r in resources if r.type == typ):
            targets = refs(res, key, SECURITY_GROUP)
            if is_unknown(targets):
                undecided = True
            else:
                used.update(id(g) for g in targets)
    for res in (r for r in resources if r.type == SECURITY_GROUP):
        used.update(id(g) for g in res.depends_on("ingress") + res.depends_on("egress") if g is not res)
    if undecided:
        return
    for group in (r for r in resources if r.type == SECURITY_GROUP):
        if id(group) not in used:
            yield _say(
                group,
                "the security group is attached to nothing and referenced by no rule",
                "attach it (vpc_security_group_ids=...) or delete it",
            )


def tiers_chained(resources: list[Res]) -> Found:
    """Tiers chain by security-group reference (DESIGN 3): the LB group admits only load balancers (its
    internet side is CIDR ingress, judged by sg-world-ingress-lb-web-only), web and app only the LB group,
    the database only the app group; every server carries only its own tier's group."""
    for rule in (r for r in resources if r.type in (INGRESS_RULE, SG_RULE)):
        if rule.type == SG_RULE and rule.props.get("type") != "ingress":
            continue
        owners = refs(rule, "securityGroupId", SECURITY_GROUP)
        if is_unknown(owners) or not owners:
            continue
        for owner in owners:
            role = owner.role
            if is_unknown(role) or role not in ALLOWED_PEERS:
                continue
            allowed = ALLOWED_PEERS[role]
            fix = f"take the peer from the {' or '.join(sorted(allowed))} security group (referenced_security_group_id)"
            peer_key = "referencedSecurityGroupId" if rule.type == INGRESS_RULE else "sourceSecurityGroupId"
            if rule.type == SG_RULE and rule.props.get("self") is True:
                if role not in allowed:
                    yield _say(rule, f"the {role} group admits its own members", fix)
                continue
            peers = refs(rule, peer_key, SECURITY_GROUP)
            if is_unknown(peers):
                continue
            if not peers:
                if role in CIDR_TIERS and not rule.props.get(peer_key):
                    continue  # CIDR ingress: the other policy's
                source = rule.props.get(peer_key) or "a CIDR or prefix list"
                yield _say(
                    rule, f"ingress to the {role} tier from {source}, not from the {'/'.join(allowed)} group", fix
                )
                continue
            for peer_role in _role_of(peers):
                if not is_unknown(peer_role) and peer_role not in allowed:
                    yield _say(rule, f"ingress to the {role} tier from the {peer_role!r} group", fix)
    for group in (r for r in resources if r.type == SECURITY_GROUP):
        role = group.role
        if is_unknown(role) or role not in ALLOWED_PEERS:
            continue
        inline = as_list(group.props.get("ingress"))
        if is_unknown(inline) or not inline:
            continue
        for i, item in enumerate(inline):  # type: ignore[arg-type]
            cidr = any(_given(get(item, key)) for key in ("cidrBlocks", "ipv6CidrBlocks", "prefixListIds"))
            if (cidr and role not in CIDR_TIERS) or (get(item, "self") is True and role not in ALLOWED_PEERS[role]):
                yield _say(
                    group,
                    f"inline ingress[{i}] admits a CIDR, a prefix list or the group itself",
                    "use referenced security groups from the tier in front only",
                )
        for peer_role in _role_of([g for g in group.depends_on("ingress") if g.type == SECURITY_GROUP]):
            if not is_unknown(peer_role) and peer_role not in ALLOWED_PEERS[role]:
                yield _say(group, f"inline ingress from the {peer_role!r} group", "admit only the tier in front of it")
    for server in (r for r in resources if r.type in (INSTANCE, LAUNCH_TEMPLATE, RDS_INSTANCE)):
        role = server.role
        if is_unknown(role) or role not in ALLOWED_PEERS:
            continue
        groups = refs(server, "vpcSecurityGroupIds", SECURITY_GROUP)
        if server.type == LAUNCH_TEMPLATE and not is_unknown(groups) and not groups:
            groups = refs(server, "networkInterfaces", SECURITY_GROUP)  # a template's groups live on its NIC
        if is_unknown(groups):
            continue
        for group in groups:
            if not is_unknown(group.role) and group.role != role:
                yield _say(
                    server,
                    f"a {role} server carries the {group.role!r} group, which opens it to more than its tier",
                    f"attach only the {role} security group",
                )
