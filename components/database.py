"""MySQL on RDS: a primary (Multi-AZ by setting) and an asynchronous read replica.

Isolated subnets, the database firewall, encryption at rest, TLS required in transit. The master
password is generated here (pulumi-random), sent to RDS write-only and kept in a Secrets Manager
secret this stack owns, encrypted with its own KMS key; only the app role may read it. RDS can't
manage the password itself: it refuses a read replica of a source whose password it manages.

Identifiers are ``foobar-<stack>-<suffix>``: the suffix is renewed whenever an input that makes RDS
replace the instance changes, so a replacement never collides with the instance it replaces, the
final snapshot of every incarnation has a name of its own, and the log groups RDS exports to are
known (and created, with retention) before the instance exists.

Non-ephemeral stacks protect their data three ways: RDS deletion protection, Pulumi ``protect`` and
a final snapshot.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.kms import account_administers_key
from components.settings import Settings

DB_NAME = "foobar"
DB_USER = "foobar_admin"
LOG_EXPORTS = ("error", "slowquery")
PORT = 3306
# RDS MySQL master passwords: 8 to 41 printable ASCII characters, none of '/', '"', '@' or space.
PASSWORD_LENGTH = 40
PASSWORD_SPECIALS = "!#$%&*()-_=+[]{}<>:?.,^~"
SUFFIX_LENGTH = 8


def parameter_family(engine_version: str) -> str:
    return f"mysql{engine_version}"


def parameters() -> list[tuple[str, str, str]]:
    """(name, value, apply method) of the parameter group: TLS only, slow queries logged to a file."""
    return [
        ("require_secure_transport", "1", "immediate"),
        ("tls_version", "TLSv1.2,TLSv1.3", "pending-reboot"),
        ("slow_query_log", "1", "immediate"),
        ("long_query_time", "1", "immediate"),
        # RDS publishes only file logs to CloudWatch; MySQL's default output for them is a table.
        ("log_output", "FILE", "immediate"),
    ]


def log_group_name(identifier: str, log: str) -> str:
    """Where RDS exports an instance's log: fixed by AWS, so the program creates it first."""
    return f"/aws/rds/instance/{identifier}/{log}"


def replacement_keepers(settings: Settings, which: str) -> dict[str, str]:
    """The inputs that make RDS replace an instance: a change renews its identifier suffix."""
    keepers = {"engine": "mysql", "storageEncrypted": "true", "stack": settings.stack, "which": which}
    if which == "primary":
        keepers.update(dbName=DB_NAME, username=DB_USER)
    return keepers


def replica_engine_version(settings: Settings) -> str:
    """The replica runs ahead of the primary during a major-version upgrade (RDS upgrades replicas first)."""
    return settings.db_replica_engine_version or settings.db_engine_version


def secret_value(password: str) -> str:
    """The secret's JSON, shaped like RDS's own (the app reads username and password)."""
    return json.dumps({"engine": "mysql", "username": DB_USER, "password": password, "port": PORT})


@dataclass
class DatabaseArgs:
    settings: Settings
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    provider: pulumi.ProviderResource
    account: str
    region: str
    partition: str = "aws"
    log_retention_days: int | None = None
    """Retention of the RDS log groups; defaults to the logRetentionDays setting."""
    readers: Sequence[pulumi.Input[str]] = field(default_factory=list)
    """ARNs of the roles that may read the master secret (the app role)."""


class Database(pulumi.ComponentResource):
    writer_endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    secret_arn: pulumi.Output[str]
    secret_key_arn: pulumi.Output[str]
    primary_identifier: pulumi.Output[str]
    replica_identifier: pulumi.Output[str] | None
    log_groups: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:database:Database", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        retention = args.log_retention_days or s.log_retention_days

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=args.subnet_ids,
            description=f"foobar {s.stack}: isolated database subnets",
            opts=child,
        )
        # One parameter group per engine family in use: during a major upgrade the replica runs the
        # new family while the primary still runs the old one.
        families = {parameter_family(v) for v in (s.db_engine_version, replica_engine_version(s))}
        groups = {
            family: aws.rds.ParameterGroup(
                f"{name}-params-{family.replace('.', '')}",
                family=family,
                description=f"foobar {s.stack}: TLS required, slow query log to file",
                parameters=[
                    aws.rds.ParameterGroupParameterArgs(name=n, value=v, apply_method=m) for n, v, m in parameters()
                ],
                opts=child,
            )
            for family in sorted(families)
        }

        password = random.RandomPassword(
            f"{name}-master-password",
            length=PASSWORD_LENGTH,
            special=True,
            override_special=PASSWORD_SPECIALS,
            min_lower=2,
            min_upper=2,
            min_numeric=2,
            min_special=2,
            keepers={"version": str(s.db_password_version)},  # a new version, a new password
            opts=pulumi.ResourceOptions(parent=self),
        )
        key = aws.kms.Key(
            f"{name}-secret-key",
            description=f"foobar {s.stack}: encrypts the database master secret",
            enable_key_rotation=True,
            deletion_window_in_days=7 if s.ephemeral else 30,
            policy=json.dumps(_key_policy(args.account, args.region, args.partition)),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-secret-key-alias", name=f"alias/foobar-{s.stack}-db", target_key_id=key.key_id, opts=child
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-master-secret",
            name_prefix=f"foobar/{s.stack}/db-master-",
            description=f"foobar {s.stack}: master user of the database (username, password)",
            kms_key_id=key.arn,
            # Ephemeral stacks go away for good; others keep a deleted secret recoverable for a week.
            recovery_window_in_days=0 if s.ephemeral else 7,
            opts=child,
        )
        version = aws.secretsmanager.SecretVersion(
            f"{name}-master-secret-value",
            secret_id=secret.id,
            secret_string=password.result.apply(secret_value),  # a secret: the password is one
            opts=child,
        )
        if args.readers:
            aws.secretsmanager.SecretPolicy(
                f"{name}-master-secret-policy",
                secret_arn=secret.arn,
                policy=pulumi.Output.all(secret.arn, *args.readers).apply(
                    lambda v: json.dumps(_secret_policy(v[0], list(v[1:])))
                ),
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
                                "Condition": {"StringEquals": {"aws:SourceAccount": args.account}},
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

        def suffix(which: str) -> pulumi.Output[str]:
            return random.RandomString(
                f"{name}-{which}-suffix",
                length=SUFFIX_LENGTH,
                special=False,
                upper=False,
                keepers=replacement_keepers(s, which),
                opts=pulumi.ResourceOptions(parent=self),
            ).result

        self.log_groups = {}

        def log_groups(which: str, identifier: pulumi.Output[str]) -> list[pulumi.Resource]:
            made: list[pulumi.Resource] = []
            for log in LOG_EXPORTS:
                group = aws.cloudwatch.LogGroup(
                    f"{name}-{which}-{log}-logs",
                    name=identifier.apply(functools.partial(log_group_name, log=log)),
                    retention_in_days=retention,
                    opts=child,
                )
                self.log_groups[f"{which}/{log}"] = group.name
                made.append(group)
            return made

        common: dict[str, Any] = dict(
            instance_class=s.db_instance_class,
            storage_type="gp3",
            storage_encrypted=True,
            # Storage autoscaling on both: a replica that runs out of space stops replicating.
            max_allocated_storage=s.db_allocated_storage_gib * 4,
            publicly_accessible=False,
            vpc_security_group_ids=[args.security_group_id],
            auto_minor_version_upgrade=True,
            # Only a changed engineVersion upgrades; this just allows the step from 8.0 to 8.4.
            allow_major_version_upgrade=True,
            copy_tags_to_snapshot=True,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            iam_database_authentication_enabled=True,
            monitoring_interval=s.db_monitoring_interval,
            monitoring_role_arn=monitoring_role_arn,
            deletion_protection=s.protected,
            apply_immediately=s.db_apply_immediately,
        )
        primary_id = pulumi.Output.concat(f"foobar-{s.stack}-", suffix("primary"))
        primary = aws.rds.Instance(  # type: ignore[call-overload]
            f"{name}-primary",
            identifier=primary_id,
            engine="mysql",
            engine_version=s.db_engine_version,
            parameter_group_name=groups[parameter_family(s.db_engine_version)].name,
            db_name=DB_NAME,
            username=DB_USER,
            # Write-only: RDS gets it, the state doesn't keep it; a new version sends the new one.
            password_wo=password.result,
            password_wo_version=s.db_password_version,
            allocated_storage=s.db_allocated_storage_gib,
            db_subnet_group_name=subnet_group.name,
            multi_az=s.db_multi_az,
            backup_retention_period=s.db_backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            performance_insights_enabled=s.db_performance_insights,
            skip_final_snapshot=not s.protected,
            final_snapshot_identifier=primary_id.apply(lambda i: f"{i}-final") if s.protected else None,
            # The secret is written before RDS changes the password: an app whose login is refused
            # re-reads the secret and gets the new one at once.
            opts=pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(parent=self, provider=args.provider, protect=s.protected),
                pulumi.ResourceOptions(depends_on=[version, *log_groups("primary", primary_id)]),
            ),
            **common,  # type: ignore[arg-type]
        )
        self.writer_endpoint = primary.address
        self.secret_arn = secret.arn
        self.secret_key_arn = key.arn
        self.primary_identifier = primary.identifier
        self.reader_endpoint = primary.address
        self.replica_identifier = None
        if s.db_replica:
            replica_id = pulumi.Output.concat(f"foobar-{s.stack}-replica-", suffix("replica"))
            replica_version = replica_engine_version(s)
            replica = aws.rds.Instance(  # type: ignore[call-overload]
                f"{name}-replica",
                identifier=replica_id,
                replicate_source_db=primary.identifier,  # same region: the identifier, not the ARN
                engine_version=replica_version,
                parameter_group_name=groups[parameter_family(replica_version)].name,
                backup_retention_period=0,
                skip_final_snapshot=True,  # RDS takes no final snapshot of a replica
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=args.provider,
                    protect=s.protected,
                    depends_on=log_groups("replica", replica_id),
                ),
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
                "secretArn": self.secret_arn,
                "logGroups": self.log_groups,
            }
        )


def _key_policy(account: str, region: str, partition: str) -> dict[str, Any]:
    """The account administers the key; it decrypts only through Secrets Manager in this region."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            account_administers_key(partition, account),
            {
                "Sid": "DenyUseOutsideSecretsManager",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:Encrypt", "kms:ReEncrypt*"],
                "Resource": "*",
                "Condition": {"StringNotEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            },
        ],
    }


def _secret_policy(secret_arn: str, readers: Sequence[str]) -> dict[str, Any]:
    """Among EC2 instance roles, only the readers may read the value, whatever identity policies say.

    Administrators and the deploy role (Pulumi reads the value back on refresh) are not instances,
    so they keep access; any other server role is refused even if someone grants it more.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyTheAppServersAmongInstances",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": secret_arn,
                "Condition": {
                    "Null": {"ec2:SourceInstanceARN": "false"},
                    "ArnNotEquals": {"aws:PrincipalArn": list(readers)},
                },
            }
        ],
    }


def reader_statements(secret_arn: str, key_arn: str, region: str) -> list[Mapping[str, object]]:
    """What the app role needs to read the master secret."""
    return [
        {
            "Sid": "ReadDatabaseSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret_arn,
        },
        {
            "Sid": "DecryptDatabaseSecretViaSecretsManager",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
        },
    ]
