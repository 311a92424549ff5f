"""MySQL on RDS: a primary (Multi-AZ by setting) and an asynchronous read replica.

Isolated subnets, the database firewall, encryption at rest, TLS required in transit, the master
password created and kept by RDS in Secrets Manager (never seen by Pulumi). Non-ephemeral stacks
protect their data three ways: RDS deletion protection, Pulumi ``protect`` and a final snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.settings import Settings

DB_NAME = "foobar"
DB_USER = "foobar_admin"
LOG_EXPORTS = ["error", "slowquery"]


def parameter_family(engine_version: str) -> str:
    return f"mysql{engine_version}"


@dataclass
class DatabaseArgs:
    settings: Settings
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    provider: pulumi.ProviderResource
    partition: str = "aws"


class Database(pulumi.ComponentResource):
    writer_endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    secret_arn: pulumi.Output[str]
    primary_identifier: pulumi.Output[str]
    replica_identifier: pulumi.Output[str] | None

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:database:Database", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        # Data-bearing resources are protected from `pulumi destroy` on non-ephemeral stacks.
        keep = pulumi.ResourceOptions(parent=self, provider=args.provider, protect=s.protected)

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=args.subnet_ids,
            description=f"foobar {s.stack}: isolated database subnets",
            opts=child,
        )
        params = aws.rds.ParameterGroup(
            f"{name}-params",
            family=parameter_family(s.db_engine_version),
            description=f"foobar {s.stack}: TLS required",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="require_secure_transport", value="1"),
                aws.rds.ParameterGroupParameterArgs(
                    name="tls_version", value="TLSv1.2,TLSv1.3", apply_method="pending-reboot"
                ),
                aws.rds.ParameterGroupParameterArgs(name="slow_query_log", value="1"),
                aws.rds.ParameterGroupParameterArgs(name="long_query_time", value="1"),
            ],
            opts=child,
        )
        monitoring_role_arn: pulumi.Output[str] | None = None
        if s.db_monitoring_interval:
            monitoring_role = aws.iam.Role(
                f"{name}-monitoring-role",
                assume_role_policy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "monitoring.rds.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                ),
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-monitoring",
                role=monitoring_role.name,
                policy_arn=f"arn:{args.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
                opts=child,
            )
            monitoring_role_arn = monitoring_role.arn

        common: dict[str, Any] = dict(
            instance_class=s.db_instance_class,
            storage_type="gp3",
            storage_encrypted=True,
            # Storage autoscaling on both: a replica that runs out of space stops replicating.
            max_allocated_storage=s.db_allocated_storage_gib * 4,
            publicly_accessible=False,
            vpc_security_group_ids=[args.security_group_id],
            parameter_group_name=params.name,
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
            enabled_cloudwatch_logs_exports=LOG_EXPORTS,
            iam_database_authentication_enabled=True,
            monitoring_interval=s.db_monitoring_interval,
            monitoring_role_arn=monitoring_role_arn,
            deletion_protection=s.protected,
            apply_immediately=s.ephemeral,
        )
        primary = aws.rds.Instance(  # type: ignore[call-overload]
            f"{name}-primary",
            identifier_prefix=f"foobar-{s.stack}-",  # <= 37 characters: RDS adds 26, up to its limit of 63
            engine="mysql",
            engine_version=s.db_engine_version,
            db_name=DB_NAME,
            username=DB_USER,
            manage_master_user_password=True,  # RDS creates and rotates it in Secrets Manager
            allocated_storage=s.db_allocated_storage_gib,
            db_subnet_group_name=subnet_group.name,
            multi_az=s.db_multi_az,
            backup_retention_period=s.db_backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            performance_insights_enabled=s.db_performance_insights,
            skip_final_snapshot=not s.protected,
            final_snapshot_identifier=f"foobar-{s.stack}-final" if s.protected else None,
            opts=keep,
            **common,  # type: ignore[arg-type]
        )
        self.writer_endpoint = primary.address
        self.secret_arn = primary.master_user_secrets.apply(
            lambda secrets: (secrets[0].secret_arn or "") if secrets else ""
        )
        self.primary_identifier = primary.identifier
        self.reader_endpoint = primary.address
        self.replica_identifier = None
        if s.db_replica:
            replica = aws.rds.Instance(  # type: ignore[call-overload]
                f"{name}-replica",
                identifier_prefix=f"foobar-{s.stack}-replica-",
                replicate_source_db=primary.identifier,  # same region: the identifier, not the ARN
                backup_retention_period=0,
                skip_final_snapshot=True,  # RDS takes no final snapshot of a replica
                opts=keep,
                **common,  # type: ignore[arg-type]
            )
            self.reader_endpoint = replica.address
            self.replica_identifier = replica.identifier

        self.register_outputs(
            {
                "writerEndpoint": self.writer_endpoint,
                "readerEndpoint": self.reader_endpoint,
                "primaryIdentifier": self.primary_identifier,
                "replicaIdentifier": self.replica_identifier,
            }
        )
