"""Every setting of the program, validated in one place before any resource exists.

Pure logic: no Pulumi resources here, so tests and the local site call it directly. The list of
settings, their types and defaults live once, in Pulumi.yaml's ``config:`` block; this module reads
that block so the program, the tests and the docs never disagree about a default.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from userdata import EdgeLimits

PROJECT = "foobar"
PULUMI_YAML = Path(__file__).resolve().parent.parent / "Pulumi.yaml"

MAX_SERVERS_PER_ROLE = 20
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_DB_CLASS = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
# Every server is EBS-optimized; these families can't be (RunInstances: "EBS-optimized instances are
# not supported for your requested configuration").
_NOT_EBS_OPTIMIZED = ("t1", "t2", "m1", "c1", "m2")
# RDS: "Performance Insights isn't supported" on these classes.
NO_PERFORMANCE_INSIGHTS = frozenset(
    f"db.{family}.{size}" for family in ("t2", "t3", "t4g") for size in ("micro", "small")
)
MAX_DOMAIN = 64  # ACM's first domain name and a certificate's common name (RFC 5280 ub-common-name)
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,32}$")
# RDS identifiers, S3 bucket names, KMS aliases and SNS topics are derived from the stack name.
STACK_NAME = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-)){0,19}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")

# What each setting accepts, in words, for the error message.
ALLOWED: dict[str, str] = {
    "domain": "a valid DNS hostname of at most 64 characters with at least two labels, no wildcard",
    "hostedZoneId": 'empty, or a Route 53 zone ID like "Z0123456789ABC"',
    "publicCertificate": '"acm" or "internal-ca"',
    "vpcCidr": "a private IPv4 network (RFC 1918) with a prefix from /16 to /24, e.g. 10.20.0.0/16",
    "azCount": "2 or 3, and no more than the region's available zones",
    "natStrategy": '"single", "per-az" or "none"',
    "webCount": f"an integer from 1 to {MAX_SERVERS_PER_ROLE}, with webMin <= webCount <= webMax",
    "webMin": f"an integer from 1 to {MAX_SERVERS_PER_ROLE}, no more than webCount",
    "webMax": f"an integer from 1 to {MAX_SERVERS_PER_ROLE}, no less than webCount",
    "appCount": f"an integer from 1 to {MAX_SERVERS_PER_ROLE}, with appMin <= appCount <= appMax",
    "appMin": f"an integer from 1 to {MAX_SERVERS_PER_ROLE}, no more than appCount",
    "appMax": f"an integer from 1 to {MAX_SERVERS_PER_ROLE}, no less than appCount",
    "scalingCpuTarget": "an integer from 20 to 90",
    "lbCount": "1 or 2 (a pair goes into two zones; azCount is always at least 2)",
    "rateLimitRequests": "an integer from 10 to 100000: requests per client address in 10 s",
    "rateLimitConnections": "an integer from 2 to 10000: open connections per client address",
    "rateLimitNewConnections": "an integer from 2 to 100000: new connections per client address in 10 s",
    "rateLimitPosts": "an integer from 1 to 1000: guestbook posts per client address in a minute",
    "lbInstanceType": 'an EBS-optimized EC2 instance type shaped like "family.size" (not t1/t2), e.g. t3.small',
    "webInstanceType": 'an EBS-optimized EC2 instance type shaped like "family.size" (not t1/t2), e.g. t3.micro',
    "appInstanceType": 'an EBS-optimized EC2 instance type shaped like "family.size" (not t1/t2), e.g. t3.small',
    "rootVolumeGiB": "an integer from 8 to 1024",
    "dbInstanceClass": 'an RDS class shaped like "db.family.size", e.g. db.t4g.micro',
    "dbEngineVersion": '"8.4" or "8.0"',
    "dbReplicaEngineVersion": 'empty, "8.4" or "8.0", not older than dbEngineVersion, with dbReplica true',
    "dbPasswordVersion": "an integer from 1 to 1000000",
    "dbApplyImmediately": "true or false",
    "dbAllocatedStorageGiB": "an integer from 20 to 16384",
    "dbMultiAz": "true or false",
    "dbReplica": "true or false",
    "dbBackupRetentionDays": "an integer from 1 to 35 (0, backups off, only on ephemeral stacks without a replica)",
    "dbPerformanceInsights": "true or false; true needs a class above micro and small (not db.t3.micro, say)",
    "dbMonitoringInterval": "one of " + ", ".join(map(str, MONITORING_INTERVALS)),
    "logRetentionDays": "one of " + ", ".join(map(str, LOG_RETENTION_DAYS)),
    "alarmEmail": "empty, or an e-mail address",
    "sumoTokenParameter": 'empty, or an SSM parameter name like "/foobar/prod/sumo-token"',
    "ephemeral": "true or false",
    "ttlHours": "an integer from 1 to 336",
    "expiresAt": "empty, or an RFC 3339 time with a zone, e.g. 2026-12-01T18:00:00Z, on an ephemeral stack",
}


class SettingsError(Exception):
    """A setting is wrong. The message names the key, the value given and what is allowed."""


class Settings(BaseModel):
    """The validated settings. Field aliases are the Pulumi config keys."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    domain: str = Field(alias="domain")
    hosted_zone_id: str = Field(alias="hostedZoneId")
    public_certificate: Literal["acm", "internal-ca"] = Field(alias="publicCertificate")
    vpc_cidr: str = Field(alias="vpcCidr")
    az_count: int = Field(alias="azCount", ge=2, le=3)
    nat_strategy: Literal["single", "per-az", "none"] = Field(alias="natStrategy")
    web_count: int = Field(alias="webCount", ge=1, le=MAX_SERVERS_PER_ROLE)
    web_min: int = Field(alias="webMin", ge=1, le=MAX_SERVERS_PER_ROLE)
    web_max: int = Field(alias="webMax", ge=1, le=MAX_SERVERS_PER_ROLE)
    app_count: int = Field(alias="appCount", ge=1, le=MAX_SERVERS_PER_ROLE)
    app_min: int = Field(alias="appMin", ge=1, le=MAX_SERVERS_PER_ROLE)
    app_max: int = Field(alias="appMax", ge=1, le=MAX_SERVERS_PER_ROLE)
    scaling_cpu_target: int = Field(alias="scalingCpuTarget", ge=20, le=90)
    lb_count: int = Field(alias="lbCount", ge=1, le=2)
    rate_limit_requests: int = Field(alias="rateLimitRequests", ge=10, le=100_000)
    rate_limit_connections: int = Field(alias="rateLimitConnections", ge=2, le=10_000)
    rate_limit_new_connections: int = Field(alias="rateLimitNewConnections", ge=2, le=100_000)
    rate_limit_posts: int = Field(alias="rateLimitPosts", ge=1, le=1000)
    lb_instance_type: str = Field(alias="lbInstanceType", pattern=_INSTANCE_TYPE.pattern)
    web_instance_type: str = Field(alias="webInstanceType", pattern=_INSTANCE_TYPE.pattern)
    app_instance_type: str = Field(alias="appInstanceType", pattern=_INSTANCE_TYPE.pattern)
    root_volume_gib: int = Field(alias="rootVolumeGiB", ge=8, le=1024)
    db_instance_class: str = Field(alias="dbInstanceClass", pattern=_DB_CLASS.pattern)
    db_engine_version: Literal["8.4", "8.0"] = Field(alias="dbEngineVersion")
    db_replica_engine_version: Literal["", "8.4", "8.0"] = Field(alias="dbReplicaEngineVersion")
    db_password_version: int = Field(alias="dbPasswordVersion", ge=1, le=1_000_000)
    db_apply_immediately: bool = Field(alias="dbApplyImmediately")
    db_allocated_storage_gib: int = Field(alias="dbAllocatedStorageGiB", ge=20, le=16384)
    db_multi_az: bool = Field(alias="dbMultiAz")
    db_replica: bool = Field(alias="dbReplica")
    db_backup_retention_days: int = Field(alias="dbBackupRetentionDays", ge=0, le=35)
    db_performance_insights: bool = Field(alias="dbPerformanceInsights")
    db_monitoring_interval: int = Field(alias="dbMonitoringInterval")
    log_retention_days: int = Field(alias="logRetentionDays")
    alarm_email: str = Field(alias="alarmEmail")
    sumo_token_parameter: str = Field(alias="sumoTokenParameter", pattern=r"^$|^/?[A-Za-z0-9_.\-/]{1,1000}$")
    ephemeral: bool = Field(alias="ephemeral")
    ttl_hours: int = Field(alias="ttlHours", ge=1, le=336)
    expires_at: str = Field(alias="expiresAt")

    # Not settings: facts of the run, filled in by load_settings.
    stack: str = Field(alias="stack")  # checked against STACK_NAME in load_settings
    zones: tuple[str, ...] = Field(alias="zones")

    @field_validator("domain")
    @classmethod
    def _hostname(cls, value: str) -> str:
        name = value.strip().lower().rstrip(".")
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
            raise ValueError("not a valid hostname")
        if len(name) > MAX_DOMAIN:
            raise ValueError(f"{len(name)} characters; a certificate's name stops at {MAX_DOMAIN}")
        if labels[-1].isdigit():
            raise ValueError("the last label must not be numeric")
        return name

    @field_validator("lb_instance_type", "web_instance_type", "app_instance_type")
    @classmethod
    def _ebs_optimized(cls, value: str) -> str:
        if value.split(".", 1)[0] in _NOT_EBS_OPTIMIZED:
            raise ValueError("this family can't be EBS-optimized, which every server is")
        return value

    @field_validator("hosted_zone_id")
    @classmethod
    def _zone_id(cls, value: str) -> str:
        if value and not _ZONE_ID.match(value):
            raise ValueError("not a Route 53 zone ID")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            raise ValueError(str(err)) from None
        if not 16 <= net.prefixlen <= 24:
            raise ValueError(f"prefix /{net.prefixlen} is outside /16 to /24")
        if not net.is_private:
            raise ValueError("not a private range")
        return str(net)

    @field_validator("db_monitoring_interval")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value not in MONITORING_INTERVALS:
            raise ValueError("not an allowed interval")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError("not a retention CloudWatch accepts")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value

    @field_validator("expires_at")
    @classmethod
    def _expires(cls, value: str) -> str:
        if value:
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("not an RFC 3339 time") from None
            if when.tzinfo is None:
                raise ValueError("the time has no zone")
        return value

    @model_validator(mode="after")
    def _together(self) -> Settings:
        for tier in ("web", "app"):
            low, want, high = (getattr(self, f"{tier}_{k}") for k in ("min", "count", "max"))
            if low > want:
                raise _CrossError(f"{tier}Min", low, f"more than {tier}Count {want}")
            if want > high:
                raise _CrossError(f"{tier}Max", high, f"less than {tier}Count {want}")
        if self.az_count > len(self.zones):
            raise _CrossError("azCount", self.az_count, f"the region has only {len(self.zones)} available zones")
        if self.db_backup_retention_days == 0 and self.db_replica:
            raise _CrossError("dbBackupRetentionDays", 0, "dbReplica is true and a read replica needs backups")
        if self.db_backup_retention_days == 0 and not self.ephemeral:
            raise _CrossError("dbBackupRetentionDays", 0, "backups can be off only on ephemeral stacks")
        if self.db_performance_insights and self.db_instance_class in NO_PERFORMANCE_INSIGHTS:
            raise _CrossError(
                "dbPerformanceInsights", True, f"RDS offers no Performance Insights on {self.db_instance_class}"
            )
        if self.db_replica_engine_version and not self.db_replica:
            raise _CrossError("dbReplicaEngineVersion", self.db_replica_engine_version, "set, but dbReplica is false")
        if self.db_replica_engine_version and float(self.db_replica_engine_version) < float(self.db_engine_version):
            raise _CrossError(
                "dbReplicaEngineVersion",
                self.db_replica_engine_version,
                f"older than dbEngineVersion {self.db_engine_version}; a replica can't run behind its source",
            )
        if self.expires_at and not self.ephemeral:
            raise _CrossError("expiresAt", self.expires_at, "set, but ephemeral is false")
        if self.hosted_zone_id and self.public_certificate != "acm":
            raise _CrossError(
                "hostedZoneId", self.hosted_zone_id, 'a hosted zone is used only with publicCertificate "acm"'
            )
        return self

    # Derived facts, kept here so every component reads them the same way.
    @property
    def azs(self) -> tuple[str, ...]:
        return self.zones[: self.az_count]

    @property
    def edge_limits(self) -> EdgeLimits:
        """The per-client limits the load balancers enforce (userdata.EdgeLimits)."""
        return EdgeLimits(
            requests_per_10s=self.rate_limit_requests,
            connections=self.rate_limit_connections,
            new_connections_per_10s=self.rate_limit_new_connections,
            posts_per_minute=self.rate_limit_posts,
        )

    @property
    def protected(self) -> bool:
        """Non-ephemeral stacks keep their data: deletion protection, `protect`, final snapshot."""
        return not self.ephemeral

    def expiry(self, now: dt.datetime | None = None) -> str | None:
        """The expires-at tag of an ephemeral stack (UTC, to the minute), or None."""
        if not self.ephemeral:
            return None
        if self.expires_at:
            when = dt.datetime.fromisoformat(self.expires_at.replace("Z", "+00:00"))
        else:
            when = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(hours=self.ttl_hours)
        return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


class _CrossError(ValueError):
    def __init__(self, key: str, value: object, why: str) -> None:
        super().__init__(why)
        self.key, self.value, self.why = key, value, why


@cache
def declared() -> dict[str, dict[str, Any]]:
    """The ``config:`` block of Pulumi.yaml: key -> {type, description, default}."""
    data = yaml.safe_load(PULUMI_YAML.read_text())
    return {str(k): dict(v) for k, v in data["config"].items()}


def defaults() -> dict[str, Any]:
    return {key: spec["default"] for key, spec in declared().items()}


def _message(key: str, value: object, why: str) -> str:
    allowed = ALLOWED.get(key, "see Pulumi.yaml")
    return f"setting {PROJECT}:{key} has value {value!r} ({why}); allowed: {allowed}"


def load_settings(raw: Mapping[str, Any], *, stack: str, zones: Sequence[str]) -> Settings:
    """Validate raw config values (strings as Pulumi gives them, or typed) over Pulumi.yaml's defaults.

    Raises SettingsError with one message that lists every bad key, its value and what is allowed.
    """
    if not STACK_NAME.match(stack):
        raise SettingsError(
            f"stack name {stack!r} cannot name AWS resources; allowed: 2 to 21 characters of a-z, 0-9 and"
            " single hyphens, starting with a letter (e.g. dev, prod, pr-42)"
        )
    unknown = sorted(set(raw) - set(declared()))
    if unknown:
        raise SettingsError(
            "; ".join(f"setting {PROJECT}:{k} is not a known setting; known: {', '.join(declared())}" for k in unknown)
        )
    values: dict[str, Any] = defaults()
    values.update({k: v for k, v in raw.items() if v is not None})
    values.update(stack=stack, zones=tuple(zones))
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            ctx = item.get("ctx") or {}
            cross = ctx.get("error")
            if isinstance(cross, _CrossError):
                problems.append(_message(cross.key, cross.value, cross.why))
                continue
            key = str(item["loc"][0]) if item["loc"] else "?"
            why = str(cross) if cross is not None else item["msg"].lower()
            problems.append(_message(key, values.get(key), why))
        raise SettingsError("; ".join(problems)) from None
