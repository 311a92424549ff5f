"""The pack on the real program (dev, prod, an ephemeral PR stack), and on that program broken on purpose.

The mutations prove the stack policies really follow the program's references: each takes the dev
stack as registered, changes one thing, and expects exactly that thing to be reported.
"""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import PolicyResource

from policy.foobar_policies.support import plain
from tests.policy.adapter import Finding, analyze, engine_props, from_run, mandatory, provider_resource
from tests.unit.harness import run

Program = dict[str, tuple[list[PolicyResource], list[Finding]]]


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-1"])
def test_no_mandatory_violation(program: Program, stack: str) -> None:
    resources, findings = program[stack]
    assert len(resources) > 80, "the program registered too little to be the real site"
    assert mandatory(findings) == [], "\n".join(f.message for f in mandatory(findings))


def test_advisories_follow_the_stack_settings(program: Program) -> None:
    """dev is long-lived but cheap: single-AZ, no Enhanced Monitoring or Performance Insights, and the
    pack says so without blocking. prod sets all three; the ephemeral stack is exempt."""
    advisories = {(f.policy, f.urn.rsplit("::", 1)[-1] if f.urn else None) for f in program["dev"][1]}
    assert advisories == {
        ("rds-multi-az", "foobar-database-primary"),
        ("rds-enhanced-monitoring", "foobar-database-primary"),
        ("rds-enhanced-monitoring", "foobar-database-replica"),
        ("rds-performance-insights", "foobar-database-primary"),
    }
    assert program["prod"][1] == []
    assert program["pr-1"][1] == []


def _named(resources: list[PolicyResource], name: str) -> PolicyResource:
    (found,) = [r for r in resources if r.name == name]
    return found


def _with_props(res: PolicyResource, **changes: Any) -> PolicyResource:
    props = plain(res.props)
    props.update(changes)
    return PolicyResource(
        res.resource_type,
        engine_props(props),
        res.urn,
        res.name,
        res.opts,
        res.provider,
        None,
        [],
        dict(res.property_dependencies),
    )


def _swap(resources: list[PolicyResource], new: PolicyResource) -> list[PolicyResource]:
    return [new if r.urn == new.urn else r for r in resources]


def _reported(findings: list[Finding], policy: str) -> list[str]:
    return [f.message for f in findings if f.policy == policy]


def dev(program: Program) -> list[PolicyResource]:
    """Fresh copies of the dev stack's resources, safe to break."""
    return [_with_props(r) for r in program["dev"][0]]


def test_missing_flow_log_is_reported(program: Program) -> None:
    resources = [r for r in dev(program) if r.resource_type != "aws:ec2/flowLog:FlowLog"]
    (text,) = _reported(analyze(resources, "vpc-flow-logs"), "vpc-flow-logs")
    assert "foobar-network-vpc" in text and "aws.ec2.FlowLog" in text


def test_unadopted_default_group_is_reported(program: Program) -> None:
    resources = [r for r in dev(program) if "defaultSecurityGroup" not in r.resource_type]
    (text,) = _reported(analyze(resources, "vpc-default-sg-adopted"), "vpc-default-sg-adopted")
    assert "foobar-network-vpc" in text and "DefaultSecurityGroup" in text


def test_database_reachable_from_the_lb_group_is_reported(program: Program) -> None:
    resources = dev(program)
    rule = _named(resources, "foobar-firewalls-db-in-tcp3306-app")
    lb_group = _named(resources, "foobar-firewalls-lb")
    rule.property_dependencies["referencedSecurityGroupId"] = [lb_group]
    texts = _reported(analyze(resources, "sg-tiers-chained"), "sg-tiers-chained")
    assert texts == [
        "SecurityGroupIngressRule 'foobar-firewalls-db-in-tcp3306-app': ingress to the db tier from the 'lb' "
        "group. Fix: take the peer from the app security group (referenced_security_group_id)."
    ]


def test_app_server_with_a_foreign_group_is_reported(program: Program) -> None:
    resources = dev(program)
    app = _named(resources, "foobar-app-template")
    groups = app.property_dependencies["networkInterfaces"]
    (nic,) = plain(app.props)["networkInterfaces"]
    broken = _with_props(app, networkInterfaces=[{**nic, "securityGroups": [*nic["securityGroups"], "sg-db"]}])
    broken.property_dependencies["networkInterfaces"] = [*groups, _named(resources, "foobar-firewalls-db")]
    texts = _reported(analyze(_swap(resources, broken), "sg-tiers-chained"), "sg-tiers-chained")
    assert len(texts) == 1 and "foobar-app-template" in texts[0] and "'db' group" in texts[0]


def test_group_members_with_a_public_address_are_reported(program: Program) -> None:
    resources = dev(program)
    web = _named(resources, "foobar-web-template")
    (nic,) = plain(web.props)["networkInterfaces"]
    broken = _with_props(web, networkInterfaces=[{**nic, "associatePublicIpAddress": "true"}])
    texts = _reported(analyze(_swap(resources, broken), "ec2-no-public-ip"), "ec2-no-public-ip")
    assert len(texts) == 1 and "foobar-web-template" in texts[0] and "'web'" in texts[0]


def test_parameter_group_without_tls_is_reported(program: Program) -> None:
    resources = dev(program)
    params = _named(resources, "foobar-database-params-mysql84")
    kept = [p for p in plain(params.props)["parameters"] if p["name"] != "require_secure_transport"]
    texts = _reported(
        analyze(_swap(resources, _with_props(params, parameters=kept)), "rds-tls-required"), "rds-tls-required"
    )
    assert len(texts) == 2  # primary and replica share the group
    assert all("require_secure_transport=1" in t for t in texts)
    assert {t.split("'")[1] for t in texts} == {"foobar-database-primary", "foobar-database-replica"}


def test_unused_security_group_is_advised(program: Program) -> None:
    resources = [r for r in dev(program) if r.name not in ("foobar-web-template", "foobar-firewalls-lb-out-tcp443-web")]
    findings = analyze(resources, "sg-attached")
    assert [f.message.split(":")[0] for f in findings] == ["SecurityGroup 'foobar-firewalls-web'"]
    assert mandatory(findings) == []


def test_resource_on_the_default_provider_is_reported(program: Program) -> None:
    resources = dev(program)
    vpc = _named(resources, "foobar-network-vpc")
    moved = _with_props(vpc)
    moved.provider = provider_resource("dev", "default_7_51_1", None)
    texts = _reported(analyze(_swap(resources, moved), "aws-provider-default-tags"), "aws-provider-default-tags")
    assert texts == [
        "Vpc 'foobar-network-vpc': created with the default AWS provider, which carries no default tags. "
        "Fix: pass opts=ResourceOptions(provider=<the role's aws.Provider with default_tags>)."
    ]


def test_provider_without_role_tag_is_reported(program: Program) -> None:
    resources = dev(program)
    untagged = provider_resource("dev", "aws-web", {"project": "foobar", "stack": "dev"})
    for res in resources:
        if res.provider is not None and res.provider.name == "aws-web":
            res.provider = untagged
    texts = _reported(analyze(resources, "aws-provider-default-tags"), "aws-provider-default-tags")
    assert len(texts) == 1 and texts[0].startswith("provider 'aws-web'") and "lack role" in texts[0]


@pytest.mark.parametrize(("stack", "protected"), [("dev", True), ("prod", True), ("pr-1", False)])
def test_policies_see_the_programs_protect(program: Program, stack: str, protected: bool) -> None:
    """The database is registered with `protect` on long-lived stacks only, and the pack is told so."""
    resources = program[stack][0]
    for name in ("foobar-database-primary", "foobar-database-replica"):
        assert _named(resources, name).opts.protect is protected, (stack, name)


def test_unprotected_primary_on_a_long_lived_stack_is_reported() -> None:
    """The dev program run as registered, except that the primary comes without `protect`."""
    result = run("dev")
    primary = result.named("foobar-database-primary")
    assert primary.protect is True
    primary.protect = False
    texts = _reported(analyze(from_run(result, "dev"), "rds-deletion-protection"), "rds-deletion-protection")
    assert texts == [
        "Instance 'foobar-database-primary': the resource is not protected in Pulumi. "
        "Fix: pass opts=ResourceOptions(protect=True)."
    ]
