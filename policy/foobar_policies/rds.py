"""RDS instances: encryption, no public endpoint, backups, IAM auth, patching, logs, the master
password kept by RDS, and the protections a long-lived stack needs. A read replica (replicateSourceDb
set) legitimately has no backups or password of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .support import Res, as_list, is_ephemeral, is_unknown, message

RDS_INSTANCE: Final = "aws:rds/instance:Instance"
PARAMETER_GROUP: Final = "aws:rds/parameterGroup:ParameterGroup"


def is_replica(res: Res) -> bool:
    """A read replica: ``replicateSourceDb`` set (even if the source's identifier is not known yet)."""
    return res.props.get("replicateSourceDb") not in (None, "")


def _ephemeral(res: Res) -> bool:
    return is_ephemeral([res.provider_tags])


def storage_encrypted(res: Res) -> Iterator[str]:
    """Encrypted storage (CKV_AWS_16). A same-region replica inherits its source's encryption."""
    value = res.props.get("storageEncrypted")
    if is_unknown(value) or value is True or (value is None and is_replica(res)):
        return
    yield message(res, "storage is not encrypted", "set storage_encrypted=True")


def not_public(res: Res) -> Iterator[str]:
    """No public endpoint (CKV_AWS_17)."""
    if res.props.get("publiclyAccessible") is True:
        yield message(res, "the database is publicly accessible", "set publicly_accessible=False")


def backups(res: Res) -> Iterator[str]:
    """Automated backups on primaries (CKV_AWS_133). Ephemeral stacks may turn them off."""
    if is_replica(res) or _ephemeral(res):
        return
    days = res.props.get("backupRetentionPeriod")
    if is_unknown(days):
        return
    if not days or float(days) <= 0:
        yield message(
            res,
            f"automated backups are off (backupRetentionPeriod={days!r})",
            "set backup_retention_period to 1-35 days (setting dbBackupRetentionDays)",
        )


def iam_auth(res: Res) -> Iterator[str]:
    """IAM database authentication (CKV_AWS_161)."""
    value = res.props.get("iamDatabaseAuthenticationEnabled")
    if not is_unknown(value) and value is not True:
        yield message(res, "IAM database authentication is off", "set iam_database_authentication_enabled=True")


def minor_upgrades(res: Res) -> Iterator[str]:
    """Automatic minor version upgrades, i.e. security patches (CKV_AWS_226); RDS's default is on."""
    if res.props.get("autoMinorVersionUpgrade") is False:
        yield message(res, "automatic minor version upgrades are off", "set auto_minor_version_upgrade=True")


def log_exports(res: Res) -> Iterator[str]:
    """Database logs go to CloudWatch (CKV_AWS_129)."""
    exports = as_list(res.props.get("enabledCloudwatchLogsExports"))
    if not is_unknown(exports) and not exports:
        yield message(
            res, "no logs are exported to CloudWatch", 'set enabled_cloudwatch_logs_exports=["error", "slowquery"]'
        )


def managed_password(res: Res) -> Iterator[str]:
    """The master password is created and kept by RDS (DESIGN 3), never passed through Pulumi."""
    if is_replica(res):
        return
    if res.props.get("password") is not None:
        yield message(
            res,
            "a master password is passed in (it ends up in the state and the preview)",
            "drop password= and set manage_master_user_password=True",
        )
    managed = res.props.get("manageMasterUserPassword")
    if not is_unknown(managed) and managed is not True:
        yield message(res, "RDS does not manage the master password", "set manage_master_user_password=True")


def copy_tags(res: Res) -> Iterator[str]:
    """Snapshots carry the instance's tags (CKV2_AWS_60), so they stay attributable."""
    value = res.props.get("copyTagsToSnapshot")
    if not is_unknown(value) and value is not True:
        yield message(res, "snapshots don't get the instance's tags", "set copy_tags_to_snapshot=True")


def multi_az(res: Res) -> Iterator[str]:
    """Multi-AZ primaries on long-lived stacks (CKV_AWS_157): a synchronous standby with failover."""
    if is_replica(res) or _ephemeral(res):
        return
    value = res.props.get("multiAz")
    if not is_unknown(value) and value is not True:
        yield message(res, "the primary runs in a single AZ", "set multi_az=True (setting dbMultiAz: true)")


def deletion_protection(res: Res) -> Iterator[str]:
    """Long-lived stacks keep their data (CKV_AWS_293, DESIGN 3): deletion protection, Pulumi
    ``protect`` and a final snapshot on delete. Ephemeral stacks need none of these."""
    if _ephemeral(res):
        return
    value = res.props.get("deletionProtection")
    if not is_unknown(value) and value is not True:
        yield message(res, "deletion protection is off on a long-lived stack", "set deletion_protection=True")
    if res.protect is False:
        yield message(res, "the resource is not protected in Pulumi", "pass opts=ResourceOptions(protect=True)")
    skip = res.props.get("skipFinalSnapshot")
    if not is_replica(res) and skip is True:
        yield message(
            res,
            "no final snapshot is taken on delete",
            "set skip_final_snapshot=False and final_snapshot_identifier=...",
        )


def enhanced_monitoring(res: Res) -> Iterator[str]:
    """Enhanced Monitoring on long-lived stacks (CKV_AWS_118)."""
    if _ephemeral(res):
        return
    interval = res.props.get("monitoringInterval")
    if not is_unknown(interval) and not interval:
        yield message(res, "Enhanced Monitoring is off", "set monitoring_interval=60 (setting dbMonitoringInterval)")


def performance_insights(res: Res) -> Iterator[str]:
    """Performance Insights on long-lived primaries (CKV_AWS_353)."""
    if is_replica(res) or _ephemeral(res):
        return
    value = res.props.get("performanceInsightsEnabled")
    if not is_unknown(value) and value is not True:
        yield message(
            res,
            "Performance Insights is off",
            "set performance_insights_enabled=True (setting dbPerformanceInsights; not on the smallest classes)",
        )
