"""The foobar security checklist (DESIGN.md sections 3 and 10) as Pulumi policies.

Security rules are mandatory (they block `pulumi up` and fail `pulumi preview`); cost and operational
rules are advisory (reported, not blocking). ``CATALOG`` holds each policy's metadata once, for the
pack, the docs table and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pulumi_policy import EnforcementLevel, Policy, ResourceValidationPolicy, StackValidationPolicy

from . import certs, ec2, firewall, rds, stack
from .support import Check, StackCheck, resource_validation, stack_validation

PACK_NAME: Final = "foobar-security"
PACK_DESCRIPTION: Final = "foobar security checklist: EC2, security groups, VPC, RDS, certificates, tags"

MANDATORY: Final = EnforcementLevel.MANDATORY
ADVISORY: Final = EnforcementLevel.ADVISORY
SERVERS: Final = frozenset({ec2.INSTANCE, ec2.LAUNCH_TEMPLATE})
SG_ALL: Final = firewall.GROUP_TYPES | firewall.RULE_TYPES
SG_AND_RULES: Final = frozenset({firewall.SECURITY_GROUP}) | firewall.RULE_TYPES
DB: Final = frozenset({rds.RDS_INSTANCE})
ACM: Final = frozenset({certs.ACM_CERTIFICATE})


@dataclass(frozen=True)
class Entry:
    """One policy: its name, level, the checklist rule it implements, and the check itself."""

    name: str
    level: EnforcementLevel
    rule: str
    description: str
    check: Check | StackCheck
    types: frozenset[str] | None = None
    """Resource types a resource policy looks at; ``None`` marks a stack policy."""

    def build(self) -> Policy:
        if self.types is None:
            return StackValidationPolicy(
                name=self.name,
                description=self.description,
                enforcement_level=self.level,
                validate=stack_validation(self.check),  # type: ignore[arg-type]
            )
        return ResourceValidationPolicy(
            name=self.name,
            description=self.description,
            enforcement_level=self.level,
            validate=resource_validation(self.types, self.check),  # type: ignore[arg-type]
        )


CATALOG: Final[tuple[Entry, ...]] = (
    # EC2
    Entry("ec2-imdsv2-required", MANDATORY, "CKV_AWS_79", "Instances require IMDSv2 tokens.", ec2.imdsv2, SERVERS),
    Entry(
        "ec2-volumes-encrypted",
        MANDATORY,
        "CKV_AWS_8",
        "Root and EBS volumes are encrypted.",
        ec2.volumes_encrypted,
        SERVERS | {ec2.EBS_VOLUME},
    ),
    Entry(
        "ec2-no-public-ip",
        MANDATORY,
        "CKV_AWS_88, CKV_AWS_130",
        "Only the load balancer (role tag 'lb') has a public address; subnets don't hand them out.",
        ec2.no_public_ip,
        frozenset({ec2.INSTANCE, ec2.LAUNCH_TEMPLATE, ec2.SUBNET, ec2.EIP, ec2.EIP_ASSOCIATION}),
    ),
    Entry(
        "ec2-user-data-no-secrets",
        MANDATORY,
        "CKV_AWS_46",
        "User-data (write_files decoded too) holds no private key, AWS key or literal password.",
        ec2.user_data_no_secrets,
        SERVERS,
    ),
    Entry(
        "ec2-instance-profile",
        MANDATORY,
        "CKV2_AWS_41",
        "Every instance has an IAM instance profile.",
        ec2.instance_profile,
        SERVERS,
    ),
    # Security groups
    Entry(
        "sg-descriptions",
        MANDATORY,
        "CKV_AWS_23",
        "Every security group and every rule has a description.",
        firewall.descriptions,
        SG_AND_RULES,
    ),
    Entry(
        "sg-world-ingress-lb-web-only",
        MANDATORY,
        "CKV_AWS_260, CKV_AWS_277",
        "The only CIDR or prefix-list ingress: TCP 80/443 from 0.0.0.0/0 or ::/0 to the load balancer's group.",
        firewall.world_ingress,
        SG_AND_RULES,
    ),
    Entry(
        "sg-no-admin-ports",
        MANDATORY,
        "CKV_AWS_24, CKV_AWS_25",
        "No ingress to port 22 or 3389 from anywhere.",
        firewall.admin_ports,
        SG_ALL,
    ),
    Entry(
        "sg-egress-narrowed",
        MANDATORY,
        "CKV_AWS_382",
        "No egress of all protocols to 0.0.0.0/0 or ::/0.",
        firewall.egress_narrowed,
        SG_AND_RULES,
    ),
    Entry(
        "sg-default-closed",
        MANDATORY,
        "CKV2_AWS_12",
        "The VPC's default security group has no rules.",
        firewall.default_group_closed,
        frozenset({firewall.DEFAULT_SECURITY_GROUP}),
    ),
    # VPC and logs
    Entry("vpc-flow-logs", MANDATORY, "CKV2_AWS_11", "Every VPC has a flow log.", stack.vpc_flow_logs),
    Entry(
        "vpc-default-sg-adopted",
        MANDATORY,
        "CKV2_AWS_12",
        "Every VPC's default security group is adopted (and so emptied).",
        stack.vpc_default_group_adopted,
    ),
    Entry(
        "log-group-retention",
        MANDATORY,
        "CKV_AWS_66",
        "CloudWatch log groups set retentionInDays.",
        certs.log_retention,
        frozenset({certs.LOG_GROUP}),
    ),
    # RDS
    Entry("rds-storage-encrypted", MANDATORY, "CKV_AWS_16", "RDS storage is encrypted.", rds.storage_encrypted, DB),
    Entry("rds-not-public", MANDATORY, "CKV_AWS_17", "RDS instances are not publicly accessible.", rds.not_public, DB),
    Entry(
        "rds-backups",
        MANDATORY,
        "CKV_AWS_133",
        "Primaries keep automated backups (replicas and ephemeral stacks excepted).",
        rds.backups,
        DB,
    ),
    Entry("rds-iam-auth", MANDATORY, "CKV_AWS_161", "IAM database authentication is on.", rds.iam_auth, DB),
    Entry("rds-minor-upgrades", MANDATORY, "CKV_AWS_226", "Automatic minor upgrades stay on.", rds.minor_upgrades, DB),
    Entry("rds-log-exports", MANDATORY, "CKV_AWS_129", "Database logs are exported.", rds.log_exports, DB),
    Entry(
        "rds-master-password",
        MANDATORY,
        "DESIGN 3",
        "Primaries get a generated password write-only (password_wo); never RDS-managed, never password=.",
        rds.master_password,
        DB,
    ),
    Entry(
        "rds-tls-required",
        MANDATORY,
        "CKV2_AWS_69",
        "Each RDS instance's parameter group sets require_secure_transport=1.",
        stack.rds_tls_required,
    ),
    Entry(
        "rds-deletion-protection",
        MANDATORY,
        "CKV_AWS_293",
        "Long-lived stacks: deletion protection, Pulumi protect, final snapshot.",
        rds.deletion_protection,
        DB,
    ),
    Entry(
        "rds-copy-tags-to-snapshot",
        ADVISORY,
        "CKV2_AWS_60",
        "RDS copies tags to snapshots.",
        rds.copy_tags,
        DB,
    ),
    Entry("rds-multi-az", ADVISORY, "CKV_AWS_157", "Long-lived primaries run Multi-AZ.", rds.multi_az, DB),
    Entry(
        "rds-enhanced-monitoring",
        ADVISORY,
        "CKV_AWS_118",
        "Long-lived stacks turn on Enhanced Monitoring.",
        rds.enhanced_monitoring,
        DB,
    ),
    Entry(
        "rds-performance-insights",
        ADVISORY,
        "CKV_AWS_353",
        "Long-lived primaries turn on Performance Insights.",
        rds.performance_insights,
        DB,
    ),
    # Certificates and keys
    Entry(
        "acm-dns-validation", MANDATORY, "DESIGN 4", "ACM certificates validate by DNS.", certs.acm_dns_validation, ACM
    ),
    Entry(
        "acm-no-wildcard", MANDATORY, "CKV2_AWS_71", "ACM certificates name no wildcard.", certs.acm_no_wildcard, ACM
    ),
    Entry(
        "acm-key-algorithm", MANDATORY, "DESIGN 10", "ACM keys are RSA >= 2048 or ECDSA.", certs.acm_key_algorithm, ACM
    ),
    Entry(
        "acm-create-before-destroy",
        MANDATORY,
        "CKV_AWS_233",
        "ACM certificates are replaced create-before-destroy.",
        certs.create_before_destroy,
        ACM,
    ),
    Entry(
        "tls-key-strength",
        MANDATORY,
        "DESIGN 4",
        "pulumi-tls keys are RSA >= 2048, ECDSA P-256+ or Ed25519.",
        certs.tls_key_strength,
        frozenset({certs.TLS_PRIVATE_KEY}),
    ),
    Entry(
        "tls-leaf-lifetime",
        MANDATORY,
        "DESIGN 4",
        "Internal-CA leaf certificates live at most 366 days.",
        certs.tls_leaf_lifetime,
        frozenset({certs.TLS_LOCAL_CERT, certs.TLS_SELF_SIGNED}),
    ),
    # Tags and topology
    Entry(
        "aws-provider-default-tags",
        MANDATORY,
        "DESIGN 3",
        "AWS resources come from a provider whose default tags carry project, stack, role (+ expires-at if ephemeral).",
        stack.provider_default_tags,
    ),
    Entry(
        "sg-tiers-chained",
        MANDATORY,
        "DESIGN 3",
        "Group ingress: LB from LB, web/app from LB, DB from app only; one tier group per server.",
        stack.tiers_chained,
    ),
    Entry(
        "sg-attached",
        ADVISORY,
        "DESIGN 3",
        "Every security group is attached to something or referenced by a rule.",
        stack.security_groups_attached,
    ),
)

POLICIES: Final[list[Policy]] = [entry.build() for entry in CATALOG]

__all__ = ["CATALOG", "PACK_DESCRIPTION", "PACK_NAME", "POLICIES", "Entry"]
