"""Each policy on crafted resources: a violating one is reported with a message naming the resource
and the fix; the compliant twin and preview unknowns are not."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel, PolicyProviderResource
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_NUMBER_VALUE, UNKNOWN_STRING_VALUE

from policy.foobar_policies import CATALOG
from tests.policy.adapter import Resource, analyze, crafted, engine_props

INSTANCE = "aws:ec2/instance:Instance"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
RDS = "aws:rds/instance:Instance"
PARAMS = "aws:rds/parameterGroup:ParameterGroup"
ACM = "aws:acm/certificate:Certificate"
VPC = "aws:ec2/vpc:Vpc"

GOOD_INSTANCE: dict[str, Any] = {
    "metadataOptions": {"httpTokens": "required"},
    "rootBlockDevice": {"encrypted": True, "volumeType": "gp3"},
    "associatePublicIpAddress": False,
    "iamInstanceProfile": "bad-profile",
    "userData": "#cloud-config\nruncmd:\n  - [sh, -c, 'password=$(aws ssm get-parameter ...)']\n",
}
GOOD_DB: dict[str, Any] = {
    "storageEncrypted": True,
    "publiclyAccessible": False,
    "backupRetentionPeriod": 7,
    "iamDatabaseAuthenticationEnabled": True,
    "autoMinorVersionUpgrade": True,
    "enabledCloudwatchLogsExports": ["error"],
    "copyTagsToSnapshot": True,
    "passwordWo": "[secret]",
    "passwordWoVersion": 1,
    "multiAz": True,
    "deletionProtection": True,
    "skipFinalSnapshot": False,
    "monitoringInterval": 60,
    "performanceInsightsEnabled": True,
    "parameterGroupName": "bad-params",
}
PEM = "-----BEGIN " + "EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"


def instance(**changes: Any) -> Resource:
    return Resource(INSTANCE, "bad", {**GOOD_INSTANCE, **changes}, role="web")


def db(**changes: Any) -> Resource:
    return Resource(RDS, "bad", {**GOOD_DB, **changes}, role="db")


def rule(typ: str = INGRESS, role: str = "lb", **props: Any) -> Resource:
    base = {"description": "d", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}
    return Resource(typ, "bad", {**base, **props}, role=role)


# policy -> (violating resources, words the message must hold besides the name and "Fix:")
VIOLATIONS: dict[str, tuple[list[Resource], str]] = {
    "ec2-imdsv2-required": ([instance(metadataOptions={"httpTokens": "optional"})], "http_tokens"),
    "ec2-volumes-encrypted": ([instance(rootBlockDevice={"encrypted": False})], "encrypted=True"),
    "ec2-no-public-ip": ([instance(associatePublicIpAddress=True)], "associate_public_ip_address=False"),
    "ec2-user-data-no-secrets": ([instance(userData=f"#cloud-config\nwrite_files:\n  - content: |\n{PEM}\n")], "SSM"),
    "ec2-instance-profile": ([instance(iamInstanceProfile="")], "iam_instance_profile"),
    "sg-descriptions": ([rule(description="")], "description="),
    "sg-world-ingress-lb-web-only": ([rule(fromPort=8080, toPort=8080)], "80 or 443"),
    "sg-no-admin-ports": ([rule(fromPort=20, toPort=25, cidrIpv4="10.0.0.0/8")], "Session Manager"),
    "sg-egress-narrowed": ([rule(EGRESS, ipProtocol="-1", fromPort=None, toPort=None)], "TCP 443"),
    "sg-default-closed": (
        [Resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "bad", {"ingress": [{"self": True}]})],
        "ingress=[]",
    ),
    "vpc-flow-logs": ([Resource(VPC, "bad", {"cidrBlock": "10.0.0.0/16"}, role="network")], "FlowLog"),
    "vpc-default-sg-adopted": ([Resource(VPC, "bad", {"cidrBlock": "10.0.0.0/16"})], "DefaultSecurityGroup"),
    "log-group-retention": ([Resource("aws:cloudwatch/logGroup:LogGroup", "bad", {"name": "/x"})], "retention"),
    "rds-storage-encrypted": ([db(storageEncrypted=False)], "storage_encrypted=True"),
    "rds-not-public": ([db(publiclyAccessible=True)], "publicly_accessible=False"),
    "rds-backups": ([db(backupRetentionPeriod=0)], "backup_retention_period"),
    "rds-iam-auth": ([db(iamDatabaseAuthenticationEnabled=False)], "iam_database_authentication_enabled"),
    "rds-minor-upgrades": ([db(autoMinorVersionUpgrade=False)], "auto_minor_version_upgrade"),
    "rds-log-exports": ([db(enabledCloudwatchLogsExports=[])], "enabled_cloudwatch_logs_exports"),
    "rds-master-password": ([db(manageMasterUserPassword=True)], "password_wo"),
    "rds-tls-required": (
        [db(), Resource(PARAMS, "bad-params", {"name": "bad-params", "parameters": []}, role="db")],
        "require_secure_transport",
    ),
    "rds-deletion-protection": ([db(deletionProtection=False)], "deletion_protection=True"),
    "rds-copy-tags-to-snapshot": ([db(copyTagsToSnapshot=False)], "copy_tags_to_snapshot"),
    "rds-multi-az": ([db(multiAz=False)], "multi_az=True"),
    "rds-enhanced-monitoring": ([db(monitoringInterval=0)], "monitoring_interval"),
    "rds-performance-insights": ([db(performanceInsightsEnabled=False)], "performance_insights_enabled"),
    "acm-dns-validation": ([Resource(ACM, "bad", {"domainName": "a.b", "validationMethod": "EMAIL"})], "DNS"),
    "acm-no-wildcard": ([Resource(ACM, "bad", {"domainName": "*.foobar.com", "validationMethod": "DNS"})], "exact"),
    "acm-key-algorithm": ([Resource(ACM, "bad", {"domainName": "a.b", "keyAlgorithm": "RSA_1024"})], "RSA_2048"),
    "acm-create-before-destroy": (
        [Resource(ACM, "bad", {"domainName": "a.b", "validationMethod": "DNS"}, delete_before_replace=True)],
        "delete_before_replace",
    ),
    "tls-key-strength": ([Resource("tls:index/privateKey:PrivateKey", "bad", {"algorithm": "ECDSA"})], "P256"),
    "tls-leaf-lifetime": (
        [Resource("tls:index/locallySignedCert:LocallySignedCert", "bad", {"validityPeriodHours": 2 * 8760})],
        "validity_period_hours",
    ),
    "aws-provider-default-tags": ([Resource(VPC, "bad", {"cidrBlock": "10.0.0.0/16"}, role=None)], "role"),
    "sg-tiers-chained": (
        [
            Resource(SG, "db-group", {"description": "db"}, role="db"),
            Resource(SG, "web-group", {"description": "web"}, role="web"),
            Resource(
                INGRESS,
                "bad",
                {"description": "d", "ipProtocol": "tcp", "fromPort": 3306, "toPort": 3306},
                role="db",
                deps={"securityGroupId": ["db-group"], "referencedSecurityGroupId": ["web-group"]},
            ),
        ],
        "app security group",
    ),
    "sg-attached": ([Resource(SG, "bad", {"description": "lonely"}, role="web")], "attach it"),
}


def test_every_policy_has_a_violation_case() -> None:
    assert set(VIOLATIONS) == {entry.name for entry in CATALOG}


@pytest.mark.parametrize("policy", sorted(VIOLATIONS))
def test_violation_is_reported_with_name_and_fix(policy: str) -> None:
    resources, words = VIOLATIONS[policy]
    findings = analyze(crafted(resources), only=policy)
    assert findings, f"{policy} let a violating resource through"
    for finding in findings:
        assert "'bad'" in finding.message or "'aws-" in finding.message, finding.message
        assert "Fix:" in finding.message and words in finding.message, finding.message


def test_levels_split_security_from_cost() -> None:
    advisory = {e.name for e in CATALOG if e.level == EnforcementLevel.ADVISORY}
    assert advisory == {
        "rds-copy-tags-to-snapshot",
        "rds-multi-az",
        "rds-enhanced-monitoring",
        "rds-performance-insights",
        "sg-attached",
    }


@pytest.mark.parametrize(
    "resource",
    [
        instance(),
        Resource(INSTANCE, "lb", {**GOOD_INSTANCE, "associatePublicIpAddress": True}, role="lb"),
        rule(role="lb"),
        rule(fromPort=80, toPort=80, role="lb"),
        rule(EGRESS, role="web", fromPort=443, toPort=443),
        db(),
        db(
            replicateSourceDb="primary",
            backupRetentionPeriod=0,
            passwordWo=None,
            passwordWoVersion=None,
            storageEncrypted=None,
        ),
        Resource(
            ACM, "ok", {"domainName": "www.foobar.com", "validationMethod": "DNS", "keyAlgorithm": "EC_prime256v1"}
        ),
        Resource("tls:index/privateKey:PrivateKey", "ok", {"algorithm": "ECDSA", "ecdsaCurve": "P256"}),
    ],
    ids=lambda r: f"{r.type.rsplit(':', 1)[-1]}-{r.role}",
)
def test_compliant_resource_passes(resource: Resource) -> None:
    params = Resource(PARAMS, "bad-params", {"name": "bad-params", "parameters": [
        {"name": "require_secure_transport", "value": "1"}]}, role="db")  # fmt: skip
    group = Resource(SG, "sg", {"description": "x"}, role=resource.role or "app")
    findings = [f for f in analyze(crafted([resource, params, group])) if f.policy != "sg-attached"]
    assert findings == [], [f.message for f in findings]


def test_world_https_on_the_web_group_is_reported() -> None:
    (finding,) = analyze(crafted([rule(role="web")]), only="sg-world-ingress-lb-web-only")
    assert "role 'web'" in finding.message and "load balancer's security group" in finding.message


def test_inline_and_legacy_rules_are_checked_too() -> None:
    group = Resource(
        SG,
        "bad",
        {
            "description": "x",
            "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]}],
        },
    )
    legacy = Resource(
        SG_RULE, "bad2", {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}
    )
    names = {(f.policy, f.message.split("'")[1]) for f in analyze(crafted([group, legacy]))}
    assert ("sg-no-admin-ports", "bad") in names
    assert ("sg-descriptions", "bad") in names  # the inline rule has no description
    assert ("sg-no-admin-ports", "bad2") in names and ("sg-world-ingress-lb-web-only", "bad2") in names


@pytest.mark.parametrize(
    "user_data",
    [
        "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "mysql --password=hunter2",
    ],
)
def test_user_data_secret_patterns(user_data: str) -> None:
    findings = analyze(crafted([instance(userData=user_data)]), only="ec2-user-data-no-secrets")
    assert len(findings) == 1
    assert "hunter2" not in findings[0].message and "AKIA" not in findings[0].message  # never echo the secret


def test_base64_user_data_is_decoded() -> None:
    encoded = base64.b64encode(PEM.encode()).decode()
    res = instance(userData=None, userDataBase64=encoded)
    assert analyze(crafted([res]), only="ec2-user-data-no-secrets")


def test_ephemeral_stack_needs_expiry_and_skips_long_lived_rules() -> None:
    missing = crafted([Resource(VPC, "v", {})], ephemeral=False)
    # One provider says expires-at, another doesn't: the stack is ephemeral, so the other lacks it.
    with_expiry = crafted([Resource(VPC, "v2", {}, role="network", extra_tags={"expires-at": "2030-01-01T00:00:00Z"})])
    findings = analyze(missing + with_expiry, only="aws-provider-default-tags")
    assert len(findings) == 1 and "lack expires-at" in findings[0].message
    params = Resource(PARAMS, "bad-params", {"name": "bad-params", "parameters": [
        {"name": "require_secure_transport", "value": "ON"}]}, role="db")  # fmt: skip
    relaxed = analyze(
        crafted([db(multiAz=False, deletionProtection=False, backupRetentionPeriod=0), params], ephemeral=True)
    )
    assert relaxed == []


# Preview: values computed during the update arrive as sentinels; the policy must skip, not report.
UNKNOWNS: list[tuple[str, Resource]] = [
    ("ec2-imdsv2-required", instance(metadataOptions={"httpTokens": UNKNOWN_STRING_VALUE})),
    ("ec2-volumes-encrypted", instance(rootBlockDevice={"encrypted": UNKNOWN_BOOLEAN_VALUE})),
    ("ec2-no-public-ip", instance(associatePublicIpAddress=UNKNOWN_BOOLEAN_VALUE)),
    ("ec2-user-data-no-secrets", instance(userData=UNKNOWN_STRING_VALUE)),
    ("ec2-instance-profile", instance(iamInstanceProfile=UNKNOWN_STRING_VALUE)),
    ("sg-world-ingress-lb-web-only", rule(role="lb", fromPort=UNKNOWN_NUMBER_VALUE)),
    ("sg-world-ingress-lb-web-only", rule(role="lb", cidrIpv4=UNKNOWN_STRING_VALUE)),
    ("sg-no-admin-ports", rule(fromPort=UNKNOWN_NUMBER_VALUE, toPort=UNKNOWN_NUMBER_VALUE)),
    ("sg-descriptions", rule(description=UNKNOWN_STRING_VALUE)),
    ("rds-backups", db(backupRetentionPeriod=UNKNOWN_NUMBER_VALUE)),
    ("rds-storage-encrypted", db(storageEncrypted=UNKNOWN_BOOLEAN_VALUE)),
    (
        "log-group-retention",
        Resource("aws:cloudwatch/logGroup:LogGroup", "x", {"retentionInDays": UNKNOWN_NUMBER_VALUE}),
    ),
    ("rds-tls-required", db(parameterGroupName=UNKNOWN_STRING_VALUE)),
    (
        "vpc-flow-logs",
        Resource("aws:ec2/flowLog:FlowLog", "x", {"vpcId": UNKNOWN_STRING_VALUE, "trafficType": "ALL"}),
    ),
]


@pytest.mark.parametrize(("policy", "resource"), UNKNOWNS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(UNKNOWNS)])
def test_unknown_values_are_skipped(policy: str, resource: Resource) -> None:
    resources = [resource]
    if policy == "vpc-flow-logs":
        resources.append(Resource(VPC, "vpc", {"cidrBlock": "10.0.0.0/16"}))  # can't tell which VPC the log is for
    assert analyze(crafted(resources), only=policy) == []


def test_unknown_provider_tags_skip_role_based_rules() -> None:
    """A provider whose default tags are still unknown: the role can't be told, so nothing is claimed."""
    res = crafted([rule(role="web")])[0]
    assert res.provider is not None
    res.provider = PolicyProviderResource(
        res.provider.resource_type, engine_props({"defaultTags": UNKNOWN_STRING_VALUE}), res.provider.urn, "aws-web"
    )
    assert analyze([res], only="sg-world-ingress-lb-web-only") == []
    assert analyze([res], only="aws-provider-default-tags") == []


def test_docs_list_every_policy_with_its_level() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    for entry in CATALOG:
        assert f"| `{entry.name}` | {entry.level.value} |" in text, entry.name


@pytest.mark.parametrize(
    ("resource", "match"),
    [
        (db(manageMasterUserPassword=True), "no read replica"),
        (db(password="hunter22", passwordWo=None), "password_wo="),
        (db(passwordWoVersion=None), "password_wo_version"),
        (db(replicateSourceDb="primary", passwordWo="x", passwordWoVersion=None), "inherits"),
    ],
)
def test_master_password_findings(resource: Resource, match: str) -> None:
    messages = [f.message for f in analyze(crafted([resource]), only="rds-master-password")]
    assert messages and any(match in m for m in messages), messages
